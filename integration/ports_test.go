package integration

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// freePort returns a TCP port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestPublishedPorts(t *testing.T) {
	e := newRoost(t)
	img := runImage(t, e)
	site := e.site("hello through the proxy\n")
	port := freePort(t)
	e.ok("run", "-d", "--name", "web", "-p", fmt.Sprintf("%d:8080", port), "-p", "127.0.0.1::8080",
		"-v", site+":/srv:ro", img, "httpd", "-f", "-p", "8080", "-h", "/srv")
	t.Cleanup(func() { e.run("rm", "-f", "web") })
	var body string
	waitFor(t, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/index.html", port))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == 200
	})
	if body != "hello through the proxy\n" {
		t.Errorf("GET through -p: %q", body)
	}
	ports := e.ok("port", "web")
	if !strings.Contains(ports, fmt.Sprintf("8080/tcp -> 0.0.0.0:%d", port)) || !strings.Contains(ports, "8080/tcp -> 127.0.0.1:") {
		t.Errorf("port web:\n%s", ports)
	}
	if out := e.ok("ps", "--format", "{{.Ports}}"); !strings.Contains(out, fmt.Sprintf("0.0.0.0:%d->8080/tcp", port)) {
		t.Errorf("ps PORTS = %q", out)
	}
	// Many connections at once, each with its own bytes.
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		go func() {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/index.html", port))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			errs <- err
		}()
	}
	for i := 0; i < 20; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	// A port in use fails at run, with one line, and starts nothing.
	line := e.wantOneLineError(e.run("run", "--rm", "-p", fmt.Sprintf("%d:80", port), img, "true"))
	if !strings.Contains(line, "already in use") {
		t.Errorf("port in use: %q", line)
	}
	// A privileged port names the sysctl.
	line = e.fails("run", "--rm", "-p", "80:80", img, "true")
	if !strings.Contains(line, "ip_unprivileged_port_start") {
		t.Errorf("privileged port: %q", line)
	}
	e.fails("run", "--rm", "-p", "nonsense", img, "true")
	e.ok("stop", "-t", "0", "web")
	waitFor(t, func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
}
