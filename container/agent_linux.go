//go:build linux

package container

import (
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/roost-containers/roost/fuse"
	"github.com/roost-containers/roost/netns"
	"github.com/roost-containers/roost/rootless"
	"golang.org/x/sys/unix"
)

const agentEntry = "container-agent"

func init() { rootless.Register(agentEntry, runAgent) }

// AgentSpec is what the CLI tells the agent (its only argument, JSON).
type AgentSpec struct {
	Dir    string
	Socket string
	Layers []fuse.LayerFiles
	// MergedView is the file of the layers' merged view (fuse.Options).
	MergedView string
	Init       InitSpec
	Attach     bool
	Network    string
	// AutoRemove removes the container (and RemoveVolumes) after it exits.
	AutoRemove    bool
	RemoveVolumes []string
	StopSignal    int
	// Ports are published on the host before the container starts.
	Ports []netns.PortMapping
	// Restart is the restart policy.
	Restart RestartPolicy
	// OpenStdin keeps the container's stdin open for later attaches (-i).
	OpenStdin bool
	// Resources are cgroup v2 limits.
	Resources Resources
	// Resolver is the DNS server (host:port) the private network's
	// forwarder asks.
	Resolver string `json:",omitempty"`
	// Links are the --link targets the private network routes to.
	Links []LinkRoute `json:",omitempty"`
	// ClientAddress delivers published ports through the private
	// network's netstack, from the client's address, instead of splicing
	// them from the container's loopback.
	ClientAddress bool `json:",omitempty"`
	// ProxyPorts keeps every published port on the proxy: no TCP port is
	// handed to the container's server (netns/handoff_linux.go).
	ProxyPorts bool `json:",omitempty"`
	// NetNS, for --network container:NAME, is the network namespace init
	// joins (the agent then runs in NAME's agent's user namespace, which
	// owns it); DetachMount is NAME's union mount, inherited from that
	// agent's mount namespace, which this agent lets go.
	NetNS       string `json:",omitempty"`
	DetachMount string `json:",omitempty"`
}

// LinkRoute is one --link as the agent routes it: connections to Addr go to
// the container whose agent listens on Socket.
type LinkRoute struct {
	Addr   string
	Socket string
}

// agent runs one container.
type agent struct {
	spec AgentSpec
	log  *logWriter
	// attach is the stream of the CLI that started the container, if any;
	// attachers are every attached CLI (it too), written to by the pumps.
	attach    *FrameWriter
	attachMu  sync.Mutex
	attachers map[*FrameWriter]bool
	// proc is the container's process (its init, or the command itself).
	proc   *os.Process
	exited chan struct{}
	// stopping is closed when stop or kill asked the container to end: the
	// restart policy then no longer applies.
	stopping chan struct{}
	stopOnce sync.Once
	restarts int
	mu       sync.Mutex
	state    State
	stdin    io.WriteCloser
	console  *os.File
	pumps    sync.WaitGroup
	ports    []netns.PortMapping
	// handoff, where set, is the port proxy whose TCP ports init's bind
	// calls may take (netns/handoff_linux.go).
	handoff *netns.PortProxy
	// writable and imageLowers are the union\'s layers, to read
	// /etc/passwd: the lower ones with their indexes, read on first use.
	writable    string
	imageLowers func() ([]fuse.Lower, error)
	// union is the container's root filesystem, served here.
	union *fuse.Mount
	// etcBinds are the /etc files bound onto the union here (see
	// bindEtcFiles), to unmount before the union.
	etcBinds []string
	// preloads are the preload goroutines. Each makes system calls on
	// the union, which this process serves: it must not exit while one
	// is under way, or the call waits for an answer forever (a request
	// the server read but did not answer cannot be interrupted).
	preloads sync.WaitGroup
	// viewSave is the writing of the layers' merged view, which the exit
	// status waits for: a start right after a foreground run finds it.
	viewSave sync.WaitGroup
	// cg is the container's cgroup, when one could be made under
	// cgParent (cgroupParent, "" for none).
	cg       *cgroup
	cgParent string
	// reaped is closed when the current init was waited for.
	reaped chan struct{}
	// nat is the private network of the current run, if it has one.
	nat *netns.NAT
	// dialer dials inside the container's network namespace for linked
	// containers; dialerPid is the init it was made for.
	dialerMu  sync.Mutex
	dialer    *netns.Dialer
	dialerPid int
	// early is the thread that makes a direct start's namespaces while
	// the spec is read (earlyNamespaces), until the first start takes it.
	early *earlyThread
}

// runAgent is the agent's entry point: fd 3 is the status pipe to the CLI,
// fd 4 the attach socket when AgentSpec.Attach is set.
func runAgent(args []string) int {
	// No garbage collection while the container starts, nor in the first
	// second of its run, unless the heap reaches startHeapLimit: it would
	// only compete with the start, and a short container's run and exit,
	// for the CPU (the heap stays a few MB). settle turns it on.
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(startHeapLimit)
	status := os.NewFile(3, "status")
	report := func(st Started) {
		if status != nil {
			writeJSON(status, st)
			status.Close()
			status = nil
		}
	}
	Trace("agent", "start")
	// A container with a cgroup of its own starts through init: no early
	// namespaces for it.
	cgParent := cgroupParent()
	var early *earlyThread
	if cgParent == "" {
		early = earlyNamespaces()
	}
	// The container's processes get the open-file limit at its hard value,
	// as Podman gives it: a process the agent forks has the agent's, which
	// the Go runtime raised (to one below), and init and exec get it too
	// once the agent set it (the runtime gives its children back the limit
	// it started with, unless the program set one).
	var nofile syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &nofile) == nil && nofile.Cur != nofile.Max {
		nofile.Cur = nofile.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &nofile)
	}
	prespawned := len(args) == 2 && args[0] == specOnStdin
	var dir string
	if prespawned {
		dir = args[1]
		// Started ahead of its container (Store.Prespawn): the spec
		// comes on stdin, or nothing when the CLI gave up.
		b, err := io.ReadAll(os.Stdin)
		if err != nil || len(b) == 0 {
			return 125
		}
		args = []string{string(b)}
	}
	var spec AgentSpec
	if len(args) != 1 || json.Unmarshal([]byte(args[0]), &spec) != nil || prespawned && spec.Dir != dir {
		report(Started{Error: "internal error: bad agent arguments", Code: 125})
		return 125
	}
	if prespawned {
		// What the agent has to say goes to the container's agent.log,
		// where the CLI looks when the start fails.
		logf, err := os.OpenFile(filepath.Join(spec.Dir, "agent.log"), os.O_WRONLY|os.O_APPEND, 0)
		if err == nil {
			unix.Dup3(int(logf.Fd()), 1, 0)
			unix.Dup3(int(logf.Fd()), 2, 0)
			logf.Close()
		}
		devnull, err := os.Open(os.DevNull)
		if err == nil {
			unix.Dup3(int(devnull.Fd()), 0, 0)
			devnull.Close()
		}
		Trace("agent", "spec")
	}
	a := &agent{spec: spec, stopping: make(chan struct{}), early: early, cgParent: cgParent}
	defer func() {
		if e := a.takeEarly(); e != nil {
			e.discard()
		}
	}()
	if spec.Attach {
		conn := os.NewFile(4, "attach")
		a.attach = NewFrameWriter(conn)
		a.addAttacher(a.attach)
		go a.readAttach(conn)
	}
	code, err := a.run(func(pid int) { report(Started{Pid: pid}) })
	if err != nil {
		st := Started{Error: err.Error(), Code: 125}
		var ie *initError
		if errors.As(err, &ie) {
			st.Code = ie.code
		}
		report(st)
		fmt.Fprintln(os.Stderr, "roost agent:", err)
		return st.Code
	}
	return code // the container's last exit status
}

