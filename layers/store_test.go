package layers

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// tarEntry describes one entry of a test tar.
type tarEntry struct {
	hdr  tar.Header
	body string
}

func makeTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func file(name, body string) tarEntry {
	return tarEntry{hdr: tar.Header{Name: name}, body: body}
}

func dir(name string) tarEntry {
	return tarEntry{hdr: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755}}
}

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// storeTree lists every path under the store with its size, for before/after checks.
func storeTree(t *testing.T, s *Store) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(s.Root(), func(p string, d os.DirEntry, err error) error {
		if err != nil || strings.HasSuffix(p, ".lock") {
			return nil
		}
		fi, _ := d.Info()
		out = append(out, fmt.Sprintf("%s %d", strings.TrimPrefix(p, s.Root()), fi.Size()))
		return nil
	})
	return out
}

func TestPutLayerIndex(t *testing.T) {
	s := newStore(t)
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	data := makeTar(t,
		dir("./"),
		dir("./etc/"),
		tarEntry{hdr: tar.Header{Name: "./etc/passwd", Uid: 0, Gid: 0, Mode: 0o644, ModTime: mtime, Format: tar.FormatPAX}, body: "root:x:0:0::/root:/bin/sh\n"},
		tarEntry{hdr: tar.Header{Name: "./etc/shadow", Uid: 0, Gid: 42, Mode: 0o640}, body: "secret"},
		tarEntry{hdr: tar.Header{Name: "./etc/link", Typeflag: tar.TypeLink, Linkname: "./etc/passwd"}},
		tarEntry{hdr: tar.Header{Name: "./etc/sym", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd", Mode: 0o777}},
		tarEntry{hdr: tar.Header{Name: "./dev/null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3, Mode: 0o666}},
		tarEntry{hdr: tar.Header{Name: "./usr/bin/ping", Uid: 0, Mode: 0o4755, PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "\x01\x00\x00\x02"}}, body: "ELF"},
		tarEntry{hdr: tar.Header{Name: "./var/www/" + strings.Repeat("long", 40), Uid: 33, Gid: 33}, body: "long name"},
		file("./etc/.wh.motd", ""),
	)
	diffID, size, err := s.PutLayer(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if size != int64(len(data)) {
		t.Errorf("size = %d, want %d", size, len(data))
	}
	if got, _, _ := v1.SHA256(bytes.NewReader(data)); got != diffID {
		t.Errorf("diff ID = %s, want %s", diffID, got)
	}
	stored, err := os.ReadFile(s.LayerTar(diffID))
	if err != nil || !bytes.Equal(stored, data) {
		t.Fatalf("layer.tar differs from the input (err %v)", err)
	}
	idx, err := s.LayerEntries(diffID)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Entry{}
	var names []string
	for _, e := range idx.Entries {
		byName[e.Name] = e
		names = append(names, e.Name)
	}
	wantNames := []string{".", "etc", "etc/passwd", "etc/shadow", "etc/link", "etc/sym", "dev/null", "usr/bin/ping", "var/www/" + strings.Repeat("long", 40), "etc/.wh.motd"}
	if d := cmp.Diff(wantNames, names); d != "" {
		t.Errorf("names (-want +got):\n%s", d)
	}
	for name, body := range map[string]string{"etc/passwd": "root:x:0:0::/root:/bin/sh\n", "etc/shadow": "secret", "usr/bin/ping": "ELF", "var/www/" + strings.Repeat("long", 40): "long name"} {
		e := byName[name]
		if got := string(stored[e.DataOffset : e.DataOffset+e.Size]); got != body {
			t.Errorf("%s: data at offset %d = %q, want %q", name, e.DataOffset, got, body)
		}
		tr := tar.NewReader(bytes.NewReader(stored[e.HeaderOffset:]))
		if hdr, err := tr.Next(); err != nil || filepath.Clean(hdr.Name) != name {
			t.Errorf("%s: header at offset %d: %v %v", name, e.HeaderOffset, hdr, err)
		}
	}
	if e := byName["etc/passwd"]; !e.ModTime.Equal(mtime) {
		t.Errorf("mtime = %v, want %v", e.ModTime, mtime)
	}
	if e := byName["etc/shadow"]; e.GID != 42 || e.Mode != 0o640 {
		t.Errorf("etc/shadow = gid %d mode %o", e.GID, e.Mode)
	}
	if e := byName["etc/link"]; e.Typeflag != tar.TypeLink || e.Linkname != "etc/passwd" {
		t.Errorf("hard link = %+v", e)
	}
	if e := byName["etc/sym"]; e.Linkname != "/etc/passwd" {
		t.Errorf("symlink target = %q", e.Linkname)
	}
	if e := byName["dev/null"]; e.Devmajor != 1 || e.Devminor != 3 {
		t.Errorf("device = %d:%d", e.Devmajor, e.Devminor)
	}
	if e := byName["usr/bin/ping"]; e.Mode != 0o4755 || e.Xattrs["security.capability"] != "\x01\x00\x00\x02" {
		t.Errorf("ping = mode %o xattrs %q", e.Mode, e.Xattrs)
	}
	// Idempotent: the same layer again is the same diff ID and one directory.
	again, _, err := s.PutLayer(bytes.NewReader(data))
	if err != nil || again != diffID {
		t.Errorf("second PutLayer = %s, %v", again, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Root(), "tmp")); len(ents) != 0 {
		t.Errorf("tmp/ holds %d leftovers", len(ents))
	}
}

func TestPutLayerRejects(t *testing.T) {
	good := makeTar(t, file("a", strings.Repeat("x", 2000)), file("b", "y"))
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"dot dot", makeTar(t, file("../evil", "x")), "escapes the root"},
		{"nested dot dot", makeTar(t, file("a/../../evil", "x")), "escapes the root"},
		{"absolute", makeTar(t, file("/etc/passwd", "x")), "absolute path"},
		{"hard link out", makeTar(t, tarEntry{hdr: tar.Header{Name: "l", Typeflag: tar.TypeLink, Linkname: "../../etc/shadow"}}), "escapes the root"},
		{"truncated", good[:1000], "truncated"},
		{"not a tar", bytes.Repeat([]byte("this is not a tar archive\n"), 40), "not a tar"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			before := storeTree(t, s)
			_, _, err := s.PutLayer(bytes.NewReader(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("PutLayer error = %v, want one containing %q", err, tc.want)
			}
			if d := cmp.Diff(before, storeTree(t, s)); d != "" {
				t.Errorf("store changed (-before +after):\n%s", d)
			}
		})
	}
}

func mustTag(t *testing.T, s string) *name.Tag {
	t.Helper()
	tag, err := ParseTag(s)
	if err != nil {
		t.Fatal(err)
	}
	return &tag
}

func importBytes(t *testing.T, s *Store, data []byte, tag string, changes ...string) v1.Hash {
	t.Helper()
	o := ImportOptions{Source: "-", Stdin: bytes.NewReader(data), Changes: changes}
	if tag != "" {
		o.Tag = mustTag(t, tag)
	}
	id, err := s.Import(o)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestImportResolveRemove(t *testing.T) {
	s := newStore(t)
	id := importBytes(t, s, makeTar(t, file("bin/sh", "#!")), "busybox", `CMD ["sh"]`, "ENV A=1 B=2", "EXPOSE 80", "WORKDIR /srv", "USER 33:33", "LABEL k=v")
	cf, _, err := s.Config(id)
	if err != nil {
		t.Fatal(err)
	}
	want := v1.Config{Cmd: []string{"sh"}, Env: []string{"A=1", "B=2"}, ExposedPorts: map[string]struct{}{"80/tcp": {}}, WorkingDir: "/srv", User: "33:33", Labels: map[string]string{"k": "v"}}
	if d := cmp.Diff(want, cf.Config); d != "" {
		t.Errorf("config (-want +got):\n%s", d)
	}
	for _, ref := range []string{"busybox", "busybox:latest", "docker.io/library/busybox:latest", "index.docker.io/library/busybox", id.String(), id.Hex[:12], id.Hex[:3]} {
		img, err := s.Resolve(ref)
		if err != nil || img.ID != id {
			t.Errorf("Resolve(%q) = %v, %v", ref, img, err)
		}
	}
	if _, err := s.Resolve("busybox:other"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve(busybox:other) error = %v, want ErrNotFound", err)
	}
	if err := s.Tag("busybox", *mustTag(t, "registry.example:5000/team/bb:1")); err != nil {
		t.Fatal(err)
	}
	img, _ := s.Resolve(id.Hex)
	if d := cmp.Diff([]string{"docker.io/library/busybox:latest", "registry.example:5000/team/bb:1"}, img.Tags); d != "" {
		t.Errorf("tags (-want +got):\n%s", d)
	}
	if _, err := s.Remove(id.Hex, false); !errors.Is(err, ErrConflict) {
		t.Errorf("Remove by ID with two tags: %v, want ErrConflict", err)
	}
	res, err := s.Remove("busybox", false)
	if err != nil || len(res.Deleted) != 0 || len(res.Untagged) != 1 {
		t.Fatalf("Remove(busybox) = %+v, %v; want one untag, no delete", res, err)
	}
	if !s.HasLayer(cf.RootFS.DiffIDs[0]) {
		t.Fatal("layer removed while a tag remains")
	}
	res, err = s.Remove("registry.example:5000/team/bb:1", false)
	if err != nil || len(res.Deleted) != 1 {
		t.Fatalf("Remove(last tag) = %+v, %v", res, err)
	}
	if s.HasLayer(cf.RootFS.DiffIDs[0]) || s.HasBlob(id) {
		t.Error("layer or config kept after the last tag went")
	}
	if imgs, _ := s.Images(); len(imgs) != 0 {
		t.Errorf("Images() = %d images, want 0", len(imgs))
	}
}

func TestSharedLayerSurvivesRemove(t *testing.T) {
	s := newStore(t)
	data := makeTar(t, file("a", "shared"))
	id1 := importBytes(t, s, data, "one")
	importBytes(t, s, data, "two", "CMD [\"x\"]")
	cf, _, _ := s.Config(id1)
	if _, err := s.Remove("one", false); err != nil {
		t.Fatal(err)
	}
	if !s.HasLayer(cf.RootFS.DiffIDs[0]) {
		t.Error("layer shared with image two was removed")
	}
}

func TestPrune(t *testing.T) {
	s := newStore(t)
	gone := importBytes(t, s, makeTar(t, file("a", "1")), "")
	keep := importBytes(t, s, makeTar(t, file("b", "2")), "keep")
	// The merged views of both images' layers (package fuse writes them).
	view := func(id v1.Hash) string {
		cf, _, err := s.Config(id)
		if err != nil {
			t.Fatal(err)
		}
		return s.MergedView(cf.RootFS.DiffIDs)
	}
	goneView, keepView := view(gone), view(keep)
	if goneView == keepView {
		t.Fatal("two chains of layers have one merged view")
	}
	for _, p := range []string{goneView, keepView} {
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, []byte("view"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A crashed import leaves a temp file and an unreferenced layer.
	os.WriteFile(filepath.Join(s.Root(), "tmp", "layer-123"), []byte("partial"), 0o600)
	if _, _, err := s.PutLayer(bytes.NewReader(makeTar(t, file("orphan", "3")))); err != nil {
		t.Fatal(err)
	}
	res, err := s.Prune(false)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Deleted) != 1 || res.Reclaimed == 0 {
		t.Errorf("Prune = %+v, want one image and some bytes", res)
	}
	imgs, _ := s.Images()
	if len(imgs) != 1 || imgs[0].ID != keep {
		t.Errorf("after prune: %v", imgs)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Root(), "layers")); len(ents) != 1 {
		t.Errorf("layers/ holds %d layers, want 1", len(ents))
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Root(), "tmp")); len(ents) != 0 {
		t.Errorf("tmp/ holds %d entries, want 0", len(ents))
	}
	if _, err := os.Stat(goneView); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the merged view of the pruned image's layers: %v, want it gone", err)
	}
	if _, err := os.Stat(keepView); err != nil {
		t.Errorf("the merged view of the kept image's layers: %v", err)
	}
	if _, err := s.Prune(true); err != nil {
		t.Fatal(err)
	}
	if imgs, _ := s.Images(); len(imgs) != 0 {
		t.Errorf("prune -a left %d images", len(imgs))
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	for _, format := range []string{DockerArchive, OCIArchive} {
		t.Run(format, func(t *testing.T) {
			src := newStore(t)
			id := importBytes(t, src, makeTar(t, dir("etc/"), file("etc/os-release", "ID=test\n")), "me/app:1.0", `CMD ["sh"]`)
			var buf bytes.Buffer
			if err := src.Save(&buf, SaveOptions{Refs: []string{"me/app:1.0"}, Format: format}); err != nil {
				t.Fatal(err)
			}
			dst := newStore(t)
			loaded, err := dst.Load(bytes.NewReader(buf.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			if len(loaded) != 1 || loaded[0].ID != id || len(loaded[0].Tags) != 1 || Normalized(loaded[0].Tags[0]) != "docker.io/me/app:1.0" {
				t.Fatalf("Load = %+v, want %s tagged docker.io/me/app:1.0", loaded, id)
			}
			a, _, _ := src.Config(id)
			b, _, _ := dst.Config(id)
			if d := cmp.Diff(a, b); d != "" {
				t.Errorf("config differs (-src +dst):\n%s", d)
			}
		})
	}
}

func TestLoadGzipDockerArchive(t *testing.T) {
	img, err := random.Image(1024, 3)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := tarball.Write(*mustTag(t, "random:1"), img, &buf); err != nil {
		t.Fatal(err)
	}
	s := newStore(t)
	loaded, err := s.Load(&buf)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.ConfigName()
	if len(loaded) != 1 || loaded[0].ID != want {
		t.Fatalf("Load = %+v, want ID %s", loaded, want)
	}
	cf, _ := img.ConfigFile()
	got, err := s.ImageLayers(&Image{Record: Record{ID: want}})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(cf.RootFS.DiffIDs, got); d != "" {
		t.Errorf("diff IDs (-want +got):\n%s", d)
	}
	for _, d := range got {
		if !s.HasLayer(d) {
			t.Errorf("layer %s not stored", d)
		}
	}
}

func TestLoadRejects(t *testing.T) {
	img, _ := random.Image(100, 1)
	var good bytes.Buffer
	tarball.Write(*mustTag(t, "r:1"), img, &good)
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"not an archive", makeTar(t, file("hello", "x")), "not an image archive"},
		{"truncated", good.Bytes()[:good.Len()/2], "truncated"},
		{"garbage", bytes.Repeat([]byte{7}, 3000), "not a tar"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			before := storeTree(t, s)
			_, err := s.Load(bytes.NewReader(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load error = %v, want %q", err, tc.want)
			}
			if d := cmp.Diff(before, storeTree(t, s)); d != "" {
				t.Errorf("store changed (-before +after):\n%s", d)
			}
		})
	}
}

func flipByte(t *testing.T, p string, at int64) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	f.ReadAt(b, at)
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptionIsNamed(t *testing.T) {
	s := newStore(t)
	id := importBytes(t, s, makeTar(t, file("a", strings.Repeat("z", 5000))), "c:1")
	cf, _, _ := s.Config(id)
	diffID := cf.RootFS.DiffIDs[0]

	flipByte(t, s.LayerTar(diffID), 600)
	err := s.Save(io.Discard, SaveOptions{Refs: []string{"c:1"}})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), diffID.String()) {
		t.Errorf("Save of a corrupt layer: %v, want ErrCorrupt naming %s", err, diffID)
	}
	flipByte(t, s.blobPath(id), 10)
	_, _, err = s.Config(id)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), id.String()) {
		t.Errorf("Config of a corrupt blob: %v, want ErrCorrupt naming %s", err, id)
	}
}

func TestConcurrentImports(t *testing.T) {
	s := newStore(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	done := make(chan struct{})
	listed := make(chan struct{})
	go func() {
		defer close(listed)
		for {
			select {
			case <-done:
				return
			default:
			}
			imgs, err := s.Images()
			if err != nil {
				errs <- err
				return
			}
			seen := map[v1.Hash]bool{}
			for _, img := range imgs {
				if seen[img.ID] {
					errs <- fmt.Errorf("image %s listed twice", img.ID)
					return
				}
				seen[img.ID] = true
			}
		}
	}()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			data := makeTar(t, file(fmt.Sprintf("f%d", i), strings.Repeat("x", 100000*i)))
			tag, _ := ParseTag(fmt.Sprintf("img%d:1", i))
			if _, err := s.Import(ImportOptions{Source: "-", Stdin: bytes.NewReader(data), Tag: &tag}); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(done)
	<-listed
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	imgs, _ := s.Images()
	if len(imgs) != n {
		t.Errorf("%d images, want %d", len(imgs), n)
	}
}
