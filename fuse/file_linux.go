//go:build linux

package fuse

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// upperFile is an open file of the writable layer: a host file descriptor.
// Unlike fs.LoopbackFile it never reports the host file's attributes, which
// are not the union's.
type upperFile struct {
	lf  *fs.LoopbackFile
	fd  int
	ino uint64
}

func newUpperFile(fd int, ino uint64) *upperFile {
	return &upperFile{lf: fs.NewLoopbackFile(fd).(*fs.LoopbackFile), fd: fd, ino: ino}
}

var (
	_ fs.FileReader    = (*upperFile)(nil)
	_ fs.FileWriter    = (*upperFile)(nil)
	_ fs.FileFlusher   = (*upperFile)(nil)
	_ fs.FileFsyncer   = (*upperFile)(nil)
	_ fs.FileReleaser  = (*upperFile)(nil)
	_ fs.FileLseeker   = (*upperFile)(nil)
	_ fs.FileAllocater = (*upperFile)(nil)
)

func (f *upperFile) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return f.lf.Read(ctx, buf, off)
}

func (f *upperFile) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	return f.lf.Write(ctx, data, off)
}

func (f *upperFile) Flush(ctx context.Context) syscall.Errno { return f.lf.Flush(ctx) }

func (f *upperFile) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return f.lf.Fsync(ctx, flags)
}

func (f *upperFile) Release(ctx context.Context) syscall.Errno { return f.lf.Release(ctx) }

func (f *upperFile) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	return f.lf.Lseek(ctx, off, whence)
}

func (f *upperFile) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	return f.lf.Allocate(ctx, off, size, mode)
}

// lowerHandle is an open file of a lower layer: a window on its layer tar.
type lowerHandle struct {
	u *union
	f *lowerFile

	mu  sync.Mutex // guards the sparse reader
	tr  *tar.Reader
	pos int64
}

var (
	_ fs.FileReader   = (*lowerHandle)(nil)
	_ fs.FileFlusher  = (*lowerHandle)(nil)
	_ fs.FileReleaser = (*lowerHandle)(nil)
)

func (u *union) openLower(f *lowerFile) (fs.FileHandle, uint32, syscall.Errno) {
	if f.mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, 0, syscall.EINVAL
	}
	return &lowerHandle{u: u, f: f}, fuse.FOPEN_KEEP_CACHE, 0
}

func (h *lowerHandle) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	size := h.f.size
	if off >= size || h.f.layer < 0 {
		return fuse.ReadResultData(nil), 0
	}
	n := int64(len(buf))
	if n > size-off {
		n = size - off
	}
	tarFile := h.u.tars[h.f.layer]
	if !h.f.sparse {
		return fuse.ReadResultFd(tarFile.Fd(), h.f.dataOffset+off, int(n)), 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.tr == nil || off < h.pos {
		tr, err := sparseReader(tarFile, h.f)
		if err != nil {
			return nil, fs.ToErrno(err)
		}
		h.tr, h.pos = tr, 0
	}
	if _, err := io.CopyN(io.Discard, h.tr, off-h.pos); err != nil {
		h.tr = nil
		return nil, syscall.EIO
	}
	m, err := io.ReadFull(h.tr, buf[:n])
	h.pos = off + int64(m)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		h.tr = nil
		return nil, syscall.EIO
	}
	return fuse.ReadResultData(buf[:m]), 0
}

func (h *lowerHandle) Flush(ctx context.Context) syscall.Errno   { return 0 }
func (h *lowerHandle) Release(ctx context.Context) syscall.Errno { return 0 }

// sparseReader returns a tar reader positioned at the contents of a sparse
// entry.
func sparseReader(tarFile *os.File, f *lowerFile) (*tar.Reader, error) {
	tr := tar.NewReader(io.NewSectionReader(tarFile, f.headerOffset, 1<<62))
	if _, err := tr.Next(); err != nil {
		return nil, err
	}
	return tr, nil
}

// copyLowerData copies a lower file's contents into dst, in the kernel where
// it can (copy_file_range shares extents on filesystems that reflink).
func (u *union) copyLowerData(f *lowerFile, dst *os.File) error {
	src := u.tars[f.layer]
	if f.sparse {
		tr, err := sparseReader(src, f)
		if err != nil {
			return err
		}
		return copySparse(dst, tr, f.size)
	}
	off, left := f.dataOffset, f.size
	for left > 0 {
		n, err := unix.CopyFileRange(int(src.Fd()), &off, int(dst.Fd()), nil, int(min(left, 1<<30)), 0)
		if err != nil || n == 0 {
			if err != nil && !errors.Is(err, unix.EXDEV) && !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EINVAL) {
				return &os.PathError{Op: "copy_file_range", Path: src.Name(), Err: err}
			}
			_, err := io.Copy(dst, io.NewSectionReader(src, off, left))
			return err
		}
		left -= int64(n)
	}
	return nil
}

// copySparse writes r to dst leaving holes where r has runs of zeros.
func copySparse(dst *os.File, r io.Reader, size int64) error {
	buf := make([]byte, 1<<16)
	var off int64
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if !allZero(buf[:n]) {
				if _, werr := dst.WriteAt(buf[:n], off); werr != nil {
					return werr
				}
			}
			off += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return err
		}
	}
	return dst.Truncate(size)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