// run starts the container, reports its pid through started, and waits.
func (a *agent) run(started func(pid int)) (int, error) {
	lock, err := os.OpenFile(filepath.Join(a.spec.Dir, "agent.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return 0, err
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return 0, fmt.Errorf("container is already running (%w)", ErrConflict)
	}
	defer lock.Close()
	// What an earlier agent wrote names a process that no longer holds
	// the lock (see unwedge).
	if err := lock.Truncate(0); err != nil {
		return 0, err
	}
	if a.spec.DetachMount != "" {
		// Holding the other container's union would keep its agent from
		// unmounting it.
		unix.Unmount(a.spec.DetachMount, unix.MNT_DETACH)
	}
	a.imageLowers = sync.OnceValues(func() ([]fuse.Lower, error) { return fuse.ReadLowers(a.spec.Layers) })
	rootfs := filepath.Join(a.spec.Dir, "rootfs")
	writable := filepath.Join(a.spec.Dir, "diff")
	a.writable = writable
	// Reading the layers' indexes takes milliseconds for a large image: the
	// union does it, with the mount, while the container starts, where it
	// has no merged view of them; here only where -u names a user that
	// must be looked up in the image first (see nestedUser).
	var lowers []fuse.Lower
	if a.needsLookup() {
		if lowers, err = a.imageLowers(); err != nil {
			return 0, err
		}
	}
	if err := a.nestedUser(writable, lowers); err != nil {
		return 125, err
	}
	// The union mounts while the container's namespaces and the rest of
	// this start are made: it is what the start waits for longest. (init
	// gets its mount namespace once the spec comes, after the mount.)
	var m *fuse.Mount
	mounted := make(chan error, 1)
	var lockInfo sync.WaitGroup // see writeLockInfo
	lockInfo.Add(1)
	go func() {
		defer lockInfo.Done()
		var err error
		if lowers == nil {
			// The union reads the indexes where it has no merged view.
			for _, l := range a.spec.Layers {
				lowers = append(lowers, fuse.Lower{Tar: l.Tar, IndexFile: l.Index})
			}
		}
		m, err = fuse.New(rootfs, fuse.Options{Lowers: lowers, MergedView: a.spec.MergedView, Writable: writable, Ephemeral: a.spec.AutoRemove, MountTargets: a.etcTargets()})
		if err == nil {
			a.union = m
			Trace("agent", "fuse-mounted")
		}
		mounted <- err
		if err == nil {
			// While the start goes on (it stats the union), and before
			// the start is reported.
			writeLockInfo(lock, rootfs)
		}
	}()
	waitMount := sync.OnceValue(func() error { return <-mounted })
	// A failure before the start leaves no mount behind.
	dropMount := func() {
		if waitMount() == nil {
			unmount(m)
		}
	}
	fail := func(code int, err error) (int, error) {
		dropMount()
		a.log.close()
		a.finish(code, err.Error())
		return code, err
	}
	a.log, err = openLog(filepath.Join(a.spec.Dir, "ctr.log"))
	if err != nil {
		dropMount()
		return 0, err
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fail(125, fmt.Errorf("make mounts private: %w", err))
	}
	// A cgroup of its own where one is delegated: limits, and the freezer.
	if parent := a.cgParent; parent != "" {
		cg, err := newCgroup(parent, filepath.Base(a.spec.Dir), a.spec.Resources)
		if err != nil && !a.spec.Resources.Empty() {
			return fail(125, err)
		}
		if err == nil {
			a.cg = cg
			defer cg.remove()
		}
	} else if !a.spec.Resources.Empty() {
		return fail(125, errors.New("--memory, --cpus and --pids-limit need cgroup v2 with a cgroup delegated to you (systemd user session, or ROOST_CGROUP naming one): see roost info"))
	}
	var proxy *netns.PortProxy
	if len(a.spec.Ports) > 0 {
		if proxy, err = netns.Listen(a.spec.Ports); err != nil {
			return fail(125, err)
		}
		defer proxy.Close()
		a.ports = proxy.Bound
		if a.privateNetwork() && !a.spec.ProxyPorts && a.spec.NetNS == "" && publishesTCP(proxy.Bound) {
			a.handoff = proxy
		}
	}
	var ln *controlSocket
	var code int
	backoff := 100 * time.Millisecond
	for run := 0; ; run++ {
		ready := waitMount
		if run > 0 {
			ready = nil
			if proxy != nil {
				proxy.Reclaim() // the last run's sockets went with it
			}
		}
		code, err = a.start(rootfs, ready)
		if err == nil && proxy != nil && a.spec.ClientAddress && a.nat != nil {
			proxy.Serve(a.nat)
		} else if err == nil && proxy != nil {
			// Each start is a new network namespace: dial into this one.
			var d *netns.Dialer
			if d, err = netns.NewDialer(fmt.Sprintf("/proc/%d/ns/net", a.state.Pid)); err != nil {
				a.proc.Kill()
				a.wait()
				code = 125
			} else {
				proxy.Serve(d)
			}
		}
		if err != nil && run == 0 {
			a.log.close()
			if waitMount() == nil {
				a.preloads.Wait()
				a.unbindEtcFiles()
				unmount(m)
			}
			a.finish(code, err.Error())
			return code, err
		}
		if run == 0 {
			Trace("agent", "started")
			// Listen first: a `run -d` that returned can be followed
			// by an exec at once.
			ln = a.listen()
			lockInfo.Wait()
			started(a.state.Pid)
			// A union that built its layers' tree writes their
			// merged view now, off the start's path.
			a.viewSave.Go(m.SaveView)
			if ln != nil {
				ln.watch()
			}
			// An idle agent should cost little: once the container ran
			// for a second, collect garbage as usual and return what
			// start-up used (settle). A short one is gone by then; for
			// it, that would only mean faulting the pages back in for its
			// exit and clean-up.
			settling := time.AfterFunc(time.Second, settle)
			defer settling.Stop()
		}
		var upFor time.Duration
		if err == nil {
			code = a.wait()
			upFor = time.Since(a.state.StartedAt)
		}
		Trace("agent", "exited")
		if !a.restart(code) {
			break
		}
		// Docker's back-off: 100 ms doubling, reset after 10 s of uptime.
		if upFor > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		a.mu.Lock()
		a.restarts++
		a.state = State{Status: "restarting", Restarting: true, ExitCode: code, FinishedAt: time.Now().UTC(), StartedAt: a.state.StartedAt, AgentPid: os.Getpid(), RestartCount: a.restarts}
		writeState(a.spec.Dir, &a.state)
		a.mu.Unlock()
		select {
		case <-time.After(backoff):
		case <-a.stopping:
		}
		if backoff < time.Minute {
			backoff *= 2
		}
		if a.stopRequested() {
			break
		}
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(code))
	if a.spec.AutoRemove {
		// A container that goes needs no final state. Without its record
		// it is gone for every command (see Store.records) and its name is
		// free: the CLI may return at once, and the rest (its log, its
		// control socket, its files) goes after.
		os.Remove(filepath.Join(a.spec.Dir, recordFile))
		Trace("agent", "cleaned-up")
		unix.Flock(int(lock.Fd()), unix.LOCK_UN)
		a.viewSave.Wait()
		a.broadcast(StreamExit, b[:])
		a.log.close()
		if ln != nil {
			ln.Close()
		}
		a.preloads.Wait()
		a.remove(m)
		return code, nil
	}
	a.log.close()
	if ln != nil {
		ln.Close()
		os.RemoveAll(filepath.Dir(a.spec.Socket))
	}
	a.finish(code, "")
	a.preloads.Wait()
	a.viewSave.Wait()
	a.unbindEtcFiles()
	unmount(m)
	Trace("agent", "cleaned-up")
	// The container is stopped: a new start may begin. What is left is the
	// exit of this process, which tears down the last network namespace
	// with the TUN device in it, and that takes the kernel a while.
	unix.Flock(int(lock.Fd()), unix.LOCK_UN)
	// Last, so that a foreground `run` returns when all is done.
	a.broadcast(StreamExit, b[:])
	return code, nil
}

// remove deletes a --rm container whose record is gone: its socket, its
// anonymous volumes and its directory with the writable layer. The union
// is only detached, without waiting for its server to stop: this process's
// exit ends it. A crash before the end leaves a directory without a record,
// which `container prune` removes.
func (a *agent) remove(m *fuse.Mount) {
	os.RemoveAll(filepath.Dir(a.spec.Socket))
	if m.Detach() != nil {
		a.unbindEtcFiles()
		unmount(m)
	}
	for _, v := range a.spec.RemoveVolumes {
		os.RemoveAll(v)
	}
	os.RemoveAll(a.spec.Dir)
}

// preload pushes the program the command names, and for a dynamically
// linked one its loader and libraries, into the page cache while init
// starts (see fuse.Mount.Preload).
func preload(m *fuse.Mount, rootfs, name string, env []string, cwd string) {
	programFiles(rootfs, name, env, cwd, func(p string) { m.Preload(strings.TrimPrefix(p, rootfs)) })
}

// programFiles calls visit with the host path of each file the command name
// will load, as far as can be told before init's mounts (a volume may still
// hide one; that costs a preload): the program as init's lookup in the
// container's PATH (or from its working directory) finds it, then for an
// ELF program its loader (PT_INTERP) and its libraries (DT_NEEDED) where
// they are in the usual directories. A stat of each makes the kernel look
// it up, as Preload needs.
func programFiles(rootfs, name string, env []string, cwd string, visit func(string)) {
	var candidates []string
	if strings.Contains(name, "/") {
		candidates = []string{path.Join("/", cwd, name)}
	} else {
		for dir := range strings.SplitSeq(searchPath(env), ":") {
			if strings.HasPrefix(dir, "/") {
				candidates = append(candidates, path.Join(dir, name))
			}
		}
	}
	for _, c := range candidates {
		if p, ok := statInRoot(rootfs, c, true); ok {
			visit(p)
			elfDependencies(rootfs, p, visit)
			return
		}
	}
}

// statInRoot resolves the container path c inside rootfs and returns it
// where it is a regular file (an executable one, with exec).
func statInRoot(rootfs, c string, exec bool) (string, bool) {
	p, err := securejoin.SecureJoin(rootfs, c)
	if err != nil {
		return "", false
	}
	fi, err := os.Stat(p)
	if err != nil || !fi.Mode().IsRegular() || exec && fi.Mode()&0o111 == 0 {
		return "", false
	}
	return p, true
}

// libraryDirs are where elfDependencies looks for a program's libraries:
// the usual places of glibc (Debian's multiarch directories first) and
// musl. The loader's own search (ld.so.cache, RUNPATH) decides what runs;
// a library not found here is only not preloaded.
var libraryDirs = sync.OnceValue(func() []string {
	triple := map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}[runtime.GOARCH]
	return []string{"/lib/" + triple, "/usr/lib/" + triple, "/lib64", "/usr/lib64", "/lib", "/usr/lib"}
})

