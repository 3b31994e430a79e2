package fuse

import (
	"archive/tar"
	"io"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/roost-containers/roost/layers"
)

// Lower is one read-only layer of a union: its tar and the index of that tar
// (layers.Store.LayerTar and LayerEntries give both). Where Index is nil,
// the union reads IndexFile if it needs the index (see Options.MergedView).
type Lower struct {
	Tar       string
	Index     *layers.Index
	IndexFile string
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
	// viewID is the file's record number plus one while marshalView
	// writes the tree (hard links share one file).
	viewID uint32
	// names are the paths of a hard link's names in the merged tree, set
	// only where there are several.
	names []string

	sparseOnce sync.Once
	sparseMap  *sparseData // loaded on first use
}

// lowerNode is one name in the merged tree of lower layers.
type lowerNode struct {
	file     *lowerFile
	children map[string]*lowerNode // directories only (see child)

	namesOnce sync.Once
	names     []string // children's names, sorted, on first use

	// A node of a loaded merged view (view.go) gets its children from the
	// view when they are first asked for.
	view      *mergedView
	at        uint32 // its record in the view
	childOnce sync.Once
}

func (n *lowerNode) isDir() bool { return n.file.mode&syscall.S_IFMT == syscall.S_IFDIR }

// child returns the child called name of a directory, or nil.
func (n *lowerNode) child(name string) *lowerNode {
	if n.view != nil {
		n.childOnce.Do(func() { n.children = n.view.children(n.at) })
	}
	return n.children[name]
}

// sortedNames returns the names of a directory's children, sorted. They are
// sorted on first use: most directories of a container are never listed.
func (n *lowerNode) sortedNames() []string {
	n.namesOnce.Do(func() {
		if n.view != nil {
			n.names = n.view.childNames(n.at)
			return
		}
		n.names = make([]string, 0, len(n.children))
		for name := range n.children {
			n.names = append(n.names, name)
		}
		sort.Strings(n.names)
	})
	return n.names
}

// lowerTree is the merge of a union's lower layers, computed once per mount.
type lowerTree struct {
	root *lowerNode
	// Inode numbers: the root has 1, an entry of the layers its position
	// among all the layers' entries plus 2 (base gives each layer's first),
	// and a directory no layer names (implied) the next one above those.
	base    []uint64
	nextIno uint64
	// maxIno is the largest inode number given to a lower file; upper files
	// get numbers above it.
	maxIno uint64

	// While building: the directory the last entry went into (a tar
	// lists a directory's entries together), and the nodes and files of
	// the layer being added, allocated at once.
	lastDir  string
	lastNode *lowerNode
	nodes    []lowerNode
	files    []lowerFile
}

// newNode returns a node for f, from the layer's block while it lasts.
func (t *lowerTree) newNode(f *lowerFile, dir bool) *lowerNode {
	var n *lowerNode
	if len(t.nodes) > 0 {
		n, t.nodes = &t.nodes[0], t.nodes[1:]
	} else {
		n = new(lowerNode)
	}
	n.file = f
	if dir {
		n.children = map[string]*lowerNode{}
	}
	return n
}

func (t *lowerTree) newDirFile() *lowerFile {
	t.nextIno++
	return &lowerFile{mode: syscall.S_IFDIR | 0o755, layer: -1, ino: t.nextIno}
}

// buildLowerTree merges layers, bottom first, following the OCI layer rules:
// in each layer whiteouts and opaque markers apply to the layers below it
// only; a later entry for a name replaces an earlier one, except that a
// directory over a directory keeps the children; missing parent directories
// are implied with mode 0755, owned by 0.
//
// It runs at every container start, so it allocates little: no path strings,
// no sorting (see sortedNames), a layer's nodes and files in one block each,
// inode numbers from the entries' positions, which depend only on the
// layers; and it walks the path of an entry's directory only where the
// entry before it was in another one.
func buildLowerTree(lowers []Lower) *lowerTree {
	t := &lowerTree{nextIno: 1}
	for _, l := range lowers {
		t.base = append(t.base, t.nextIno+1)
		t.nextIno += uint64(len(l.Index.Entries))
	}
	t.root = &lowerNode{file: t.newDirFile(), children: map[string]*lowerNode{}}
	for li, l := range lowers {
		for i := range l.Index.Entries {
			e := &l.Index.Entries[i]
			dir, base := splitName(e.Name)
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
		t.nodes = make([]lowerNode, len(l.Index.Entries))
		t.files = make([]lowerFile, len(l.Index.Entries))
		t.lastNode = nil // the whiteouts may have removed it
		for i := range l.Index.Entries {
			e := &l.Index.Entries[i]
			if _, base := splitName(e.Name); strings.HasPrefix(base, whiteoutPrefix) {
				continue
			}
			t.add(li, i, e)
		}
	}
	t.lastNode, t.nodes, t.files = nil, nil, nil
	t.finish()
	return t
}

// splitName splits a cleaned entry name into its directory ("." for the
// root) and its last element, without allocating.
func splitName(name string) (dir, base string) {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return ".", name
	}
	return name[:i], name[i+1:]
}

