//go:build linux

package netns

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

const (
	// echoIdle ends a ping flow (one destination and echo identifier)
	// that saw no echo for that long.
	echoIdle = 10 * time.Second
	// maxEchoFlows bounds the ping flows open at once; an echo request
	// that would open one more gets no reply.
	maxEchoFlows = 256
)

// echoTargetFunc says which host address answers the container's echo
// requests to dst, and false when none does.
type echoTargetFunc func(dst netip.Addr) (netip.Addr, bool)

// echoProxy answers the container's ICMP echo requests (ping) with the
// host's: each request goes out through an unprivileged ICMP socket
// (socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)), and each reply comes back to
// the container from the address it pinged, with its identifier, sequence
// number and payload. Where the host refuses such sockets (the user's group
// is outside net.ipv4.ping_group_range), requests go unanswered, silently.
//
// A flow is one source, destination and identifier, with its own socket
// (the kernel gives each socket its own identifier); it ends after echoIdle
// without echoes, and at most maxEchoFlows are open at once.
type echoProxy struct {
	target echoTargetFunc
	// write sends a whole IPv4 packet to the container; it is called with
	// mu held, never after close.
	write func(b []byte)

	mu     sync.Mutex
	flows  map[echoFlowKey]*echoFlow
	closed bool
}

type echoFlowKey struct {
	src, dst netip.Addr
	id       uint16
}

type echoFlow struct {
	conn *icmp.PacketConn
	mu   sync.Mutex
	last time.Time
}

func (f *echoFlow) touch() {
	f.mu.Lock()
	f.last = time.Now()
	f.mu.Unlock()
}

func (f *echoFlow) idle() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return time.Since(f.last) >= echoIdle
}

func newEchoProxy(target echoTargetFunc, write func(b []byte)) *echoProxy {
	return &echoProxy{target: target, write: write, flows: map[echoFlowKey]*echoFlow{}}
}

// handle takes the IPv4 packet b from the container if it is an ICMP echo
// request, which it sends on, and says whether it took it. It keeps no
// reference to b. Fragments of ICMP messages are taken and dropped: the
// netstack would otherwise answer a reassembled echo request itself.
func (p *echoProxy) handle(b []byte) bool {
	ip := header.IPv4(b)
	if len(b) < header.IPv4MinimumSize || ip.Protocol() != uint8(header.ICMPv4ProtocolNumber) || !ip.IsValid(len(b)) {
		return false
	}
	if ip.More() || ip.FragmentOffset() != 0 {
		return true
	}
	msg := header.ICMPv4(ip.Payload())
	if len(msg) < header.ICMPv4MinimumSize || msg.Type() != header.ICMPv4Echo {
		return false
	}
	if checksum.Checksum(msg, 0) != 0xffff {
		return true
	}
	src, _ := netip.AddrFromSlice(ip.SourceAddressSlice())
	dst, _ := netip.AddrFromSlice(ip.DestinationAddressSlice())
	if !dst.IsGlobalUnicast() {
		return true
	}
	to, ok := p.target(dst)
	if !ok {
		return true
	}
	key := echoFlowKey{src: src, dst: dst, id: msg.Ident()}
	f := p.flow(key)
	if f == nil {
		return true
	}
	f.touch()
	req := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: int(key.id), Seq: int(msg.Sequence()), Data: msg.Payload()}}
	out, err := req.Marshal(nil)
	if err != nil {
		return true
	}
	// Unreachable, refused or too big: ping sees no reply, as it would
	// for a request lost on the way.
	f.conn.WriteTo(out, &net.UDPAddr{IP: to.AsSlice()})
	return true
}

// flow returns key's flow, opened now if need be, or nil where the host
// gives no ICMP socket, the proxy is closed or has maxEchoFlows open.
func (p *echoProxy) flow(key echoFlowKey) *echoFlow {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f, ok := p.flows[key]; ok {
		return f
	}
	if p.closed || len(p.flows) >= maxEchoFlows {
		return nil
	}
	conn, err := icmp.ListenPacket("udp4", "0.0.0.0")
	if err != nil {
		return nil
	}
	f := &echoFlow{conn: conn, last: time.Now()}
	p.flows[key] = f
	go p.serve(key, f)
	return f
}

