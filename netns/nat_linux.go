//go:build linux

package netns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/roost-containers/roost/rootless"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/link/tun"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// The container's side of the private network, laid out as slirp4netns
// does: one TUN interface with ContainerIP, the default route via Gateway
// (which is the host's loopback), and a DNS forwarder at DNSServer.
var (
	Subnet      = netip.MustParsePrefix("10.0.2.0/24")
	Gateway     = netip.MustParseAddr("10.0.2.2")
	DNSServer   = netip.MustParseAddr("10.0.2.3")
	ContainerIP = netip.MustParseAddr("10.0.2.100")
	// LinkBase is the first of the addresses given to --link targets.
	LinkBase = netip.MustParseAddr("10.0.2.200")
)

const (
	// Interface is the name of the container's interface.
	Interface = "eth0"
	// MTU is the interface's: large, as nothing on the path fragments.
	MTU = 65520
	// nic is the netstack's only NIC, the TUN device.
	nic = 1
	// udpIdle ends a UDP flow nobody used for that long.
	udpIdle = 60 * time.Second
)

// DialFunc opens a connection to addr (host:port) somewhere.
type DialFunc func(network, addr string) (net.Conn, error)

// NATOptions configure a container's user-mode network.
type NATOptions struct {
	// Resolver is the DNS server (host:port, reached from the host) that
	// queries to DNSServer:53 are forwarded to.
	Resolver string
	// Links maps addresses in Subnet to linked containers: a TCP connection
	// or UDP flow to one is dialled with its DialFunc (to 127.0.0.1:port
	// over there); for "udp" it returns a connection that keeps datagrams
	// whole.
	Links map[netip.Addr]DialFunc
}

// NAT is one container's user-mode network: a gVisor netstack on the
// container's TUN device that terminates the container's TCP and UDP flows
// and opens each again from the host, as slirp does.
type NAT struct {
	stack     *stack.Stack
	fd        int
	echo      *echoProxy
	opts      NATOptions
	closeOnce sync.Once
}

// OpenTUN creates the container's interface inside the network namespace
// at nsPath (such as /proc/PID/ns/net), gives it ContainerIP, MTU and the
// default route via Gateway, and returns the TUN device's descriptor, which
// StartNAT serves.
func OpenTUN(nsPath string) (int, error) {
	type result struct {
		fd  int
		err error
	}
	done := make(chan result, 1)
	rootless.GoLocked(func() {
		fd, err := openTUN(nsPath)
		done <- result{fd, err}
	})
	r := <-done
	return r.fd, r.err
}

func openTUN(nsPath string) (int, error) {
	f, err := os.Open(nsPath)
	if err != nil {
		return -1, err
	}
	err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
	f.Close()
	if err != nil {
		return -1, fmt.Errorf("join network namespace %s: %w", nsPath, err)
	}
	fd, err := tun.Open(Interface)
	if err != nil {
		return -1, fmt.Errorf("create %s on /dev/net/tun: %w: the private network needs /dev/net/tun usable by you (mode 0666, see roost info), or use --network none or host", Interface, err)
	}
	fail := func(what string, err error) (int, error) {
		unix.Close(fd)
		return -1, fmt.Errorf("configure %s: %s: %w", Interface, what, err)
	}
	// Persistent, the device outlives its descriptor and goes with the
	// namespace, in the kernel's own time: closing the last descriptor of
	// a non-persistent one unregisters it there and then, which holds up
	// the agent's exit for as long as the kernel's network lock is busy
	// (many containers ending at once).
	if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 1); err != nil {
		return fail("make persistent", err)
	}
	link, err := netlink.LinkByName(Interface)
	if err != nil {
		return fail("find", err)
	}
	if err := netlink.LinkSetMTU(link, MTU); err != nil {
		return fail("set mtu", err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: ContainerIP.AsSlice(), Mask: net.CIDRMask(Subnet.Bits(), 32)}}
	if err := netlink.AddrAdd(link, addr); err != nil {
		return fail("add address", err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fail("bring up", err)
	}
	route := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: Gateway.AsSlice()}
	if err := netlink.RouteAdd(route); err != nil {
		return fail("add default route", err)
	}
	return fd, nil
}

