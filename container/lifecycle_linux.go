//go:build linux

package container

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/roost-containers/roost/fuse"
	"github.com/roost-containers/roost/netns"
	"github.com/roost-containers/roost/rootless"
	"golang.org/x/sys/unix"
)

// StartOptions say how to start a container.
type StartOptions struct {
	// Layers are the image's layer files, bottom first.
	Layers []fuse.LayerFiles
	// MergedView is the file of their merged view (layers.Store.MergedView).
	MergedView string
	// Attach keeps a stream to the container: stdout and stderr come back
	// through Session, stdin (with OpenStdin) goes in.
	Attach bool
	// Agent, when set, is the agent to hand the container to (from
	// Prespawn, with the same Attach).
	Agent *Prespawned
}

// Prespawned is an agent started before its container exists: its
// start-up (a Go process in a new user namespace, and newuidmap and
// newgidmap for a user with a subordinate id range) goes on while the CLI
// creates the container. Start hands it its spec on its stdin; Close ends it
// where Start did not take it.
type Prespawned struct {
	dir     string // the container's
	attach  bool
	specW   *os.File
	statusR *os.File
	conn    *os.File // the CLI's end of the attach socket
	cmd     *rootless.Cmd
	started chan error
	err     error // the start's outcome, once received
	waited  bool
	taken   bool
}

// Prespawn starts an agent for the container to come with the ID id (see
// Prespawned); attach is StartOptions.Attach of the Start it will serve.
func (s *Store) Prespawn(id string, attach bool) *Prespawned {
	p := &Prespawned{dir: s.Dir(id), attach: attach, started: make(chan error, 1)}
	mapping, err := rootless.DefaultMapping()
	if err != nil {
		p.started <- err
		return p
	}
	specR, specW, err := os.Pipe()
	if err != nil {
		p.started <- err
		return p
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		specR.Close()
		specW.Close()
		p.started <- err
		return p
	}
	p.specW, p.statusR = specW, statusR
	// The container's directory in its arguments names it in ps, as the
	// spec does those of the other agents.
	cmd := rootless.Command(mapping, agentEntry, specOnStdin, s.Dir(id))
	cmd.SysProcAttr.Setsid = true
	cmd.Stdin = specR
	cmd.ExtraFiles = []*os.File{statusW}
	var child *os.File
	if attach {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			specR.Close()
			statusW.Close()
			p.started <- err
			return p
		}
		p.conn = os.NewFile(uintptr(fds[0]), "attach")
		child = os.NewFile(uintptr(fds[1]), "attach-child")
		cmd.ExtraFiles = append(cmd.ExtraFiles, child)
	}
	p.cmd = cmd
	// The child is made here, at once; newuidmap and newgidmap, where the
	// mapping needs them, run while this process goes on.
	mapIDs, err := cmd.StartMapping()
	specR.Close()
	statusW.Close()
	if child != nil {
		child.Close()
	}
	if err != nil {
		p.started <- err
		return p
	}
	go func() {
		err := mapIDs()
		if err == nil {
			go cmd.Wait() // reap it if this process outlives it
		}
		p.started <- err
	}()
	return p
}

// specOnStdin, with the container's directory, are a prespawned agent's
// arguments.
const specOnStdin = "--spec-on-stdin"

// wait returns the outcome of the agent's start.
func (p *Prespawned) wait() error {
	if !p.waited {
		p.err, p.waited = <-p.started, true
	}
	return p.err
}

// Close ends the agent unless Start took it; it may be called more than
// once.
func (p *Prespawned) Close() {
	if p == nil || p.taken {
		return
	}
	p.taken = true
	if p.specW != nil {
		p.specW.Close() // the agent sees no spec and exits
	}
	if p.wait() == nil {
		p.cmd.Process.Kill()
	}
	if p.statusR != nil {
		p.statusR.Close()
	}
	if p.conn != nil {
		p.conn.Close()
	}
}