// elfDependencies visits the loader and the libraries of the ELF program
// at p (see programFiles).
func elfDependencies(rootfs, p string, visit func(string)) {
	f, err := elf.Open(p)
	if err != nil {
		return
	}
	defer f.Close()
	for _, ph := range f.Progs {
		if ph.Type != elf.PT_INTERP {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(ph.Open(), 4096))
		if err != nil {
			continue
		}
		if q, ok := statInRoot(rootfs, strings.TrimRight(string(b), "\x00"), false); ok {
			visit(q)
		}
	}
	libs, _ := f.ImportedLibraries()
	for _, lib := range libs {
		if strings.Contains(lib, "/") {
			continue
		}
		for _, dir := range libraryDirs() {
			if q, ok := statInRoot(rootfs, path.Join(dir, lib), false); ok {
				visit(q)
				break
			}
		}
	}
}

// bindEtcFiles binds the container's /etc/hosts, /etc/hostname and
// /etc/resolv.conf onto the union here, while init starts, rather than in
// init on its way to the command: init's copy of this mount namespace has
// them. Where one of init's own mounts may cover them (coveredByInit), init
// binds them after it, as before. The binds stay for the container's
// restarts.
func (a *agent) bindEtcFiles(rootfs string, in *InitSpec) error {
	targets := slices.Sorted(maps.Keys(in.EtcFiles))
	if a.etcBinds == nil {
		if coveredByInit(rootfs, in, targets...) {
			return nil
		}
		a.etcBinds = []string{}
		for _, target := range targets {
			p, err := securejoin.SecureJoin(rootfs, target)
			if err == nil {
				err = bindFile(in.EtcFiles[target], p, false)
			}
			if err != nil {
				return fmt.Errorf("mount %s: %w", target, err)
			}
			a.etcBinds = append(a.etcBinds, p)
		}
	}
	in.EtcFiles = nil
	return nil
}

