//go:build linux

package netns

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"

	"github.com/roost-containers/roost/rootless"
	"golang.org/x/sys/unix"
)

// Handing a published TCP port to the container's server.
//
// The proxy carries each byte through the kernel twice (client to agent,
// agent to container), and on loopback reaches about three quarters of a
// direct connection. So where the container's server binds a published TCP
// port itself, the agent gives it a socket of the host's network namespace
// instead of its own, bound to the published host address and port: the
// bind(2) reaches the agent through a seccomp listener, which puts that
// socket in place of the caller's (container/bind_linux.go). Clients then
// connect straight to the server, which sees their real addresses, and the
// agent carries nothing.
//
// The proxy's listener holds the host port until then: a port in use still
// fails `run`, and a connection before the server is up is accepted and
// closed as before. So that the port still answers inside the container
// (its own localhost, --link), the agent listens on it there too and
// forwards those connections to the host socket.
//
// What must hold:
//   - Only a bind of a published TCP port, to an address that stands for
//     the container's (any, or ContainerIP), is handed over, and only to
//     that mapping's host address and port: the container gets nothing the
//     proxy did not already give it.
//   - A host port is either the proxy's, or handed: Reclaim takes back the
//     ones whose socket is gone (the container restarted), and then closes
//     the listeners inside that forwarded to it (else they would forward
//     to the proxy, which forwards to them).

