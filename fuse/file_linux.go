//go:build linux

package fuse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/roost-containers/roost/layers"
	"golang.org/x/sys/unix"
)

// upperFile is an open file of the writable layer: a host file descriptor.
// Unlike fs.LoopbackFile it never reports the host file's attributes, which
// are not the union's.
type upperFile struct {
	lf  *fs.LoopbackFile
	fd  int
	ino uint64

	// Large aligned writes go to the host file through a second
	// descriptor, opened with O_DIRECT where the upper directory is on a
	// local disk (see writeDirect). dfd is 0 until the first such write,
	// -1 where O_DIRECT is not to be used.
	mu  sync.Mutex
	dfd int
}

func newUpperFile(u *union, fd int, ino uint64) *upperFile {
	f := &upperFile{lf: fs.NewLoopbackFile(fd).(*fs.LoopbackFile), fd: fd, ino: ino}
	if !u.direct {
		f.dfd = -1
	}
	return f
}

var (
	_ fs.FileReader    = (*upperFile)(nil)
	_ fs.FileWriter    = (*upperFile)(nil)
	_ fs.FileFsyncer   = (*upperFile)(nil)
	_ fs.FileReleaser  = (*upperFile)(nil)
	_ fs.FileLseeker   = (*upperFile)(nil)
	_ fs.FileAllocater = (*upperFile)(nil)
)

func (f *upperFile) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return f.lf.Read(ctx, buf, off)
}

func (f *upperFile) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if len(data) >= directMin && len(data) <= layers.DirectBlock && len(data)%layers.DirectAlign == 0 && off%layers.DirectAlign == 0 {
		if n, errno, ok := f.writeDirect(data, off); ok {
			return n, errno
		}
	}
	return f.lf.Write(ctx, data, off)
}

// A write into the union fills the FUSE inode's page cache (the kernel
// keeps what it sends), and the server's pwrite filled the host file's
// page cache with the same bytes a second time. Large aligned writes (dd,
// cp, a database's pages) now go to the host file with O_DIRECT: one copy
// into an aligned buffer that is used again instead of newly allocated
// page cache, which on this project's VMs costs a fault in the host for
// every page. Reads are served from the FUSE inode's cache as before, and
// from the disk once that is dropped.
// directMin is the smallest write that goes direct.
const directMin = 64 << 10

// writeDirect writes data, at most a layers.DirectBlock, at off with
// O_DIRECT; ok false says it did not (the file is open for appending, or
// the host refused O_DIRECT): the caller writes it the usual way, and so
// does every later write.
func (f *upperFile) writeDirect(data []byte, off int64) (n uint32, errno syscall.Errno, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dfd == 0 {
		f.dfd = -1
		fl, err := unix.FcntlInt(uintptr(f.fd), unix.F_GETFL, 0)
		if err != nil || fl&unix.O_APPEND != 0 || fl&unix.O_ACCMODE == unix.O_RDONLY {
			return 0, 0, false
		}
		fd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", f.fd), unix.O_WRONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
		if err != nil {
			return 0, 0, false
		}
		f.dfd = fd
	}
	if f.dfd < 0 {
		return 0, 0, false
	}
	buf := layers.DirectBlocks.Get().(*[]byte)
	defer layers.DirectBlocks.Put(buf)
	block := (*buf)[:copy(*buf, data)]
	written, err := unix.Pwrite(f.dfd, block, off)
	if err == unix.EINVAL {
		unix.Close(f.dfd)
		f.dfd = -1
		return 0, 0, false
	}
	if err != nil {
		return 0, fs.ToErrno(err), true
	}
	return uint32(written), 0, true
}

// closeDirect closes the O_DIRECT descriptor.
func (f *upperFile) closeDirect() {
	f.mu.Lock()
	if f.dfd > 0 {
		unix.Close(f.dfd)
	}
	f.dfd = -1
	f.mu.Unlock()
}

func (f *upperFile) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return f.lf.Fsync(ctx, flags)
}

func (f *upperFile) Release(ctx context.Context) syscall.Errno {
	f.closeDirect()
	return f.lf.Release(ctx)
}

func (f *upperFile) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	return f.lf.Lseek(ctx, off, whence)
}

func (f *upperFile) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	return f.lf.Allocate(ctx, off, size, mode)
}

// spliceMin is the smallest read served by splicing from the layer tar to
// /dev/fuse; a smaller one costs fewer system calls as pread and write
// (splice takes two, and a pipe).
const spliceMin = 128 << 10

// lowerHandle is an open file of a lower layer: a window on its layer tar.
// It has no Flush: the kernel then stops sending FLUSH on close (one round
// trip less per file); upper files have none either.
type lowerHandle struct {
	u *union
	f *lowerFile
}

var (
	_ fs.FileReader   = (*lowerHandle)(nil)
	_ fs.FileReleaser = (*lowerHandle)(nil)
	_ fs.FileLseeker  = (*lowerHandle)(nil)
)

func (u *union) openLower(n *node, f *lowerFile, flags uint32, name string) (fs.FileHandle, uint32, syscall.Errno) {
	if f.mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, 0, syscall.EINVAL
	}
	u.pushOnce(n, f, flags, name)
	return &lowerHandle{u: u, f: f}, fuse.FOPEN_KEEP_CACHE, 0
}

// fmodeExec is the kernel's __FMODE_EXEC open flag, which FUSE passes on when
// a program is opened to be executed.
const fmodeExec = 0x20

// pushMax is the largest lower file pushed whole into the page cache.
const pushMax = 8 << 20

