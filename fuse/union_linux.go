//go:build linux

package fuse

import (
	"context"
	"log"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// union is the state of one mounted union filesystem.
type union struct {
	lower  *lowerTree
	tars   []*os.File // lower layer tars, by layer index
	upper  string     // host directory of the writable layer's files
	direct bool       // large aligned writes to upper files may use O_DIRECT
	work   string     // host directory for copy-ups in progress
	ids    *idMapper
	log    *log.Logger // nil: quiet

	// mu guards meta and the upper directory's namespace: lookups take it
	// shared, changes exclusively (and release it with unlock).
	mu   sync.RWMutex
	meta *metaStore

	// noUpper holds directories of the union that the upper layer was
	// found not to have, under mu held shared: their children need no
	// lstat in the upper layer. A read-only workload over a fresh writable
	// layer then never touches the host's upper directory. unlock empties
	// it after every change.
	noUpperMu sync.Mutex
	noUpper   map[string]bool
	writing   bool // mu is held exclusively: noUpper is neither read nor written

	// inoMu guards the inode numbering.
	inoMu    sync.Mutex
	pathInos map[string]uint64 // inode numbers of paths that are (or were copied) up
	hostInos map[uint64]uint64 // host inode number of an upper file -> its inode number
	// saveView writes the merged view of lower, where it was built (nil
	// where it was loaded); see Mount.SaveView.
	saveView func()
	nextIno  uint64
}

// node is an inode of the union. It holds no state of its own: its path in
// the union, as the go-fuse tree knows it, names it.
type node struct {
	fs.Inode
	u *union
	// pushed is set once a lower file's content went into the kernel's
	// page cache whole (see wantsPush).
	pushed atomic.Bool
}

// Timeouts: lower layers never change, and every change to the upper layer
// goes through this filesystem, so the kernel's caches stay right; upper
// attributes get a short timeout anyway for changes of sizes and times.
const (
	lowerTimeout = time.Hour
	upperTimeout = time.Second
)

// entry is what a path resolves to in the union.
type entry struct {
	path  string
	upper bool
	st    unix.Stat_t // host lstat of the upper file, when upper
	lower *lowerNode  // visible lower node, or nil
}

func (e *entry) exists() bool { return e.upper || e.lower != nil }

func (e *entry) mode() uint32 {
	if e.upper {
		return e.st.Mode // type only; permissions come from attrs
	}
	return e.lower.file.mode
}

func (e *entry) isDir() bool { return e.mode()&syscall.S_IFMT == syscall.S_IFDIR }

func join(dir, name string) string {
	if dir == "." || dir == "" {
		return name
	}
	return dir + "/" + name
}

func (u *union) logf(format string, args ...any) {
	if u.log != nil {
		u.log.Printf(format, args...)
	}
}

func (u *union) hostPath(p string) string {
	if p == "." {
		return u.upper
	}
	return u.upper + "/" + p
}

// lowerHidden reports whether the writable layer's flags hide the lower
// layers at p: a whiteout on p or an ancestor, or an opaque ancestor.
func (u *union) lowerHidden(p string) bool {
	if p == "." {
		return false
	}
	flags := u.meta.flags
	if len(flags) == 0 {
		return false
	}
	if flags[p]&flagWhiteout != 0 {
		return true
	}
	for q := p; ; {
		i := strings.LastIndexByte(q, '/')
		if i < 0 {
			q = "."
		} else {
			q = q[:i]
		}
		if flags[q] != 0 {
			return true
		}
		if q == "." {
			return false
		}
	}
}

// visibleLower is the lower node at p unless the writable layer hides it.
func (u *union) visibleLower(p string) *lowerNode {
	n := u.lower.lookup(p)
	if n == nil || u.lowerHidden(p) {
		return nil
	}
	return n
}

// lock takes mu exclusively, for a change of the upper layer.
func (u *union) lock() {
	u.mu.Lock()
	u.writing = true
}

// unlock releases mu taken by lock: what noUpper recorded may no longer hold.
func (u *union) unlock() {
	u.noUpperMu.Lock()
	clear(u.noUpper)
	u.noUpperMu.Unlock()
	u.writing = false
	u.mu.Unlock()
}

// parentNotUpper reports whether the upper layer is known to lack the
// directory that holds p.
func (u *union) parentNotUpper(p string) bool {
	if p == "." || u.writing {
		return false
	}
	dir := "."
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		dir = p[:i]
	}
	u.noUpperMu.Lock()
	defer u.noUpperMu.Unlock()
	return u.noUpper[dir]
}

// resolve finds p in the union; the caller holds mu.
func (u *union) resolve(p string) (entry, syscall.Errno) {
	e := entry{path: p}
	ln := u.lower.lookup(p)
	if !u.parentNotUpper(p) {
		err := unix.Lstat(u.hostPath(p), &e.st)
		switch err {
		case nil:
			e.upper = true
		case unix.ENOENT, unix.ENOTDIR:
			if ln != nil && ln.isDir() && !u.writing {
				u.noUpperMu.Lock()
				u.noUpper[p] = true
				u.noUpperMu.Unlock()
			}
		default:
			return e, fs.ToErrno(err)
		}
	}
	if ln != nil && u.lowerHidden(p) {
		ln = nil
	}
	if ln != nil && e.upper && (e.st.Mode&syscall.S_IFMT != syscall.S_IFDIR || !ln.isDir() || u.meta.flags[p]&flagOpaque != 0) {
		ln = nil
	}
	e.lower = ln
	return e, 0
}

