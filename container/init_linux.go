//go:build linux

package container

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/sys/user"
	"github.com/roost-containers/roost/rootless"
	"golang.org/x/sys/unix"
)

const initEntry = "container-init"

func init() { rootless.Register(initEntry, runInit) }

// initError carries the exit status init reports for a failure.
type initError struct {
	code int
	err  error
}

func (e *initError) Error() string { return e.err.Error() }

func failf(code int, format string, a ...any) error {
	return &initError{code: code, err: fmt.Errorf(format, a...)}
}

// runInit is the container's init: it runs in the new namespaces, prepares
// the root and execs the command. It only returns on failure.
func runInit(args []string) int {
	// Capabilities, the bounding set and no_new_privs belong to a thread,
	// and the thread that execs is the one whose they stay: do everything
	// on one.
	runtime.LockOSThread()
	// Init allocates little before it execs: a collection would only delay
	// the start.
	debug.SetGCPercent(-1)
	return reportExecError(initContainer(), 125)
}

// reportExecError tells the agent, on the exec-status pipe (fd 4), why the
// command did not start, and returns the exit status: the error's own, or
// code.
func reportExecError(err error, code int) int {
	ee := ExecError{Message: err.Error(), Code: code}
	var ie *initError
	if errors.As(err, &ie) {
		ee.Code = ie.code
	}
	writeJSON(os.NewFile(4, "exec-status"), ee)
	return ee.Code
}

func initContainer() error {
	Trace("init", "start")
	var spec InitSpec
	specFile := os.NewFile(3, "spec")
	// The pipe carries the spec alone (then, with NetworkPending, stays
	// open until the network is up): no need to read it a byte at a time
	// as readJSON does, and a decoder stops at the spec's closing brace.
	if err := json.NewDecoder(specFile).Decode(&spec); err != nil {
		return fmt.Errorf("read init spec: %w", err)
	}
	if spec.NetworkPending {
		defer specFile.Close()
	} else {
		specFile.Close()
	}
	unix.CloseOnExec(3)
	unix.CloseOnExec(4)
	// The agent clones init in its own mount namespace, and sends the spec
	// once the union is mounted there; from here on this thread (locked,
	// and the one that execs) has a copy of its own.
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("new mount namespace: %w", err)
	}
	root := spec.Rootfs
	if err := prepareRoot(&spec, -1, nil); err != nil {
		return err
	}
	Trace("init", "etc-mounted")
	if spec.Tty {
		if err := setupConsole(root); err != nil {
			return err
		}
	}
	var tini *os.File
	if spec.Init {
		var err error
		if tini, err = sealedCopy(); err != nil {
			return err
		}
	}
	Trace("init", "mounted")
	if err := enterRoot(&spec); err != nil {
		return err
	}
	Trace("init", "pivoted")
	for _, rl := range spec.Rlimits {
		res, ok := rlimitNames[rl.Name]
		if !ok {
			return failf(125, "unknown ulimit %q", rl.Name)
		}
		if err := unix.Setrlimit(res, &unix.Rlimit{Cur: uint64(rl.Soft), Max: uint64(rl.Hard)}); err != nil {
			return failf(125, "set ulimit %s=%d:%d: %w", rl.Name, rl.Soft, rl.Hard, err)
		}
	}
	env, err := becomeUser(&spec, nil)
	if err != nil {
		return err
	}
	if err := workdir(spec.Cwd); err != nil {
		return err
	}
	if spec.NetworkPending {
		// The agent closes the pipe once eth0 is up, or kills us.
		io.Copy(io.Discard, specFile)
		Trace("init", "network-seen")
	}
	return execCommand(spec.Args, env, tini)
}

