package integration

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// The test binary doubles as the UDP programs busybox lacks, run in
// containers (see udpHelperMounts): with ROOST_TEST_UDP_ECHO=ADDR it echoes
// each datagram to ADDR back as "echo:" and the datagram; with
// ROOST_TEST_UDP_ASK=ADDR it sends each argument as one datagram to ADDR
// and prints each reply on a line.
func udpHelper() (code int, ok bool) {
	if addr := os.Getenv("ROOST_TEST_UDP_ECHO"); addr != "" {
		return udpEcho(addr), true
	}
	if addr := os.Getenv("ROOST_TEST_UDP_ASK"); addr != "" {
		return udpAsk(addr, os.Args[1:]), true
	}
	return 0, false
}

func udpEcho(addr string) int {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "udp echo:", err)
		return 1
	}
	fmt.Println("listening")
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			fmt.Fprintln(os.Stderr, "udp echo:", err)
			return 1
		}
		pc.WriteTo(append([]byte("echo:"), buf[:n]...), from)
	}
}

func udpAsk(addr string, msgs []string) int {
	c, err := net.Dial("udp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "udp ask:", err)
		return 1
	}
	defer c.Close()
	for _, m := range msgs {
		if _, err := c.Write([]byte(m)); err != nil {
			fmt.Fprintln(os.Stderr, "udp ask:", err)
			return 1
		}
	}
	var got []string
	buf := make([]byte, 65535)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(got) < len(msgs) {
		n, err := c.Read(buf)
		if err != nil {
			fmt.Fprintf(os.Stderr, "udp ask: %v after %d replies: %q\n", err, len(got), got)
			return 1
		}
		got = append(got, string(buf[:n]))
	}
	fmt.Println(strings.Join(got, "\n"))
	return 0
}

// udpHelperMounts are the run options that put this test binary at
// /udp-helper in a container, with the host's library directories should it
// be linked dynamically.
func udpHelperMounts(t interface{ Fatal(...any) }) []string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	opts := []string{"-v", exe + ":/udp-helper:ro"}
	for _, d := range []string{"/lib", "/lib64", "/usr/lib"} {
		if _, err := os.Stat(d); err == nil {
			opts = append(opts, "-v", d+":"+d+":ro")
		}
	}
	return opts
}
