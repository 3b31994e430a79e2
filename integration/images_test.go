package integration

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// wantRootfs is the content of smallTar(…, "hello") as a saved layer shows it.
func wantRootfs(seed string, uid int) map[string]tarFile {
	return map[string]tarFile{
		"etc":            {Type: tar.TypeDir, Mode: 0o755, UID: uid, GID: uid},
		"etc/hostname":   {Type: tar.TypeReg, Mode: 0o644, UID: uid, GID: uid, Body: "roost-test\n"},
		"data":           {Type: tar.TypeDir, Mode: 0o755, UID: uid, GID: uid},
		"data/seed":      {Type: tar.TypeReg, Mode: 0o644, UID: uid, GID: uid, Body: seed + "\n"},
		"data/link":      {Type: tar.TypeSymlink, Mode: 0o777, UID: uid, GID: uid, Linkname: "seed"},
		"data/script.sh": {Type: tar.TypeReg, Mode: 0o755, UID: uid, GID: uid, Body: "#!/bin/sh\necho " + seed + "\n"},
	}
}

// TestImportSources imports the same root filesystem from each kind of
// source and checks the stored layer holds exactly its files.
func TestImportSources(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// prepare makes the source and returns the import argument and stdin.
		prepare func(t *testing.T, e *roostEnv) (arg string, stdin []byte)
		// sameDiffID: the layer's diff ID is the source file's sha256.
		sameDiffID bool
	}{
		{name: "tar file", sameDiffID: true, prepare: func(t *testing.T, e *roostEnv) (string, []byte) {
			p := e.path("rootfs.tar")
			smallTar(t, p, "hello")
			return p, nil
		}},
		{name: "gzip tar file", prepare: func(t *testing.T, e *roostEnv) (string, []byte) {
			smallTar(t, e.path("rootfs.tar"), "hello")
			gzipFile(t, e.path("rootfs.tar"), e.path("rootfs.tar.gz"))
			return e.path("rootfs.tar.gz"), nil
		}},
		{name: "stdin", prepare: func(t *testing.T, e *roostEnv) (string, []byte) {
			smallTar(t, e.path("rootfs.tar"), "hello")
			b, err := os.ReadFile(e.path("rootfs.tar"))
			if err != nil {
				t.Fatal(err)
			}
			return "-", b
		}},
		{name: "gzip stdin", prepare: func(t *testing.T, e *roostEnv) (string, []byte) {
			smallTar(t, e.path("rootfs.tar"), "hello")
			gzipFile(t, e.path("rootfs.tar"), e.path("rootfs.tar.gz"))
			b, err := os.ReadFile(e.path("rootfs.tar.gz"))
			if err != nil {
				t.Fatal(err)
			}
			return "-", b
		}},
		{name: "directory", prepare: func(t *testing.T, e *roostEnv) (string, []byte) {
			dir := e.path("rootfs")
			for _, f := range []struct {
				name, body string
				mode       os.FileMode
			}{
				{"etc/hostname", "roost-test\n", 0o644},
				{"data/seed", "hello\n", 0o644},
				{"data/script.sh", "#!/bin/sh\necho hello\n", 0o755},
			} {
				p := filepath.Join(dir, f.name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(f.body), f.mode); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(p, f.mode); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Symlink("seed", filepath.Join(dir, "data/link")); err != nil {
				t.Fatal(err)
			}
			for _, d := range []string{dir, filepath.Join(dir, "etc"), filepath.Join(dir, "data")} {
				if err := os.Chmod(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			return dir, nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newRoost(t)
			arg, stdin := tt.prepare(t, e)
			r := e.runIn(bytes.NewReader(stdin), "import", arg, "myimg:1.0")
			if r.code != 0 {
				t.Fatalf("want success, got %s", r)
			}
			id := strings.TrimSpace(r.stdout)
			if !isImageID(id) {
				t.Fatalf("import printed %q, want the image ID", r.stdout)
			}
			got := e.savedRootfs("myimg:1.0")
			delete(got, ".")
			delete(got, "")
			// Files the importing user owns become root's, as in a rootless container.
			if d := cmp.Diff(wantRootfs("hello", 0), got); d != "" {
				t.Errorf("layer content (-want +got):\n%s", d)
			}
			img := e.inspect("myimg:1.0")
			if img.ID != id {
				t.Errorf("inspect Id = %s, import printed %s", img.ID, id)
			}
			if len(img.RootFS.Layers) != 1 {
				t.Fatalf("RootFS.Layers = %v, want one layer", img.RootFS.Layers)
			}
			if tt.sameDiffID {
				if want := fileDigest(t, arg); img.RootFS.Layers[0] != want {
					t.Errorf("diff ID = %s, want the tar's sha256 %s", img.RootFS.Layers[0], want)
				}
			}
		})
	}
}

// TestImportChanges checks --change (docker import -c) and --message.
func TestImportChanges(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		changes []string
		want    imageConfig
	}{
		{name: "none", want: imageConfig{}},
		{name: "cmd exec form", changes: []string{`CMD ["sh"]`}, want: imageConfig{Cmd: []string{"sh"}}},
		// Docker takes JSON with commas in one -c value; a comma must not split it.
		{name: "cmd exec form with arguments", changes: []string{`CMD ["cat", "/etc/os-release"]`}, want: imageConfig{Cmd: []string{"cat", "/etc/os-release"}}},
		{name: "label with comma", changes: []string{`LABEL desc="a, b"`}, want: imageConfig{Labels: map[string]string{"desc": "a, b"}}},
		{name: "cmd shell form", changes: []string{`CMD echo hi`}, want: imageConfig{Cmd: []string{"/bin/sh", "-c", "echo hi"}}},
		{name: "env", changes: []string{`ENV A=1`}, want: imageConfig{Env: []string{"A=1"}}},
		{name: "env twice", changes: []string{`ENV A=1`, `ENV B="two words"`, `ENV A=3`}, want: imageConfig{Env: []string{"A=3", "B=two words"}}},
		{name: "everything", changes: []string{
			`ENTRYPOINT ["/bin/busybox"]`, `CMD ["sh"]`, `ENV A=1`, `WORKDIR /data`, `USER 1000:1000`,
			`LABEL org.example.team=roost`, `EXPOSE 8080`, `EXPOSE 53/udp`, `VOLUME /var/lib/x`, `STOPSIGNAL SIGINT`,
		}, want: imageConfig{
			Entrypoint: []string{"/bin/busybox"}, Cmd: []string{"sh"}, Env: []string{"A=1"}, WorkingDir: "/data",
			User: "1000:1000", Labels: map[string]string{"org.example.team": "roost"},
			ExposedPorts: map[string]struct{}{"8080/tcp": {}, "53/udp": {}}, Volumes: map[string]struct{}{"/var/lib/x": {}},
			StopSignal: "SIGINT",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newRoost(t)
			smallTar(t, e.path("rootfs.tar"), "hello")
			var args []string
			for _, c := range tt.changes {
				args = append(args, "--change", c)
			}
			e.importTar(e.path("rootfs.tar"), "myimg:1.0", args...)
			got := e.inspect("myimg:1.0").Config
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("Config (-want +got):\n%s", d)
			}
		})
	}
	t.Run("message", func(t *testing.T) {
		t.Parallel()
		e := newRoost(t)
		smallTar(t, e.path("rootfs.tar"), "hello")
		e.importTar(e.path("rootfs.tar"), "myimg:1.0", "-m", "nightly root filesystem")
		if got := e.inspect("myimg:1.0").Comment; got != "nightly root filesystem" {
			t.Errorf("Comment = %q, want the -m message", got)
		}
	})
	t.Run("bad change", func(t *testing.T) {
		t.Parallel()
		e := newRoost(t)
		smallTar(t, e.path("rootfs.tar"), "hello")
		e.importTar(e.path("rootfs.tar"), "base:1")
		before := e.snapshot()
		msg := e.fails("import", "--change", "RUN rm -rf /", e.path("rootfs.tar"), "myimg:1.0")
		if !strings.Contains(msg, "RUN") {
			t.Errorf("error %q does not name the instruction", msg)
		}
		e.wantUnchanged(before)
	})
}