// Session is a started container, attached or not.
type Session struct {
	Pid  int
	conn *os.File
	fw   *FrameWriter
}

// Start starts container c's agent and returns once the command runs, or
// with an error carrying the exit status roost should give (see ExitCode).
func (s *Store) Start(c *Container, o StartOptions) (*Session, error) {
	if c.IsActive() {
		return nil, fmt.Errorf("container %s is already running (%w)", c.Name, ErrConflict)
	}
	mapping, err := rootless.DefaultMapping()
	if err != nil {
		return nil, err
	}
	spec := AgentSpec{
		Dir:        c.Dir,
		Socket:     s.socketPath(c.ID),
		Layers:     o.Layers,
		MergedView: o.MergedView,
		Init:       initSpecFor(&c.Record, mapping.Kind()),
		Attach:     o.Attach,
		AutoRemove: c.HostConfig.AutoRemove,
		Network:    c.HostConfig.NetworkMode,
		Ports:      c.Ports,
		Restart:    c.HostConfig.RestartPolicy,
		OpenStdin:  c.Config.OpenStdin,
		Resources:  Resources{Memory: c.HostConfig.Memory, NanoCPUs: c.HostConfig.NanoCpus, PidsLimit: c.HostConfig.PidsLimit},
	}
	for _, m := range c.Mounts {
		if m.Anonymous {
			spec.RemoveVolumes = append(spec.RemoveVolumes, filepath.Dir(m.Source))
		}
	}
	var linkHosts []string
	if private(c.HostConfig.NetworkMode) {
		spec.Resolver = s.resolver()
		spec.ClientAddress, spec.ProxyPorts = s.ClientAddress, s.ProxyPorts
		for i, l := range c.Links {
			t, err := s.Get(l.ID)
			if err != nil || !t.IsActive() {
				return nil, fmt.Errorf("cannot link to a non running container: /%s AS /%s/%s", l.Name, c.Name, l.Alias)
			}
			addr := netns.LinkBase
			for range i {
				addr = addr.Next()
			}
			spec.Links = append(spec.Links, LinkRoute{Addr: addr.String(), Socket: s.socketPath(t.ID)})
			names := l.Alias + " " + t.Config.Hostname
			if t.Name != l.Alias {
				names += " " + t.Name
			}
			linkHosts = append(linkHosts, addr.String()+"\t"+names)
			spec.Init.Env = append(linkEnv(t, addr.String(), "/"+c.Name+"/"+l.Alias, l.Alias), spec.Init.Env...)
		}
	}
	// --network container:NAME: NAME's agent starts this one.
	var spawner *Container
	if ref, ok := strings.CutPrefix(c.HostConfig.NetworkMode, "container:"); ok {
		t, err := s.Get(ref)
		if err != nil || !t.IsActive() || t.State.Pid == 0 {
			return nil, fmt.Errorf("cannot join the network of a non running container: %s", ref)
		}
		if t.HostConfig.NetworkMode == "host" {
			// NAME is on the host's network: so is this one.
			spec.Init.HostNetwork = true
		} else {
			spawner = t
			spec.NetNS = fmt.Sprintf("/proc/%d/ns/net", t.State.Pid)
			spec.DetachMount = filepath.Join(t.Dir, "rootfs")
		}
		// Its hosts and resolv.conf too, as Docker does.
		for _, f := range []string{"hosts", "resolv.conf"} {
			b, err := os.ReadFile(filepath.Join(t.Dir, f))
			if err == nil {
				err = os.WriteFile(filepath.Join(c.Dir, f), b, 0o644)
			}
			if err != nil {
				return nil, fmt.Errorf("copy %s of %s: %w", f, t.Name, err)
			}
		}
		if err := os.WriteFile(filepath.Join(c.Dir, "hostname"), []byte(c.Config.Hostname+"\n"), 0o644); err != nil {
			return nil, fmt.Errorf("write hostname: %w", err)
		}
	} else if err := s.writeEtcFiles(c, linkHosts); err != nil {
		return nil, err
	}
	arg, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	if p := o.Agent; p != nil {
		if spawner == nil && p.attach == o.Attach && p.dir == c.Dir {
			return s.startPrespawned(c, p, arg)
		}
		p.Close()
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer statusR.Close()
	cmd := rootless.Command(mapping, agentEntry, string(arg))
	cmd.SysProcAttr.Setsid = true
	logf, err := os.OpenFile(filepath.Join(c.Dir, "agent.log"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{statusW}
	sess := &Session{}
	if o.Attach {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		sess.conn = os.NewFile(uintptr(fds[0]), "attach")
		child := os.NewFile(uintptr(fds[1]), "attach-child")
		defer child.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, child)
		sess.fw = NewFrameWriter(sess.conn)
	}
	Trace("cli", "agent-spawn")
	if spawner != nil {
		err = s.spawnThrough(spawner, string(arg), append([]*os.File{logf}, cmd.ExtraFiles...))
		statusW.Close()
		if err != nil {
			return nil, fmt.Errorf("start agent through %s: %w", spawner.Name, err)
		}
	} else {
		err = cmd.Start()
		statusW.Close()
		if err != nil {
			return nil, fmt.Errorf("start agent: %w", err)
		}
		go cmd.Wait() // reap it if this process outlives it
	}
	return s.awaitAgent(c, statusR, sess)
}

// awaitAgent reads the agent's report of the start from statusR.
func (s *Store) awaitAgent(c *Container, statusR *os.File, sess *Session) (*Session, error) {
	var st Started
	if err := json.NewDecoder(statusR).Decode(&st); err != nil {
		msg, _ := os.ReadFile(filepath.Join(c.Dir, "agent.log"))
		return nil, fmt.Errorf("start container %s: the agent failed: %s", c.Name, strings.TrimSpace(string(msg)))
	}
	if st.Error != "" {
		if sess.conn != nil {
			sess.conn.Close()
		}
		return nil, &StartError{Code: st.Code, Msg: st.Error}
	}
	sess.Pid = st.Pid
	Trace("cli", "started")
	return sess, nil
}

// startPrespawned hands container c, with its agent spec arg, to the agent
// p, and waits as Start does.
func (s *Store) startPrespawned(c *Container, p *Prespawned, arg []byte) (*Session, error) {
	defer p.Close()
	logf, err := os.OpenFile(filepath.Join(c.Dir, "agent.log"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	logf.Close()
	if err := p.wait(); err != nil {
		return nil, fmt.Errorf("start agent: %w", err)
	}
	Trace("cli", "agent-spawn")
	_, err = p.specW.Write(arg)
	p.specW.Close()
	p.specW = nil
	if err != nil {
		return nil, fmt.Errorf("start agent: send its spec: %w", err)
	}
	sess := &Session{conn: p.conn}
	if p.conn != nil {
		sess.fw = NewFrameWriter(p.conn)
	}
	sess, err = s.awaitAgent(c, p.statusR, sess)
	p.statusR.Close()
	p.statusR = nil
	var se *StartError
	if err == nil || errors.As(err, &se) {
		// The agent reported: the session's now, or gone by itself.
		p.taken = true
	}
	return sess, err
}

// spawnThrough asks the agent of t to start an agent with spec, handing it
// files: the log, the status pipe and the attach socket (the "spawn"
// request).
func (s *Store) spawnThrough(t *Container, spec string, files []*os.File) error {
	conn, err := s.dialAgent(t)
	if err != nil {
		return err
	}
	defer conn.Close()
	uc := conn.(*net.UnixConn)
	if err := writeJSON(uc, Request{Op: "spawn", Agent: spec}); err != nil {
		return err
	}
	// Status pipe first, then the log, then the rest.
	fds := []int{int(files[1].Fd()), int(files[0].Fd())}
	for _, f := range files[2:] {
		fds = append(fds, int(f.Fd()))
	}
	if _, _, err := uc.WriteMsgUnix([]byte{0}, unix.UnixRights(fds...), nil); err != nil {
		return err
	}
	var rep Reply
	if err := readJSON(uc, &rep); err != nil {
		return err
	}
	if rep.Error != "" {
		return errors.New(rep.Error)
	}
	return nil
}

// StartError is a container that did not start; Code is Docker's exit
// status for it (125, 126 or 127).
type StartError struct {
	Code int
	Msg  string
}

func (e *StartError) Error() string { return e.Msg }

// ExitCode returns the status roost exits with for err.
func ExitCode(err error) int {
	var se *StartError
	if errors.As(err, &se) {
		return se.Code
	}
	return 125
}

// AttachIO are the CLI's streams for an attached session.
type AttachIO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// DetachKeys, read from Stdin, end the session and leave the container
	// running (Docker's ctrl-p,ctrl-q).
	DetachKeys []byte
}

// ErrDetached ends a session that the detach keys left.
var ErrDetached = errors.New("detached")

// Stream copies the session's streams until the container exits, and
// returns its exit status. Stdin is sent when not nil.
func (sess *Session) Stream(ctx context.Context, o AttachIO) (int, error) {
	if sess.conn == nil {
		return 0, errors.New("session is not attached")
	}
	defer sess.conn.Close()
	detached := make(chan struct{})
	if o.Stdin != nil {
		go func() {
			buf := make([]byte, 32<<10)
			matched := 0
			for {
				n, err := o.Stdin.Read(buf)
				if len(o.DetachKeys) > 0 {
					for _, b := range buf[:n] {
						if b == o.DetachKeys[matched] {
							matched++
						} else {
							matched = 0
						}
						if matched == len(o.DetachKeys) {
							close(detached)
							sess.conn.Close()
							return
						}
					}
				}
				if n > 0 && sess.fw.WriteFrame(StreamStdin, buf[:n]) != nil {
					return
				}
				if err != nil {
					sess.fw.WriteFrame(StreamCloseStdin, nil)
					return
				}
			}
		}()
	}
	var buf []byte
	for {
		stream, p, err := ReadFrame(sess.conn, buf)
		if err != nil {
			select {
			case <-detached:
				return 0, ErrDetached
			default:
			}
			return 0, fmt.Errorf("container stream ended without an exit status: %w", err)
		}
		buf = p[:0]
		switch stream {
		case StreamStdout:
			o.Stdout.Write(p)
		case StreamStderr:
			o.Stderr.Write(p)
		case StreamExit:
			Trace("cli", "exit-frame")
			if len(p) == 4 {
				return int(binary.BigEndian.Uint32(p)), nil
			}
		}
	}
}

// Resize tells the container's terminal its new size.
func (sess *Session) Resize(rows, cols uint16) {
	if sess.fw == nil {
		return
	}
	var b [4]byte
	binary.BigEndian.PutUint16(b[:], rows)
	binary.BigEndian.PutUint16(b[2:], cols)
	sess.fw.WriteFrame(StreamResize, b[:])
}

// request sends one control request to c's agent.
func (s *Store) request(c *Container, req Request, timeout time.Duration) error {
	conn, err := s.dialAgent(c)
	if err != nil {
		if !c.IsActive() {
			return fmt.Errorf("container %s is not running", c.Name)
		}
		return fmt.Errorf("reach the agent of %s: %w", c.Name, err)
	}
	defer conn.Close()
	if timeout > 0 {
		conn.SetDeadline(time.Now().Add(timeout))
	}
	if err := writeJSON(conn, req); err != nil {
		return err
	}
	var rep Reply
	if err := readJSON(conn, &rep); err != nil {
		return fmt.Errorf("reach the agent of %s: %w", c.Name, err)
	}
	if rep.Error != "" {
		return fmt.Errorf("%s: %s", c.Name, rep.Error)
	}
	return nil
}

// dialAgent connects to the control socket of c's agent. Where the socket
// is gone (its runtime directory was removed) and the agent lives, it asks
// the agent to make it again (see controlSocket) and dials once more.
func (s *Store) dialAgent(c *Container) (net.Conn, error) {
	path := s.socketPath(c.ID)
	conn, err := net.DialTimeout("unix", path, 5*time.Second)
	if err == nil || !(errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)) {
		return conn, err
	}
	pid := agentPid(c.Dir)
	if pid <= 0 || unix.Kill(pid, unix.SIGWINCH) != nil {
		return nil, err
	}
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
			return conn, nil
		}
	}
	return nil, err
}