// inoOf is the union's inode number of an entry.
func (u *union) inoOf(e *entry) uint64 {
	if e.path == "." {
		return 1
	}
	u.inoMu.Lock()
	defer u.inoMu.Unlock()
	if ino, ok := u.pathInos[e.path]; ok {
		return ino
	}
	if !e.upper {
		return e.lower.file.ino
	}
	ino, ok := u.hostInos[e.st.Ino]
	if !ok {
		if e.lower != nil {
			ino = e.lower.file.ino
		} else {
			u.nextIno++
			ino = u.nextIno
		}
		u.hostInos[e.st.Ino] = ino
	}
	u.pathInos[e.path] = ino
	return ino
}

func (u *union) setPathIno(p string, ino, hostIno uint64) {
	u.inoMu.Lock()
	u.pathInos[p] = ino
	u.hostInos[hostIno] = ino
	u.inoMu.Unlock()
}

// forgetPathIno forgets the inode number of p and, with tree, of the paths
// below it.
func (u *union) forgetPathIno(p string, tree bool) {
	u.inoMu.Lock()
	delete(u.pathInos, p)
	if tree {
		for q := range u.pathInos {
			if strings.HasPrefix(q, p+"/") {
				delete(u.pathInos, q)
			}
		}
	}
	u.inoMu.Unlock()
}

func (u *union) forgetHostIno(hostIno uint64) {
	u.inoMu.Lock()
	delete(u.hostInos, hostIno)
	u.inoMu.Unlock()
}

// movePathIno moves the inode number of p (with tree, and of the paths
// below it) to q.
func (u *union) movePathIno(p, q string, tree bool) {
	u.inoMu.Lock()
	defer u.inoMu.Unlock()
	under := func(x, p string) bool { return x == p || tree && strings.HasPrefix(x, p+"/") }
	delete(u.pathInos, q)
	if tree {
		for x := range u.pathInos {
			if under(x, q) {
				delete(u.pathInos, x)
			}
		}
	}
	moved := map[string]uint64{}
	if ino, ok := u.pathInos[p]; ok {
		moved[q] = ino
		delete(u.pathInos, p)
	}
	if tree {
		for x, ino := range u.pathInos {
			if under(x, p) {
				moved[q+x[len(p):]] = ino
				delete(u.pathInos, x)
			}
		}
	}
	for x, ino := range moved {
		u.pathInos[x] = ino
	}
}

// upperAttr is the metadata of an upper file with this host stat.
func (u *union) upperAttr(st *unix.Stat_t) *attr {
	if a := u.meta.attrs[st.Ino]; a != nil {
		return a
	}
	return &attr{Mode: st.Mode}
}

// attrOf is the metadata of an upper entry. A directory without its own
// (the root, or one put there from outside) shows the lower directory's.
func (u *union) attrOf(e *entry) *attr {
	if a := u.meta.attrs[e.st.Ino]; a != nil {
		return a
	}
	if e.lower != nil {
		f := e.lower.file
		return &attr{Mode: f.mode, UID: f.uid, GID: f.gid, Xattrs: f.xattrs}
	}
	return &attr{Mode: e.st.Mode}
}

// fill sets out from e.
func (u *union) fill(e *entry, out *fuse.Attr) {
	if e.upper {
		a := u.attrOf(e)
		out.FromStat(toSyscallStat(&e.st))
		out.Mode = e.st.Mode&syscall.S_IFMT | a.Mode&0o7777
		if e.st.Mode&syscall.S_IFMT == syscall.S_IFREG && a.Mode&syscall.S_IFMT != 0 {
			out.Mode = a.Mode // a special file kept as an empty host file
		}
		out.Uid, out.Gid = a.UID, a.GID
		out.Rdev = uint32(a.Rdev)
		if e.lower != nil && e.st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
			// A merged directory: the host's count misses the lower
			// subdirectories. 1 means "unknown" to find and fts, as on
			// overlayfs.
			out.Nlink = 1
		}
	} else {
		f := e.lower.file
		out.Mode = f.mode
		out.Uid, out.Gid = f.uid, f.gid
		out.Size = uint64(f.size)
		out.Blocks = (uint64(f.size) + 511) / 512
		if f.sparse && f.layer >= 0 {
			if s, err := f.sparseData(u.tars[f.layer]); err == nil {
				out.Blocks = (uint64(s.allocated()) + 511) / 512
			}
		}
		out.Blksize = 4096
		out.Nlink = f.nlink
		out.Rdev = uint32(f.rdev)
		sec, nsec := uint64(f.mtime/1e9), uint32(f.mtime%1e9)
		if f.mtime < 0 {
			sec, nsec = 0, 0
		}
		out.Mtime, out.Mtimensec = sec, nsec
		out.Atime, out.Atimensec = sec, nsec
		out.Ctime, out.Ctimensec = sec, nsec
	}
	out.Uid, out.Gid = u.ids.uid(out.Uid), u.ids.gid(out.Gid)
	out.Ino = u.inoOf(e)
}

func toSyscallStat(st *unix.Stat_t) *syscall.Stat_t {
	return &syscall.Stat_t{
		Dev: st.Dev, Ino: st.Ino, Nlink: st.Nlink, Mode: st.Mode, Uid: st.Uid, Gid: st.Gid,
		Rdev: st.Rdev, Size: st.Size, Blksize: st.Blksize, Blocks: st.Blocks,
		Atim: syscall.Timespec(st.Atim), Mtim: syscall.Timespec(st.Mtim), Ctim: syscall.Timespec(st.Ctim),
	}
}