// columns splits a table line at runs of two or more spaces.
func columns(line string) []string {
	return regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(line), -1)
}

var (
	shortIDRe  = regexp.MustCompile(`^[0-9a-f]{12}$`)
	createdRe  = regexp.MustCompile(`^(Less than a second|About a minute|\d+ (second|seconds|minutes)) ago$`)
	humanSzRe  = regexp.MustCompile(`^\d+(\.\d+)?(B|kB|MB|GB)$`)
	fullIDRe   = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	digestColR = regexp.MustCompile(`^(<none>|sha256:[0-9a-f]{64})$`)
)

// listingFixture is a store with two tagged images and one dangling image.
type listingFixture struct {
	e                       *roostEnv
	myimg, other, dangling  string // image IDs
	myimgSize, danglingSize int64
}

func newListingFixture(t *testing.T) *listingFixture {
	t.Helper()
	e := newRoost(t)
	f := &listingFixture{e: e}
	for _, s := range []string{"one", "two", "three"} {
		smallTar(t, e.path(s+".tar"), s)
	}
	f.myimg = e.importTar(e.path("one.tar"), "myimg:1.0")
	f.other = e.importTar(e.path("two.tar"), "other/app:latest")
	f.dangling = e.importTar(e.path("three.tar"), "")
	return f
}

