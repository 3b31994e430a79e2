package integration

import (
	"archive/tar"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/bcrypt"
)

// testRegistry is a docker-registry (Debian's build of distribution) the
// test started on a free loopback port; it stops at cleanup.
type testRegistry struct {
	Host string // 127.0.0.1:PORT
	log  string
	cmd  *exec.Cmd
}

// kill stops the registry at once.
func (r *testRegistry) kill() { r.cmd.Process.Kill() }

// startRegistry runs docker-registry as the test's user, with htpasswd
// auth when htpasswd is not empty.
func startRegistry(t *testing.T, htpasswd string) *testRegistry {
	t.Helper()
	return startRegistryTLS(t, htpasswd, nil)
}

// registryTLS is a registry's certificate and key files, and a client that
// trusts it.
type registryTLS struct {
	cert, key string
	client    *http.Client
}

// startRegistryTLS is startRegistry serving HTTPS when tc is not nil.
func startRegistryTLS(t *testing.T, htpasswd string, tc *registryTLS) *testRegistry {
	t.Helper()
	auth := ""
	if htpasswd != "" {
		p := filepath.Join(t.TempDir(), "htpasswd")
		if err := os.WriteFile(p, []byte(htpasswd), 0o600); err != nil {
			t.Fatal(err)
		}
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: roost-test\n    path: %s\n", p)
	}
	return startRegistryAuth(t, auth, tc)
}

