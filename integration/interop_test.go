package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// podmanEnv is rootless Podman with its storage under the test's temp dir,
// the vfs driver (works with or without a subuid range) and runc (crun fails
// on hybrid cgroup hosts).
type podmanEnv struct {
	e    *roostEnv
	bin  string
	glob []string
}

func newPodman(t *testing.T, e *roostEnv) *podmanEnv {
	t.Helper()
	p := &podmanEnv{e: e, bin: needTool(t, "podman", "podman")}
	needTool(t, "runc", "runc")
	conf := filepath.Join(e.ConfigHome, "containers", "containers.conf")
	if err := os.MkdirAll(filepath.Dir(conf), 0o700); err != nil {
		t.Fatal(err)
	}
	cc := "[engine]\nruntime = \"runc\"\nevents_logger = \"file\"\ncgroup_manager = \"cgroupfs\"\n"
	if err := os.WriteFile(conf, []byte(cc), 0o600); err != nil {
		t.Fatal(err)
	}
	root := e.path("podman", "root")
	// Podman refuses a runroot longer than 50 characters; t.TempDir's are.
	runroot, err := os.MkdirTemp("/tmp", "podman-run-")
	if err != nil {
		t.Fatal(err)
	}
	p.glob = []string{"--root", root, "--runroot", runroot, "--storage-driver", "vfs"}
	t.Cleanup(func() {
		// Podman's files may belong to ids of its user namespace; remove them
		// from inside it, then stop the pause process that keeps it alive.
		p.e.exe(nil, p.bin, append(p.glob, "unshare", "rm", "-rf", root, runroot)...)
		if b, err := os.ReadFile(filepath.Join(e.Runtime, "libpod", "tmp", "pause.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		os.RemoveAll(runroot)
	})
	return p
}

func (p *podmanEnv) ok(args ...string) string {
	p.e.t.Helper()
	r := p.e.exe(nil, p.bin, append(append([]string(nil), p.glob...), args...)...)
	if r.code != 0 {
		p.e.t.Fatalf("podman failed: %s", r)
	}
	return r.stdout
}

// podmanInspected is the part of `podman image inspect` compared with roost's.
type podmanInspected struct {
	ID           string `json:"Id"`
	RepoTags     []string
	Architecture string
	Os           string
	Config       imageConfig
	RootFS       struct {
		Type   string
		Layers []string
	}
}

func (p *podmanEnv) inspect(ref string) podmanInspected {
	p.e.t.Helper()
	out := p.ok("image", "inspect", ref)
	var got []podmanInspected
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 {
		p.e.t.Fatalf("podman image inspect %s: want one object, got %v\n%s", ref, err, out)
	}
	return got[0]
}

// loadedName is the image name in `podman load` output ("Loaded image: NAME").
func loadedName(out string) string {
	for _, l := range lines(out) {
		if n, ok := strings.CutPrefix(l, "Loaded image: "); ok {
			return strings.TrimSpace(n)
		}
		if n, ok := strings.CutPrefix(l, "Loaded image(s): "); ok {
			return strings.TrimSpace(strings.Split(n, ",")[0])
		}
	}
	return ""
}

// busyboxImage imports the busybox test image into roost as ref.
func busyboxImage(t *testing.T, e *roostEnv, ref string, changes ...string) string {
	t.Helper()
	writeTar(t, e.path("busybox.tar"), busyboxEntries(t))
	var args []string
	for _, c := range changes {
		args = append(args, "--change", c)
	}
	return e.importTar(e.path("busybox.tar"), ref, args...)
}

// TestRoostSaveThenPodmanRun: roost save → podman load → podman run.
func TestRoostSaveThenPodmanRun(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"docker-archive", "oci-archive"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			e := newRoost(t)
			p := newPodman(t, e)
			id := busyboxImage(t, e, "roosttest/bb:1", "CMD cat /etc/os-release", "ENV ROOST_TEST=yes")
			archive := e.path("bb.tar")
			e.ok("save", "--format", format, "-o", archive, "roosttest/bb:1")

			// Podman names a docker-archive's short name localhost/roosttest/bb:1
			// and an OCI archive's docker.io/roosttest/bb:1; either is right.
			ref := loadedName(p.ok("load", "-i", archive))
			if !strings.HasSuffix(ref, "/roosttest/bb:1") {
				t.Fatalf("podman load loaded %q, want …/roosttest/bb:1", ref)
			}
			pi := p.inspect(ref)
			ri := e.inspect("roosttest/bb:1")
			if pi.ID != strings.TrimPrefix(id, "sha256:") {
				t.Errorf("podman sees image ID %s, roost has %s", pi.ID, id)
			}
			if d := cmp.Diff(ri.RootFS.Layers, pi.RootFS.Layers); d != "" {
				t.Errorf("RootFS.Layers (-roost +podman):\n%s", d)
			}
			if got := p.ok("run", "--rm", "--network", "none", ref, "cat", "/etc/os-release"); got != osRelease {
				t.Errorf("podman run … cat /etc/os-release printed %q, want %q", got, osRelease)
			}
			if got := p.ok("run", "--rm", "--network", "none", ref); got != osRelease {
				t.Errorf("podman run with the image's CMD printed %q, want %q", got, osRelease)
			}
			// Podman now and then loses the output of a container that exits
			// at once; an empty answer is asked again.
			got := ""
			for try := 0; try < 3 && got == ""; try++ {
				got = strings.TrimSpace(p.ok("run", "--rm", "--network", "none", ref, "sh", "-c", "echo $ROOST_TEST"))
			}
			if got != "yes" {
				t.Errorf("the image's ENV inside podman: got %q, want yes", got)
			}
		})
	}
}