func TestImagesListing(t *testing.T) {
	t.Parallel()
	f := newListingFixture(t)
	e := f.e
	short := func(id string) string { return strings.TrimPrefix(id, "sha256:")[:12] }

	t.Run("table", func(t *testing.T) {
		for _, args := range [][]string{{"images"}, {"image", "ls"}, {"image", "list"}} {
			out := lines(e.ok(args...))
			if len(out) != 4 {
				t.Fatalf("%v: want a header and 3 rows, got:\n%s", args, strings.Join(out, "\n"))
			}
			if got, want := columns(out[0]), []string{"REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"}; !cmp.Equal(got, want) {
				t.Errorf("%v header = %q, want %q", args, got, want)
			}
			rows := map[string][]string{}
			for _, l := range out[1:] {
				c := columns(l)
				if len(c) != 5 {
					t.Fatalf("%v: row %q has %d columns, want 5", args, l, len(c))
				}
				if !shortIDRe.MatchString(c[2]) || !createdRe.MatchString(c[3]) || !humanSzRe.MatchString(c[4]) {
					t.Errorf("%v: row %q: want a 12-hex ID, a CREATED like '5 seconds ago' and a size like '10.2kB'", args, l)
				}
				rows[c[0]+":"+c[1]] = c
			}
			for ref, id := range map[string]string{"myimg:1.0": f.myimg, "other/app:latest": f.other, "<none>:<none>": f.dangling} {
				if rows[ref] == nil || rows[ref][2] != short(id) {
					t.Errorf("%v: want row %s with ID %s, got rows %q", args, ref, short(id), rows)
				}
			}
		}
	})
	t.Run("quiet", func(t *testing.T) {
		got := strings.Fields(e.ok("images", "-q"))
		sort.Strings(got)
		want := []string{short(f.myimg), short(f.other), short(f.dangling)}
		sort.Strings(want)
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("images -q (-want +got):\n%s", d)
		}
	})
	t.Run("no-trunc", func(t *testing.T) {
		out := lines(e.ok("images", "--no-trunc"))
		found := 0
		for _, l := range out[1:] {
			c := columns(l)
			if !fullIDRe.MatchString(c[2]) {
				t.Errorf("row %q: IMAGE ID is not sha256:<64 hex>", l)
			}
			if c[2] == f.myimg || c[2] == f.other || c[2] == f.dangling {
				found++
			}
		}
		if found != 3 {
			t.Errorf("--no-trunc lists %d of the 3 full IDs:\n%s", found, strings.Join(out, "\n"))
		}
		got := strings.Fields(e.ok("images", "-q", "--no-trunc"))
		sort.Strings(got)
		want := []string{f.myimg, f.other, f.dangling}
		sort.Strings(want)
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("images -q --no-trunc (-want +got):\n%s", d)
		}
	})
	t.Run("digests", func(t *testing.T) {
		out := lines(e.ok("images", "--digests"))
		if got, want := columns(out[0]), []string{"REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"}; !cmp.Equal(got, want) {
			t.Errorf("header = %q, want %q", got, want)
		}
		for _, l := range out[1:] {
			if c := columns(l); len(c) != 6 || !digestColR.MatchString(c[2]) || !shortIDRe.MatchString(c[3]) {
				t.Errorf("row %q: want 6 columns with DIGEST <none> or sha256:…", l)
			}
		}
		got := lines(e.ok("images", "--digests", "--format", "{{.Repository}}:{{.Tag}}"))
		sort.Strings(got)
		if want := []string{"<none>:<none>", "myimg:1.0", "other/app:latest"}; !cmp.Equal(got, want) {
			t.Errorf("--digests --format = %q, want %q", got, want)
		}
	})
	filters := []struct {
		name string
		args []string
		want []string // Repository:Tag
	}{
		{"dangling=true", []string{"--filter", "dangling=true"}, []string{"<none>:<none>"}},
		{"dangling=false", []string{"--filter", "dangling=false"}, []string{"myimg:1.0", "other/app:latest"}},
		{"reference exact", []string{"--filter", "reference=myimg"}, []string{"myimg:1.0"}},
		{"reference with tag", []string{"--filter", "reference=myimg:1.0"}, []string{"myimg:1.0"}},
		{"reference glob", []string{"--filter", "reference=other/*"}, []string{"other/app:latest"}},
		{"reference no match", []string{"--filter", "reference=nothing*"}, nil},
		{"positional repository", []string{"myimg"}, []string{"myimg:1.0"}},
		{"short flag", []string{"-f", "dangling=true"}, []string{"<none>:<none>"}},
		{"all", []string{"-a"}, []string{"<none>:<none>", "myimg:1.0", "other/app:latest"}},
	}
	for _, ft := range filters {
		t.Run("filter "+ft.name, func(t *testing.T) {
			args := append([]string{"images", "--format", "{{.Repository}}:{{.Tag}}"}, ft.args...)
			got := lines(e.ok(args...))
			sort.Strings(got)
			if d := cmp.Diff(ft.want, got); d != "" {
				t.Errorf("%v (-want +got):\n%s", args, d)
			}
		})
	}
	t.Run("bad filter", func(t *testing.T) {
		e.fails("images", "--filter", "colour=blue")
	})
	t.Run("format template", func(t *testing.T) {
		got := lines(e.ok("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"))
		sort.Strings(got)
		want := []string{"<none>:<none> " + short(f.dangling), "myimg:1.0 " + short(f.myimg), "other/app:latest " + short(f.other)}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("--format (-want +got):\n%s", d)
		}
		got = lines(e.ok("images", "--format", "table {{.Repository}}\t{{.Tag}}"))
		if len(got) != 4 || !cmp.Equal(columns(got[0]), []string{"REPOSITORY", "TAG"}) {
			t.Errorf("--format 'table …' = %q, want a REPOSITORY TAG header and 3 rows", got)
		}
	})
	t.Run("format json", func(t *testing.T) {
		out := lines(e.ok("images", "--format", "json"))
		if len(out) != 3 {
			t.Fatalf("--format json: want 3 lines, got %q", out)
		}
		got := map[string]string{}
		for _, l := range out {
			var row map[string]any
			if err := json.Unmarshal([]byte(l), &row); err != nil {
				t.Fatalf("--format json line %q: %v", l, err)
			}
			for _, k := range []string{"Repository", "Tag", "ID", "CreatedSince", "CreatedAt", "Size", "Digest"} {
				if _, ok := row[k]; !ok {
					t.Errorf("--format json line %q lacks %s", l, k)
				}
			}
			got[row["Repository"].(string)+":"+row["Tag"].(string)], _ = row["ID"].(string)
		}
		want := map[string]string{"myimg:1.0": short(f.myimg), "other/app:latest": short(f.other), "<none>:<none>": short(f.dangling)}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("--format json (-want +got):\n%s", d)
		}
	})
}