// startRegistryAuth is startRegistryTLS with auth, the configuration's
// auth section (none when empty).
func startRegistryAuth(t *testing.T, auth string, tc *registryTLS) *testRegistry {
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
	scheme, client := "http", http.DefaultClient
	if tc != nil {
		cfg += fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", tc.cert, tc.key)
		scheme, client = "https", tc.client
	}
	cfg += auth
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
	r.cmd = cmd
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(scheme + "://" + host + "/v2/")
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

	// The store keeps the layer, not the registry's compressed blob too.
	if blobs := e.dirNames("blobs/sha256"); len(blobs) != 2 {
		t.Errorf("store keeps blobs %v, want only the config and the manifest", blobs)
	}
	// Pushing the pulled, unchanged image keeps its digest.
	if d := pushedDigest(t, e.ok("push", ref)); d != digest {
		t.Errorf("second push digest %s, want %s", d, digest)
	}
	// To another registry, which has not got the blob: the layer is
	// compressed again and the image runs from there.
	reg2 := startRegistry(t, "")
	ref2 := reg2.Host + "/copy/busybox:1"
	e.ok("tag", ref, ref2)
	pre := e.snapshot()
	digest2 := pushedDigest(t, e.ok("push", ref2))
	if got := e.inspect(ref2).RepoDigests; len(got) != 2 {
		t.Errorf("RepoDigests after a push to a second registry: %v, want both registries'", got)
	}
	if d := cmp.Diff(withoutRecords(pre), withoutRecords(e.snapshot())); d != "" {
		t.Errorf("push to a second registry changed the store's blobs or layers (-before +after):\n%s", d)
	}
	e5 := newRoost(t)
	if out := e5.ok("pull", "-q", reg2.Host+"/copy/busybox@"+digest2); !strings.Contains(out, digest2) {
		t.Errorf("pull by the second registry's digest printed %q", out)
	}
	if got := e5.ok("run", "--rm", ref2, "cat", "/etc/os-release"); got != osRelease {
		t.Errorf("run of the image pushed to a second registry printed %q", got)
	}
	// Saved, it carries its layers uncompressed, as docker save does.
	for _, format := range []string{"docker-archive", "oci-archive"} {
		archive := e.path(format + ".tar")
		e.ok("save", "--format", format, "-o", archive, ref)
		el := newRoost(t)
		el.ok("load", "-i", archive)
		if got := el.ok("run", "--rm", ref, "cat", "/etc/os-release"); got != osRelease {
			t.Errorf("run of the pulled image saved as %s and loaded printed %q", format, got)
		}
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
	// login writes roost's own file, never Docker's.
	cfgPath := filepath.Join(e.ConfigHome, "roost", "auth.json")
	dockerPath := filepath.Join(e.Home, ".docker", "config.json")
	if _, err := os.Stat(cfgPath); err == nil {
		t.Error("a failed login wrote auth.json")
	}
	r = e.runIn(strings.NewReader("s3cret\n"), "login", "-u", "tester", "--password-stdin", reg.Host)
	if r.code != 0 || r.stdout != "Login Succeeded\n" {
		t.Fatalf("login: %s", r)
	}
	if _, err := os.Stat(dockerPath); err == nil {
		t.Errorf("login wrote Docker's %s", dockerPath)
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
		t.Fatalf("auth.json: %v\n%s", err, b)
	}
	if got, want := cf.Auths[reg.Host].Auth, base64.StdEncoding.EncodeToString([]byte("tester:s3cret")); got != want {
		t.Errorf("auth.json auths[%s].auth = %q, want %q", reg.Host, got, want)
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
		t.Errorf("auth.json still names %s after logout:\n%s", reg.Host, b)
	}
	if out := e.ok("logout", reg.Host); out != "Not logged in to "+reg.Host+"\n" {
		t.Errorf("second logout printed %q", out)
	}
	e.ok("rmi", ref)
	if msg := e.fails("pull", ref); !strings.Contains(msg, "roost login") {
		t.Errorf("pull after logout said %q", msg)
	}

	// Without roost's own file, Docker's config.json is read: its auths...
	e2 := newRoost(t)
	writeDockerConfig(t, e2, fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, reg.Host, base64.StdEncoding.EncodeToString([]byte("tester:s3cret"))))
	if out := e2.ok("pull", "-q", ref); out != ref+"\n" {
		t.Errorf("pull with Docker's config.json printed %q", out)
	}
	// ...and the credential helper it names, run from PATH as Docker does.
	e3 := newRoost(t)
	writeDockerConfig(t, e3, fmt.Sprintf(`{"credHelpers": {%q: "test"}}`, reg.Host))
	bin := e3.path("bin")
	helperLog := e3.path("helper.log")
	helper := fmt.Sprintf(`#!/bin/sh
read server
echo "$1 $server" >> %s
case "$1" in
get) printf '{"ServerURL":"%%s","Username":"tester","Secret":"s3cret"}' "$server" ;;
*) exit 1 ;;
esac
`, helperLog)
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "docker-credential-test"), []byte(helper), 0o755); err != nil {
		t.Fatal(err)
	}
	e3.extraEnv = append(e3.extraEnv, "PATH="+bin+":"+os.Getenv("PATH"))
	if out := e3.ok("pull", "-q", ref); out != ref+"\n" {
		t.Errorf("pull with a credential helper printed %q", out)
	}
	if b, _ := os.ReadFile(helperLog); !strings.Contains(string(b), "get "+reg.Host) {
		t.Errorf("docker-credential-test was not asked for %s; its log: %q", reg.Host, b)
	}
	// roost's own file comes first: a wrong password there is used, and
	// refused, though Docker's config.json has the right one.
	if err := os.MkdirAll(filepath.Dir(filepath.Join(e2.ConfigHome, "roost", "auth.json")), 0o700); err != nil {
		t.Fatal(err)
	}
	wrong := fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, reg.Host, base64.StdEncoding.EncodeToString([]byte("tester:wrong")))
	if err := os.WriteFile(filepath.Join(e2.ConfigHome, "roost", "auth.json"), []byte(wrong), 0o600); err != nil {
		t.Fatal(err)
	}
	e2.ok("rmi", ref)
	if msg := e2.fails("pull", ref); !strings.Contains(msg, "roost login") {
		t.Errorf("pull with a wrong password in auth.json said %q", msg)
	}
}

