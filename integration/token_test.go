package integration

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// tokenServer is a registry token service (Docker's token authentication
// specification): it checks a user's password by basic auth and answers with
// a JWT, signed by its own key, that grants the scopes asked for.
type tokenServer struct {
	Realm   string // http://localhost:PORT/token
	Service string
	Issuer  string
	// Bundle is the PEM file of the certificate the registry trusts.
	Bundle string

	user, password string
	key            *ecdsa.PrivateKey
	certDER        []byte

	mu      sync.Mutex
	issued  int
	refused int
}

func startTokenServer(t *testing.T, user, password string) *tokenServer {
	t.Helper()
	key, der := selfSignedCA(t, "roost test token issuer")
	ts := &tokenServer{Service: "roost-test-registry", Issuer: "roost-test-issuer", user: user, password: password, key: key, certDER: der}
	ts.Bundle = filepath.Join(t.TempDir(), "token-ca.pem")
	if err := os.WriteFile(ts.Bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	// localhost, not 127.0.0.1: go-containerregistry refuses realms that
	// are private IP literals other than the registry's own address.
	ts.Realm = "http://localhost:" + port + "/token"
	srv := &http.Server{Handler: http.HandlerFunc(ts.serve)}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return ts
}

// registryAuth is docker-registry's auth section for the token service.
func (ts *tokenServer) registryAuth() string {
	return fmt.Sprintf("auth:\n  token:\n    realm: %s\n    service: %s\n    issuer: %s\n    rootcertbundle: %s\n", ts.Realm, ts.Service, ts.Issuer, ts.Bundle)
}

func (ts *tokenServer) counts() (issued, refused int) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.issued, ts.refused
}

func (ts *tokenServer) serve(w http.ResponseWriter, r *http.Request) {
	user, pass, ok := r.BasicAuth()
	if r.Method == http.MethodPost {
		// OAuth2 password grant.
		r.ParseForm()
		user, pass, ok = r.PostForm.Get("username"), r.PostForm.Get("password"), r.PostForm.Get("grant_type") == "password"
	}
	if !ok || user != ts.user || pass != ts.password {
		ts.mu.Lock()
		ts.refused++
		ts.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		return
	}
	type access struct {
		Type    string   `json:"type"`
		Name    string   `json:"name"`
		Actions []string `json:"actions"`
	}
	grants := []access{}
	for _, sc := range append(r.URL.Query()["scope"], r.PostForm["scope"]...) {
		for _, one := range strings.Fields(sc) {
			// repository:NAME:ACTIONS; NAME may hold a port's colon.
			typ, rest, _ := strings.Cut(one, ":")
			i := strings.LastIndex(rest, ":")
			if i < 0 {
				continue
			}
			grants = append(grants, access{Type: typ, Name: rest[:i], Actions: strings.Split(rest[i+1:], ",")})
		}
	}
	now := time.Now()
	header, _ := json.Marshal(map[string]any{"typ": "JWT", "alg": "ES256", "x5c": []string{base64.StdEncoding.EncodeToString(ts.certDER)}})
	claims, _ := json.Marshal(map[string]any{
		"iss": ts.Issuer, "sub": user, "aud": ts.Service,
		"exp": now.Add(5 * time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix(), "iat": now.Unix(),
		"jti": fmt.Sprint(now.UnixNano()), "access": grants,
	})
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	sum := sha256.Sum256([]byte(signed))
	rr, ss, err := ecdsa.Sign(rand.Reader, ts.key, sum[:])
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	// JWS ES256: r and s, 32 bytes each.
	sig := make([]byte, 64)
	rr.FillBytes(sig[:32])
	ss.FillBytes(sig[32:])
	token := signed + "." + enc.EncodeToString(sig)
	ts.mu.Lock()
	ts.issued++
	ts.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"token": token, "access_token": token, "expires_in": 300, "issued_at": now.UTC().Format(time.RFC3339)})
}

// TestRegistryToken: docker-registry with bearer-token auth and a token
// service: push without login is refused with advice to log in, a wrong
// password is refused at login, and with the right one login, push, pull and
// run work, each authorized by tokens the service issued.
func TestRegistryToken(t *testing.T) {
	t.Parallel()
	ts := startTokenServer(t, "tokenuser", "t0ken")
	reg := startRegistryAuth(t, ts.registryAuth(), nil)
	e := newRoost(t)
	ref := reg.Host + "/tok/bb:1"
	busyboxImage(t, e, ref)

	before := e.snapshot()
	if msg := e.fails("push", ref); !strings.Contains(msg, "roost login "+reg.Host) {
		t.Errorf("push without login said %q, want advice to run roost login %s", msg, reg.Host)
	}
	if msg := e.fails("pull", ref); !strings.Contains(msg, "roost login "+reg.Host) {
		t.Errorf("pull without login said %q, want advice to run roost login %s", msg, reg.Host)
	}
	e.wantUnchanged(before)
	r := e.runIn(strings.NewReader("wrong\n"), "login", "-u", "tokenuser", "--password-stdin", reg.Host)
	if line := e.wantOneLineError(r); !strings.Contains(line, "unauthorized") || !strings.Contains(line, "password") {
		t.Errorf("login with a wrong password said %q", line)
	}
	if _, refused := ts.counts(); refused == 0 {
		t.Error("the token service refused nothing: login did not ask it")
	}
	r = e.runIn(strings.NewReader("t0ken\n"), "login", "-u", "tokenuser", "--password-stdin", reg.Host)
	if r.code != 0 || r.stdout != "Login Succeeded\n" {
		t.Fatalf("login: %s", r)
	}
	issuedBefore, _ := ts.counts()
	digest := pushedDigest(t, e.ok("push", ref))
	e.ok("rmi", ref)
	if out := e.ok("pull", "-q", ref); out != ref+"\n" {
		t.Errorf("pull -q printed %q", out)
	}
	if got := e.inspect(ref).RepoDigests; len(got) != 1 || got[0] != reg.Host+"/tok/bb@"+digest {
		t.Errorf("RepoDigests %v, want [%s/tok/bb@%s]", got, reg.Host, digest)
	}
	if got := e.ok("run", "--rm", ref, "cat", "/etc/os-release"); got != osRelease {
		t.Errorf("run of the image pulled with a token printed %q", got)
	}
	if issued, _ := ts.counts(); issued <= issuedBefore {
		t.Errorf("push and pull got no token from the token service (%d issued before, %d after)", issuedBefore, issued)
	}

	// The wrong password stored: the pull says to log in again.
	e.ok("logout", reg.Host)
	authFile := filepath.Join(e.ConfigHome, "roost", "auth.json")
	wrong := fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, reg.Host, base64.StdEncoding.EncodeToString([]byte("tokenuser:wrong")))
	if err := os.WriteFile(authFile, []byte(wrong), 0o600); err != nil {
		t.Fatal(err)
	}
	e.ok("rmi", ref)
	before = e.snapshot()
	if msg := e.fails("pull", ref); !strings.Contains(msg, "roost login "+reg.Host) {
		t.Errorf("pull with a wrong stored password said %q, want advice to run roost login %s", msg, reg.Host)
	}
	e.wantUnchanged(before)
}
