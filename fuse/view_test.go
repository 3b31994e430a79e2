//go:build linux

package fuse

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/roost-containers/roost/layers"
)

// viewStacks are layer stacks for the merged view's tests: every rule of
// buildLowerTree, hard links, xattrs, devices.
var viewStacks = map[string][][]tarEntry{
	"base": {baseLayer},
	"whiteouts and opaque": {
		{dir("d"), reg("d/x", "1"), reg("d/y", "2"), dir("e"), reg("e/z", "3"), dir("o"), reg("o/old", "o")},
		{reg("d/.wh.x", ""), reg(".wh.e", ""), dir("o"), reg("o/.wh..wh..opq", ""), reg("o/new", "n"), reg("e/again", "a")},
	},
	"replacements": {
		{reg("p", "file"), dir("q"), reg("q/in", "x"), reg("f", "one"), reg("f", "two")},
		{dir("p"), reg("p/q", "x"), reg("q", "now a file"), reg("a/b/c", "implied")},
	},
	"hard links across layers": {
		{dir("bin"), {name: "bin/prog", mode: 0o755, body: "ELF"}, {name: "bin/alias", typ: tar.TypeLink, link: "bin/prog"}, {name: "bin/third", typ: tar.TypeLink, link: "bin/prog"}},
		{reg("bin/.wh.third", ""), {name: "lib", typ: tar.TypeSymlink, link: "usr/lib"}},
	},
}

// walkTree lists everything a lookup in t can find, one line per name:
// its attributes, and for a file reached before under another name, that
// name (hard links share one file).
func walkTree(t *lowerTree) []string {
	var out []string
	seen := map[*lowerFile]string{}
	var walk func(p string, n *lowerNode)
	walk = func(p string, n *lowerNode) {
		f := n.file
		line := fmt.Sprintf("%s mode=%o uid=%d gid=%d size=%d mtime=%d rdev=%d link=%q layer=%d data=%d header=%d ordinal=%d sparse=%v ino=%d nlink=%d names=%q",
			p, f.mode, f.uid, f.gid, f.size, f.mtime, f.rdev, f.linkname, f.layer, f.dataOffset, f.headerOffset, f.ordinal, f.sparse, f.ino, f.nlink, f.names)
		for _, k := range slices.Sorted(maps.Keys(f.xattrs)) {
			line += fmt.Sprintf(" %s=%q", k, f.xattrs[k])
		}
		if first, ok := seen[f]; ok {
			line += " same file as " + first
		} else {
			seen[f] = p
		}
		out = append(out, line)
		if !n.isDir() {
			return
		}
		for _, name := range n.sortedNames() {
			c := n.child(name)
			if c == nil {
				out = append(out, join(p, name)+" listed but not found")
				continue
			}
			walk(join(p, name), c)
		}
	}
	walk(".", t.root)
	return append(out, fmt.Sprintf("maxIno=%d nextIno=%d", t.maxIno, t.nextIno))
}

// TestMergedViewSameTree: a tree loaded from its merged view is the tree
// buildLowerTree built, name for name and field for field, with hard links
// sharing one file; a lookup by path finds the same.
func TestMergedViewSameTree(t *testing.T) {
	t.Parallel()
	for name, stack := range viewStacks {
		t.Run(name, func(t *testing.T) {
			lowers := storeLayers(t, stack...)
			built := buildLowerTree(lowers)
			loaded, err := loadView(marshalView(built, len(lowers)), len(lowers))
			if err != nil {
				t.Fatal(err)
			}
			want, got := walkTree(built), walkTree(loaded)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("loaded\n%s\nbuilt\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			for _, line := range want {
				p, _, _ := strings.Cut(line, " ")
				if strings.HasPrefix(p, "maxIno=") {
					continue
				}
				if b, l := built.lookup(p), loaded.lookup(p); b == nil || l == nil || b.file.ino != l.file.ino {
					t.Errorf("lookup %s: built %v, loaded %v", p, b != nil, l != nil)
				}
			}
			if loaded.lookup("no/such") != nil || loaded.lookup("etc/passwd/under-a-file") != nil {
				t.Error("a lookup of a missing path found something")
			}
			if _, err := loadView(marshalView(built, len(lowers)), len(lowers)+1); err == nil {
				t.Error("a view of another number of layers was loaded")
			}
			torn := marshalView(built, len(lowers))
			torn[len(torn)-1] ^= 1
			if _, err := loadView(torn, len(lowers)); err == nil {
				t.Error("a view with a byte changed was loaded")
			}
		})
	}
}