// killAgent kills c's agent, and so its container, where no request
// reaches it.
func killAgent(c *Container) {
	if pid := agentPid(c.Dir); pid > 0 {
		unix.Kill(pid, unix.SIGKILL)
	}
}

// Kill sends sig to the container's main process.
func (s *Store) Kill(c *Container, sig syscall.Signal) error {
	if !c.IsActive() {
		return fmt.Errorf("container %s is not running (%w)", c.Name, ErrConflict)
	}
	if err := s.request(c, Request{Op: "kill", Signal: int(sig)}, 10*time.Second); err != nil {
		return err
	}
	if sig == syscall.SIGKILL {
		// As Docker: a SIGKILL returns once the container is gone.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return s.Wait(ctx, c)
	}
	return nil
}

// Stop sends the stop signal, then SIGKILL after timeout seconds, and waits
// until the container exited. Stopping a stopped container does nothing.
func (s *Store) Stop(c *Container, timeout int) error {
	if !c.IsActive() {
		return nil
	}
	sig := syscall.SIGTERM
	if c.Config.StopSignal != "" {
		if n, err := ParseSignal(c.Config.StopSignal); err == nil {
			sig = n
		}
	}
	if timeout < 0 {
		timeout = 10
		if c.Config.StopTimeout != nil {
			timeout = *c.Config.StopTimeout
		}
	}
	err := s.request(c, Request{Op: "stop", Signal: int(sig), Timeout: timeout}, time.Duration(timeout+30)*time.Second)
	if err != nil && c.IsActive() {
		return err
	}
	return s.Wait(context.Background(), c)
}