// wantsPush tells whether a lower file being opened should be pushed whole
// into the kernel's page cache before the open returns: a program being
// executed, or a shared library. Both are mapped and then read by page
// faults, each a round trip to this process for the 128 KiB around it (the
// kernel's read-around for a FUSE mount, which an unprivileged mount cannot
// raise): a static busybox took about 20 of them to run `true`. One push is a
// single write of the whole file to /dev/fuse, and every container has its
// own mount, so its own cold cache.
func wantsPush(f *lowerFile, flags uint32, name string) bool {
	if f.layer < 0 || f.sparse || f.size == 0 || f.size > pushMax {
		return false
	}
	return flags&fmodeExec != 0 || strings.Contains(path.Base(name), ".so")
}

// pushOnce pushes the lower file f of node n, opened with flags by the
// name name, where wantsPush says so and n was not pushed before; it
// reports whether it pushed.
func (u *union) pushOnce(n *node, f *lowerFile, flags uint32, name string) bool {
	if !wantsPush(f, flags, name) || !n.pushed.CompareAndSwap(false, true) {
		return false
	}
	u.push(n, f)
	return true
}

// push stores the content of the lower file f into the kernel's page cache
// for n, straight from a mapping of its layer tar. A failure only means the
// pages are read on demand as usual.
func (u *union) push(n *node, f *lowerFile) {
	page := int64(os.Getpagesize())
	start := f.dataOffset &^ (page - 1)
	skip := f.dataOffset - start
	m, err := unix.Mmap(int(u.tars[f.layer].Fd()), start, int(skip+f.size), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return
	}
	n.WriteCache(0, m[skip:skip+f.size])
	unix.Munmap(m)
}

// Preload pushes the program at name, a path in the union without a
// symlink in it, into the kernel's page cache, as its exec would (see
// wantsPush), so that the exec finds it there. The kernel must know the
// file's inode (a stat through the mount first); a file of the writable
// layer, or one already pushed, is left as it is. An agent calls it for the
// command while the container's init starts. It reports whether it pushed.
func (m *Mount) Preload(name string) bool {
	p := strings.Trim(path.Clean("/"+name), "/")
	if p == "" {
		return false
	}
	ino := m.root.EmbeddedInode()
	for c := range strings.SplitSeq(p, "/") {
		if ino = ino.GetChild(c); ino == nil {
			return false
		}
	}
	n, ok := ino.Operations().(*node)
	if !ok {
		return false
	}
	u := m.u
	u.mu.RLock()
	e, errno := u.resolve(p)
	u.mu.RUnlock()
	if errno != 0 || e.upper || e.lower == nil || e.lower.file == nil {
		return false
	}
	return u.pushOnce(n, e.lower.file, fmodeExec, p)
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
		if n > spliceMin {
			return fuse.ReadResultFd(tarFile.Fd(), h.f.dataOffset+off, int(n)), 0
		}
		m, err := tarFile.ReadAt(buf[:n], h.f.dataOffset+off)
		if err != nil && !(errors.Is(err, io.EOF) && int64(m) == n) {
			return nil, fs.ToErrno(err)
		}
		return fuse.ReadResultData(buf[:m]), 0
	}
	s, err := h.f.sparseData(tarFile)
	if err != nil {
		h.u.logf("read the sparse file with inode %d: %v", h.f.ino, err)
		return nil, syscall.EIO
	}
	m, err := s.readAt(tarFile, buf[:n], off, size)
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	return fuse.ReadResultData(buf[:m]), 0
}

// Lseek answers SEEK_DATA and SEEK_HOLE from the sparse map; a file that is
// not sparse is all data.
func (h *lowerHandle) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	size := h.f.size
	if int64(off) >= size || int64(off) < 0 {
		return 0, syscall.ENXIO
	}
	var s *sparseData
	if h.f.sparse && h.f.layer >= 0 {
		var err error
		if s, err = h.f.sparseData(h.u.tars[h.f.layer]); err != nil {
			return 0, syscall.EIO
		}
	}
	switch whence {
	case unix.SEEK_DATA:
		if s == nil {
			return off, 0
		}
		d, ok := s.seekData(int64(off))
		if !ok || d >= size {
			return 0, syscall.ENXIO
		}
		return uint64(d), 0
	case unix.SEEK_HOLE:
		if s == nil {
			return uint64(size), 0
		}
		return uint64(s.seekHole(int64(off), size)), 0
	}
	return 0, syscall.EINVAL
}

func (h *lowerHandle) Release(ctx context.Context) syscall.Errno { return 0 }

// copyLowerData copies a lower file's contents into dst, in the kernel where
// it can (copy_file_range shares extents on filesystems that reflink). The
// holes of a sparse file stay holes.
func (u *union) copyLowerData(f *lowerFile, dst *os.File) error {
	src := u.tars[f.layer]
	if !f.sparse {
		return copyRange(src, f.dataOffset, dst, 0, f.size)
	}
	s, err := f.sparseData(src)
	if err != nil {
		return err
	}
	for _, fr := range s.frags {
		if err := copyRange(src, fr.tarOff, dst, fr.off, min(fr.size, f.size-fr.off)); err != nil {
			return err
		}
	}
	return dst.Truncate(f.size)
}

// copyRange copies n bytes at srcOff in src to dstOff in dst.
func copyRange(src *os.File, srcOff int64, dst *os.File, dstOff, n int64) error {
	for n > 0 {
		m, err := unix.CopyFileRange(int(src.Fd()), &srcOff, int(dst.Fd()), &dstOff, int(min(n, 1<<30)), 0)
		if err != nil || m == 0 {
			if err != nil && !errors.Is(err, unix.EXDEV) && !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EINVAL) {
				return &os.PathError{Op: "copy_file_range", Path: src.Name(), Err: err}
			}
			_, err := io.Copy(io.NewOffsetWriter(dst, dstOff), io.NewSectionReader(src, srcOff, n))
			return err
		}
		n -= int64(m)
	}
	return nil
}