// writeDockerConfig writes ~/.docker/config.json.
func writeDockerConfig(t *testing.T, e *roostEnv, content string) {
	t.Helper()
	d := filepath.Join(e.Home, ".docker")
	if err := os.MkdirAll(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "config.json"), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// selfSignedCA makes a P-256 key and a self-signed CA certificate (DER)
// named cn, valid from an hour ago for a day.
func selfSignedCA(t *testing.T, cn string) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

// testCA makes a CA and a server certificate signed by it for localhost
// and 127.0.0.1, written under dir; it returns the CA's PEM and the files
// docker-registry serves.
func testCA(t *testing.T, dir string) (caPEM []byte, tc *registryTLS) {
	t.Helper()
	caKey, caDER := selfSignedCA(t, "roost test CA")
	now := time.Now()
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	tc = &registryTLS{cert: filepath.Join(dir, "server.crt"), key: filepath.Join(dir, "server.key")}
	caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	if err := os.WriteFile(tc.cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tc.key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	tc.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	return caPEM, tc
}

// TestRegistryTLS: an HTTPS registry with a test CA and htpasswd auth.
// Without its CA roost refuses it in one line naming certs.d; with the CA
// in certs.d login, push and pull work; --tls-verify=false works without.
func TestRegistryTLS(t *testing.T) {
	t.Parallel()
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, tc := testCA(t, t.TempDir())
	reg := startRegistryTLS(t, "tester:"+string(hash)+"\n", tc)
	_, port, _ := net.SplitHostPort(reg.Host)
	// localhost, which roost would also try over plain HTTP: the TLS error
	// must not hide behind the failed HTTP fallback.
	host := "localhost:" + port
	ref := host + "/secure/bb:1"

	e := newRoost(t)
	busyboxImage(t, e, ref)
	caPath := filepath.Join(e.ConfigHome, "roost", "certs.d", host, "ca.crt")
	before := e.snapshot()
	for _, args := range [][]string{{"pull", ref}, {"push", ref}} {
		msg := e.fails(args...)
		if !strings.Contains(msg, caPath) || !strings.Contains(msg, "--tls-verify=false") {
			t.Errorf("%s from a registry whose CA is not trusted said %q, want it to name %s and --tls-verify=false", args[0], msg, caPath)
		}
	}
	e.wantUnchanged(before)
	r := e.runIn(strings.NewReader("s3cret\n"), "login", "-u", "tester", "--password-stdin", host)
	if line := e.wantOneLineError(r); !strings.Contains(line, caPath) {
		t.Errorf("login to a registry whose CA is not trusted said %q", line)
	}

	if err := os.MkdirAll(filepath.Dir(caPath), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caPath, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if msg := e.fails("push", ref); !strings.Contains(msg, "roost login "+host) {
		t.Errorf("push without login said %q", msg)
	}
	r = e.runIn(strings.NewReader("s3cret\n"), "login", "-u", "tester", "--password-stdin", host)
	if r.code != 0 || r.stdout != "Login Succeeded\n" {
		t.Fatalf("login with the CA in certs.d: %s", r)
	}
	digest := pushedDigest(t, e.ok("push", ref))
	e.ok("rmi", ref)
	if out := e.ok("pull", "-q", ref); out != ref+"\n" {
		t.Errorf("pull -q printed %q", out)
	}
	if got := e.ok("run", "--rm", ref, "cat", "/etc/os-release"); got != osRelease {
		t.Errorf("run of the image pulled over HTTPS printed %q", got)
	}
	if got := e.inspect(ref).RepoDigests; len(got) != 1 || got[0] != host+"/secure/bb@"+digest {
		t.Errorf("RepoDigests %v, want [%s/secure/bb@%s]", got, host, digest)
	}

	// Without the CA, --tls-verify=false.
	e2 := newRoost(t)
	r = e2.runIn(strings.NewReader("s3cret\n"), "login", "--tls-verify=false", "-u", "tester", "--password-stdin", host)
	if r.code != 0 || r.stdout != "Login Succeeded\n" {
		t.Fatalf("login --tls-verify=false: %s", r)
	}
	if out := e2.ok("pull", "-q", "--tls-verify=false", ref); out != ref+"\n" {
		t.Errorf("pull -q --tls-verify=false printed %q", out)
	}
	e2.ok("tag", ref, host+"/secure/copy:2")
	if d := pushedDigest(t, e2.ok("push", "--tls-verify=false", host+"/secure/copy:2")); d != digest {
		t.Errorf("push --tls-verify=false of the pulled image: digest %s, want %s", d, digest)
	}
	if msg := e2.fails("pull", host+"/secure/copy:2"); !strings.Contains(msg, "certs.d") {
		t.Errorf("pull without the CA or --tls-verify=false said %q", msg)
	}
}

// killProxy forwards connections to a registry and kills the registry,
// and itself, once more than limit bytes went the watched way.
type killProxy struct {
	Host string
	l    net.Listener
	mu   sync.Mutex
	n    int64
	done bool
	cs   []net.Conn
}

func newKillProxy(t *testing.T, reg *testRegistry, limit int64, upload bool) *killProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &killProxy{Host: l.Addr().String(), l: l}
	t.Cleanup(p.stop)
	count := func(n int) {
		p.mu.Lock()
		p.n += int64(n)
		over := p.n > limit && !p.done
		p.mu.Unlock()
		if over {
			t.Logf("killing the registry after %d bytes", limit)
			reg.kill()
			p.stop()
		}
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", reg.Host)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.cs = append(p.cs, c, u)
			p.mu.Unlock()
			pipe := func(dst, src net.Conn, counted bool) {
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if n > 0 {
						if _, werr := dst.Write(buf[:n]); werr != nil {
							break
						}
						if counted {
							count(n)
						}
					}
					if err != nil {
						break
					}
				}
				dst.Close()
				src.Close()
			}
			go pipe(u, c, upload)
			go pipe(c, u, !upload)
		}
	}()
	return p
}

