//go:build linux

package container

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/sys/user"
	"github.com/roost-containers/roost/netns"
	"github.com/roost-containers/roost/rootless"
	"golang.org/x/sys/unix"
)

// A container's command need not be exec'd by an init process of roost's
// own (init_linux.go), a third Go program to start on the way to it. The
// agent can prepare the container on one of its threads instead: the
// namespaces, mounts, capabilities and seccomp filters a thread has are its
// own, and a process it forks inherits them. The thread unshares the
// namespaces, mounts the root, pivots into it, limits itself as init would
// limit itself, and forks the command. The one mount that needs more is
// /proc, which shows the pid namespace of the process that mounts it: the
// thread makes one for the namespace its children go into (a pidfd of the
// thread gives that namespace, the proc filesystem's pidns option takes it;
// Linux 6.17 and later), before any process lives there.
//
// The thread (rootless.GoLocked) dies with its goroutine, once the command
// was reaped: its
// namespaces and limits are no use to anything else, and the command's
// parent-death signal is the thread's. Where the kernel lacks what this
// takes, or the container wants what only init does (--init, --ulimit, a
// user namespace of its own, a cgroup, a seccomp profile of the user's), the
// agent starts init as before.

// errNoDirect says that the kernel cannot start a container directly.
var errNoDirect = errors.New("the kernel cannot start the command without init")

// noDirect is set once a direct start failed for want of kernel support.
var noDirect atomic.Bool

// Namespace requests on a pidfd (linux/pidfd.h).
const pidfdGetPidForChildrenNamespace = 0xFF06 // _IO(0xFF, 6)

// directExec is what becomeUser leaves to the fork of the command.
type directExec struct {
	// noSetGroups: this user namespace denies setgroups (single id).
	noSetGroups bool
	// cred, if not nil, are the ids the command runs as.
	cred *syscall.Credential
	// listener is the seccomp listener for the agent (-1 for none).
	listener int
	// filters are the seccomp filters to load, compiled while the thread
	// worked, or why they could not be.
	filters    []*unix.SockFprog
	filtersErr error
}

// compiledSeccomp is what seccompFilters gave.
type compiledSeccomp struct {
	filters []*unix.SockFprog
	err     error
}

// credential sets the ids the fork switches to, where they are not root's.
func (d *directExec) credential(u *user.ExecUser) {
	groups := u.Sgids
	if d.noSetGroups {
		groups = nil
	}
	if u.Uid == 0 && u.Gid == 0 && len(groups) == 0 {
		return
	}
	c := &syscall.Credential{Uid: uint32(u.Uid), Gid: uint32(u.Gid), NoSetGroups: d.noSetGroups}
	for _, g := range groups {
		c.Groups = append(c.Groups, uint32(g))
	}
	d.cred = c
}

// direct says whether this run may start without init. A user who is not
// root in a namespace with a single id runs in a nested one (NestedUID);
// otherwise there the ids stay root's and setgroups is denied, so the fork
// of the command switches none (with a single id, setuid and its family
// would wait for the agent, seccomp_linux.go, which answers once the
// command runs).
func (a *agent) direct(in *InitSpec) bool {
	return !noDirect.Load() && os.Getenv("ROOST_INIT") == "" &&
		in.NestedUID < 0 && !in.Init && len(in.Rlimits) == 0 && a.cg == nil &&
		(in.Seccomp == "" || in.Seccomp == SeccompUnconfined)
}