// Wait blocks until the container's agent is gone.
func (s *Store) Wait(ctx context.Context, c *Container) error {
	f, err := os.Open(filepath.Join(c.Dir, "agent.lock"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	done := make(chan error, 1)
	go func() { done <- flock(f, unix.LOCK_SH) }()
	// An agent that died wedged (wedge_linux.go) would hold the lock for
	// ever: look for one now and then.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			unwedge(c.Dir, 0)
		}
	}
}

// Remove deletes a container that is not running; with force, a running
// one is killed first. With volumes, its anonymous volumes go too.
func (s *Store) Remove(c *Container, force, volumes bool) error {
	if c.IsActive() {
		if !force {
			return fmt.Errorf("cannot remove container %s: it is running (%w): stop it first or use -f", c.Name, ErrConflict)
		}
		if s.request(c, Request{Op: "kill", Signal: int(syscall.SIGKILL)}, 10*time.Second) != nil {
			killAgent(c)
		}
		if err := s.Wait(context.Background(), c); err != nil {
			return err
		}
	}
	if volumes {
		for _, m := range c.Mounts {
			if m.Anonymous {
				os.RemoveAll(filepath.Dir(m.Source))
			}
		}
	}
	os.RemoveAll(filepath.Dir(s.socketPath(c.ID)))
	if err := os.RemoveAll(c.Dir); err != nil {
		return fmt.Errorf("remove container %s: %w", c.Name, err)
	}
	return nil
}

