//go:build linux

package fuse

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzMetaJournal: any journal bytes (a torn or corrupted file after a
// crash) load without a panic, and what loads survives compaction: the
// journal rewritten by openMeta loads to the same attributes and flags.
func FuzzMetaJournal(f *testing.F) {
	f.Add([]byte(`{"ino":1,"attr":{"mode":33188,"uid":33,"gid":33}}` + "\n" + `{"path":"a/b","flags":1}` + "\n"))
	f.Add([]byte(`{"ino":1,"attr":{"mode":16877,"uid":0,"gid":0,"xattrs":{"user.k":"dg=="}}}` + "\n" + `{"ino":1}` + "\n" + `{"path":"x"}` + "\n{\"ino\":"))
	f.Add([]byte("\n\n{}\nnot json\n"))
	f.Fuzz(func(t *testing.T, journal []byte) {
		dir := t.TempDir()
		upper := filepath.Join(dir, "upper")
		if err := os.Mkdir(upper, 0o700); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "meta")
		if err := os.WriteFile(path, journal, 0o600); err != nil {
			t.Fatal(err)
		}
		first, err := loadMeta(path, upper)
		if err != nil {
			t.Fatalf("load: %v", err)
		}
		m, err := openMeta(path, upper)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		if err := m.close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		again, err := loadMeta(path, upper)
		if err != nil {
			t.Fatalf("load the compacted journal: %v", err)
		}
		if !reflect.DeepEqual(first.attrs, again.attrs) || !reflect.DeepEqual(first.flags, again.flags) {
			t.Fatalf("compaction changed the state:\n%v %v\n%v %v", first.attrs, first.flags, again.attrs, again.flags)
		}
	})
}
