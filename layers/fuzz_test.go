package layers

import (
	"archive/tar"
	"bytes"
	"strings"
	"testing"
)

// FuzzIndexTar checks that indexing never panics, that every indexed name
// stays inside the layer root, and that regular file offsets lie inside the
// stream. The seed corpus is in testdata/fuzz/FuzzIndexTar.
func FuzzIndexTar(f *testing.F) {
	f.Add(makeTar(f, dir("./"), file("./etc/passwd", "root"), tarEntry{hdr: tar.Header{Name: "l", Typeflag: tar.TypeLink, Linkname: "etc/passwd"}}))
	f.Add(makeTar(f, file("../x", "y")))
	f.Fuzz(func(t *testing.T, data []byte) {
		idx, err := indexTar(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, e := range idx.Entries {
			if strings.HasPrefix(e.Name, "/") || e.Name == ".." || strings.HasPrefix(e.Name, "../") {
				t.Errorf("entry %q escapes the root", e.Name)
			}
			if e.Typeflag == tar.TypeReg && !e.Sparse && e.DataOffset+e.Size > int64(len(data)) {
				t.Errorf("entry %q: data %d+%d past the end %d", e.Name, e.DataOffset, e.Size, len(data))
			}
		}
	})
}

// FuzzParseReference checks that a reference that parses normalizes to a
// form that parses to itself.
func FuzzParseReference(f *testing.F) {
	for _, s := range []string{"busybox", "me/app:1.0", "localhost:5000/a/b:c", "UPPER:case", "a::b", "x@sha256:" + strings.Repeat("a", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := ParseReference(s)
		if err != nil {
			return
		}
		n := Normalized(ref)
		again, err := ParseReference(n)
		if err != nil {
			t.Fatalf("normalized %q of %q does not parse: %v", n, s, err)
		}
		if Normalized(again) != n {
			t.Errorf("Normalized(%q) = %q, then %q", s, n, Normalized(again))
		}
	})
}