// prepareRoot mounts what the container sees under spec.Rootfs, in this
// thread's own mount namespace: the root's own bind, /proc, /sys and /dev
// (trees where they were made, else with mountSystem, from the mount proc
// where it is one, see startDirect), the volumes, devices and /etc files;
// then it sets the hostname and brings up lo.
func prepareRoot(spec *InitSpec, proc int, trees *systemTrees) error {
	// In a nested user namespace the kernel already made the inherited
	// mounts slaves, and refuses to change them.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil && spec.NestedUID < 0 {
		return fmt.Errorf("make mounts private: %w", err)
	}
	root := spec.Rootfs
	// A mount of this namespace's own: pivot_root refuses the union's mount
	// where a nested user namespace inherited it locked.
	if err := unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind the root: %w", err)
	}
	if trees != nil {
		if err := trees.attach(root); err != nil {
			return err
		}
	} else if err := mountSystem(root, spec, proc); err != nil {
		return err
	}
	for _, m := range spec.Mounts {
		if err := mountInto(root, m); err != nil {
			return err
		}
	}
	// Every target under root resolves inside it (secureJoin): a symlink
	// of the image or of the writable layer cannot send a mount, or the
	// creation of its target, outside.
	for _, d := range spec.Devices {
		target, err := securejoin.SecureJoin(root, d.PathInContainer)
		if err == nil {
			err = bindFile(d.PathOnHost, target, false)
		}
		if err != nil {
			return failf(125, "add device %s: %w", d.PathOnHost, err)
		}
	}
	for target, src := range spec.EtcFiles {
		p, err := securejoin.SecureJoin(root, target)
		if err == nil {
			err = bindFile(src, p, false)
		}
		if err != nil {
			return fmt.Errorf("mount %s: %w", target, err)
		}
	}
	if spec.AptConf != "" {
		if err := mountAptConf(root, spec.AptConf); err != nil {
			return err
		}
	}
	if spec.Hostname != "" && !spec.HostNetwork {
		if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
			return fmt.Errorf("set hostname: %w", err)
		}
	}
	if !spec.HostNetwork {
		return loopbackUp()
	}
	return nil
}

// enterRoot pivots into spec.Rootfs, read-only with --read-only.
func enterRoot(spec *InitSpec) error {
	if err := pivot(spec.Rootfs); err != nil {
		return err
	}
	if spec.ReadOnly {
		if err := remountReadOnly("/"); err != nil {
			return fmt.Errorf("make the root read-only: %w", err)
		}
	}
	return nil
}

// workdir enters the working directory, creating it where the image has
// none, as Docker does.
func workdir(cwd string) error {
	if cwd == "" {
		cwd = "/"
	}
	if err := unix.Chdir(cwd); err != nil {
		if err := os.MkdirAll(cwd, 0o755); err != nil {
			return failf(125, "working directory %s: %w", cwd, err)
		}
		if err := unix.Chdir(cwd); err != nil {
			return failf(125, "working directory %s: %w", cwd, err)
		}
	}
	return nil
}

// searchPath is the PATH that the command is looked up in: the
// container's, or the usual one.
func searchPath(env []string) string {
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, kv := range env {
		if p, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = p
		}
	}
	return path
}

// execCommand looks the command up in the container's PATH and execs it,
// or with tini set, execs the init that runs it.
func execCommand(args, env []string, tini *os.File) error {
	bin, err := lookCommand(args, env)
	if err != nil {
		return err
	}
	Trace("init", "exec")
	if tini != nil {
		return execTini(tini, bin, args, env)
	}
	return execFailure(args[0], unix.Exec(bin, args, env))
}

// lookCommand finds args[0] as exec.LookPath does, in the PATH of env
// (searchPath) rather than this process's own; the error carries Docker's
// exit status: 127 not found, 126 not executable.
func lookCommand(args, env []string) (string, error) {
	if len(args) == 0 {
		return "", failf(125, "no command: the image has no CMD or ENTRYPOINT; give one after the image name")
	}
	file := args[0]
	if strings.Contains(file, "/") {
		err := executable(file)
		switch {
		case err == nil:
			return file, nil
		case errors.Is(err, os.ErrNotExist):
			return "", failf(127, "exec %q: executable file not found in $PATH", file)
		default:
			return "", failf(126, "exec %q: %v", file, err)
		}
	}
	for _, dir := range filepath.SplitList(searchPath(env)) {
		if dir == "" {
			dir = "." // as a shell does
		}
		if p := filepath.Join(dir, file); executable(p) == nil {
			return p, nil
		}
	}
	return "", failf(127, "exec %q: executable file not found in $PATH", file)
}

// executable is exec.LookPath's test of a candidate.
func executable(file string) error {
	fi, err := os.Stat(file)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return unix.EISDIR
	}
	err = unix.Faccessat(unix.AT_FDCWD, file, unix.X_OK, unix.AT_EACCESS)
	if err == nil || (err != unix.ENOSYS && err != unix.EPERM) {
		return err
	}
	if fi.Mode()&0o111 != 0 {
		return nil
	}
	return os.ErrPermission
}

