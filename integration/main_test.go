package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// roostBin is the binary under test.
var roostBin string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if code, ok := udpHelper(); ok {
		return code
	}
	if os.Geteuid() == 0 {
		fmt.Fprintln(os.Stderr, "integration: these tests run as an unprivileged user, not root: run `sudo bash .ci/run`, which runs them as roost-sub and roost-nosub, or run them as your own user")
		return 1
	}
	roostBin = os.Getenv("ROOST_BIN")
	if roostBin == "" {
		dir, err := os.MkdirTemp("", "roost-integration-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "integration:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		roostBin = filepath.Join(dir, "roost")
		cmd := exec.Command("go", "build", "-o", roostBin, "..")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "integration: build roost (set ROOST_BIN to use a built binary):", err)
			return 1
		}
	}
	if fi, err := os.Stat(roostBin); err != nil || fi.Mode()&0o111 == 0 {
		fmt.Fprintf(os.Stderr, "integration: ROOST_BIN=%s is not an executable file\n", roostBin)
		return 1
	}
	return m.Run()
}

// roostEnv is one isolated roost installation: its own storage root, config
// and runtime directories and HOME, all under a test's temp dir.
type roostEnv struct {
	t    *testing.T
	dir  string // the test's temp dir
	Root string // storage root (ROOST_ROOT; unset when empty)
	Home string
	// ConfigHome is XDG_CONFIG_HOME; roost reads ConfigHome/roost/config.toml.
	ConfigHome string
	Runtime    string // XDG_RUNTIME_DIR
	Tmp        string // TMPDIR
	extraEnv   []string
}

func newRoost(t *testing.T) *roostEnv {
	t.Helper()
	dir := t.TempDir()
	e := &roostEnv{
		t:          t,
		dir:        dir,
		Root:       filepath.Join(dir, "store"),
		Home:       filepath.Join(dir, "home"),
		ConfigHome: filepath.Join(dir, "config"),
		Runtime:    filepath.Join(dir, "run"),
		Tmp:        filepath.Join(dir, "tmp"),
	}
	for _, d := range []string{e.Home, e.ConfigHome, e.Runtime, e.Tmp} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// environ is the environment of every command the test runs.
func (e *roostEnv) environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "ROOST_") || strings.HasPrefix(k, "XDG_") || k == "HOME" || k == "TMPDIR" {
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		"HOME="+e.Home,
		"XDG_CONFIG_HOME="+e.ConfigHome,
		"XDG_DATA_HOME="+filepath.Join(e.dir, "data"),
		"XDG_RUNTIME_DIR="+e.Runtime,
		"TMPDIR="+e.Tmp,
	)
	if e.Root != "" {
		env = append(env, "ROOST_ROOT="+e.Root)
	}
	return append(env, e.extraEnv...)
}

// path is a path under the test's temp dir.
func (e *roostEnv) path(elem ...string) string {
	return filepath.Join(append([]string{e.dir}, elem...)...)
}

// site makes a web root under the test's temp dir whose index.html holds
// body, for httpd -h.
func (e *roostEnv) site(body string) string {
	e.t.Helper()
	dir := e.path("site")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte(body), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return dir
}

// result is what one command did.
type result struct {
	args           []string
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("%q: exit %d\nstdout:\n%s\nstderr:\n%s", r.args, r.code, r.stdout, r.stderr)
}

// commandTimeout bounds every command a test runs.
const commandTimeout = 5 * time.Minute

// exe runs any program with the test's environment.
func (e *roostEnv) exe(stdin io.Reader, prog string, args ...string) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Env = e.environ()
	cmd.Dir = e.dir
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{args: append([]string{filepath.Base(prog)}, args...), stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		r.code = ee.ExitCode()
	default:
		e.t.Fatalf("run %q: %v (stderr: %s)", r.args, err, errb.String())
	}
	return r
}

// run runs roost with args.
func (e *roostEnv) run(args ...string) result {
	e.t.Helper()
	return e.exe(nil, roostBin, args...)
}

// runIn runs roost with args and stdin.
func (e *roostEnv) runIn(stdin io.Reader, args ...string) result {
	e.t.Helper()
	return e.exe(stdin, roostBin, args...)
}

// ok runs roost and fails the test unless it exits 0; it returns stdout.
func (e *roostEnv) ok(args ...string) string {
	e.t.Helper()
	r := e.run(args...)
	if r.code != 0 {
		e.t.Fatalf("want success, got %s", r)
	}
	return r.stdout
}

// fails runs roost, wants exit 125 with exactly one line on stderr and
// nothing on stdout, and returns that line.
func (e *roostEnv) fails(args ...string) string {
	e.t.Helper()
	return e.wantOneLineError(e.run(args...))
}

func (e *roostEnv) wantOneLineError(r result) string {
	e.t.Helper()
	if r.code != 125 {
		e.t.Fatalf("want exit 125, got %s", r)
	}
	line, rest, _ := strings.Cut(r.stderr, "\n")
	if strings.TrimSpace(line) == "" || rest != "" {
		e.t.Fatalf("want exactly one line on stderr, got %s", r)
	}
	return line
}