// coveredByInit tells whether one of init's mounts (volumes, devices),
// which come after the agent's work on the union, may cover one of the
// container paths: the path is the mount's target or lies under it, both
// resolved inside rootfs.
func coveredByInit(rootfs string, in *InitSpec, paths ...string) bool {
	if len(in.Mounts) == 0 && len(in.Devices) == 0 {
		return false
	}
	targets := make([]string, 0, len(in.Mounts)+len(in.Devices))
	for _, m := range in.Mounts {
		targets = append(targets, m.Destination)
	}
	for _, d := range in.Devices {
		targets = append(targets, d.PathInContainer)
	}
	for _, c := range paths {
		p, err := securejoin.SecureJoin(rootfs, c)
		if err != nil {
			return true
		}
		for _, t := range targets {
			if t, err := securejoin.SecureJoin(rootfs, t); err != nil || p == t || strings.HasPrefix(p, t+"/") {
				return true
			}
		}
	}
	return false
}

// unbindEtcFiles unmounts what bindEtcFiles bound, so that the union can
// be unmounted.
func (a *agent) unbindEtcFiles() {
	for _, p := range a.etcBinds {
		unix.Unmount(p, unix.MNT_DETACH)
	}
	a.etcBinds = nil
}

// userFiles reads the image's /etc/passwd and /etc/group from the union at
// rootfs, as init would (a symlink resolves inside rootfs), so that init has
// them without two more files to read through FUSE on its way to the
// command. It returns nil, and leaves the reading to init, where one of
// init's mounts may cover them (coveredByInit) or a read fails.
func userFiles(rootfs string, in *InitSpec) *UserFiles {
	if coveredByInit(rootfs, in, "/etc/passwd", "/etc/group") {
		return nil
	}
	var f UserFiles
	for name, b := range map[string]*[]byte{"/etc/passwd": &f.Passwd, "/etc/group": &f.Group} {
		p, err := securejoin.SecureJoin(rootfs, name)
		if err != nil {
			return nil
		}
		content, err := os.ReadFile(p)
		switch {
		case err == nil:
			*b = content
		case !errors.Is(err, os.ErrNotExist):
			return nil
		}
	}
	return &f
}

// unmount unmounts the union, but does not wait long: the agent's exit ends
// its mount namespace, and the mount with it, in any case.
func unmount(m *fuse.Mount) {
	done := make(chan error, 1)
	go func() { done <- m.Unmount() }()
	select {
	case err := <-done:
		if err != nil {
			fmt.Fprintln(os.Stderr, "roost agent:", err)
		}
	case <-time.After(3 * time.Second):
		fmt.Fprintln(os.Stderr, "roost agent: unmount did not finish in 3s; exiting ends the mount")
	}
}

// nestedUser decides whether the command runs in a user namespace nested in
// the agent's: where this namespace has a single id (no subuid range) a
// non-root -u cannot be mapped, and --userns=keep-id wants the caller's own
// uid; both get a namespace whose only id is that user, mapped onto root
// here, so that it owns the image's files as root does. Init then creates
// the container's namespaces as the owner of the nested user namespace.
func (a *agent) nestedUser(writable string, lowers []fuse.Lower) error {
	in := &a.spec.Init
	in.NestedUID, in.NestedGID = -1, -1
	switch {
	case in.KeepID:
		in.NestedUID, in.NestedGID = in.HostUID, in.HostGID
	case a.needsLookup():
		u, err := lookupUser(in.User, func(p string) ([]byte, error) { return imageFile(writable, lowers, p) })
		if err != nil {
			return &initError{code: 125, err: fmt.Errorf("user %q: %w", in.User, err)}
		}
		if u.Uid != 0 || u.Gid != 0 {
			in.NestedUID, in.NestedGID = u.Uid, u.Gid
		}
	}
	return nil
}

// needsLookup tells whether nestedUser must read the image's user database:
// -u names a user where this namespace has a single id.
func (a *agent) needsLookup() bool {
	in := &a.spec.Init
	return !in.KeepID && in.Mapping == "single" && in.User != ""
}