// startDirect sets the container up on a thread of its own and forks the
// command from there (see the top of this file). It returns errNoDirect,
// having changed nothing, where the kernel cannot.
func (a *agent) startDirect(in *InitSpec, ready func() error) (int, error) {
	in.PortHandoff = a.handoff != nil
	var stdio [3]*os.File // the command's
	var stdout, stderr *os.File
	closeStdio := func() {
		for i, f := range stdio {
			if f != nil && (i == 0 || f != stdio[i-1]) {
				f.Close()
			}
		}
	}
	if !in.Tty {
		if a.attach != nil || a.spec.OpenStdin {
			r, w, err := os.Pipe()
			if err != nil {
				return 125, err
			}
			stdio[0], a.stdin = r, w
		} else {
			null, err := os.Open(os.DevNull)
			if err != nil {
				return 125, err
			}
			stdio[0] = null
		}
		var err error
		if stdout, stdio[1], err = os.Pipe(); err != nil {
			closeStdio()
			return 125, err
		}
		if stderr, stdio[2], err = os.Pipe(); err != nil {
			stdout.Close()
			closeStdio()
			return 125, err
		}
	}
	type forked struct {
		pid, listener int
		err           error
	}
	nsc := make(chan string, 1)
	netUp := make(chan error, 1)
	done := make(chan forked, 1)
	// The os package finds out once, by forking a child, whether pidfds
	// work, at the first os.FindProcess: here, while the thread works,
	// rather than once the command runs.
	go func() {
		if p, err := os.FindProcess(os.Getpid()); err == nil {
			p.Release()
		}
	}()
	// The seccomp filters compile here, on the other core, while the
	// thread works: they are the thread's last step before the fork.
	filters := make(chan compiledSeccomp, 1)
	go func() {
		fs, err := seccompFilters(in)
		filters <- compiledSeccomp{fs, err}
	}()
	a.reaped = make(chan struct{})
	reaped := a.reaped
	work := func(proc int, err error) {
		t := &directThread{agent: a, in: in, ready: ready, netns: nsc, netUp: netUp, filters: filters, stdio: stdio}
		var pid int
		if err == nil {
			pid, err = t.run(proc)
		}
		done <- forked{pid, t.d.listener, err}
		if err == nil {
			<-reaped
		}
	}
	if e := a.takeEarly(); e != nil && !in.HostNetwork && a.spec.NetNS == "" {
		e.work <- work
	} else {
		if e != nil {
			e.discard()
		}
		rootless.GoLocked(func() {
			work(newNamespaces(!in.HostNetwork && a.spec.NetNS == ""))
		})
	}
	var r forked
	if a.privateNetwork() {
		select {
		case p := <-nsc:
			netUp <- a.startNetwork(p)
			r = <-done
		case r = <-done:
		}
		if r.err == nil {
			Trace("agent", "network-up")
		}
	} else {
		r = <-done
	}
	closeStdio() // with a tty, the thread closes the slave

	if r.err != nil {
		close(a.reaped)
		if stdout != nil {
			stdout.Close()
			stderr.Close()
		}
		if a.console != nil {
			a.console.Close()
			a.console = nil
		}
		if errors.Is(r.err, errNoDirect) {
			noDirect.Store(true)
			if a.stdin != nil {
				a.stdin.Close()
				a.stdin = nil
			}
			return 125, r.err
		}
		var ie *initError
		if errors.As(r.err, &ie) {
			return ie.code, r.err
		}
		return 125, r.err
	}
	Trace("agent", "exec-seen")
	a.proc, _ = os.FindProcess(r.pid) // a child of ours: always found
	a.mu.Lock()
	a.exited = make(chan struct{})
	a.mu.Unlock()
	if l := listenerFile(r.listener); l != nil {
		rootless.GoLocked(func() { serveNotify(l, a.union, in.Rootfs, r.pid, a.handoff) })
	}
	return a.running(stdout, stderr)
}

// directThread is the work of the thread that starts the command.
type directThread struct {
	agent *agent
	in    *InitSpec
	ready func() error
	// netns gets the path of the thread's network namespace, for the
	// agent to give it its interface; netUp, the outcome.
	netns chan<- string
	netUp <-chan error
	// filters are the container's seccomp filters, compiled.
	filters <-chan compiledSeccomp
	// stdio are the command's standard descriptors (none with a tty).
	stdio [3]*os.File
	d     directExec
}

// newNamespaces gives this (locked) thread the container's namespaces, a
// network namespace of its own where newNet is set, and returns a detached
// proc mount for them.
func newNamespaces(newNet bool) (int, error) {
	flags := unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWPID | unix.CLONE_NEWCGROUP
	if newNet {
		flags |= unix.CLONE_NEWNET
	}
	if err := unix.Unshare(flags); err != nil {
		return -1, fmt.Errorf("new namespaces: %w", err)
	}
	proc, err := detachedProc()
	if err != nil {
		return -1, fmt.Errorf("%w: %w", errNoDirect, err)
	}
	Trace("agent", "direct-namespaces")
	return proc, nil
}

// earlyThread is a thread that made a direct start's namespaces, with a
// network namespace of their own, while the agent read its spec: the
// kernel takes a millisecond to make them (the network namespace most of
// it), which would otherwise come after the spec. work gets what the thread
// does in them, or nil where they do not fit.
type earlyThread struct {
	work chan func(proc int, err error)
}

// earlyNamespaces starts an earlyThread, where a direct start is possible.
func earlyNamespaces() *earlyThread {
	if noDirect.Load() || os.Getenv("ROOST_INIT") != "" {
		return nil
	}
	e := &earlyThread{work: make(chan func(int, error), 1)}
	rootless.GoLocked(func() {
		proc, err := newNamespaces(true)
		if fn := <-e.work; fn != nil {
			fn(proc, err)
			return
		}
		if err == nil {
			unix.Close(proc)
		}
		// The thread ends with this goroutine (it stays locked), and
		// its namespaces with it.
	})
	return e
}

// discard ends the thread unused.
func (e *earlyThread) discard() { e.work <- nil }

// takeEarly returns the agent's earlyThread, once.
func (a *agent) takeEarly() *earlyThread {
	e := a.early
	a.early = nil
	return e
}

