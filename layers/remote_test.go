package layers

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// testRegistry is go-containerregistry's in-memory registry behind a
// wrapper that counts blob GETs and can tamper with responses.
type testRegistry struct {
	t    *testing.T
	host string
	// blobGets counts GETs of each blob digest.
	mu       sync.Mutex
	blobGets map[string]int
	// intercept, when set, may answer a request instead of the registry.
	intercept func(w http.ResponseWriter, r *http.Request) bool
}

func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	tr := &testRegistry{t: t, blobGets: map[string]int{}}
	reg := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			tr.mu.Lock()
			tr.blobGets[r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]]++
			tr.mu.Unlock()
		}
		tr.mu.Lock()
		ic := tr.intercept
		tr.mu.Unlock()
		if ic != nil && ic(w, r) {
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	tr.host = strings.TrimPrefix(srv.URL, "http://")
	return tr
}

func (tr *testRegistry) gets(h v1.Hash) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.blobGets[h.String()]
}

func (tr *testRegistry) totalGets() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for _, c := range tr.blobGets {
		n += c
	}
	return n
}

func (tr *testRegistry) setIntercept(f func(w http.ResponseWriter, r *http.Request) bool) {
	tr.mu.Lock()
	tr.intercept = f
	tr.mu.Unlock()
}

func (tr *testRegistry) ref(s string) string { return tr.host + "/" + s }

// put pushes img (an image or index) to repo:tag and returns its digest.
func (tr *testRegistry) put(ref string, img remote.Taggable) v1.Hash {
	tr.t.Helper()
	r, err := name.ParseReference(tr.ref(ref))
	if err != nil {
		tr.t.Fatal(err)
	}
	switch x := img.(type) {
	case v1.Image:
		err = remote.Write(r, x)
	case v1.ImageIndex:
		err = remote.WriteIndex(r, x)
	}
	if err != nil {
		tr.t.Fatal(err)
	}
	d, err := img.(interface{ Digest() (v1.Hash, error) }).Digest()
	if err != nil {
		tr.t.Fatal(err)
	}
	return d
}

// remoteDigest is the digest ref resolves to in the registry.
func (tr *testRegistry) remoteDigest(ref string) v1.Hash {
	tr.t.Helper()
	r, _ := name.ParseReference(tr.ref(ref))
	d, err := remote.Head(r)
	if err != nil {
		tr.t.Fatal(err)
	}
	return d.Digest
}

// testOptions are RemoteOptions that read no user's credentials.
func testOptions() RemoteOptions {
	return RemoteOptions{Keychain: authn.NewMultiKeychain()}
}

func randomImage(t *testing.T, layers int64) v1.Image {
	t.Helper()
	img, err := random.Image(2048, layers)
	if err != nil {
		t.Fatal(err)
	}
	return withPlatform(t, img, "linux", HostPlatform().Architecture)
}