// fillEntry fills out for a lookup-like reply and returns the stable
// attributes of e's inode.
func (u *union) fillEntry(e *entry, out *fuse.EntryOut) fs.StableAttr {
	u.fill(e, &out.Attr)
	t := lowerTimeout
	if e.upper {
		t = upperTimeout
	}
	out.SetEntryTimeout(lowerTimeout)
	out.SetAttrTimeout(t)
	return fs.StableAttr{Mode: out.Attr.Mode & syscall.S_IFMT, Ino: out.Attr.Ino, Gen: 1}
}

// path is the node's path in the union ("." for the root), or false when the
// node has no name any more (it was removed while open).
func (n *node) path() (string, bool) {
	if n.IsRoot() {
		return ".", true
	}
	p := n.Path(n.Root())
	if p == "" || strings.Contains(p, ".go-fuse.") {
		return "", false
	}
	return p, true
}

func (n *node) newChild(ctx context.Context, e *entry, out *fuse.EntryOut) *fs.Inode {
	st := n.u.fillEntry(e, out)
	return n.NewInode(ctx, &node{u: n.u}, st)
}

// caller is the owner of files a request creates, in the mount's user namespace.
func caller(ctx context.Context) (uid, gid uint32) {
	if c, ok := fuse.FromContext(ctx); ok {
		return c.Uid, c.Gid
	}
	return 0, 0
}

// ensureUpperDir makes p (a directory of the union) exist in the upper
// layer, copying up its ancestors as needed. The caller holds mu exclusively.
func (u *union) ensureUpperDir(p string) syscall.Errno {
	var st unix.Stat_t
	if err := unix.Lstat(u.hostPath(p), &st); err == nil {
		if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			return syscall.ENOTDIR
		}
		return 0
	}
	return u.copyUp(p, true)
}