// StartNAT serves the TUN device fd (from OpenTUN) until Close, which
// closes fd; on an error fd is closed too.
func StartNAT(fd int, o NATOptions) (*NAT, error) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	n := &NAT{stack: s, fd: fd, opts: o}
	sack := tcpip.TCPSACKEnabled(true)
	s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack)
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: 4 << 10, Default: 128 << 10, Max: 8 << 20}
	s.SetTransportProtocolOption(tcp.ProtocolNumber, &rcv)
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: 4 << 10, Default: 128 << 10, Max: 8 << 20}
	s.SetTransportProtocolOption(tcp.ProtocolNumber, &snd)
	// The handlers before the NIC: its readers deliver packets at once,
	// and would race with setting them.
	tf := tcp.NewForwarder(s, 0, 1024, n.forwardTCP)
	s.SetTransportProtocolHandler(tcp.ProtocolNumber, tf.HandlePacket)
	uf := udp.NewForwarder(s, n.forwardUDP)
	s.SetTransportProtocolHandler(udp.ProtocolNumber, uf.HandlePacket)
	ep, err := fdbased.New(&fdbased.Options{FDs: []int{fd}, MTU: MTU, RXChecksumOffload: true})
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("serve %s: %w", Interface, err)
	}
	inj, ok := ep.(outboundInjector)
	if !ok {
		n.Close()
		return nil, fmt.Errorf("serve %s: the link endpoint cannot write whole packets", Interface)
	}
	link := newEchoEndpoint(inj, n.echoTarget)
	n.echo = link.proxy
	if err := s.CreateNIC(nic, link); err != nil {
		n.Close()
		return nil, fmt.Errorf("serve %s: %s", Interface, err)
	}
	// Answer for every address: each flow's destination is the host to
	// dial, and replies leave from it.
	s.SetPromiscuousMode(nic, true)
	s.SetSpoofing(nic, true)
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: nic}})
	return n, nil
}

// Close stops the network; the container's flows end.
func (n *NAT) Close() {
	n.closeOnce.Do(func() {
		if n.echo != nil {
			// No echo reply is written after this: fd is closed below.
			n.echo.close()
		}
		n.stack.Close()
		n.stack.Wait()
		unix.Close(n.fd)
	})
}

