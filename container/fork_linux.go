//go:build linux

package container

import (
	"encoding/binary"
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// forkExec starts the container's command from the calling thread, which
// startDirect prepared as the container (direct_linux.go): a fork of it
// execs path. It returns once the exec succeeded; the error of a step of
// the child's (the exec, or one before it) is an *os.PathError.
//
// Not syscall.ForkExec: that one uses vfork, which holds the calling thread
// (and its P, unpreemptible) until the child has exec'd, and the child's
// exec reads the command from the union, which this process serves. A
// garbage collection that starts meanwhile waits for that thread for ever,
// and every goroutine with it, the union's server too; with GOMAXPROCS=1
// the server has no P to answer with at all. A fork returns to the parent
// as soon as the child exists. What the child does before its exec is what
// syscall.forkAndExecInChild does for these attributes, with raw system
// calls only, as Go did before it used vfork.
func forkExec(path string, argv, env []string, files [3]int, tty bool, cred *syscall.Credential) (int, error) {
	c := &forkChild{tty: tty}
	var err error
	if c.path, err = syscall.BytePtrFromString(path); err != nil {
		return 0, err
	}
	argvp, err := syscall.SlicePtrFromStrings(argv)
	if err != nil {
		return 0, err
	}
	envp, err := syscall.SlicePtrFromStrings(env)
	if err != nil {
		return 0, err
	}
	c.argv, c.env = &argvp[0], &envp[0]
	for i, fd := range files {
		if fd < 3 {
			// dup3 onto 0..2 must not overwrite a source still to come.
			if fd, err = unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 3); err != nil {
				return 0, err
			}
			defer unix.Close(fd)
		}
		c.files[i] = uintptr(fd)
	}
	if cred != nil {
		c.cred, c.uid, c.gid = true, uintptr(cred.Uid), uintptr(cred.Gid)
		if !cred.NoSetGroups {
			c.setGroups = true
			c.groups = make([]uint32, len(cred.Groups))
			copy(c.groups, cred.Groups)
			if len(c.groups) > 0 {
				c.groupsPtr = uintptr(unsafe.Pointer(&c.groups[0]))
			}
		}
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return 0, err
	}
	defer unix.Close(p[0])
	c.report = uintptr(p[1])
	// Signals stay blocked from before the fork until the child has reset
	// their handlers (this thread's mask is restored at once).
	all, old := ^uint64(0), uint64(0)
	syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, uintptr(unsafe.Pointer(&all)), uintptr(unsafe.Pointer(&old)), 8, 0, 0)
	pid, errno := c.fork()
	syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, uintptr(unsafe.Pointer(&old)), 0, 8, 0, 0)
	unix.Close(p[1])
	if errno != 0 {
		return 0, fmt.Errorf("fork: %w", errno)
	}
	// The report pipe closes at the exec, or carries the errno of what
	// failed before it.
	var b [4]byte
	n, _ := readFull(p[0], b[:])
	if n == 0 {
		return int(pid), nil
	}
	var ws unix.WaitStatus
	unix.Wait4(int(pid), &ws, 0, nil)
	return 0, &os.PathError{Op: "exec", Path: path, Err: syscall.Errno(binary.NativeEndian.Uint32(b[:]))}
}

// readFull reads b from fd until it is full or the writer is gone.
func readFull(fd int, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Read(fd, b[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil || m == 0 {
			return n, err
		}
		n += m
	}
	return n, nil
}

// forkChild is what the child of forkExec needs, ready for raw system
// calls: it may not allocate, grow its stack or call into the runtime.
type forkChild struct {
	path      *byte
	argv, env **byte
	files     [3]uintptr
	tty       bool
	cred      bool
	setGroups bool
	uid, gid  uintptr
	groups    []uint32
	groupsPtr uintptr
	report    uintptr
	noSignals uint64 // an empty signal mask
	errno     uint32 // what failed, in the child's copy
}

// sigDefault is a struct kernel_sigaction for SIG_DFL.
var sigDefault [4]uintptr

// fork forks; the child sets itself up and execs, or writes the errno of
// what failed to c.report and exits. It returns the child's pid (in the
// parent only).
//
//go:noinline
//go:nosplit
//go:norace
func (c *forkChild) fork() (pid uintptr, err syscall.Errno) {
	pid, _, err = syscall.RawSyscall6(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0, 0, 0, 0)
	if err != 0 || pid != 0 {
		return pid, err
	}
	// The child.
	if c.tty {
		if _, _, err = syscall.RawSyscall(syscall.SYS_SETSID, 0, 0, 0); err != 0 {
			goto fail
		}
	}
	for i := uintptr(0); i < 3; i++ {
		if _, _, err = syscall.RawSyscall(syscall.SYS_DUP3, c.files[i], i, 0); err != 0 {
			goto fail
		}
	}
	if c.tty {
		if _, _, err = syscall.RawSyscall(syscall.SYS_IOCTL, 0, uintptr(syscall.TIOCSCTTY), 0); err != 0 {
			goto fail
		}
	}
	if _, _, err = syscall.RawSyscall6(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0, 0); err != 0 {
		goto fail
	}
	// No check that the agent still lives (getppid is 0 in a new pid
	// namespace): an agent that died before this has taken the union
	// along, and the exec fails (or waits until a command aborts the
	// union's connection, see wedge_linux.go).
	if c.cred {
		if c.setGroups {
			if _, _, err = syscall.RawSyscall(syscall.SYS_SETGROUPS, uintptr(len(c.groups)), c.groupsPtr, 0); err != 0 {
				goto fail
			}
		}
		if _, _, err = syscall.RawSyscall(syscall.SYS_SETGID, c.gid, 0, 0); err != 0 {
			goto fail
		}
		if _, _, err = syscall.RawSyscall(syscall.SYS_SETUID, c.uid, 0, 0); err != 0 {
			goto fail
		}
	}
	// The runtime's handlers are no use to the command: the default for
	// each, and then no signal blocked, as a new process has.
	for sig := uintptr(1); sig <= 64; sig++ {
		if sig != uintptr(syscall.SIGKILL) && sig != uintptr(syscall.SIGSTOP) {
			syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, sig, uintptr(unsafe.Pointer(&sigDefault)), 0, 8, 0, 0)
		}
	}
	if _, _, err = syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, uintptr(unsafe.Pointer(&c.noSignals)), 0, 8, 0, 0); err != 0 {
		goto fail
	}
	_, _, err = syscall.RawSyscall(syscall.SYS_EXECVE, uintptr(unsafe.Pointer(c.path)), uintptr(unsafe.Pointer(c.argv)), uintptr(unsafe.Pointer(c.env)))
fail:
	c.errno = uint32(err)
	syscall.RawSyscall(syscall.SYS_WRITE, c.report, uintptr(unsafe.Pointer(&c.errno)), 4)
	for {
		syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 253, 0, 0)
	}
}