func TestImageInspect(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	smallTar(t, e.path("rootfs.tar"), "hello")
	start := time.Now()
	id := e.importTar(e.path("rootfs.tar"), "myimg:1.0", "--change", `CMD ["sh"]`, "--change", "ENV A=1")

	img := e.inspect("myimg:1.0")
	fi, err := os.Stat(e.path("rootfs.tar"))
	if err != nil {
		t.Fatal(err)
	}
	created, err := time.Parse(time.RFC3339Nano, img.Created)
	if err != nil {
		t.Errorf("Created %q is not RFC 3339: %v", img.Created, err)
	} else if created.Before(start.Add(-time.Minute)) || created.After(time.Now().Add(time.Minute)) {
		t.Errorf("Created = %s, want about now (%s)", created, start)
	}
	want := inspected{
		ID:           id,
		RepoTags:     []string{"myimg:1.0"},
		RepoDigests:  []string{},
		Created:      img.Created,
		Comment:      img.Comment,
		Architecture: runtime.GOARCH,
		Os:           "linux",
		Size:         fi.Size(),
		Config:       imageConfig{Cmd: []string{"sh"}, Env: []string{"A=1"}},
	}
	want.RootFS.Type = "layers"
	want.RootFS.Layers = []string{fileDigest(t, e.path("rootfs.tar"))}
	if d := cmp.Diff(want, img); d != "" {
		t.Errorf("image inspect (-want +got):\n%s", d)
	}

	for _, ref := range []string{id, strings.TrimPrefix(id, "sha256:"), strings.TrimPrefix(id, "sha256:")[:12], "docker.io/library/myimg:1.0"} {
		if got := e.inspect(ref); got.ID != id {
			t.Errorf("image inspect %s: Id = %s, want %s", ref, got.ID, id)
		}
	}
	raw := e.ok("image", "inspect", "myimg:1.0")
	if got := e.ok("inspect", "myimg:1.0"); got != raw {
		t.Errorf("roost inspect differs from roost image inspect:\n%s", cmp.Diff(raw, got))
	}
	if got := e.ok("inspect", "--type", "image", "myimg:1.0"); got != raw {
		t.Errorf("roost inspect --type image differs from roost image inspect")
	}
	formats := []struct{ format, want string }{
		{"{{.Id}}", id},
		{"{{json .Config.Cmd}}", `["sh"]`},
		{"{{index .Config.Env 0}}", "A=1"},
		{"{{.Os}}/{{.Architecture}}", "linux/" + runtime.GOARCH},
		{"{{json .RepoTags}}", `["myimg:1.0"]`},
		{"{{len .RootFS.Layers}}", "1"},
	}
	for _, f := range formats {
		for _, cmd := range [][]string{{"image", "inspect"}, {"inspect"}} {
			args := append(cmd, "--format", f.format, "myimg:1.0")
			if got := strings.TrimSpace(e.ok(args...)); got != f.want {
				t.Errorf("%v = %q, want %q", args, got, f.want)
			}
		}
	}
	if got := strings.TrimSpace(e.ok("image", "inspect", "-f", "{{.Id}}", "myimg:1.0")); got != id {
		t.Errorf("image inspect -f = %q, want %q", got, id)
	}
	// Several images: one JSON array.
	e.ok("tag", "myimg:1.0", "second:2")
	var two []inspected
	if err := json.Unmarshal([]byte(e.ok("image", "inspect", "myimg:1.0", "second:2")), &two); err != nil || len(two) != 2 {
		t.Errorf("image inspect of two images: want a JSON array of 2, got %d (%v)", len(two), err)
	}
}