func withPlatform(t *testing.T, img v1.Image, os, arch string) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = os, arch
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func pull(t *testing.T, s *Store, ref string, o RemoteOptions) *PullResult {
	t.Helper()
	res, err := s.Pull(context.Background(), ref, o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// wantStored checks that the store holds img's layers, config and its exact manifest.
func wantStored(t *testing.T, s *Store, ref string, img v1.Image) *Image {
	t.Helper()
	stored, err := s.Resolve(ref)
	if err != nil {
		t.Fatal(err)
	}
	cn, _ := img.ConfigName()
	if stored.ID != cn {
		t.Errorf("image ID %s, want the config digest %s", stored.ID, cn)
	}
	md, _ := img.Digest()
	if stored.Manifest != md {
		t.Errorf("stored manifest %s, want the registry's %s", stored.Manifest, md)
	}
	ls, _ := img.Layers()
	for _, l := range ls {
		d, _ := l.DiffID()
		if !s.HasLayer(d) {
			t.Errorf("layer %s missing", d)
		}
		rc, err := s.OpenLayer(d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Errorf("layer %s: %v", d, err)
		}
		rc.Close()
	}
	return stored
}

func TestPullByTagAndDigest(t *testing.T) {
	tr := newTestRegistry(t)
	img := randomImage(t, 2)
	d := tr.put("test/app:1", img)
	s := newStore(t)
	var events []Progress
	o := testOptions()
	o.Progress = func(p Progress) { events = append(events, p) }
	res := pull(t, s, tr.ref("test/app:1"), o)
	if res.Digest != d || res.UpToDate {
		t.Errorf("pull result %+v, want digest %s, not up to date", res, d)
	}
	stored := wantStored(t, s, tr.ref("test/app:1"), img)
	wantRD := tr.ref("test/app@") + d.String()
	if len(stored.RepoDigests) != 1 || stored.RepoDigests[0] != wantRD {
		t.Errorf("RepoDigests %v, want [%s]", stored.RepoDigests, wantRD)
	}
	complete := 0
	for _, e := range events {
		if e.Status == StatusPullComplete {
			complete++
		}
	}
	if complete != 2 {
		t.Errorf("%d %q events, want 2: %+v", complete, StatusPullComplete, events)
	}

	// By digest, into a fresh store: no tag, found by its repo digest.
	s2 := newStore(t)
	pull(t, s2, tr.ref("test/app@")+d.String(), testOptions())
	byDigest := wantStored(t, s2, tr.ref("test/app@")+d.String(), img)
	if len(byDigest.Tags) != 0 {
		t.Errorf("pull by digest tagged the image: %v", byDigest.Tags)
	}

	// Again: up to date, and no blob is fetched.
	before := tr.totalGets()
	if res := pull(t, s, tr.ref("test/app:1"), testOptions()); !res.UpToDate {
		t.Error("second pull is not up to date")
	}
	if n := tr.totalGets() - before; n != 0 {
		t.Errorf("second pull fetched %d blobs, want 0", n)
	}
}

func TestPullPlatform(t *testing.T) {
	tr := newTestRegistry(t)
	host := HostPlatform()
	other := "arm64"
	if host.Architecture == "arm64" {
		other = "amd64"
	}
	hostImg := withPlatform(t, randomImage(t, 1), "linux", host.Architecture)
	otherImg := withPlatform(t, randomImage(t, 1), "linux", other)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: otherImg, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: other}}},
		mutate.IndexAddendum{Add: hostImg, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: host.Architecture}}},
	)
	idxDigest := tr.put("multi/app:latest", idx)

	s := newStore(t)
	res := pull(t, s, tr.ref("multi/app"), testOptions())
	if res.Digest != idxDigest {
		t.Errorf("pull digest %s, want the index's %s", res.Digest, idxDigest)
	}
	wantStored(t, s, tr.ref("multi/app"), hostImg)

	o := testOptions()
	o.Platform = "linux/" + other
	s2 := newStore(t)
	pull(t, s2, tr.ref("multi/app"), o)
	got := wantStored(t, s2, tr.ref("multi/app"), otherImg)
	cf, _, _ := s2.Config(got.ID)
	if cf.Architecture != other {
		t.Errorf("pulled %s, want %s", cf.Architecture, other)
	}

	o.Platform = "linux/s390x"
	_, err := newStore(t).Pull(context.Background(), tr.ref("multi/app"), o)
	if err == nil || !strings.Contains(err.Error(), "linux/s390x") {
		t.Errorf("pull of a missing platform: %v, want an error naming linux/s390x", err)
	}
}

// tarOf is a one-file layer tar.
func tarOf(t *testing.T, name, content string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(content))
	tw.Close()
	return b.Bytes()
}

func TestPullCompressions(t *testing.T) {
	tr := newTestRegistry(t)
	zb := tarOf(t, "zstd.txt", strings.Repeat("zstd ", 1000))
	zl, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(zb)), nil },
		tarball.WithCompression(compression.ZStd), tarball.WithMediaType(types.OCILayerZStd))
	if err != nil {
		t.Fatal(err)
	}
	gl, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarOf(t, "gzip.txt", "gzip"))), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ul := static.NewLayer(tarOf(t, "plain.txt", "plain"), types.OCIUncompressedLayer)
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), gl, zl, ul)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img = withPlatform(t, img, "linux", HostPlatform().Architecture)
	tr.put("comp/app:1", img)
	s := newStore(t)
	pull(t, s, tr.ref("comp/app:1"), testOptions())
	stored := wantStored(t, s, tr.ref("comp/app:1"), img)
	// Only the uncompressed layers are kept, as Docker keeps them; the
	// uncompressed layer is not stored twice.
	for _, l := range []v1.Layer{gl, zl} {
		d, _ := l.Digest()
		if s.HasBlob(d) {
			t.Errorf("compressed blob %s kept besides its layer", d)
		}
	}
	ud, _ := ul.Digest()
	if s.HasBlob(ud) {
		t.Errorf("uncompressed layer %s stored twice, as a blob too", ud)
	}
	// Push back: the registry has the blobs, the digest stays.
	res, err := s.Push(context.Background(), tr.ref("comp/app:1"), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest != stored.Manifest {
		t.Errorf("push digest %s, want %s", res.Digest, stored.Manifest)
	}
}

