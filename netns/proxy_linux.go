//go:build linux

package netns

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/roost-containers/roost/rootless"
	"golang.org/x/sys/unix"
)

// PortDialer connects a published port's clients to the container.
type PortDialer interface {
	// DialPort connects to the container's port over network (tcp, udp)
	// for a client at from.
	DialPort(network string, port int, from net.Addr) (net.Conn, error)
	// Close releases the dialer; it may be called more than once.
	Close()
}

var (
	_ PortDialer = (*Dialer)(nil)
	_ PortDialer = (*NAT)(nil)
)

// Dialer opens sockets inside one network namespace, from a goroutine locked
// to a thread that joined it. As a PortDialer it connects from the
// container's loopback, so the container sees every client as 127.0.0.1;
// the bytes then move with splice.
//
// A socket belongs to the namespace it was created in, wherever it is
// connected from: the thread keeps a few TCP sockets made in advance, so
// that a TCP dial is a connect from the calling goroutine, without a hand-off
// to that thread.
type Dialer struct {
	reqs      chan dialReq
	done      chan struct{}
	closeOnce sync.Once
	// spare are unconnected IPv4 TCP sockets made in the namespace.
	spare chan int
	// dial, when set, replaces the namespace (tests).
	dial func(network, addr string) (net.Conn, error)
}

type dialReq struct {
	network, addr string
	reply         chan dialResult
}

type dialResult struct {
	conn net.Conn
	err  error
}

// NewDialer joins the network namespace at nsPath (such as /proc/PID/ns/net)
// on a dedicated thread. Close ends the thread.
func NewDialer(nsPath string) (*Dialer, error) {
	d := &Dialer{reqs: make(chan dialReq), done: make(chan struct{}), spare: make(chan int, 8)}
	ready := make(chan error, 1)
	rootless.GoLocked(func() {
		if err := JoinNetns(nsPath); err != nil {
			ready <- err
			return
		}
		ready <- nil
		next := -1
		defer func() {
			if next >= 0 {
				unix.Close(next)
			}
			d.Close() // the spare sockets pushed since
		}()
		for {
			spare := d.spare
			if next < 0 {
				var err error
				if next, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
					next, spare = -1, nil
				} else {
					// The connect from a spare socket waits at most this.
					unix.SetsockoptTimeval(next, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &unix.Timeval{Sec: 5})
				}
			}
			select {
			case spare <- next:
				next = -1
			case r := <-d.reqs:
				c, err := net.DialTimeout(r.network, r.addr, 5*time.Second)
				r.reply <- dialResult{c, err}
			case <-d.done:
				return
			}
		}
	})
	if err := <-ready; err != nil {
		return nil, err
	}
	return d, nil
}

// JoinNetns moves the calling goroutine's thread into the network namespace
// at nsPath, for good: call it on a thread of rootless.GoLocked, which ends
// with its goroutine. (It locks the goroutine to the thread too, lest a
// careless caller leave a changed thread to others.)
func JoinNetns(nsPath string) error {
	runtime.LockOSThread()
	f, err := os.Open(nsPath)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("join network namespace %s: %w", nsPath, err)
	}
	return nil
}

// Dial connects inside the namespace.
func (d *Dialer) Dial(network, addr string) (net.Conn, error) {
	if d.dial != nil {
		return d.dial(network, addr)
	}
	if ap, err := netip.ParseAddrPort(addr); err == nil && network == "tcp" && ap.Addr().Is4() {
		select {
		case fd := <-d.spare:
			return connect(fd, ap)
		case <-d.done:
			return nil, errors.New("dialer closed")
		}
	}
	r := dialReq{network: network, addr: addr, reply: make(chan dialResult, 1)}
	select {
	case d.reqs <- r:
	case <-d.done:
		return nil, errors.New("dialer closed")
	}
	res := <-r.reply
	return res.conn, res.err
}

// DialPort connects to 127.0.0.1:port inside the namespace.
func (d *Dialer) DialPort(network string, port int, from net.Addr) (net.Conn, error) {
	return d.Dial(network, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
}

// connect connects the spare socket fd to ap and hands it to the runtime's
// poller. The connect waits in the kernel, at most 5 s: to a port on the
// namespace's loopback it is done at once.
func connect(fd int, ap netip.AddrPort) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "dial")
	defer f.Close()
	sa := &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	if err := unix.Connect(fd, sa); err != nil {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(ap), Err: os.NewSyscallError("connect", err)}
	}
	return net.FileConn(f)
}

// Close ends the dialer's thread and closes its spare sockets.
func (d *Dialer) Close() {
	d.closeOnce.Do(func() {
		close(d.done)
		for {
			select {
			case fd := <-d.spare:
				unix.Close(fd)
			default:
				return
			}
		}
	})
}

// PortProxy forwards published host ports into a container, or hands a
// TCP port to the container's own server (handoff_linux.go).
type PortProxy struct {
	dialer  PortDialer
	serving bool
	mu      sync.Mutex
	// listeners are the host listeners, by mapping; nil where the port
	// was handed to the container (handed).
	listeners []io.Closer
	handed    []bool
	// inside are the listeners in the container's network namespace that
	// forward a handed port to its host socket, by mapping.
	inside map[int][]net.Listener
	// Bound are the mappings with their host ports filled in.
	Bound []PortMapping
}