func TestHistory(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	smallTar(t, e.path("rootfs.tar"), "hello")
	id := e.importTar(e.path("rootfs.tar"), "myimg:1.0", "-m", "nightly build")
	out := lines(e.ok("history", "myimg:1.0"))
	if len(out) != 2 {
		t.Fatalf("history: want a header and one row, got:\n%s", strings.Join(out, "\n"))
	}
	if got, want := columns(out[0]), []string{"IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"}; !cmp.Equal(got, want) {
		t.Errorf("header = %q, want %q", got, want)
	}
	row := out[1]
	if !strings.HasPrefix(row, strings.TrimPrefix(id, "sha256:")[:12]) || !strings.Contains(row, "nightly build") || !regexp.MustCompile(`\d+(\.\d+)?kB`).MatchString(row) {
		t.Errorf("history row %q: want the short ID, a size in kB and the comment", row)
	}
	got := strings.TrimSpace(e.ok("image", "history", "--no-trunc", "--format", "{{.ID}}|{{.Comment}}", "myimg:1.0"))
	if want := id + "|nightly build"; got != want {
		t.Errorf("image history --format = %q, want %q", got, want)
	}
	if got := strings.TrimSpace(e.ok("history", "-q", "myimg:1.0")); got != strings.TrimPrefix(id, "sha256:")[:12] {
		t.Errorf("history -q = %q, want the short ID", got)
	}
}

