package layers

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// localDiskDir is a directory on a filesystem that takes O_DIRECT layer
// writes: the test's temporary directory, or /var/tmp when that is tmpfs.
func localDiskDir(t *testing.T) string {
	t.Helper()
	for _, d := range []string{t.TempDir(), "/var/tmp"} {
		var st unix.Statfs_t
		if unix.Statfs(d, &st) == nil && directFS[int64(st.Type)] {
			if d == "/var/tmp" {
				var err error
				if d, err = os.MkdirTemp(d, "direct-test-"); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.RemoveAll(d) })
			}
			return d
		}
	}
	t.Fatalf("neither %s nor /var/tmp is on ext4, xfs, btrfs or f2fs: this test needs one", os.TempDir())
	return ""
}

// openFlags reads the file status flags of f from /proc/self/fdinfo.
func openFlags(t *testing.T, f *os.File) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "flags:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 8, 64)
			if err != nil {
				t.Fatal(err)
			}
			return int(n)
		}
	}
	t.Fatalf("no flags in fdinfo: %s", b)
	return 0
}

// cachedPages counts the pages of the file at path in the page cache.
func cachedPages(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	if fi.Size() == 0 {
		return 0
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal(e)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}

// TestBlockWriterDirect writes layer files of awkward sizes in awkward
// pieces on a local disk: the bytes come back as written, the file was open
// with O_DIRECT, and the whole blocks never went through the page cache.
func TestBlockWriterDirect(t *testing.T) {
	dir := localDiskDir(t)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 1, 4095, DirectAlign, DirectBlock - 1, DirectBlock, DirectBlock + 1, 3*DirectBlock + 12345} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			data := make([]byte, size)
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			path := filepath.Join(dir, fmt.Sprintf("layer-%d", size))
			f, direct, err := createLayerFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !direct || openFlags(t, f)&unix.O_DIRECT == 0 {
				t.Fatalf("direct %v, flags %o: the layer file is not open with O_DIRECT", direct, openFlags(t, f))
			}
			bw := newBlockWriter(f, f, direct)
			for rest := data; len(rest) > 0; {
				n := min(len(rest), 1+rng.IntN(300000))
				if _, err := bw.Write(rest[:n]); err != nil {
					t.Fatal(err)
				}
				rest = rest[n:]
			}
			if err := bw.Close(); err != nil {
				t.Fatal(err)
			}
			if err := closeSynced(f); err != nil {
				t.Fatal(err)
			}
			// Only the last, partial block may be cached (written after
			// O_DIRECT was cleared).
			tail := size % DirectBlock
			if got, most := cachedPages(t, path), (tail+os.Getpagesize()-1)/os.Getpagesize(); got > most {
				t.Errorf("%d pages of the file are cached; written with O_DIRECT, at most the %d of the tail may be", got, most)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("read back %d bytes, not the %d written", len(got), len(data))
			}
		})
	}
}

// einvalOnce refuses the first write as a filesystem that opens with
// O_DIRECT but wants another alignment does.
type einvalOnce struct {
	f       *os.File
	refused bool
}

func (e *einvalOnce) Write(p []byte) (int, error) {
	if !e.refused {
		e.refused = true
		return 0, unix.EINVAL
	}
	return e.f.Write(p)
}

// TestBlockWriterRefused: a block the kernel refuses with O_DIRECT is
// written again without it, and the file is complete.
func TestBlockWriterRefused(t *testing.T) {
	path := filepath.Join(localDiskDir(t), "layer")
	f, direct, err := createLayerFile(path)
	if err != nil || !direct {
		t.Fatalf("createLayerFile: direct %v, %v", direct, err)
	}
	defer f.Close()
	data := bytes.Repeat([]byte("roost"), DirectBlock/2)
	bw := newBlockWriter(f, &einvalOnce{f: f}, direct)
	if _, err := bw.Write(data); err != nil {
		t.Fatalf("write after EINVAL: %v", err)
	}
	if err := bw.Close(); err != nil {
		t.Fatal(err)
	}
	if openFlags(t, f)&unix.O_DIRECT != 0 {
		t.Error("O_DIRECT still set after the kernel refused a write with it")
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, not the %d written", len(got), len(data))
	}
}

// TestLayerFileBuffered: on tmpfs (no disk behind it) the layer file is an
// ordinary one.
func TestLayerFileBuffered(t *testing.T) {
	var st unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Fatalf("/dev/shm is not a tmpfs (%v): this test needs one", err)
	}
	dir, err := os.MkdirTemp("/dev/shm", "roost-layer-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	f, direct, err := createLayerFile(filepath.Join(dir, "layer"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if direct || openFlags(t, f)&unix.O_DIRECT != 0 {
		t.Fatal("a layer file on tmpfs was opened with O_DIRECT")
	}
}