// run prepares the container on this (locked) thread, which has its
// namespaces (newNamespaces) and the detached proc mount proc for them, and
// forks the command; it returns the command's pid.
func (t *directThread) run(proc int) (int, error) {
	a, in := t.agent, t.in
	t.d.listener = -1
	if a.spec.NetNS != "" {
		if err := netns.JoinNetns(a.spec.NetNS); err != nil {
			unix.Close(proc)
			return 0, err
		}
	}
	if a.privateNetwork() {
		t.netns <- fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
	}
	// /proc, /sys and /dev are made here, while the union mounts, and
	// prepareRoot attaches them.
	trees, err := makeSystemTrees(in, proc)
	if err != nil {
		return 0, err
	}
	defer trees.close()
	if t.ready != nil {
		if err := t.ready(); err != nil {
			return 0, err
		}
	}
	// What the agent does on the union, in its own mount namespace (this
	// thread's, until it unshares its own).
	if a.union != nil && len(in.Args) > 0 {
		name, env, cwd := in.Args[0], in.Env, in.Cwd
		a.preloads.Go(func() { preload(a.union, in.Rootfs, name, env, cwd) })
	}
	if err := a.bindEtcFiles(in.Rootfs, in); err != nil {
		return 0, err
	}
	in.UserFiles = userFiles(in.Rootfs, in)
	if denied, _ := os.ReadFile("/proc/self/setgroups"); strings.HasPrefix(string(denied), "deny") {
		t.d.noSetGroups = true
	}
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return 0, fmt.Errorf("new mount namespace: %w", err)
	}
	if err := prepareRoot(in, -1, trees); err != nil {
		return 0, err
	}
	if in.Tty {
		if err := t.console(); err != nil {
			return 0, err
		}
		// The slave is the command's alone once it runs: a hang-up
		// when it ends.
		defer t.stdio[0].Close()
	}
	Trace("agent", "direct-mounted")
	if err := enterRoot(in); err != nil {
		return 0, err
	}
	c := <-t.filters
	t.d.filters, t.d.filtersErr = c.filters, c.err
	env, err := becomeUser(in, &t.d)
	if err != nil {
		return 0, err
	}
	if err := workdir(in.Cwd); err != nil {
		return 0, err
	}
	bin, err := lookCommand(in.Args, env)
	if err != nil {
		return 0, err
	}
	if a.privateNetwork() {
		if err := <-t.netUp; err != nil {
			return 0, err
		}
	}
	var files [3]int
	for i, f := range t.stdio {
		files[i] = int(f.Fd())
	}
	pid, err := forkExec(bin, in.Args, env, files, in.Tty, t.d.cred)
	if err != nil {
		if t.d.listener >= 0 {
			unix.Close(t.d.listener)
			t.d.listener = -1
		}
		var pe *os.PathError
		if errors.As(err, &pe) {
			return 0, execFailure(in.Args[0], pe.Err)
		}
		return 0, fmt.Errorf("start the command: %w", err)
	}
	return pid, nil
}

// console opens a terminal in the container's devpts: its master is the
// agent's (a.console), its slave the command's stdio.
func (t *directThread) console() error {
	master, err := os.OpenFile(t.in.Rootfs+"/dev/pts/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open pty: %w", err)
	}
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		master.Close()
		return fmt.Errorf("get pty number: %w", err)
	}
	slave, err := os.OpenFile(t.in.Rootfs+"/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		master.Close()
		return fmt.Errorf("open pty slave: %w", err)
	}
	t.agent.console = master
	t.stdio = [3]*os.File{slave, slave, slave}
	return nil
}

// detachedProc makes a proc mount of the pid namespace that this thread's
// children go into, not yet attached anywhere (see attach). It needs Linux
// 6.17 (the proc filesystem's pidns option), 6.11 (namespaces from a pidfd)
// and 6.9 (pidfds of threads).
func detachedProc() (int, error) {
	pidfd, err := unix.PidfdOpen(unix.Gettid(), unix.PIDFD_THREAD)
	if err != nil {
		return -1, fmt.Errorf("pidfd of this thread: %w", err)
	}
	defer unix.Close(pidfd)
	ns, err := unix.IoctlRetInt(pidfd, pidfdGetPidForChildrenNamespace)
	if err != nil {
		return -1, fmt.Errorf("pid namespace for children: %w", err)
	}
	defer unix.Close(ns)
	fs, err := unix.Fsopen("proc", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("open proc: %w", err)
	}
	defer unix.Close(fs)
	if err := unix.FsconfigSetFd(fs, "pidns", ns); err != nil {
		return -1, fmt.Errorf("proc pidns option: %w", err)
	}
	if err := unix.FsconfigCreate(fs); err != nil {
		return -1, fmt.Errorf("create proc: %w", err)
	}
	m, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return -1, fmt.Errorf("mount proc: %w", err)
	}
	return m, nil
}

// attach attaches the detached mount m at target under root.
func attach(m int, root, target string) error {
	p, err := securejoin.SecureJoin(root, target)
	if err == nil {
		err = os.MkdirAll(p, 0o755)
	}
	if err == nil {
		err = unix.MoveMount(m, "", unix.AT_FDCWD, p, unix.MOVE_MOUNT_F_EMPTY_PATH)
	}
	if err != nil {
		return fmt.Errorf("mount %s: %w", target, err)
	}
	return nil
}