func (p *killProxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return
	}
	p.done = true
	p.l.Close()
	for _, c := range p.cs {
		c.Close()
	}
}

// bigBusybox imports the busybox image with size bytes of random data as ref.
func bigBusybox(t *testing.T, e *roostEnv, ref string, size int) {
	t.Helper()
	b := make([]byte, size)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	es := append(busyboxEntries(t), entry{name: "data/", typ: tar.TypeDir}, entry{name: "data/random", body: string(b)})
	writeTar(t, e.path("big.tar"), es)
	e.importTar(e.path("big.tar"), ref)
}

// TestRegistryKilled: the registry killed mid-pull and mid-push: one line,
// exit 125, and the pull leaves the store unchanged.
func TestRegistryKilled(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t, "")
	e := newRoost(t)
	ref := reg.Host + "/kill/big:1"
	bigBusybox(t, e, ref, 16<<20)
	e.ok("push", "-q", ref)

	p := newKillProxy(t, reg, 4<<20, false)
	e2 := newRoost(t)
	smallTar(t, e2.path("small.tar"), "kill")
	e2.importTar(e2.path("small.tar"), "kill/small:1")
	before := e2.snapshot()
	msg := e2.fails("pull", p.Host+"/kill/big:1")
	t.Logf("pull with the registry killed: %s", msg)
	// Only the download kept for resuming stays (see TestPullResumeKilled).
	if d := cmp.Diff(withoutPartials(before), withoutPartials(e2.snapshot())); d != "" {
		t.Errorf("store changed (-before +after):\n%s", d)
	}

	reg2 := startRegistry(t, "")
	p2 := newKillProxy(t, reg2, 4<<20, true)
	ref2 := p2.Host + "/kill/big:2"
	e.ok("tag", ref, ref2)
	msg = e.fails("push", ref2)
	t.Logf("push with the registry killed: %s", msg)
}

