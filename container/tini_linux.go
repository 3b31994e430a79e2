//go:build linux

package container

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/roost-containers/roost/rootless"
	"golang.org/x/sys/unix"
)

// The --init process: a minimal PID 1 that starts the command, forwards
// signals to it and reaps every orphan. It is roost's own code, so it runs
// from a sealed memfd copy of the binary: container root could otherwise
// overwrite roost through /proc/1/exe.

const tiniEntry = "container-tini"

func init() { rootless.Register(tiniEntry, runTini) }

// sealedCopy copies the running binary into a sealed memfd and returns it.
func sealedCopy() (*os.File, error) {
	fd, err := unix.MemfdCreate("roost-init", unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("create memfd: %w", err)
	}
	mf := os.NewFile(uintptr(fd), "roost-init")
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		mf.Close()
		return nil, err
	}
	defer self.Close()
	if _, err := io.Copy(mf, self); err != nil {
		mf.Close()
		return nil, fmt.Errorf("copy roost into memfd: %w", err)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(mf.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		mf.Close()
		return nil, fmt.Errorf("seal memfd: %w", err)
	}
	return mf, nil
}

// execTini replaces init with the sealed init, which runs bin with args.
func execTini(mf *os.File, bin string, args, env []string) error {
	argv := append([]string{tiniEntry, bin}, args[1:]...)
	env = append(env, "ROOST_REEXEC="+tiniEntry)
	err := unix.Exec("/proc/self/fd/"+strconv.Itoa(int(mf.Fd())), argv, env)
	return failf(126, "exec init: %w", err)
}

// runTini is the sealed init: args are the command's path and arguments.
func runTini(args []string) int {
	os.Unsetenv("ROOST_REEXEC")
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "roost init: no command")
		return 125
	}
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Args[0] = args[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Foreground: isatty(0), Ctty: 0}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "roost init:", err)
		return 126
	}
	child := cmd.Process.Pid
	for s := range sigs {
		sig := s.(syscall.Signal)
		if sig != syscall.SIGCHLD {
			if sig != syscall.SIGURG { // the Go runtime's own preemption signal
				syscall.Kill(-child, sig)
			}
			continue
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
			if pid == child {
				if ws.Signaled() {
					return 128 + int(ws.Signal())
				}
				return ws.ExitStatus()
			}
		}
	}
	return 0
}

func isatty(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}