// importTar imports a tar file under tag and returns the full image ID.
func (e *roostEnv) importTar(tarPath, tag string, extra ...string) string {
	e.t.Helper()
	args := append([]string{"import"}, extra...)
	args = append(args, tarPath)
	if tag != "" {
		args = append(args, tag)
	}
	id := strings.TrimSpace(e.ok(args...))
	if !isImageID(id) {
		e.t.Fatalf("import printed %q, want sha256:<64 hex>", id)
	}
	return id
}

func isImageID(s string) bool {
	h, ok := strings.CutPrefix(s, "sha256:")
	return ok && isHex(h, 64)
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// inspected is the part of `image inspect`'s Docker-shaped JSON the tests check.
type inspected struct {
	ID           string `json:"Id"`
	RepoTags     []string
	RepoDigests  []string
	Created      string
	Comment      string
	Architecture string
	Os           string
	Size         int64
	Config       imageConfig
	RootFS       struct {
		Type   string
		Layers []string
	}
}

// imageConfig is the runtime config Docker, Podman and roost all report.
type imageConfig struct {
	Cmd          []string
	Entrypoint   []string
	Env          []string
	WorkingDir   string
	User         string
	Labels       map[string]string
	ExposedPorts map[string]struct{}
	Volumes      map[string]struct{}
	StopSignal   string
}

func (e *roostEnv) inspect(ref string) inspected {
	e.t.Helper()
	out := e.ok("image", "inspect", ref)
	var got []inspected
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		e.t.Fatalf("image inspect %s: not JSON: %v\n%s", ref, err, out)
	}
	if len(got) != 1 {
		e.t.Fatalf("image inspect %s: want 1 object, got %d", ref, len(got))
	}
	return got[0]
}

// imageIDs lists `images -q --no-trunc`, sorted.
func (e *roostEnv) imageIDs() []string {
	e.t.Helper()
	ids := strings.Fields(e.ok("images", "-q", "--no-trunc"))
	sort.Strings(ids)
	return ids
}

// waitRemovals waits until the agents of --rm containers that went (their
// record is gone, see container.Store.records) have removed their
// directories, which they do just after the command that ran the container
// returned; one still there after 10 s is what the snapshot then shows.
func (e *roostEnv) waitRemovals() {
	e.t.Helper()
	dir := filepath.Join(e.Root, "containers")
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		ents, _ := os.ReadDir(dir)
		removing := false
		for _, d := range ents {
			if _, err := os.Lstat(filepath.Join(dir, d.Name(), "config.json")); d.IsDir() && errors.Is(err, fs.ErrNotExist) {
				removing = true
			}
		}
		if !removing {
			return
		}
	}
}

// snapshot describes every file and non-empty directory under the storage
// root: type, mode, size and content hash, so that two snapshots differ when
// anything the store holds does.
func (e *roostEnv) snapshot() map[string]string {
	e.t.Helper()
	e.waitRemovals()
	snap := map[string]string{}
	err := filepath.WalkDir(e.Root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(e.Root, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			snap[rel] = fmt.Sprintf("dir %v", fi.Mode())
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			snap[rel] = fmt.Sprintf("file %v %d %x", fi.Mode(), fi.Size(), sum)
		default:
			snap[rel] = fmt.Sprintf("other %v", fi.Mode())
		}
		return nil
	})
	if err != nil {
		e.t.Fatalf("snapshot store: %v", err)
	}
	// An empty directory holds nothing: a command may create the layout of
	// a part of the store it only looked at. Until none is left: a
	// directory whose only content was an empty directory is empty too.
	for pruned := true; pruned; {
		pruned = false
		for p, v := range snap {
			if !strings.HasPrefix(v, "dir ") {
				continue
			}
			empty := true
			for q := range snap {
				if strings.HasPrefix(q, p+"/") || p == "." && q != "." {
					empty = false
					break
				}
			}
			if empty {
				delete(snap, p)
				pruned = true
			}
		}
	}
	return snap
}

// wantUnchanged fails when the store differs from before.
func (e *roostEnv) wantUnchanged(before map[string]string) {
	e.t.Helper()
	if d := cmp.Diff(before, e.snapshot()); d != "" {
		e.t.Errorf("store changed (-before +after):\n%s", d)
	}
}

// dirNames lists the names in a directory of the store, sorted.
func (e *roostEnv) dirNames(rel string) []string {
	e.t.Helper()
	ents, err := os.ReadDir(filepath.Join(e.Root, rel))
	if err != nil {
		e.t.Fatalf("list store: %v", err)
	}
	names := []string{}
	for _, d := range ents {
		names = append(names, d.Name())
	}
	return names
}

// entry is one file of a test tar.
type entry struct {
	name     string
	body     string
	mode     int64 // default 0644 for files, 0755 for directories, 0777 for symlinks
	typ      byte  // default tar.TypeReg
	linkname string
	uid, gid int
}

