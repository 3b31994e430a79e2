package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// roost runs the CLI in-process against root and returns stdout, stderr and the exit code.
func roost(t *testing.T, root string, stdin []byte, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(root, "config"))
	code := Run(context.Background(), append([]string{"roost", "--root", root}, args...), bytes.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code
}

func rootfsTar(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range files {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(body))
	}
	tw.Close()
	return buf.Bytes()
}

func TestImagesOutput(t *testing.T) {
	root := t.TempDir()
	out, errs, code := roost(t, root, rootfsTar(t, map[string]string{"etc/os-release": "ID=x\n"}), "import", "-c", `CMD ["sh"]`, "-", "myimg:1.0")
	if code != 0 || !strings.HasPrefix(out, "sha256:") {
		t.Fatalf("import: code %d out %q err %q", code, out, errs)
	}
	id := strings.TrimSpace(strings.TrimPrefix(out, "sha256:"))
	if _, _, code := roost(t, root, nil, "tag", "myimg:1.0", "registry.example:5000/team/myimg:latest"); code != 0 {
		t.Fatalf("tag: code %d", code)
	}
	out, _, _ = roost(t, root, nil, "images")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "REPOSITORY ") || !strings.Contains(lines[0], "IMAGE ID") || !strings.HasSuffix(lines[0], "SIZE") {
		t.Fatalf("images:\n%s", out)
	}
	for _, l := range lines[1:] {
		if !strings.Contains(l, id[:12]) {
			t.Errorf("row %q lacks the short ID %s", l, id[:12])
		}
	}
	out, _, _ = roost(t, root, nil, "images", "--format", "{{.Repository}}:{{.Tag}}")
	if d := cmp.Diff("myimg:1.0\nregistry.example:5000/team/myimg:latest\n", out); d != "" {
		t.Errorf("images --format (-want +got):\n%s", d)
	}
	out, _, _ = roost(t, root, nil, "image", "ls", "-q")
	if out != id[:12]+"\n" {
		t.Errorf("image ls -q = %q, want one ID", out)
	}
	out, _, _ = roost(t, root, nil, "images", "--no-trunc", "--format", "json")
	var row map[string]string
	if err := json.Unmarshal([]byte(strings.Split(out, "\n")[0]), &row); err != nil || row["ID"] != "sha256:"+id {
		t.Errorf("images --format json: %q (%v)", out, err)
	}
	out, _, code = roost(t, root, nil, "image", "inspect", "myimg:1.0")
	var insp []struct {
		ID       string `json:"Id"`
		RepoTags []string
		Config   struct{ Cmd []string }
		RootFS   struct{ Layers []string }
		Os       string
	}
	if err := json.Unmarshal([]byte(out), &insp); err != nil || code != 0 {
		t.Fatalf("inspect: %v, code %d, %s", err, code, out)
	}
	if len(insp) != 1 || insp[0].ID != "sha256:"+id || insp[0].Os != "linux" || !cmp.Equal(insp[0].Config.Cmd, []string{"sh"}) || len(insp[0].RootFS.Layers) != 1 {
		t.Errorf("inspect = %+v", insp)
	}
	if d := cmp.Diff([]string{"myimg:1.0", "registry.example:5000/team/myimg:latest"}, insp[0].RepoTags); d != "" {
		t.Errorf("RepoTags (-want +got):\n%s", d)
	}
	out, _, _ = roost(t, root, nil, "inspect", "--format", "{{.Os}} {{index .Config.Cmd 0}}", "myimg:1.0")
	if out != "linux sh\n" {
		t.Errorf("inspect --format = %q", out)
	}
}

func TestErrorsAreOneLine(t *testing.T) {
	root := t.TempDir()
	notTar := filepath.Join(root, "not.tar")
	os.WriteFile(notTar, bytes.Repeat([]byte("hello "), 200), 0o644)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing tar", []string{"import", filepath.Join(root, "nope.tar")}, "no such file"},
		{"not a tar", []string{"import", notTar}, "not a tar"},
		{"uppercase", []string{"import", notTar, "UPPER:case"}, "lowercase"},
		{"double colon", []string{"tag", "a", "a::b"}, "invalid reference"},
		{"unknown image", []string{"image", "inspect", "nosuch"}, "no such"},
		{"unknown image rmi", []string{"rmi", "nosuch:1"}, "no such image"},
		{"save unwritable", []string{"save", "-o", "/proc/nope/x.tar", "busybox"}, "save to /proc/nope/x.tar"},
		{"save unknown", []string{"save", "-o", filepath.Join(root, "x.tar"), "busybox"}, "no such image"},
		{"planned", []string{"cp", "a", "b"}, "not implemented yet"},
		{"build without a Dockerfile", []string{"build", root}, "Dockerfile: cannot read the Dockerfile"},
		{"pull unknown host", []string{"pull", "nosuch.invalid/x"}, "nosuch.invalid"},
		{"run unknown image", []string{"run", "--rm", "nosuch"}, "unable to find image"},
		{"wrong args", []string{"tag", "a"}, "exactly two"},
		{"bad format", []string{"images", "--format", "{{.Nope"}, "template"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errs, code := roost(t, root, nil, tc.args...)
			if code != 125 {
				t.Errorf("exit code %d, want 125 (out %q)", code, out)
			}
			if strings.Count(errs, "\n") != 1 || !strings.Contains(errs, tc.want) {
				t.Errorf("stderr %q: want one line containing %q", errs, tc.want)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	root := t.TempDir()
	cfg := filepath.Join(root, "c.toml")
	os.WriteFile(cfg, []byte("root = \"/tmp/x\"\nbogus = true\n"), 0o644)
	_, errs, code := roost(t, root, nil, "--config", cfg, "info")
	if code != 125 || !strings.Contains(errs, cfg+":2") || !strings.Contains(errs, "bogus") {
		t.Errorf("code %d stderr %q", code, errs)
	}
	t.Setenv("ROOST_CONFIG", cfg)
	var out, e bytes.Buffer
	if code := Run(context.Background(), []string{"roost", "info"}, nil, &out, &e); code != 125 || !strings.Contains(e.String(), "bogus") {
		t.Errorf("ROOST_CONFIG ignored: code %d stderr %q", code, e.String())
	}
}