// TestMergedViewMount: a union given Options.MergedView writes the view
// when SaveView is called after its first mount (through the store's tmp/)
// and mounts from it the next time without reading an index; one that is
// not a view is replaced.
func TestMergedViewMount(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	st, err := layers.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	var lowers []Lower
	for _, l := range viewStacks["whiteouts and opaque"] {
		id, _, err := st.PutLayer(bytes.NewReader(makeTar(t, l)))
		if err != nil {
			t.Fatal(err)
		}
		lowers = append(lowers, Lower{Tar: st.LayerTar(id), IndexFile: st.LayerIndex(id)})
	}
	view := filepath.Join(root, "merged", "test")
	// mount mounts the union, and with fresh checks that the view is written
	// by SaveView, not before.
	mount := func(lowers []Lower, fresh bool) []string {
		t.Helper()
		tu := &testUnion{t: t, mnt: t.TempDir(), writable: t.TempDir()}
		m, err := New(tu.mnt, Options{Lowers: lowers, Writable: tu.writable, MergedView: view})
		if err != nil {
			t.Fatal(err)
		}
		tu.m = m
		defer tu.unmount()
		if _, err := os.Stat(view); fresh && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a view before SaveView: %v", err)
		}
		m.SaveView()
		if _, err := os.Stat(view); fresh && err != nil {
			t.Errorf("no view after SaveView: %v", err)
		}
		return tu.tree()
	}
	if _, err := os.Stat(view); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a view before the first mount: %v", err)
	}
	first := mount(lowers, true)
	want := []string{"d/", "d/y=2", "e/", "e/again=a", "o/", "o/new=n"}
	if strings.Join(first, "\n") != strings.Join(want, "\n") {
		t.Errorf("first mount\n%s\nwant\n%s", strings.Join(first, "\n"), strings.Join(want, "\n"))
	}
	if _, err := os.Stat(view); err != nil {
		t.Fatalf("no view after the first mount: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "tmp")); len(ents) != 0 {
		t.Errorf("tmp/ holds %d files after the view was written", len(ents))
	}
	noIndex := slices.Clone(lowers)
	for i := range noIndex {
		noIndex[i].IndexFile = filepath.Join(root, "missing-index")
	}
	if second := mount(noIndex, false); strings.Join(second, "\n") != strings.Join(want, "\n") {
		t.Errorf("mounted from the view\n%s\nwant\n%s", strings.Join(second, "\n"), strings.Join(want, "\n"))
	}
	if err := os.WriteFile(view, []byte(viewMagic+"not really"), 0o600); err != nil {
		t.Fatal(err)
	}
	if third := mount(lowers, false); strings.Join(third, "\n") != strings.Join(want, "\n") {
		t.Errorf("mounted over a bad view\n%s\nwant\n%s", strings.Join(third, "\n"), strings.Join(want, "\n"))
	}
	b, err := os.ReadFile(view)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loadView(b, len(lowers)); err != nil {
		t.Errorf("the bad view was not replaced: %v", err)
	}
}

// FuzzLoadView: loadView never panics, and a tree it loads can be walked
// whole without reading outside the view.
func FuzzLoadView(f *testing.F) {
	for _, stack := range viewStacks {
		lowers := storeLayers(f, stack...)
		f.Add(marshalView(buildLowerTree(lowers), len(lowers)), len(lowers))
	}
	f.Fuzz(func(t *testing.T, b []byte, layers int) {
		// With its checksum right, so that what follows is checked too.
		if body := len(viewMagic) + viewHeaderSize; len(b) >= body {
			binary.LittleEndian.PutUint32(b[len(viewMagic)+16:], crc32.Checksum(b[body:], castagnoli))
		}
		tree, err := loadView(b, layers)
		if err != nil {
			return
		}
		walkTree(tree)
	})
}
