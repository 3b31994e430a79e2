//go:build linux

package container

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/roost-containers/roost/rootless"
	"golang.org/x/sys/unix"
)

// exec runs a process in the container's namespaces: on a thread of its
// own the agent joins them (setns), then starts roost's exec entry there,
// which becomes the container's user and execs the command. conn carries
// the frames of the session.
const execEntry = "container-exec"

func init() { rootless.Register(execEntry, runExec) }

func (a *agent) exec(conn net.Conn, es *ExecSpec) {
	fail := func(err error) {
		writeJSON(conn, Reply{Error: err.Error()})
	}
	if es == nil || len(es.Args) == 0 {
		fail(errors.New("exec: no command"))
		return
	}
	a.mu.Lock()
	pid, running, paused := a.state.Pid, a.state.Running, a.state.Paused
	a.mu.Unlock()
	if !running || pid == 0 {
		fail(errors.New("container is not running"))
		return
	}
	if paused {
		fail(errors.New("container is paused: unpause it first"))
		return
	}
	spec := a.spec.Init
	spec.Args = es.Args
	spec.Env = append(append([]string{}, spec.Env...), es.Env...)
	if es.User != "" {
		spec.User = es.User
	}
	if es.Workdir != "" {
		spec.Cwd = es.Workdir
	}
	spec.Tty = es.Tty
	spec.Init = false
	// A server started by exec takes its published port as init's would.
	spec.PortHandoff = a.handoff != nil
	spec.NestedUID, spec.NestedGID = -1, -1
	if spec.Mapping == "single" || spec.KeepID {
		u, err := lookupUser(userOf(&spec), func(p string) ([]byte, error) {
			lowers, err := a.imageLowers()
			if err != nil {
				return nil, err
			}
			return imageFile(a.writable, lowers, p)
		})
		if err != nil {
			fail(fmt.Errorf("user %q: %w", spec.User, err))
			return
		}
		if u.Uid != 0 || u.Gid != 0 {
			spec.NestedUID, spec.NestedGID = u.Uid, u.Gid
		}
	}
	specR, specW, err := os.Pipe()
	if err != nil {
		fail(err)
		return
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		fail(err)
		return
	}
	cmd := exec.Command("/proc/self/exe")
	cmd.Args[0] = execEntry
	cmd.Env = []string{"ROOST_REEXEC=" + execEntry}
	cmd.ExtraFiles = []*os.File{specR, statusW}
	closeAfterStart := []*os.File{specR, statusW}
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	if a.cg != nil {
		if f, err := a.cg.open(); err == nil {
			defer f.Close()
			cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(f.Fd())
		}
	}
	var consoleParent *os.File
	var stdinW io.WriteCloser
	var outR, errR *os.File
	var syncW *os.File
	// The session's own ends of its pipes and console: closed when it
	// ends, not left to the garbage collector (a long-lived container's
	// agent serves many execs).
	var own []io.Closer
	defer func() {
		for _, c := range own {
			c.Close()
		}
	}()
	if spec.NestedUID >= 0 {
		// The Go runtime would write the maps through /proc as the thread
		// sees it, the container's: the agent writes them itself after the
		// start, while the child waits, its capabilities kept as ambient.
		cmd.SysProcAttr.Cloneflags = unix.CLONE_NEWUSER
		for c := 0; c <= unix.CAP_CHECKPOINT_RESTORE; c++ {
			cmd.SysProcAttr.AmbientCaps = append(cmd.SysProcAttr.AmbientCaps, uintptr(c))
		}
		var syncR *os.File
		if syncR, syncW, err = os.Pipe(); err != nil {
			fail(err)
			return
		}
		defer syncW.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, syncR)
		cmd.Env = append(cmd.Env, fmt.Sprintf("ROOST_EXEC_SYNC=%d", 2+len(cmd.ExtraFiles)))
		closeAfterStart = append(closeAfterStart, syncR)
	}
	if spec.Tty && !es.Detach {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			fail(err)
			return
		}
		consoleParent = os.NewFile(uintptr(fds[0]), "console")
		child := os.NewFile(uintptr(fds[1]), "console-child")
		cmd.ExtraFiles = append(cmd.ExtraFiles, child)
		closeAfterStart = append(closeAfterStart, child)
		spec.Tty = true
	} else if !es.Detach {
		spec.Tty = false
		if es.Stdin {
			r, w, err := os.Pipe()
			if err != nil {
				fail(err)
				return
			}
			cmd.Stdin, stdinW = r, w
			closeAfterStart = append(closeAfterStart, r)
			own = append(own, w)
		}
		var outW, errW *os.File
		if outR, outW, err = os.Pipe(); err != nil {
			fail(err)
			return
		}
		if errR, errW, err = os.Pipe(); err != nil {
			fail(err)
			return
		}
		cmd.Stdout, cmd.Stderr = outW, errW
		closeAfterStart = append(closeAfterStart, outW, errW)
		own = append(own, outR, errR)
	} else {
		spec.Tty = false
	}
	var notifyParent *os.File
	if spec.Mapping == "single" || spec.PortHandoff {
		// The agent serves the chown family (chown_linux.go) and bind
		// (bind_linux.go).
		var child *os.File
		if notifyParent, child, err = notifySocket(); err != nil {
			fail(err)
			return
		}
		cmd.ExtraFiles = append(cmd.ExtraFiles, child)
		spec.NotifySocket = 2 + len(cmd.ExtraFiles)
		closeAfterStart = append(closeAfterStart, child)
		own = append(own, notifyParent)
	}
	for _, f := range append([]*os.File{specR, specW, statusR, statusW}, closeAfterStart...) {
		own = append(own, f)
	}
	if err := startInNamespaces(cmd, pid); err != nil {
		fail(err)
		return
	}
	for _, f := range closeAfterStart {
		f.Close()
	}
	if syncW != nil {
		if err := writeIDMaps(cmd.Process.Pid, spec.NestedUID, spec.NestedGID); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			fail(err)
			return
		}
		syncW.Write([]byte{0})
		syncW.Close()
	}
	json.NewEncoder(specW).Encode(spec)
	specW.Close()
	var console *os.File
	if consoleParent != nil {
		console = recvConsole(consoleParent)
		consoleParent.Close()
		if console != nil {
			own = append(own, console)
		}
	}
	var ee ExecError
	if err := json.NewDecoder(statusR).Decode(&ee); err == nil {
		statusR.Close()
		cmd.Wait()
		writeJSON(conn, Reply{Error: ee.Message, Code: ee.Code})
		return
	}
	statusR.Close()
	if notifyParent != nil {
		if l := recvListener(notifyParent); l != nil {
			rootless.GoLocked(func() { serveNotify(l, a.union, filepath.Join(a.spec.Dir, "rootfs"), pid, a.handoff) })
		}
	}
	if err := writeJSON(conn, Reply{}); err != nil || es.Detach {
		go cmd.Wait()
		return
	}
	fw := NewFrameWriter(conn)
	done := make(chan struct{}, 2)
	pump := func(stream byte, r *os.File) {
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				fw.WriteFrame(stream, buf[:n])
			}
			if err != nil {
				done <- struct{}{}
				return
			}
		}
	}
	pumps := 0
	if console != nil {
		go pump(StreamStdout, console)
		pumps = 1
	} else {
		go pump(StreamStdout, outR)
		go pump(StreamStderr, errR)
		pumps = 2
	}
	go func() {
		var buf []byte
		for {
			stream, p, err := ReadFrame(conn, buf)
			if err != nil {
				return
			}
			buf = p[:0]
			switch {
			case stream == StreamStdin && console != nil:
				console.Write(p)
			case stream == StreamStdin && stdinW != nil:
				stdinW.Write(p)
			case stream == StreamCloseStdin && stdinW != nil:
				stdinW.Close()
			case stream == StreamCloseStdin && console != nil:
				console.Write([]byte{4})
			case stream == StreamResize && console != nil && len(p) == 4:
				ws := &unix.Winsize{Row: binary.BigEndian.Uint16(p), Col: binary.BigEndian.Uint16(p[2:])}
				unix.IoctlSetWinsize(int(console.Fd()), unix.TIOCSWINSZ, ws)
			}
		}
	}()
	err = cmd.Wait()
	for i := 0; i < pumps; i++ {
		<-done
	}
	code := 0
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		code = exitErr.ExitCode()
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(code))
	fw.WriteFrame(StreamExit, b[:])
}

