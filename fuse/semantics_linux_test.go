//go:build linux

package fuse

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"github.com/roost-containers/roost/layers"
	"golang.org/x/sys/unix"
)

// Tests of the semantics issue 3 lists beyond the OCI rules: large and
// sparse files, mmap, exec, large directories, statfs, copy-up of a large
// file, a crash of the serving process, default_permissions, and the export
// of the writable layer back into the layer store.

// fragment is a data region of a sparse tar entry.
type fragment struct {
	off  int64
	data []byte
}

// rawHeader is a ustar header block.
func rawHeader(name string, typ byte, size int64) []byte {
	b := make([]byte, 512)
	copy(b[0:100], name)
	copy(b[100:108], "0000644\x00")
	copy(b[108:116], "0000000\x00")
	copy(b[116:124], "0000000\x00")
	copy(b[124:136], fmt.Sprintf("%011o\x00", size))
	copy(b[136:148], fmt.Sprintf("%011o\x00", 1700000000))
	b[156] = typ
	copy(b[257:265], "ustar\x0000")
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

func pad512(b []byte) []byte {
	if r := len(b) % 512; r != 0 {
		b = append(b, make([]byte, 512-r)...)
	}
	return b
}

// paxRecord formats one PAX record, whose length counts itself.
func paxRecord(k, v string) string {
	body := " " + k + "=" + v + "\n"
	n := len(body) + 1
	for len(strconv.Itoa(n))+len(body) != n {
		n = len(strconv.Itoa(n)) + len(body)
	}
	return strconv.Itoa(n) + body
}

// sparseEntry is a GNU sparse 1.0 (PAX) tar entry, as GNU tar writes with
// --sparse --format=posix, for a file of realSize bytes holding frags.
func sparseEntry(name string, realSize int64, frags []fragment) []byte {
	pax := paxRecord("GNU.sparse.major", "1") + paxRecord("GNU.sparse.minor", "0") +
		paxRecord("GNU.sparse.name", name) + paxRecord("GNU.sparse.realsize", strconv.FormatInt(realSize, 10))
	sparseMap := strconv.Itoa(len(frags)) + "\n"
	var data []byte
	for _, f := range frags {
		sparseMap += strconv.FormatInt(f.off, 10) + "\n" + strconv.Itoa(len(f.data)) + "\n"
		data = append(data, f.data...)
	}
	body := append(pad512([]byte(sparseMap)), data...)
	out := rawHeader("PaxHeaders/"+name, 'x', int64(len(pax)))
	out = append(out, pad512([]byte(pax))...)
	out = append(out, rawHeader("GNUSparseFile.0/"+name, '0', int64(len(body)))...)
	return append(out, pad512(body)...)
}

// sparseTar is a layer of entries followed by sparse files, each given as
// the bytes sparseEntry made.
func sparseTar(t *testing.T, entries []tarEntry, sparse ...[]byte) []byte {
	t.Helper()
	b := makeTar(t, entries)
	b = b[:len(b)-1024] // drop the end-of-archive blocks
	for _, s := range sparse {
		b = append(b, s...)
	}
	return append(b, make([]byte, 1024)...)
}

// storeTars puts raw layer tars into a new layer store.
func storeTars(t *testing.T, tars ...[]byte) (*layers.Store, []Lower) {
	t.Helper()
	st, err := layers.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var lowers []Lower
	for _, b := range tars {
		lowers = append(lowers, putLower(t, st, bytes.NewReader(b)))
	}
	return st, lowers
}

func putLower(t *testing.T, st *layers.Store, r io.Reader) Lower {
	t.Helper()
	id, _, err := st.PutLayer(r)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := st.LayerEntries(id)
	if err != nil {
		t.Fatal(err)
	}
	return Lower{Tar: st.LayerTar(id), Index: idx}
}

// mountLowers mounts a union of lowers over a new writable layer.
func mountLowers(t *testing.T, lowers []Lower) *testUnion {
	t.Helper()
	tu := &testUnion{t: t, mnt: t.TempDir(), writable: t.TempDir(), lowers: lowers}
	tu.mount()
	t.Cleanup(func() {
		if tu.m != nil {
			tu.unmount()
		}
	})
	return tu
}

func (tu *testUnion) hostPath(p string) string { return filepath.Join(tu.writable, "upper", p) }

func preadAt(t *testing.T, f *os.File, n int, off int64) []byte {
	t.Helper()
	b := make([]byte, n)
	m, err := f.ReadAt(b, off)
	if err != nil && !(errors.Is(err, io.EOF) && m == n) {
		t.Fatalf("read %s at %d: %v", f.Name(), off, err)
	}
	return b
}

const gib = int64(1) << 30

func TestLargeFiles(t *testing.T) {
	t.Parallel()
	head, tail := bytes.Repeat([]byte("H"), 4096), []byte("the end of a 5 GiB file")
	size := 5*gib + int64(len(tail))
	small := int64(64 << 20)
	_, lowers := storeTars(t, sparseTar(t, []tarEntry{dir("d"), reg("d/after", "x")},
		sparseEntry("big", size, []fragment{{0, head}, {5 * gib, tail}}),
		sparseEntry("holes", small+1, []fragment{{4096, []byte("data")}, {small, []byte("z")}}),
		sparseEntry("d/last", 3, []fragment{{0, []byte("abc")}})))
	tu := mountLowers(t, lowers)

	t.Run("lower sparse file over 4 GiB", func(t *testing.T) {
		f, err := os.Open(tu.path("big"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if fi, _ := f.Stat(); fi.Size() != size {
			t.Errorf("size %d, want %d", fi.Size(), size)
		}
		if got := preadAt(t, f, len(tail), 5*gib); !bytes.Equal(got, tail) {
			t.Errorf("tail: %q", got)
		}
		if got := preadAt(t, f, 4096, 4096); !bytes.Equal(got, make([]byte, 4096)) {
			t.Error("a hole does not read as zeros")
		}
		if got := preadAt(t, f, 4096, 3*gib); !bytes.Equal(got, make([]byte, 4096)) {
			t.Error("a hole past 2 GiB does not read as zeros")
		}
		// Backwards after forwards: the head again.
		if got := preadAt(t, f, 4096, 0); !bytes.Equal(got, head) {
			t.Errorf("head: %q...", got[:8])
		}
		if got := preadAt(t, f, 4, 4*gib+3); !bytes.Equal(got, make([]byte, 4)) {
			t.Error("a hole past 4 GiB does not read as zeros")
		}
	})
	t.Run("entries around sparse ones", func(t *testing.T) {
		for p, want := range map[string]string{"d/after": "x", "d/last": "abc"} {
			if b, err := os.ReadFile(tu.path(p)); err != nil || string(b) != want {
				t.Errorf("%s: %q, %v; want %q", p, b, err, want)
			}
		}
	})
	t.Run("copy-up of a sparse lower file keeps holes", func(t *testing.T) {
		f, err := os.OpenFile(tu.path("holes"), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("!")); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		st := lstat(t, tu.path("holes"))
		if st.Size != small+2 || st.Blocks*512 > 1<<20 {
			t.Errorf("after copy-up: size %d (want %d), %d blocks: the holes were filled", st.Size, small+2, st.Blocks)
		}
		b, err := os.ReadFile(tu.path("holes"))
		if err != nil {
			t.Fatal(err)
		}
		want := make([]byte, small+2)
		copy(want[4096:], "data")
		copy(want[small:], "z!")
		if !bytes.Equal(b, want) {
			t.Error("contents changed in the copy-up")
		}
	})
	t.Run("upper sparse file over 4 GiB", func(t *testing.T) {
		f, err := os.Create(tu.path("upper-big"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte("start"), 0); err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(tail, 5*gib); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		check := func(when string) {
			st := lstat(t, tu.path("upper-big"))
			if st.Size != size {
				t.Errorf("%s: size %d, want %d", when, st.Size, size)
			}
			if st.Blocks*512 > 1<<20 {
				t.Errorf("%s: %d blocks: the hole was filled", when, st.Blocks)
			}
			f, err := os.Open(tu.path("upper-big"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if got := preadAt(t, f, len(tail), 5*gib); !bytes.Equal(got, tail) {
				t.Errorf("%s: tail %q", when, got)
			}
			if got := preadAt(t, f, 8, 4*gib); !bytes.Equal(got, make([]byte, 8)) {
				t.Errorf("%s: hole reads %q", when, got)
			}
			// The hole is a hole for SEEK_DATA too.
			if off, err := unix.Seek(int(f.Fd()), 4096, unix.SEEK_DATA); err != nil || off < 4*gib {
				t.Errorf("%s: SEEK_DATA from 4096: %d, %v; want the tail's block", when, off, err)
			}
		}
		check("mounted")
		tu.unmount()
		tu.mount()
		check("after remount")
	})
}

// TestSparseFormats reads sparse files from layers GNU tar wrote in each of
// its sparse formats: old GNU ('S' entries) and PAX 0.0, 0.1 and 1.0.
func TestSparseFormats(t *testing.T) {
	t.Parallel()
	gnuTar, err := exec.LookPath("tar")
	if err != nil {
		t.Fatal("the test makes layers with GNU tar:", err)
	}
	src := t.TempDir()
	f, err := os.Create(filepath.Join(src, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	size := 5*gib + 4096
	for _, w := range []struct {
		off  int64
		data string
	}{{0, "head"}, {3 * gib, "middle"}, {5 * gib, "tail"}} {
		if _, err := f.WriteAt([]byte(w.data), w.off); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(f.Truncate(size), f.Close()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "after"), []byte("after"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, format := range [][]string{
		{"--format=gnu"},
		{"--format=posix", "--sparse-version=0.0"},
		{"--format=posix", "--sparse-version=0.1"},
		{"--format=posix", "--sparse-version=1.0"},
	} {
		t.Run(strings.Join(format, " "), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "layer.tar")
			args := append([]string{"--sparse", "-C", src, "-cf", out}, format...)
			if b, err := exec.Command(gnuTar, append(args, "sparse", "after")...).CombinedOutput(); err != nil {
				t.Fatalf("tar: %v: %s", err, b)
			}
			st, err := layers.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			layer, err := os.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer layer.Close()
			tu := mountLowers(t, []Lower{putLower(t, st, layer)})
			m, err := os.Open(tu.path("sparse"))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			for off, want := range map[int64]string{0: "head", 3 * gib: "middle", 5 * gib: "tail", gib: "\x00\x00\x00\x00"} {
				if got := preadAt(t, m, len(want), off); string(got) != want {
					t.Errorf("at %d: %q, want %q", off, got, want)
				}
			}
			if st := lstat(t, tu.path("sparse")); st.Size != size || st.Blocks*512 > 1<<20 {
				t.Errorf("size %d (want %d), %d blocks", st.Size, size, st.Blocks)
			}
			if b, err := os.ReadFile(tu.path("after")); err != nil || string(b) != "after" {
				t.Errorf("the entry after the sparse one: %q, %v", b, err)
			}
		})
	}
}

func TestMmap(t *testing.T) {
	t.Parallel()
	tu := mountLayers(t, []tarEntry{reg("lower", strings.Repeat("L", 8192)), reg("lower-rw", strings.Repeat("l", 8192))})
	mmapFile := func(t *testing.T, p string, flag int, prot, how int) ([]byte, *os.File) {
		t.Helper()
		f, err := os.OpenFile(p, flag, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		b, err := unix.Mmap(int(f.Fd()), 0, 8192, prot, how)
		if err != nil {
			t.Fatalf("mmap %s: %v", p, err)
		}
		return b, f
	}
	t.Run("shared write of an upper file", func(t *testing.T) {
		if err := os.WriteFile(tu.path("shared"), bytes.Repeat([]byte("u"), 8192), 0o644); err != nil {
			t.Fatal(err)
		}
		b, f := mmapFile(t, tu.path("shared"), os.O_RDWR, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		copy(b[4000:], "written through the mapping")
		if err := unix.Msync(b, unix.MS_SYNC); err != nil {
			t.Fatal(err)
		}
		if err := unix.Munmap(b); err != nil {
			t.Fatal(err)
		}
		if got := preadAt(t, f, 27, 4000); string(got) != "written through the mapping" {
			t.Errorf("read after a shared write: %q", got)
		}
		host, err := os.ReadFile(tu.hostPath("shared"))
		if err != nil || !bytes.Contains(host, []byte("written through the mapping")) {
			t.Errorf("the write did not reach the writable layer (%v)", err)
		}
	})
	t.Run("shared write of a lower file copies up", func(t *testing.T) {
		b, _ := mmapFile(t, tu.path("lower-rw"), os.O_RDWR, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		copy(b, "mapped")
		if err := unix.Msync(b, unix.MS_SYNC); err != nil {
			t.Fatal(err)
		}
		unix.Munmap(b)
		got, err := os.ReadFile(tu.path("lower-rw"))
		if err != nil || string(got) != "mapped"+strings.Repeat("l", 8192-6) {
			t.Errorf("read after a shared write: %.10q, %v", got, err)
		}
	})
	t.Run("private write is not seen", func(t *testing.T) {
		for _, name := range []string{"lower", "shared"} {
			before, err := os.ReadFile(tu.path(name))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := mmapFile(t, tu.path(name), os.O_RDONLY, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
			copy(b, "private")
			if string(b[:7]) != "private" {
				t.Errorf("%s: the private mapping lost its write", name)
			}
			after, err := os.ReadFile(tu.path(name))
			if err != nil || !bytes.Equal(after, before) {
				t.Errorf("%s: a private write reached the file: %.10q", name, after)
			}
			unix.Munmap(b)
		}
		if _, err := os.Lstat(tu.hostPath("lower")); err == nil {
			t.Error("a private mapping of a lower file copied it up")
		}
	})
	t.Run("shared read of a lower file", func(t *testing.T) {
		b, _ := mmapFile(t, tu.path("lower"), os.O_RDONLY, unix.PROT_READ, unix.MAP_SHARED)
		if string(b) != strings.Repeat("L", 8192) {
			t.Errorf("mapped lower file: %.10q", b)
		}
		unix.Munmap(b)
	})
}

// elfClosure lists an executable with its interpreter and every shared
// library it needs, found where the host's dynamic loader finds them.
func elfClosure(t *testing.T, bin string) []string {
	t.Helper()
	dirs := []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/lib", "/usr/lib", "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu"}
	seen := map[string]bool{}
	var out []string
	var add func(p string)
	add = func(p string) {
		if seen[p] {
			return
		}
		seen[p] = true
		out = append(out, p)
		f, err := elf.Open(p)
		if err != nil {
			t.Fatalf("read ELF %s: %v", p, err)
		}
		defer f.Close()
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				b, _ := io.ReadAll(prog.Open())
				add(strings.TrimRight(string(b), "\x00"))
			}
		}
		libs, _ := f.ImportedLibraries()
		for _, lib := range libs {
			found := false
			for _, d := range dirs {
				if _, err := os.Stat(filepath.Join(d, lib)); err == nil {
					add(filepath.Join(d, lib))
					found = true
					break
				}
			}
			if !found {
				t.Fatalf("shared library %s of %s not found", lib, p)
			}
		}
	}
	add(bin)
	return out
}

func TestExec(t *testing.T) {
	t.Parallel()
	dyn, err := exec.LookPath("ls")
	if err != nil {
		t.Fatal("the test copies the host's ls into a layer:", err)
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal("the test copies the host's static busybox into a layer (apt install busybox-static):", err)
	}
	entries := []tarEntry{dir("tmp")}
	files := append(elfClosure(t, dyn), busybox)
	for _, p := range files {
		b, err := os.ReadFile(p) // follows symlinks: the layer gets regular files
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, tarEntry{name: strings.TrimPrefix(p, "/"), mode: 0o755, body: string(b)})
	}
	entries = append(entries, tarEntry{name: "bin/ls", mode: 0o755, body: mustRead(t, dyn)}, tarEntry{name: "bin/busybox", mode: 0o755, body: mustRead(t, busybox)})
	tu := mountLayers(t, entries)
	run := func(args ...string) string {
		t.Helper()
		out, err := chrootCommand(t, tu.mnt, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s in the mount: %v: %s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// A dynamically linked binary: its loader and libraries come from the
	// mount too (chroot).
	if out := run("/bin/ls", "/bin"); !strings.Contains(out, "busybox") {
		t.Errorf("ls /bin in the mount: %q", out)
	}
	if out := run("/bin/busybox", "echo", "static"); out != "static\n" {
		t.Errorf("busybox echo: %q", out)
	}
	// A binary written into the writable layer, and a copied-up one.
	if err := os.WriteFile(tu.path("tmp/busybox"), []byte(mustRead(t, busybox)), 0o755); err != nil {
		t.Fatal(err)
	}
	if out := run("/tmp/busybox", "echo", "upper"); out != "upper\n" {
		t.Errorf("upper busybox: %q", out)
	}
	if err := os.Chmod(tu.path("bin/ls"), 0o700); err != nil {
		t.Fatal(err)
	}
	if out := run("/bin/ls", "/tmp"); out != "busybox\n" {
		t.Errorf("copied-up ls: %q", out)
	}
}

// chrootCommand runs args in root through the host's chroot program. This
// process serves the mount: were it to exec a program of the mount itself,
// the exec would look it up while the forking thread holds its scheduler
// slot (Go's vfork), and a garbage collection starting then would wait for
// that slot while the lookup waits for the collection: a deadlock.
func chrootCommand(t *testing.T, root string, args ...string) *exec.Cmd {
	t.Helper()
	chroot, err := exec.LookPath("chroot")
	if err != nil {
		t.Fatal("the test runs programs of the mount with chroot (coreutils):", err)
	}
	cmd := exec.Command(chroot, append([]string{root}, args...)...)
	cmd.Dir = "/"
	return cmd
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// readNames lists a directory with getdents in small batches (so that the
// listing takes many READDIR requests) and fails on a name listed twice.
func readNames(t *testing.T, p string) []string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	seen := map[string]bool{}
	for {
		batch, err := f.Readdirnames(100)
		for _, n := range batch {
			if seen[n] {
				t.Errorf("%s: %s listed twice", p, n)
			}
			seen[n] = true
		}
		names = append(names, batch...)
		if err == io.EOF || len(batch) == 0 {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	sort.Strings(names)
	return names
}

func TestReaddirLarge(t *testing.T) {
	t.Parallel()
	const n = 50000
	entries := []tarEntry{dir("lower"), dir("mixed")}
	for i := 0; i < n; i++ {
		entries = append(entries, reg(fmt.Sprintf("lower/f%06d", i), ""))
	}
	for i := 0; i < n; i += 2 {
		entries = append(entries, reg(fmt.Sprintf("mixed/f%06d", i), ""))
	}
	tu := mountLayers(t, entries)
	if err := os.Mkdir(tu.path("upper"), 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	createMany(t, tu.path("upper"), 0, n, 1)
	createMany(t, tu.path("mixed"), 1, n, 2)
	t.Logf("created %d files through the mount in %v", n+n/2, time.Since(start))
	for _, d := range []string{"lower", "upper", "mixed"} {
		start := time.Now()
		names := readNames(t, tu.path(d))
		t.Logf("listed %s (%d names) in %v", d, len(names), time.Since(start))
		if len(names) != n {
			t.Errorf("%s: %d names, want %d", d, len(names), n)
			continue
		}
		for i, name := range names {
			if want := fmt.Sprintf("f%06d", i); name != want {
				t.Errorf("%s: name %d is %s, want %s", d, i, name, want)
				break
			}
		}
	}
	// A deletion in the big lower directory shows.
	if err := os.Remove(tu.path("lower/f000007")); err != nil {
		t.Fatal(err)
	}
	if names := readNames(t, tu.path("lower")); len(names) != n-1 {
		t.Errorf("after one removal: %d names, want %d", len(names), n-1)
	}
}

// createMany creates files f<i> in dir for i = from, from+step, ... < to, in parallel.
func createMany(t *testing.T, dir string, from, to, step int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := from + w*step; i < to; i += 4 * step {
				if err := unix.Mknod(filepath.Join(dir, fmt.Sprintf("f%06d", i)), unix.S_IFREG|0o644, 0); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestReaddirWhileAdding(t *testing.T) {
	t.Parallel()
	entries := []tarEntry{dir("d")}
	for i := 0; i < 1000; i++ {
		entries = append(entries, reg(fmt.Sprintf("d/lower%04d", i), ""))
	}
	tu := mountLayers(t, entries)
	for i := 0; i < 1000; i++ {
		if err := os.WriteFile(tu.path(fmt.Sprintf("d/upper%04d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	var added sync.WaitGroup
	added.Add(1)
	go func() {
		defer added.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			p := tu.path(fmt.Sprintf("d/new%06d", i))
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Error(err)
				return
			}
			if i%3 == 0 {
				os.Remove(p)
			}
		}
	}()
	for round := 0; round < 20; round++ {
		names := readNames(t, tu.path("d"))
		// Names present during the whole listing are listed exactly once.
		have := map[string]bool{}
		for _, n := range names {
			have[n] = true
		}
		for i := 0; i < 1000; i++ {
			for _, n := range []string{fmt.Sprintf("lower%04d", i), fmt.Sprintf("upper%04d", i)} {
				if !have[n] {
					t.Fatalf("round %d: %s is missing", round, n)
				}
			}
		}
	}
	close(done)
	added.Wait()
}

func TestStatfs(t *testing.T) {
	t.Parallel()
	tu := mountLayers(t, baseLayer)
	var got, host unix.Statfs_t
	if err := unix.Statfs(tu.path("usr/lib"), &got); err != nil {
		t.Fatal(err)
	}
	if err := unix.Statfs(tu.writable, &host); err != nil {
		t.Fatal(err)
	}
	const fuseSuperMagic = 0x65735546
	if got.Type != fuseSuperMagic {
		t.Errorf("f_type %#x, want FUSE's %#x", got.Type, fuseSuperMagic)
	}
	if got.Blocks != host.Blocks || got.Bsize != host.Bsize || got.Files != host.Files || got.Namelen == 0 {
		t.Errorf("statfs of the union %+v does not report the writable layer's filesystem %+v", got, host)
	}
	if got.Flags&unix.ST_NOSUID != 0 {
		t.Error("mounted nosuid: setuid programs and file capabilities of the image would not work")
	}
	if got.Bavail == 0 || got.Bfree < got.Bavail {
		t.Errorf("free blocks: bfree %d bavail %d", got.Bfree, got.Bavail)
	}
}

// TestFsync: fsync of files and directories, lower and upper, succeeds
// (dpkg syncs its database's directory and refuses to go on otherwise).
func TestFsync(t *testing.T) {
	t.Parallel()
	tu := mountLayers(t, baseLayer)
	if err := os.MkdirAll(tu.path("newdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tu.path("newdir/f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{".", "usr/lib", "newdir", "newdir/f"} {
		f, err := os.Open(tu.path(p))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Errorf("fsync %s: %v", p, err)
		}
		f.Close()
	}
}

// TestCopyUpLarge copies up a 1 GiB lower file by appending one byte, checks
// the result's hash, and logs the time next to that of a 64 MiB copy-up, so
// that a quadratic copy-up shows as a ratio far above 16.
func TestCopyUpLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 2 GiB of disk (skipped with -short)")
	}
	st, err := layers.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int64{"big": gib, "medium": 64 << 20}
	var lowers []Lower
	hashes := map[string][]byte{}
	for _, name := range []string{"big", "medium"} {
		size := sizes[name]
		pr, pw := io.Pipe()
		h := sha256.New()
		go func() {
			tw := tar.NewWriter(pw)
			err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, Typeflag: tar.TypeReg, ModTime: time.Unix(1700000000, 0)})
			if err == nil {
				rng := rand.NewChaCha8([32]byte{byte(size)})
				_, err = io.CopyN(io.MultiWriter(tw, h), rng, size)
			}
			if err == nil {
				err = tw.Close()
			}
			pw.CloseWithError(err)
		}()
		lowers = append(lowers, putLower(t, st, pr))
		h.Write([]byte("!"))
		hashes[name] = h.Sum(nil)
	}
	tu := mountLowers(t, lowers)
	took := map[string]time.Duration{}
	for _, name := range []string{"medium", "big"} {
		start := time.Now()
		f, err := os.OpenFile(tu.path(name), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("!")); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		took[name] = time.Since(start)
		f, err = os.Open(tu.path(name))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, f)
		f.Close()
		if err != nil || n != sizes[name]+1 || !bytes.Equal(h.Sum(nil), hashes[name]) {
			t.Errorf("%s after copy-up: %d bytes, %v, hash %s want %x", name, n, err, fmt.Sprintf("%x", h.Sum(nil)), hashes[name])
		}
		if fi, err := os.Stat(tu.hostPath(name)); err != nil || fi.Size() != sizes[name]+1 {
			t.Errorf("%s in the writable layer: %v", name, err)
		}
	}
	t.Logf("copy-up by appending one byte: 64 MiB in %v, 1 GiB in %v (ratio %.1f; linear is 16)",
		took["medium"], took["big"], float64(took["big"])/float64(took["medium"]))
}

// TestKillServer kills the process that serves a union (kill -9) while a
// command in its namespace reads from the mount, and checks that nothing
// survives it: no process of the command, no mount.
func TestKillServer(t *testing.T) {
	t.Parallel()
	st, err := layers.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	id, _, err := st.PutLayer(bytes.NewReader(makeTar(t, []tarEntry{reg("big", strings.Repeat("x", 8<<20))})))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	// The command is init of its own pid namespace: it reads its pid in
	// ours from /proc/self/stat (a builtin's redirection is the shell's own).
	spec, _ := json.Marshal(runSpec{
		Layers:   []LayerFiles{{Tar: st.LayerTar(id), Index: st.LayerIndex(id)}},
		Writable: filepath.Join(dir, "writable"), Mount: filepath.Join(dir, "root"),
		Command: []string{"sh", "-c", `read pid rest < /proc/self/stat; sleep 1000 & echo $pid > "$0"; while :; do cat "$ROOST_MOUNT/big" >/dev/null; done`, pidFile},
	})
	// Already root of a user namespace here: only a mount namespace is new,
	// as in the agent.
	cmd := exec.Command("/proc/self/exe", string(spec))
	cmd.Args[0] = runEntry
	cmd.Env = append(os.Environ(), "ROOST_REEXEC="+runEntry)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(pidFile); err == nil && len(b) > 0 && b[len(b)-1] == '\n' {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the command in the mount did not start")
		}
	}
	mntNS, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if cmdNS, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); cmdNS != mntNS {
		t.Fatalf("the command's mount namespace %s is not the server's %s", cmdNS, mntNS)
	}
	time.Sleep(300 * time.Millisecond) // let it read
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	// The namespace dies with its last process: none may remain, none stuck.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		left := processesIn(mntNS)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for p := range left {
				syscall.Kill(p, syscall.SIGKILL)
			}
			t.Fatalf("processes in the dead server's mount namespace 10 s after kill -9 (pid: state): %v", left)
		}
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(mounts, []byte(dir)) { // other tests' mounts may be there
		t.Errorf("a mount is left:\n%s", mounts)
	}
}

// processesIn lists the processes (pid: state letter) in the mount
// namespace ns, zombies left out.
func processesIn(ns string) map[int]string {
	out := map[int]string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); err == nil && l == ns {
			if state, alive := procState(pid); alive {
				out[pid] = state
			}
		}
	}
	return out
}

// procState is the state letter of a process, and whether it still exists
// (a zombie does not count).
func procState(pid int) (string, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && len(s) > i+2 {
		state := s[i+2 : i+3]
		return state, state != "Z" && state != "X"
	}
	return "?", true
}

// TestDefaultPermissions checks that the kernel enforces the modes the
// layers record. Where uid 1000 is mapped (as root, or with a subuid range)
// a process of that uid cannot read a 0600 file of root. With a single
// mapping only uid 0 exists, and files of unmapped owners show as root's;
// there root without CAP_DAC_OVERRIDE still cannot read a file of mode 0200.
func TestDefaultPermissions(t *testing.T) {
	t.Parallel()
	tu := mountLayers(t, []tarEntry{
		dir("d"),
		{name: "d/secret", mode: 0o600, body: "secret"},
		{name: "d/locked", mode: 0o200, body: "locked"},
		{name: "d/theirs", mode: 0o600, uid: 1000, gid: 1000, body: "theirs"},
	})
	mapped := shownID(1000) == 1000

	// Without capabilities, on a thread of this process.
	want := map[string]error{"d/secret": nil, "d/locked": syscall.EACCES, "d/theirs": nil}
	if mapped {
		want["d/theirs"] = syscall.EACCES
	}
	got := withoutCaps(t, func() map[string]error {
		out := map[string]error{}
		for p := range want {
			fd, err := unix.Open(tu.path(p), unix.O_RDONLY, 0)
			if err == nil {
				unix.Close(fd)
				out[p] = nil
			} else {
				out[p] = err
			}
		}
		return out
	})
	for p, w := range want {
		if !errors.Is(got[p], w) && got[p] != w {
			t.Errorf("open %s as root without capabilities: %v, want %v", p, got[p], w)
		}
	}
	// With capabilities root reads everything.
	for p := range want {
		if _, err := os.ReadFile(tu.path(p)); err != nil {
			t.Errorf("root with capabilities: %v", err)
		}
	}
	if !mapped {
		t.Log("uid 1000 is not mapped (single mapping): checked root without capabilities only")
		return
	}
	// uid 1000 needs a way to the mountpoint.
	for d := tu.mnt; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	cat := func(p string) (string, error) {
		cmd := exec.Command("cat", tu.path(p))
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1000, Gid: 1000, Groups: []uint32{}}}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := cat("d/secret"); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("uid 1000 reading a 0600 file of root: %q, %v; want Permission denied", out, err)
	}
	if out, err := cat("d/theirs"); err != nil || out != "theirs" {
		t.Errorf("uid 1000 reading its own 0600 file: %q, %v", out, err)
	}
}

// withoutCaps runs fn on a thread whose effective capabilities are cleared;
// the thread ends with it.
func withoutCaps[T any](t *testing.T, fn func() T) T {
	t.Helper()
	type result struct {
		v   T
		err error
	}
	ch := make(chan result)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			ch <- result{err: err}
			return
		}
		data[0].Effective, data[1].Effective = 0, 0
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			ch <- result{err: err}
			return
		}
		ch <- result{v: fn()}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatal("drop capabilities:", r.err)
	}
	return r.v
}

// fileInfo is what treeMeta records of one path.
type fileInfo struct {
	Mode, UID, GID uint32
	Size           int64
	Rdev           uint64
	Nlink          uint64
	Mtime          int64 // regular files only
	Content        string
	Xattrs         map[string]string
}

// treeMeta lists every path under root with its metadata.
func treeMeta(t *testing.T, root string) map[string]fileInfo {
	t.Helper()
	out := map[string]fileInfo{}
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		fi := fileInfo{Mode: st.Mode, UID: st.Uid, GID: st.Gid, Rdev: st.Rdev, Nlink: st.Nlink}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			fi.Nlink = 0 // 1 for a merged directory, as on overlayfs
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fi.Content, fi.Size, fi.Mtime = string(b), st.Size, st.Mtim.Nano()
		case unix.S_IFLNK:
			fi.Content, _ = os.Readlink(p)
		}
		buf := make([]byte, 4096)
		n, _ := unix.Llistxattr(p, buf)
		for _, k := range strings.Split(string(buf[:max(n, 0)]), "\x00") {
			if k == "" {
				continue
			}
			v := make([]byte, 4096)
			m, _ := unix.Lgetxattr(p, k, v)
			if fi.Xattrs == nil {
				fi.Xattrs = map[string]string{}
			}
			fi.Xattrs[k] = string(v[:max(m, 0)])
		}
		out[strings.TrimPrefix(p, root)] = fi
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestWriteLayerRoundtrip exports a changed writable layer, stores the
// export with layers.Store.PutLayer as a new layer, and mounts the lower
// layers plus that one: the union must look exactly as the changed one did.
// This is what the builder does with a RUN step.
func TestWriteLayerRoundtrip(t *testing.T) {
	t.Parallel()
	st, err := layers.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	base := append([]tarEntry{dir("opt"), dir("opt/keep"), reg("opt/keep/k", "k"), dir("var"), dir("var/gone"), reg("var/gone/g", "g")}, baseLayer...)
	lowers := []Lower{putLower(t, st, bytes.NewReader(makeTar(t, base)))}
	tu := mountLowers(t, lowers)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	owner := int(shownID(1000))
	must(os.Remove(tu.path("usr/lib/b")))
	must(os.RemoveAll(tu.path("var/gone")))
	must(os.RemoveAll(tu.path("etc")))
	must(os.Mkdir(tu.path("etc"), 0o750))
	must(os.WriteFile(tu.path("etc/new"), []byte("new"), 0o640))
	must(os.Link(tu.path("etc/new"), tu.path("etc/new2")))
	must(os.Symlink("../usr/lib/a", tu.path("etc/sym")))
	must(unix.Mkfifo(tu.path("etc/fifo"), 0o600))
	must(os.Chown(tu.path("www"), owner, owner))
	must(os.Chmod(tu.path("secret"), 0o400))
	must(unix.Lsetxattr(tu.path("opt/keep/k"), "user.note", []byte("kept"), 0))
	must(os.Rename(tu.path("usr/lib/sym"), tu.path("opt/sym")))
	f, err := os.OpenFile(tu.path("usr/lib/a"), os.O_WRONLY|os.O_APPEND, 0)
	must(err)
	_, err = f.WriteString("+")
	must(errors.Join(err, f.Close()))
	must(os.MkdirAll(tu.path("opt/deep/er"), 0o700))
	must(os.WriteFile(tu.path("opt/deep/er/f"), []byte("f"), 0o600))
	must(os.Lchown(tu.path("opt/deep"), owner, 0))
	want := treeMeta(t, tu.mnt)
	tu.unmount()

	var buf bytes.Buffer
	must(WriteLayer(tu.writable, &buf))
	exported := putLower(t, st, &buf)
	got := treeMeta(t, mountLowers(t, append(lowers, exported)).mnt)
	// Directories' times are the host's; inode numbers differ by design.
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("union from the exported layer differs (-changed mount +reimported):\n%s", diff)
	}
}

// resident counts the pages of the file at p that are in the page cache,
// without reading any.
func resident(t *testing.T, p string) (in, all int) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal("mincore:", errno)
	}
	for _, v := range vec {
		if v&1 != 0 {
			in++
		}
	}
	return in, len(vec)
}

