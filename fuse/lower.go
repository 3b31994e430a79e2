package fuse

import (
	"archive/tar"
	"io"
	"path"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/roost-containers/roost/layers"
)

// Lower is one read-only layer of a union: its tar and the index of that tar
// (layers.Store.LayerTar and LayerEntries give both).
type Lower struct {
	Tar   string
	Index *layers.Index
}

// OCI whiteout names.
const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
)

// lowerFile is one file of the merged lower layers. Hard links of a layer
// share one lowerFile, and so its inode number.
type lowerFile struct {
	mode     uint32 // st_mode: type and permission bits
	uid, gid uint32
	size     int64
	mtime    int64 // nanoseconds since the epoch
	rdev     uint64
	linkname string
	xattrs   map[string][]byte

	layer        int // index into the union's lower tars
	dataOffset   int64
	headerOffset int64
	ordinal      int // the entry's position in its layer's index
	sparse       bool

	ino   uint64
	nlink uint32
	// names are the file's paths in the merged tree (more than one for a
	// hard link), in the order of the walk that numbered them.
	names []string

	sparseOnce sync.Once
	sparseMap  *sparseData // loaded on first use
}

// lowerNode is one name in the merged tree of lower layers.
type lowerNode struct {
	file     *lowerFile
	children map[string]*lowerNode // directories only
	names    []string              // children's names, sorted; set by finish
}

func (n *lowerNode) isDir() bool { return n.file.mode&syscall.S_IFMT == syscall.S_IFDIR }

// lowerTree is the merge of a union's lower layers, computed once per mount.
type lowerTree struct {
	root  *lowerNode
	nodes map[string]*lowerNode // by cleaned path, "." for the root
	// maxIno is the largest inode number given to a lower file; upper files
	// get numbers above it.
	maxIno uint64
}

func newDirFile() *lowerFile {
	return &lowerFile{mode: syscall.S_IFDIR | 0o755, layer: -1}
}

// buildLowerTree merges layers, bottom first, following the OCI layer rules:
// in each layer whiteouts and opaque markers apply to the layers below it
// only; a later entry for a name replaces an earlier one, except that a
// directory over a directory keeps the children; missing parent directories
// are implied with mode 0755, owned by 0.
func buildLowerTree(lowers []Lower) *lowerTree {
	t := &lowerTree{root: &lowerNode{file: newDirFile(), children: map[string]*lowerNode{}}}
	for li, l := range lowers {
		for i := range l.Index.Entries {
			e := &l.Index.Entries[i]
			dir, base := path.Split(e.Name)
			dir = path.Clean(dir)
			if base == opaqueMarker {
				if d := t.lookup(dir); d != nil && d.isDir() {
					d.children = map[string]*lowerNode{}
				}
			} else if name, ok := strings.CutPrefix(base, whiteoutPrefix); ok {
				if d := t.lookup(dir); d != nil && d.isDir() {
					delete(d.children, name)
				}
			}
		}
		for i := range l.Index.Entries {
			e := &l.Index.Entries[i]
			if strings.HasPrefix(path.Base(e.Name), whiteoutPrefix) {
				continue
			}
			t.add(li, i, e)
		}
	}
	t.finish()
	return t
}

func (t *lowerTree) lookup(p string) *lowerNode {
	n := t.root
	if p == "." || p == "" {
		return n
	}
	for _, c := range strings.Split(p, "/") {
		if n.children == nil {
			return nil
		}
		n = n.children[c]
		if n == nil {
			return nil
		}
	}
	return n
}

// dir returns the directory at p, creating it and its parents as needed and
// replacing non-directories on the way.
func (t *lowerTree) dir(p string) *lowerNode {
	n := t.root
	if p == "." {
		return n
	}
	for _, c := range strings.Split(p, "/") {
		child := n.children[c]
		if child == nil || !child.isDir() {
			child = &lowerNode{file: newDirFile(), children: map[string]*lowerNode{}}
			n.children[c] = child
		}
		n = child
	}
	return n
}

