package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// buildContext writes files (path → contents; a path ending in / is a
// directory) into a new context directory under the test dir.
func buildContext(t *testing.T, e *roostEnv, name string, files map[string]string) string {
	t.Helper()
	dir := e.path(name)
	for p, body := range files {
		full := filepath.Join(dir, p)
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// builtConfig is what the build tests read of `inspect`'s Config.
type builtConfig struct {
	Cmd, Entrypoint, Env, Shell, OnBuild []string
	WorkingDir, User, StopSignal         string
	ExposedPorts, Volumes                map[string]struct{}
	Labels                               map[string]string
	Healthcheck                          *struct {
		Test              []string
		Interval, Timeout time.Duration
		StartPeriod       time.Duration
		Retries           int
	}
}

func (e *roostEnv) builtConfig(ref string) builtConfig {
	e.t.Helper()
	var c builtConfig
	out := e.ok("inspect", "--format", "{{json .Config}}", ref)
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		e.t.Fatalf("inspect %s: %v: %s", ref, err, out)
	}
	return c
}

// imageFiles saves ref as a docker-archive and returns the files of its
// layers merged, upper over lower (whiteouts applied), with the owners the
// layers record: what a user without a subuid range cannot see inside a
// container.
func (e *roostEnv) imageFiles(ref string) map[string]tarFile {
	e.t.Helper()
	out := e.path("saved-" + strings.NewReplacer("/", "_", ":", "_").Replace(ref) + ".tar")
	e.ok("save", "-o", out, ref)
	imgs, files := readDockerArchive(e.t, out)
	if len(imgs) != 1 {
		e.t.Fatalf("save %s: want one image, got %+v", ref, imgs)
	}
	merged := map[string]tarFile{}
	for _, l := range imgs[0].Layers {
		layer, ok := files[strings.TrimPrefix(l, "./")]
		if !ok {
			e.t.Fatalf("save %s: archive lacks layer %s", ref, l)
		}
		for name, f := range readTarBytes(e.t, []byte(layer.Body)) {
			dir, base := filepath.Split(name)
			if gone, ok := strings.CutPrefix(base, ".wh."); ok {
				delete(merged, dir+gone)
				continue
			}
			merged[name] = f
		}
	}
	return merged
}

// wantOwners checks the owners and modes of paths in ref's layers.
func (e *roostEnv) wantOwners(ref string, want map[string]string) {
	e.t.Helper()
	files := e.imageFiles(ref)
	for p, w := range want {
		f, ok := files[p]
		if !ok {
			e.t.Errorf("%s has no %s in its layers", ref, p)
			continue
		}
		if got := fmt.Sprintf("%d:%d %o", f.UID, f.GID, f.Mode); got != w {
			e.t.Errorf("%s: %s is %s, want %s", ref, p, got, w)
		}
	}
}

// runOut runs sh -c script in a new container of ref and returns stdout.
func (e *roostEnv) runOut(ref, script string) string {
	e.t.Helper()
	return e.ok("run", "--rm", "--entrypoint", "", ref, "/bin/sh", "-c", script)
}

func hasEnv(env []string, kv string) bool {
	for _, e := range env {
		if e == kv {
			return true
		}
	}
	return false
}

// TestBuild builds a table of Dockerfiles over a busybox image and checks
// each image's config, files and owners, and what its container does.
func TestBuild(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		files map[string]string
		args  []string // more build flags
		check func(t *testing.T, e *roostEnv, out string)
	}{
		{
			name: "RUN shell and exec forms, ENV both syntaxes, ARG, WORKDIR, substitution",
			files: map[string]string{"Dockerfile": `FROM busybox
ENV A=one B="two words"
ENV C three
ARG V=dflt
ARG FROMCLI
ENV D=${V:-x}-${UNSET:-fallback}-${A:+set}-${FROMCLI}
WORKDIR /w
WORKDIR sub
RUN echo "$A|$B|$C|$D|$V" > out && pwd >> out && echo "arg-in-run=$FROMCLI" >> out
RUN ["/bin/sh", "-c", "echo exec >> /w/sub/out"]
`},
			args: []string{"--build-arg", "FROMCLI=cli"},
			check: func(t *testing.T, e *roostEnv, out string) {
				got := e.runOut("img", "cat /w/sub/out")
				want := "one|two words|three|dflt-fallback-set-cli|dflt\n/w/sub\narg-in-run=cli\nexec\n"
				if got != want {
					t.Errorf("RUN wrote %q, want %q", got, want)
				}
				c := e.builtConfig("img")
				if c.WorkingDir != "/w/sub" {
					t.Errorf("WorkingDir = %q", c.WorkingDir)
				}
				for _, kv := range []string{"A=one", "B=two words", "C=three", "D=dflt-fallback-set-cli"} {
					if !hasEnv(c.Env, kv) {
						t.Errorf("Env %q lacks %s", c.Env, kv)
					}
				}
				if hasEnv(c.Env, "V=dflt") || hasEnv(c.Env, "FROMCLI=cli") {
					t.Errorf("an ARG leaked into the image's Env: %q", c.Env)
				}
			},
		},
		{
			name: "COPY directory rules, globs, .dockerignore, --chown, --chmod",
			files: map[string]string{
				"Dockerfile": `FROM busybox
COPY a.txt /renamed
COPY a.txt /dest/
COPY *.txt /globbed/
COPY dir /copied
COPY dir/ /copied2/
COPY --chown=1000:1001 --chmod=751 a.txt /owned
COPY --chown=www-data a.txt /by-name
COPY --chown=42 dir /chowned/
COPY --link b.txt /linked
COPY . /all/
WORKDIR /wd
COPY a.txt .
COPY a.txt b.txt rel/
`,
				"a.txt": "a\n", "b.txt": "b\n", "ignored.txt": "no\n",
				"dir/x": "x\n", "dir/sub/y": "y\n", "dir/skip1": "no\n", "drop.md": "", "keep.md": "",
				".dockerignore": "ignored.txt\ndir/skip*\n*.md\n!keep.md\n",
			},
			check: func(t *testing.T, e *roostEnv, out string) {
				got := e.runOut("img", `for f in /linked /renamed /dest/a.txt /globbed/a.txt /globbed/b.txt /copied/x /copied/sub/y /copied2/x /owned /by-name /chowned/x /chowned/sub /wd/a.txt /wd/rel/a.txt /wd/rel/b.txt; do stat -c '%n %a %F' $f; done
ls /globbed /copied /copied2`)
				want := `/linked 644 regular file
/renamed 644 regular file
/dest/a.txt 644 regular file
/globbed/a.txt 644 regular file
/globbed/b.txt 644 regular file
/copied/x 644 regular file
/copied/sub/y 644 regular file
/copied2/x 644 regular file
/owned 751 regular file
/by-name 644 regular file
/chowned/x 644 regular file
/chowned/sub 755 directory
/wd/a.txt 644 regular file
/wd/rel/a.txt 644 regular file
/wd/rel/b.txt 644 regular file
/copied:
sub
x

/copied2:
sub
x

/globbed:
a.txt
b.txt
`
				if d := cmp.Diff(want, got); d != "" {
					t.Errorf("files in the image (-want +got):\n%s", d)
				}
				if got := e.runOut("img", "ls -A /all /all/dir"); got != "/all:\n.dockerignore\nDockerfile\na.txt\nb.txt\ndir\nkeep.md\n\n/all/dir:\nsub\nx\n" {
					t.Errorf("COPY . with .dockerignore (and an exception): %q", got)
				}
				e.wantOwners("img", map[string]string{"renamed": "0:0 644", "copied/sub/y": "0:0 644", "owned": "1000:1001 751",
					"by-name": "33:33 644", "chowned/x": "42:42 644", "chowned/sub": "42:42 755"})
			},
		},
		{
			name: "multi-stage: COPY --from a stage by name and index, and an image; FROM scratch",
			files: map[string]string{"Dockerfile": `FROM busybox AS builder
RUN mkdir -p /out/deep && echo built > /out/artifact && echo deep > /out/deep/f
FROM busybox AS unused
RUN echo unused > /unused
FROM scratch
COPY --from=builder /out/artifact /artifact
COPY --from=0 /out /outdir
COPY --from=busybox /bin/busybox /bin/busybox
CMD ["/bin/busybox", "cat", "/artifact", "/outdir/deep/f"]
`},
			check: func(t *testing.T, e *roostEnv, out string) {
				if strings.Contains(out, "echo unused") || !strings.Contains(out, "STEP 1/7: FROM busybox AS builder") {
					t.Errorf("want the unused stage skipped, as buildkit does:\n%s", out)
				}
				if got := e.ok("run", "--rm", "img"); got != "built\ndeep\n" {
					t.Errorf("container printed %q", got)
				}
				got := e.ok("run", "--rm", "img", "/bin/busybox", "ls", "/")
				if got != "artifact\nbin\ndev\netc\noutdir\nproc\nsys\n" && got != "artifact\nbin\noutdir\n" {
					t.Errorf("scratch image has %q", got)
				}
				if c := e.builtConfig("img"); !hasEnv(c.Env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin") {
					t.Errorf("FROM scratch image's Env = %q, want Docker's default PATH", c.Env)
				}
			},
		},
		{
			name: "--target stops at a stage",
			files: map[string]string{"Dockerfile": `FROM busybox AS first
RUN echo first > /stage
FROM first AS second
RUN exit 7
`},
			args: []string{"--target", "first"},
			check: func(t *testing.T, e *roostEnv, out string) {
				if got := e.runOut("img", "cat /stage"); got != "first\n" {
					t.Errorf("/stage = %q", got)
				}
			},
		},
		{
			name: "ENTRYPOINT resets an inherited CMD; a CMD of the same stage stays; shell forms use SHELL",
			files: map[string]string{"Dockerfile": `FROM busybox AS base
CMD ["echo", "base-cmd"]
FROM base AS ep
ENTRYPOINT ["echo", "ep"]
FROM base AS both
CMD ["same-stage"]
ENTRYPOINT ["echo"]
FROM both
SHELL ["/bin/sh", "-ec"]
RUN echo "shell is $0" > /shell
CMD echo shell form
`},
			check: func(t *testing.T, e *roostEnv, out string) {
				c := e.builtConfig("img")
				if d := cmp.Diff([]string{"/bin/sh", "-ec", "echo shell form"}, c.Cmd); d != "" {
					t.Errorf("Cmd (-want +got):\n%s", d)
				}
				if d := cmp.Diff([]string{"echo"}, c.Entrypoint); d != "" {
					t.Errorf("Entrypoint (-want +got):\n%s", d)
				}
				if d := cmp.Diff([]string{"/bin/sh", "-ec"}, c.Shell); d != "" {
					t.Errorf("Shell (-want +got):\n%s", d)
				}
				if got := e.runOut("img", "cat /shell"); got != "shell is /bin/sh\n" {
					t.Errorf("/shell = %q", got)
				}
			},
		},
		{
			name: "metadata: EXPOSE, LABEL, USER, VOLUME, STOPSIGNAL, HEALTHCHECK, MAINTAINER, --label",
			files: map[string]string{"Dockerfile": `FROM busybox
MAINTAINER someone@example.com
LABEL a=1 "b c"="d e"
EXPOSE 80 53/udp
USER www-data
VOLUME /data /more
VOLUME ["/json"]
STOPSIGNAL SIGUSR1
HEALTHCHECK --interval=5s --timeout=3s --retries=4 CMD wget -q localhost || exit 1
`},
			args: []string{"--label", "from=cli"},
			check: func(t *testing.T, e *roostEnv, out string) {
				c := e.builtConfig("img")
				if d := cmp.Diff(map[string]string{"a": "1", "b c": "d e", "from": "cli"}, c.Labels); d != "" {
					t.Errorf("Labels (-want +got):\n%s", d)
				}
				if d := cmp.Diff(map[string]struct{}{"80/tcp": {}, "53/udp": {}}, c.ExposedPorts); d != "" {
					t.Errorf("ExposedPorts (-want +got):\n%s", d)
				}
				if d := cmp.Diff(map[string]struct{}{"/data": {}, "/more": {}, "/json": {}}, c.Volumes); d != "" {
					t.Errorf("Volumes (-want +got):\n%s", d)
				}
				if c.User != "www-data" || c.StopSignal != "SIGUSR1" {
					t.Errorf("User %q, StopSignal %q", c.User, c.StopSignal)
				}
				if c.Healthcheck == nil || c.Healthcheck.Interval != 5*time.Second || c.Healthcheck.Timeout != 3*time.Second || c.Healthcheck.Retries != 4 ||
					!cmp.Equal(c.Healthcheck.Test, []string{"CMD-SHELL", "wget -q localhost || exit 1"}) {
					t.Errorf("Healthcheck = %+v", c.Healthcheck)
				}
				if a := strings.TrimSpace(e.ok("inspect", "--format", "{{.Author}}", "img")); a != "someone@example.com" {
					t.Errorf("Author = %q", a)
				}
				hist := e.ok("history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Size}}", "img")
				if !strings.Contains(hist, "EXPOSE 53/udp 80/tcp|0B") || !strings.Contains(hist, "USER www-data|0B") {
					t.Errorf("history lacks empty-layer entries for the metadata instructions:\n%s", hist)
				}
			},
		},
		{
			name: "heredocs, the escape directive and # syntax=",
			files: map[string]string{"Dockerfile": "# syntax=docker/dockerfile:1\n# escape=`\nFROM busybox\nARG X=expanded\n" +
				"RUN <<EOF\necho line1 > /h\necho line2 >> /h\nEOF\n" +
				"RUN cat > /h2 <<EOT\nto cat\nEOT\n" +
				"COPY <<EOT /inline.txt\ninline $X\nEOT\n" +
				"RUN echo a `\n    b > /escaped\n" +
				"RUN <<SCRIPT\n#!/bin/busybox sh\necho \"script $0\" > /shebang\nSCRIPT\n"},
			check: func(t *testing.T, e *roostEnv, out string) {
				got := e.runOut("img", "cat /h /h2 /inline.txt /escaped /shebang")
				if got != "line1\nline2\nto cat\ninline expanded\na b\nscript /dev/pipes/SCRIPT\n" {
					t.Errorf("files = %q", got)
				}
				for p := range e.imageFiles("img") {
					if strings.HasPrefix(p, "dev") {
						t.Errorf("the image's layers hold %s, a mount point of RUN", p)
					}
				}
			},
		},
		{
			name: "ARG before FROM, FROM --platform",
			files: map[string]string{"Dockerfile": `ARG BASE=nothing
ARG TAG=latest
FROM --platform=$BUILDPLATFORM ${BASE}:${TAG}
ARG TAG
RUN echo "tag=$TAG" > /tag
`},
			args: []string{"--build-arg", "BASE=busybox"},
			check: func(t *testing.T, e *roostEnv, out string) {
				if got := e.runOut("img", "cat /tag"); got != "tag=latest\n" {
					t.Errorf("/tag = %q", got)
				}
			},
		},
		{
			name: "USER applies to RUN",
			files: map[string]string{"Dockerfile": `FROM busybox
USER www-data
RUN id -u > /tmp/uid && id -g >> /tmp/uid
USER root
RUN id -u >> /tmp/uid
`},
			check: func(t *testing.T, e *roostEnv, out string) {
				if got := e.runOut("img", "cat /tmp/uid"); got != "33\n33\n0\n" {
					t.Errorf("RUN ran as %q, want 33 33 then 0", got)
				}
				// Without a subuid range the file a non-root USER made is
				// recorded as root's: the nested user namespace that runs
				// it maps the user onto the agent's root, and the union
				// records files by the creator's id there.
				if os.Getenv("ROOST_TEST_SUBID") == "range" {
					e.wantOwners("img", map[string]string{"tmp/uid": "33:33 644"})
				}
			},
		},
		{
			name: "RUN --mount: a bind of the context, tmpfs and cache; no mount point left in the layer",
			files: map[string]string{
				"Dockerfile": `FROM busybox AS tools
RUN mkdir /out && echo from-stage > /out/tool
FROM busybox
RUN --mount=type=bind,source=src,target=/mnt/src --mount=type=cache,target=/var/cache/thing --mount=type=tmpfs,target=/scratch/deep \
    --mount=type=bind,from=tools,source=/out,target=/mnt/tools \
    cat /mnt/src/in /mnt/tools/tool > /out && echo cached > /var/cache/thing/f && echo tmp > /scratch/deep/f && ls /mnt/src >> /out
`,
				"src/in": "bound\n", "src/private": "ignored\n", ".dockerignore": "src/private\n",
			},
			check: func(t *testing.T, e *roostEnv, out string) {
				if got := e.runOut("img", "cat /out; ls -a /mnt /var/cache /scratch 2>&1; true"); got != "bound\nfrom-stage\nin\nls: /mnt: No such file or directory\nls: /var/cache: No such file or directory\nls: /scratch: No such file or directory\n" {
					t.Errorf("got %q", got)
				}
				for p := range e.imageFiles("img") {
					if strings.HasPrefix(p, "mnt") || strings.HasPrefix(p, "var/cache") || strings.HasPrefix(p, "scratch") {
						t.Errorf("the layer holds %s: a mount of RUN", p)
					}
				}
			},
		},
		{
			name: "RUN owners: files root made are root's in the layer, and deletions are whiteouts",
			files: map[string]string{"Dockerfile": `FROM busybox
RUN mkdir /made && echo x > /made/f && rm /etc/os-release
`},
			check: func(t *testing.T, e *roostEnv, out string) {
				got := e.runOut("img", "stat -c '%n %u:%g' /made /made/f; test -e /etc/os-release && echo still there; true")
				if got != "/made 0:0\n/made/f 0:0\n" {
					t.Errorf("got %q", got)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newRoost(t)
			runImage(t, e)
			ctx := buildContext(t, e, "ctx", tt.files)
			args := append([]string{"build", "-t", "img"}, tt.args...)
			out := e.ok(append(args, ctx)...)
			tt.check(t, e, out)
		})
	}
}

// TestBuildOutputAndCache checks the step lines, the cache, --no-cache,
// -q, --iidfile, tags and builder prune.
func TestBuildOutputAndCache(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	runImage(t, e)
	ctx := buildContext(t, e, "ctx", map[string]string{
		"Dockerfile": "FROM busybox\nENV K=v\nCOPY one /one\nRUN echo ran | tee /ran\nCOPY two /two\nCMD [\"cat\", \"/one\", \"/two\"]\n",
		"one":        "1\n", "two": "2\n",
	})
	out := e.ok("build", "-t", "app", "-t", "app:2", "--iidfile", e.path("iid"), ctx)
	for _, want := range []string{"STEP 1/6: FROM busybox\n", "STEP 3/6: COPY one /one\n", "STEP 4/6: RUN echo ran | tee /ran\nran\n", "Successfully tagged docker.io/library/app:latest\n", "Successfully tagged docker.io/library/app:2\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("build output lacks %q:\n%s", want, out)
		}
	}
	iid, err := os.ReadFile(e.path("iid"))
	if err != nil || !isImageID(string(iid)) {
		t.Fatalf("--iidfile holds %q (%v)", iid, err)
	}
	outLines := strings.Split(strings.TrimSpace(out), "\n")
	if last := outLines[len(outLines)-1]; "sha256:"+last != string(iid) {
		t.Errorf("last line %q is not the image ID %s", last, iid)
	}
	if got := e.ok("run", "--rm", "app:2"); got != "1\n2\n" {
		t.Errorf("app:2 printed %q", got)
	}

	again := e.ok("build", "-t", "app", ctx)
	if n := strings.Count(again, "--> Using cache"); n != 5 {
		t.Errorf("a rebuild used the cache %d times, want 5:\n%s", n, again)
	}
	if strings.Contains(again, "\nran\n") {
		t.Errorf("a cached RUN ran again:\n%s", again)
	}
	// The cache hits name the same step images the first build made.
	var made, hits []string
	for _, l := range strings.Split(out, "\n") {
		if id, ok := strings.CutPrefix(l, "--> "); ok && len(made) < 5 {
			made = append(made, id)
		}
	}
	for _, l := range strings.Split(again, "\n") {
		if id, ok := strings.CutPrefix(l, "--> Using cache "); ok && len(id) == 64 {
			hits = append(hits, id[:12])
		}
	}
	if d := cmp.Diff(made, hits); d != "" {
		t.Errorf("step IDs of the first build and of the cache hits (-first +hits):\n%s", d)
	}
	if q := strings.TrimSpace(e.ok("build", "-q", ctx)); q != string(iid) {
		t.Errorf("build -q printed %q, want only the same image ID %s", q, iid)
	}

	if err := os.WriteFile(filepath.Join(ctx, "two"), []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	changed := e.ok("build", "-t", "app", ctx)
	if n := strings.Count(changed, "--> Using cache"); n != 3 {
		t.Errorf("after changing the second COPY's file the cache was used %d times, want 3 (ENV, COPY one, RUN):\n%s", n, changed)
	}
	if got := e.ok("run", "--rm", "app"); got != "1\nchanged\n" {
		t.Errorf("app printed %q", got)
	}
	if got := e.ok("run", "--rm", "app:2"); got != "1\n2\n" {
		t.Errorf("app:2 changed: %q", got)
	}

	nocache := e.ok("build", "--no-cache", "-t", "app", ctx)
	if strings.Contains(nocache, "Using cache") || !strings.Contains(nocache, "\nran\n") {
		t.Errorf("--no-cache used the cache:\n%s", nocache)
	}

	cacheRow := func() []string {
		for _, l := range lines(e.ok("system", "df")) {
			if strings.HasPrefix(l, "Build Cache") {
				return columns(l)
			}
		}
		t.Fatalf("system df has no Build Cache row")
		return nil
	}
	if row := cacheRow(); len(row) < 2 || row[1] == "0" {
		t.Errorf("system df's Build Cache row after builds: %q", row)
	}
	pruned := e.ok("builder", "prune", "-f")
	if row := cacheRow(); len(row) < 2 || row[1] != "0" {
		t.Errorf("system df's Build Cache row after builder prune: %q", row)
	}
	if !strings.Contains(pruned, "Total reclaimed space") {
		t.Errorf("builder prune printed %q", pruned)
	}
	if after := e.ok("build", "-t", "app", ctx); strings.Contains(after, "Using cache") {
		t.Errorf("the cache survived builder prune:\n%s", after)
	}
	e.ok("system", "prune", "-f")
	if after := e.ok("build", "-t", "app", ctx); strings.Contains(after, "Using cache") {
		t.Errorf("the cache survived system prune:\n%s", after)
	}

	e.ok("build", "-t", "notag", ctx)
	if id := strings.TrimSpace(e.ok("images", "-q", "notag:latest")); id == "" {
		t.Errorf("-t notag did not tag notag:latest")
	}
}

// TestBuildInputs: -f -, a context tar on stdin, a Dockerfile alone on
// stdin, -f elsewhere, and --network.
func TestBuildInputs(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	runImage(t, e)
	ctx := buildContext(t, e, "ctx", map[string]string{"f": "from context\n", "other.Dockerfile": "FROM busybox\nCOPY f /f\nRUN echo other >> /f\n"})
	df := "FROM busybox\nCOPY f /f\n"
	if out := e.exe(strings.NewReader(df), roostBin, "build", "-q", "-t", "a", "-f", "-", ctx); out.code != 0 || !isImageID(strings.TrimSpace(out.stdout)) {
		t.Fatalf("build -f -: %s", out)
	}
	if got := e.runOut("a", "cat /f"); got != "from context\n" {
		t.Errorf("-f -: /f = %q", got)
	}
	e.ok("build", "-t", "b", "-f", filepath.Join(ctx, "other.Dockerfile"), ctx)
	if got := e.runOut("b", "cat /f"); got != "from context\nother\n" {
		t.Errorf("-f other.Dockerfile: /f = %q", got)
	}

	var tb bytes.Buffer
	zw := gzip.NewWriter(&tb)
	if err := writeTarTo(zw, []entry{{name: "Dockerfile", body: df}, {name: "f", body: "from tar\n"}}); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	if r := e.runIn(bytes.NewReader(tb.Bytes()), "build", "-t", "c", "-"); r.code != 0 || !strings.Contains(r.stdout, "Received the build context from stdin: ") {
		t.Fatalf("build - < context.tar.gz: %s", r)
	}
	if got := e.runOut("c", "cat /f"); got != "from tar\n" {
		t.Errorf("context on stdin: /f = %q", got)
	}
	if r := e.runIn(strings.NewReader("FROM busybox\nRUN echo alone > /alone\n"), "build", "-t", "d", "-"); r.code != 0 {
		t.Fatalf("build - < Dockerfile: %s", r)
	}
	if got := e.runOut("d", "cat /alone"); got != "alone\n" {
		t.Errorf("Dockerfile on stdin: /alone = %q", got)
	}

	syntax := buildContext(t, e, "syntax", map[string]string{"Dockerfile": "# syntax=docker/dockerfile:1.7\nFROM busybox\n"})
	if r := e.run("build", "-q", syntax); r.code != 0 || !strings.Contains(r.stderr, "syntax directive (docker/dockerfile:1.7) is ignored") {
		t.Errorf("# syntax=: want a build with a warning on stderr, got %s", r)
	}

	netDf := "FROM busybox\nRUN cut -d: -f1 /proc/net/dev | tail -n +3 | tr -d ' ' | sort > /ifaces\n"
	for _, mode := range []string{"none", "host"} {
		ctxN := buildContext(t, e, "net-"+mode, map[string]string{"Dockerfile": netDf})
		e.ok("build", "-q", "--network", mode, "-t", "net-"+mode, ctxN)
	}
	ctxR := buildContext(t, e, "net-run", map[string]string{"Dockerfile": strings.Replace(netDf, "RUN ", "RUN --network=none ", 1)})
	e.ok("build", "-q", "--network", "host", "-t", "net-run", ctxR)
	if got := e.runOut("net-run", "cat /ifaces"); got != "lo\n" {
		t.Errorf("RUN --network=none in a --network host build saw interfaces %q, want only lo", got)
	}
	if got := e.runOut("net-none", "cat /ifaces"); got != "lo\n" {
		t.Errorf("--network none: RUN saw interfaces %q, want only lo", got)
	}
	if got := e.runOut("net-host", "cat /ifaces"); got == "lo\n" || got == "" {
		t.Errorf("--network host: RUN saw interfaces %q, want the host's", got)
	}
}

// TestBuildAdd: ADD unpacks local archives of every compression, fetches
// URLs, and takes --chown and --chmod.
func TestBuildAdd(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	runImage(t, e)
	var plain bytes.Buffer
	if err := writeTarTo(&plain, []entry{{name: "pkg/", typ: tar.TypeDir}, {name: "pkg/file", body: "in archive\n", uid: 7, gid: 8}}); err != nil {
		t.Fatal(err)
	}
	compressed := map[string][]byte{"a.tar": plain.Bytes()}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(plain.Bytes())
	zw.Close()
	compressed["a.tar.gz"] = gz.Bytes()
	var xzb bytes.Buffer
	xw, err := xz.NewWriter(&xzb)
	if err != nil {
		t.Fatal(err)
	}
	xw.Write(plain.Bytes())
	xw.Close()
	compressed["a.tar.xz"] = xzb.Bytes()
	var zs bytes.Buffer
	zsw, _ := zstd.NewWriter(&zs)
	zsw.Write(plain.Bytes())
	zsw.Close()
	compressed["a.tar.zst"] = zs.Bytes()
	bz := exec.Command(needTool(t, "bzip2", "bzip2"), "-c")
	bz.Stdin = bytes.NewReader(plain.Bytes())
	bzOut, err := bz.Output()
	if err != nil {
		t.Fatal(err)
	}
	compressed["a.tar.bz2"] = bzOut

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/remote.txt" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
		fmt.Fprint(w, "from the web\n")
	}))
	defer srv.Close()

	files := map[string]string{"plain.txt": "not an archive\n"}
	var df strings.Builder
	df.WriteString("FROM busybox\n")
	var script strings.Builder
	for n, b := range compressed {
		files[n] = string(b)
		fmt.Fprintf(&df, "ADD %s /x/%s/\n", n, n)
		fmt.Fprintf(&script, "cat /x/%s/pkg/file\n", n)
	}
	sum := sha256.Sum256([]byte("from the web\n"))
	df.WriteString("ADD plain.txt /plain/\nADD " + srv.URL + "/remote.txt /web/\nADD --chown=5:6 --chmod=640 " + srv.URL + "/remote.txt /web-owned\n")
	df.WriteString("ADD --checksum=sha256:" + hex.EncodeToString(sum[:]) + " " + srv.URL + "/remote.txt /checked\n")
	files["Dockerfile"] = df.String()
	ctx := buildContext(t, e, "ctx", files)
	e.ok("build", "-t", "img", ctx)
	if got := e.runOut("img", script.String()); got != strings.Repeat("in archive\n", len(compressed)) {
		t.Errorf("the archives' files hold %q", got)
	}
	owners := map[string]string{"web/remote.txt": "0:0 600", "web-owned": "5:6 640"}
	for n := range compressed {
		owners["x/"+n+"/pkg/file"] = "7:8 644"
	}
	e.wantOwners("img", owners)
	got := e.runOut("img", "cat /plain/plain.txt; stat -c '%n %a %Y' /web/remote.txt /web-owned; cat /web/remote.txt")
	want := "not an archive\n/web/remote.txt 600 1136214245\n/web-owned 640 1136214245\nfrom the web\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := e.runOut("img", "cat /checked"); got != "from the web\n" {
		t.Errorf("ADD --checksum: %q", got)
	}
	bad := buildContext(t, e, "bad", map[string]string{"Dockerfile": "FROM busybox\nADD --checksum=sha256:" + strings.Repeat("0", 64) + " " + srv.URL + "/remote.txt /x\n"})
	if msg := e.fails("build", "-q", bad); !strings.Contains(msg, "Dockerfile:2:") || !strings.Contains(msg, "--checksum") {
		t.Errorf("ADD with a wrong --checksum: %q", msg)
	}
}