// serve passes the echo replies of f on to the container until f was idle
// for echoIdle or the proxy closed.
func (p *echoProxy) serve(key echoFlowKey, f *echoFlow) {
	defer func() {
		p.mu.Lock()
		if p.flows[key] == f {
			delete(p.flows, key)
		}
		p.mu.Unlock()
		f.conn.Close()
	}()
	buf := make([]byte, 65535)
	for {
		f.conn.SetReadDeadline(time.Now().Add(echoIdle))
		n, _, err := f.conn.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !f.idle() {
				continue
			}
			return
		}
		m, err := icmp.ParseMessage(ipv4.ICMPTypeEcho.Protocol(), buf[:n])
		if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		echo, ok := m.Body.(*icmp.Echo)
		if !ok {
			continue
		}
		f.touch()
		p.mu.Lock()
		if !p.closed {
			p.write(echoReply(key.dst, key.src, key.id, uint16(echo.Seq), echo.Data))
		}
		p.mu.Unlock()
	}
}

// close ends every flow; later requests go unanswered, and no reply is
// written once it returns.
func (p *echoProxy) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, f := range p.flows {
		f.conn.Close()
	}
}

// echoReply is the IPv4 packet of an ICMP echo reply from src to dst.
func echoReply(src, dst netip.Addr, id, seq uint16, data []byte) []byte {
	b := make([]byte, header.IPv4MinimumSize+header.ICMPv4MinimumSize+len(data))
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(b)),
		Flags:       header.IPv4FlagDontFragment,
		TTL:         64,
		Protocol:    uint8(header.ICMPv4ProtocolNumber),
		SrcAddr:     tcpip.AddrFrom4(src.As4()),
		DstAddr:     tcpip.AddrFrom4(dst.As4()),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	msg := header.ICMPv4(ip.Payload())
	msg.SetType(header.ICMPv4EchoReply)
	msg.SetIdent(id)
	msg.SetSequence(seq)
	copy(msg.Payload(), data)
	msg.SetChecksum(header.ICMPv4Checksum(msg[:header.ICMPv4MinimumSize], checksum.Checksum(data, 0)))
	return b
}

// echoEndpoint is the TUN device's link endpoint with the container's ICMP
// echo requests taken out before the netstack sees them: its ipv4 would
// answer them itself, for any address.
type echoEndpoint struct {
	nested.Endpoint
	proxy *echoProxy
}

var _ stack.LinkEndpoint = (*echoEndpoint)(nil)
var _ stack.NetworkDispatcher = (*echoEndpoint)(nil)

// outboundInjector is a link endpoint that writes a fully formed packet to
// its link (fdbased's endpoint is one).
type outboundInjector interface {
	stack.LinkEndpoint
	InjectOutbound(dest tcpip.Address, packet *buffer.View) tcpip.Error
}

// newEchoEndpoint wraps link, sending the container's echo requests to the
// addresses target names.
func newEchoEndpoint(link outboundInjector, target echoTargetFunc) *echoEndpoint {
	e := &echoEndpoint{}
	e.Endpoint.Init(link, e)
	e.proxy = newEchoProxy(target, func(b []byte) {
		link.InjectOutbound(tcpip.Address{}, buffer.NewViewWithData(b))
	})
	return e
}

// DeliverNetworkPacket implements stack.NetworkDispatcher.
func (e *echoEndpoint) DeliverNetworkPacket(protocol tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	if protocol == header.IPv4ProtocolNumber {
		if h, ok := pkt.Data().PullUp(header.IPv4MinimumSize); ok && header.IPv4(h).Protocol() == uint8(header.ICMPv4ProtocolNumber) {
			if e.proxy.handle(pkt.Data().AsRange().ToSlice()) {
				return
			}
		}
	}
	e.Endpoint.DeliverNetworkPacket(protocol, pkt)
}

// Close implements stack.LinkEndpoint.
func (e *echoEndpoint) Close() {
	e.proxy.close()
	e.Endpoint.Close()
}