// ParseSignal reads a signal name (TERM, SIGTERM) or number.
func ParseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	n := unix.SignalNum("SIG" + strings.TrimPrefix(strings.ToUpper(s), "SIG"))
	if n == 0 {
		return 0, fmt.Errorf("invalid signal %q", s)
	}
	return n, nil
}

// initSpecFor builds init's spec from a container record.
func initSpecFor(r *Record, mapping string) InitSpec {
	spec := InitSpec{
		Args:            append([]string{r.Path}, r.Args...),
		Env:             r.Config.Env,
		Cwd:             r.Config.WorkingDir,
		User:            r.Config.User,
		GroupAdd:        r.HostConfig.GroupAdd,
		Hostname:        r.Config.Hostname,
		Tty:             r.Config.Tty,
		ReadOnly:        r.HostConfig.ReadonlyRootfs,
		Rlimits:         r.HostConfig.Ulimits,
		CapAdd:          r.HostConfig.CapAdd,
		CapDrop:         r.HostConfig.CapDrop,
		Devices:         r.HostConfig.Devices,
		HostNetwork:     r.HostConfig.NetworkMode == "host",
		Init:            r.HostConfig.Init,
		Mapping:         mapping,
		KeepID:          r.HostConfig.UsernsMode == "keep-id",
		HostUID:         os.Getuid(),
		HostGID:         os.Getgid(),
		NoNewPrivileges: hasOpt(r.HostConfig.SecurityOpt, "no-new-privileges"),
		Seccomp:         seccompOpt(r.HostConfig.SecurityOpt),
	}
	if r.Path == "" {
		spec.Args = nil
	}
	for _, m := range r.Mounts {
		im := InitMount{Type: "bind", Source: m.Source, Destination: m.Destination, ReadOnly: !m.RW, Options: m.Options}
		if m.Type == "tmpfs" {
			im.Type = "tmpfs"
		}
		spec.Mounts = append(spec.Mounts, im)
	}
	return spec
}