var fixedTime = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// writeTar writes entries as a tar file at p.
func writeTar(t *testing.T, p string, entries []entry) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeTarTo(f, entries); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func writeTarTo(w io.Writer, entries []entry) error {
	tw := tar.NewWriter(w)
	for _, en := range entries {
		h := &tar.Header{
			Name: en.name, Typeflag: en.typ, Mode: en.mode, Linkname: en.linkname,
			Uid: en.uid, Gid: en.gid, ModTime: fixedTime, Format: tar.FormatPAX,
		}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			switch h.Typeflag {
			case tar.TypeDir:
				h.Mode = 0o755
			case tar.TypeSymlink:
				h.Mode = 0o777
			default:
				h.Mode = 0o644
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(en.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := io.WriteString(tw, en.body); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}

// smallTar writes a tiny root filesystem whose content depends on seed.
func smallTar(t *testing.T, p, seed string) {
	t.Helper()
	writeTar(t, p, []entry{
		{name: "etc/", typ: tar.TypeDir},
		{name: "etc/hostname", body: "roost-test\n"},
		{name: "data/", typ: tar.TypeDir},
		{name: "data/seed", body: seed + "\n"},
		{name: "data/link", typ: tar.TypeSymlink, linkname: "seed"},
		{name: "data/script.sh", body: "#!/bin/sh\necho " + seed + "\n", mode: 0o755},
	})
}

// needTool fails the test when a program is missing, naming its package.
func needTool(t *testing.T, prog, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		t.Fatalf("%s is missing (%v): install the Debian package %s (.ci/run does)", prog, err, pkg)
	}
	return p
}

// osRelease is the /etc/os-release of the busybox test image.
const osRelease = "PRETTY_NAME=\"roost test image\"\nNAME=\"roosttest\"\nID=roosttest\n"

// busyboxEntries is a tiny runnable root filesystem, every file owned by root:
// /bin/busybox from busybox-static, a few applet links and /etc/os-release.
func busyboxEntries(t *testing.T) []entry {
	t.Helper()
	bb := "/bin/busybox"
	if _, err := os.Stat(bb); err != nil {
		t.Fatalf("%s is missing: install the Debian package busybox-static (.ci/run does)", bb)
	}
	b, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("\x7fELF")) || bytes.Contains(b, []byte("/lib64/ld-linux")) {
		t.Fatalf("%s is not a static ELF binary: install the Debian package busybox-static", bb)
	}
	es := []entry{
		{name: "bin/", typ: tar.TypeDir},
		{name: "bin/busybox", body: string(b), mode: 0o755},
	}
	for _, applet := range []string{"sh", "cat", "ls", "echo", "true", "env"} {
		es = append(es, entry{name: "bin/" + applet, typ: tar.TypeSymlink, linkname: "busybox"})
	}
	return append(es,
		entry{name: "etc/", typ: tar.TypeDir},
		entry{name: "etc/os-release", body: osRelease},
		entry{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
	)
}

// gzipFile writes a gzip-compressed copy of src to dst.
func gzipFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fileDigest is "sha256:<hex>" of a file's bytes.
func fileDigest(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// tarFile is one regular file, symlink or directory read back from a tar.
type tarFile struct {
	Type     byte
	Mode     int64
	UID, GID int
	Linkname string
	Body     string
}

// readTarBytes reads a (possibly gzip-compressed) tar held in memory.
func readTarBytes(t *testing.T, b []byte) map[string]tarFile {
	t.Helper()
	var r io.Reader = bytes.NewReader(b)
	if bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	}
	files := map[string]tarFile{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("read tar entry %s: %v", h.Name, err)
		}
		name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		files[name] = tarFile{Type: h.Typeflag, Mode: h.Mode & 0o7777, UID: h.Uid, GID: h.Gid, Linkname: h.Linkname, Body: string(body)}
	}
}

// savedImage is what a docker-archive holds for one image.
type savedImage struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// readDockerArchive reads a docker-archive: its manifest.json and every file.
func readDockerArchive(t *testing.T, p string) ([]savedImage, map[string]tarFile) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	files := readTarBytes(t, b)
	mf, ok := files["manifest.json"]
	if !ok {
		t.Fatalf("%s has no manifest.json: not a docker-archive", p)
	}
	var imgs []savedImage
	if err := json.Unmarshal([]byte(mf.Body), &imgs); err != nil {
		t.Fatalf("%s: parse manifest.json: %v", p, err)
	}
	return imgs, files
}

// savedRootfs saves ref as a docker-archive and returns the files of its
// single layer.
func (e *roostEnv) savedRootfs(ref string) map[string]tarFile {
	e.t.Helper()
	out := e.path("saved-" + strings.NewReplacer("/", "_", ":", "_").Replace(ref) + ".tar")
	e.ok("save", "-o", out, ref)
	imgs, files := readDockerArchive(e.t, out)
	if len(imgs) != 1 || len(imgs[0].Layers) != 1 {
		e.t.Fatalf("save %s: want one image with one layer, got %+v", ref, imgs)
	}
	layer, ok := files[strings.TrimPrefix(imgs[0].Layers[0], "./")]
	if !ok {
		e.t.Fatalf("save %s: archive lacks layer %s", ref, imgs[0].Layers[0])
	}
	return readTarBytes(e.t, []byte(layer.Body))
}

// lines splits output into its non-empty lines.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}
