package integration

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// testRegistry is a docker-registry (Debian's build of distribution) the
// test started on a free loopback port; it stops at cleanup.
type testRegistry struct {
	Host string // 127.0.0.1:PORT
	log  string
}

// startRegistry runs docker-registry as the test's user, with htpasswd
// auth when htpasswd is not empty.
func startRegistry(t *testing.T, htpasswd string) *testRegistry {
	t.Helper()
	bin := needTool(t, "docker-registry", "docker-registry")
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	l.Close()
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), host)
	if htpasswd != "" {
		p := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(p, []byte(htpasswd), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg += fmt.Sprintf("auth:\n  htpasswd:\n    realm: roost-test\n    path: %s\n", p)
	}
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &testRegistry{Host: host, log: filepath.Join(dir, "registry.log")}
	logf, err := os.Create(r.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start docker-registry: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return r
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(r.log)
			t.Fatalf("docker-registry on %s did not answer /v2/ within 30s (last error %v); its log:\n%s", host, err, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lastLine is the last non-empty line of out.
func lastLine(out string) string {
	ls := lines(out)
	if len(ls) == 0 {
		return ""
	}
	return ls[len(ls)-1]
}

// pushedDigest reads "TAG: digest: sha256:... size: N" from push's output.
func pushedDigest(t *testing.T, out string) string {
	t.Helper()
	for _, l := range lines(out) {
		if _, rest, ok := strings.Cut(l, ": digest: "); ok {
			d, _, _ := strings.Cut(rest, " ")
			if strings.HasPrefix(d, "sha256:") && isHex(strings.TrimPrefix(d, "sha256:"), 64) {
				return d
			}
		}
	}
	t.Fatalf("push printed no digest line:\n%s", out)
	return ""
}

func TestRegistry(t *testing.T) {
	reg := startRegistry(t, "")
	e := newRoost(t)
	img := runImage(t, e)
	ref := reg.Host + "/test/busybox:1"
	full := ref // a registry with a port is spelled in full already
	e.ok("tag", img, ref)
	out := e.ok("push", ref)
	digest := pushedDigest(t, out)
	if !strings.Contains(out, "The push refers to repository ["+reg.Host+"/test/busybox]") {
		t.Errorf("push output lacks Docker's first line:\n%s", out)
	}
	e.ok("rmi", ref)
	e.ok("rmi", img)
	if ids := e.imageIDs(); len(ids) != 0 {
		t.Fatalf("images left after rmi: %v", ids)
	}

	out = e.ok("pull", ref)
	if got := lastLine(out); got != full {
		t.Errorf("pull's last line %q, want %q; output:\n%s", got, full, out)
	}
	for _, want := range []string{"1: Pulling from test/busybox", "Pull complete", "Digest: " + digest, "Status: Downloaded newer image for " + ref} {
		if !strings.Contains(out, want) {
			t.Errorf("pull output lacks %q:\n%s", want, out)
		}
	}
	if got := e.inspect(ref).RepoDigests; len(got) != 1 || got[0] != reg.Host+"/test/busybox@"+digest {
		t.Errorf("RepoDigests %v, want [%s/test/busybox@%s]", got, reg.Host, digest)
	}
	if got := e.ok("run", "--rm", ref, "cat", "/etc/os-release"); got != osRelease {
		t.Errorf("run of the pulled image printed %q, want %q", got, osRelease)
	}

	// Pushing the pulled, unchanged image keeps its digest.
	if d := pushedDigest(t, e.ok("push", ref)); d != digest {
		t.Errorf("second push digest %s, want %s", d, digest)
	}
	if out := e.ok("pull", "-q", ref); out != full+"\n" {
		t.Errorf("pull -q printed %q, want %q", out, full+"\n")
	}
	if out := e.ok("pull", ref); !strings.Contains(out, "Status: Image is up to date for "+ref) {
		t.Errorf("second pull is not up to date:\n%s", out)
	}

	// By digest, into a fresh store.
	e2 := newRoost(t)
	byDigest := reg.Host + "/test/busybox@" + digest
	if out := e2.ok("pull", "-q", byDigest); out != byDigest+"\n" {
		t.Errorf("pull -q by digest printed %q, want %q", out, byDigest+"\n")
	}
	if got := e2.ok("run", "--rm", byDigest, "cat", "/etc/os-release"); got != osRelease {
		t.Errorf("run by digest printed %q", got)
	}

	// A missing tag: one line, exit 125, store unchanged.
	before := e.snapshot()
	msg := e.fails("pull", reg.Host+"/test/busybox:nope")
	if !strings.Contains(msg, "no such image or tag") {
		t.Errorf("pull of a missing tag said %q, want it to say no such image or tag", msg)
	}
	e.wantUnchanged(before)
	msg = e.fails("pull", "127.0.0.1:1/test/busybox:1")
	if !strings.Contains(msg, "connection refused") {
		t.Errorf("pull from a closed port said %q, want connection refused", msg)
	}
	e.wantUnchanged(before)

	// run pulls an image the store lacks, with the progress on stderr;
	// --pull never refuses.
	e3 := newRoost(t)
	line := e3.fails("run", "--rm", "--pull", "never", ref, "true")
	if !strings.Contains(line, "--pull never") {
		t.Errorf("run --pull never said %q", line)
	}
	r := e3.run("run", "--rm", ref, "cat", "/etc/os-release")
	if r.code != 0 || r.stdout != osRelease {
		t.Fatalf("run of an image not yet pulled: %s", r)
	}
	if !strings.Contains(r.stderr, "Unable to find image '"+ref+"' locally") || !strings.Contains(r.stderr, "Status: Downloaded newer image") {
		t.Errorf("run's pull progress is not on stderr:\n%s", r.stderr)
	}
	if out := e3.ok("images", "--format", "{{.Repository}}:{{.Tag}}"); out != reg.Host+"/test/busybox:1\n" {
		t.Errorf("images after run's pull: %q", out)
	}
	r = e3.run("run", "--rm", "--pull", "always", ref, "true")
	if r.code != 0 || !strings.Contains(r.stderr, "Image is up to date") {
		t.Errorf("run --pull always: %s", r)
	}
}

func TestRegistryLogin(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	reg := startRegistry(t, "tester:"+string(hash)+"\n")
	e := newRoost(t)
	smallTar(t, e.path("small.tar"), "login")
	ref := reg.Host + "/private/small:1"
	e.importTar(e.path("small.tar"), ref)

	msg := e.fails("push", ref)
	if !strings.Contains(msg, "roost login "+reg.Host) {
		t.Errorf("push without login said %q, want advice to run roost login %s", msg, reg.Host)
	}
	r := e.runIn(strings.NewReader("wrong\n"), "login", "-u", "tester", "--password-stdin", reg.Host)
	if line := e.wantOneLineError(r); !strings.Contains(line, "unauthorized") {
		t.Errorf("login with a wrong password said %q", line)
	}
	cfgPath := filepath.Join(e.Home, ".docker", "config.json")
	if _, err := os.Stat(cfgPath); err == nil {
		t.Error("a failed login wrote config.json")
	}
	r = e.runIn(strings.NewReader("s3cret\n"), "login", "-u", "tester", "--password-stdin", reg.Host)
	if r.code != 0 || r.stdout != "Login Succeeded\n" {
		t.Fatalf("login: %s", r)
	}
	fi, err := os.Stat(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", cfgPath, fi.Mode().Perm())
	}
	b, _ := os.ReadFile(cfgPath)
	var cf struct {
		Auths map[string]struct{ Auth string }
	}
	if err := json.Unmarshal(b, &cf); err != nil {
		t.Fatalf("config.json: %v\n%s", err, b)
	}
	if got, want := cf.Auths[reg.Host].Auth, base64.StdEncoding.EncodeToString([]byte("tester:s3cret")); got != want {
		t.Errorf("config.json auths[%s].auth = %q, want %q", reg.Host, got, want)
	}

	digest := pushedDigest(t, e.ok("push", ref))
	e.ok("rmi", ref)
	if out := e.ok("pull", "-q", ref); out != ref+"\n" {
		t.Errorf("pull -q printed %q", out)
	}
	if got := e.inspect(ref).RepoDigests; len(got) != 1 || !strings.HasSuffix(got[0], "@"+digest) {
		t.Errorf("RepoDigests %v, want one ending @%s", got, digest)
	}

	if out := e.ok("logout", reg.Host); out != "Removing login credentials for "+reg.Host+"\n" {
		t.Errorf("logout printed %q", out)
	}
	b, _ = os.ReadFile(cfgPath)
	if bytes.Contains(b, []byte(reg.Host)) {
		t.Errorf("config.json still names %s after logout:\n%s", reg.Host, b)
	}
	if out := e.ok("logout", reg.Host); out != "Not logged in to "+reg.Host+"\n" {
		t.Errorf("second logout printed %q", out)
	}
	e.ok("rmi", ref)
	if msg := e.fails("pull", ref); !strings.Contains(msg, "roost login") {
		t.Errorf("pull after logout said %q", msg)
	}
}