func hasOpt(opts []string, want string) bool {
	for _, o := range opts {
		if o == want || o == want+"=true" || o == want+":true" {
			return true
		}
	}
	return false
}

// private says whether a network mode is the private network with NAT.
func private(mode string) bool {
	return mode != "host" && mode != "none" && !strings.HasPrefix(mode, "container:")
}

// resolver is where the private network's DNS forwarder sends queries: the
// store's Resolver, or the host's first nameserver.
func (s *Store) resolver() string {
	if s.Resolver != "" {
		return s.Resolver
	}
	host, _ := os.ReadFile("/etc/resolv.conf")
	for _, line := range strings.Split(string(host), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "nameserver" {
			return net.JoinHostPort(f[1], "53")
		}
	}
	return "127.0.0.1:53" // the resolver's default when none is named
}

// linkEnv is Docker's environment for a link to t, reached at addr: NAME,
// the exposed ports (ALIAS_PORT_80_TCP_ADDR...) and t's own variables.
func linkEnv(t *Container, addr, name, alias string) []string {
	prefix := strings.ToUpper(strings.ReplaceAll(alias, "-", "_"))
	env := []string{prefix + "_NAME=" + name}
	type port struct {
		n     int
		proto string
	}
	seen := map[port]bool{}
	var ports []port
	add := func(p port) {
		if !seen[p] {
			seen[p] = true
			ports = append(ports, p)
		}
	}
	for k := range t.Config.ExposedPorts {
		n, proto, _ := strings.Cut(k, "/")
		if v, err := strconv.Atoi(n); err == nil {
			add(port{v, cmp.Or(proto, "tcp")})
		}
	}
	for _, m := range t.Ports {
		add(port{m.ContainerPort, m.Proto})
	}
	slices.SortFunc(ports, func(a, b port) int { return cmp.Or(cmp.Compare(a.n, b.n), cmp.Compare(a.proto, b.proto)) })
	for i, p := range ports {
		url := fmt.Sprintf("%s://%s:%d", p.proto, addr, p.n)
		if i == 0 {
			env = append(env, prefix+"_PORT="+url)
		}
		key := fmt.Sprintf("%s_PORT_%d_%s", prefix, p.n, strings.ToUpper(p.proto))
		env = append(env, key+"="+url, key+"_ADDR="+addr, fmt.Sprintf("%s_PORT=%d", key, p.n), key+"_PROTO="+p.proto)
	}
	for _, kv := range t.Config.Env {
		k, v, ok := strings.Cut(kv, "=")
		if ok && k != "HOME" && k != "PATH" {
			env = append(env, prefix+"_ENV_"+k+"="+v)
		}
	}
	return env
}