// HostSocket makes the socket that a container's bind(2) of its socket to
// addr gets instead, where addr's port is published over TCP (once):
// a socket of this (the host's) network namespace, with the family, the
// blocking mode and the options of the container's socket (template, a
// duplicate of it), bound to the mapping's host address and port. The
// proxy stops listening there. nsPath is the container's network namespace,
// where the port then is forwarded to the new socket.
//
// ok is false where the bind is not one to hand over: it then goes ahead as
// the caller asked. With ok, a non-nil error is an unix.Errno for the
// caller's bind (EADDRINUSE: a socket of the container holds the port).
func (p *PortProxy) HostSocket(template int, addr netip.AddrPort, nsPath string) (fd int, ok bool, err error) {
	family, err := unix.GetsockoptInt(template, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil || (family != unix.AF_INET && family != unix.AF_INET6) {
		return -1, false, nil
	}
	if typ, err := unix.GetsockoptInt(template, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || typ != unix.SOCK_STREAM {
		return -1, false, nil
	}
	if proto, err := unix.GetsockoptInt(template, unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil || proto != unix.IPPROTO_TCP {
		return -1, false, nil
	}
	if a := addr.Addr().Unmap(); !a.IsUnspecified() && a != ContainerIP {
		return -1, false, nil
	}
	v6only := false
	if family == unix.AF_INET6 {
		on, err := unix.GetsockoptInt(template, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
		if err != nil {
			return -1, false, nil
		}
		v6only = on != 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	i := p.mappingLocked(int(addr.Port()))
	if i < 0 {
		return -1, false, nil
	}
	m := p.Bound[i]
	host, ok := hostAddr(m, family, v6only)
	if !ok {
		return -1, false, nil
	}
	if fd = p.takeListenerLocked(i, template, family, v6only); fd < 0 {
		if fd, err = p.bindNewLocked(i, template, family, host); err != nil {
			return -1, true, err
		}
	}
	// Errors are left out: the port then answers on the host only (a
	// server binding again finds its earlier forwarder in place).
	if ln, err := listenIn(nsPath, family, v6only, addr); err == nil {
		if p.inside == nil {
			p.inside = map[int][]net.Listener{}
		}
		p.inside[i] = append(p.inside[i], ln)
		target := forwardTarget(m, family)
		go forward(ln, func(net.Addr) (net.Conn, error) { return net.Dial("tcp", target) })
	}
	return fd, true, nil
}

// takeListenerLocked gives up the proxy's own listener of mapping i and
// returns a duplicate of it, with the blocking mode and options of the
// container's socket template, where it is of the same kind (family,
// IPV6_V6ONLY, no SO_REUSEPORT, which only a bind can take): the port then
// never is free, and connections waiting to be accepted stay for the
// container's server. -1 where it cannot.
func (p *PortProxy) takeListenerLocked(i int, template, family int, v6only bool) int {
	ln, ok := p.listeners[i].(*net.TCPListener)
	if !ok {
		return -1
	}
	if on, err := unix.GetsockoptInt(template, unix.SOL_SOCKET, unix.SO_REUSEPORT); err != nil || on != 0 {
		return -1
	}
	rc, err := ln.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	rc.Control(func(l uintptr) {
		if d, err := unix.FcntlInt(l, unix.F_DUPFD_CLOEXEC, 0); err == nil {
			fd = d
		}
	})
	if fd < 0 {
		return -1
	}
	if f, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil || f != family {
		unix.Close(fd)
		return -1
	}
	if family == unix.AF_INET6 {
		if on, err := unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY); err != nil || (on != 0) != v6only {
			unix.Close(fd)
			return -1
		}
	}
	// Close first: the duplicate shares the listener's blocking mode, and
	// the proxy's accept loop, made blocking, would wait in accept(2) and
	// keep Close waiting. The duplicate keeps the socket.
	ln.Close()
	p.listeners[i], p.handed[i] = nil, true
	// Options that cannot be copied leave the defaults: the socket is the
	// container's now either way.
	copySocketOptions(fd, template, family, true)
	return fd
}

// bindNewLocked makes a socket like template and binds it to host in place
// of mapping i's listener, if the proxy still has that.
func (p *PortProxy) bindNewLocked(i int, template, family int, host unix.Sockaddr) (int, error) {
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, errnoOf(err)
	}
	if err := copySocketOptions(fd, template, family, false); err != nil {
		unix.Close(fd)
		return -1, errnoOf(err)
	}
	if l := p.listeners[i]; l != nil {
		// Close waits until the descriptor is closed: the port is free.
		l.Close()
		p.listeners[i], p.handed[i] = nil, true
	}
	if err := unix.Bind(fd, host); err != nil {
		unix.Close(fd)
		p.reclaimLocked(i)
		return -1, errnoOf(err)
	}
	return fd, nil
}

// mappingLocked is the index of the one TCP mapping of container port
// port, or -1.
func (p *PortProxy) mappingLocked(port int) int {
	found := -1
	for i, m := range p.Bound {
		if m.Proto == "tcp" && m.ContainerPort == port {
			if found >= 0 {
				return -1 // one socket cannot serve two host ports
			}
			found = i
		}
	}
	if found >= 0 && p.listeners == nil {
		return -1 // closed
	}
	return found
}

// Reclaim listens again, for the proxy, on every handed host port that is
// free again (its socket closed: the container's server ended, or the
// container did), and stops forwarding those ports inside the container.
func (p *PortProxy) Reclaim() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.Bound {
		p.reclaimLocked(i)
	}
}

func (p *PortProxy) reclaimLocked(i int) {
	if !p.handed[i] || p.listeners == nil {
		return
	}
	l, _, err := listen(p.Bound[i])
	if err != nil {
		return // the container's socket still holds it
	}
	p.listeners[i], p.handed[i] = l, false
	p.closeInsideLocked(i)
	if p.serving {
		p.serveLocked(i)
	}
}

// closeInsideLocked closes the listeners inside the container for mapping
// i, or for all with -1.
func (p *PortProxy) closeInsideLocked(i int) {
	for j, ls := range p.inside {
		if i < 0 || i == j {
			for _, ln := range ls {
				ln.Close()
			}
			delete(p.inside, j)
		}
	}
}

// hostAddr is the address a socket of family binds to for mapping m, or
// false where that family cannot stand for m's host address.
func hostAddr(m PortMapping, family int, v6only bool) (unix.Sockaddr, bool) {
	ip := netip.IPv4Unspecified()
	if family == unix.AF_INET6 {
		ip = netip.IPv6Unspecified()
	}
	if m.HostIP != "" {
		var err error
		if ip, err = netip.ParseAddr(m.HostIP); err != nil {
			return nil, false
		}
	}
	if family == unix.AF_INET {
		if !ip.Unmap().Is4() {
			return nil, false
		}
		return &unix.SockaddrInet4{Port: m.HostPort, Addr: ip.Unmap().As4()}, true
	}
	if ip.Is4() {
		if v6only {
			return nil, false
		}
		ip = netip.AddrFrom16(ip.As16())
	}
	return &unix.SockaddrInet6{Port: m.HostPort, Addr: ip.As16()}, true
}

// forwardTarget is where a connection made inside the container to a
// handed port goes: the host address of m, on the host's loopback where m
// is published on every address.
func forwardTarget(m PortMapping, family int) string {
	ip := m.HostIP
	if ip == "" || ip == "0.0.0.0" || ip == "::" {
		ip = "127.0.0.1"
		if family == unix.AF_INET6 {
			ip = "::1"
		}
	}
	return net.JoinHostPort(ip, strconv.Itoa(m.HostPort))
}

// copySocketOptions gives fd the blocking mode and the options of the
// container's socket template that matter for a listening socket and the
// connections it accepts; for a socket already bound, those that still can
// change.
func copySocketOptions(fd, template, family int, bound bool) error {
	fl, err := unix.FcntlInt(uintptr(template), unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	if err := unix.SetNonblock(fd, fl&unix.O_NONBLOCK != 0); err != nil {
		return err
	}
	// As Go's and most servers' listeners: a port just used binds again.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return err
	}
	opts := []struct{ level, opt int }{
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE},
		{unix.IPPROTO_TCP, unix.TCP_NODELAY},
		{unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT},
		{unix.IPPROTO_TCP, unix.TCP_FASTOPEN},
		{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL},
		{unix.IPPROTO_TCP, unix.TCP_KEEPCNT},
	}
	if !bound {
		opts = append(opts, struct{ level, opt int }{unix.SOL_SOCKET, unix.SO_REUSEPORT})
		if family == unix.AF_INET6 {
			opts = append(opts, struct{ level, opt int }{unix.IPPROTO_IPV6, unix.IPV6_V6ONLY})
		}
	}
	for _, o := range opts {
		v, err := unix.GetsockoptInt(template, o.level, o.opt)
		if err != nil {
			continue // not set there, or not known here
		}
		if err := unix.SetsockoptInt(fd, o.level, o.opt, v); err != nil && o.level == unix.IPPROTO_IPV6 {
			return err
		}
	}
	return nil
}

// listenIn listens in the network namespace at nsPath on the family and
// address the container asked for, from a thread that joins it and ends.
func listenIn(nsPath string, family int, v6only bool, addr netip.AddrPort) (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	done := make(chan result, 1)
	rootless.GoLocked(func() {
		if err := JoinNetns(nsPath); err != nil {
			done <- result{nil, err}
			return
		}
		fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			done <- result{nil, err}
			return
		}
		f := os.NewFile(uintptr(fd), "inside")
		defer f.Close()
		var sa unix.Sockaddr
		if family == unix.AF_INET {
			sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().Unmap().As4()}
		} else {
			on := 0
			if v6only {
				on = 1
			}
			unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, on)
			sa = &unix.SockaddrInet6{Port: int(addr.Port()), Addr: addr.Addr().As16()}
		}
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		if err := unix.Bind(fd, sa); err != nil {
			done <- result{nil, err}
			return
		}
		if err := unix.Listen(fd, 128); err != nil {
			done <- result{nil, err}
			return
		}
		ln, err := net.FileListener(f)
		done <- result{ln, err}
	})
	r := <-done
	return r.ln, r.err
}

func errnoOf(err error) error {
	var en unix.Errno
	if errors.As(err, &en) {
		return en
	}
	return unix.EIO
}