func TestPullSkipsStoredLayers(t *testing.T) {
	tr := newTestRegistry(t)
	base := randomImage(t, 2)
	tr.put("skip/base:1", base)
	extra, err := random.Layer(1024, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	derived, err := mutate.AppendLayers(base, extra)
	if err != nil {
		t.Fatal(err)
	}
	tr.put("skip/derived:1", derived)
	s := newStore(t)
	pull(t, s, tr.ref("skip/base:1"), testOptions())
	var exists []v1.Hash
	o := testOptions()
	o.Progress = func(p Progress) {
		if p.Status == StatusAlreadyExists {
			exists = append(exists, p.Digest)
		}
	}
	pull(t, s, tr.ref("skip/derived:1"), o)
	wantStored(t, s, tr.ref("skip/derived:1"), derived)
	ls, _ := base.Layers()
	for _, l := range ls {
		d, _ := l.Digest()
		if n := tr.gets(d); n != 1 {
			t.Errorf("base layer %s fetched %d times, want once", d, n)
		}
	}
	ed, _ := extra.Digest()
	if n := tr.gets(ed); n != 1 {
		t.Errorf("new layer fetched %d times, want once", n)
	}
	if len(exists) != 2 {
		t.Errorf("%d layers reported %q, want 2", len(exists), StatusAlreadyExists)
	}
}

// wantEmptyStore fails unless the store holds no image, layer, blob or temp file.
func wantEmptyStore(t *testing.T, s *Store) {
	t.Helper()
	for _, d := range []string{"images", "layers", "blobs/sha256", "tmp"} {
		ents, _ := os.ReadDir(filepath.Join(s.Root(), d))
		for _, e := range ents {
			if e.Name() != "repositories.json" {
				t.Errorf("store keeps %s/%s", d, e.Name())
			}
		}
	}
}

func TestPullCorruptBlob(t *testing.T) {
	tr := newTestRegistry(t)
	img := randomImage(t, 2)
	tr.put("bad/app:1", img)
	ls, _ := img.Layers()
	bad, _ := ls[1].Digest()
	good, _ := ls[1].Compressed()
	body, _ := io.ReadAll(good)
	body[len(body)/2] ^= 0xff
	tr.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+bad.String()) {
			w.Write(body)
			return true
		}
		return false
	})
	s := newStore(t)
	_, err := s.Pull(context.Background(), tr.ref("bad/app:1"), testOptions())
	if err == nil {
		t.Fatal("pull of a corrupt blob succeeded")
	}
	t.Log(err)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), bad.String()) {
		t.Errorf("error %q: want ErrCorrupt naming %s", err, bad)
	}
	if n := tr.gets(bad); n != 1 {
		t.Errorf("corrupt blob fetched %d times, want once (no retry of bad content)", n)
	}
	wantEmptyStore(t, s)
}

func TestPullInterrupted(t *testing.T) {
	tr := newTestRegistry(t)
	img := randomImage(t, 1)
	tr.put("cut/app:1", img)
	ls, _ := img.Layers()
	ld, _ := ls[0].Digest()
	var cut atomic.Bool
	cut.Store(true)
	tr.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if !cut.Load() || r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+ld.String()) {
			return false
		}
		// Half the blob, then the connection drops.
		rc, _ := ls[0].Compressed()
		b, _ := io.ReadAll(rc)
		size, _ := ls[0].Size()
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		w.Write(b[:len(b)/2])
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return true
	})
	s := newStore(t)
	_, err := s.Pull(context.Background(), tr.ref("cut/app:1"), testOptions())
	if err == nil {
		t.Fatal("pull succeeded though every download broke off")
	}
	t.Log(err)
	if n := tr.gets(ld); n != 3 {
		t.Errorf("broken download tried %d times, want 3", n)
	}
	wantEmptyStore(t, s)
	cut.Store(false)
	pull(t, s, tr.ref("cut/app:1"), testOptions())
	wantStored(t, s, tr.ref("cut/app:1"), img)
}