// makeTarget creates an empty regular file at p, root's, mode 0644, where
// the union has nothing at p and p's directory is one (see
// Options.MountTargets).
func (u *union) makeTarget(p string) syscall.Errno {
	u.lock()
	defer u.unlock()
	dir := path.Dir(p)
	if d, errno := u.resolve(dir); errno != 0 || !d.exists() || !d.isDir() {
		return 0
	}
	if e, errno := u.resolve(p); errno != 0 || e.exists() {
		return 0
	}
	if errno := u.ensureUpperDir(dir); errno != 0 {
		return errno
	}
	hp := u.hostPath(p)
	if err := writeEmpty(hp); err != nil {
		return fs.ToErrno(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(hp, &st); err != nil {
		return fs.ToErrno(err)
	}
	u.created(p, &st, u.newAttr(context.Background(), dir, syscall.S_IFREG|0o644))
	u.forgetPathIno(p, false)
	u.forgetHostIno(st.Ino)
	return 0
}

// removed updates the metadata after the upper object at p (if any) is gone:
// when the lower layers still have p, a whiteout hides it. dir says whether
// it was a directory.
func (u *union) removed(p string, dir bool) {
	u.meta.clearTree(p, dir)
	u.forgetPathIno(p, dir)
	if u.visibleLower(p) != nil {
		u.meta.setFlags(p, flagWhiteout)
	}
}

// created updates the metadata after an object was created at p in the
// upper layer.
func (u *union) created(p string, st *unix.Stat_t, a *attr) {
	flags := 0
	if st.Mode&syscall.S_IFMT == syscall.S_IFDIR && u.lower.lookup(p) != nil {
		flags = flagOpaque
	}
	u.meta.setFlags(p, flags)
	u.meta.setAttr(st.Ino, a)
}

// newAttr is the metadata of a file the caller creates in directory dir.
func (u *union) newAttr(ctx context.Context, dir string, mode uint32) *attr {
	uid, gid := caller(ctx)
	a := &attr{Mode: mode, UID: uid, GID: gid}
	if d, errno := u.resolve(dir); errno == 0 && d.exists() {
		var da fuse.Attr
		u.fill(&d, &da)
		if da.Mode&syscall.S_ISGID != 0 {
			a.GID = da.Gid
			if mode&syscall.S_IFMT == syscall.S_IFDIR {
				a.Mode |= syscall.S_ISGID
			}
		}
	}
	return a
}

// unionDirEmpty reports whether the union directory e has no entries.
func (u *union) unionDirEmpty(e *entry) (bool, syscall.Errno) {
	list, errno := u.readdir(e)
	return len(list) == 0, errno
}

// readdir lists the union directory e; the caller holds mu.
func (u *union) readdir(e *entry) ([]fuse.DirEntry, syscall.Errno) {
	var list []fuse.DirEntry
	var seen map[string]bool
	if e.upper {
		f, err := os.Open(u.hostPath(e.path))
		if err != nil {
			return nil, fs.ToErrno(err)
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return nil, fs.ToErrno(err)
		}
		if e.lower != nil {
			seen = make(map[string]bool, len(names))
		}
		for _, name := range names {
			c, errno := u.resolve(join(e.path, name))
			if errno != 0 || !c.exists() {
				continue
			}
			if seen != nil {
				seen[name] = true
			}
			var a fuse.Attr
			u.fill(&c, &a)
			list = append(list, fuse.DirEntry{Name: name, Mode: a.Mode, Ino: a.Ino})
		}
	}
	if e.lower != nil {
		flags := u.meta.flags
		for _, name := range e.lower.sortedNames() {
			if seen[name] {
				continue
			}
			p := join(e.path, name)
			if flags[p]&flagWhiteout != 0 {
				continue
			}
			c := entry{path: p, lower: e.lower.child(name)}
			list = append(list, fuse.DirEntry{Name: name, Mode: c.lower.file.mode, Ino: u.inoOf(&c)})
		}
	}
	return list, 0
}

// workFile creates an empty temp file for a copy-up.
func (u *union) workFile() (*os.File, error) {
	return os.CreateTemp(u.work, "copyup-")
}

// copyUp makes the lower object at p exist in the upper layer with its
// metadata, and with its contents unless withData is false (a truncation to
// zero follows). The caller holds mu exclusively.
func (u *union) copyUp(p string, withData bool) syscall.Errno {
	e, errno := u.resolve(p)
	if errno != 0 {
		return errno
	}
	if e.upper {
		return 0
	}
	if e.lower == nil {
		return syscall.ENOENT
	}
	if p != "." {
		if errno := u.ensureUpperDir(path.Dir(p)); errno != 0 {
			return errno
		}
	}
	f := e.lower.file
	hp := u.hostPath(p)
	var err error
	switch f.mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		err = os.Mkdir(hp, 0o700)
	case syscall.S_IFLNK:
		err = os.Symlink(f.linkname, hp)
	case syscall.S_IFREG:
		err = u.copyUpFile(f, hp, withData)
	default:
		// Devices, FIFOs and sockets are kept as empty files; the metadata
		// says what they are.
		err = writeEmpty(hp)
	}
	if err != nil {
		return fs.ToErrno(err)
	}
	ts := []unix.Timespec{unix.NsecToTimespec(f.mtime), unix.NsecToTimespec(f.mtime)}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, hp, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fs.ToErrno(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(hp, &st); err != nil {
		return fs.ToErrno(err)
	}
	a := &attr{Mode: f.mode, UID: f.uid, GID: f.gid, Rdev: f.rdev}
	if len(f.xattrs) > 0 {
		a.Xattrs = make(map[string][]byte, len(f.xattrs))
		for k, v := range f.xattrs {
			a.Xattrs[k] = v
		}
	}
	u.meta.setAttr(st.Ino, a)
	if p == "." {
		return 0
	}
	ino := u.inoOf(&e)
	u.setPathIno(p, ino, st.Ino)
	if f.mode&syscall.S_IFMT == syscall.S_IFREG && len(f.names) > 1 {
		return u.copyUpLinks(p, f, ino)
	}
	return 0
}

// copyUpLinks gives the other names of a lower hard link whose name p was
// just copied up the same upper file, so that all names still share one
// file (and the kernel's one inode of them never shows two contents). Names
// hidden or replaced in the union are left alone. The caller holds mu
// exclusively.
func (u *union) copyUpLinks(p string, f *lowerFile, ino uint64) syscall.Errno {
	hp := u.hostPath(p)
	var st unix.Stat_t
	if err := unix.Lstat(hp, &st); err != nil {
		return fs.ToErrno(err)
	}
	for _, q := range f.names {
		if q == p {
			continue
		}
		if ln := u.visibleLower(q); ln == nil || ln.file != f {
			continue
		}
		var qst unix.Stat_t
		if unix.Lstat(u.hostPath(q), &qst) == nil {
			continue // the writable layer has its own q
		}
		if errno := u.ensureUpperDir(path.Dir(q)); errno != 0 {
			return errno
		}
		if err := os.Link(hp, u.hostPath(q)); err != nil {
			return fs.ToErrno(err)
		}
		u.setPathIno(q, ino, st.Ino)
	}
	return 0
}

func writeEmpty(hp string) error {
	f, err := os.OpenFile(hp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

// copyUpFile copies a lower regular file into place at hp through a temp
// file in the work directory, so that a crash never leaves half a file in
// the upper layer.
func (u *union) copyUpFile(f *lowerFile, hp string, withData bool) error {
	tmp, err := u.workFile()
	if err != nil {
		return err
	}
	if withData && f.size > 0 {
		err = u.copyLowerData(f, tmp)
	}
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), hp)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// Mount-wide filesystem operations on the root node.

var _ fs.NodeStatfser = (*node)(nil)

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var st syscall.Statfs_t
	if err := syscall.Statfs(n.u.upper, &st); err != nil {
		return fs.ToErrno(err)
	}
	out.FromStatfsT(&st)
	return 0
}

var _ fs.NodeLookuper = (*node)(nil)

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	dir, ok := n.path()
	if !ok {
		return nil, syscall.ENOENT
	}
	n.u.mu.RLock()
	defer n.u.mu.RUnlock()
	e, errno := n.u.resolve(join(dir, name))
	if errno != 0 {
		return nil, errno
	}
	if !e.exists() {
		// No timeout here: go-fuse makes ENOENT a negative entry, which
		// the kernel caches, only where out has none (Options'
		// NegativeTimeout then). A name made later goes through this
		// filesystem, and the kernel drops the negative entry itself.
		return nil, syscall.ENOENT
	}
	return n.newChild(ctx, &e, out), 0
}

var _ fs.NodeGetattrer = (*node)(nil)

func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.u.mu.RLock()
	defer n.u.mu.RUnlock()
	if uf, ok := f.(*upperFile); ok {
		return n.u.fillFromFd(uf.fd, uf.ino, out)
	}
	p, ok := n.path()
	if !ok {
		return syscall.ENOENT
	}
	e, errno := n.u.resolve(p)
	if errno != 0 {
		return errno
	}
	if !e.exists() {
		return syscall.ENOENT
	}
	n.u.fill(&e, &out.Attr)
	if e.upper {
		out.SetTimeout(upperTimeout)
	} else {
		out.SetTimeout(lowerTimeout)
	}
	return 0
}