// DialPort connects to the container's port through the netstack, from the
// client's own address, so that the container sees who connects. A client
// on the host's loopback comes from Gateway, as the container's kernel
// takes no loopback source from outside.
func (n *NAT) DialPort(network string, port int, from net.Addr) (net.Conn, error) {
	src := Gateway
	var srcPort int
	switch a := from.(type) {
	case *net.TCPAddr:
		if ip, ok := netip.AddrFromSlice(a.IP); ok && !ip.Unmap().IsLoopback() && ip.Unmap().Is4() {
			src = ip.Unmap()
		}
		srcPort = a.Port
	case *net.UDPAddr:
		if ip, ok := netip.AddrFromSlice(a.IP); ok && !ip.Unmap().IsLoopback() && ip.Unmap().Is4() {
			src = ip.Unmap()
		}
		srcPort = a.Port
	}
	local := tcpip.FullAddress{NIC: nic, Addr: tcpip.AddrFrom4(src.As4()), Port: uint16(srcPort)}
	remote := tcpip.FullAddress{NIC: nic, Addr: tcpip.AddrFrom4(ContainerIP.As4()), Port: uint16(port)}
	if network == "udp" {
		c, err := gonet.DialUDP(n.stack, &local, &remote, ipv4.ProtocolNumber)
		if err != nil {
			// The client's port is taken (another client behind the
			// same address): any port will do.
			local.Port = 0
			c, err = gonet.DialUDP(n.stack, &local, &remote, ipv4.ProtocolNumber)
		}
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := gonet.DialTCPWithBind(ctx, n.stack, local, remote, ipv4.ProtocolNumber)
	if err != nil && local.Port != 0 && !errors.Is(err, context.DeadlineExceeded) {
		local.Port = 0
		c, err = gonet.DialTCPWithBind(ctx, n.stack, local, remote, ipv4.ProtocolNumber)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// target says where a flow to dst:port from the container goes, and how.
func (n *NAT) target(dst netip.Addr, port uint16) (string, DialFunc) {
	p := strconv.Itoa(int(port))
	switch {
	case dst == Gateway:
		return net.JoinHostPort("127.0.0.1", p), nil
	case dst == DNSServer && port == 53 && n.opts.Resolver != "":
		return n.opts.Resolver, nil
	}
	if d, ok := n.opts.Links[dst]; ok {
		return net.JoinHostPort("127.0.0.1", p), d
	}
	return net.JoinHostPort(dst.String(), p), nil
}

// echoTarget says which address answers the container's pings to dst, and
// false when none does: the host's loopback for Gateway, and for DNSServer
// and the link addresses too, as this host serves them; nothing for the
// rest of Subnet; dst itself elsewhere.
func (n *NAT) echoTarget(dst netip.Addr) (netip.Addr, bool) {
	loopback := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	if _, ok := n.opts.Links[dst]; ok || dst == Gateway || (dst == DNSServer && n.opts.Resolver != "") {
		return loopback, true
	}
	if Subnet.Contains(dst) {
		return netip.Addr{}, false
	}
	return dst, true
}

func (n *NAT) forwardTCP(r *tcp.ForwarderRequest) {
	id := r.ID()
	dst, _ := netip.AddrFromSlice(id.LocalAddress.AsSlice())
	addr, dial := n.target(dst, id.LocalPort)
	if dial == nil {
		dial = func(network, addr string) (net.Conn, error) { return net.DialTimeout(network, addr, 30*time.Second) }
	}
	out, err := dial("tcp", addr)
	if err != nil {
		// Refused or unreachable: the container sees a reset.
		r.Complete(true)
		return
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		r.Complete(true)
		out.Close()
		return
	}
	r.Complete(false)
	in := gonet.NewTCPConn(&wq, ep)
	Relay(in, out)
}

// halfCloser is a connection whose sending side closes alone.
type halfCloser interface {
	net.Conn
	CloseWrite() error
}

// Relay copies both ways until both directions are done, passing on
// half-closes, then closes both.
func Relay(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src)
		if hc, ok := dst.(halfCloser); ok {
			hc.CloseWrite()
		} else {
			dst.Close()
		}
	}
	go pipe(a, b)
	go pipe(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}

func (n *NAT) forwardUDP(r *udp.ForwarderRequest) bool {
	id := r.ID()
	dst, _ := netip.AddrFromSlice(id.LocalAddress.AsSlice())
	addr, dial := n.target(dst, id.LocalPort)
	if dial == nil {
		dial = net.Dial
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		return false
	}
	in := gonet.NewUDPConn(&wq, ep)
	go func() {
		defer in.Close()
		out, err := dial("udp", addr)
		if err != nil {
			return
		}
		defer out.Close()
		RelayDatagrams(in, out)
	}()
	return true
}

// RelayDatagrams moves datagrams both ways until the flow was idle for
// udpIdle, then closes both. Each of a and b keeps datagrams whole: a Read
// returns one, a Write sends one.
func RelayDatagrams(a, b net.Conn) {
	done := make(chan struct{}, 2)
	var last sync.Mutex
	lastUsed := time.Now()
	touch := func() { last.Lock(); lastUsed = time.Now(); last.Unlock() }
	idle := func() bool { last.Lock(); defer last.Unlock(); return time.Since(lastUsed) >= udpIdle }
	pipe := func(dst, src net.Conn) {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 65535)
		for {
			src.SetReadDeadline(time.Now().Add(udpIdle))
			n, err := src.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() && !idle() {
					continue
				}
				return
			}
			touch()
			dst.Write(buf[:n])
		}
	}
	go pipe(a, b)
	go pipe(b, a)
	<-done
	a.Close()
	b.Close()
	<-done
}