// TestBuildOnbuild: ONBUILD is stored, and runs in a child's build.
func TestBuildOnbuild(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	runImage(t, e)
	parent := buildContext(t, e, "parent", map[string]string{"Dockerfile": "FROM busybox\nONBUILD COPY marker /marker\nONBUILD RUN echo triggered >> /marker\n"})
	e.ok("build", "-t", "parent", parent)
	if d := cmp.Diff([]string{"COPY marker /marker", "RUN echo triggered >> /marker"}, e.builtConfig("parent").OnBuild); d != "" {
		t.Errorf("parent OnBuild (-want +got):\n%s", d)
	}
	child := buildContext(t, e, "child", map[string]string{"Dockerfile": "FROM parent\nCMD [\"cat\", \"/marker\"]\n", "marker": "child context\n"})
	out := e.ok("build", "-t", "child", child)
	if !strings.Contains(out, "Executing 2 build trigger") {
		t.Errorf("output does not mention the triggers:\n%s", out)
	}
	if got := e.ok("run", "--rm", "child"); got != "child context\ntriggered\n" {
		t.Errorf("child printed %q", got)
	}
	if ob := e.builtConfig("child").OnBuild; len(ob) != 0 {
		t.Errorf("child kept OnBuild %q", ob)
	}
}

// TestBuildBadInput: each bad Dockerfile or context fails with exit 125 and
// one line naming the Dockerfile and line, and changes nothing.
func TestBuildBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		files map[string]string
		args  []string
		setup func(t *testing.T, ctx string)
		inMsg []string
	}{
		{name: "unknown instruction", files: map[string]string{"Dockerfile": "FROM busybox\n\nFOO bar\n"}, inMsg: []string{"Dockerfile:3:", "unknown instruction: FOO"}},
		{name: "bad syntax", files: map[string]string{"Dockerfile": "FROM busybox\nENV\n"}, inMsg: []string{"Dockerfile:2:", "ENV"}},
		{name: "no FROM", files: map[string]string{"Dockerfile": "RUN true\n"}, inMsg: []string{"Dockerfile:1:"}},
		{name: "missing Dockerfile", files: map[string]string{"f": "x"}, inMsg: []string{"Dockerfile", "no such file"}},
		{name: "COPY of a missing file", files: map[string]string{"Dockerfile": "FROM busybox\nCOPY nothere /x\n"}, inMsg: []string{"Dockerfile:2:", "nothere"}},
		{name: "COPY of an ignored file", files: map[string]string{"Dockerfile": "FROM busybox\nCOPY secret /x\n", "secret": "s", ".dockerignore": "secret\n"}, inMsg: []string{"Dockerfile:2:", "secret", ".dockerignore"}},
		{name: "COPY from outside the context", files: map[string]string{"Dockerfile": "FROM busybox\nCOPY ../outside /x\n"}, inMsg: []string{"Dockerfile:2:", "outside the build context"}},
		{name: "unknown stage in --from", files: map[string]string{"Dockerfile": "FROM busybox\nCOPY --from=nostage /bin/sh /x\n"}, inMsg: []string{"Dockerfile:2:", "nostage"}},
		{name: "unknown base image", files: map[string]string{"Dockerfile": "FROM 127.0.0.1:1/nothing\n"}, inMsg: []string{"Dockerfile:1:", "127.0.0.1:1/nothing"}},
		{name: "unknown target", files: map[string]string{"Dockerfile": "FROM busybox\n"}, args: []string{"--target", "nope"}, inMsg: []string{"nope"}},
		{name: "two sources to a file", files: map[string]string{"Dockerfile": "FROM busybox\nCOPY a b /file\n", "a": "", "b": ""}, inMsg: []string{"Dockerfile:2:", "end with a /"}},
		{name: "unreadable context file", files: map[string]string{"Dockerfile": "FROM busybox\nCOPY locked /x\n", "locked": "secret"},
			setup: func(t *testing.T, ctx string) {
				if err := os.Chmod(filepath.Join(ctx, "locked"), 0); err != nil {
					t.Fatal(err)
				}
			}, inMsg: []string{"Dockerfile:2:", "locked", "permission denied"}},
		{name: "bad tag", files: map[string]string{"Dockerfile": "FROM busybox\n"}, args: []string{"-t", "Bad:Tag:x"}, inMsg: []string{"Bad:Tag:x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newRoost(t)
			runImage(t, e)
			ctx := buildContext(t, e, "ctx", tt.files)
			if tt.setup != nil {
				tt.setup(t, ctx)
			}
			before := e.snapshot()
			msg := e.fails(append(append([]string{"build", "-q", "-t", "busybox"}, tt.args...), ctx)...)
			t.Logf("stderr: %s", msg)
			for _, part := range tt.inMsg {
				if !strings.Contains(msg, part) {
					t.Errorf("error %q lacks %q", msg, part)
				}
			}
			e.wantUnchanged(before)
		})
	}

	t.Run("failing RUN", func(t *testing.T) {
		t.Parallel()
		e := newRoost(t)
		runImage(t, e)
		ctx := buildContext(t, e, "ctx", map[string]string{"Dockerfile": "FROM busybox\nRUN echo some output; echo the last words >&2; exit 3\n"})
		e.ok("run", "--rm", "busybox", "true") // the container store's lock file exists from here on
		before := e.snapshot()
		r := e.run("build", "-t", "busybox", ctx)
		if r.code != 125 {
			t.Fatalf("want exit 125, got %s", r)
		}
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		last := lines[len(lines)-1]
		if !strings.Contains(last, "Dockerfile:2:") || !strings.Contains(last, "exit code: 3") || len(lines) != 1 {
			t.Errorf("want one line naming Dockerfile:2 and exit code 3 on stderr, got %s", r)
		}
		if !strings.Contains(r.stdout, "the last words") {
			t.Errorf("the RUN's output is not shown: %s", r)
		}
		e.wantUnchanged(before)
		if ps := e.ok("ps", "-a", "-q"); ps != "" {
			t.Errorf("the RUN's container is left: %q", ps)
		}
		q := e.run("build", "-q", "-t", "busybox", ctx)
		if q.code != 125 || !strings.Contains(q.stderr, "the last words") || q.stdout != "" {
			t.Errorf("build -q of a failing RUN: want its last output lines and the error on stderr, got %s", q)
		}
	})
}