// fillFromFd sets out from an open upper file, which may have no name any more.
func (u *union) fillFromFd(fd int, ino uint64, out *fuse.AttrOut) syscall.Errno {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fs.ToErrno(err)
	}
	a := u.upperAttr(&st)
	out.FromStat(toSyscallStat(&st))
	out.Mode = st.Mode&syscall.S_IFMT | a.Mode&0o7777
	out.Uid, out.Gid = u.ids.uid(a.UID), u.ids.gid(a.GID)
	out.Ino = ino
	out.SetTimeout(upperTimeout)
	return 0
}

var _ fs.NodeSetattrer = (*node)(nil)

func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	u := n.u
	u.lock()
	defer u.unlock()
	uf, _ := f.(*upperFile)
	p, named := n.path()
	if !named && uf == nil {
		return syscall.ENOENT
	}
	if named {
		size, hasSize := in.GetSize()
		if errno := u.copyUp(p, !hasSize || size > 0); errno != 0 {
			return errno
		}
	}
	var st unix.Stat_t
	var err error
	if uf != nil {
		err = unix.Fstat(uf.fd, &st)
	} else {
		err = unix.Lstat(u.hostPath(p), &st)
	}
	if err != nil {
		return fs.ToErrno(err)
	}
	var a *attr
	if named {
		e, errno := u.resolve(p)
		if errno != 0 {
			return errno
		}
		a = u.attrOf(&e).clone()
	} else {
		a = u.upperAttr(&st).clone()
	}
	changed := false
	if m, ok := in.GetMode(); ok {
		a.Mode = a.Mode&syscall.S_IFMT | m&0o7777
		if a.Mode&syscall.S_IFMT == 0 {
			a.Mode |= st.Mode & syscall.S_IFMT
		}
		changed = true
	}
	if uid, ok := in.GetUID(); ok {
		a.UID, changed = uid, true
	}
	if gid, ok := in.GetGID(); ok {
		a.GID, changed = gid, true
	}
	if changed {
		u.meta.setAttr(st.Ino, a)
	}
	if sz, ok := in.GetSize(); ok {
		if uf != nil {
			err = unix.Ftruncate(uf.fd, int64(sz))
		} else {
			err = unix.Truncate(u.hostPath(p), int64(sz))
		}
		if err != nil {
			return fs.ToErrno(err)
		}
	}
	mtime, mok := in.GetMTime()
	atime, aok := in.GetATime()
	if mok || aok {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		if aok {
			ts[0] = unix.NsecToTimespec(atime.UnixNano())
		}
		if mok {
			ts[1] = unix.NsecToTimespec(mtime.UnixNano())
		}
		if uf != nil {
			err = unix.UtimesNanoAt(uf.fd, "", ts, unix.AT_EMPTY_PATH)
		} else {
			err = unix.UtimesNanoAt(unix.AT_FDCWD, u.hostPath(p), ts, unix.AT_SYMLINK_NOFOLLOW)
		}
		if err != nil {
			return fs.ToErrno(err)
		}
	}
	if uf != nil {
		return u.fillFromFd(uf.fd, uf.ino, out)
	}
	e, errno := u.resolve(p)
	if errno != 0 {
		return errno
	}
	u.fill(&e, &out.Attr)
	out.SetTimeout(upperTimeout)
	return 0
}

// Chown sets the owner of p, a path of the union ("." for its root), as
// a chown of it through the mount would: the object is copied up and the
// writable layer's metadata records uid and gid (-1 leaves one as it is).
// The ids need not be mapped in the current user namespace: package
// container calls it for the chown calls of a container with a single id,
// which the kernel refuses for any other id. An error is an *os.PathError.
func (m *Mount) Chown(p string, uid, gid int) error {
	if errno := m.u.chown(p, uid, gid); errno != 0 {
		return &os.PathError{Op: "chown", Path: p, Err: errno}
	}
	// The kernel did not see this change: drop the attributes it holds
	// (the mode may have lost its setuid bits).
	n := &m.root.Inode
	if p != "." {
		for _, name := range strings.Split(p, "/") {
			if n = n.GetChild(name); n == nil {
				return nil // not in the kernel's cache
			}
		}
	}
	n.NotifyContent(-1, 0)
	return nil
}

// chown is Setattr's change of owner for a path, for Mount.Chown.
func (u *union) chown(p string, uid, gid int) syscall.Errno {
	u.lock()
	defer u.unlock()
	if errno := u.copyUp(p, true); errno != 0 {
		return errno
	}
	var st unix.Stat_t
	if err := unix.Lstat(u.hostPath(p), &st); err != nil {
		return fs.ToErrno(err)
	}
	e, errno := u.resolve(p)
	if errno != 0 {
		return errno
	}
	a := u.attrOf(&e).clone()
	if uid >= 0 {
		a.UID = uint32(uid)
	}
	if gid >= 0 {
		a.GID = uint32(gid)
	}
	// As the kernel's chown: a file that is not a directory loses its
	// setuid bit, and its setgid bit where group execution is on.
	if t := st.Mode & syscall.S_IFMT; t != syscall.S_IFDIR && t != syscall.S_IFLNK {
		a.Mode &^= syscall.S_ISUID
		if a.Mode&syscall.S_IXGRP != 0 {
			a.Mode &^= syscall.S_ISGID
		}
	}
	u.meta.setAttr(st.Ino, a)
	return 0
}

var _ fs.NodeFlusher = (*node)(nil)

// Flush answers ENOSYS, which makes the kernel stop sending FLUSH on every
// close: one round trip less per opened file. Nothing needs it: locks are
// the kernel's, and upper files are written through at once (on a
// writable layer over NFS a delayed write error shows at fsync, not close).
func (n *node) Flush(ctx context.Context, f fs.FileHandle) syscall.Errno { return syscall.ENOSYS }