// withoutRecords is a snapshot less the image records and tags.
func withoutRecords(snap map[string]string) map[string]string {
	out := map[string]string{}
	for p, v := range snap {
		if !strings.HasPrefix(p, "images/") {
			out[p] = v
		}
	}
	return out
}

// withoutPartials is a snapshot less the downloads kept for resuming.
func withoutPartials(snap map[string]string) map[string]string {
	out := map[string]string{}
	for p, v := range snap {
		if !strings.HasPrefix(p, "tmp/partial-") && p != "tmp" {
			out[p] = v
		}
	}
	return out
}

// TestRegistryInterop: roost push → skopeo inspect and copy, podman pull →
// podman run; podman push → roost pull → roost run.
func TestRegistryInterop(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t, "")
	e := newRoost(t)
	ref := reg.Host + "/interop/bb:1"
	busyboxImage(t, e, ref, "CMD cat /etc/os-release")
	digest := pushedDigest(t, e.ok("push", ref))

	var si skopeoInspected
	out := skopeo(t, e, "inspect", "--tls-verify=false", "docker://"+ref)
	if err := json.Unmarshal([]byte(out), &si); err != nil {
		t.Fatalf("skopeo inspect: %v\n%s", err, out)
	}
	if si.Digest != digest || si.Os != "linux" || len(si.Layers) != 1 {
		t.Errorf("skopeo inspect = %+v, want digest %s, linux, one layer", si, digest)
	}
	oci := e.path("oci")
	skopeo(t, e, "copy", "--src-tls-verify=false", "docker://"+ref, "oci:"+oci+":bb")
	if _, err := os.Stat(filepath.Join(oci, "index.json")); err != nil {
		t.Errorf("skopeo copy to oci:%s wrote no index.json: %v", oci, err)
	}

	p := newPodman(t, e)
	p.ok("pull", "--tls-verify=false", ref)
	if got := p.ok("run", "--rm", "--network", "none", ref, "cat", "/etc/os-release"); got != osRelease {
		t.Errorf("podman run of the image roost pushed printed %q, want %q", got, osRelease)
	}

	writeTar(t, e.path("pm.tar"), busyboxEntries(t))
	p.ok("import", "--change", "CMD cat /etc/os-release", e.path("pm.tar"), "localhost/pm/bb:2")
	ref2 := reg.Host + "/pm/bb:2"
	p.ok("push", "--tls-verify=false", "localhost/pm/bb:2", "docker://"+ref2)
	e2 := newRoost(t)
	e2.ok("pull", ref2)
	if got := e2.ok("run", "--rm", ref2); got != osRelease {
		t.Errorf("roost run of the image podman pushed printed %q, want %q", got, osRelease)
	}
}

// stallProxy forwards connections to a registry and counts the bytes the
// registry sends; past limit (when not negative) it forwards no more and
// closes stalled.
type stallProxy struct {
	Host    string
	stalled chan struct{}
	limit   int64
	l       net.Listener
	mu      sync.Mutex
	n       int64
	once    sync.Once
	cs      []net.Conn
}

func newStallProxy(t *testing.T, reg *testRegistry, limit int64) *stallProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{Host: l.Addr().String(), l: l, limit: limit, stalled: make(chan struct{})}
	t.Cleanup(p.stop)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", reg.Host)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.cs = append(p.cs, c, u)
			p.mu.Unlock()
			go func() {
				io.Copy(u, c)
				u.Close()
			}()
			go func() {
				buf := make([]byte, 32<<10)
				for {
					n, err := u.Read(buf)
					if n > 0 {
						p.mu.Lock()
						over := p.limit >= 0 && p.n+int64(n) > p.limit
						if !over {
							p.n += int64(n)
						}
						p.mu.Unlock()
						if over {
							p.once.Do(func() { close(p.stalled) })
							return // forwards nothing more; the connection hangs
						}
						if _, err := c.Write(buf[:n]); err != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				c.Close()
			}()
		}
	}()
	return p
}

