package fuse

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"unsafe"
)

// A merged view is the lower tree of an image's layers (buildLowerTree) as
// a file, which a container's start loads instead of reading the layers'
// indexes and building the tree again: DESIGN.md's "merged view of an
// image's read-only layers, computed once and cached". Building takes
// milliseconds for an image of a few thousand files (Debian's base layer:
// 1.5 ms to read its index and 3 ms to build, in a new process); a view is
// read whole (about 1 ms for that layer's) and decoded only where the
// container looks: a directory's children when it is first looked into, a
// file when it is first reached.
//
// Layout, little-endian: viewMagic; a header of six uint32 (the number of
// layers, of nodes and of files, the size of the strings, the CRC-32C of
// all that follows the header, one unused) and two uint64 (the tree's
// maxIno and nextIno); the nodes, viewNodeSize bytes
// each (node), the root first and the children of each directory together,
// sorted by name; the files, viewFileSize bytes each (file; hard links share
// one); then the strings that nodes and files point into. A view depends only on the layers (their
// diff IDs name it, see layers.Store.MergedView) and on this format: a
// change to buildLowerTree's rules, or to what a view records, needs a new
// viewMagic, or views written before would still be loaded.
const viewMagic = "roost merged view 2\n"

const (
	viewHeaderSize = 6*4 + 2*8
	viewNodeSize   = 5 * 4
	viewFileSize   = 4*4 + 6*8 + 7*4 + 2*4
)

// mergedView is a loaded view: the file's bytes, and the files made of its
// records so far (hard links are one *lowerFile, as in a built tree).
type mergedView struct {
	b []byte
	// s is b as a string, for names to be slices of, without a copy: b
	// never changes once loaded.
	s                 string
	nodes, files, str int // where each part starts in b

	mu   sync.Mutex
	made map[uint32]*lowerFile
}

// node record fields: name offset and length in the strings, the file, the
// first child and the number of children.
func (v *mergedView) node(i uint32) (nameOff, nameLen, file, first, count uint32) {
	r := v.b[v.nodes+int(i)*viewNodeSize:]
	u := binary.LittleEndian.Uint32
	return u(r), u(r[4:]), u(r[8:]), u(r[12:]), u(r[16:])
}

func (v *mergedView) name(off, n uint32) string { return v.s[v.str+int(off) : v.str+int(off+n)] }

// children makes the nodes of directory record i's children.
func (v *mergedView) children(i uint32) map[string]*lowerNode {
	_, _, _, first, count := v.node(i)
	if count == 0 {
		return map[string]*lowerNode{}
	}
	m := make(map[string]*lowerNode, count)
	for c := first; c < first+count; c++ {
		off, n, f, _, _ := v.node(c)
		m[v.name(off, n)] = &lowerNode{file: v.file(f), view: v, at: c}
	}
	return m
}

// childNames are the names of directory record i's children, sorted.
func (v *mergedView) childNames(i uint32) []string {
	_, _, _, first, count := v.node(i)
	names := make([]string, 0, count)
	for c := first; c < first+count; c++ {
		off, n, _, _, _ := v.node(c)
		names = append(names, v.name(off, n))
	}
	return names
}

// file returns the file of record i, made on first use.
func (v *mergedView) file(i uint32) *lowerFile {
	v.mu.Lock()
	defer v.mu.Unlock()
	if f := v.made[i]; f != nil {
		return f
	}
	r := v.b[v.files+int(i)*viewFileSize:]
	u32, u64 := binary.LittleEndian.Uint32, binary.LittleEndian.Uint64
	f := &lowerFile{
		mode: u32(r), uid: u32(r[4:]), gid: u32(r[8:]), nlink: u32(r[12:]),
		size: int64(u64(r[16:])), mtime: int64(u64(r[24:])), rdev: u64(r[32:]), ino: u64(r[40:]),
		dataOffset: int64(u64(r[48:])), headerOffset: int64(u64(r[56:])),
		ordinal: int(u32(r[64:])), layer: int(int32(u32(r[68:]))), sparse: u32(r[72:]) != 0,
		linkname: v.name(u32(r[76:]), u32(r[80:])),
	}
	if n := u32(r[88:]); n > 0 {
		f.xattrs = make(map[string][]byte, n)
		at := u32(r[84:])
		for range n {
			k := v.lenString(&at)
			f.xattrs[k] = []byte(v.lenString(&at))
		}
	}
	if n := u32(r[96:]); n > 0 {
		at := u32(r[92:])
		for range n {
			f.names = append(f.names, v.lenString(&at))
		}
	}
	v.made[i] = f
	return f
}