// finish records the final state.
func (a *agent) finish(code int, errMsg string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.state.Status = "exited"
	a.state.Running = false
	a.state.Pid = 0
	a.state.Ports = nil
	a.state.Restarting = false
	a.state.RestartCount = a.restarts
	a.state.ExitCode = code
	a.state.Error = errMsg
	a.state.FinishedAt = time.Now().UTC()
	if a.state.StartedAt.IsZero() {
		a.state.StartedAt = a.state.FinishedAt
	}
	writeState(a.spec.Dir, &a.state)
}

// start starts the container's command, from a thread of the agent where it
// can (startDirect), else through init (startInit), and returns once the
// command was exec'd. Where ready is set, the root is set up only once ready
// returned (the union is mounted), and start fails with ready's error.
func (a *agent) start(rootfs string, ready func() error) (int, error) {
	init := a.initSpec(rootfs)
	if a.direct(&init) {
		code, err := a.startDirect(&init, ready)
		if !errors.Is(err, errNoDirect) {
			return code, err
		}
		Trace("agent", "no-direct")
	}
	if e := a.takeEarly(); e != nil {
		e.discard()
	}
	return a.startInit(init, ready)
}

// etcTargets are the union's paths that bindEtcFiles binds the container's
// /etc files onto, for the union to create where the image lacks them
// (fuse.Options.MountTargets): none where a mount of the container's may
// cover them, which bindEtcFiles leaves to init.
func (a *agent) etcTargets() []string {
	in := &a.spec.Init
	if len(in.Mounts) > 0 || len(in.Devices) > 0 {
		return nil
	}
	var ts []string
	for _, f := range []string{"hosts", "hostname", "resolv.conf"} {
		if _, err := os.Stat(filepath.Join(a.spec.Dir, f)); err == nil {
			ts = append(ts, "etc/"+f)
		}
	}
	return ts
}

// initSpec is the spec of the container's init for this run.
func (a *agent) initSpec(rootfs string) InitSpec {
	init := a.spec.Init
	init.Rootfs = rootfs
	init.EtcFiles = map[string]string{}
	for _, f := range []string{"hosts", "hostname", "resolv.conf"} {
		p := filepath.Join(a.spec.Dir, f)
		if _, err := os.Stat(p); err == nil {
			init.EtcFiles["/etc/"+f] = p
		}
	}
	if p := filepath.Join(a.spec.Dir, aptSingleIDFile); init.Mapping == "single" {
		if _, err := os.Stat(p); err == nil {
			init.AptConf = p
		}
	}
	return init
}

// startInit clones the container's init, which sets the container up and
// execs the command, and waits until it did.
func (a *agent) startInit(init InitSpec, ready func() error) (int, error) {
	rootfs := init.Rootfs
	specR, specW, err := os.Pipe()
	if err != nil {
		return 125, err
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return 125, err
	}
	cmd := exec.Command("/proc/self/exe")
	cmd.Args[0] = initEntry
	cmd.Env = []string{"ROOST_REEXEC=" + initEntry}
	if tracing {
		cmd.Env = append(cmd.Env, "ROOST_TRACE="+os.Getenv("ROOST_TRACE"))
	}
	// No CLONE_NEWNS: init unshares its mount namespace when the spec
	// came, and so sees the union mounted (see ready).
	flags := uintptr(unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWCGROUP)
	if !init.HostNetwork && a.spec.NetNS == "" {
		flags |= unix.CLONE_NEWNET
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Pdeathsig: syscall.SIGKILL}
	if a.cg != nil {
		f, err := a.cg.open()
		if err != nil {
			return 125, err
		}
		defer f.Close()
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(f.Fd())
	}
	if init.NestedUID >= 0 {
		// The user runs as the only id of a user namespace of its own,
		// mapped onto this namespace's root (see nestedUser).
		cmd.SysProcAttr.Cloneflags |= unix.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: init.NestedUID, HostID: 0, Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: init.NestedGID, HostID: 0, Size: 1}}
		// Init is not root there, so exec would drop the capabilities it
		// needs to set up the container: carry them as ambient ones.
		for c := 0; c <= unix.CAP_CHECKPOINT_RESTORE; c++ {
			cmd.SysProcAttr.AmbientCaps = append(cmd.SysProcAttr.AmbientCaps, uintptr(c))
		}
	}
	cmd.ExtraFiles = []*os.File{specR, statusW}
	var consoleParent *os.File
	var stdout, stderr *os.File
	if init.Tty {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return 125, err
		}
		consoleParent = os.NewFile(uintptr(fds[0]), "console")
		consoleChild := os.NewFile(uintptr(fds[1]), "console-child")
		defer consoleChild.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, consoleChild)
	}
	init.PortHandoff = a.handoff != nil
	var notifyParent, notifyChild *os.File
	if init.Mapping == "single" || init.PortHandoff {
		// The agent serves the chown family (chown_linux.go) and bind
		// (bind_linux.go).
		if notifyParent, notifyChild, err = notifySocket(); err != nil {
			return 125, err
		}
		defer notifyChild.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, notifyChild)
		init.NotifySocket = 2 + len(cmd.ExtraFiles)
	}
	if !init.Tty {
		// Own pipes, not cmd.StdoutPipe: Wait would close those before
		// the output was read.
		var outW, errW *os.File
		if a.attach != nil || a.spec.OpenStdin {
			inR, inW, err := os.Pipe()
			if err != nil {
				return 125, err
			}
			defer inR.Close()
			cmd.Stdin, a.stdin = inR, inW
		}
		outR, outW, err := os.Pipe()
		if err != nil {
			return 125, err
		}
		errR, errW, err := os.Pipe()
		if err != nil {
			return 125, err
		}
		defer outW.Close()
		defer errW.Close()
		cmd.Stdout, cmd.Stderr = outW, errW
		stdout, stderr = outR, errR
	}
	if err := a.startPinned(cmd, a.spec.NetNS); err != nil {
		if notifyParent != nil {
			notifyParent.Close()
		}
		return 125, fmt.Errorf("start container init: %w", err)
	}
	if notifyChild != nil {
		notifyChild.Close() // init's alone now: EOF when it goes
	}
	a.proc = cmd.Process
	a.mu.Lock()
	a.exited = make(chan struct{})
	a.mu.Unlock()
	specR.Close()
	statusW.Close()
	if f, ok := cmd.Stdout.(*os.File); ok {
		f.Close()
	}
	if f, ok := cmd.Stderr.(*os.File); ok {
		f.Close()
	}
	// abandon ends init before it had its spec.
	abandon := func(err error) (int, error) {
		specW.Close()
		cmd.Process.Kill()
		statusR.Close()
		if notifyParent != nil {
			notifyParent.Close()
		}
		cmd.Wait()
		close(a.reaped)
		return 125, err
	}
	if ready != nil {
		if err := ready(); err != nil {
			return abandon(err)
		}
	}
	if a.union != nil && len(init.Args) > 0 {
		name, env, cwd := init.Args[0], init.Env, init.Cwd
		a.preloads.Go(func() { preload(a.union, rootfs, name, env, cwd) })
	}
	if err := a.bindEtcFiles(rootfs, &init); err != nil {
		return abandon(err)
	}
	init.NetworkPending = a.privateNetwork()
	init.UserFiles = userFiles(rootfs, &init)
	init.SeccompFilters = precompiledSeccomp(&init)
	json.NewEncoder(specW).Encode(init)
	if init.NetworkPending {
		// While init sets up the container; it execs the command once
		// the pipe closes.
		if err := a.startNetwork(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)); err != nil {
			specW.Close()
			cmd.Process.Kill()
			// Init may have failed first, and taken its namespace along:
			// its report is the one to give.
			code := 125
			var ee ExecError
			if json.NewDecoder(statusR).Decode(&ee) == nil {
				code, err = ee.Code, &initError{code: ee.Code, err: errors.New(ee.Message)}
			}
			statusR.Close()
			cmd.Wait()
			close(a.reaped)
			return code, err
		}
		Trace("agent", "network-up")
	}
	specW.Close()
	if consoleParent != nil {
		a.console = recvConsole(consoleParent)
		consoleParent.Close()
	}
	var ee ExecError
	if err := json.NewDecoder(statusR).Decode(&ee); err == nil {
		statusR.Close()
		if notifyParent != nil {
			notifyParent.Close()
		}
		cmd.Wait()
		close(a.reaped)
		return ee.Code, &initError{code: ee.Code, err: errors.New(ee.Message)}
	}
	statusR.Close()
	Trace("agent", "exec-seen")
	if notifyParent != nil {
		if l := recvListener(notifyParent); l != nil {
			rootless.GoLocked(func() { serveNotify(l, a.union, rootfs, cmd.Process.Pid, a.handoff) })
		}
	}
	return a.running(stdout, stderr)
}