// sent is the bytes the registry sent through the proxy.
func (p *stallProxy) sent() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

func (p *stallProxy) stop() {
	p.l.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.cs {
		c.Close()
	}
	p.cs = nil
}

// killedPull starts roost pull ref and kills it (SIGKILL, no chance to
// clean up) once the proxy has stalled it mid-download.
func killedPull(t *testing.T, e *roostEnv, p *stallProxy, ref string) {
	t.Helper()
	cmd := exec.Command(roostBin, "pull", ref)
	cmd.Env = e.environ()
	cmd.Dir = e.dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-p.stalled:
	case err := <-done:
		t.Fatalf("pull ended (%v) before the proxy stalled it:\n%s", err, out.String())
	case <-time.After(commandTimeout):
		t.Fatalf("pull did not reach the proxy's limit in %v", commandTimeout)
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
	p.stop()
}

// layerBytes is the size of the layer blobs of ref's manifest in reg.
func layerBytes(t *testing.T, reg *testRegistry, repo, tag string) int64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+reg.Host+"/v2/"+repo+"/manifests/"+tag, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m struct{ Layers []struct{ Size int64 } }
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || len(m.Layers) == 0 {
		t.Fatalf("manifest of %s:%s: %v (%d layers)", repo, tag, err, len(m.Layers))
	}
	var n int64
	for _, l := range m.Layers {
		n += l.Size
	}
	return n
}

// kept lists the downloads the store keeps for resuming.
func (e *roostEnv) kept() []string {
	var out []string
	for _, n := range e.dirNames("tmp") {
		if strings.HasPrefix(n, "partial-") {
			out = append(out, n)
		}
	}
	return out
}

// TestPullResumeKilled: roost killed mid-pull of a large layer leaves no
// image but keeps what it downloaded; the next pull continues it with a Range
// request (the registry sends less than the layer) and completes; prune
// deletes a kept download.
func TestPullResumeKilled(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t, "")
	e := newRoost(t)
	ref := reg.Host + "/resume/big:1"
	bigBusybox(t, e, ref, 40<<20)
	e.ok("push", "-q", ref)
	total := layerBytes(t, reg, "resume/big", "1")

	e2 := newRoost(t)
	p := newStallProxy(t, reg, 12<<20)
	killedPull(t, e2, p, p.Host+"/resume/big:1")
	if ids := e2.imageIDs(); len(ids) != 0 {
		t.Errorf("a killed pull left images %v", ids)
	}
	if k := e2.kept(); len(k) != 1 {
		t.Fatalf("a killed pull kept %v, want one download", k)
	}
	p2 := newStallProxy(t, reg, -1)
	ref2 := p2.Host + "/resume/big:1"
	if out := e2.ok("pull", "-q", ref2); out != ref2+"\n" {
		t.Errorf("resumed pull printed %q", out)
	}
	if n := p2.sent(); n >= total {
		t.Errorf("resumed pull got %d bytes from the registry, not less than the layers' %d", n, total)
	} else {
		t.Logf("resumed pull got %d of the layers' %d bytes", n, total)
	}
	if got := e2.ok("run", "--rm", ref2, "cat", "/etc/os-release"); got != osRelease {
		t.Errorf("run of the resumed image printed %q", got)
	}
	if k := e2.kept(); len(k) != 0 {
		t.Errorf("a completed pull left %v", k)
	}

	e3 := newRoost(t)
	p3 := newStallProxy(t, reg, 12<<20)
	killedPull(t, e3, p3, p3.Host+"/resume/big:1")
	if len(e3.kept()) == 0 {
		t.Fatal("a killed pull kept nothing")
	}
	e3.ok("image", "prune", "-f")
	if k := e3.kept(); len(k) != 0 {
		t.Errorf("image prune left %v", k)
	}
}