// execFailure is the error of an exec of name that failed with err.
func execFailure(name string, err error) error {
	if errors.Is(err, unix.ENOENT) {
		return failf(127, "exec %q: %v (a missing interpreter or library?)", name, err)
	}
	return failf(126, "exec %q: %v", name, err)
}

// mountSystem mounts /proc, /sys, /dev and its friends under root. Where
// proc is a detached proc mount (see startDirect), /proc is that one.
func mountSystem(root string, spec *InitSpec, proc int) error {
	mnt := func(src, target, fstype string, flags uintptr, data string) error {
		target, err := securejoin.SecureJoin(root, strings.TrimPrefix(target, root))
		if err != nil {
			return fmt.Errorf("mount %s: %w", fstype, err)
		}
		if err := os.MkdirAll(target, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", target, err)
		}
		if err := unix.Mount(src, target, fstype, flags, data); err != nil {
			return fmt.Errorf("mount %s on %s: %w", fstype, strings.TrimPrefix(target, root), err)
		}
		return nil
	}
	const nsd = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	if proc >= 0 {
		if err := attach(proc, root, "/proc"); err != nil {
			return err
		}
	} else if err := mnt("proc", filepath.Join(root, "proc"), "proc", nsd, ""); err != nil {
		return err
	}
	sys, err := securejoin.SecureJoin(root, "/sys")
	if err != nil {
		return fmt.Errorf("mount /sys: %w", err)
	}
	if spec.HostNetwork || mnt("sysfs", sys, "sysfs", nsd|unix.MS_RDONLY, "") != nil {
		if err := mnt("/sys", sys, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return err
		}
		if err := remountReadOnly(sys); err != nil {
			return fmt.Errorf("make /sys read-only: %w", err)
		}
	}
	if err := maskPaths(root); err != nil {
		return err
	}
	dev, err := securejoin.SecureJoin(root, "/dev")
	if err != nil {
		return fmt.Errorf("mount /dev: %w", err)
	}
	if err := mnt("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_STRICTATIME, "mode=755,size=65536k"); err != nil {
		return err
	}
	for _, n := range devNodes {
		if err := bindFile("/dev/"+n, filepath.Join(dev, n), false); err != nil {
			return fmt.Errorf("add /dev/%s: %w", n, err)
		}
	}
	for link, target := range devLinks {
		if err := os.Symlink(target, filepath.Join(dev, link)); err != nil {
			return fmt.Errorf("create /dev/%s: %w", link, err)
		}
	}
	if err := mnt("devpts", filepath.Join(dev, "pts"), "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, strings.Join(ptsOptions(spec), ",")); err != nil {
		return err
	}
	if err := mnt("shm", filepath.Join(dev, "shm"), "tmpfs", nsd, "mode=1777,size=65536k"); err != nil {
		return err
	}
	if err := mnt("mqueue", filepath.Join(dev, "mqueue"), "mqueue", nsd, ""); err != nil {
		// Only the IPC namespace's owner may mount it; not fatal.
		os.Remove(filepath.Join(dev, "mqueue"))
	}
	return nil
}

// The nodes of the host's /dev that a container's has, and its symlinks.
var (
	devNodes = []string{"null", "zero", "full", "random", "urandom", "tty"}
	devLinks = map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
		"stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx", "core": "/proc/kcore"}
)

// ptsOptions are the options of the container's devpts: terminals of the
// group tty (5) where the namespace has it.
func ptsOptions(spec *InitSpec) []string {
	opts := []string{"newinstance", "ptmxmode=0666", "mode=0620"}
	if spec.Mapping != "single" && spec.NestedUID < 0 {
		opts = append(opts, "gid=5")
	}
	return opts
}