// Listen binds every mapping on the host. A port below the unprivileged
// start, or one already in use, is an error that says so.
func Listen(maps []PortMapping) (*PortProxy, error) {
	p := &PortProxy{}
	start := UnprivilegedPortStart()
	for _, m := range maps {
		if m.HostPort != 0 && m.HostPort < start {
			p.Close()
			return nil, fmt.Errorf("cannot publish host port %d: it is below net.ipv4.ip_unprivileged_port_start (%d): use a port of %d or more, or ask an administrator to lower that sysctl", m.HostPort, start, start)
		}
		l, bound, err := listen(m)
		if err != nil {
			p.Close()
			return nil, err
		}
		p.listeners = append(p.listeners, l)
		p.handed = append(p.handed, false)
		p.Bound = append(p.Bound, bound)
	}
	return p, nil
}

// listen binds m on the host, returning the mapping with its host port.
func listen(m PortMapping) (io.Closer, PortMapping, error) {
	addr := net.JoinHostPort(m.HostIP, strconv.Itoa(m.HostPort))
	var l io.Closer
	var err error
	switch m.Proto {
	case "udp":
		var pc net.PacketConn
		pc, err = net.ListenPacket("udp", addr)
		if err == nil {
			m.HostPort = pc.LocalAddr().(*net.UDPAddr).Port
			l = pc
		}
	default:
		var ln net.Listener
		ln, err = net.Listen("tcp", addr)
		if err == nil {
			m.HostPort = ln.Addr().(*net.TCPAddr).Port
			l = ln
		}
	}
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, m, fmt.Errorf("cannot publish %s: host port %d is already in use", m, m.HostPort)
		}
		return nil, m, fmt.Errorf("cannot publish %s: %w", m, err)
	}
	return l, m, nil
}

// Serve forwards connections through d until Close. Called again (the
// container restarted in a new network namespace), it switches to the new
// dialer and closes the old one.
func (p *PortProxy) Serve(d PortDialer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.dialer
	p.dialer = d
	if old != nil && old != d {
		old.Close()
	}
	if !p.serving {
		p.serving = true
		for i := range p.Bound {
			p.serveLocked(i)
		}
	}
}

// serveLocked serves mapping i's host listener, if it has one.
func (p *PortProxy) serveLocked(i int) {
	switch l := p.listeners[i].(type) {
	case net.Listener:
		go p.serveTCP(l, p.Bound[i])
	case net.PacketConn:
		go p.serveUDP(l, p.Bound[i])
	}
}

func (p *PortProxy) dial(network string, port int, from net.Addr) (net.Conn, error) {
	p.mu.Lock()
	d := p.dialer
	p.mu.Unlock()
	if d == nil {
		// Closed while the connection was being accepted.
		return nil, errors.New("port proxy closed")
	}
	return d.DialPort(network, port, from)
}

func (p *PortProxy) serveTCP(ln net.Listener, m PortMapping) {
	forward(ln, func(from net.Addr) (net.Conn, error) { return p.dial("tcp", m.ContainerPort, from) })
}

// forward relays each connection ln accepts to the one dial makes for it:
// with splice between two TCP sockets.
func forward(ln net.Listener, dial func(from net.Addr) (net.Conn, error)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			in, err := dial(c.RemoteAddr())
			if err != nil {
				return
			}
			defer in.Close()
			a, aTCP := c.(*net.TCPConn)
			b, bTCP := in.(*net.TCPConn)
			if aTCP && bTCP {
				splice(a, b)
				return
			}
			Relay(c, in)
		}()
	}
}

// splice copies both ways until both directions are done, passing on
// half-closes.
func splice(a, b *net.TCPConn) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { io.Copy(a, b); a.CloseWrite(); wg.Done() }()
	go func() { io.Copy(b, a); b.CloseWrite(); wg.Done() }()
	wg.Wait()
}

// serveUDP relays datagrams: one socket inside the container per client.
func (p *PortProxy) serveUDP(pc net.PacketConn, m PortMapping) {
	var mu sync.Mutex
	clients := map[string]net.Conn{}
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		key := from.String()
		mu.Lock()
		c, ok := clients[key]
		mu.Unlock()
		if !ok {
			c, err = p.dial("udp", m.ContainerPort, from)
			if err != nil {
				continue
			}
			mu.Lock()
			clients[key] = c
			mu.Unlock()
			go func(c net.Conn, from net.Addr) {
				defer func() { mu.Lock(); delete(clients, from.String()); mu.Unlock(); c.Close() }()
				rb := make([]byte, 65535)
				for {
					c.SetReadDeadline(time.Now().Add(2 * time.Minute))
					n, err := c.Read(rb)
					if err != nil {
						return
					}
					pc.WriteTo(rb[:n], from)
				}
			}(c, from)
		}
		c.Write(buf[:n])
	}
}

// Close stops listening.
func (p *PortProxy) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.listeners {
		if l != nil {
			l.Close()
		}
	}
	p.listeners = nil
	p.closeInsideLocked(-1)
	if p.dialer != nil {
		p.dialer.Close()
		p.dialer = nil
	}
}
