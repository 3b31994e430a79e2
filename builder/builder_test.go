package builder

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/roost-containers/roost/layers"
)

// build builds dockerfile over an empty store, with files as the context;
// no step may need a container.
func testBuild(t *testing.T, s *layers.Store, dockerfile string, files map[string]string, o Options) (*Result, string, error) {
	t.Helper()
	dir := t.TempDir()
	files["Dockerfile"] = dockerfile
	for p, body := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	o.ContextDir, o.Images, o.Out = dir, s, &out
	o.Base = func(ref, platform string) (*layers.Image, error) { return s.Resolve(ref) }
	res, err := Build(context.Background(), o)
	return res, out.String(), err
}

func TestConfigMapping(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		dockerfile string
		args       map[string]string
		want       v1.Config
		history    []string
	}{
		{
			name: "metadata instructions",
			dockerfile: `FROM scratch
ENV A=1 B="x y"
ENV C 3
LABEL l=v "k 2"=v2
EXPOSE 80 53/udp
USER u:g
WORKDIR /a
WORKDIR b
VOLUME /v
STOPSIGNAL SIGTERM
CMD echo hi
ENTRYPOINT ["e"]
ONBUILD RUN echo child
`,
			want: v1.Config{
				Env:          []string{defaultPath, "A=1", "B=x y", "C=3"},
				Labels:       map[string]string{"l": "v", "k 2": "v2"},
				ExposedPorts: map[string]struct{}{"80/tcp": {}, "53/udp": {}},
				User:         "u:g", WorkingDir: "/a/b",
				Volumes:    map[string]struct{}{"/v": {}},
				StopSignal: "SIGTERM",
				Cmd:        []string{"/bin/sh", "-c", "echo hi"},
				Entrypoint: []string{"e"},
				OnBuild:    []string{"RUN echo child"},
			},
			history: []string{"ENV A=1 B=x y", "ENV C=3", "LABEL l=v k 2=v2", "EXPOSE 53/udp 80/tcp", "USER u:g", "WORKDIR /a", "WORKDIR /a/b",
				`VOLUME ["/v"]`, "STOPSIGNAL SIGTERM", `CMD ["/bin/sh","-c","echo hi"]`, `ENTRYPOINT ["e"]`, "ONBUILD RUN echo child"},
		},
		{
			name:       "ENTRYPOINT resets a CMD from the base stage",
			dockerfile: "FROM scratch AS base\nCMD [\"c\"]\nFROM base\nENTRYPOINT [\"e\"]\n",
			want:       v1.Config{Env: []string{defaultPath}, Entrypoint: []string{"e"}},
			history:    []string{`CMD ["c"]`, `ENTRYPOINT ["e"]`},
		},
		{
			name:       "ARG before FROM, defaults, --build-arg and substitution",
			dockerfile: "ARG X=1\nFROM scratch\nARG X\nARG Y=${X}2\nENV Z=${Y:-no}-${U:-u}-${X:+p} W=\\$X\n",
			args:       map[string]string{"X": "9"},
			want:       v1.Config{Env: []string{defaultPath, "Z=92-u-p", "W=$X"}},
			history:    []string{"ARG X=9", "ARG Y=92", "ENV Z=92-u-p W=$X"},
		},
		{
			name:       "escape directive, SHELL and HEALTHCHECK NONE",
			dockerfile: "# escape=`\nFROM scratch\nSHELL [\"/bin/bash\", \"-c\"]\nCMD echo `\n  continued\nHEALTHCHECK NONE\n",
			want: v1.Config{Env: []string{defaultPath}, Shell: []string{"/bin/bash", "-c"}, Cmd: []string{"/bin/bash", "-c", "echo   continued"},
				Healthcheck: &v1.HealthConfig{Test: []string{"NONE"}}},
			history: []string{`SHELL ["/bin/bash","-c"]`, `CMD ["/bin/bash","-c","echo   continued"]`, `HEALTHCHECK {"Test":["NONE"]}`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := layers.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			res, out, err := testBuild(t, s, tt.dockerfile, map[string]string{}, Options{BuildArgs: tt.args})
			if err != nil {
				t.Fatalf("build: %v\n%s", err, out)
			}
			cf, _, err := s.Config(res.ID)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, cf.Config, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("config (-want +got):\n%s", d)
			}
			var hist []string
			for _, h := range cf.History {
				if !h.EmptyLayer {
					t.Errorf("history entry %q has a layer", h.CreatedBy)
				}
				hist = append(hist, h.CreatedBy)
			}
			if d := cmp.Diff(tt.history, hist); d != "" {
				t.Errorf("history (-want +got):\n%s", d)
			}
			if len(cf.RootFS.DiffIDs) != 0 {
				t.Errorf("metadata instructions made layers: %v", cf.RootFS.DiffIDs)
			}
		})
	}
}