// running records the container's process (a.proc) as running and copies
// its output (the console's, or stdout and stderr) to the log.
func (a *agent) running(stdout, stderr *os.File) (int, error) {
	if a.cg != nil {
		if err := a.cg.limitPids(); err != nil {
			a.proc.Kill()
			a.wait()
			return 125, err
		}
	}
	a.mu.Lock()
	a.state = State{Status: "running", Running: true, Pid: a.proc.Pid, StartedAt: time.Now().UTC(), AgentPid: os.Getpid(), Ports: a.ports, RestartCount: a.restarts}
	writeState(a.spec.Dir, &a.state)
	a.mu.Unlock()
	if a.console != nil {
		a.pumps.Add(1)
		go a.pump("stdout", a.console)
	} else {
		a.pumps.Add(2)
		go a.pump("stdout", stdout)
		go a.pump("stderr", stderr)
	}
	return 0, nil
}

// publishesTCP says whether ms publish a TCP port.
func publishesTCP(ms []netns.PortMapping) bool {
	for _, m := range ms {
		if m.Proto == "tcp" {
			return true
		}
	}
	return false
}

// privateNetwork says whether the container has a network namespace of its
// own with user-mode NAT (not --network host or none).
func (a *agent) privateNetwork() bool {
	return private(a.spec.Network)
}

// startNetwork gives the network namespace at nsPath its interface and
// serves it; the network of a previous run ends. The last one is never
// closed: the agent's exit ends it, and closing it first would only delay
// that exit (its goroutines take tens of milliseconds to wind down).
func (a *agent) startNetwork(nsPath string) error {
	if old := a.nat; old != nil {
		go old.Close()
		a.nat = nil
	}
	fd, err := netns.OpenTUN(nsPath)
	if err != nil {
		return err
	}
	o := netns.NATOptions{Resolver: a.spec.Resolver}
	for _, l := range a.spec.Links {
		addr, err := netip.ParseAddr(l.Addr)
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("link address %q: %w", l.Addr, err)
		}
		if o.Links == nil {
			o.Links = map[netip.Addr]netns.DialFunc{}
		}
		o.Links[addr] = linkDialer(l.Socket)
	}
	nat, err := netns.StartNAT(fd, o)
	if err != nil {
		return err
	}
	a.nat = nat
	return nil
}

// linkDialer reaches ports of a linked container through its agent (the
// "dial" request).
func linkDialer(socket string) netns.DialFunc {
	return func(network, addr string) (net.Conn, error) {
		c, err := net.DialTimeout("unix", socket, 5*time.Second)
		if err != nil {
			return nil, fmt.Errorf("reach linked container: %w", err)
		}
		var rep Reply
		if err := writeJSON(c, Request{Op: "dial", Network: network, Addr: addr}); err == nil {
			err = readJSON(c, &rep)
		}
		if err == nil && rep.Error != "" {
			err = errors.New(rep.Error)
		}
		if err != nil {
			c.Close()
			return nil, err
		}
		if network == "udp" {
			return &DatagramConn{Conn: c}, nil
		}
		return c, nil
	}
}