// Docker's masked and read-only paths.
var (
	maskedPaths = []string{"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap"}
	readOnlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

// maskPaths hides what a container must not see of the kernel (/dev/null
// over files, an empty read-only tmpfs over directories) and makes the
// kernel's tunables read-only, as Docker does.
func maskPaths(root string) error {
	for _, p := range maskedPaths {
		target, err := securejoin.SecureJoin(root, p)
		if err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
		fi, err := os.Stat(target)
		if err != nil {
			continue // not on this kernel
		}
		if fi.IsDir() {
			err = unix.Mount("tmpfs", target, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0")
		} else {
			err = unix.Mount("/dev/null", target, "", unix.MS_BIND, "")
		}
		if err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
	}
	for _, p := range readOnlyPaths {
		target, err := securejoin.SecureJoin(root, p)
		if err != nil {
			return fmt.Errorf("make %s read-only: %w", p, err)
		}
		if _, err := os.Stat(target); err != nil {
			continue
		}
		if err := unix.Mount(target, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("make %s read-only: %w", p, err)
		}
		if err := remountReadOnly(target); err != nil {
			return fmt.Errorf("make %s read-only: %w", p, err)
		}
	}
	return nil
}

// With a single id mapped (no subordinate id range) apt cannot drop its
// downloads to the _apt user: setuid is emulated (see seccomp_linux.go), and
// apt's check that the ids changed fails. This apt.conf.d file, mounted
// (read-only) where the image has apt, keeps apt's sandbox as root. Its
// mount point is an empty file in the writable layer.
const (
	aptSingleIDFile = "apt-single-id.conf"
	aptSingleIDConf = "// roost: this container has a single id (no subordinate id range), so apt\n" +
		"// cannot switch to the _apt user: its sandbox runs as root.\n" +
		"APT::Sandbox::User \"root\";\n"
	aptConfTarget = "/etc/apt/apt.conf.d/zz-roost-single-id"
)

// mountAptConf mounts conf at aptConfTarget when the image has a real
// /etc/apt/apt.conf.d directory.
func mountAptConf(root, conf string) error {
	dir, err := securejoin.SecureJoin(root, filepath.Dir(aptConfTarget))
	if err != nil {
		return nil
	}
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		return nil
	}
	if err := bindFile(conf, filepath.Join(dir, filepath.Base(aptConfTarget)), true); err != nil {
		return fmt.Errorf("mount %s: %w", aptConfTarget, err)
	}
	return nil
}

// bindFile bind-mounts the file or directory src onto target, creating the
// target as the same kind.
func bindFile(src, target string, readOnly bool) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if err := ensureTarget(target, fi.IsDir()); err != nil {
		return err
	}
	if err := unix.Mount(src, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	if readOnly {
		return remountReadOnly(target)
	}
	return nil
}

// ensureTarget creates a mount target: a directory or an empty file. A
// symlink at target is not followed out of the root: it is an error.
func ensureTarget(target string, dir bool) error {
	if fi, err := os.Lstat(target); err == nil {
		if fi.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("mount target %s is a symlink", target)
		}
		return nil
	}
	if dir {
		return os.MkdirAll(target, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// remountReadOnly makes the bind mount at p read-only, keeping the flags the
// kernel locks in a user namespace (nosuid, nodev, noexec, atime).
func remountReadOnly(p string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return err
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY)
	for _, f := range [][2]uintptr{{unix.ST_NOSUID, unix.MS_NOSUID}, {unix.ST_NODEV, unix.MS_NODEV}, {unix.ST_NOEXEC, unix.MS_NOEXEC},
		{unix.ST_NOATIME, unix.MS_NOATIME}, {unix.ST_NODIRATIME, unix.MS_NODIRATIME}, {unix.ST_RELATIME, unix.MS_RELATIME}} {
		if uintptr(st.Flags)&f[0] != 0 {
			flags |= f[1]
		}
	}
	return unix.Mount("", p, "", flags, "")
}

// mountInto mounts m under root. Bind targets are resolved inside root:
// a symlink in the image cannot send a mount outside it.
func mountInto(root string, m InitMount) error {
	target, err := securejoin.SecureJoin(root, m.Destination)
	if err != nil {
		return failf(125, "mount %s: %w", m.Destination, err)
	}
	switch m.Type {
	case "tmpfs":
		if err := ensureTarget(target, true); err != nil {
			return err
		}
		opts := m.Options
		if opts == "" {
			opts = "mode=1777"
		}
		flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
		if m.ReadOnly {
			flags |= unix.MS_RDONLY
		}
		if err := unix.Mount("tmpfs", target, "tmpfs", flags, opts); err != nil {
			return failf(125, "mount tmpfs on %s: %w", m.Destination, err)
		}
		return nil
	default:
		if err := bindFile(m.Source, target, m.ReadOnly); err != nil {
			return failf(125, "mount %s on %s: %w", m.Source, m.Destination, err)
		}
		return nil
	}
}

// loopbackUp brings up lo in the container's network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	return nil
}

// setupConsole opens a pty in the container's devpts, sends its master to
// the agent and makes the slave init's controlling terminal and stdio.
func setupConsole(root string) error {
	master, err := os.OpenFile(filepath.Join(root, "dev/pts/ptmx"), os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open pty: %w", err)
	}
	defer master.Close()
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		return fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		return fmt.Errorf("get pty number: %w", err)
	}
	slave, err := os.OpenFile(filepath.Join(root, "dev/pts", strconv.Itoa(n)), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("open pty slave: %w", err)
	}
	sock := os.NewFile(5, "console")
	rights := unix.UnixRights(int(master.Fd()))
	if err := unix.Sendmsg(int(sock.Fd()), []byte{0}, rights, nil, 0); err != nil {
		return fmt.Errorf("send pty to agent: %w", err)
	}
	sock.Close()
	if _, err := unix.Setsid(); err != nil {
		return fmt.Errorf("setsid: %w", err)
	}
	if err := unix.IoctlSetInt(int(slave.Fd()), unix.TIOCSCTTY, 0); err != nil {
		return fmt.Errorf("set controlling terminal: %w", err)
	}
	for fd := 0; fd < 3; fd++ {
		if err := unix.Dup3(int(slave.Fd()), fd, 0); err != nil {
			return fmt.Errorf("dup pty: %w", err)
		}
	}
	return slave.Close()
}