var _ fs.NodeFsyncer = (*node)(nil)

// Fsync syncs an open file through its handle. A directory (dpkg syncs
// them) is synced in the upper layer where it has a copy there; a lower
// file or directory never changes, so there is nothing to sync.
func (n *node) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	if fy, ok := f.(fs.FileFsyncer); ok {
		return fy.Fsync(ctx, flags)
	}
	p, ok := n.path()
	if !ok || !n.IsDir() {
		return 0
	}
	fd, err := unix.Open(n.u.upper+"/"+p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0 // not in the upper layer
	}
	defer unix.Close(fd)
	return fs.ToErrno(unix.Fsync(fd))
}

var _ fs.NodeReadlinker = (*node)(nil)

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	p, ok := n.path()
	if !ok {
		return nil, syscall.ENOENT
	}
	n.u.mu.RLock()
	defer n.u.mu.RUnlock()
	e, errno := n.u.resolve(p)
	if errno != 0 {
		return nil, errno
	}
	switch {
	case e.upper:
		s, err := os.Readlink(n.u.hostPath(p))
		if err != nil {
			return nil, fs.ToErrno(err)
		}
		return []byte(s), 0
	case e.lower != nil && e.lower.file.mode&syscall.S_IFMT == syscall.S_IFLNK:
		return []byte(e.lower.file.linkname), 0
	}
	return nil, syscall.EINVAL
}

var _ fs.NodeReaddirer = (*node)(nil)

func (n *node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	p, ok := n.path()
	if !ok {
		return nil, syscall.ENOENT
	}
	n.u.mu.RLock()
	defer n.u.mu.RUnlock()
	e, errno := n.u.resolve(p)
	if errno != 0 {
		return nil, errno
	}
	list, errno := n.u.readdir(&e)
	if errno != 0 {
		return nil, errno
	}
	return fs.NewListDirStream(list), 0
}

var _ fs.NodeOpener = (*node)(nil)

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	u := n.u
	p, ok := n.path()
	if !ok {
		return nil, 0, syscall.ENOENT
	}
	write := flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC) != 0
	if write {
		u.lock()
		defer u.unlock()
		if errno := u.copyUp(p, flags&syscall.O_TRUNC == 0); errno != 0 {
			return nil, 0, errno
		}
	} else {
		u.mu.RLock()
		defer u.mu.RUnlock()
	}
	e, errno := u.resolve(p)
	if errno != 0 {
		return nil, 0, errno
	}
	if !e.exists() {
		return nil, 0, syscall.ENOENT
	}
	if !e.upper {
		return u.openLower(n, e.lower.file, flags, p)
	}
	fd, err := syscall.Open(u.hostPath(p), int(flags)&^(syscall.O_CREAT|syscall.O_EXCL)|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, 0, fs.ToErrno(err)
	}
	return newUpperFile(u, fd, u.inoOf(&e)), fuse.FOPEN_KEEP_CACHE, 0
}

var _ fs.NodeCreater = (*node)(nil)

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	u := n.u
	dir, ok := n.path()
	if !ok {
		return nil, nil, 0, syscall.ENOENT
	}
	u.lock()
	defer u.unlock()
	if errno := u.ensureUpperDir(dir); errno != 0 {
		return nil, nil, 0, errno
	}
	p := join(dir, name)
	fd, err := syscall.Open(u.hostPath(p), int(flags)|syscall.O_CREAT|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, nil, 0, fs.ToErrno(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		syscall.Close(fd)
		return nil, nil, 0, fs.ToErrno(err)
	}
	u.created(p, &st, u.newAttr(ctx, dir, syscall.S_IFREG|mode&0o7777))
	u.forgetPathIno(p, false) // a new name: a removal forgot what was below it
	u.forgetHostIno(st.Ino)
	e := entry{path: p, upper: true, st: st}
	child := n.newChild(ctx, &e, out)
	return child, newUpperFile(u, fd, out.Attr.Ino), fuse.FOPEN_KEEP_CACHE, 0
}

// mkObject creates a non-regular object at name with make and records its
// metadata.
func (n *node) mkObject(ctx context.Context, name string, a func(dir string) *attr, make func(hp string) error, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	u := n.u
	dir, ok := n.path()
	if !ok {
		return nil, syscall.ENOENT
	}
	u.lock()
	defer u.unlock()
	if errno := u.ensureUpperDir(dir); errno != 0 {
		return nil, errno
	}
	p := join(dir, name)
	if e, errno := u.resolve(p); errno != 0 {
		return nil, errno
	} else if e.exists() {
		return nil, syscall.EEXIST
	}
	hp := u.hostPath(p)
	if err := make(hp); err != nil {
		return nil, fs.ToErrno(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(hp, &st); err != nil {
		return nil, fs.ToErrno(err)
	}
	u.created(p, &st, a(dir))
	u.forgetPathIno(p, false) // a new name: a removal forgot what was below it
	u.forgetHostIno(st.Ino)
	e, errno := u.resolve(p)
	if errno != 0 {
		return nil, errno
	}
	return n.newChild(ctx, &e, out), 0
}

var _ fs.NodeMkdirer = (*node)(nil)

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return n.mkObject(ctx, name,
		func(dir string) *attr { return n.u.newAttr(ctx, dir, syscall.S_IFDIR|mode&0o7777) },
		func(hp string) error { return os.Mkdir(hp, 0o700) }, out)
}

var _ fs.NodeMknoder = (*node)(nil)

func (n *node) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if mode&syscall.S_IFMT == 0 {
		mode |= syscall.S_IFREG
	}
	return n.mkObject(ctx, name,
		func(dir string) *attr {
			a := n.u.newAttr(ctx, dir, mode)
			a.Rdev = uint64(dev)
			return a
		},
		writeEmpty, out)
}