// TestBuildRegistry: FROM an image by digest pulls it; the built image
// pushes, and pulls and runs in another store; --pull pulls again.
func TestBuildRegistry(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t, "")
	e := newRoost(t)
	img := runImage(t, e)
	base := reg.Host + "/test/busybox:1"
	e.ok("tag", img, base)
	digest := pushedDigest(t, e.ok("push", base))

	e2 := newRoost(t)
	ctx := buildContext(t, e2, "ctx", map[string]string{"Dockerfile": "FROM " + reg.Host + "/test/busybox@" + digest + "\nRUN echo layered > /l\nCMD [\"cat\", \"/l\"]\n"})
	app := reg.Host + "/test/app:1"
	if r := e2.run("build", "-t", app, ctx); r.code != 0 || !strings.Contains(r.stderr, "Pulling from test/busybox") {
		t.Fatalf("build FROM a digest that is not here: want a pull, got %s", r)
	}
	if r := e2.run("build", "--pull", "-t", app, ctx); r.code != 0 || !strings.Contains(r.stderr, digest) {
		t.Errorf("build --pull: want the base pulled again, got %s", r)
	}
	e2.ok("push", app)
	e3 := newRoost(t)
	if got := e3.ok("run", "--rm", app); got != "layered\n" {
		t.Errorf("the pushed image printed %q", got)
	}
}