func TestPushPullRoundTrip(t *testing.T) {
	tr := newTestRegistry(t)
	img := randomImage(t, 2)
	d := tr.put("src/app:1", img)
	s := newStore(t)
	pull(t, s, tr.ref("src/app:1"), testOptions())
	if err := s.Tag(tr.ref("src/app:1"), *mustTag(t, tr.ref("dst/app:2"))); err != nil {
		t.Fatal(err)
	}
	var statuses []string
	o := testOptions()
	o.Progress = func(p Progress) { statuses = append(statuses, p.Status) }
	before := tr.totalGets()
	res, err := s.Push(context.Background(), tr.ref("dst/app:2"), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest != d {
		t.Errorf("pushed digest %s, want the pulled %s", res.Digest, d)
	}
	if got := tr.remoteDigest("dst/app:2"); got != d {
		t.Errorf("registry has %s, want %s", got, d)
	}
	if n := tr.totalGets() - before; n != 0 {
		t.Errorf("push fetched %d blobs", n)
	}
	// Same registry, other repository: the layers are mounted, not sent.
	for _, st := range statuses {
		if st == StatusPushed {
			t.Errorf("a layer was uploaded though it could be mounted: %v", statuses)
			break
		}
	}
	stored, _ := s.Resolve(tr.ref("dst/app:2"))
	if want := tr.ref("dst/app@") + d.String(); !contains(stored.RepoDigests, want) {
		t.Errorf("RepoDigests %v lack %s", stored.RepoDigests, want)
	}
	// Remove, pull back from the new repository, push again: unchanged.
	if _, err := s.Remove(stored.ID.String(), true); err != nil {
		t.Fatal(err)
	}
	pull(t, s, tr.ref("dst/app:2"), testOptions())
	res, err = s.Push(context.Background(), tr.ref("dst/app:2"), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest != d {
		t.Errorf("second push digest %s, want %s", res.Digest, d)
	}
}

func TestPushImported(t *testing.T) {
	tr := newTestRegistry(t)
	s := newStore(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "rootfs.tar")
	if err := os.WriteFile(p, tarOf(t, "etc/hello", "hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	id, err := s.Import(ImportOptions{Source: p, Tag: mustTag(t, tr.ref("imp/app:1"))})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Push(context.Background(), tr.ref("imp/app:1"), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	r, _ := name.ParseReference(tr.ref("imp/app:1"))
	rimg, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	if rd, _ := rimg.Digest(); rd != res.Digest {
		t.Errorf("registry digest %s, push said %s", rd, res.Digest)
	}
	if cn, _ := rimg.ConfigName(); cn != id {
		t.Errorf("registry config %s, want the image ID %s", cn, id)
	}
	// The registry gets gzip layers, and a second push the same manifest.
	rm, err := rimg.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range rm.Layers {
		if l.MediaType != types.OCILayer {
			t.Errorf("pushed layer %s is %s, want gzip (%s)", l.Digest, l.MediaType, types.OCILayer)
		}
	}
	again, err := s.Push(context.Background(), tr.ref("imp/app:1"), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if again.Digest != res.Digest {
		t.Errorf("second push digest %s, first %s", again.Digest, res.Digest)
	}
	// Pull it into another store: same ID.
	s2 := newStore(t)
	if res := pull(t, s2, tr.ref("imp/app:1"), testOptions()); res.ID != id {
		t.Errorf("pulled ID %s, want %s", res.ID, id)
	}
}

func TestPullErrors(t *testing.T) {
	tr := newTestRegistry(t)
	tr.put("err/app:1", randomImage(t, 1))
	s := newStore(t)
	for _, tc := range []struct{ ref, want string }{
		{tr.ref("err/app:nope"), "no such image or tag"},
		{tr.ref("err/none:1"), "repository " + tr.ref("err/none") + " not found"},
		{"127.0.0.1:1/x/y:1", "connection refused"},
	} {
		_, err := s.Pull(context.Background(), tc.ref, testOptions())
		t.Log(err)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("pull %s: %v, want an error saying %q", tc.ref, err, tc.want)
		}
	}
	wantEmptyStore(t, s)
}

// basicAuth answers 401 unless a request carries user:secret.
func basicAuth(w http.ResponseWriter, r *http.Request) bool {
	if u, p, ok := r.BasicAuth(); ok && u == "user" && p == "secret" {
		return false
	}
	w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
	w.WriteHeader(http.StatusUnauthorized)
	return true
}

func TestLoginLogout(t *testing.T) {
	dockerDir, xdg := t.TempDir(), t.TempDir()
	t.Setenv("DOCKER_CONFIG", dockerDir)
	t.Setenv("XDG_CONFIG_HOME", xdg)
	authFile := filepath.Join(xdg, "roost", "auth.json")
	tr := newTestRegistry(t)
	tr.put("a/b:1", randomImage(t, 1))
	tr.setIntercept(basicAuth)
	ctx := context.Background()
	if _, err := Login(ctx, tr.host, "user", "wrong", RemoteOptions{}); err == nil || !strings.Contains(err.Error(), "unauthorized") {
		t.Errorf("login with a wrong password: %v, want unauthorized", err)
	}
	if _, err := os.Stat(authFile); err == nil {
		t.Error("a failed login wrote auth.json")
	}
	s := newStore(t)
	_, err := s.Pull(ctx, tr.ref("a/b:1"), RemoteOptions{})
	if err == nil || !strings.Contains(err.Error(), "roost login "+tr.host) {
		t.Errorf("pull without login: %v, want advice to run roost login", err)
	}
	if _, err := Login(ctx, tr.host, "user", "secret", RemoteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dockerDir, "config.json")); err == nil {
		t.Error("login wrote Docker's config.json")
	}
	fi, err := os.Stat(authFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("auth.json mode %v, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(authFile)
	var cf struct {
		Auths map[string]struct{ Auth string }
	}
	if err := json.Unmarshal(b, &cf); err != nil {
		t.Fatal(err)
	}
	if got := cf.Auths[tr.host].Auth; got != base64.StdEncoding.EncodeToString([]byte("user:secret")) {
		t.Errorf("auth.json auths[%s] = %q, want base64 user:secret; file: %s", tr.host, got, b)
	}
	// The default keychain reads it.
	pull(t, s, tr.ref("a/b:1"), RemoteOptions{})
	server, found, err := Logout(tr.host, RemoteOptions{})
	if err != nil || !found || server != tr.host {
		t.Errorf("logout: %q %v %v", server, found, err)
	}
	if _, found, _ := Logout(tr.host, RemoteOptions{}); found {
		t.Error("second logout found credentials")
	}
	if _, err := newStore(t).Pull(ctx, tr.ref("a/b:1"), RemoteOptions{}); err == nil {
		t.Error("pull after logout succeeded")
	}
	// Docker's config.json is read when roost's file has nothing.
	docker := fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, tr.host, base64.StdEncoding.EncodeToString([]byte("user:secret")))
	if err := os.WriteFile(filepath.Join(dockerDir, "config.json"), []byte(docker), 0o600); err != nil {
		t.Fatal(err)
	}
	pull(t, newStore(t), tr.ref("a/b:1"), RemoteOptions{})
}

func TestPullMirror(t *testing.T) {
	mirror := newTestRegistry(t)
	img := randomImage(t, 1)
	d := mirror.put("lib/app:1", img)
	// The registry itself is unreachable; its mirror answers.
	o := testOptions()
	o.Mirrors = map[string][]string{"127.0.0.1:1": {"http://nonesuch.invalid", "http://" + mirror.host}}
	s := newStore(t)
	res := pull(t, s, "127.0.0.1:1/lib/app:1", o)
	if res.Digest != d {
		t.Errorf("digest %s, want %s", res.Digest, d)
	}
	stored := wantStored(t, s, "127.0.0.1:1/lib/app:1", img)
	if want := "127.0.0.1:1/lib/app@" + d.String(); !contains(stored.RepoDigests, want) {
		t.Errorf("RepoDigests %v, want %s (the registry's name, not the mirror's)", stored.RepoDigests, want)
	}
}

// TestPullTLS: a registry whose CA is not trusted is refused with advice
// naming certs.d; its CA in certs.d/HOST:PORT/ca.crt, or SkipTLSVerify,
// lets the pull through.
func TestPullTLS(t *testing.T) {
	reg := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewTLSServer(reg)
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "https://")
	ref := host + "/tls/app:1"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img := randomImage(t, 2)
	if err := remote.Write(r, img, remote.WithTransport(srv.Client().Transport)); err != nil {
		t.Fatal(err)
	}
	certs := t.TempDir()
	o := testOptions()
	o.CertsDir = certs
	s := newStore(t)
	_, err = s.Pull(context.Background(), ref, o)
	caPath := filepath.Join(certs, host, "ca.crt")
	if err == nil || !strings.Contains(err.Error(), caPath) || !strings.Contains(err.Error(), "--tls-verify=false") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("pull from an untrusted registry: %v, want one line naming %s and --tls-verify=false", err, caPath)
	}
	wantEmptyStore(t, s)

	skip := o
	skip.SkipTLSVerify = true
	pull(t, newStore(t), ref, skip)

	if err := os.MkdirAll(filepath.Dir(caPath), 0o700); err != nil {
		t.Fatal(err)
	}
	pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caPath, pemCert, 0o600); err != nil {
		t.Fatal(err)
	}
	pull(t, s, ref, o)
	wantStored(t, s, ref, img)
	if _, err := s.Push(context.Background(), host+"/tls/copy:1", o); err == nil {
		t.Fatal("push of an image the store lacks succeeded")
	}
	tag, err := name.NewTag(host + "/tls/copy:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Tag(ref, tag); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Push(context.Background(), host+"/tls/copy:1", o); err != nil {
		t.Fatalf("push to a registry trusted through certs.d: %v", err)
	}

	// The transport honours HTTP(S)_PROXY.
	ht := o.transport().(*hostTransport)
	rt, err := ht.newTransport("registry.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if tr, ok := rt.(*http.Transport); !ok || tr.Proxy == nil {
		t.Errorf("registry transport %T has no proxy function", rt)
	}
}

// hubRecorder stands in for Docker Hub: it answers the /v2/ ping and
// records the first request that names a repository, then refuses it.
type hubRecorder struct {
	mu   sync.Mutex
	seen *http.Request
}

var errOffline = errors.New("offline test transport")

func (h *hubRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Path == "/v2/" {
		return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader("{}")), Request: req, Header: http.Header{}}, nil
	}
	h.mu.Lock()
	if h.seen == nil {
		h.seen = req
	}
	h.mu.Unlock()
	return nil, errOffline
}