// writeEtcFiles writes the container's hosts, hostname and resolv.conf, as
// Docker does; linkHosts are the hosts lines of its links.
func (s *Store) writeEtcFiles(c *Container, linkHosts []string) error {
	mode := c.HostConfig.NetworkMode
	hostname := c.Config.Hostname
	if mode == "host" {
		hostname, _ = os.Hostname()
	}
	var hosts strings.Builder
	switch mode {
	case "host":
		if b, err := os.ReadFile("/etc/hosts"); err == nil {
			hosts.Write(b)
		}
	default:
		hosts.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
			"fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
	}
	if private(mode) {
		fmt.Fprintf(&hosts, "%s\thost.containers.internal host.docker.internal\n", netns.Gateway)
	}
	for _, h := range c.HostConfig.ExtraHosts {
		if name, ip, ok := strings.Cut(h, ":"); ok {
			fmt.Fprintf(&hosts, "%s\t%s\n", ip, name)
		}
	}
	for _, l := range linkHosts {
		hosts.WriteString(l + "\n")
	}
	switch mode {
	case "none":
		fmt.Fprintf(&hosts, "127.0.1.1\t%s\n", hostname)
	case "host":
	default:
		fmt.Fprintf(&hosts, "%s\t%s\n", netns.ContainerIP, hostname)
	}
	host, err := os.ReadFile("/etc/resolv.conf")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read the host's resolv.conf: %w", err)
	}
	resolv := resolvConf(host, c.HostConfig, private(mode))
	files := map[string][]byte{"hosts": []byte(hosts.String()), "hostname": []byte(hostname + "\n"), "resolv.conf": resolv}
	if c.Mapping == "single" {
		files[aptSingleIDFile] = []byte(aptSingleIDConf)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(c.Dir, name), data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// resolvConf is the container's resolv.conf: the host's, with --dns,
// --dns-search and --dns-option in place of its own lines; on the private
// network the nameserver is the forwarder at netns.DNSServer.
func resolvConf(host []byte, hc HostConfig, private bool) []byte {
	if len(hc.DNS) == 0 && len(hc.DNSSearch) == 0 && len(hc.DNSOptions) == 0 && !private {
		return host
	}
	var servers, search, options []string
	for _, line := range strings.Split(string(host), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			servers = append(servers, f[1])
		case "search", "domain":
			search = f[1:]
		case "options":
			options = append(options, f[1:]...)
		}
	}
	if private {
		servers = []string{netns.DNSServer.String()}
	}
	if len(hc.DNS) > 0 {
		servers = hc.DNS
	}
	if len(hc.DNSSearch) > 0 {
		search = hc.DNSSearch
		if len(search) == 1 && search[0] == "." {
			search = nil
		}
	}
	if len(hc.DNSOptions) > 0 {
		options = hc.DNSOptions
	}
	var b strings.Builder
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	if len(options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(options, " "))
	}
	return []byte(b.String())
}