// lenString reads a string written as its uint32 length and bytes at *at in
// the strings, and moves *at past it.
func (v *mergedView) lenString(at *uint32) string {
	n := binary.LittleEndian.Uint32(v.b[v.str+int(*at):])
	s := v.name(*at+4, n)
	*at += 4 + n
	return s
}

// errBadView says that a merged view is not one of this format, or is cut.
var errBadView = errors.New("not a merged view of this format")

// loadView checks b, a merged view of layers layers, and returns its tree.
// Every record is checked here, so that a lookup later never reads outside b.
func loadView(b []byte, layers int) (*lowerTree, error) {
	if !bytes.HasPrefix(b, []byte(viewMagic)) || len(b) < len(viewMagic)+viewHeaderSize {
		return nil, errBadView
	}
	h := b[len(viewMagic):]
	u32, u64 := binary.LittleEndian.Uint32, binary.LittleEndian.Uint64
	v := &mergedView{b: b, s: unsafe.String(unsafe.SliceData(b), len(b)), made: map[uint32]*lowerFile{}}
	nLayers, nNodes, nFiles, strLen := u32(h), u32(h[4:]), u32(h[8:]), u32(h[12:])
	maxIno, nextIno := u64(h[24:]), u64(h[32:])
	v.nodes = len(viewMagic) + viewHeaderSize
	if crc32.Checksum(b[v.nodes:], castagnoli) != u32(h[16:]) {
		return nil, errBadView // cut short or torn by a crash (saveView does not sync)
	}
	v.files = v.nodes + int(nNodes)*viewNodeSize
	v.str = v.files + int(nFiles)*viewFileSize
	if int(nLayers) != layers || nNodes == 0 || nFiles == 0 || uint64(len(b)) != uint64(v.str)+uint64(strLen) ||
		uint64(nNodes)*viewNodeSize > uint64(len(b)) || uint64(nFiles)*viewFileSize > uint64(len(b)) {
		return nil, errBadView
	}
	strOK := func(off, n uint32) bool { return uint64(off)+uint64(n) <= uint64(strLen) }
	lenStrings := func(at uint32, n uint64) bool {
		for range n {
			if !strOK(at, 4) {
				return false
			}
			l := u32(b[v.str+int(at):])
			if !strOK(at+4, l) || uint64(at)+4+uint64(l) > uint64(strLen) {
				return false
			}
			at += 4 + l
		}
		return true
	}
	for i := range nFiles {
		r := b[v.files+int(i)*viewFileSize:]
		if l := int32(u32(r[68:])); l < -1 || int(l) >= layers || !strOK(u32(r[76:]), u32(r[80:])) ||
			u32(r[88:]) > strLen || !lenStrings(u32(r[84:]), 2*uint64(u32(r[88:]))) ||
			u32(r[96:]) > strLen || !lenStrings(u32(r[92:]), uint64(u32(r[96:]))) {
			return nil, errBadView
		}
	}
	for i := range nNodes {
		off, n, f, first, count := v.node(i)
		if !strOK(off, n) || f >= nFiles || uint64(first)+uint64(count) > uint64(nNodes) || count > 0 && first <= i {
			return nil, errBadView
		}
	}
	root := &lowerNode{file: v.file(0), view: v, at: 0}
	if _, _, f, _, _ := v.node(0); f != 0 || !root.isDir() {
		return nil, errBadView
	}
	return &lowerTree{root: root, maxIno: maxIno, nextIno: nextIno}, nil
}