// TestPushOnOpen checks that programs being executed and shared libraries
// are in the page cache whole once opened (wantsPush), and other files are
// not: opening one reads nothing.
func TestPushOnOpen(t *testing.T) {
	t.Parallel()
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal("the test copies the host's static busybox into a layer (apt install busybox-static):", err)
	}
	body := strings.Repeat("0123456789abcdef", 64<<10) // 1 MiB
	tu := mountLayers(t, []tarEntry{
		{name: "lib/libdemo.so.1", mode: 0o644, body: body},
		{name: "data/plain.bin", mode: 0o644, body: body},
		{name: "bin/busybox", mode: 0o755, body: mustRead(t, busybox)},
	})
	if in, all := resident(t, tu.path("lib/libdemo.so.1")); in != all {
		t.Errorf("shared library: %d of %d pages in the page cache after open, want all", in, all)
	}
	if in, all := resident(t, tu.path("data/plain.bin")); in != 0 {
		t.Errorf("plain file: %d of %d pages in the page cache after open, want none", in, all)
	}
	if out, err := chrootCommand(t, tu.mnt, "/bin/busybox", "true").CombinedOutput(); err != nil {
		t.Fatalf("busybox true in the mount: %v: %s", err, out)
	}
	if in, all := resident(t, tu.path("bin/busybox")); in != all {
		t.Errorf("executed program: %d of %d pages in the page cache, want all", in, all)
	}
	// What was pushed is the file's content.
	if got := mustRead(t, tu.path("lib/libdemo.so.1")); got != body {
		t.Error("shared library: content differs after the push")
	}
}