// Exec runs a command in a running container. Unless detached, the session
// streams its output and ends with its exit status.
func (s *Store) Exec(c *Container, es ExecSpec) (*Session, error) {
	if !c.IsActive() {
		return nil, fmt.Errorf("container %s is not running", c.Name)
	}
	conn, err := s.dialAgent(c)
	if err != nil {
		return nil, fmt.Errorf("reach the agent of %s: %w", c.Name, err)
	}
	if err := writeJSON(conn, Request{Op: "exec", Exec: &es}); err != nil {
		conn.Close()
		return nil, err
	}
	var rep Reply
	if err := readJSON(conn, &rep); err != nil {
		conn.Close()
		return nil, fmt.Errorf("reach the agent of %s: %w", c.Name, err)
	}
	if rep.Error != "" {
		conn.Close()
		code := rep.Code
		if code == 0 {
			code = 125
		}
		return nil, &StartError{Code: code, Msg: rep.Error}
	}
	if es.Detach {
		conn.Close()
		return &Session{}, nil
	}
	f, err := conn.(*net.UnixConn).File()
	conn.Close()
	if err != nil {
		return nil, err
	}
	return &Session{conn: f, fw: NewFrameWriter(f)}, nil
}

// Pause freezes a running container; Unpause continues it.
func (s *Store) Pause(c *Container) error {
	if !c.IsActive() {
		return fmt.Errorf("container %s is not running (%w)", c.Name, ErrConflict)
	}
	return s.request(c, Request{Op: "pause"}, 30*time.Second)
}

// Unpause continues a paused container.
func (s *Store) Unpause(c *Container) error {
	if !c.IsActive() {
		return fmt.Errorf("container %s is not running (%w)", c.Name, ErrConflict)
	}
	return s.request(c, Request{Op: "unpause"}, 30*time.Second)
}

// Procs lists a running container's processes.
func (s *Store) Procs(c *Container) ([]Proc, error) {
	if !c.IsActive() {
		return nil, fmt.Errorf("container %s is not running (%w)", c.Name, ErrConflict)
	}
	conn, err := s.dialAgent(c)
	if err != nil {
		return nil, fmt.Errorf("reach the agent of %s: %w", c.Name, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if err := writeJSON(conn, Request{Op: "procs"}); err != nil {
		return nil, err
	}
	var rep Reply
	if err := readJSON(conn, &rep); err != nil {
		return nil, err
	}
	if rep.Error != "" {
		return nil, fmt.Errorf("%s: %s", c.Name, rep.Error)
	}
	return rep.Procs, nil
}

// Attach attaches to a running container's streams.
func (s *Store) Attach(c *Container) (*Session, error) {
	if !c.IsActive() {
		return nil, fmt.Errorf("you cannot attach to a stopped container, start it first")
	}
	conn, err := s.dialAgent(c)
	if err != nil {
		return nil, fmt.Errorf("reach the agent of %s: %w", c.Name, err)
	}
	if err := writeJSON(conn, Request{Op: "attach"}); err != nil {
		conn.Close()
		return nil, err
	}
	var rep Reply
	if err := readJSON(conn, &rep); err != nil || rep.Error != "" {
		conn.Close()
		if err == nil {
			err = errors.New(rep.Error)
		}
		return nil, fmt.Errorf("attach to %s: %w", c.Name, err)
	}
	f, err := conn.(*net.UnixConn).File()
	conn.Close()
	if err != nil {
		return nil, err
	}
	return &Session{conn: f, fw: NewFrameWriter(f)}, nil
}

// ParseDetachKeys reads Docker's --detach-keys: "ctrl-p,ctrl-q", letters, ctrl-@ to ctrl-_.
func ParseDetachKeys(s string) ([]byte, error) {
	var out []byte
	for _, k := range strings.Split(s, ",") {
		k = strings.TrimSpace(k)
		switch {
		case len(k) == 1:
			out = append(out, k[0])
		case strings.HasPrefix(k, "ctrl-") && len(k) == 6:
			c := k[5]
			switch {
			case c >= 'a' && c <= 'z':
				out = append(out, c-'a'+1)
			case c >= '@' && c <= '_':
				out = append(out, c-'@')
			default:
				return nil, fmt.Errorf("invalid detach key %q", k)
			}
		default:
			return nil, fmt.Errorf("invalid detach key %q: use a letter or ctrl-<letter>, comma separated", k)
		}
	}
	return out, nil
}