// pivot makes root the root directory and detaches the old one.
func pivot(root string) error {
	if err := unix.Chdir(root); err != nil {
		return fmt.Errorf("enter root: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	return unix.Chdir("/")
}

// becomeUser turns this process into the container's user: seccomp filters
// loaded, capabilities limited, ids switched, no_new_privs when asked. It
// returns the command's environment, with HOME from /etc/passwd when the
// image sets none. With d (startDirect) it limits this thread, which forks
// the command, with the filters d holds, and leaves the ids to that fork
// (d.cred) and the seccomp listener to the agent (d.listener).
func becomeUser(spec *InitSpec, d *directExec) ([]string, error) {
	u, err := resolveUser(spec)
	if err != nil {
		return nil, err
	}
	env := spec.Env
	if !hasEnvKey(env, "HOME") {
		env = append(env, "HOME="+u.Home)
	}
	var filters []*unix.SockFprog
	if d != nil {
		filters, err = d.filters, d.filtersErr
	} else {
		filters, err = seccompFilters(spec)
	}
	if err != nil {
		return nil, err
	}
	load := func() error { return loadSeccompFor(spec, filters) }
	if d != nil {
		load = func() error {
			var err error
			d.listener, err = loadSeccomp(filters, spec.Mapping == "single" || spec.PortHandoff)
			return err
		}
	}
	// Without no_new_privs loading a filter takes CAP_SYS_ADMIN: load it
	// while init has it. With no_new_privs, as late as possible, so that
	// as few of init's own calls as may be meet it (as runc).
	if !spec.NoNewPrivileges {
		if err := load(); err != nil {
			return nil, err
		}
	}
	if err := dropCapabilities(spec.CapAdd, spec.CapDrop); err != nil {
		return nil, err
	}
	if d != nil {
		d.credential(u)
	} else if err := switchUser(u, spec); err != nil {
		return nil, err
	}
	if spec.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return nil, fmt.Errorf("set no_new_privs: %w", err)
		}
		if err := load(); err != nil {
			return nil, err
		}
	}
	return env, nil
}

// loadSeccompFor loads the filters and, where the agent serves the chown
// family or bind (spec.NotifySocket), hands it the listener.
func loadSeccompFor(spec *InitSpec, filters []*unix.SockFprog) error {
	listen := spec.NotifySocket > 0 && (spec.Mapping == "single" || spec.PortHandoff)
	listener, err := loadSeccomp(filters, listen)
	if err != nil || !listen {
		return err
	}
	sock := os.NewFile(uintptr(spec.NotifySocket), "notify")
	err = unix.Sendmsg(spec.NotifySocket, []byte{0}, unix.UnixRights(listener), nil, 0)
	unix.Close(listener)
	sock.Close()
	if err != nil {
		return fmt.Errorf("hand the seccomp listener to the agent: %w", err)
	}
	return nil
}