func userOf(s *InitSpec) string {
	if s.KeepID {
		return fmt.Sprintf("%d:%d", s.HostUID, s.HostGID)
	}
	return s.User
}

// startInNamespaces starts cmd from a thread that joined the namespaces of
// process pid (rootless.GoLocked: it ends with its goroutine).
func startInNamespaces(cmd *exec.Cmd, pid int) error {
	errc := make(chan error, 1)
	rootless.GoLocked(func() {
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("exec: unshare: %w", err)
			return
		}
		for _, ns := range []struct {
			name string
			flag int
		}{{"ipc", unix.CLONE_NEWIPC}, {"uts", unix.CLONE_NEWUTS}, {"net", unix.CLONE_NEWNET}, {"cgroup", unix.CLONE_NEWCGROUP}, {"pid", unix.CLONE_NEWPID}, {"mnt", unix.CLONE_NEWNS}} {
			f, err := os.Open(filepath.Join("/proc", fmt.Sprint(pid), "ns", ns.name))
			if err != nil {
				errc <- fmt.Errorf("exec: %w", err)
				return
			}
			err = unix.Setns(int(f.Fd()), ns.flag)
			f.Close()
			if err != nil {
				errc <- fmt.Errorf("exec: join %s namespace: %w", ns.name, err)
				return
			}
		}
		errc <- cmd.Start()
	})
	return <-errc
}