// TestPushDockerHubNamespace: a push of NAMESPACE/REPO goes to Docker Hub's
// repository of that name, and a bare name to library/, as Docker's do.
func TestPushDockerHubNamespace(t *testing.T) {
	for _, tc := range []struct {
		ref, normalized, path, familiar string
	}{
		{"me/myapp:1.0", "docker.io/me/myapp:1.0", "/v2/me/myapp/", "me/myapp:1.0"},
		{"docker.io/me/myapp:1.0", "docker.io/me/myapp:1.0", "/v2/me/myapp/", "me/myapp:1.0"},
		{"myapp", "docker.io/library/myapp:latest", "/v2/library/myapp/", "myapp:latest"},
		{"index.docker.io/me/myapp:2", "docker.io/me/myapp:2", "/v2/me/myapp/", "me/myapp:2"},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			r, err := ParseReference(tc.ref)
			if err != nil {
				t.Fatal(err)
			}
			if got := Normalized(r); got != tc.normalized {
				t.Errorf("Normalized(%q) = %q, want %q", tc.ref, got, tc.normalized)
			}
			s := newStore(t)
			importBytes(t, s, tarOf(t, "etc/hello", "hello"), tc.ref)
			hub := &hubRecorder{}
			o := testOptions()
			o.Transport = hub
			_, err = s.Push(context.Background(), tc.ref, o)
			if !errors.Is(err, errOffline) {
				t.Fatalf("push through the offline transport: %v, want it to fail with %v", err, errOffline)
			}
			if !strings.HasPrefix(err.Error(), "push "+tc.familiar+": ") {
				t.Errorf("push error %q does not name %s", err, tc.familiar)
			}
			if hub.seen == nil {
				t.Fatal("push sent no request naming a repository")
			}
			if got := hub.seen.URL.Scheme + "://" + hub.seen.URL.Host; got != "https://index.docker.io" {
				t.Errorf("push went to %s, want https://index.docker.io", got)
			}
			if !strings.HasPrefix(hub.seen.URL.Path, tc.path) {
				t.Errorf("push asked for %s, want a path under %s", hub.seen.URL.Path, tc.path)
			}
		})
	}
}

