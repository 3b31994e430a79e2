package layers

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A layer tar is written once, read later through the union, and fsynced
// before it counts as stored. Written through the page cache, every byte is
// first copied into a newly allocated page and then written back by the
// fsync; a pull of a 600 MB layer spent more time there than in the
// network. Where the store is on a local disk filesystem the layer goes to
// the disk with O_DIRECT instead, in large aligned blocks from buffers that
// are used again: no page cache to fill (nor to evict the user's files from)
// and little left for the fsync. On this project's VMs, which hand freed
// memory back to the host, a new page costs a fault in the host as well:
// 600 MB written and fsynced took 1.5 s through the page cache and 0.34 s
// with O_DIRECT (dd, 1 MiB blocks).
//
// Elsewhere (NFS, where O_DIRECT is a round trip to the server for each
// block; tmpfs; FUSE) and where the kernel refuses it, the writes are
// ordinary ones in the same blocks.

const (
	// DirectBlock is the size of the buffers in DirectBlocks: the bytes
	// per write of a layer tar.
	DirectBlock = 1 << 20
	// DirectAlign is the alignment O_DIRECT is given here: of the buffer's
	// address, the file offset and the length.
	DirectAlign = 4096
)

// DirectBlocks holds buffers (*[]byte) of DirectBlock bytes at addresses
// aligned for O_DIRECT, for writers to use again.
var DirectBlocks = sync.Pool{New: func() any {
	b := make([]byte, DirectBlock+DirectAlign)
	off := int(-uintptr(unsafe.Pointer(&b[0])) & (DirectAlign - 1))
	b = b[off : off+DirectBlock]
	return &b
}}

// directFS are the filesystems (statfs f_type) that take layer tars with
// O_DIRECT: local disk filesystems.
var directFS = map[int64]bool{
	unix.EXT4_SUPER_MAGIC:  true, // also ext2 and ext3
	unix.XFS_SUPER_MAGIC:   true,
	unix.BTRFS_SUPER_MAGIC: true,
	unix.F2FS_SUPER_MAGIC:  true,
}

// TakesDirectIO reports whether dir is on a filesystem where roost writes
// large files with O_DIRECT (a local disk filesystem).
func TakesDirectIO(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && directFS[int64(st.Type)]
}

// createLayerFile creates a new file for a layer tar at path and says
// whether it is open with O_DIRECT.
func createLayerFile(path string) (*os.File, bool, error) {
	if TakesDirectIO(filepath.Dir(path)) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_DIRECT, 0o666)
		if err == nil {
			return f, true, nil
		}
		if !errors.Is(err, unix.EINVAL) {
			return nil, false, err
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
	return f, false, err
}

// blockWriter gathers writes into directBlock-sized aligned blocks and
// writes them to w, which writes to f. If f is open with O_DIRECT, the
// block that ends the file (shorter, so not aligned) is written after
// O_DIRECT is cleared, and a first write the kernel refuses (EINVAL: the
// filesystem wants another alignment) is written again without it.
type blockWriter struct {
	f      *os.File
	w      io.Writer
	direct bool
	buf    *[]byte // from DirectBlocks
	n      int     // bytes waiting in buf
	err    error
}

func newBlockWriter(f *os.File, w io.Writer, direct bool) *blockWriter {
	return &blockWriter{f: f, w: w, direct: direct, buf: DirectBlocks.Get().(*[]byte)}
}

func (b *blockWriter) Write(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	written := 0
	for len(p) > 0 {
		c := copy((*b.buf)[b.n:], p)
		b.n += c
		written += c
		p = p[c:]
		if b.n == DirectBlock {
			if b.err = b.flush(); b.err != nil {
				return written, b.err
			}
		}
	}
	return written, nil
}

// flush writes the waiting bytes.
func (b *blockWriter) flush() error {
	if b.n == 0 {
		return nil
	}
	if b.direct && b.n%DirectAlign != 0 {
		if err := b.buffered(); err != nil {
			return err
		}
	}
	block := (*b.buf)[:b.n]
	_, err := b.w.Write(block)
	if err != nil && b.direct && errors.Is(err, unix.EINVAL) {
		// The filesystem took the open but not the write.
		if err = b.buffered(); err == nil {
			_, err = b.w.Write(block)
		}
	}
	b.n = 0
	return err
}

// buffered clears O_DIRECT from f.
func (b *blockWriter) buffered() error {
	b.direct = false
	rc, err := b.f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	err = rc.Control(func(fd uintptr) {
		var fl int
		if fl, ferr = unix.FcntlInt(fd, unix.F_GETFL, 0); ferr == nil {
			_, ferr = unix.FcntlInt(fd, unix.F_SETFL, fl&^unix.O_DIRECT)
		}
	})
	if err == nil {
		err = ferr
	}
	return err
}

// Close writes what is waiting and gives the buffer back; it does not
// close f.
func (b *blockWriter) Close() error {
	if b.err == nil {
		b.err = b.flush()
	}
	if b.buf != nil {
		DirectBlocks.Put(b.buf)
		b.buf = nil
	}
	if b.err != nil {
		return b.err
	}
	b.err = os.ErrClosed
	return nil
}