// marshalView writes t, a tree buildLowerTree built from layers layers, as
// a merged view.
func marshalView(t *lowerTree, layers int) []byte {
	le := binary.LittleEndian
	var strs []byte
	str := func(s string) (uint32, uint32) {
		off := uint32(len(strs))
		strs = append(strs, s...)
		return off, uint32(len(s))
	}
	lenStr := func(s string) {
		strs = le.AppendUint32(strs, uint32(len(s)))
		strs = append(strs, s...)
	}
	// Nodes breadth first: a directory's children get consecutive records.
	type pending struct {
		n    *lowerNode
		name string
	}
	queue := []pending{{t.root, "."}}
	files := []*lowerFile{t.root.file}
	t.root.file.viewID = 1
	var nodes []byte
	var sorted []string
	next := uint32(1)
	for i := 0; i < len(queue); i++ {
		p := queue[i]
		if p.n.file.viewID == 0 {
			files = append(files, p.n.file)
			p.n.file.viewID = uint32(len(files))
		}
		id := p.n.file.viewID - 1
		sorted = sorted[:0]
		for name := range p.n.children {
			sorted = append(sorted, name)
		}
		slices.Sort(sorted)
		first := next
		if len(sorted) == 0 {
			first = 0
		}
		next += uint32(len(sorted))
		for _, name := range sorted {
			queue = append(queue, pending{p.n.children[name], name})
		}
		off, n := str(p.name)
		nodes = le.AppendUint32(le.AppendUint32(le.AppendUint32(le.AppendUint32(le.AppendUint32(nodes, off), n), id), first), uint32(len(sorted)))
	}
	recs := make([]byte, 0, len(files)*viewFileSize)
	for _, f := range files {
		f.viewID = 0
		start := len(recs)
		recs = le.AppendUint32(le.AppendUint32(le.AppendUint32(le.AppendUint32(recs, f.mode), f.uid), f.gid), f.nlink)
		recs = le.AppendUint64(le.AppendUint64(le.AppendUint64(recs, uint64(f.size)), uint64(f.mtime)), f.rdev)
		recs = le.AppendUint64(le.AppendUint64(le.AppendUint64(recs, f.ino), uint64(f.dataOffset)), uint64(f.headerOffset))
		var sparse uint32
		if f.sparse {
			sparse = 1
		}
		linkOff, linkLen := str(f.linkname)
		xattrOff := uint32(len(strs))
		var nx int
		if len(f.xattrs) > 0 {
			keys := slices.Sorted(maps.Keys(f.xattrs))
			for _, k := range keys {
				lenStr(k)
				lenStr(string(f.xattrs[k]))
			}
			nx = len(keys)
		}
		namesOff := uint32(len(strs))
		for _, name := range f.names {
			lenStr(name)
		}
		recs = le.AppendUint32(le.AppendUint32(le.AppendUint32(recs, uint32(f.ordinal)), uint32(int32(f.layer))), sparse)
		recs = le.AppendUint32(le.AppendUint32(le.AppendUint32(recs, linkOff), linkLen), xattrOff)
		recs = le.AppendUint32(le.AppendUint32(le.AppendUint32(recs, uint32(nx)), namesOff), uint32(len(f.names)))
		recs = append(recs, make([]byte, viewFileSize-(len(recs)-start))...)
	}
	b := make([]byte, 0, len(viewMagic)+viewHeaderSize+len(nodes)+len(recs)+len(strs))
	b = append(b, viewMagic...)
	for _, v := range [...]uint32{uint32(layers), uint32(len(queue)), uint32(len(files)), uint32(len(strs)), 0, 0} {
		b = le.AppendUint32(b, v)
	}
	b = le.AppendUint64(le.AppendUint64(b, t.maxIno), t.nextIno)
	body := len(b)
	b = append(b, nodes...)
	b = append(b, recs...)
	b = append(b, strs...)
	le.PutUint32(b[len(viewMagic)+16:], crc32.Checksum(b[body:], castagnoli))
	return b
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// saveView writes the view of t to p, a file in a store's merged/, through
// a temp file in the store's tmp/; it is only a cache: a failure leaves no
// file, and the next start builds the tree again. It does not sync: a view
// that a crash left cut short or torn fails its checksum, and is written
// again.
func saveView(p string, t *lowerTree, layers int) {
	if os.MkdirAll(filepath.Dir(p), 0o700) != nil {
		return
	}
	f, err := os.CreateTemp(filepath.Join(filepath.Dir(filepath.Dir(p)), "tmp"), "merged-")
	if err != nil {
		return
	}
	_, err = f.Write(marshalView(t, layers))
	if f.Close() != nil || err != nil || os.Rename(f.Name(), p) != nil {
		os.Remove(f.Name())
	}
}

// readView reads the view file p. It is read whole rather than mapped: a
// store in a home directory on NFS may lose the file to a prune on another
// host while this union lives, and a mapped page would then fault.
func readView(p string, layers int) (*lowerTree, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	return loadView(b, layers)
}