// TestPushRecompresses: a pulled image keeps no compressed blobs; pushed to
// another registry, which has none of them and cannot mount them, its layers
// are compressed again (the digest changes, as with Docker), and the store
// is left as it was, so that a push back to the first registry keeps the
// digest.
func TestPushRecompresses(t *testing.T) {
	src, dst := newTestRegistry(t), newTestRegistry(t)
	zb := tarOf(t, "zstd.txt", strings.Repeat("zstd ", 1000))
	zl, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(zb)), nil },
		tarball.WithCompression(compression.ZStd), tarball.WithMediaType(types.OCILayerZStd))
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(randomImage(t, 2), zl)
	if err != nil {
		t.Fatal(err)
	}
	d := src.put("a/app:1", img)
	s := newStore(t)
	pull(t, s, src.ref("a/app:1"), testOptions())
	if err := s.Tag(src.ref("a/app:1"), *mustTag(t, dst.ref("b/app:2"))); err != nil {
		t.Fatal(err)
	}
	before := storeTree(t, s)
	o := testOptions()
	last := map[v1.Hash]string{}
	o.Progress = func(p Progress) { last[p.Digest] = p.Status }
	res, err := s.Push(context.Background(), dst.ref("b/app:2"), o)
	if err != nil {
		t.Fatal(err)
	}
	// Every layer reported ends pushed: none is left "Preparing" by the
	// push that found the blobs missing.
	for dg, st := range last {
		if st != StatusPushed && st != StatusLayerExists {
			t.Errorf("layer %s ended %q", dg, st)
		}
	}
	if len(last) != 3 {
		t.Errorf("progress named %d layers, want 3: %v", len(last), last)
	}
	if res.Digest == d {
		t.Errorf("push to another registry kept digest %s, though the zstd layer went out as gzip", d)
	}
	r, _ := name.ParseReference(dst.ref("b/app:2"))
	pushed, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	if pd, _ := pushed.Digest(); pd != res.Digest {
		t.Errorf("registry has %s, push said %s", pd, res.Digest)
	}
	want, _ := img.ConfigName()
	if cn, _ := pushed.ConfigName(); cn != want {
		t.Errorf("pushed config %s, want the image's %s", cn, want)
	}
	wantLayers, _ := img.Layers()
	gotLayers, err := pushed.Layers()
	if err != nil || len(gotLayers) != len(wantLayers) {
		t.Fatalf("pushed image has %d layers (%v), want %d", len(gotLayers), err, len(wantLayers))
	}
	for i, l := range gotLayers {
		mt, _ := l.MediaType()
		if mt != types.OCILayer && mt != types.DockerLayer {
			t.Errorf("pushed layer %d is %s, want gzip", i, mt)
		}
		// The registry verifies the blob digest; the content must be the layer's.
		got, err := l.DiffID()
		if err != nil {
			t.Fatal(err)
		}
		rc, _ := l.Uncompressed()
		h := sha256.New()
		if _, err := io.Copy(h, rc); err != nil {
			t.Fatal(err)
		}
		rc.Close()
		wd, _ := wantLayers[i].DiffID()
		if hashOf(h) != wd || got != wd {
			t.Errorf("pushed layer %d holds %s (config says %s), want %s", i, hashOf(h), got, wd)
		}
	}
	// The store is as it was but for the new RepoDigest.
	stored, _ := s.Resolve(dst.ref("b/app:2"))
	if want := dst.ref("b/app@") + res.Digest.String(); !contains(stored.RepoDigests, want) {
		t.Errorf("RepoDigests %v lack %s", stored.RepoDigests, want)
	}
	after := storeTree(t, s)
	if diff := cmp.Diff(withoutRecords(before), withoutRecords(after)); diff != "" {
		t.Errorf("push changed the store's blobs or layers (-before +after):\n%s", diff)
	}
	// Again: the same digest (gzip is deterministic), and back to the first
	// registry: the registry's own digest.
	again, err := s.Push(context.Background(), dst.ref("b/app:2"), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if again.Digest != res.Digest {
		t.Errorf("second push digest %s, want %s", again.Digest, res.Digest)
	}
	back, err := s.Push(context.Background(), src.ref("a/app:1"), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if back.Digest != d {
		t.Errorf("push back to the first registry: digest %s, want the pulled %s", back.Digest, d)
	}
}

// withoutRecords drops image records and tags from a storeTree listing.
func withoutRecords(tree []string) []string {
	var out []string
	for _, l := range tree {
		if !strings.HasPrefix(l, "/images") {
			out = append(out, l)
		}
	}
	return out
}

// rangeServer serves one blob, honouring "Range: bytes=N-", and breaks
// the connection after cut bytes of a response when cut > 0. It records the
// Range of each request and the bytes it sent.
type rangeServer struct {
	body []byte
	mu   sync.Mutex
	cut  int
	// onCut, when set, runs once a response is cut, before the connection drops.
	onCut  func()
	ranges []string
	sent   int
}

func (rs *rangeServer) serve(w http.ResponseWriter, r *http.Request) {
	rs.mu.Lock()
	rs.ranges = append(rs.ranges, r.Header.Get("Range"))
	cut, onCut := rs.cut, rs.onCut
	rs.mu.Unlock()
	var off int
	if rg := r.Header.Get("Range"); rg != "" {
		fmt.Sscanf(rg, "bytes=%d-", &off)
	}
	b := rs.body[off:]
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	if off > 0 {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, len(rs.body)-1, len(rs.body)))
		w.WriteHeader(http.StatusPartialContent)
	}
	if cut > 0 && cut < len(b) {
		b = b[:cut]
	}
	n, _ := w.Write(b)
	rs.mu.Lock()
	rs.sent += n
	rs.mu.Unlock()
	if cut > 0 && cut < len(rs.body)-off {
		w.(http.Flusher).Flush()
		if onCut != nil {
			onCut()
		}
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			conn.Close()
		}
	}
}