func TestTag(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	smallTar(t, e.path("rootfs.tar"), "hello")
	id := e.importTar(e.path("rootfs.tar"), "myimg:1.0")
	e.ok("tag", "myimg:1.0", "registry.example:5000/team/myimg:latest")
	e.ok("image", "tag", id, "myimg")       // by ID, default tag latest
	e.ok("tag", "myimg", "docker.io/x/y:z") // by the new tag
	got := lines(e.ok("images", "--format", "{{.Repository}} {{.Tag}} {{.ID}}"))
	sort.Strings(got)
	short := strings.TrimPrefix(id, "sha256:")[:12]
	want := []string{"myimg 1.0 " + short, "myimg latest " + short, "registry.example:5000/team/myimg latest " + short, "x/y z " + short}
	sort.Strings(want)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("images after tag (-want +got):\n%s", d)
	}
	img := e.inspect("registry.example:5000/team/myimg:latest")
	wantTags := []string{"myimg:1.0", "myimg:latest", "registry.example:5000/team/myimg:latest", "x/y:z"}
	gotTags := append([]string(nil), img.RepoTags...)
	sort.Strings(gotTags)
	if img.ID != id || !cmp.Equal(wantTags, gotTags) {
		t.Errorf("inspect: Id %s RepoTags %q, want %s %q", img.ID, gotTags, id, wantTags)
	}
	if got := strings.Fields(e.ok("images", "-q")); len(got) != 1 {
		t.Errorf("images -q = %q, want one ID for one image with four tags", got)
	}
	// Moving a tag to another image.
	smallTar(t, e.path("two.tar"), "two")
	id2 := e.importTar(e.path("two.tar"), "")
	e.ok("tag", id2, "myimg:latest")
	if got := e.inspect("myimg:latest").ID; got != id2 {
		t.Errorf("after re-tagging, myimg:latest is %s, want %s", got, id2)
	}
}

func TestRemove(t *testing.T) {
	t.Parallel()
	t.Run("untag while tags remain, then id needs force", func(t *testing.T) {
		t.Parallel()
		e := newRoost(t)
		smallTar(t, e.path("rootfs.tar"), "hello")
		id := e.importTar(e.path("rootfs.tar"), "a:1")
		e.ok("tag", "a:1", "b:2")
		e.ok("tag", "a:1", "c:3")
		layers := e.dirNames("layers")

		if got := strings.TrimSpace(e.ok("rmi", "a:1")); got != "Untagged: a:1" {
			t.Errorf("rmi a:1 printed %q, want %q", got, "Untagged: a:1")
		}
		if got := e.imageIDs(); !cmp.Equal(got, []string{id}) {
			t.Errorf("after untagging, images = %q, want %q", got, id)
		}
		if got := e.dirNames("layers"); !cmp.Equal(got, layers) {
			t.Errorf("untagging changed layers/: %q -> %q", layers, got)
		}
		e.fails("image", "inspect", "a:1")

		before := e.snapshot()
		msg := e.fails("rmi", strings.TrimPrefix(id, "sha256:")[:12])
		if !strings.Contains(msg, "-f") {
			t.Errorf("error %q should say that -f removes it", msg)
		}
		e.wantUnchanged(before)

		out := lines(e.ok("image", "rm", "-f", strings.TrimPrefix(id, "sha256:")[:12]))
		sort.Strings(out)
		want := []string{"Deleted: " + id, "Untagged: b:2", "Untagged: c:3"}
		if d := cmp.Diff(want, out); d != "" {
			t.Errorf("image rm -f output (-want +got):\n%s", d)
		}
		if got := e.imageIDs(); len(got) != 0 {
			t.Errorf("images after rm -f = %q, want none", got)
		}
		if got := e.dirNames("layers"); len(got) != 0 {
			t.Errorf("layers/ after removing the only image = %q, want empty", got)
		}
		if got := e.dirNames("blobs/sha256"); len(got) != 0 {
			t.Errorf("blobs/sha256/ after removing the only image = %q, want empty", got)
		}
	})
	t.Run("last tag removes layers", func(t *testing.T) {
		t.Parallel()
		e := newRoost(t)
		smallTar(t, e.path("rootfs.tar"), "hello")
		id := e.importTar(e.path("rootfs.tar"), "solo:1")
		if got := e.dirNames("layers"); len(got) != 1 {
			t.Fatalf("layers/ after one import = %q, want one layer", got)
		}
		out := lines(e.ok("rmi", "solo:1"))
		if want := []string{"Untagged: solo:1", "Deleted: " + id}; !cmp.Equal(out, want) {
			t.Errorf("rmi solo:1 printed %q, want %q", out, want)
		}
		for _, d := range []string{"layers", "blobs/sha256", "tmp"} {
			if got := e.dirNames(d); len(got) != 0 {
				t.Errorf("%s/ after removing the last tag = %q, want empty", d, got)
			}
		}
	})
	t.Run("shared layer stays while an image uses it", func(t *testing.T) {
		t.Parallel()
		e := newRoost(t)
		smallTar(t, e.path("rootfs.tar"), "hello")
		// Same layer, different configs: two images.
		id1 := e.importTar(e.path("rootfs.tar"), "one:1", "--change", `CMD ["one"]`)
		id2 := e.importTar(e.path("rootfs.tar"), "two:1", "--change", `CMD ["two"]`)
		if id1 == id2 {
			t.Fatal("two imports with different --change gave the same image ID")
		}
		layers := e.dirNames("layers")
		if len(layers) != 1 {
			t.Fatalf("layers/ = %q, want the one shared layer", layers)
		}
		e.ok("rmi", "one:1")
		if got := e.dirNames("layers"); !cmp.Equal(got, layers) {
			t.Errorf("removing one:1 removed the layer two:1 uses: %q -> %q", layers, got)
		}
		e.ok("save", "-o", e.path("two.tar"), "two:1")
		e.ok("rmi", id2)
		if got := e.dirNames("layers"); len(got) != 0 {
			t.Errorf("layers/ after removing both images = %q, want empty", got)
		}
	})
	t.Run("several at once", func(t *testing.T) {
		t.Parallel()
		e := newRoost(t)
		smallTar(t, e.path("a.tar"), "a")
		smallTar(t, e.path("b.tar"), "b")
		e.importTar(e.path("a.tar"), "a:1")
		e.importTar(e.path("b.tar"), "b:1")
		r := e.run("rmi", "a:1", "nope:1", "b:1")
		if r.code != 125 || !strings.Contains(r.stderr, "nope:1") || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("rmi with one unknown image: want exit 125 and one line naming it, got %s", r)
		}
		if got := e.imageIDs(); len(got) != 0 {
			t.Errorf("rmi removes the images it finds: images = %q, want none", got)
		}
	})
}