// dial connects to addr inside the container's network namespace and, once
// the reply went out, relays between that connection and c.
func (a *agent) dial(c net.Conn, network, addr string) {
	a.mu.Lock()
	pid := a.state.Pid
	a.mu.Unlock()
	if pid == 0 {
		writeJSON(c, Reply{Error: "container is not running"})
		return
	}
	a.dialerMu.Lock()
	if a.dialer == nil || a.dialerPid != pid {
		if a.dialer != nil {
			a.dialer.Close()
		}
		d, err := netns.NewDialer(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil {
			a.dialerMu.Unlock()
			writeJSON(c, Reply{Error: err.Error()})
			return
		}
		a.dialer, a.dialerPid = d, pid
	}
	d := a.dialer
	a.dialerMu.Unlock()
	out, err := d.Dial(network, addr)
	if err != nil {
		writeJSON(c, Reply{Error: err.Error()})
		return
	}
	if writeJSON(c, Reply{}) != nil {
		out.Close()
		return
	}
	if network == "udp" {
		netns.RelayDatagrams(&DatagramConn{Conn: c}, out)
		return
	}
	netns.Relay(c, out)
}

// spawn starts the agent of a container that joins this one's network
// namespace (--network container:NAME): only a process in this agent's user
// namespace may join it. After the request, one byte carries the new
// agent's status pipe, log and, if attached, attach socket (SCM_RIGHTS).
func (a *agent) spawn(c *net.UnixConn, spec string) error {
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(3*4))
	_, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return fmt.Errorf("receive the agent's descriptors: %w", err)
	}
	var files []*os.File
	msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			files = append(files, os.NewFile(uintptr(fd), "spawned"))
		}
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if len(files) < 2 {
		return errors.New("receive the agent's descriptors: want a status pipe and a log")
	}
	cmd := exec.Command("/proc/self/exe", spec)
	cmd.Args[0] = agentEntry
	cmd.Env = append(os.Environ(), "ROOST_REEXEC="+agentEntry)
	cmd.Stdout, cmd.Stderr = files[1], files[1]
	cmd.ExtraFiles = append([]*os.File{files[0]}, files[2:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS, Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start agent: %w", err)
	}
	go cmd.Wait()
	return nil
}

// recvConsole receives the pty master init sends.
func recvConsole(sock *os.File) *os.File {
	fd := recvFd(sock)
	if fd < 0 {
		return nil
	}
	return os.NewFile(uintptr(fd), "pty-master")
}

// recvFd receives one descriptor sent with SCM_RIGHTS; -1 when none came.
func recvFd(sock *os.File) int {
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil || oobn == 0 {
		return -1
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) == 0 {
		return -1
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) == 0 {
		return -1
	}
	return fds[0]
}

// pump copies one output stream of the container to its log and to the
// attached CLI, if any; a CLI that went away does not stop the container.
func (a *agent) pump(stream string, r io.Reader) {
	defer a.pumps.Done()
	id := byte(StreamStdout)
	if stream == "stderr" {
		id = StreamStderr
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			a.log.write(stream, buf[:n])
			a.broadcast(id, buf[:n])
		}
		if err != nil {
			return
		}
	}
}

func (a *agent) addAttacher(fw *FrameWriter) {
	a.attachMu.Lock()
	defer a.attachMu.Unlock()
	if a.attachers == nil {
		a.attachers = map[*FrameWriter]bool{}
	}
	a.attachers[fw] = true
}

// broadcast writes a frame to every attached CLI, dropping those gone.
func (a *agent) broadcast(stream byte, p []byte) {
	a.attachMu.Lock()
	defer a.attachMu.Unlock()
	for fw := range a.attachers {
		if fw.WriteFrame(stream, p) != nil {
			delete(a.attachers, fw)
		}
	}
}

// startPinned starts cmd from a thread that lives until the container's
// init has been waited for: the kernel sends the parent-death signal when
// the creating thread ends, not the process. With netNS, the thread joins
// that network namespace first, and cmd starts in it; the thread then ends
// with the goroutine (rootless.GoLocked).
func (a *agent) startPinned(cmd *exec.Cmd, netNS string) error {
	errc := make(chan error, 1)
	a.reaped = make(chan struct{})
	reaped := a.reaped
	rootless.GoLocked(func() {
		if netNS != "" {
			if err := netns.JoinNetns(netNS); err != nil {
				errc <- err
				return
			}
		} else {
			defer runtime.UnlockOSThread()
		}
		err := cmd.Start()
		errc <- err
		if err == nil {
			<-reaped
		}
	})
	return <-errc
}

// wait waits for the container's init and returns its exit status.
func (a *agent) wait() int {
	ps, err := a.proc.Wait()
	Trace("agent", "reaped")
	close(a.reaped)
	// Output written before exit is still in the pipes: drain it.
	done := make(chan struct{})
	go func() { a.pumps.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
	close(a.exited)
	if err != nil {
		return 125
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// readAttach takes stdin, resize and close frames from the attached CLI.
func (a *agent) readAttach(conn *os.File) {
	var buf []byte
	for {
		stream, p, err := ReadFrame(conn, buf)
		if err != nil {
			return
		}
		buf = p[:0]
		switch stream {
		case StreamStdin:
			switch {
			case a.console != nil:
				a.console.Write(p)
			case a.stdin != nil:
				a.stdin.Write(p)
			}
		case StreamCloseStdin:
			if a.stdin != nil {
				a.stdin.Close()
			} else if a.console != nil {
				a.console.Write([]byte{4}) // ^D: end of input for the terminal
			}
		case StreamResize:
			if a.console != nil && len(p) == 4 {
				ws := &unix.Winsize{Row: binary.BigEndian.Uint16(p), Col: binary.BigEndian.Uint16(p[2:])}
				unix.IoctlSetWinsize(int(a.console.Fd()), unix.TIOCSWINSZ, ws)
			}
		}
	}
}

// listen serves the control socket.
func (a *agent) listen() *controlSocket {
	cs := &controlSocket{path: a.spec.Socket, serve: a.serve, winch: make(chan os.Signal, 1)}
	if err := cs.open(); err != nil {
		fmt.Fprintln(os.Stderr, "roost agent: control socket:", err)
		return nil
	}
	// Before the start is reported: from then on a command may find the
	// socket gone and ask for it (watch).
	signal.Notify(cs.winch, syscall.SIGWINCH)
	return cs
}

// watch makes the socket again whenever SIGWINCH comes and it is gone.
// Not on the way to the start: a signal that came before waits in winch.
func (cs *controlSocket) watch() {
	go func() {
		for range cs.winch {
			if _, err := os.Stat(cs.path); err == nil {
				continue
			}
			if err := cs.open(); err != nil {
				fmt.Fprintln(os.Stderr, "roost agent: control socket:", err)
			}
		}
	}()
}

// controlSocket is the agent's control socket. The runtime directory may
// go while the agent lives (logind removes /run/user/UID when the user's
// last session ends; a cleaner empties /tmp): a command that finds no
// socket sends the agent SIGWINCH, which is ignored where not asked for,
// and the agent makes the socket again (Store.dialAgent).
type controlSocket struct {
	path   string
	serve  func(net.Conn)
	winch  chan os.Signal
	mu     sync.Mutex
	ln     *net.UnixListener
	closed bool
}

// open listens at the socket's path, in place of an earlier listener.
func (cs *controlSocket) open() error {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.closed {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(cs.path), 0o700); err != nil {
		return err
	}
	os.Remove(cs.path)
	l, err := net.Listen("unix", cs.path)
	if err != nil {
		return err
	}
	if cs.ln != nil {
		cs.ln.SetUnlinkOnClose(false) // the path is the new one's
		cs.ln.Close()
	}
	ln := l.(*net.UnixListener)
	cs.ln = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go cs.serve(c)
		}
	}()
	return nil
}

// Close stops listening and removes the socket.
func (cs *controlSocket) Close() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.closed {
		return
	}
	cs.closed = true
	signal.Stop(cs.winch)
	close(cs.winch)
	if cs.ln != nil {
		cs.ln.Close()
	}
}

