package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/roost-containers/roost/rootless"
	"golang.org/x/net/dns/dnsmessage"
)

// hostServer serves body over HTTP on addr (host:0) of the host and
// returns its port and the remote addresses it saw.
func hostServer(t *testing.T, addr, body string) (int, chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan string, 16)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case seen <- r.RemoteAddr:
		default:
		}
		io.WriteString(w, body)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port, seen
}

// hostAddress is an address of this machine that is not loopback.
func hostAddress(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String()
		}
	}
	t.Fatal("this machine has no IPv4 address besides loopback: outbound traffic cannot be tested")
	return ""
}

func TestNetworkOutboundTCP(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	img := runImage(t, e)
	port, seen := hostServer(t, "127.0.0.1:0", "hello from the host's loopback\n")
	// The gateway, by name and by address, is the host's loopback.
	for _, host := range []string{"host.containers.internal", "host.docker.internal", "10.0.2.2"} {
		out := e.ok("run", "--rm", img, "wget", "-qO-", fmt.Sprintf("http://%s:%d/", host, port))
		if out != "hello from the host's loopback\n" {
			t.Errorf("wget via %s: %q", host, out)
		}
		if from := <-seen; !strings.HasPrefix(from, "127.0.0.1:") {
			t.Errorf("the host saw the container come from %s, want 127.0.0.1", from)
		}
	}
	// Any other address is dialled from the host, as it is named.
	ip := hostAddress(t)
	port, seen = hostServer(t, net.JoinHostPort(ip, "0"), "hello from "+ip+"\n")
	out := e.ok("run", "--rm", img, "wget", "-qO-", fmt.Sprintf("http://%s:%d/", ip, port))
	if out != "hello from "+ip+"\n" {
		t.Errorf("wget http://%s:%d/: %q", ip, port, out)
	}
	<-seen
	// A refused connection is refused in the container too.
	closed := freePort(t)
	r := e.run("run", "--rm", img, "wget", "-qO-", fmt.Sprintf("http://10.0.2.2:%d/", closed))
	if r.code == 0 || !strings.Contains(r.stderr, "refused") {
		t.Errorf("wget to a closed port: %s", r)
	}
	// The interface as a container sees it (through ioctls and /proc: the
	// default seccomp profile leaves busybox's ip without its netlink socket).
	out = e.ok("run", "--rm", img, "sh", "-c", "ifconfig eth0; route -n")
	for _, want := range []string{"inet addr:10.0.2.100", "Mask:255.255.255.0", "MTU:65520"} {
		if !strings.Contains(out, want) {
			t.Errorf("interface: no %q in\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`(?m)^0\.0\.0\.0 +10\.0\.2\.2 +0\.0\.0\.0 +UG .* eth0$`).MatchString(out) {
		t.Errorf("no default route via 10.0.2.2 on eth0:\n%s", out)
	}
}

func TestNetworkOutboundUDP(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	img := runImage(t, e)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	port := pc.LocalAddr().(*net.UDPAddr).Port
	// busybox's syslogd forwards what logger writes as UDP datagrams.
	e.ok("run", "-d", "--name", "logs", img, "sh", "-c",
		fmt.Sprintf("syslogd -n -R 10.0.2.2:%d & until [ -S /dev/log ]; do sleep 0.1; done; while true; do logger -t roost hello-over-udp; sleep 1; done", port))
	t.Cleanup(func() { e.run("rm", "-f", "logs") })
	pc.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 2048)
	n, from, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no datagram from the container: %v\n%s", err, e.run("logs", "logs"))
	}
	if !strings.Contains(string(buf[:n]), "hello-over-udp") {
		t.Errorf("datagram from %s: %q", from, buf[:n])
	}
}

// dnsServer answers A queries for names with their addresses and NXDOMAIN
// for the rest, over UDP on the host's loopback; it returns its address.
func dnsServer(t *testing.T, names map[string]string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RCode: dnsmessage.RCodeNameError})
			b.EnableCompression()
			ip, ok := names[strings.TrimSuffix(q.Name.String(), ".")]
			if ok {
				b = dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
			}
			b.StartQuestions()
			b.Question(q)
			b.StartAnswers()
			if ok && q.Type == dnsmessage.TypeA {
				a := dnsmessage.AResource{}
				copy(a.A[:], net.ParseIP(ip).To4())
				b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}, a)
			}
			msg, err := b.Finish()
			if err == nil {
				pc.WriteTo(msg, from)
			}
		}
	}()
	return pc.LocalAddr().String()
}