// TestPodmanSaveThenRoostLoad: podman save → roost load → roost image inspect
// shows the same Config and the same RootFS.Layers as podman image inspect.
func TestPodmanSaveThenRoostLoad(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	p := newPodman(t, e)
	writeTar(t, e.path("busybox.tar"), busyboxEntries(t))
	p.ok("import", "--change", `CMD ["sh"]`, "--change", "ENV A=1", "--change", "WORKDIR /tmp", e.path("busybox.tar"), "localhost/pm/base:1")
	// A second layer and more config, by a build that runs nothing.
	ctx := e.path("context")
	if err := os.MkdirAll(ctx, 0o755); err != nil {
		t.Fatal(err)
	}
	containerfile := "FROM localhost/pm/base:1\nCOPY hello.txt /srv/hello.txt\nENV B=2\nLABEL org.example.team=roost\nEXPOSE 8080\nUSER 0:0\nENTRYPOINT [\"/bin/sh\", \"-c\"]\nCMD [\"cat /srv/hello.txt\"]\n"
	if err := os.WriteFile(filepath.Join(ctx, "Containerfile"), []byte(containerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctx, "hello.txt"), []byte("hello from podman\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.ok("build", "--network", "none", "-t", "localhost/pm/app:2", ctx)

	for _, tt := range []struct{ format, ref string }{
		{"docker-archive", "localhost/pm/app:2"},
		{"oci-archive", "localhost/pm/app:2"},
		{"docker-archive", "localhost/pm/base:1"},
	} {
		t.Run(tt.format+" "+strings.ReplaceAll(tt.ref, "/", "_"), func(t *testing.T) {
			e2 := newRoost(t) // a fresh store for each archive
			archive := e.path(strings.NewReplacer("/", "_", ":", "_").Replace(tt.format + tt.ref + ".tar"))
			p.ok("save", "--format", tt.format, "-o", archive, tt.ref)
			out := e2.ok("load", "-i", archive)
			pi := p.inspect(tt.ref)
			if tt.format == "docker-archive" && !strings.Contains(out, "Loaded image: "+tt.ref) {
				t.Errorf("roost load printed %q, want 'Loaded image: %s'", out, tt.ref)
			}
			ref := tt.ref
			if tt.format == "oci-archive" {
				// podman's oci-archive names the image in its index; roost
				// loads it under that name, or by ID when it has none.
				ref = "sha256:" + pi.ID
				if strings.Contains(out, "Loaded image: "+tt.ref) {
					ref = tt.ref
				}
			}
			ri := e2.inspect(ref)
			if d := cmp.Diff(pi.Config, ri.Config, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("Config (-podman +roost):\n%s", d)
			}
			if d := cmp.Diff(pi.RootFS.Layers, ri.RootFS.Layers); d != "" {
				t.Errorf("RootFS.Layers (-podman +roost):\n%s", d)
			}
			if ri.ID != "sha256:"+pi.ID {
				t.Errorf("roost's image ID %s, podman's %s", ri.ID, pi.ID)
			}
			if ri.Architecture != pi.Architecture || ri.Os != pi.Os {
				t.Errorf("platform: roost %s/%s, podman %s/%s", ri.Os, ri.Architecture, pi.Os, pi.Architecture)
			}
			// What roost loaded it can save again, and podman loads that.
			e2.ok("save", "-o", e2.path("again.tar"), ref)
			p2 := newPodman(t, e2)
			p2.ok("load", "-i", e2.path("again.tar"))
			if got := p2.inspect("sha256:" + pi.ID); !cmp.Equal(got.RootFS.Layers, pi.RootFS.Layers) {
				t.Errorf("after roost load → roost save → podman load, layers %q, want %q", got.RootFS.Layers, pi.RootFS.Layers)
			}
		})
	}
	if t.Failed() {
		return
	}
	// The two-layer image runs as podman built it after the round trip.
	e3 := newRoost(t)
	p.ok("save", "-o", e.path("app.tar"), "localhost/pm/app:2")
	e3.ok("load", "-i", e.path("app.tar"))
	e3.ok("save", "-o", e3.path("app-roost.tar"), "localhost/pm/app:2")
	p3 := newPodman(t, e3)
	p3.ok("load", "-i", e3.path("app-roost.tar"))
	if got := p3.ok("run", "--rm", "--network", "none", "localhost/pm/app:2"); got != "hello from podman\n" {
		t.Errorf("podman run after a roost round trip printed %q", got)
	}
}

// skopeo runs skopeo with a permissive signature policy.
func skopeo(t *testing.T, e *roostEnv, args ...string) string {
	t.Helper()
	bin := needTool(t, "skopeo", "skopeo")
	r := e.exe(nil, bin, append([]string{"--insecure-policy"}, args...)...)
	if r.code != 0 {
		t.Fatalf("skopeo failed: %s", r)
	}
	return r.stdout
}

// skopeoInspected is the part of `skopeo inspect` the tests compare.
type skopeoInspected struct {
	Digest       string
	Architecture string
	Os           string
	Layers       []string
	Env          []string
}

func TestSkopeoRoundTrip(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	id := busyboxImage(t, e, "roosttest/bb:1", `CMD ["sh"]`, "ENV A=1")
	ri := e.inspect("roosttest/bb:1")
	e.ok("save", "--format", "oci-archive", "-o", e.path("roost.oci.tar"), "roosttest/bb:1")
	e.ok("save", "-o", e.path("roost.docker.tar"), "roosttest/bb:1")

	// skopeo reads both archives roost writes.
	for _, src := range []string{"oci-archive:" + e.path("roost.oci.tar"), "docker-archive:" + e.path("roost.docker.tar")} {
		var si skopeoInspected
		out := skopeo(t, e, "inspect", src)
		if err := json.Unmarshal([]byte(out), &si); err != nil {
			t.Fatalf("skopeo inspect %s: %v\n%s", src, err, out)
		}
		if si.Os != "linux" || si.Architecture != ri.Architecture || len(si.Layers) != 1 || !cmp.Equal(si.Env, []string{"A=1"}) {
			t.Errorf("skopeo inspect %s = %+v, want linux/%s, one layer, Env [A=1]", src, si, ri.Architecture)
		}
		cfg := skopeo(t, e, "inspect", "--config", src)
		var c struct {
			RootFS struct {
				DiffIDs []string `json:"diff_ids"`
			} `json:"rootfs"`
		}
		if err := json.Unmarshal([]byte(cfg), &c); err != nil || !cmp.Equal(c.RootFS.DiffIDs, ri.RootFS.Layers) {
			t.Errorf("skopeo inspect --config %s: diff_ids %q (%v), want %q", src, c.RootFS.DiffIDs, err, ri.RootFS.Layers)
		}
		dir := e.path("dir-" + strings.SplitN(src, ":", 2)[0])
		skopeo(t, e, "copy", src, "dir:"+dir)
		if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err != nil {
			t.Errorf("skopeo copy %s dir:%s wrote no manifest.json: %v", src, dir, err)
		}
	}

	// skopeo copies roost's OCI archive to another; roost loads that, under
	// the name skopeo gave it or by ID.
	tests := []struct {
		name, src, dst, wantRef string
		// sameID: skopeo copies the config byte for byte. Converting a
		// docker-archive to OCI re-encodes it, so the ID changes there.
		sameID bool
	}{
		{"oci to oci, unnamed", "oci-archive:" + e.path("roost.oci.tar"), "oci-archive:" + e.path("copy1.tar"), "", true},
		{"oci to oci, named", "oci-archive:" + e.path("roost.oci.tar"), "oci-archive:" + e.path("copy2.tar") + ":roosttest/copied:2", "roosttest/copied:2", true},
		{"docker to oci", "docker-archive:" + e.path("roost.docker.tar"), "oci-archive:" + e.path("copy3.tar") + ":localhost/from/docker:3", "localhost/from/docker:3", false},
		{"oci to docker", "oci-archive:" + e.path("roost.oci.tar"), "docker-archive:" + e.path("copy4.tar") + ":roosttest/docker:4", "roosttest/docker:4", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e2 := newRoost(t)
			skopeo(t, e, "copy", tt.src, tt.dst)
			file := strings.SplitN(tt.dst, ":", 3)[1]
			out := e2.ok("load", "-i", file)
			ref := id
			if tt.wantRef != "" {
				ref = tt.wantRef
				if !strings.Contains(out, "Loaded image: "+tt.wantRef) {
					t.Errorf("roost load printed %q, want 'Loaded image: %s'", out, tt.wantRef)
				}
			}
			got := e2.inspect(ref)
			if tt.sameID && got.ID != id {
				t.Errorf("after skopeo copy and roost load the image ID is %s, want %s", got.ID, id)
			}
			if d := cmp.Diff(ri.RootFS.Layers, got.RootFS.Layers); d != "" {
				t.Errorf("RootFS.Layers (-before +after):\n%s", d)
			}
			if d := cmp.Diff(ri.Config, got.Config); d != "" {
				t.Errorf("Config (-before +after):\n%s", d)
			}
			// And back: roost saves it as an OCI archive skopeo reads.
			e2.ok("save", "--format", "oci-archive", "-o", e2.path("back.tar"), ref)
			var si skopeoInspected
			if err := json.Unmarshal([]byte(skopeo(t, e2, "inspect", "oci-archive:"+e2.path("back.tar"))), &si); err != nil || len(si.Layers) != 1 {
				t.Errorf("skopeo inspect of roost's re-saved archive: %+v, %v", si, err)
			}
		})
	}
	// Several images in one OCI archive.
	smallTar(t, e.path("small.tar"), "small")
	e.importTar(e.path("small.tar"), "roosttest/small:1")
	e.ok("save", "--format", "oci-archive", "-o", e.path("two.oci.tar"), "roosttest/bb:1", "roosttest/small:1")
	e4 := newRoost(t)
	out := lines(e4.ok("load", "-i", e.path("two.oci.tar")))
	sort.Strings(out)
	if want := []string{"Loaded image: roosttest/bb:1", "Loaded image: roosttest/small:1"}; !cmp.Equal(out, want) {
		t.Errorf("roost load of a two-image OCI archive printed %q, want %q", out, want)
	}
}