// lookup returns the node at the cleaned path p ("." or "" for the root),
// or nil.
func (t *lowerTree) lookup(p string) *lowerNode {
	n := t.root
	if p == "." || p == "" {
		return n
	}
	for p != "" {
		var c string
		c, p, _ = strings.Cut(p, "/")
		if n.view == nil && n.children == nil {
			return nil
		}
		if n = n.child(c); n == nil {
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
	if t.lastNode != nil && p == t.lastDir {
		return t.lastNode
	}
	t.lastDir = p
	for p != "" {
		var c string
		c, p, _ = strings.Cut(p, "/")
		child := n.children[c]
		if child == nil || !child.isDir() {
			child = t.newNode(t.newDirFile(), true)
			n.children[c] = child
		}
		n = child
	}
	t.lastNode = n
	return n
}

func (t *lowerTree) add(layer, ordinal int, e *layers.Entry) {
	if e.Name == "." {
		t.root.file = t.entryFile(layer, ordinal, e)
		return
	}
	dir, base := splitName(e.Name)
	parent := t.dir(dir)
	old := parent.children[base]
	if old != nil && old.isDir() && e.Typeflag != tar.TypeDir {
		t.lastNode = nil // it may be the directory replaced here
	}
	if e.Typeflag == tar.TypeLink {
		if target := t.lookup(e.Linkname); target != nil && !target.isDir() {
			parent.children[base] = t.newNode(target.file, false)
			return
		}
		// A link to nothing: keep the name as an empty file.
		f := t.entryFile(layer, ordinal, e)
		f.mode = syscall.S_IFREG | uint32(e.Mode)&0o7777
		parent.children[base] = t.newNode(f, false)
		return
	}
	f := t.entryFile(layer, ordinal, e)
	if f.mode&syscall.S_IFMT == syscall.S_IFDIR {
		if old != nil && old.isDir() {
			old.file = f
			return
		}
		parent.children[base] = t.newNode(f, true)
		return
	}
	parent.children[base] = t.newNode(f, false)
}

func (t *lowerTree) entryFile(layer, ordinal int, e *layers.Entry) *lowerFile {
	f := &t.files[ordinal]
	*f = lowerFile{
		ino:          t.base[layer] + uint64(ordinal),
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

// finish counts links (a directory has two and one per subdirectory, a
// file one per name) and records the names of files that have several (see
// copyUpLinks).
func (t *lowerTree) finish() {
	t.root.file.ino = 1
	t.maxIno = t.nextIno
	var multi bool
	var count func(n *lowerNode)
	count = func(n *lowerNode) {
		n.file.nlink = 2
		for _, c := range n.children {
			if c.isDir() {
				n.file.nlink++
				count(c)
			} else {
				c.file.nlink++
				multi = multi || c.file.nlink > 1
			}
		}
	}
	count(t.root)
	if !multi {
		return
	}
	var linked []*lowerFile
	var names func(p string, n *lowerNode)
	names = func(p string, n *lowerNode) {
		for name, c := range n.children {
			if c.isDir() {
				names(join(p, name), c)
			} else if c.file.nlink > 1 {
				if len(c.file.names) == 0 {
					linked = append(linked, c.file)
				}
				c.file.names = append(c.file.names, join(p, name))
			}
		}
	}
	names(".", t.root)
	for _, f := range linked {
		sort.Strings(f.names)
	}
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
