package integration

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestBadInput runs each bad command against a store that holds one image
// and wants exit 125, exactly one line on stderr that says what was wrong,
// and the store unchanged.
func TestBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// args builds the command; it may create files under the test dir.
		args  func(t *testing.T, e *roostEnv) []string
		stdin string
		inMsg []string // parts of the error line
	}{
		{name: "missing tar", inMsg: []string{"missing.tar", "no such file"}, args: func(t *testing.T, e *roostEnv) []string {
			return []string{"import", e.path("missing.tar"), "x:1"}
		}},
		{name: "missing directory source", inMsg: []string{"no-such-dir"}, args: func(t *testing.T, e *roostEnv) []string {
			return []string{"import", e.path("no-such-dir") + "/", "x:1"}
		}},
		{name: "unreadable tar", inMsg: []string{"unreadable.tar", "permission denied"}, args: func(t *testing.T, e *roostEnv) []string {
			smallTar(t, e.path("unreadable.tar"), "secret")
			if err := os.Chmod(e.path("unreadable.tar"), 0); err != nil {
				t.Fatal(err)
			}
			return []string{"import", e.path("unreadable.tar"), "x:1"}
		}},
		{name: "not a tar", inMsg: []string{"tar"}, args: func(t *testing.T, e *roostEnv) []string {
			text := strings.Repeat("This is a text file, not an archive.\n", 100)
			if err := os.WriteFile(e.path("notes.txt"), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			return []string{"import", e.path("notes.txt"), "x:1"}
		}},
		{name: "short file that is not a tar", inMsg: []string{"tar"}, args: func(t *testing.T, e *roostEnv) []string {
			if err := os.WriteFile(e.path("hello.txt"), []byte("hello\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			return []string{"import", e.path("hello.txt"), "x:1"}
		}},
		{name: "not a tar on stdin", inMsg: []string{"tar"}, stdin: strings.Repeat("plain text, no archive\n", 200), args: func(t *testing.T, e *roostEnv) []string {
			return []string{"import", "-", "x:1"}
		}},
		{name: "truncated tar", inMsg: []string{"truncated"}, args: func(t *testing.T, e *roostEnv) []string {
			var buf bytes.Buffer
			if err := writeTarTo(&buf, []entry{{name: "big", body: strings.Repeat("0123456789", 10000)}, {name: "after", body: "x"}}); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(e.path("truncated.tar"), buf.Bytes()[:30001], 0o644); err != nil {
				t.Fatal(err)
			}
			return []string{"import", e.path("truncated.tar"), "x:1"}
		}},
		{name: "truncated gzip tar", inMsg: []string{"cut.tar.gz"}, args: func(t *testing.T, e *roostEnv) []string {
			smallTar(t, e.path("full.tar"), "full")
			gzipFile(t, e.path("full.tar"), e.path("full.tar.gz"))
			b, err := os.ReadFile(e.path("full.tar.gz"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(e.path("cut.tar.gz"), b[:len(b)/2], 0o644); err != nil {
				t.Fatal(err)
			}
			return []string{"import", e.path("cut.tar.gz"), "x:1"}
		}},
		{name: "entry with ..", inMsg: []string{"../escape"}, args: func(t *testing.T, e *roostEnv) []string {
			writeTar(t, e.path("dotdot.tar"), []entry{{name: "ok", body: "fine"}, {name: "../escape", body: "evil"}})
			return []string{"import", e.path("dotdot.tar"), "x:1"}
		}},
		{name: "entry climbing out through a directory", inMsg: []string{"a/../../escape"}, args: func(t *testing.T, e *roostEnv) []string {
			writeTar(t, e.path("dotdot2.tar"), []entry{{name: "a/", typ: tar.TypeDir}, {name: "a/../../escape", body: "evil"}})
			return []string{"import", e.path("dotdot2.tar"), "x:1"}
		}},
		{name: "entry with an absolute path", inMsg: []string{"/etc/evil"}, args: func(t *testing.T, e *roostEnv) []string {
			writeTar(t, e.path("abs.tar"), []entry{{name: "/etc/evil", body: "evil"}})
			return []string{"import", e.path("abs.tar"), "x:1"}
		}},
		{name: "hard link out of the root", inMsg: []string{".."}, args: func(t *testing.T, e *roostEnv) []string {
			writeTar(t, e.path("link.tar"), []entry{{name: "passwd", typ: tar.TypeLink, linkname: "../../etc/passwd"}})
			return []string{"import", e.path("link.tar"), "x:1"}
		}},
		{name: "invalid reference UPPER:case", inMsg: []string{"UPPER:case"}, args: func(t *testing.T, e *roostEnv) []string {
			return []string{"import", e.path("good.tar"), "UPPER:case"}
		}},
		{name: "invalid reference a::b", inMsg: []string{"a::b"}, args: func(t *testing.T, e *roostEnv) []string {
			return []string{"import", e.path("good.tar"), "a::b"}
		}},
		{name: "tag to UPPER:case", inMsg: []string{"UPPER:case"}, args: func(t *testing.T, e *roostEnv) []string {
			return []string{"tag", "base:1", "UPPER:case"}
		}},
		{name: "tag to a::b", inMsg: []string{"a::b"}, args: func(t *testing.T, e *roostEnv) []string {
			return []string{"tag", "base:1", "a::b"}
		}},
		{name: "inspect a::b", inMsg: []string{"a::b"}, args: func(t *testing.T, e *roostEnv) []string {
			return []string{"image", "inspect", "a::b"}
		}},
		{name: "image inspect unknown", inMsg: []string{"nope:1"}, args: func(t *testing.T, e *roostEnv) []string {
			return []string{"image", "inspect", "nope:1"}
		}},
		{name: "inspect unknown", inMsg: []string{"nope:1"}, args: func(t *testing.T, e *roostEnv) []string {
			return []string{"inspect", "nope:1"}
		}},
		{name: "rmi unknown", inMsg: []string{"nope:1"}, args: func(t *testing.T, e *roostEnv) []string {
			return []string{"rmi", "nope:1"}
		}},
		{name: "image rm unknown ID", inMsg: []string{"0123456789ab"}, args: func(t *testing.T, e *roostEnv) []string {
			return []string{"image", "rm", "0123456789ab"}
		}},
		{name: "save unknown", inMsg: []string{"nope:1"}, args: func(t *testing.T, e *roostEnv) []string {
			return []string{"save", "-o", e.path("out.tar"), "nope:1"}
		}},
		{name: "tag unknown", inMsg: []string{"nope:1"}, args: func(t *testing.T, e *roostEnv) []string {
			return []string{"tag", "nope:1", "x:1"}
		}},
		{name: "history unknown", inMsg: []string{"nope:1"}, args: func(t *testing.T, e *roostEnv) []string {
			return []string{"history", "nope:1"}
		}},
		{name: "save to /proc", inMsg: []string{"/proc/nope/x.tar"}, args: func(t *testing.T, e *roostEnv) []string {
			return []string{"save", "-o", "/proc/nope/x.tar", "base:1"}
		}},
		{name: "save to a read-only directory", inMsg: []string{"ro/x.tar", "permission denied"}, args: func(t *testing.T, e *roostEnv) []string {
			if err := os.Mkdir(e.path("ro"), 0o555); err != nil {
				t.Fatal(err)
			}
			return []string{"save", "-o", e.path("ro", "x.tar"), "base:1"}
		}},
		{name: "save to a missing directory", inMsg: []string{"missing/x.tar"}, args: func(t *testing.T, e *roostEnv) []string {
			return []string{"save", "-o", e.path("missing", "x.tar"), "base:1"}
		}},
		{name: "save with unknown format", inMsg: []string{"zip"}, args: func(t *testing.T, e *roostEnv) []string {
			return []string{"save", "--format", "zip", "-o", e.path("x.zip"), "base:1"}
		}},
		{name: "load missing file", inMsg: []string{"missing.tar"}, args: func(t *testing.T, e *roostEnv) []string {
			return []string{"load", "-i", e.path("missing.tar")}
		}},
		{name: "load a root filesystem tar", inMsg: []string{"manifest.json"}, args: func(t *testing.T, e *roostEnv) []string {
			return []string{"load", "-i", e.path("good.tar")}
		}},
		{name: "load a text file", inMsg: []string{"load"}, args: func(t *testing.T, e *roostEnv) []string {
			if err := os.WriteFile(e.path("notes.txt"), []byte(strings.Repeat("no archive here\n", 100)), 0o644); err != nil {
				t.Fatal(err)
			}
			return []string{"load", "-i", e.path("notes.txt")}
		}},
		{name: "load a truncated archive", inMsg: []string{"truncated"}, args: func(t *testing.T, e *roostEnv) []string {
			e.ok("save", "-o", e.path("full.tar"), "base:1")
			b, err := os.ReadFile(e.path("full.tar"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(e.path("cut.tar"), b[:len(b)*2/3+1], 0o644); err != nil {
				t.Fatal(err)
			}
			return []string{"load", "-i", e.path("cut.tar")}
		}},
		{name: "import without arguments", inMsg: []string{"import"}, args: func(t *testing.T, e *roostEnv) []string {
			return []string{"import"}
		}},
		{name: "unknown flag", inMsg: []string{"bogus"}, args: func(t *testing.T, e *roostEnv) []string {
			return []string{"images", "--bogus"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newRoost(t)
			smallTar(t, e.path("good.tar"), "good")
			e.importTar(e.path("good.tar"), "base:1")
			args := tt.args(t, e)
			outDir := dirListing(t, e.dir)
			before := e.snapshot()
			msg := e.wantOneLineError(e.runIn(strings.NewReader(tt.stdin), args...))
			t.Logf("stderr: %s", msg)
			for _, part := range tt.inMsg {
				if !strings.Contains(msg, part) {
					t.Errorf("error %q lacks %q", msg, part)
				}
			}
			e.wantUnchanged(before)
			if d := cmp.Diff(outDir, dirListing(t, e.dir)); d != "" {
				t.Errorf("files appeared or vanished beside the store (-before +after):\n%s", d)
			}
		})
	}
}

// dirListing lists the files under dir outside the store and the tool
// directories, so that a failed save leaves no output or temp file behind.
func dirListing(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		switch rel {
		case "store", "run", "tmp", "home", "config", "data":
			return filepath.SkipDir
		}
		out = append(out, rel)
		return nil
	})
	return out
}

// flipByte inverts one byte of a file in the middle of its contents.
func flipByte(t *testing.T, p string) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, fi.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptStore flips a byte of stored content and wants every command
// that reads it to fail naming the digest, without touching the store.
func TestCorruptStore(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// corrupt damages the store and returns the digest an error must name.
		corrupt func(t *testing.T, e *roostEnv, img inspected) string
		cmds    [][]string
	}{
		{
			name: "config blob",
			corrupt: func(t *testing.T, e *roostEnv, img inspected) string {
				flipByte(t, filepath.Join(e.Root, "blobs", "sha256", strings.TrimPrefix(img.ID, "sha256:")))
				return img.ID
			},
			cmds: [][]string{
				{"image", "inspect", "myimg:1"},
				{"inspect", "myimg:1"},
				{"history", "myimg:1"},
				{"save", "-o", "OUT", "myimg:1"},
				{"save", "--format", "oci-archive", "-o", "OUT", "myimg:1"},
			},
		},
		{
			name: "manifest blob",
			corrupt: func(t *testing.T, e *roostEnv, img inspected) string {
				// The store keeps two blobs for an imported image: its config
				// (named by the image ID) and its manifest.
				for _, n := range e.dirNames("blobs/sha256") {
					if "sha256:"+n != img.ID {
						flipByte(t, filepath.Join(e.Root, "blobs", "sha256", n))
						return "sha256:" + n
					}
				}
				t.Fatalf("blobs/sha256 holds no manifest beside the config %s", img.ID)
				return ""
			},
			cmds: [][]string{
				{"save", "-o", "OUT", "myimg:1"},
				{"save", "--format", "oci-archive", "-o", "OUT", "myimg:1"},
			},
		},
		{
			name: "layer tar",
			corrupt: func(t *testing.T, e *roostEnv, img inspected) string {
				d := img.RootFS.Layers[0]
				flipByte(t, filepath.Join(e.Root, "layers", strings.TrimPrefix(d, "sha256:"), "layer.tar"))
				return d
			},
			cmds: [][]string{
				{"save", "-o", "OUT", "myimg:1"},
				{"save", "--format", "oci-archive", "-o", "OUT", "myimg:1"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newRoost(t)
			smallTar(t, e.path("rootfs.tar"), strings.Repeat("payload ", 5000))
			e.importTar(e.path("rootfs.tar"), "myimg:1")
			digest := tt.corrupt(t, e, e.inspect("myimg:1"))
			before := e.snapshot()
			for _, cmd := range tt.cmds {
				out := e.path("out.tar")
				args := append([]string(nil), cmd...)
				for i := range args {
					if args[i] == "OUT" {
						args[i] = out
					}
				}
				msg := e.fails(args...)
				if !strings.Contains(msg, digest) {
					t.Errorf("%v: error %q does not name the corrupt %s", cmd, msg, digest)
				}
				if _, err := os.Stat(out); err == nil {
					t.Errorf("%v: a failed save left %s behind", cmd, out)
					os.Remove(out)
				}
				ents, _ := filepath.Glob(e.path(".out.tar*"))
				if len(ents) > 0 {
					t.Errorf("%v: a failed save left temp files %q", cmd, ents)
				}
			}
			e.wantUnchanged(before)
		})
	}
}

// writeBigTar writes a tar holding one file of size random bytes.
func writeBigTar(t *testing.T, p string, size int64) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	if err := tw.WriteHeader(&tar.Header{Name: "random.bin", Mode: 0o644, Size: size, Typeflag: tar.TypeReg, ModTime: fixedTime}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(tw, rand.Reader, size); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// dirBytes is the total size of the regular files under dir.
func dirBytes(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// TestKillDuringImport kills roost with SIGKILL in the middle of a large
// import: no partial image may show, and prune must remove the leftovers.
func TestKillDuringImport(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	smallTar(t, e.path("keep.tar"), "keep")
	keep := e.importTar(e.path("keep.tar"), "keep:1")
	keepLayers := e.inspect("keep:1").RootFS.Layers
	writeBigTar(t, e.path("big.tar"), 300<<20)

	for _, source := range []string{"file", "stdin"} {
		cmd := exec.Command(roostBin, "import", e.path("big.tar"), "big:1")
		if source == "stdin" {
			f, err := os.Open(e.path("big.tar"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			cmd = exec.Command(roostBin, "import", "-", "big:1")
			cmd.Stdin = f
		}
		cmd.Env = e.environ()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		// Kill once the import has written something, or after 300 ms at the latest.
		deadline := time.Now().Add(300 * time.Millisecond)
		for time.Now().Before(deadline) && dirBytes(filepath.Join(e.Root, "tmp")) < 16<<20 {
			time.Sleep(5 * time.Millisecond)
		}
		written := dirBytes(filepath.Join(e.Root, "tmp"))
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("%s: kill roost: %v (did the import finish already? stderr: %s)", source, err, stderr.String())
		}
		err := <-done
		if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("%s: roost was not killed mid-import: %v (stderr: %s)", source, err, stderr.String())
		}
		t.Logf("%s: killed after %d MiB were written under tmp/", source, written>>20)

		if got := e.imageIDs(); !cmp.Equal(got, []string{keep}) {
			t.Errorf("%s: images after kill -9 = %q, want only %s", source, got, keep)
		}
		if got := strings.TrimSpace(e.ok("images", "--format", "{{.Repository}}:{{.Tag}}")); got != "keep:1" {
			t.Errorf("%s: images after kill -9 lists %q, want only keep:1", source, got)
		}
		e.fails("image", "inspect", "big:1")
	}

	e.ok("image", "prune", "-f")
	if got := e.dirNames("tmp"); len(got) != 0 {
		t.Errorf("tmp/ after image prune -f = %q, want empty", got)
	}
	var want []string
	for _, l := range keepLayers {
		want = append(want, strings.TrimPrefix(l, "sha256:"))
	}
	sort.Strings(want)
	if got := e.dirNames("layers"); !cmp.Equal(got, want) {
		t.Errorf("layers/ after image prune -f = %q, want only keep:1's %q", got, want)
	}
	// What prune kept is whole: the image saves (which verifies every digest).
	e.ok("save", "-o", e.path("keep-saved.tar"), "keep:1")
	// And the import works when not interrupted.
	e.importTar(e.path("big.tar"), "big:1")
	if got := fmt.Sprint(len(e.imageIDs())); got != "2" {
		t.Errorf("after a full import, %s images, want 2", got)
	}
}