// resolveUser turns -u into ids with the image's /etc/passwd and /etc/group.
func resolveUser(spec *InitSpec) (*user.ExecUser, error) {
	def := &user.ExecUser{Uid: 0, Gid: 0, Home: "/"}
	spec2 := spec.User
	if spec.KeepID {
		spec2 = fmt.Sprintf("%d:%d", spec.HostUID, spec.HostGID)
	}
	var u *user.ExecUser
	var err error
	if f := spec.UserFiles; f != nil {
		u, err = user.GetExecUser(spec2, def, optionalReader(f.Passwd), optionalReader(f.Group))
	} else {
		u, err = user.GetExecUserPath(spec2, def, "/etc/passwd", "/etc/group")
	}
	if err != nil {
		return nil, failf(125, "user %q: %w", spec2, err)
	}
	if len(spec.GroupAdd) > 0 {
		var gids []int
		if f := spec.UserFiles; f != nil {
			gids, err = user.GetAdditionalGroups(spec.GroupAdd, optionalReader(f.Group))
		} else {
			gids, err = user.GetAdditionalGroupsPath(spec.GroupAdd, "/etc/group")
		}
		if err != nil {
			return nil, failf(125, "--group-add: %w", err)
		}
		u.Sgids = append(u.Sgids, gids...)
	}
	return u, nil
}

// optionalReader reads b, or is nil (a missing file) where b is, as
// moby/sys/user's *Path functions pass on a file they could not open.
func optionalReader(b []byte) io.Reader {
	if b == nil {
		return nil
	}
	return bytes.NewReader(b)
}

// switchUser sets the groups, gid and uid. In a nested user namespace (see
// agent.nestedUser) the ids are already the user's: only the capabilities
// go.
func switchUser(u *user.ExecUser, spec *InitSpec) error {
	if spec.NestedUID >= 0 {
		if u.Uid != spec.NestedUID || u.Gid != spec.NestedGID {
			return failf(125, "user %q is %d:%d inside, but this container was prepared for %d:%d", spec.User, u.Uid, u.Gid, spec.NestedUID, spec.NestedGID)
		}
		return dropAllCapabilities()
	}
	if u.Uid == 0 && u.Gid == 0 && len(u.Sgids) == 0 {
		return nil
	}
	if denied, _ := os.ReadFile("/proc/self/setgroups"); !strings.HasPrefix(string(denied), "deny") {
		if err := unix.Setgroups(u.Sgids); err != nil {
			return failf(125, "set groups %v: %w", u.Sgids, err)
		}
	}
	if err := unix.Setresgid(u.Gid, u.Gid, u.Gid); err != nil {
		return failf(125, "set group %d: %w (is the id inside your subordinate id range?)", u.Gid, err)
	}
	if err := unix.Setresuid(u.Uid, u.Uid, u.Uid); err != nil {
		return failf(125, "set user %d: %w (is the id inside your subordinate id range?)", u.Uid, err)
	}
	return nil
}

// dropAllCapabilities leaves a non-root user of a nested namespace with no
// capabilities, as setuid would have.
func dropAllCapabilities() error {
	unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return failf(125, "drop capabilities: %w", err)
	}
	return nil
}

var rlimitNames = map[string]int{
	"core": unix.RLIMIT_CORE, "cpu": unix.RLIMIT_CPU, "data": unix.RLIMIT_DATA, "fsize": unix.RLIMIT_FSIZE,
	"locks": unix.RLIMIT_LOCKS, "memlock": unix.RLIMIT_MEMLOCK, "msgqueue": unix.RLIMIT_MSGQUEUE,
	"nice": unix.RLIMIT_NICE, "nofile": unix.RLIMIT_NOFILE, "nproc": unix.RLIMIT_NPROC, "rss": unix.RLIMIT_RSS,
	"rtprio": unix.RLIMIT_RTPRIO, "rttime": unix.RLIMIT_RTTIME, "sigpending": unix.RLIMIT_SIGPENDING,
	"stack": unix.RLIMIT_STACK, "as": unix.RLIMIT_AS,
}
