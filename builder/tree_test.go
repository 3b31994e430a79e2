package builder

import (
	"archive/tar"
	"bytes"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/roost-containers/roost/layers"
)

type tarEntry struct {
	name, link string
	typ        byte
	body       string
}

func putTar(t *testing.T, s *layers.Store, entries ...tarEntry) v1.Hash {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o755, Size: int64(len(e.body))}
		if e.typ == 0 {
			h.Typeflag, h.Mode = tar.TypeReg, 0o644
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	d, _, err := s.PutLayer(&b)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestTree: the merged view applies whiteouts and opaque directories, and
// resolve follows symlinks inside the tree as a chroot would.
func TestTree(t *testing.T) {
	t.Parallel()
	s, err := layers.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l1 := putTar(t, s,
		tarEntry{name: "usr/", typ: tar.TypeDir}, tarEntry{name: "usr/bin/", typ: tar.TypeDir}, tarEntry{name: "usr/bin/sh", body: "sh"},
		tarEntry{name: "bin", typ: tar.TypeSymlink, link: "usr/bin"},
		tarEntry{name: "abs", typ: tar.TypeSymlink, link: "/usr/bin/sh"},
		tarEntry{name: "loop", typ: tar.TypeSymlink, link: "loop"},
		tarEntry{name: "gone/", typ: tar.TypeDir}, tarEntry{name: "gone/f", body: "x"},
		tarEntry{name: "opq/", typ: tar.TypeDir}, tarEntry{name: "opq/old", body: "old"},
		tarEntry{name: "etc/", typ: tar.TypeDir}, tarEntry{name: "etc/passwd", body: "root:x:0:0::/:/bin/sh\napp:x:7:8::/:/bin/sh\n"},
	)
	l2 := putTar(t, s,
		tarEntry{name: ".wh.gone"},
		tarEntry{name: "opq/", typ: tar.TypeDir}, tarEntry{name: "opq/.wh..wh..opq"}, tarEntry{name: "opq/new", body: "new"},
	)
	tr, err := loadTree(s, []v1.Hash{l1, l2})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for p := range tr.files {
		names = append(names, p)
	}
	sort.Strings(names)
	want := []string{"abs", "bin", "etc", "etc/passwd", "loop", "opq", "opq/new", "usr", "usr/bin", "usr/bin/sh"}
	if d := cmp.Diff(want, names); d != "" {
		t.Errorf("merged tree (-want +got):\n%s", d)
	}
	for _, tc := range []struct {
		in         string
		followLast bool
		want       string
		exists     bool
	}{
		{"/bin/sh", true, "usr/bin/sh", true},
		{"/bin", false, "bin", true},
		{"/bin/", true, "usr/bin", true},
		{"/abs", true, "usr/bin/sh", true},
		{"/abs", false, "abs", true},
		{"/bin/../etc/passwd", true, "etc/passwd", true}, // ".." is lexical, as in buildkit (continuity RootPath)
		{"/../../etc/passwd", true, "etc/passwd", true},
		{"/loop/x", true, "loop/x", false},
		{"/new/dir", true, "new/dir", false},
	} {
		got, _, ok := tr.resolve(tc.in, tc.followLast)
		if got != tc.want || ok != tc.exists {
			t.Errorf("resolve(%q, %v) = %q, %v; want %q, %v", tc.in, tc.followLast, got, ok, tc.want, tc.exists)
		}
	}
	if b, err := tr.readFile("/bin/sh"); err != nil || string(b) != "sh" {
		t.Errorf("readFile /bin/sh = %q, %v", b, err)
	}
	own, err := resolveOwner("app", tr)
	if err != nil || own != (owner{set: true, uid: 7, gid: 8}) {
		t.Errorf("resolveOwner(app) = %+v, %v", own, err)
	}
	if own, _ := resolveOwner("5", tr); own != (owner{set: true, uid: 5, gid: 5}) {
		t.Errorf("resolveOwner(5) = %+v, want 5:5 as Docker", own)
	}
	if _, err := resolveOwner("nobody-here", tr); err == nil {
		t.Errorf("resolveOwner of an unknown user succeeded")
	}
}