// TestBuildSecret: RUN --mount=type=secret reads a --secret file, which
// stays out of the image and the cache key.
func TestBuildSecret(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	runImage(t, e)
	secret := e.path("token")
	if err := os.WriteFile(secret, []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := buildContext(t, e, "ctx", map[string]string{"Dockerfile": "FROM busybox\nRUN --mount=type=secret,id=token wc -c < /run/secrets/token > /len\n"})
	e.ok("build", "-t", "img", "--secret", "id=token,src="+secret, ctx)
	if got := e.runOut("img", "cat /len; ls /run 2>&1; true"); got != "6\nls: /run: No such file or directory\n" {
		t.Errorf("got %q", got)
	}
	for p, f := range e.imageFiles("img") {
		if strings.Contains(f.Body, "s3cret") {
			t.Errorf("the secret is in the image at %s", p)
		}
	}
	req := buildContext(t, e, "req", map[string]string{"Dockerfile": "FROM busybox\nRUN --mount=type=secret,id=missing,required cat /run/secrets/missing\n"})
	if msg := e.fails("build", "-q", req); !strings.Contains(msg, "Dockerfile:2:") || !strings.Contains(msg, "--secret id=missing") {
		t.Errorf("a required secret not given: %q", msg)
	}
}

// TestBuildProxyArgs: the predefined proxy args reach RUN without an ARG,
// and stay out of the image.
func TestBuildProxyArgs(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	runImage(t, e)
	ctx := buildContext(t, e, "ctx", map[string]string{"Dockerfile": "FROM busybox\nRUN echo \"proxy=$HTTP_PROXY\" > /p\n"})
	e.ok("build", "-t", "img", "--build-arg", "HTTP_PROXY=http://proxy.example:3128", ctx)
	if got := e.runOut("img", "cat /p"); got != "proxy=http://proxy.example:3128\n" {
		t.Errorf("RUN saw %q", got)
	}
	if c := e.builtConfig("img"); hasEnv(c.Env, "HTTP_PROXY=http://proxy.example:3128") {
		t.Errorf("the proxy arg is in the image's Env: %q", c.Env)
	}
	if hist := e.ok("history", "--no-trunc", "img"); strings.Contains(hist, "proxy.example") {
		t.Errorf("the proxy arg is in the history:\n%s", hist)
	}
}

// TestBuildThenPodmanRun: a built image, saved, loads into Podman with the
// same ID, config and layers, and runs there as under roost.
func TestBuildThenPodmanRun(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	p := newPodman(t, e)
	busyboxImage(t, e, "busybox") // every file root's: Podman without a subuid range loads it
	ctx := buildContext(t, e, "ctx", map[string]string{
		"Dockerfile": `FROM busybox
ENV GREETING=hello
WORKDIR /app
COPY msg .
RUN echo "$GREETING from RUN" >> msg && busybox rm /etc/os-release
EXPOSE 8080
LABEL built=by-roost
ENTRYPOINT ["cat"]
CMD ["/app/msg"]
`,
		"msg": "from COPY\n",
	})
	id := strings.TrimSpace(e.ok("build", "-q", "-t", "roosttest/built:1", ctx))
	want := "from COPY\nhello from RUN\n"
	if got := e.ok("run", "--rm", "roosttest/built:1"); got != want {
		t.Fatalf("roost run printed %q, want %q", got, want)
	}
	archive := e.path("built.tar")
	e.ok("save", "-o", archive, "roosttest/built:1")
	ref := loadedName(p.ok("load", "-i", archive))
	pi := p.inspect(ref)
	ri := e.inspect("roosttest/built:1")
	if pi.ID != strings.TrimPrefix(id, "sha256:") {
		t.Errorf("podman sees image ID %s, roost built %s", pi.ID, id)
	}
	if d := cmp.Diff(ri.Config, pi.Config); d != "" {
		t.Errorf("Config (-roost +podman):\n%s", d)
	}
	if d := cmp.Diff(ri.RootFS.Layers, pi.RootFS.Layers); d != "" {
		t.Errorf("RootFS.Layers (-roost +podman):\n%s", d)
	}
	got := ""
	for try := 0; try < 3 && got == ""; try++ { // podman now and then loses a quick container's output
		got = p.ok("run", "--rm", "--network", "none", ref)
	}
	if got != want {
		t.Errorf("podman run printed %q, want %q", got, want)
	}
	if got := p.ok("run", "--rm", "--network", "none", "--entrypoint", "sh", ref, "-c", "test -e /etc/os-release && echo present || echo deleted"); got != "deleted\n" {
		t.Errorf("the RUN's deletion under podman: %q", got)
	}
}

// TestBuildSymlinkEscape: a symbolic link in the build context resolves
// inside the context, as if it were the root (Docker's FollowSymlinkInScope):
// COPY and ADD through a link to a directory or file outside it fail as
// "not found" and read nothing there; an absolute link to a context file
// reaches that file.
func TestBuildSymlinkEscape(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	runImage(t, e)
	secret := e.path("secret")
	if err := os.WriteFile(secret, []byte("outside the context\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := buildContext(t, e, "ctx", map[string]string{"inside.txt": "inside\n"})
	for link, target := range map[string]string{"up": e.dir, "rel": "../secret", "abs": secret, "home": "/", "in": "/inside.txt"} {
		if err := os.Symlink(target, filepath.Join(ctx, link)); err != nil {
			t.Fatal(err)
		}
	}
	before := e.snapshot()
	for _, src := range []string{"up/secret", "rel", "abs", "home" + secret, "up/*"} {
		for _, ins := range []string{"COPY", "ADD"} {
			df := fmt.Sprintf("FROM busybox\n%s %s /x\n", ins, src)
			if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(df), 0o644); err != nil {
				t.Fatal(err)
			}
			msg := e.fails("build", "-t", "escape", ctx)
			if !strings.Contains(msg, "Dockerfile:2:") || !strings.Contains(msg, "not found") {
				t.Errorf("%s %s: %q, want Dockerfile:2: ... not found", ins, src, msg)
			}
		}
	}
	e.wantUnchanged(before)
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM busybox\nCOPY in /x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.ok("build", "-q", "-t", "in", ctx)
	if got := e.runOut("in", "cat /x"); got != "inside\n" {
		t.Errorf("COPY of an absolute link to a context file: /x = %q, want the file's contents", got)
	}
}