func (a *agent) serve(c net.Conn) {
	defer c.Close()
	var req Request
	if err := readJSON(c, &req); err != nil {
		return
	}
	var rep Reply
	switch req.Op {
	case "exec":
		a.exec(c, req.Exec)
		return
	case "dial":
		a.dial(c, req.Network, req.Addr)
		return
	case "spawn":
		if err := a.spawn(c.(*net.UnixConn), req.Agent); err != nil {
			rep.Error = err.Error()
		}
	case "attach":
		if err := writeJSON(c, Reply{}); err != nil {
			return
		}
		f, err := c.(*net.UnixConn).File()
		if err != nil {
			return
		}
		fw := NewFrameWriter(f)
		a.addAttacher(fw)
		a.readAttach(f) // until the CLI detaches or goes
		a.attachMu.Lock()
		delete(a.attachers, fw)
		a.attachMu.Unlock()
		f.Close()
		return
	case "kill":
		a.stop()
		if err := a.signal(syscall.Signal(req.Signal)); err != nil {
			rep.Error = err.Error()
		}
		a.resume()
	case "pause":
		if err := a.pause(); err != nil {
			rep.Error = err.Error()
		}
	case "unpause":
		if err := a.unpause(); err != nil {
			rep.Error = err.Error()
		}
	case "procs":
		a.mu.Lock()
		pid := a.state.Pid
		a.mu.Unlock()
		if pid == 0 {
			rep.Error = "container is not running"
			break
		}
		ps, err := procs(pid)
		if err != nil {
			rep.Error = err.Error()
		}
		rep.Procs = ps
	case "stop":
		a.stop()
		sig := syscall.Signal(req.Signal)
		if sig == 0 {
			sig = syscall.SIGTERM
		}
		a.signal(sig)
		a.resume()
		exited := a.current()
		select {
		case <-exited:
		case <-time.After(time.Duration(req.Timeout) * time.Second):
			a.signal(syscall.SIGKILL)
			<-exited
		}
	default:
		rep.Error = fmt.Sprintf("unknown request %q", req.Op)
	}
	writeJSON(c, rep)
}

// stop ends the restart policy: the container was asked to end.
func (a *agent) stop() { a.stopOnce.Do(func() { close(a.stopping) }) }

func (a *agent) stopRequested() bool {
	select {
	case <-a.stopping:
		return true
	default:
		return false
	}
}

// current is the exit channel of the container's current run.
func (a *agent) current() chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.exited
}

// restart applies the restart policy to an exit with code.
func (a *agent) restart(code int) bool {
	if a.stopRequested() {
		return false
	}
	p := a.spec.Restart
	switch p.Name {
	case "always", "unless-stopped":
		return true
	case "on-failure":
		return code != 0 && (p.MaximumRetryCount == 0 || a.restarts < p.MaximumRetryCount)
	}
	return false
}

func (a *agent) signal(sig syscall.Signal) error {
	select {
	case <-a.current():
		return errors.New("container is not running")
	default:
	}
	return a.proc.Signal(sig)
}

// pause freezes the container's processes. There is no delegated cgroup
// here for the freezer, so it stops them with signals (State.PauseMethod).
func (a *agent) pause() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.state.Running || a.state.Pid == 0 {
		return errors.New("container is not running")
	}
	if a.state.Paused {
		return errors.New("container is already paused")
	}
	method := "signals"
	if a.cg != nil {
		if err := a.cg.freeze(true); err != nil {
			a.cg.freeze(false)
			return err
		}
		method = "cgroup-v2-freezer"
	} else if err := freeze(a.state.Pid); err != nil {
		thaw(a.state.Pid)
		return err
	}
	a.state.Paused, a.state.Status, a.state.PauseMethod = true, "paused", method
	return writeState(a.spec.Dir, &a.state)
}

func (a *agent) unpause() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.state.Paused {
		return errors.New("container is not paused")
	}
	if a.cg != nil {
		if err := a.cg.freeze(false); err != nil {
			return err
		}
	} else if err := thaw(a.state.Pid); err != nil {
		return err
	}
	a.state.Paused, a.state.Status = false, "running"
	return writeState(a.spec.Dir, &a.state)
}

// resume continues a paused container so that a stop or kill signal it was
// sent takes effect.
func (a *agent) resume() {
	a.mu.Lock()
	paused, pid := a.state.Paused, a.state.Pid
	a.mu.Unlock()
	if paused && pid != 0 {
		if a.cg != nil {
			a.cg.freeze(false)
		} else {
			thaw(pid)
		}
	}
}