func TestNetworkDNS(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	img := runImage(t, e)
	resolver := dnsServer(t, map[string]string{"db.roost-test.example": "192.0.2.7"})
	if err := os.MkdirAll(filepath.Join(e.ConfigHome, "roost"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("[network]\nresolver = %q\n", resolver)
	if err := os.WriteFile(filepath.Join(e.ConfigHome, "roost", "config.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out := e.ok("run", "--rm", img, "sh", "-c", "cat /etc/resolv.conf; nslookup db.roost-test.example")
	if !strings.Contains(out, "nameserver 10.0.2.3\n") {
		t.Errorf("resolv.conf does not name the forwarder:\n%s", out)
	}
	if !strings.Contains(out, "Address: 192.0.2.7") {
		t.Errorf("lookup through the forwarder:\n%s", out)
	}
	r := e.run("run", "--rm", img, "nslookup", "missing.roost-test.example")
	if r.code == 0 || !strings.Contains(r.stdout+r.stderr, "NXDOMAIN") {
		t.Errorf("lookup of a missing name: %s", r)
	}
	// --dns, --dns-search and --dns-option replace the lines.
	out = e.ok("run", "--rm", "--dns", "192.0.2.53", "--dns-search", "roost-test.example", "--dns-option", "ndots:2", img, "cat", "/etc/resolv.conf")
	if out != "nameserver 192.0.2.53\nsearch roost-test.example\noptions ndots:2\n" {
		t.Errorf("resolv.conf with --dns, --dns-search, --dns-option:\n%s", out)
	}
}

func TestNetworkEtcFiles(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	img := runImage(t, e)
	out := e.ok("run", "--rm", "--hostname", "box", "--add-host", "db.example:192.0.2.10", "--add-host", "hostgw:host-gateway",
		img, "sh", "-c", "hostname; cat /etc/hostname /etc/hosts")
	for _, want := range []string{"box\nbox\n", "127.0.0.1\tlocalhost\n", "10.0.2.2\thost.containers.internal host.docker.internal\n",
		"192.0.2.10\tdb.example\n", "10.0.2.2\thostgw\n", "10.0.2.100\tbox\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
	id := strings.TrimSpace(e.ok("run", "-d", "--name", "idle", img, "sleep", "600"))
	t.Cleanup(func() { e.run("rm", "-f", "idle") })
	var ns struct {
		NetworkSettings struct {
			IPAddress, Gateway, MacAddress string
			IPPrefixLen                    int
			Ports                          map[string]any
			Networks                       map[string]struct{ IPAddress, Gateway string }
		}
	}
	inspectJSON(t, e, "idle", &ns)
	got := ns.NetworkSettings
	if got.IPAddress != "10.0.2.100" || got.Gateway != "10.0.2.2" || got.IPPrefixLen != 24 || got.Ports == nil ||
		got.Networks["private"].IPAddress != "10.0.2.100" {
		t.Errorf("inspect %s NetworkSettings: %+v", id[:12], got)
	}
	e.ok("stop", "-t", "0", "idle")
	inspectJSON(t, e, "idle", &ns)
	if ns.NetworkSettings.IPAddress != "" {
		t.Errorf("a stopped container has the address %q", ns.NetworkSettings.IPAddress)
	}
	// --network none has loopback only; host has the host's interfaces.
	if out := e.ok("run", "--rm", "--network", "none", img, "ls", "/sys/class/net"); out != "lo\n" {
		t.Errorf("--network none interfaces: %q", out)
	}
	if out := e.ok("run", "--rm", img, "ls", "/sys/class/net"); out != "eth0\nlo\n" {
		t.Errorf("private network interfaces: %q", out)
	}
}

// inspectJSON decodes `container inspect ref` into v.
func inspectJSON(t *testing.T, e *roostEnv, ref string, v any) {
	t.Helper()
	out := e.ok("container", "inspect", ref)
	var all []json.RawMessage
	if err := json.Unmarshal([]byte(out), &all); err != nil || len(all) != 1 {
		t.Fatalf("inspect %s: %v\n%s", ref, err, out)
	}
	if err := json.Unmarshal(all[0], v); err != nil {
		t.Fatalf("inspect %s: %v\n%s", ref, err, out)
	}
}

func TestNetworkLinks(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	img := runImage(t, e)
	e.importTar(e.path("runimage.tar"), "dbimage", "--change", "EXPOSE 5432", "--change", `CMD ["sh"]`)
	site := e.site("hello from db\n")
	e.ok("run", "-d", "--name", "db", "--hostname", "dbhost", "-e", "DB_FLAVOUR=httpd", "-v", site+":/srv:ro",
		"dbimage", "httpd", "-f", "-p", "5432", "-h", "/srv")
	t.Cleanup(func() { e.run("rm", "-f", "db") })
	waitFor(t, func() bool { return e.run("exec", "db", "wget", "-qO-", "http://127.0.0.1:5432/index.html").code == 0 })
	out := e.ok("run", "--rm", "--name", "web", "--link", "db:database", img, "sh", "-c",
		"env; cat /etc/hosts; wget -qO- http://database:5432/index.html; wget -qO- http://db:5432/index.html")
	for _, want := range []string{
		"\n10.0.2.200\tdatabase dbhost db\n",
		"DATABASE_NAME=/web/database\n",
		"DATABASE_PORT=tcp://10.0.2.200:5432\n",
		"DATABASE_PORT_5432_TCP=tcp://10.0.2.200:5432\n",
		"DATABASE_PORT_5432_TCP_ADDR=10.0.2.200\n",
		"DATABASE_PORT_5432_TCP_PORT=5432\n",
		"DATABASE_PORT_5432_TCP_PROTO=tcp\n",
		"DATABASE_ENV_DB_FLAVOUR=httpd\n",
		"hello from db\nhello from db\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("linked container: no %q in\n%s", want, out)
		}
	}
	// A closed port behind the link is refused.
	r := e.run("run", "--rm", "--link", "db:database", img, "wget", "-qO-", "http://database:5433/")
	if r.code == 0 {
		t.Errorf("wget to a closed port of the linked container: %s", r)
	}
	e.ok("create", "--name", "web2", "--link", "db:database", img, "true")
	t.Cleanup(func() { e.run("rm", "-f", "web2") })
	var hc struct{ HostConfig struct{ Links []string } }
	inspectJSON(t, e, "web2", &hc)
	if len(hc.HostConfig.Links) != 1 || hc.HostConfig.Links[0] != "/db:/web2/database" {
		t.Errorf("HostConfig.Links = %q", hc.HostConfig.Links)
	}
	e.ok("stop", "-t", "0", "db")
	line := e.fails("start", "web2")
	if !strings.Contains(line, "non running container") {
		t.Errorf("start linked to a stopped container: %q", line)
	}
}

func TestNetworkBadInput(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown network", []string{"--network", "bogus"}, "network bogus not found"},
		{"link to a missing container", []string{"--link", "missing:db"}, "could not get container for missing"},
		{"add-host without an address", []string{"--add-host", "justaname"}, "--add-host"},
		{"add-host with a bad address", []string{"--add-host", "h:1.2.3"}, "--add-host"},
		{"dns that is not an address", []string{"--dns", "dns.example"}, "--dns"},
		{"link on the host network", []string{"--network", "host", "--link", "x"}, "conflicting options"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newRoost(t)
			img := runImage(t, e)
			before := e.snapshot()
			args := append(append([]string{"run", "--rm"}, tt.args...), img, "true")
			line := e.fails(args...)
			if !strings.Contains(line, tt.want) {
				t.Errorf("error %q lacks %q", line, tt.want)
			}
			e.wantUnchanged(before)
		})
	}
}

// TestPublishedPortClientAddress: with network.client_address, a published
// port's connection reaches the container from the client's address (the
// gateway for the host's loopback); by default it comes from 127.0.0.1.
// quickHTTP gives up on a request after 5 s: a server that took a
// connection and never answers fails the test instead of hanging it.
var quickHTTP = &http.Client{Timeout: 5 * time.Second}

// TestPublishedPortClientAddress: by default the container's server takes
// its published TCP port as a host socket (the handoff): clients reach it
// straight, from their own addresses, and it still answers inside. With
// network.proxy_ports the agent's proxy splices from the container's
// loopback, or (client_address) carries the client's address through the
// netstack.
func TestPublishedPortClientAddress(t *testing.T) {
	t.Parallel()
	ip := hostAddress(t)
	for _, tt := range []struct {
		name               string
		config             string
		fromLoopback, from string
		handoff            bool
	}{
		{"handoff", "", "127.0.0.1", ip, true},
		{"handoff+client", "[network]\nclient_address = true\n", "127.0.0.1", ip, true},
		{"splice", "[network]\nproxy_ports = true\n", "127.0.0.1", "127.0.0.1", false},
		{"client address", "[network]\nproxy_ports = true\nclient_address = true\n", "10.0.2.2", ip, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newRoost(t)
			img := runImage(t, e)
			if tt.config != "" {
				os.MkdirAll(filepath.Join(e.ConfigHome, "roost"), 0o700)
				if err := os.WriteFile(filepath.Join(e.ConfigHome, "roost", "config.toml"), []byte(tt.config), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			site := e.path("site")
			os.MkdirAll(filepath.Join(site, "cgi-bin"), 0o755)
			cgi := "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n%s\\n' \"$REMOTE_ADDR\"\n"
			if err := os.WriteFile(filepath.Join(site, "cgi-bin", "addr"), []byte(cgi), 0o755); err != nil {
				t.Fatal(err)
			}
			port, port2 := freePort(t), freePort(t)
			e.ok("run", "-d", "--name", "who", "-p", fmt.Sprintf("%d:8080", port), "-p", fmt.Sprintf("%d:8081", port2), "-v", site+":/srv:ro", img, "httpd", "-f", "-p", "8080", "-h", "/srv")
			t.Cleanup(func() { e.run("rm", "-f", "who") })
			get := func(host string, port int) string {
				var body string
				fetch := func() bool {
					resp, err := quickHTTP.Get(fmt.Sprintf("http://%s/cgi-bin/addr", net.JoinHostPort(host, fmt.Sprint(port))))
					if err != nil {
						return false
					}
					defer resp.Body.Close()
					b, _ := io.ReadAll(resp.Body)
					// httpd listens on IPv6 too: [::ffff:a.b.c.d].
					body = strings.TrimSpace(string(b))
					body = strings.TrimSuffix(strings.TrimPrefix(body, "[::ffff:"), "]")
					return resp.StatusCode == 200
				}
				// Once the server answers, ask again: a connection the
				// proxy took just before the server took the port reaches
				// it through the container (from its loopback).
				waitFor(t, fetch)
				if !fetch() {
					t.Fatalf("%s:%d answered once, then not", host, port)
				}
				return body
			}
			if got := get("127.0.0.1", port); got != tt.fromLoopback {
				t.Errorf("a client on the host's loopback arrives from %q, want %q", got, tt.fromLoopback)
			}
			if got := get(ip, port); got != tt.from {
				t.Errorf("a client at %s arrives from %q, want %q", ip, got, tt.from)
			}
			if owner := listenerOwner(t, port); (owner == "httpd") != tt.handoff {
				t.Errorf("host port %d is held by %q; handoff %v", port, owner, tt.handoff)
			}
			// Inside, the port answers on the container's own loopback.
			if out := e.ok("exec", "who", "wget", "-qO-", "http://127.0.0.1:8080/cgi-bin/addr"); strings.TrimSpace(out) == "" {
				t.Errorf("the port inside the container answered %q", out)
			}
			// A linked container reaches the port through the agents.
			if out := e.ok("run", "--rm", "--link", "who:web", img, "wget", "-qO-", "http://web:8080/cgi-bin/addr"); strings.TrimSpace(out) == "" {
				t.Errorf("the port through --link answered %q", out)
			}
			// A server started by exec takes its port too, and again once
			// it was restarted.
			for i := 0; i < 2; i++ {
				e.ok("exec", "-d", "who", "sh", "-c", "echo $$ >/tmp/httpd.pid; exec httpd -f -p 8081 -h /srv")
				if got := get("127.0.0.1", port2); got != tt.fromLoopback {
					t.Errorf("exec'd server, round %d: a client on the host's loopback arrives from %q, want %q", i, got, tt.fromLoopback)
				}
				if owner := listenerOwner(t, port2); (owner == "httpd") != tt.handoff {
					t.Errorf("exec'd server, round %d: host port %d is held by %q; handoff %v", i, port2, owner, tt.handoff)
				}
				e.ok("exec", "who", "sh", "-c", "kill $(cat /tmp/httpd.pid)")
				waitFor(t, func() bool {
					resp, err := quickHTTP.Get(fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/addr", port2))
					if err == nil {
						resp.Body.Close()
					}
					return err != nil
				})
			}
		})
	}
}

// TestPublishedPortRestart: a restarted container's server takes its
// published port again (the agent took it back for the new run).
func TestPublishedPortRestart(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	img := runImage(t, e)
	site := e.site("up\n")
	port := freePort(t)
	// httpd goes to the background; the container ends after a second.
	e.ok("run", "-d", "--restart", "always", "--name", "again", "-p", fmt.Sprintf("%d:8080", port), "-v", site+":/srv:ro", img, "sh", "-c", "httpd -p 8080 -h /srv; sleep 1")
	t.Cleanup(func() { e.run("rm", "-f", "again") })
	for _, round := range []int{0, 1} {
		waitFor(t, func() bool {
			var n int
			fmt.Sscan(e.ok("inspect", "--format", "{{.RestartCount}}", "again"), &n)
			if n < round {
				return false
			}
			resp, err := quickHTTP.Get(fmt.Sprintf("http://127.0.0.1:%d/index.html", port))
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200 && listenerOwner(t, port) == "httpd"
		})
	}
}

// TestPublishedPortOwnNetns: a process of the container in a network
// namespace of its own binds there, not to the host's published port.
func TestPublishedPortOwnNetns(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	img := runImage(t, e)
	site := e.path("site")
	for dir, body := range map[string]string{"own": "own netns\n", "main": "main\n"} {
		os.MkdirAll(filepath.Join(site, dir), 0o755)
		if err := os.WriteFile(filepath.Join(site, dir, "index.html"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	port := freePort(t)
	e.ok("run", "-d", "--name", "nets", "--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined", "-p", fmt.Sprintf("%d:8080", port), "-v", site+":/srv:ro", img,
		"sh", "-c", "unshare -n httpd -f -p 8080 -h /srv/own & sleep 0.5; exec httpd -f -p 8080 -h /srv/main")
	t.Cleanup(func() { e.run("rm", "-f", "nets") })
	var body string
	waitFor(t, func() bool {
		resp, err := quickHTTP.Get(fmt.Sprintf("http://127.0.0.1:%d/index.html", port))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == 200 && listenerOwner(t, port) == "httpd"
	})
	if body != "main\n" {
		t.Errorf("the host port reached %q, want the server in the container's own network namespace", body)
	}
	if out := e.ok("exec", "nets", "ps"); strings.Count(out, "httpd -f") != 2 {
		t.Errorf("both servers should run:\n%s", out)
	}
}

// listenerOwner is the command name of the host process that holds the
// listening TCP socket on port ("" if none is seen, or nothing listens).
func listenerOwner(t *testing.T, port int) string {
	t.Helper()
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			// local_address is HEXADDR:HEXPORT; state 0A is LISTEN.
			if len(fs) < 10 || fs[3] != "0A" || !strings.HasSuffix(fs[1], fmt.Sprintf(":%04X", port)) {
				continue
			}
			inodes["socket:["+fs[9]+"]"] = true
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range procs {
		if l, err := os.Readlink(fd); err == nil && inodes[l] {
			comm, _ := os.ReadFile(filepath.Join(filepath.Dir(filepath.Dir(fd)), "comm"))
			return strings.TrimSpace(string(comm))
		}
	}
	return ""
}

func TestNetworkContainerMode(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	img := runImage(t, e)
	site := e.site("hello from web's loopback\n")
	e.ok("run", "-d", "--name", "web", "-v", site+":/srv:ro", img, "httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/srv")
	t.Cleanup(func() { e.run("rm", "-f", "web") })
	waitFor(t, func() bool { return e.run("exec", "web", "wget", "-qO-", "http://127.0.0.1:8080/index.html").code == 0 })
	port, _ := hostServer(t, "127.0.0.1:0", "hello from the host\n")
	out := e.ok("run", "--rm", "--network", "container:web", img, "sh", "-c",
		fmt.Sprintf("wget -qO- http://127.0.0.1:8080/index.html; wget -qO- http://host.containers.internal:%d/; ifconfig eth0", port))
	for _, want := range []string{"hello from web's loopback\n", "hello from the host\n", "inet addr:10.0.2.100"} {
		if !strings.Contains(out, want) {
			t.Errorf("in web's network: no %q in\n%s", want, out)
		}
	}
	// A container that shares the namespace does not hold web up.
	e.ok("run", "-d", "--name", "side", "--network", "container:web", img, "sleep", "600")
	t.Cleanup(func() { e.run("rm", "-f", "side") })
	e.ok("stop", "-t", "0", "web")
	if st := e.inspectContainer("web"); st.State.Status != "exited" {
		t.Errorf("web after stop: %s", st.State.Status)
	}
	e.ok("rm", "-f", "side")
	line := e.fails("run", "--rm", "--network", "container:web", img, "true")
	if !strings.Contains(line, "non running container") {
		t.Errorf("joining a stopped container: %q", line)
	}
	for _, args := range [][]string{
		{"--network", "container:missing"},
		{"--network", "container:web", "-p", "8080"},
		{"--network", "container:web", "--dns", "192.0.2.53"},
	} {
		before := e.snapshot()
		e.fails(append(append([]string{"run", "--rm"}, args...), img, "true")...)
		e.wantUnchanged(before)
	}
}

// TestNetworkDebianMirror is the acceptance check of the NAT: a name
// resolved by the host's own resolver, and HTTP to a machine outside, as
// apt-get update in a build does.
func TestNetworkDebianMirror(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	img := runImage(t, e)
	r := e.run("run", "--rm", img, "wget", "-qO-", "http://deb.debian.org/debian/dists/bookworm/Release")
	if r.code != 0 || !strings.Contains(r.stdout, "Origin: Debian") {
		t.Fatalf("fetching deb.debian.org through the private network (this machine must reach it, as CI's does): %s", r)
	}
}

// TestPingOutbound pings through the private network: the agent sends each
// echo with the host's unprivileged ICMP sockets, which the host allows only
// to the groups in net.ipv4.ping_group_range.
func TestPingOutbound(t *testing.T) {
	t.Parallel()
	requirePingSockets(t)
	e := newRoost(t)
	img := runImage(t, e)
	// The gateway is the host's loopback, which answers.
	out := e.ok("run", "--rm", img, "ping", "-c", "2", "-W", "2", "10.0.2.2")
	if !strings.Contains(out, "2 packets transmitted, 2 packets received") {
		t.Errorf("ping 10.0.2.2:\n%s", out)
	}
	// Any other address is pinged from the host, as it is named.
	ip := hostAddress(t)
	out = e.ok("run", "--rm", img, "ping", "-c", "1", "-W", "2", ip)
	if !strings.Contains(out, "1 packets transmitted, 1 packets received") {
		t.Errorf("ping %s:\n%s", ip, out)
	}
	// Nobody answers for TEST-NET-1: neither may the network.
	r := e.run("run", "--rm", img, "ping", "-c", "1", "-W", "1", "192.0.2.99")
	if r.code == 0 {
		t.Errorf("ping to an address nobody answers succeeded: %s", r)
	}
}

// requirePingSockets fails the test unless this user may open unprivileged
// ICMP sockets (socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)).
func requirePingSockets(t *testing.T) {
	t.Helper()
	if err := rootless.PingSockets(); err != nil {
		t.Fatal(err)
	}
}

// TestNetworkLinksUDP sends datagrams to a linked container: each crosses
// the agents' unix socket whole, and the replies come back.
func TestNetworkLinksUDP(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	img := runImage(t, e)
	helper := udpHelperMounts(t)
	e.ok(append(append([]string{"run", "-d", "--name", "udpdb", "-e", "ROOST_TEST_UDP_ECHO=127.0.0.1:9999"}, helper...), img, "/udp-helper")...)
	t.Cleanup(func() { e.run("rm", "-f", "udpdb") })
	waitFor(t, func() bool { return strings.Contains(e.run("logs", "udpdb").stdout, "listening") })
	out := e.ok(append(append([]string{"run", "--rm", "--link", "udpdb:database", "-e", "ROOST_TEST_UDP_ASK=10.0.2.200:9999"}, helper...),
		img, "/udp-helper", "one", "two", "three")...)
	if out != "echo:one\necho:two\necho:three\n" {
		t.Errorf("replies from the linked container: %q\n%s", out, e.run("logs", "udpdb"))
	}
}
