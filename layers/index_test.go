package layers

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/gob"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// indexSample has an entry of each kind, with the values at the edges of
// their fields.
var indexSample = &Index{Entries: []Entry{
	{Name: ".", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(0, 0), HeaderOffset: 0, DataOffset: 512},
	{Name: "usr/bin/ping", Typeflag: tar.TypeReg, Mode: 0o4755, UID: 0, GID: 0, Size: 3, ModTime: time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC),
		Xattrs: map[string]string{"security.capability": "\x01\x00\x00\x02\x00", "user.k": ""}, HeaderOffset: 1024, DataOffset: 1536},
	{Name: "var/www/" + strings.Repeat("long", 100), Typeflag: tar.TypeReg, Mode: 0o644, UID: 1<<31 - 1, GID: 65534, Size: 1 << 40, ModTime: time.Date(1901, 1, 2, 3, 4, 5, 999999999, time.UTC), HeaderOffset: -1, DataOffset: 1 << 41, Sparse: true},
	{Name: "etc/sym", Typeflag: tar.TypeSymlink, Mode: 0o777, Linkname: "/etc/passwd", ModTime: time.Time{}},
	{Name: "etc/link", Typeflag: tar.TypeLink, Linkname: "etc/passwd"},
	{Name: "dev/sda", Typeflag: tar.TypeBlock, Mode: 0o660, GID: 6, Devmajor: 8, Devminor: 1 << 20},
	{Name: "etc/.wh.motd", Typeflag: tar.TypeReg},
}}

func encodeIndex(t testing.TB, idx *Index) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteIndex(&b, idx); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestIndexRoundTrip: what WriteIndex writes, ReadIndex reads back.
func TestIndexRoundTrip(t *testing.T) {
	for _, idx := range []*Index{indexSample, {Entries: []Entry{}}} {
		got, err := ReadIndex(bytes.NewReader(encodeIndex(t, idx)))
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(idx, got); d != "" {
			t.Errorf("read back (-wrote +read):\n%s", d)
		}
	}
}

// TestIndexFormat1: an index written as gob, the format before, is read;
// ReadIndexFile writes a store layer's again in the current format, leaving
// nothing else behind, and one outside a store as it is.
func TestIndexFormat1(t *testing.T) {
	var b bytes.Buffer
	bw := bufio.NewWriter(&b)
	enc := gob.NewEncoder(bw)
	if err := enc.Encode(gobIndexVersion); err != nil {
		t.Fatal(err)
	}
	if err := enc.Encode(indexSample); err != nil {
		t.Fatal(err)
	}
	bw.Flush()
	alone := filepath.Join(t.TempDir(), "index")
	if err := os.WriteFile(alone, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadIndexFile(alone); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(alone); !bytes.Equal(got, b.Bytes()) {
		t.Error("an index outside a store was rewritten")
	}
	s := newStore(t)
	dir := filepath.Join(s.Root(), "layers", "x")
	p := filepath.Join(dir, "index")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, when := range []string{"format 1", "rewritten"} {
		got, err := ReadIndexFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(indexSample, got); d != "" {
			t.Errorf("%s (-wrote +read):\n%s", when, d)
		}
		if b, _ := os.ReadFile(p); !bytes.HasPrefix(b, []byte(indexMagic)) {
			t.Errorf("%s: the file is not in the current format", when)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("the index's directory holds %d files, want 1", len(ents))
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Root(), "tmp")); len(ents) != 0 {
		t.Errorf("tmp/ holds %d files, want none", len(ents))
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("rewritten index: %v, %v; want mode 644", fi.Mode(), err)
	}
}

// TestIndexCorrupt: an index cut short anywhere, or with more after its
// last entry, is an error, not a panic or a shorter index.
func TestIndexCorrupt(t *testing.T) {
	b := encodeIndex(t, indexSample)
	for n := len(indexMagic); n < len(b); n++ {
		if idx, err := ReadIndex(bytes.NewReader(b[:n])); err == nil {
			t.Fatalf("cut at %d of %d bytes: read %d entries, want an error", n, len(b), len(idx.Entries))
		}
	}
	if _, err := ReadIndex(bytes.NewReader(append(b, 0))); err == nil {
		t.Error("a byte after the last entry: no error")
	}
	if _, err := ReadIndex(strings.NewReader(indexMagic + "\xff\xff\xff\xff\x0f")); err == nil {
		t.Error("an entry count larger than the file: no error")
	}
	// A damaged index file says what to do.
	p := filepath.Join(t.TempDir(), "index")
	if err := os.WriteFile(p, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadIndexFile(p); err == nil || !strings.Contains(err.Error(), "rmi -f") {
		t.Errorf("ReadIndexFile of half an index: %v, want the damage and what to do", err)
	}
}

// FuzzReadIndex: ReadIndex never panics, and what it reads it writes back
// to an index it reads the same.
func FuzzReadIndex(f *testing.F) {
	f.Add(encodeIndex(f, indexSample))
	f.Add([]byte(indexMagic + "\x01\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		idx, err := ReadIndex(bytes.NewReader(b))
		if err != nil {
			return
		}
		again, err := ReadIndex(bytes.NewReader(encodeIndex(t, idx)))
		if err != nil {
			t.Fatalf("rewritten index: %v", err)
		}
		if d := cmp.Diff(idx, again); d != "" {
			t.Errorf("rewritten (-first +second):\n%s", d)
		}
	})
}
