//go:build linux

package netns

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// hereDialer dials in the test's own network namespace.
func hereDialer() *Dialer {
	return &Dialer{done: make(chan struct{}), dial: func(n, a string) (net.Conn, error) { return net.Dial(n, a) }}
}

func TestProxyTCPAndUDP(t *testing.T) {
	// "Container" servers on loopback: a TCP echo that upper-cases, a UDP echo.
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c) // until the proxy passes on our half-close
				c.Write([]byte(strings.ToUpper(string(b))))
			}()
		}
	}()
	ul, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := ul.ReadFrom(buf)
			if err != nil {
				return
			}
			ul.WriteTo(append([]byte("echo:"), buf[:n]...), from)
		}
	}()
	maps := []PortMapping{
		{HostIP: "127.0.0.1", ContainerPort: tl.Addr().(*net.TCPAddr).Port, Proto: "tcp"},
		{HostIP: "127.0.0.1", ContainerPort: ul.LocalAddr().(*net.UDPAddr).Port, Proto: "udp"},
	}
	p, err := Listen(maps)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.Serve(hereDialer())
	if p.Bound[0].HostPort == 0 || p.Bound[1].HostPort == 0 {
		t.Fatalf("host ports not chosen: %+v", p.Bound)
	}
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p.Bound[0].HostPort))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "hello %d", i)
		c.(*net.TCPConn).CloseWrite()
		got, _ := io.ReadAll(bufio.NewReader(c))
		c.Close()
		if want := fmt.Sprintf("HELLO %d", i); string(got) != want {
			t.Errorf("TCP through the proxy: %q, want %q", got, want)
		}
	}
	u, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", p.Bound[1].HostPort))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.Write([]byte("ping"))
	u.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	n, err := u.Read(buf)
	if err != nil || string(buf[:n]) != "echo:ping" {
		t.Errorf("UDP through the proxy: %q, %v", buf[:n], err)
	}
	// A port in use fails at Listen, naming the port.
	if _, err := Listen([]PortMapping{{HostIP: "127.0.0.1", HostPort: p.Bound[0].HostPort, ContainerPort: 1, Proto: "tcp"}}); err == nil || !strings.Contains(err.Error(), "already in use") {
		t.Errorf("Listen on a used port: %v", err)
	}
}

// TestConnectSpareSocket: a socket made beforehand (in the container's
// namespace, in the agent) is connected from any goroutine and becomes an
// ordinary *net.TCPConn, so the proxy can splice it; a closed port is an
// error.
func TestConnectSpareSocket(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Write([]byte("hello"))
			c.Close()
		}
	}()
	spare := func() int {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		return fd
	}
	c, err := connect(spare(), l.Addr().(*net.TCPAddr).AddrPort())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*net.TCPConn); !ok {
		t.Errorf("connect returned a %T, want *net.TCPConn", c)
	}
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "hello" {
		t.Errorf("read %q, %v", b, err)
	}
	closed := l.Addr().(*net.TCPAddr).AddrPort()
	l.Close()
	if c, err := connect(spare(), closed); err == nil {
		c.Close()
		t.Errorf("connect to a closed port succeeded")
	}
}
