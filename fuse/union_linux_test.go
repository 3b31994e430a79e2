//go:build linux

package fuse

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/posixtest"
	"github.com/roost-containers/roost/layers"
	"golang.org/x/sys/unix"
)

// tarEntry describes one entry of a test layer.
type tarEntry struct {
	name     string
	typ      byte // tar.TypeReg when zero
	mode     int64
	uid, gid int
	body     string
	link     string
	major    int64
	minor    int64
	xattrs   map[string]string
}

func reg(name, body string) tarEntry { return tarEntry{name: name, body: body} }
func dir(name string) tarEntry       { return tarEntry{name: name, typ: tar.TypeDir, mode: 0o755} }

func makeTar(t testing.TB, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			Linkname: e.link, Devmajor: e.major, Devminor: e.minor, ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		for k, v := range e.xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testUnion is a mounted union over test layers.
type testUnion struct {
	t        *testing.T
	mnt      string
	writable string
	lowers   []Lower
	m        *Mount
}

// storeLayers puts the layers into a layer store and returns them as lowers.
func storeLayers(t testing.TB, layerList ...[]tarEntry) []Lower {
	t.Helper()
	st, err := layers.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var lowers []Lower
	for _, l := range layerList {
		id, _, err := st.PutLayer(bytes.NewReader(makeTar(t, l)))
		if err != nil {
			t.Fatal(err)
		}
		idx, err := st.LayerEntries(id)
		if err != nil {
			t.Fatal(err)
		}
		lowers = append(lowers, Lower{Tar: st.LayerTar(id), Index: idx})
	}
	return lowers
}

func mountLayers(t *testing.T, layerList ...[]tarEntry) *testUnion {
	t.Helper()
	tu := &testUnion{t: t, mnt: t.TempDir(), writable: t.TempDir(), lowers: storeLayers(t, layerList...)}
	tu.mount()
	t.Cleanup(func() {
		if tu.m != nil {
			tu.unmount()
		}
	})
	return tu
}

func (tu *testUnion) mount() {
	tu.t.Helper()
	m, err := New(tu.mnt, Options{Lowers: tu.lowers, Writable: tu.writable})
	if err != nil {
		tu.t.Fatal(err)
	}
	tu.m = m
}

// mountWith mounts tu with o, its Lowers and Writable filled in, and
// unmounts it at the end of the test where it is still mounted.
func (tu *testUnion) mountWith(o Options) {
	tu.t.Helper()
	o.Lowers, o.Writable = tu.lowers, tu.writable
	m, err := New(tu.mnt, o)
	if err != nil {
		tu.t.Fatal(err)
	}
	tu.m = m
	tu.t.Cleanup(func() {
		if tu.m != nil {
			tu.unmount()
		}
	})
}

func (tu *testUnion) unmount() {
	tu.t.Helper()
	if err := tu.m.Unmount(); err != nil {
		tu.t.Fatal(err)
	}
	tu.m = nil
}

func (tu *testUnion) path(p string) string { return filepath.Join(tu.mnt, p) }

// tree lists every path under the mount with its type, sorted.
func (tu *testUnion) tree() []string {
	tu.t.Helper()
	var out []string
	err := filepath.Walk(tu.mnt, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p == tu.mnt {
			return nil
		}
		rel := p[len(tu.mnt)+1:]
		switch {
		case fi.IsDir():
			rel += "/"
		case fi.Mode()&os.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			rel += "->" + l
		case !fi.Mode().IsRegular():
			rel += "=" + fi.Mode().Type().String()
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel += "=" + string(b)
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		tu.t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// capV2 is a VFS_CAP_REVISION_2 security.capability: cap_net_bind_service, effective.
const capV2 = "\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

var baseLayer = []tarEntry{
	dir("etc"),
	reg("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
	dir("usr"), dir("usr/lib"),
	reg("usr/lib/a", "aaa"),
	reg("usr/lib/b", "bbb"),
	{name: "usr/lib/hard", typ: tar.TypeLink, link: "usr/lib/a"},
	{name: "usr/lib/sym", typ: tar.TypeSymlink, link: "a"},
	reg("implied/dir/file", "deep"),
	{name: "secret", mode: 0o600, body: "s"},
	{name: "www", uid: 33, gid: 33, body: "w"},
	{name: "nobody", uid: 65534, gid: 65534, body: "n", xattrs: map[string]string{"security.capability": capV2, "user.k": "v"}},
	{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
	{name: "fifo", typ: tar.TypeFifo},
}

func TestOCIRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		layers [][]tarEntry
		want   []string
	}{
		{
			name:   "whiteout hides a file and a directory",
			layers: [][]tarEntry{{dir("d"), reg("d/x", "1"), reg("d/y", "2"), dir("e"), reg("e/z", "3")}, {reg("d/.wh.x", ""), reg(".wh.e", "")}},
			want:   []string{"d/", "d/y=2"},
		},
		{
			name:   "opaque directory hides lower children only",
			layers: [][]tarEntry{{dir("d"), reg("d/x", "1")}, {dir("d"), reg("d/.wh..wh..opq", ""), reg("d/new", "n")}},
			want:   []string{"d/", "d/new=n"},
		},
		{
			name:   "upper layer replaces file with directory",
			layers: [][]tarEntry{{reg("p", "file")}, {dir("p"), reg("p/q", "x")}},
			want:   []string{"p/", "p/q=x"},
		},
		{
			name:   "directory replaced with file drops children",
			layers: [][]tarEntry{{dir("p"), reg("p/q", "x")}, {reg("p", "file")}},
			want:   []string{"p=file"},
		},
		{
			name:   "later entry of the same name wins",
			layers: [][]tarEntry{{reg("f", "one"), reg("f", "two")}},
			want:   []string{"f=two"},
		},
		{
			name:   "whiteout then re-add in a higher layer",
			layers: [][]tarEntry{{reg("f", "one")}, {reg(".wh.f", "")}, {reg("f", "three")}},
			want:   []string{"f=three"},
		},
		{
			name:   "implied directories",
			layers: [][]tarEntry{{reg("a/b/c", "x")}},
			want:   []string{"a/", "a/b/", "a/b/c=x"},
		},
		// Within one layer, after the entries of a directory (the
		// build keeps the last one at hand).
		{
			name:   "a file replaces the directory just filled, then a directory again",
			layers: [][]tarEntry{{dir("d"), reg("d/x", "1"), reg("d", "file"), reg("d/y", "2")}},
			want:   []string{"d/", "d/y=2"},
		},
		{
			name:   "a hard link replaces the directory just filled, then a directory again",
			layers: [][]tarEntry{{reg("f", "1"), dir("d"), reg("d/x", "1"), {name: "d", typ: tar.TypeLink, link: "f"}, reg("d/z", "2")}},
			want:   []string{"d/", "d/z=2", "f=1"},
		},
		{
			name:   "a whiteout of the directory the layer below filled last",
			layers: [][]tarEntry{{dir("d"), reg("d/x", "1")}, {reg(".wh.d", ""), reg("d/y", "2")}},
			want:   []string{"d/", "d/y=2"},
		},
		{
			name:   "a directory entry over the directory just filled keeps its children",
			layers: [][]tarEntry{{dir("d"), reg("d/x", "1"), dir("d"), reg("d/y", "2")}},
			want:   []string{"d/", "d/x=1", "d/y=2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tu := mountLayers(t, tt.layers...)
			if got := tu.tree(); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestWritableLayer(t *testing.T) {
	t.Parallel()
	type step struct {
		name string
		do   func(t *testing.T, tu *testUnion) error
	}
	tests := []struct {
		name string
		do   func(t *testing.T, tu *testUnion) error
		want []string // tree of the directory "usr" afterwards
	}{
		{"remove lower file", func(t *testing.T, tu *testUnion) error { return os.Remove(tu.path("usr/lib/b")) },
			[]string{"usr/", "usr/lib/", "usr/lib/a=aaa", "usr/lib/hard=aaa", "usr/lib/sym->a"}},
		{"rm -rf lower tree", func(t *testing.T, tu *testUnion) error { return os.RemoveAll(tu.path("usr/lib")) },
			[]string{"usr/"}},
		{"recreate after delete", func(t *testing.T, tu *testUnion) error {
			if err := os.RemoveAll(tu.path("usr/lib")); err != nil {
				return err
			}
			if err := os.Mkdir(tu.path("usr/lib"), 0o755); err != nil {
				return err
			}
			return os.WriteFile(tu.path("usr/lib/b"), []byte("new"), 0o644)
		}, []string{"usr/", "usr/lib/", "usr/lib/b=new"}},
		{"write copies up", func(t *testing.T, tu *testUnion) error {
			f, err := os.OpenFile(tu.path("usr/lib/b"), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			f.WriteString("+")
			return f.Close()
		}, []string{"usr/", "usr/lib/", "usr/lib/a=aaa", "usr/lib/b=bbb+", "usr/lib/hard=aaa", "usr/lib/sym->a"}},
		{"truncate copies up", func(t *testing.T, tu *testUnion) error { return os.Truncate(tu.path("usr/lib/b"), 1) },
			[]string{"usr/", "usr/lib/", "usr/lib/a=aaa", "usr/lib/b=b", "usr/lib/hard=aaa", "usr/lib/sym->a"}},
		{"rename lower file", func(t *testing.T, tu *testUnion) error { return os.Rename(tu.path("usr/lib/b"), tu.path("usr/c")) },
			[]string{"usr/", "usr/c=bbb", "usr/lib/", "usr/lib/a=aaa", "usr/lib/hard=aaa", "usr/lib/sym->a"}},
		{"rename over lower file", func(t *testing.T, tu *testUnion) error { return os.Rename(tu.path("usr/lib/b"), tu.path("usr/lib/a")) },
			[]string{"usr/", "usr/lib/", "usr/lib/a=bbb", "usr/lib/hard=aaa", "usr/lib/sym->a"}},
		{"exchange", func(t *testing.T, tu *testUnion) error {
			return unix.Renameat2(unix.AT_FDCWD, tu.path("usr/lib/a"), unix.AT_FDCWD, tu.path("usr/lib/b"), unix.RENAME_EXCHANGE)
		}, []string{"usr/", "usr/lib/", "usr/lib/a=bbb", "usr/lib/b=aaa", "usr/lib/hard=aaa", "usr/lib/sym->a"}},
		{"noreplace", func(t *testing.T, tu *testUnion) error {
			err := unix.Renameat2(unix.AT_FDCWD, tu.path("usr/lib/a"), unix.AT_FDCWD, tu.path("usr/lib/b"), unix.RENAME_NOREPLACE)
			if err != unix.EEXIST {
				t.Errorf("RENAME_NOREPLACE onto a lower file: got %v, want EEXIST", err)
			}
			return nil
		}, []string{"usr/", "usr/lib/", "usr/lib/a=aaa", "usr/lib/b=bbb", "usr/lib/hard=aaa", "usr/lib/sym->a"}},
		{"rename dir with lower content is EXDEV", func(t *testing.T, tu *testUnion) error {
			if err := os.Rename(tu.path("usr/lib"), tu.path("usr/lib2")); !errors.Is(err, syscall.EXDEV) {
				t.Errorf("got %v, want EXDEV", err)
			}
			return nil
		}, []string{"usr/", "usr/lib/", "usr/lib/a=aaa", "usr/lib/b=bbb", "usr/lib/hard=aaa", "usr/lib/sym->a"}},
		{"rename new dir over deleted lower dir", func(t *testing.T, tu *testUnion) error {
			if err := os.MkdirAll(tu.path("usr/n"), 0o755); err != nil {
				return err
			}
			os.WriteFile(tu.path("usr/n/f"), []byte("f"), 0o644)
			if err := os.RemoveAll(tu.path("usr/lib")); err != nil {
				return err
			}
			return os.Rename(tu.path("usr/n"), tu.path("usr/lib"))
		}, []string{"usr/", "usr/lib/", "usr/lib/f=f"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tu := mountLayers(t, baseLayer)
			before := sha(t, tu.lowers[0].Tar)
			if err := tt.do(t, tu); err != nil {
				t.Fatal(err)
			}
			check := func(when string) {
				var got []string
				for _, p := range tu.tree() {
					if strings.HasPrefix(p, "usr") {
						got = append(got, p)
					}
				}
				if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
					t.Errorf("%s: got\n%s\nwant\n%s", when, strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
				}
			}
			check("mounted")
			tu.unmount()
			tu.mount()
			check("after remount")
			if sha(t, tu.lowers[0].Tar) != before {
				t.Error("the lower layer changed")
			}
		})
	}
}

func sha(t *testing.T, p string) [32]byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func lstat(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestMetadata(t *testing.T) {
	t.Parallel()
	tu := mountLayers(t, baseLayer)
	for _, c := range []struct {
		name     string
		mode     uint32
		uid, gid uint32
	}{
		{"www", syscall.S_IFREG | 0o644, shownID(33), shownID(33)},
		{"nobody", syscall.S_IFREG | 0o644, shownID(65534), shownID(65534)},
		{"secret", syscall.S_IFREG | 0o600, 0, 0},
		{"etc", syscall.S_IFDIR | 0o755, 0, 0},
		{"implied", syscall.S_IFDIR | 0o755, 0, 0},
		{"fifo", syscall.S_IFIFO | 0o644, 0, 0},
		{"dev/null", syscall.S_IFCHR | 0o666, 0, 0},
	} {
		st := lstat(t, tu.path(c.name))
		if st.Mode != c.mode || st.Uid != c.uid || st.Gid != c.gid {
			t.Errorf("%s: got mode %o %d:%d, want %o %d:%d", c.name, st.Mode, st.Uid, st.Gid, c.mode, c.uid, c.gid)
		}
	}
	// Hard links of a layer share an inode; inode numbers are stable.
	a, hard := lstat(t, tu.path("usr/lib/a")), lstat(t, tu.path("usr/lib/hard"))
	if a.Ino != hard.Ino || a.Nlink != 2 {
		t.Errorf("hard link: inodes %d, %d, nlink %d; want one inode with 2 links", a.Ino, hard.Ino, a.Nlink)
	}
	ents, err := os.ReadDir(tu.path("usr/lib"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		info, _ := e.Info()
		if ino := info.Sys().(*syscall.Stat_t).Ino; ino != lstat(t, tu.path("usr/lib/"+e.Name())).Ino {
			t.Errorf("%s: unstable inode number", e.Name())
		}
	}
	// xattrs from the layer, security.capability kept.
	buf := make([]byte, 64)
	if n, err := unix.Lgetxattr(tu.path("nobody"), "security.capability", buf); err != nil || string(buf[:n]) != capV2 {
		t.Errorf("security.capability: %q, %v", buf[:max(n, 0)], err)
	}
	// chown, chmod, xattr, utimes copy up and survive a remount.
	wwwIno := lstat(t, tu.path("www")).Ino
	if os.Getenv("ROOST_FUSE_DEBUG") != "" {
		tu.unmount()
		m, err := New(tu.mnt, Options{Lowers: tu.lowers, Writable: tu.writable, Debug: true, Logger: log.Default()})
		if err != nil {
			t.Fatal(err)
		}
		tu.m = m
	}
	// With a single mapping only 0 exists: chown to it, and see it recorded.
	owner := shownID(1000)
	if err := os.Chown(tu.path("www"), int(owner), int(owner)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tu.path("secret"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(tu.path("etc/passwd"), "user.x", []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	ts := []unix.Timespec{{Sec: 5, Nsec: 123456789}, {Sec: 6, Nsec: 987654321}}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, tu.path("usr/lib/b"), ts, 0); err != nil {
		t.Fatal(err)
	}
	// The kernel refuses mknod of devices in a user namespace; a device of
	// the layer keeps its number through a copy-up.
	if err := os.Lchown(tu.path("dev/null"), int(shownID(5)), int(shownID(5))); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(tu.path("dev/fifo"), 0o640); err != nil {
		t.Fatal(err)
	}
	if got := lstat(t, tu.path("www")).Ino; got != wwwIno {
		t.Errorf("inode number changed on copy-up: %d, was %d", got, wwwIno)
	}
	tu.unmount()
	tu.mount()
	if st := lstat(t, tu.path("www")); st.Uid != owner || st.Gid != owner {
		t.Errorf("www after remount: %d:%d, want %d:%d", st.Uid, st.Gid, owner, owner)
	}
	if st := lstat(t, tu.path("secret")); st.Mode != syscall.S_IFREG|0o640 {
		t.Errorf("secret after remount: mode %o", st.Mode)
	}
	if n, err := unix.Lgetxattr(tu.path("etc/passwd"), "user.x", buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("user.x after remount: %q, %v", buf[:max(n, 0)], err)
	}
	if st := lstat(t, tu.path("usr/lib/b")); st.Mtim != ts[1] {
		t.Errorf("mtime after remount: %v, want %v", st.Mtim, ts[1])
	}
	if st := lstat(t, tu.path("dev/null")); st.Mode != syscall.S_IFCHR|0o666 || st.Rdev != unix.Mkdev(1, 3) || st.Uid != shownID(5) {
		t.Errorf("dev/null: mode %o rdev %x uid %d", st.Mode, st.Rdev, st.Uid)
	}
	if st := lstat(t, tu.path("dev/fifo")); st.Mode != syscall.S_IFIFO|0o640 {
		t.Errorf("dev/fifo: mode %o", st.Mode)
	}
	// Every host file is the user's own and plainly removable.
	tu.unmount()
	filepath.Walk(tu.writable, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Sys().(*syscall.Stat_t).Uid != uint32(os.Getuid()) {
			t.Errorf("%s is not owned by the user", p)
		}
		return nil
	})
	tu.mount()
}

func TestWriteLayer(t *testing.T) {
	t.Parallel()
	tu := mountLayers(t, baseLayer)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Remove(tu.path("usr/lib/b")))
	must(os.RemoveAll(tu.path("etc")))
	must(os.Mkdir(tu.path("etc"), 0o755))
	must(os.WriteFile(tu.path("etc/new"), []byte("new"), 0o644))
	must(os.Chown(tu.path("www"), int(shownID(7)), int(shownID(8))))
	must(os.Link(tu.path("etc/new"), tu.path("etc/new2")))
	tu.unmount()
	var buf bytes.Buffer
	must(WriteLayer(tu.writable, &buf))
	var got []string
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(err)
		s := h.Name + " " + string(h.Typeflag)
		if h.Typeflag == tar.TypeLink {
			s += " " + h.Linkname
		}
		if h.Name == "www" {
			s += " " + fmt.Sprint(h.Uid, h.Gid)
		}
		got = append(got, s)
	}
	want := []string{"etc/ 5", "etc/.wh..wh..opq 0", "etc/new 0", "etc/new2 1 etc/new", "usr/ 5", "usr/lib/ 5", "usr/lib/.wh.b 0", "www 0 " + fmt.Sprint(shownID(7), shownID(8))}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	tu.mount()
}

// TestMountChown: Mount.Chown records owners whether or not the namespace
// maps them, copies a lower object up with its contents, leaves an id of
// -1 as it was, changes a symlink itself, and fails with ENOENT for a
// missing path; the layer WriteLayer makes carries the owners.
func TestMountChown(t *testing.T) {
	t.Parallel()
	tu := mountLayers(t, baseLayer)
	for _, c := range []struct {
		p        string
		uid, gid int
	}{{"usr/lib/b", 70001, -1}, {"www", -1, 70002}, {"usr/lib/sym", 5, 6}, {".", 7, -1}} {
		if err := tu.m.Chown(c.p, c.uid, c.gid); err != nil {
			t.Fatalf("Chown(%s): %v", c.p, err)
		}
	}
	// The kernel's view follows, and the setuid bit goes, as with chown.
	if err := unix.Chmod(tu.path("secret"), 0o4755); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(tu.path("secret")); err != nil || fi.Mode()&os.ModeSetuid == 0 {
		t.Fatalf("secret after chmod 4755: %v, %v", fi, err)
	}
	if err := tu.m.Chown("secret", 70003, -1); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(tu.path("secret")); err != nil || fi.Mode().Perm() != 0o755 || fi.Mode()&os.ModeSetuid != 0 {
		t.Errorf("secret after Chown: %v, %v; want -rwxr-xr-x", fi, err)
	}
	if err := tu.m.Chown("usr/nope", 1, 1); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("Chown of a missing path: %v, want ENOENT", err)
	}
	if b, err := os.ReadFile(tu.path("usr/lib/b")); err != nil || string(b) != "bbb" {
		t.Errorf("usr/lib/b after Chown: %q, %v", b, err)
	}
	tu.unmount()
	var buf bytes.Buffer
	if err := WriteLayer(tu.writable, &buf); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = fmt.Sprint(h.Uid, ":", h.Gid)
	}
	for p, want := range map[string]string{"usr/lib/b": "70001:0", "www": "33:70002", "usr/lib/sym": "5:6", "secret": "70003:0"} {
		if got[p] != want {
			t.Errorf("%s in the layer: %q, want %s (layer: %v)", p, got[p], want, got)
		}
	}
	tu.mount()
}

// TestPosix runs go-fuse's posixtest suite on the union: over an empty
// writable layer, and over one that already holds changes.
func TestPosix(t *testing.T) {
	// POSIX record locks are left to the kernel, which keeps them per
	// process as POSIX says; this test wants them per open file.
	skip := map[string]string{"FcntlFlockLocksFile": "record locks are kernel-local, per process (POSIX), not per open file"}
	lowerPosix := append([]tarEntry{dir("posix")}, baseLayer...)
	for _, variant := range []string{"fresh", "changed"} {
		t.Run(variant, func(t *testing.T) {
			for name, fn := range posixtest.All {
				t.Run(name, func(t *testing.T) {
					if why, ok := skip[name]; ok {
						t.Skip(why)
					}
					tu := mountLayers(t, lowerPosix)
					// The suite runs in "posix": an empty directory of the
					// lower layer, or an opaque one of the writable layer
					// over it after other changes.
					if variant == "changed" {
						for _, err := range []error{
							os.RemoveAll(tu.path("usr")),
							os.WriteFile(tu.path("etc/passwd"), []byte("x"), 0o644),
							os.RemoveAll(tu.path("posix")),
							os.Mkdir(tu.path("posix"), 0o755),
						} {
							if err != nil {
								t.Fatal(err)
							}
						}
					}
					fn(t, tu.path("posix"))
				})
			}
		})
	}
}

// shownID is id when this user namespace maps it, else 0: what the union
// shows for a file owned by id.
func shownID(id uint32) uint32 {
	return newIDMapper().uid(id)
}

// TestMountTargets: Options.MountTargets gives an empty file, root's, mode
// 0644, where the union has nothing, and leaves alone what is there (a
// file, a symlink) and a path whose directory is missing; the files stay
// after a remount.
func TestMountTargets(t *testing.T) {
	t.Parallel()
	tu := &testUnion{t: t, mnt: t.TempDir(), writable: t.TempDir(), lowers: storeLayers(t, []tarEntry{
		dir("etc"), reg("etc/hostname", "image"), dir("run"),
		{name: "etc/resolv.conf", typ: tar.TypeSymlink, link: "../run/resolv.conf"},
	})}
	tu.mountWith(Options{MountTargets: []string{"etc/hosts", "etc/hostname", "etc/resolv.conf", "nodir/x", "run/sub/y"}})
	want := []string{"etc/", "etc/hostname=image", "etc/hosts=", "etc/resolv.conf->../run/resolv.conf", "run/"}
	for _, when := range []string{"mounted", "remounted"} {
		if got := tu.tree(); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: tree\n%s\nwant\n%s", when, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		st := lstat(t, tu.path("etc/hosts"))
		if st.Mode != syscall.S_IFREG|0o644 || st.Uid != shownID(0) || st.Gid != shownID(0) || st.Size != 0 {
			t.Errorf("%s: etc/hosts: mode %o, owner %d:%d, size %d; want an empty file, mode 644, root's", when, st.Mode, st.Uid, st.Gid, st.Size)
		}
		tu.unmount()
		tu.mount()
	}
}

// TestFuseCloseOnExec: the union's /dev/fuse descriptor is close-on-exec
// (go-fuse opens it without): a process started from here must not hold
// the connection open, or it outlives this process's death (wedge_linux.go
// in package container).
func TestFuseCloseOnExec(t *testing.T) {
	mountLayers(t, []tarEntry{dir("etc")})
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err != nil || target != "/dev/fuse" {
			continue
		}
		var fd int
		fmt.Sscan(e.Name(), &fd)
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil {
			continue // closed since the listing
		}
		seen++
		if flags&unix.FD_CLOEXEC == 0 {
			t.Errorf("descriptor %d on /dev/fuse is not close-on-exec", fd)
		}
	}
	if seen == 0 {
		t.Error("no descriptor on /dev/fuse while a union is mounted")
	}
}

// TestNegativeLookupCached: a name the union does not have is looked up
// once; the kernel keeps the answer (a dynamic loader or a shell's PATH
// search asks for the same missing names again and again), and a file or
// directory made there through the mount is seen at once.
func TestNegativeLookupCached(t *testing.T) {
	t.Parallel()
	tu, requests := mountLogged(t, []tarEntry{dir("etc"), reg("etc/hostname", "image")})
	lookups := func(name string) int {
		return len(regexp.MustCompile(`LOOKUP n\d+ +"`+name+`"`).FindAllString(requests.String(), -1))
	}
	for range 3 {
		for _, p := range []string{"missing", "missing/deeper/x", "etc/missing"} {
			if _, err := os.Lstat(tu.path(p)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("lstat %s: %v, want does not exist", p, err)
			}
		}
	}
	if n := lookups("missing"); n != 2 {
		t.Errorf("3 lstats each of /missing, /missing/deeper/x and /etc/missing: %d lookups of missing, want 2 (one in / and one in /etc)", n)
	}
	if err := os.WriteFile(tu.path("etc/missing"), []byte("made"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(tu.path("missing/deeper"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../etc/missing", tu.path("missing/deeper/x")); err != nil {
		t.Fatal(err)
	}
	// (A stat, not a read: go-fuse logs spliced reads on the standard logger.)
	if fi, err := os.Stat(tu.path("missing/deeper/x")); err != nil || fi.Size() != int64(len("made")) {
		t.Errorf("made after a cached miss: stat through the symlink: %v, %v; want the 4-byte file", fi, err)
	}
	if err := os.Remove(tu.path("etc/missing")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tu.path("missing/deeper/x")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("removed: stat through the symlink: %v, want does not exist", err)
	}
}

// mountLogged mounts a union of one layer with go-fuse's log of every
// request going to the returned buffer.
func mountLogged(t *testing.T, layer []tarEntry) (*testUnion, *lockedBuffer) {
	t.Helper()
	requests := &lockedBuffer{}
	tu := &testUnion{t: t, mnt: t.TempDir(), writable: t.TempDir(), lowers: storeLayers(t, layer)}
	tu.mountWith(Options{Debug: true, Logger: log.New(requests, "", 0)})
	return tu, requests
}

// lockedBuffer is a bytes.Buffer for writers on several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSymlinkCached: the kernel reads a symlink's target once and keeps it
// (a merged /usr resolves /lib and /bin for every load); a symlink made in
// its place, by removal and creation or by a rename over it, or copied up,
// shows its own target.
func TestSymlinkCached(t *testing.T) {
	t.Parallel()
	tu, requests := mountLogged(t, []tarEntry{
		dir("usr"), dir("usr/lib"), dir("usr/lib2"),
		{name: "lib", typ: tar.TypeSymlink, link: "usr/lib"},
		{name: "other", typ: tar.TypeSymlink, link: "usr/lib2"},
	})
	target := func(p string) string {
		t.Helper()
		s, err := os.Readlink(tu.path(p))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for range 3 {
		if got := target("lib"); got != "usr/lib" {
			t.Fatalf("lib -> %q, want usr/lib", got)
		}
	}
	if n := strings.Count(requests.String(), "READLINK"); n != 1 {
		t.Errorf("3 readlinks of lib: %d READLINK requests, want 1", n)
	}
	if err := os.Remove(tu.path("lib")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("usr/lib2", tu.path("lib")); err != nil {
		t.Fatal(err)
	}
	if got := target("lib"); got != "usr/lib2" {
		t.Errorf("made again: lib -> %q, want usr/lib2", got)
	}
	if err := os.Symlink("elsewhere", tu.path("new")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tu.path("new"), tu.path("other")); err != nil {
		t.Fatal(err)
	}
	if got := target("other"); got != "elsewhere" {
		t.Errorf("renamed over: other -> %q, want elsewhere", got)
	}
	if err := os.Lchown(tu.path("lib"), 0, 0); err != nil { // a copy-up of the lower one's replacement: same target
		t.Fatal(err)
	}
	if got := target("lib"); got != "usr/lib2" {
		t.Errorf("chowned: lib -> %q, want usr/lib2", got)
	}
	tu.unmount()
	tu.mount()
	if got, other := target("lib"), target("other"); got != "usr/lib2" || other != "elsewhere" {
		t.Errorf("remounted: lib -> %q, other -> %q; want usr/lib2 and elsewhere", got, other)
	}
}
