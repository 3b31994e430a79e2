//go:build linux

package container

import (
	"debug/elf"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestProgramFiles: what the agent preloads for a command is the program
// init's lookup finds, its loader and its libraries, resolved inside the
// root (merged /usr symlinks included).
func TestProgramFiles(t *testing.T) {
	host, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	interp := ""
	for _, ph := range f.Progs {
		if ph.Type == elf.PT_INTERP {
			b := make([]byte, ph.Filesz)
			ph.ReadAt(b, 0)
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	libs, _ := f.ImportedLibraries()
	f.Close()
	if interp == "" || len(libs) == 0 {
		t.Fatal("the test needs a dynamically linked /bin/true on the host")
	}
	root := t.TempDir()
	write := func(p string, b []byte, mode os.FileMode) string {
		t.Helper()
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, b, mode); err != nil {
			t.Fatal(err)
		}
		return full
	}
	// Merged /usr: /bin and /lib are symlinks into /usr.
	for _, l := range []string{"bin", "lib"} {
		if err := os.MkdirAll(filepath.Join(root, "usr", l), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("usr/"+l, filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	prog := write("usr/bin/true", host, 0o755)
	write("usr/local/bin/true", []byte("not executable"), 0o644)
	want := []string{prog}
	if p, err := filepath.EvalSymlinks(filepath.Dir(filepath.Join(root, interp))); err == nil {
		want = append(want, write(strings.TrimPrefix(filepath.Join(p, filepath.Base(interp)), root), nil, 0o755))
	} else {
		want = append(want, write(interp, nil, 0o755))
	}
	for _, lib := range libs {
		want = append(want, write(filepath.Join("usr/lib", libraryDirs()[0][len("/lib/"):], lib), nil, 0o644))
	}
	var got []string
	programFiles(root, "true", []string{"PATH=/usr/local/bin:/bin"}, "/", func(p string) { got = append(got, p) })
	if !slices.Equal(got, want) {
		t.Errorf("for true:\n got %q\nwant %q", got, want)
	}
	// A path with a slash is taken from the working directory; a script
	// has no loader or libraries; nothing found, nothing visited.
	script := write("srv/run.sh", []byte("#!/bin/sh\n"), 0o755)
	got = nil
	programFiles(root, "./run.sh", nil, "/srv", func(p string) { got = append(got, p) })
	if !slices.Equal(got, []string{script}) {
		t.Errorf("for ./run.sh in /srv: %q, want %q", got, script)
	}
	got = nil
	programFiles(root, "missing", nil, "/", func(p string) { got = append(got, p) })
	if len(got) != 0 {
		t.Errorf("for a missing command: %q", got)
	}
}