// runExec is the exec entry: it runs inside the container's namespaces,
// becomes the container's user and execs the command.
func runExec(args []string) int {
	runtime.LockOSThread() // see runInit
	return reportExecError(execInContainer(), 126)
}

// writeIDMaps maps uid and gid of a new user namespace onto root here.
func writeIDMaps(pid, uid, gid int) error {
	dir := filepath.Join("/proc", fmt.Sprint(pid))
	for _, f := range []struct{ name, data string }{
		{"setgroups", "deny"}, {"uid_map", fmt.Sprintf("%d 0 1", uid)}, {"gid_map", fmt.Sprintf("%d 0 1", gid)},
	} {
		if err := os.WriteFile(filepath.Join(dir, f.name), []byte(f.data), 0); err != nil {
			return fmt.Errorf("exec: map user %d: %w", uid, err)
		}
	}
	return nil
}

func execInContainer() error {
	if fd, ok := os.LookupEnv("ROOST_EXEC_SYNC"); ok {
		var n int
		fmt.Sscan(fd, &n)
		f := os.NewFile(uintptr(n), "sync")
		var b [1]byte
		if k, _ := f.Read(b[:]); k != 1 {
			return errors.New("exec: the agent did not map the user")
		}
		f.Close()
		os.Unsetenv("ROOST_EXEC_SYNC")
	}
	var spec InitSpec
	f := os.NewFile(3, "spec")
	if err := readJSON(f, &spec); err != nil {
		return fmt.Errorf("read exec spec: %w", err)
	}
	f.Close()
	unix.CloseOnExec(4)
	if spec.Tty {
		if err := setupConsole("/"); err != nil {
			return err
		}
	}
	env, err := becomeUser(&spec, nil)
	if err != nil {
		return err
	}
	cwd := spec.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if err := os.Chdir(cwd); err != nil {
		return failf(126, "working directory %s: %w", cwd, err)
	}
	return execCommand(spec.Args, env, nil)
}
