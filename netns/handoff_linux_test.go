//go:build linux

package netns

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// socketOf makes a socket as a container's server would before bind.
func socketOf(t *testing.T, family, typ int, v6only bool) int {
	t.Helper()
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if family == unix.AF_INET6 {
		on := 0
		if v6only {
			on = 1
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, on); err != nil {
			t.Fatal(err)
		}
	}
	return fd
}

// echoOn serves fd (and closes it) as a listening socket: each connection
// gets "got".
func echoOn(t *testing.T, fd int) net.Listener {
	t.Helper()
	if err := unix.Listen(fd, 16); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "handed")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("got"))
			c.Close()
		}
	}()
	return ln
}

// read connects to addr and returns what it reads.
func read(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	b := make([]byte, 16)
	n, err := c.Read(b)
	if n > 0 {
		err = nil
	}
	return string(b[:n]), err
}

func TestHostSocket(t *testing.T) {
	p, err := Listen([]PortMapping{
		{HostIP: "127.0.0.1", ContainerPort: 80, Proto: "tcp"},
		{HostIP: "127.0.0.1", ContainerPort: 53, Proto: "udp"},
		{HostIP: "127.0.0.1", ContainerPort: 90, Proto: "tcp"},
		{HostIP: "127.0.0.1", ContainerPort: 90, Proto: "tcp"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// The proxy's dialer answers "proxy" for every connection.
	p.Serve(&Dialer{done: make(chan struct{}), dial: func(n, a string) (net.Conn, error) {
		c, s := net.Pipe()
		go func() { s.Write([]byte("proxy")); s.Close() }()
		return c, nil
	}})
	host := fmt.Sprintf("127.0.0.1:%d", p.Bound[0].HostPort)
	if got, err := read(host); got != "proxy" {
		t.Fatalf("before the handoff: %q, %v; want the proxy", got, err)
	}
	any4 := netip.AddrPortFrom(netip.IPv4Unspecified(), 80)
	// Binds that stay the container's own.
	for _, c := range []struct {
		name        string
		family, typ int
		v6only      bool
		addr        netip.AddrPort
	}{
		{"unpublished port", unix.AF_INET, unix.SOCK_STREAM, false, netip.AddrPortFrom(netip.IPv4Unspecified(), 81)},
		{"loopback address", unix.AF_INET, unix.SOCK_STREAM, false, netip.MustParseAddrPort("127.0.0.1:80")},
		{"datagram socket", unix.AF_INET, unix.SOCK_DGRAM, false, netip.AddrPortFrom(netip.IPv4Unspecified(), 53)},
		{"IPv6-only socket for an IPv4 host address", unix.AF_INET6, unix.SOCK_STREAM, true, netip.AddrPortFrom(netip.IPv6Unspecified(), 80)},
		{"port published twice", unix.AF_INET, unix.SOCK_STREAM, false, netip.AddrPortFrom(netip.IPv4Unspecified(), 90)},
		{"unix socket", unix.AF_UNIX, unix.SOCK_STREAM, false, any4},
	} {
		fd, ok, err := p.HostSocket(socketOf(t, c.family, c.typ, c.v6only), c.addr, "/nonexistent")
		if ok || fd >= 0 || err != nil {
			t.Errorf("%s: handed over (%d, %v, %v)", c.name, fd, ok, err)
		}
	}
	if got, err := read(host); got != "proxy" {
		t.Fatalf("after binds not handed: %q, %v; want the proxy", got, err)
	}

	// A dual-stack IPv6 socket bound to any address takes the host port.
	fd, ok, err := p.HostSocket(socketOf(t, unix.AF_INET6, unix.SOCK_STREAM, false), netip.AddrPortFrom(netip.IPv6Unspecified(), 80), "/nonexistent")
	if !ok || err != nil {
		t.Fatalf("bind of a published port: %v, %v", ok, err)
	}
	if sa, err := unix.Getsockname(fd); err != nil || sa.(*unix.SockaddrInet6).Port != p.Bound[0].HostPort {
		t.Fatalf("the host socket is bound to %+v (%v), want port %d", sa, err, p.Bound[0].HostPort)
	}
	srv := echoOn(t, fd)
	if got, err := read(host); got != "got" {
		t.Fatalf("after the handoff: %q, %v; want the container's server", got, err)
	}
	// While it is held, another bind of the port fails as the kernel's.
	if _, ok, err := p.HostSocket(socketOf(t, unix.AF_INET, unix.SOCK_STREAM, false), any4, "/nonexistent"); !ok || err != unix.EADDRINUSE {
		t.Errorf("second bind of a held port: %v, %v; want EADDRINUSE", ok, err)
	}
	p.Reclaim() // the port is held: nothing changes
	if got, err := read(host); got != "got" {
		t.Fatalf("after Reclaim of a held port: %q, %v", got, err)
	}

	// The server ends; a new one (IPv4 this time) binds and gets the port.
	srv.Close()
	fd, ok, err = p.HostSocket(socketOf(t, unix.AF_INET, unix.SOCK_STREAM, false), netip.AddrPortFrom(ContainerIP, 80), "/nonexistent")
	if !ok || err != nil {
		t.Fatalf("bind again after the server ended: %v, %v", ok, err)
	}
	srv = echoOn(t, fd)
	if got, err := read(host); got != "got" {
		t.Fatalf("after the second handoff: %q, %v", got, err)
	}
	// The container ends: the proxy listens again.
	srv.Close()
	p.Reclaim()
	if got, err := read(host); got != "proxy" {
		t.Fatalf("after Reclaim: %q, %v; want the proxy", got, err)
	}
}

// TestHostSocketKeepsListener: where the container's socket is of the
// proxy's listener's kind, that listener itself is handed over, and a
// connection waiting in its backlog reaches the container's server.
func TestHostSocketKeepsListener(t *testing.T) {
	p, err := Listen([]PortMapping{{HostIP: "127.0.0.1", ContainerPort: 80, Proto: "tcp"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// Not served: a connection waits in the listener's backlog.
	host := fmt.Sprintf("127.0.0.1:%d", p.Bound[0].HostPort)
	c, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tmpl := socketOf(t, unix.AF_INET, unix.SOCK_STREAM, false)
	if err := unix.SetNonblock(tmpl, true); err != nil {
		t.Fatal(err)
	}
	fd, ok, err := p.HostSocket(tmpl, netip.AddrPortFrom(netip.IPv4Unspecified(), 80), "/nonexistent")
	if !ok || err != nil {
		t.Fatalf("bind of a published port: %v, %v", ok, err)
	}
	if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK == 0 {
		t.Errorf("the handed socket is not non-blocking as the container's (%#o, %v)", fl, err)
	}
	echoOn(t, fd)
	c.SetDeadline(time.Now().Add(2 * time.Second))
	b := make([]byte, 3)
	if _, err := c.Read(b); err != nil || string(b) != "got" {
		t.Fatalf("the waiting connection read %q, %v; want the container's server", b, err)
	}
	if got, err := read(host); got != "got" {
		t.Fatalf("a new connection: %q, %v", got, err)
	}
}

// TestHostSocketWhileServing: the proxy's listener is handed over while
// its accept loop is busy, to a container socket in blocking mode; the
// handoff must not wait on that loop (the listener's blocking mode is the
// container's only once the loop let go of it).
func TestHostSocketWhileServing(t *testing.T) {
	for round := 0; round < 20; round++ {
		p, err := Listen([]PortMapping{{HostIP: "127.0.0.1", ContainerPort: 80, Proto: "tcp"}})
		if err != nil {
			t.Fatal(err)
		}
		p.Serve(&Dialer{done: make(chan struct{}), dial: func(n, a string) (net.Conn, error) {
			c, s := net.Pipe()
			go func() { s.Write([]byte("proxy")); s.Close() }()
			return c, nil
		}})
		host := fmt.Sprintf("127.0.0.1:%d", p.Bound[0].HostPort)
		stop := make(chan struct{})
		go func() {
			for {
				select {
				case <-stop:
					return
				default:
					read(host)
				}
			}
		}()
		time.Sleep(5 * time.Millisecond)
		done := make(chan int, 1)
		go func() {
			fd, _, _ := p.HostSocket(socketOf(t, unix.AF_INET, unix.SOCK_STREAM, false), netip.AddrPortFrom(netip.IPv4Unspecified(), 80), "/nonexistent")
			done <- fd
		}()
		select {
		case fd := <-done:
			if fd < 0 {
				t.Fatalf("round %d: not handed over", round)
			}
			if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK != 0 {
				t.Errorf("round %d: the handed socket is not blocking as the container's (%#o, %v)", round, fl, err)
			}
			echoOn(t, fd)
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: the handoff waits on the proxy's accept loop", round)
		}
		close(stop)
		if got, err := read(host); got != "got" {
			t.Fatalf("round %d: after the handoff: %q, %v", round, got, err)
		}
		p.Close()
	}
}