func TestImagePrune(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	for _, s := range []string{"keep", "dangling", "other"} {
		smallTar(t, e.path(s+".tar"), s)
	}
	keep := e.importTar(e.path("keep.tar"), "keep:1")
	dangling := e.importTar(e.path("dangling.tar"), "")
	other := e.importTar(e.path("other.tar"), "other:1")
	e.ok("tag", "other:1", "other:2")
	e.ok("rmi", "other:1")

	// Without -f it asks; anything but y keeps everything.
	before := e.snapshot()
	r := e.runIn(strings.NewReader("n\n"), "image", "prune")
	if r.code != 0 || !strings.Contains(r.stdout, "WARNING") {
		t.Errorf("image prune answered n: want exit 0 after a WARNING prompt, got %s", r)
	}
	e.wantUnchanged(before)

	out := e.ok("image", "prune", "-f")
	if !strings.Contains(out, "deleted: "+dangling) || strings.Contains(out, keep) || strings.Contains(out, other) || !strings.Contains(out, "Total reclaimed space:") {
		t.Errorf("image prune -f printed:\n%s\nwant only the dangling image %s deleted and the reclaimed space", out, dangling)
	}
	want := []string{keep, other}
	sort.Strings(want)
	if got := e.imageIDs(); !cmp.Equal(got, want) {
		t.Errorf("images after prune = %q, want %q", got, want)
	}
	if got := e.dirNames("layers"); len(got) != 2 {
		t.Errorf("layers/ after prune = %q, want the 2 layers of the tagged images", got)
	}
	e.ok("image", "prune", "-a", "-f")
	if got := e.imageIDs(); len(got) != 0 {
		t.Errorf("images after prune -a -f = %q, want none", got)
	}
	for _, d := range []string{"layers", "blobs/sha256", "tmp"} {
		if got := e.dirNames(d); len(got) != 0 {
			t.Errorf("%s/ after prune -a -f = %q, want empty", d, got)
		}
	}
}