var _ fs.NodeSymlinker = (*node)(nil)

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return n.mkObject(ctx, name,
		func(dir string) *attr { return n.u.newAttr(ctx, dir, syscall.S_IFLNK|0o777) },
		func(hp string) error { return os.Symlink(target, hp) }, out)
}

var _ fs.NodeLinker = (*node)(nil)

func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	u := n.u
	dir, ok := n.path()
	if !ok {
		return nil, syscall.ENOENT
	}
	tp, ok := target.(*node).path()
	if !ok {
		return nil, syscall.ENOENT
	}
	u.lock()
	defer u.unlock()
	if errno := u.copyUp(tp, true); errno != 0 {
		return nil, errno
	}
	if errno := u.ensureUpperDir(dir); errno != 0 {
		return nil, errno
	}
	p := join(dir, name)
	if err := os.Link(u.hostPath(tp), u.hostPath(p)); err != nil {
		return nil, fs.ToErrno(err)
	}
	u.meta.setFlags(p, 0)
	te, errno := u.resolve(tp)
	if errno != 0 {
		return nil, errno
	}
	u.setPathIno(p, u.inoOf(&te), te.st.Ino)
	e, errno := u.resolve(p)
	if errno != 0 {
		return nil, errno
	}
	return n.newChild(ctx, &e, out), 0
}

var _ fs.NodeUnlinker = (*node)(nil)

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	return n.remove(name, false)
}

var _ fs.NodeRmdirer = (*node)(nil)

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.remove(name, true)
}

func (n *node) remove(name string, dir bool) syscall.Errno {
	u := n.u
	parent, ok := n.path()
	if !ok {
		return syscall.ENOENT
	}
	u.lock()
	defer u.unlock()
	p := join(parent, name)
	e, errno := u.resolve(p)
	if errno != 0 {
		return errno
	}
	if !e.exists() {
		return syscall.ENOENT
	}
	if dir != e.isDir() {
		if dir {
			return syscall.ENOTDIR
		}
		return syscall.EISDIR
	}
	if dir {
		if empty, errno := u.unionDirEmpty(&e); errno != 0 {
			return errno
		} else if !empty {
			return syscall.ENOTEMPTY
		}
	}
	if e.upper {
		if errno := u.ensureUpperDir(parent); errno != 0 {
			return errno
		}
		var err error
		if dir {
			err = syscall.Rmdir(u.hostPath(p))
		} else {
			err = syscall.Unlink(u.hostPath(p))
		}
		if err != nil {
			return fs.ToErrno(err)
		}
		if dir || e.st.Nlink <= 1 {
			u.meta.forget(e.st.Ino)
			u.forgetHostIno(e.st.Ino)
		}
	} else if errno := u.ensureUpperDir(parent); errno != 0 {
		return errno
	}
	u.removed(p, dir)
	return 0
}

var _ fs.NodeRenamer = (*node)(nil)

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	u := n.u
	sdir, ok := n.path()
	if !ok {
		return syscall.ENOENT
	}
	ddir, ok := newParent.(*node).path()
	if !ok {
		return syscall.ENOENT
	}
	if flags&^(unix.RENAME_NOREPLACE|unix.RENAME_EXCHANGE) != 0 {
		return syscall.EINVAL
	}
	u.lock()
	defer u.unlock()
	sp, dp := join(sdir, name), join(ddir, newName)
	se, errno := u.resolve(sp)
	if errno != 0 {
		return errno
	}
	de, errno := u.resolve(dp)
	if errno != 0 {
		return errno
	}
	if !se.exists() {
		return syscall.ENOENT
	}
	exchange := flags&unix.RENAME_EXCHANGE != 0
	switch {
	case sp == dp:
		return 0
	case exchange && !de.exists():
		return syscall.ENOENT
	case flags&unix.RENAME_NOREPLACE != 0 && de.exists():
		return syscall.EEXIST
	}
	// Moving a directory that has lower content would need every lower
	// descendant copied up; like overlayfs, let the caller fall back to copying.
	if se.isDir() && se.lower != nil || exchange && de.isDir() && de.lower != nil {
		return syscall.EXDEV
	}
	if de.exists() && !exchange {
		if se.isDir() != de.isDir() {
			if se.isDir() {
				return syscall.ENOTDIR
			}
			return syscall.EISDIR
		}
		if de.isDir() {
			if empty, errno := u.unionDirEmpty(&de); errno != 0 {
				return errno
			} else if !empty {
				return syscall.ENOTEMPTY
			}
		}
	}
	if errno := u.copyUp(sp, true); errno != 0 {
		return errno
	}
	if exchange {
		if errno := u.copyUp(dp, true); errno != 0 {
			return errno
		}
	}
	if errno := u.ensureUpperDir(sdir); errno != 0 {
		return errno
	}
	if errno := u.ensureUpperDir(ddir); errno != 0 {
		return errno
	}
	var replaced unix.Stat_t
	hadReplaced := !exchange && unix.Lstat(u.hostPath(dp), &replaced) == nil
	if hadReplaced && replaced.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		// An empty union directory may still hold an empty upper directory.
		if err := syscall.Rmdir(u.hostPath(dp)); err != nil {
			return fs.ToErrno(err)
		}
	}
	var hostFlags uint
	if exchange {
		hostFlags = unix.RENAME_EXCHANGE
	}
	if err := unix.Renameat2(unix.AT_FDCWD, u.hostPath(sp), unix.AT_FDCWD, u.hostPath(dp), hostFlags); err != nil {
		return fs.ToErrno(err)
	}
	if hadReplaced && (replaced.Mode&syscall.S_IFMT == syscall.S_IFDIR || replaced.Nlink <= 1) {
		u.meta.forget(replaced.Ino)
		u.forgetHostIno(replaced.Ino)
	}
	if exchange {
		const tmp = "\x00exchange"
		tree := se.isDir() || de.isDir()
		u.meta.moveTree(sp, tmp, tree)
		u.meta.moveTree(dp, sp, tree)
		u.meta.moveTree(tmp, dp, tree)
		u.movePathIno(sp, tmp, tree)
		u.movePathIno(dp, sp, tree)
		u.movePathIno(tmp, dp, tree)
		u.markMovedDir(sp)
		u.markMovedDir(dp)
		return 0
	}
	tree := se.isDir() || de.exists() && de.isDir()
	u.meta.moveTree(sp, dp, tree)
	u.movePathIno(sp, dp, tree)
	u.markMovedDir(dp)
	u.removed(sp, se.isDir())
	return 0
}