func TestCopyLayerAndCache(t *testing.T) {
	t.Parallel()
	s, err := layers.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	df := "FROM scratch\nCOPY --chown=3:4 dir /app/\nCOPY f /app/renamed\n"
	files := map[string]string{"dir/a": "a", "dir/sub/b": "b", "f": "f", "dir/ignored": "i", ".dockerignore": "dir/ignored\n"}
	res, out, err := testBuild(t, s, df, files, Options{})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cf, _, err := s.Config(res.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(cf.RootFS.DiffIDs) != 2 {
		t.Fatalf("want 2 layers, got %v", cf.RootFS.DiffIDs)
	}
	var got []string
	for _, d := range cf.RootFS.DiffIDs {
		idx, err := s.LayerEntries(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range idx.Entries {
			got = append(got, e.Name+" "+string(rune('0'+e.UID))+":"+string(rune('0'+e.GID)))
		}
	}
	want := []string{"app 3:4", "app/a 3:4", "app/sub 3:4", "app/sub/b 3:4", "app/renamed 0:0"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("layer entries (-want +got):\n%s", d)
	}

	res2, out2, err := testBuild(t, s, df, files, Options{})
	if err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	if res2.ID != res.ID {
		t.Errorf("an unchanged rebuild made %s, want %s", res2.ID, res.ID)
	}
	if n := strings.Count(out2, "--> Using cache"); n != 2 {
		t.Errorf("an unchanged rebuild used the cache %d times, want 2:\n%s", n, out2)
	}
}

func TestBuildErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, dockerfile string
		target           string
		want             string
	}{
		{"unknown instruction", "FROM scratch\n\nFOO bar\n", "", "Dockerfile:3: unknown instruction: FOO"},
		{"missing argument", "FROM scratch\nENV\n", "", "Dockerfile:2: ENV"},
		{"no FROM", "ENV A=b\n", "", "Dockerfile:1:"},
		{"missing source", "FROM scratch\nCOPY nothere /x\n", "", "Dockerfile:2: file not found in build context"},
		{"outside the context", "FROM scratch\nCOPY ../up /x\n", "", "Dockerfile:2: forbidden path outside the build context"},
		{"unknown stage", "FROM scratch\nCOPY --from=nostage /x /y\n", "", "Dockerfile:2: COPY --from=nostage"},
		{"unknown base", "FROM nothing:here\n", "", "Dockerfile:1: base image nothing:here"},
		{"unknown target", "FROM scratch\n", "nope", `target stage "nope" could not be found`},
		{"RUN --mount=type=ssh", "FROM scratch\nRUN --mount=type=ssh true\n", "", "Dockerfile:2: RUN --mount=type=ssh is not supported"},
		{"RUN --mount of a bind that is not there", "FROM scratch\nRUN --mount=type=bind,source=nothere,target=/x true\n", "", "Dockerfile:2: file not found in build context"},
		{"bad chmod", "FROM scratch\nCOPY --chmod=9 Dockerfile /x\n", "", "Dockerfile:2: COPY --chmod=9"},
		{"bad stop signal", "FROM scratch\nSTOPSIGNAL NOPE\n", "", "Dockerfile:2:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := layers.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = testBuild(t, s, tt.dockerfile, map[string]string{}, Options{Target: tt.target})
			var be *Error
			if !errors.As(err, &be) {
				t.Fatalf("want a *builder.Error, got %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q lacks %q", err, tt.want)
			}
			if imgs, _ := s.Images(); len(imgs) != 0 {
				t.Errorf("a failed build stored images: %v", imgs)
			}
		})
	}
}

// TestPlatform: --platform sets the target platform args and a scratch
// image's architecture.
func TestPlatform(t *testing.T) {
	t.Parallel()
	s, err := layers.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	res, out, err := testBuild(t, s, "FROM scratch\nARG TARGETARCH\nARG TARGETPLATFORM\nENV A=$TARGETARCH P=$TARGETPLATFORM\n", map[string]string{}, Options{Platform: "linux/arm64/v8"})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cf, _, err := s.Config(res.ID)
	if err != nil {
		t.Fatal(err)
	}
	if cf.Architecture != "arm64" || cf.Variant != "v8" || cf.OS != "linux" {
		t.Errorf("platform %s/%s/%s, want linux/arm64/v8", cf.OS, cf.Architecture, cf.Variant)
	}
	if d := cmp.Diff([]string{defaultPath, "A=arm64", "P=linux/arm64/v8"}, cf.Config.Env); d != "" {
		t.Errorf("Env (-want +got):\n%s", d)
	}
	if _, _, err := testBuild(t, s, "FROM scratch\n", map[string]string{}, Options{Platform: "not/a/plat/form"}); err == nil {
		t.Errorf("a bad --platform built")
	}
}