func (t *lowerTree) add(layer, ordinal int, e *layers.Entry) {
	if e.Name == "." {
		t.root.file = entryFile(layer, ordinal, e)
		return
	}
	dir, base := path.Split(e.Name)
	parent := t.dir(path.Clean(dir))
	if e.Typeflag == tar.TypeLink {
		if target := t.lookup(e.Linkname); target != nil && !target.isDir() {
			parent.children[base] = &lowerNode{file: target.file}
			return
		}
		// A link to nothing: keep the name as an empty file.
		f := entryFile(layer, ordinal, e)
		f.mode = syscall.S_IFREG | uint32(e.Mode)&0o7777
		parent.children[base] = &lowerNode{file: f}
		return
	}
	f := entryFile(layer, ordinal, e)
	old := parent.children[base]
	if f.mode&syscall.S_IFMT == syscall.S_IFDIR {
		if old != nil && old.isDir() {
			old.file = f
			return
		}
		parent.children[base] = &lowerNode{file: f, children: map[string]*lowerNode{}}
		return
	}
	parent.children[base] = &lowerNode{file: f}
}

func entryFile(layer, ordinal int, e *layers.Entry) *lowerFile {
	f := &lowerFile{
		mode:         uint32(e.Mode) & 0o7777,
		uid:          uint32(e.UID),
		gid:          uint32(e.GID),
		mtime:        e.ModTime.UnixNano(),
		linkname:     e.Linkname,
		layer:        layer,
		dataOffset:   e.DataOffset,
		headerOffset: e.HeaderOffset,
		ordinal:      ordinal,
		sparse:       e.Sparse,
	}
	switch e.Typeflag {
	case tar.TypeDir:
		f.mode |= syscall.S_IFDIR
	case tar.TypeSymlink:
		f.mode = syscall.S_IFLNK | 0o777
		f.size = int64(len(e.Linkname))
	case tar.TypeChar:
		f.mode |= syscall.S_IFCHR
		f.rdev = mkdev(e.Devmajor, e.Devminor)
	case tar.TypeBlock:
		f.mode |= syscall.S_IFBLK
		f.rdev = mkdev(e.Devmajor, e.Devminor)
	case tar.TypeFifo:
		f.mode |= syscall.S_IFIFO
	default:
		f.mode |= syscall.S_IFREG
		f.size = e.Size
	}
	if len(e.Xattrs) > 0 {
		f.xattrs = make(map[string][]byte, len(e.Xattrs))
		for k, v := range e.Xattrs {
			f.xattrs[k] = []byte(v)
		}
	}
	return f
}

func mkdev(major, minor int64) uint64 {
	return (uint64(major)&0xfff)<<8 | (uint64(major)&^0xfff)<<32 | uint64(minor)&0xff | (uint64(minor)&^0xff)<<12
}

// finish indexes the tree by path, sorts children, counts links and gives
// every file its inode number (the root gets 1) in a depth-first walk, so
// numbers depend only on the layers.
func (t *lowerTree) finish() {
	t.nodes = map[string]*lowerNode{}
	next := uint64(1)
	var walk func(p string, n *lowerNode)
	walk = func(p string, n *lowerNode) {
		t.nodes[p] = n
		f := n.file
		if f.ino == 0 {
			f.ino = next
			next++
		}
		f.nlink++
		if !n.isDir() {
			f.names = append(f.names, p)
			return
		}
		n.names = make([]string, 0, len(n.children))
		for name := range n.children {
			n.names = append(n.names, name)
		}
		sort.Strings(n.names)
		f.nlink = 2
		for _, name := range n.names {
			c := n.children[name]
			if c.isDir() {
				f.nlink++
			}
			cp := name
			if p != "." {
				cp = p + "/" + name
			}
			walk(cp, c)
		}
	}
	walk(".", t.root)
	t.maxIno = next - 1
}

// sparseData returns the map of a sparse file, reading it from tarFile on
// first use.
func (f *lowerFile) sparseData(tarFile io.ReaderAt) (*sparseData, error) {
	f.sparseOnce.Do(func() {
		s, err := loadSparse(tarFile, f.headerOffset, f.ordinal)
		if err != nil {
			s = &sparseData{err: err}
		}
		f.sparseMap = s
	})
	return f.sparseMap, f.sparseMap.err
}