func (rs *rangeServer) stats() (ranges []string, sent int) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([]string(nil), rs.ranges...), rs.sent
}

func (rs *rangeServer) reset(cut int, onCut func()) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.cut, rs.onCut, rs.ranges, rs.sent = cut, onCut, nil, 0
}

// largeLayerRegistry serves an image with one layer large enough that its
// download is kept for resuming, through a rangeServer.
func largeLayerRegistry(t *testing.T) (*testRegistry, *rangeServer, v1.Image, v1.Hash) {
	t.Helper()
	tr := newTestRegistry(t)
	img, err := random.Image(resumeMin+(1<<20), 1)
	if err != nil {
		t.Fatal(err)
	}
	img = withPlatform(t, img, "linux", HostPlatform().Architecture)
	tr.put("big/app:1", img)
	ls, _ := img.Layers()
	ld, _ := ls[0].Digest()
	rc, _ := ls[0].Compressed()
	body, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	rs := &rangeServer{body: body}
	tr.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+ld.String()) {
			return false
		}
		rs.serve(w, r)
		return true
	})
	return tr, rs, img, ld
}

// partials lists the kept downloads in the store's tmp/ with their sizes.
func partials(t *testing.T, s *Store) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	ents, _ := os.ReadDir(filepath.Join(s.Root(), "tmp"))
	for _, e := range ents {
		if isPartial(e.Name()) {
			fi, _ := e.Info()
			out[e.Name()] = fi.Size()
		}
	}
	return out
}