func TestSystemDF(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	smallTar(t, e.path("a.tar"), "a")
	smallTar(t, e.path("b.tar"), "b")
	e.importTar(e.path("a.tar"), "a:1")
	e.importTar(e.path("b.tar"), "b:1")
	out := lines(e.ok("system", "df"))
	if len(out) < 2 {
		t.Fatalf("system df printed %q", out)
	}
	if got, want := columns(out[0]), []string{"TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"}; !cmp.Equal(got, want) {
		t.Errorf("header = %q, want %q", got, want)
	}
	c := columns(out[1])
	if len(c) < 5 || c[0] != "Images" || c[1] != "2" || !humanSzRe.MatchString(c[3]) {
		t.Errorf("Images row = %q, want 2 images and a size", out[1])
	}
	var rows []map[string]string
	for _, l := range lines(e.ok("system", "df", "--format", "json")) {
		var m map[string]string
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("system df --format json line %q: %v", l, err)
		}
		rows = append(rows, m)
	}
	if len(rows) == 0 || rows[0]["Type"] != "Images" || rows[0]["TotalCount"] != "2" {
		t.Errorf("system df --format json = %v, want an Images row with TotalCount 2", rows)
	}
}

// TestSaveLoad round-trips images through roost's own archives: to a file
// and to stdout, docker-archive and OCI, several images at once, an untagged
// image by ID, and a gzip-compressed archive.
func TestSaveLoad(t *testing.T) {
	t.Parallel()
	src := newRoost(t)
	smallTar(t, src.path("a.tar"), "a")
	smallTar(t, src.path("b.tar"), "b")
	smallTar(t, src.path("c.tar"), "c")
	idA := src.importTar(src.path("a.tar"), "a:1", "--change", `CMD ["sh"]`)
	idB := src.importTar(src.path("b.tar"), "registry.example:5000/team/b:2")
	idC := src.importTar(src.path("c.tar"), "")

	stdout := src.run("save", "a:1", "registry.example:5000/team/b:2")
	if stdout.code != 0 {
		t.Fatalf("save to stdout: %s", stdout)
	}
	if err := os.WriteFile(src.path("ab.tar"), []byte(stdout.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	gzipFile(t, src.path("ab.tar"), src.path("ab.tar.gz"))
	src.ok("save", "--format", "oci-archive", "-o", src.path("ab.oci.tar"), "a:1", "registry.example:5000/team/b:2")
	src.ok("save", "-o", src.path("c.tar"), strings.TrimPrefix(idC, "sha256:")[:12])

	wantAB := []string{"Loaded image: a:1", "Loaded image: registry.example:5000/team/b:2"}
	tests := []struct {
		name  string
		args  []string
		stdin string // a file fed to stdin
		want  []string
		ids   map[string]string
	}{
		{"docker-archive from stdin", []string{"load"}, "ab.tar", wantAB, map[string]string{"a:1": idA, "registry.example:5000/team/b:2": idB}},
		{"docker-archive with -i", []string{"load", "-i", src.path("ab.tar")}, "", wantAB, map[string]string{"a:1": idA, "registry.example:5000/team/b:2": idB}},
		{"gzip docker-archive", []string{"image", "load", "--input", src.path("ab.tar.gz")}, "", wantAB, map[string]string{"a:1": idA}},
		{"oci-archive", []string{"load", "-i", src.path("ab.oci.tar")}, "", wantAB, map[string]string{"a:1": idA, "registry.example:5000/team/b:2": idB}},
		{"untagged by ID", []string{"load", "-i", src.path("c.tar")}, "", []string{"Loaded image ID: " + idC}, map[string]string{idC: idC}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newRoost(t)
			var stdin []byte
			if tt.stdin != "" {
				b, err := os.ReadFile(src.path(tt.stdin))
				if err != nil {
					t.Fatal(err)
				}
				stdin = b
			}
			r := e.runIn(bytes.NewReader(stdin), tt.args...)
			if r.code != 0 {
				t.Fatalf("want success, got %s", r)
			}
			got := lines(r.stdout)
			sort.Strings(got)
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("load output (-want +got):\n%s", d)
			}
			for ref, id := range tt.ids {
				img := e.inspect(ref)
				orig := src.inspect(id)
				if img.ID != id || !cmp.Equal(img.RootFS.Layers, orig.RootFS.Layers) || !cmp.Equal(img.Config, orig.Config) {
					t.Errorf("%s after load: %+v, want %+v", ref, img, orig)
				}
			}
			if r := e.run("load", "-q", "-i", src.path("ab.tar")); r.code != 0 || r.stdout != "" {
				t.Errorf("load -q of an archive already loaded: want success and no output, got %s", r)
			}
		})
	}
}