// markMovedDir makes a directory moved to p opaque when the lower layers
// have p, so that their children do not show through it.
func (u *union) markMovedDir(p string) {
	var st unix.Stat_t
	if unix.Lstat(u.hostPath(p), &st) != nil {
		return
	}
	flags := u.meta.flags[p] &^ flagWhiteout
	if st.Mode&syscall.S_IFMT == syscall.S_IFDIR && u.lower.lookup(p) != nil {
		flags |= flagOpaque
	}
	u.meta.setFlags(p, flags)
}

// Extended attributes live in the metadata, never in host xattrs.

func (u *union) xattrsOf(p string) (map[string][]byte, syscall.Errno) {
	e, errno := u.resolve(p)
	if errno != 0 {
		return nil, errno
	}
	switch {
	case e.upper:
		return u.attrOf(&e).Xattrs, 0
	case e.lower != nil:
		return e.lower.file.xattrs, 0
	}
	return nil, syscall.ENOENT
}

var _ fs.NodeGetxattrer = (*node)(nil)

func (n *node) Getxattr(ctx context.Context, name string, dest []byte) (uint32, syscall.Errno) {
	p, ok := n.path()
	if !ok {
		return 0, syscall.ENODATA
	}
	n.u.mu.RLock()
	defer n.u.mu.RUnlock()
	xs, errno := n.u.xattrsOf(p)
	if errno != 0 {
		return 0, errno
	}
	v, ok := xs[name]
	if !ok {
		return 0, syscall.ENODATA
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

var _ fs.NodeListxattrer = (*node)(nil)

func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	p, ok := n.path()
	if !ok {
		return 0, 0
	}
	n.u.mu.RLock()
	defer n.u.mu.RUnlock()
	xs, errno := n.u.xattrsOf(p)
	if errno != 0 {
		return 0, errno
	}
	var b []byte
	for _, k := range sortedKeys(xs) {
		b = append(append(b, k...), 0)
	}
	if len(dest) < len(b) {
		return uint32(len(b)), syscall.ERANGE
	}
	return uint32(copy(dest, b)), 0
}

// maxXattrSize is the largest value the kernel passes (XATTR_SIZE_MAX).
const maxXattrSize = 64 << 10

var _ fs.NodeSetxattrer = (*node)(nil)

func (n *node) Setxattr(ctx context.Context, name string, data []byte, flags uint32) syscall.Errno {
	return n.changeXattr(name, func(xs map[string][]byte) syscall.Errno {
		_, exists := xs[name]
		switch {
		case flags&unix.XATTR_CREATE != 0 && exists:
			return syscall.EEXIST
		case flags&unix.XATTR_REPLACE != 0 && !exists:
			return syscall.ENODATA
		case len(data) > maxXattrSize:
			return syscall.E2BIG
		}
		xs[name] = append([]byte(nil), data...)
		return 0
	})
}

var _ fs.NodeRemovexattrer = (*node)(nil)

func (n *node) Removexattr(ctx context.Context, name string) syscall.Errno {
	return n.changeXattr(name, func(xs map[string][]byte) syscall.Errno {
		if _, ok := xs[name]; !ok {
			return syscall.ENODATA
		}
		delete(xs, name)
		return 0
	})
}

func (n *node) changeXattr(name string, change func(map[string][]byte) syscall.Errno) syscall.Errno {
	u := n.u
	p, ok := n.path()
	if !ok {
		return syscall.ENOENT
	}
	u.lock()
	defer u.unlock()
	// Try the change first, so that a failing one copies nothing up.
	xs, errno := u.xattrsOf(p)
	if errno != 0 {
		return errno
	}
	trial := make(map[string][]byte, len(xs))
	for k, v := range xs {
		trial[k] = v
	}
	if errno := change(trial); errno != 0 {
		return errno
	}
	if errno := u.copyUp(p, true); errno != 0 {
		return errno
	}
	e, errno := u.resolve(p)
	if errno != 0 {
		return errno
	}
	a := u.attrOf(&e).clone()
	if a.Xattrs == nil {
		a.Xattrs = map[string][]byte{}
	}
	if errno := change(a.Xattrs); errno != 0 {
		return errno
	}
	u.meta.setAttr(e.st.Ino, a)
	return 0
}

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
