//go:build linux

package netns

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/roost-containers/roost/rootless"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// echoRequest is the IPv4 packet of an ICMP echo request (or, with typ, of
// another ICMP message) from src to dst.
func echoRequest(typ header.ICMPv4Type, src, dst netip.Addr, id, seq uint16, data []byte) []byte {
	b := echoReply(src, dst, id, seq, data)
	msg := header.ICMPv4(header.IPv4(b).Payload())
	msg.SetType(typ)
	msg.SetChecksum(header.ICMPv4Checksum(msg[:header.ICMPv4MinimumSize], checksum.Checksum(data, 0)))
	return b
}

func TestEchoProxy(t *testing.T) {
	if err := rootless.PingSockets(); err != nil {
		t.Fatal(err)
	}

	target := func(dst netip.Addr) (netip.Addr, bool) {
		switch {
		case dst == Gateway:
			return netip.MustParseAddr("127.0.0.1"), true
		case Subnet.Contains(dst):
			return netip.Addr{}, false
		}
		return dst, true
	}
	replies := make(chan []byte, 16)
	p := newEchoProxy(target, func(b []byte) { replies <- b })
	defer p.close()

	tests := []struct {
		name      string
		pkt       []byte
		taken     bool
		wantReply bool
	}{
		{"echo to the gateway", echoRequest(header.ICMPv4Echo, ContainerIP, Gateway, 4242, 7, []byte("payload from the container")), true, true},
		{"echo to nobody in the subnet", echoRequest(header.ICMPv4Echo, ContainerIP, netip.MustParseAddr("10.0.2.50"), 4242, 8, []byte("x")), true, false},
		{"echo to a broadcast address", echoRequest(header.ICMPv4Echo, ContainerIP, netip.MustParseAddr("255.255.255.255"), 4242, 9, []byte("x")), true, false},
		{"echo reply", echoRequest(header.ICMPv4EchoReply, ContainerIP, Gateway, 4242, 10, []byte("x")), false, false},
		{"destination unreachable", echoRequest(header.ICMPv4DstUnreachable, ContainerIP, Gateway, 0, 0, nil), false, false},
		{"truncated", echoRequest(header.ICMPv4Echo, ContainerIP, Gateway, 4242, 11, []byte("x"))[:24], false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.handle(tt.pkt); got != tt.taken {
				t.Fatalf("handle took it: %v, want %v", got, tt.taken)
			}
			if !tt.wantReply {
				select {
				case b := <-replies:
					t.Fatalf("unexpected reply % x", b)
				case <-time.After(200 * time.Millisecond):
				}
				return
			}
			var b []byte
			select {
			case b = <-replies:
			case <-time.After(5 * time.Second):
				t.Fatal("no echo reply")
			}
			req := header.IPv4(tt.pkt)
			ip := header.IPv4(b)
			if !ip.IsValid(len(b)) || !ip.IsChecksumValid() {
				t.Fatalf("reply is no valid IPv4 packet: % x", b)
			}
			if ip.SourceAddress() != req.DestinationAddress() || ip.DestinationAddress() != req.SourceAddress() || ip.Protocol() != uint8(header.ICMPv4ProtocolNumber) {
				t.Errorf("reply %s -> %s protocol %d, want %s -> %s ICMP", ip.SourceAddress(), ip.DestinationAddress(), ip.Protocol(), req.DestinationAddress(), req.SourceAddress())
			}
			msg, in := header.ICMPv4(ip.Payload()), header.ICMPv4(req.Payload())
			if checksum.Checksum(msg, 0) != 0xffff {
				t.Errorf("reply's ICMP checksum is wrong: % x", msg)
			}
			if msg.Type() != header.ICMPv4EchoReply || msg.Ident() != in.Ident() || msg.Sequence() != in.Sequence() || !bytes.Equal(msg.Payload(), in.Payload()) {
				t.Errorf("reply type %d id %d seq %d payload %q, want type 0 id %d seq %d payload %q",
					msg.Type(), msg.Ident(), msg.Sequence(), msg.Payload(), in.Ident(), in.Sequence(), in.Payload())
			}
		})
	}
	p.mu.Lock()
	if n := len(p.flows); n != 1 {
		t.Errorf("%d flows open, want 1", n)
	}
	p.mu.Unlock()
}