// TestPreload: a program the agent preloads is in the page cache before
// anything opens it; a plain file, a file of the writable layer and an
// unknown path are not pushed.
func TestPreload(t *testing.T) {
	t.Parallel()
	body := strings.Repeat("0123456789abcdef", 64<<10) // 1 MiB
	tu := mountLayers(t, []tarEntry{
		{name: "bin/prog", mode: 0o755, body: body},
		{name: "bin/other", mode: 0o755, body: body},
	})
	if tu.m.Preload("bin/prog") {
		t.Error("Preload pushed a file the kernel has not looked up")
	}
	if _, err := os.Stat(tu.path("bin/prog")); err != nil {
		t.Fatal(err)
	}
	if !tu.m.Preload("/bin/prog") {
		t.Error("Preload did not push a program the kernel knows")
	}
	if tu.m.Preload("bin/prog") {
		t.Error("Preload pushed a program twice")
	}
	if in, all := resident(t, tu.path("bin/prog")); in != all {
		t.Errorf("preloaded program: %d of %d pages in the page cache, want all", in, all)
	}
	if got := mustRead(t, tu.path("bin/prog")); got != body {
		t.Error("preloaded program: content differs")
	}
	// A program of the writable layer is read from it as usual.
	if err := os.WriteFile(tu.path("bin/other"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if tu.m.Preload("bin/other") || tu.m.Preload("bin/missing") || tu.m.Preload("/") {
		t.Error("Preload pushed an upper file, a missing one or the root")
	}
}

// TestDirectWrites: large aligned writes reach the writable layer's host
// file with O_DIRECT (none of its pages are cached), the rest as before; the
// union and the host file read back what was written, also after an
// append through an O_APPEND descriptor and a rewrite of part of a block.
func TestDirectWrites(t *testing.T) {
	t.Parallel()
	tu := mountLayers(t, baseLayer)
	if !layers.TakesDirectIO(tu.writable) {
		t.Fatalf("%s is not on ext4, xfs, btrfs or f2fs: this test needs TMPDIR on one", tu.writable)
	}
	const mib = 1 << 20
	data := make([]byte, 3*mib)
	for i := range data {
		data[i] = byte(i*7 + i/4096)
	}
	f, err := os.OpenFile(tu.path("big"), os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += mib {
		if _, err := f.WriteAt(data[off:off+mib], int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if in, _ := resident(t, tu.hostPath("big")); in != 0 {
		t.Errorf("%d pages of the host file are cached after 1 MiB aligned writes: not written with O_DIRECT", in)
	}
	// A small write in the middle goes through the page cache.
	copy(data[mib+10:], "in the middle")
	if _, err := f.WriteAt([]byte("in the middle"), mib+10); err != nil {
		t.Fatal(err)
	}
	f.Close()
	a, err := os.OpenFile(tu.path("big"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	tail := bytes.Repeat([]byte("appended"), mib/8)
	if _, err := a.Write(tail); err != nil {
		t.Fatal(err)
	}
	a.Close()
	data = append(data, tail...)
	for _, p := range []string{tu.path("big"), tu.hostPath("big")} {
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("%s: read back %d bytes that differ from the %d written", p, len(got), len(data))
		}
	}
	// And after a remount, from the disk.
	tu.unmount()
	tu.mount()
	if got := mustRead(t, tu.path("big")); got != string(data) {
		t.Errorf("after remount: %d bytes that differ from the %d written", len(got), len(data))
	}
}