// TestPullResumes: a large layer's download that breaks off continues with
// a Range request, within a pull (its retries) and across pulls (one
// cancelled, as by ^C); no byte is fetched twice, an interrupted pull leaves
// no image, and prune deletes what it kept.
func TestPullResumes(t *testing.T) {
	tr, rs, img, ld := largeLayerRegistry(t)
	size := len(rs.body)
	const cut = 6 << 20

	// Every response breaks off after 6 MiB: each retry continues.
	rs.reset(cut, nil)
	s := newStore(t)
	pull(t, s, tr.ref("big/app:1"), testOptions())
	wantStored(t, s, tr.ref("big/app:1"), img)
	ranges, sent := rs.stats()
	want := []string{"", fmt.Sprintf("bytes=%d-", cut), fmt.Sprintf("bytes=%d-", 2*cut)}
	if diff := cmp.Diff(want, ranges); diff != "" {
		t.Errorf("requests' ranges (-want +got):\n%s", diff)
	}
	if sent != size {
		t.Errorf("sent %d bytes for a %d-byte blob", sent, size)
	}
	if p := partials(t, s); len(p) != 0 {
		t.Errorf("a completed pull kept %v", p)
	}

	// A pull cancelled mid-layer keeps what it got, and no image.
	s2 := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	rs.reset(cut, cancel)
	if _, err := s2.Pull(ctx, tr.ref("big/app:1"), testOptions()); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled pull: %v, want context.Canceled", err)
	}
	if imgs, _ := s2.Images(); len(imgs) != 0 {
		t.Errorf("a cancelled pull left images %v", imgs)
	}
	kept := partials(t, s2)[partialPrefix+ld.Hex]
	if kept == 0 || kept > cut {
		t.Fatalf("cancelled pull kept %d bytes of %s, want some, at most %d (%v)", kept, ld, cut, partials(t, s2))
	}
	rs.reset(0, nil)
	pull(t, s2, tr.ref("big/app:1"), testOptions())
	wantStored(t, s2, tr.ref("big/app:1"), img)
	ranges, sent = rs.stats()
	if diff := cmp.Diff([]string{fmt.Sprintf("bytes=%d-", kept)}, ranges); diff != "" {
		t.Errorf("resumed pull's ranges (-want +got):\n%s", diff)
	}
	if sent != size-int(kept) {
		t.Errorf("resumed pull fetched %d bytes, want the %d not kept", sent, size-int(kept))
	}

	// Damaged kept bytes: the pull starts again from the beginning.
	s3 := newStore(t)
	if err := os.WriteFile(filepath.Join(s3.Root(), "tmp", partialPrefix+ld.Hex), make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	rs.reset(0, nil)
	pull(t, s3, tr.ref("big/app:1"), testOptions())
	wantStored(t, s3, tr.ref("big/app:1"), img)
	if ranges, _ := rs.stats(); len(ranges) != 2 || ranges[0] != "bytes=1048576-" || ranges[1] != "" {
		t.Errorf("pull over damaged kept bytes asked for %q, want a resume then the whole blob", ranges)
	}

	// Prune deletes kept downloads.
	s4 := newStore(t)
	ctx, cancel = context.WithCancel(context.Background())
	rs.reset(cut, cancel)
	s4.Pull(ctx, tr.ref("big/app:1"), testOptions())
	if len(partials(t, s4)) == 0 {
		t.Fatal("cancelled pull kept nothing")
	}
	if _, err := s4.Prune(false); err != nil {
		t.Fatal(err)
	}
	wantEmptyStore(t, s4)
}
