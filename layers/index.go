package layers

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Entry is one tar entry of a layer, as its index records it.
type Entry struct {
	// Name is the cleaned path relative to the layer root, without a leading
	// "./" or "/"; the root directory itself is ".".
	Name     string
	Typeflag byte
	// Mode holds the permission bits and the setuid, setgid and sticky bits
	// (as tar.Header.Mode).
	Mode     int64
	UID, GID int
	Size     int64
	ModTime  time.Time
	// Linkname is the symlink target as written, or for a hard link the
	// cleaned name of the entry it links to.
	Linkname           string
	Devmajor, Devminor int64
	// Xattrs are the extended attributes carried in PAX records.
	Xattrs map[string]string
	// HeaderOffset is where the entry's first header block starts in layer.tar,
	// or -1 when unknown (after a sparse entry); DataOffset is where its
	// contents start. Contents of a regular file that is not Sparse are the
	// Size bytes at DataOffset.
	HeaderOffset, DataOffset int64
	// Sparse entries must be read through a tar reader: started at
	// HeaderOffset, or when that is -1 at 0, skipping to the entry's position
	// in the index.
	Sparse bool
}

// Index lists a layer's entries in the order of its tar.
type Index struct {
	Entries []Entry
}

// An index file is indexMagic, the number of entries and then each entry
// (entryTo): varints, and strings as their length and bytes. A container's
// start reads the index of each of its layers: this takes less than half
// the time gob took (format 1, a gob stream, which is still read; Debian's
// base layer, 7,255 entries, in a new process: 3.1–4.0 → 1.3–2.1 ms), with
// three allocations (the entries' strings share one).
const indexMagic = "roost layer index 2\n"

// gobIndexVersion is what a format 1 index starts with.
const gobIndexVersion = 1

// WriteIndex encodes idx to w.
func WriteIndex(w io.Writer, idx *Index) error {
	bw := bufio.NewWriter(w)
	b := binary.AppendUvarint([]byte(indexMagic), uint64(len(idx.Entries)))
	for i := range idx.Entries {
		b = entryTo(b, &idx.Entries[i])
		if _, err := bw.Write(b); err != nil {
			return err
		}
		b = b[:0]
	}
	if _, err := bw.Write(b); err != nil {
		return err
	}
	return bw.Flush()
}

// entryTo appends e, encoded, to b.
func entryTo(b []byte, e *Entry) []byte {
	str := func(b []byte, s string) []byte { return append(binary.AppendUvarint(b, uint64(len(s))), s...) }
	b = str(b, e.Name)
	var flags byte
	if e.Sparse {
		flags = 1
	}
	b = append(b, e.Typeflag, flags)
	for _, v := range []int64{e.Mode, int64(e.UID), int64(e.GID), e.Size, e.ModTime.Unix(), int64(e.ModTime.Nanosecond())} {
		b = binary.AppendVarint(b, v)
	}
	b = str(b, e.Linkname)
	b = binary.AppendVarint(b, e.Devmajor)
	b = binary.AppendVarint(b, e.Devminor)
	keys := slices.Sorted(maps.Keys(e.Xattrs))
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = str(str(b, k), e.Xattrs[k])
	}
	b = binary.AppendVarint(b, e.HeaderOffset)
	return binary.AppendVarint(b, e.DataOffset)
}

// ReadIndex decodes an index written by WriteIndex.
func ReadIndex(r io.Reader) (*Index, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read layer index: %w", err)
	}
	return decodeIndex(b)
}

// ReadIndexFile reads the index at path. One in format 1 of a store's layer
// is written again in the current format, where it can be, for the next
// reader.
func ReadIndexFile(p string) (*Index, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	idx, err := decodeIndex(b)
	if err != nil {
		return nil, fmt.Errorf("%w (the index is damaged: remove the images of this layer with rmi -f and pull or import them again)", err)
	}
	if !bytes.HasPrefix(b, []byte(indexMagic)) {
		rewriteIndex(p, idx)
	}
	return idx, nil
}

// rewriteIndex replaces the index file p, layers/<hex>/index in a store,
// with idx in the current format, or leaves it as it is: readers see one or
// the other, whole. The new one is written under the store's tmp/, where
// prune removes what a crash left.
func rewriteIndex(p string, idx *Index) {
	f, err := os.CreateTemp(filepath.Join(filepath.Dir(p), "..", "..", "tmp"), "index-")
	if err != nil {
		return
	}
	err = WriteIndex(f, idx)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if f.Close() != nil || err != nil || os.Rename(f.Name(), p) != nil {
		os.Remove(f.Name())
	}
}

func decodeIndex(b []byte) (*Index, error) {
	if !bytes.HasPrefix(b, []byte(indexMagic)) {
		return readGobIndex(b)
	}
	d := indexDecoder{b: b, s: string(b), at: len(indexMagic)}
	n := d.uvarint()
	if d.err || n > uint64(len(b)) { // an entry takes more than a byte
		return nil, errors.New("decode layer index: bad entry count")
	}
	idx := &Index{Entries: make([]Entry, n)}
	for i := range idx.Entries {
		e := &idx.Entries[i]
		e.Name = d.str()
		e.Typeflag, e.Sparse = d.byte(), d.byte() == 1
		e.Mode, e.UID, e.GID, e.Size = d.varint(), int(d.varint()), int(d.varint()), d.varint()
		e.ModTime = time.Unix(d.varint(), d.varint())
		e.Linkname = d.str()
		e.Devmajor, e.Devminor = d.varint(), d.varint()
		if nx := d.uvarint(); nx > 0 && nx <= uint64(len(b)) {
			e.Xattrs = make(map[string]string, nx)
			for range nx {
				k := d.str()
				e.Xattrs[k] = d.str()
			}
		} else if nx > 0 {
			d.err = true
		}
		e.HeaderOffset, e.DataOffset = d.varint(), d.varint()
		if d.err {
			return nil, fmt.Errorf("decode layer index: entry %d is cut short or malformed", i)
		}
	}
	if d.at != len(b) {
		return nil, errors.New("decode layer index: data after the last entry")
	}
	return idx, nil
}

// indexDecoder reads the fields of entries from b; s is b as a string, for
// the entries' strings to be slices of. A field past the end, or a varint
// that overflows, sets err (and reads as zero).
type indexDecoder struct {
	b   []byte
	s   string
	at  int
	err bool
}

func (d *indexDecoder) uvarint() uint64 { return decodeVarint(d, binary.Uvarint) }
func (d *indexDecoder) varint() int64   { return decodeVarint(d, binary.Varint) }

// decodeVarint reads one field with read (binary.Uvarint or binary.Varint).
func decodeVarint[T uint64 | int64](d *indexDecoder, read func([]byte) (T, int)) T {
	v, n := read(d.b[d.at:])
	if n <= 0 {
		d.err, d.at = true, len(d.b)
		return 0
	}
	d.at += n
	return v
}

func (d *indexDecoder) byte() byte {
	if d.at >= len(d.b) {
		d.err = true
		return 0
	}
	d.at++
	return d.b[d.at-1]
}

func (d *indexDecoder) str() string {
	n := d.uvarint()
	if n > uint64(len(d.b)-d.at) {
		d.err, d.at = true, len(d.b)
		return ""
	}
	s := d.s[d.at : d.at+int(n)]
	d.at += int(n)
	return s
}

// readGobIndex decodes a format 1 index.
func readGobIndex(b []byte) (*Index, error) {
	dec := gob.NewDecoder(bytes.NewReader(b))
	var v int
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("decode layer index: %w", err)
	}
	if v != gobIndexVersion {
		return nil, fmt.Errorf("decode layer index: version %d, want %d", v, gobIndexVersion)
	}
	var idx Index
	if err := dec.Decode(&idx); err != nil {
		return nil, fmt.Errorf("decode layer index: %w", err)
	}
	return &idx, nil
}

// CleanEntryName returns the layer-relative form of a tar entry name, or an
// error when the name is absolute or climbs out of the layer root.
func CleanEntryName(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("tar entry %q is an absolute path: archive the root's contents with relative names (tar -C DIR -cf FILE .)", name)
	}
	c := path.Clean(name)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("tar entry %q escapes the root with ..", name)
	}
	return c, nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// indexTar reads a whole tar stream from r, checks every entry name and
// returns its index. It reads r to its end, past the tar's end-of-archive
// blocks, so that a caller hashing r sees every byte.
func indexTar(r io.Reader) (*Index, error) {
	cr := &countingReader{r: r}
	tr := tar.NewReader(cr)
	idx := &Index{}
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	var next int64 // where the next header starts
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			if err := checkTrailer(cr.n, next); err != nil {
				return nil, err
			}
			break
		}
		if err == io.ErrUnexpectedEOF && cr.n < 512 {
			return nil, fmt.Errorf("read tar: not a tar archive (%d bytes, less than one header)", cr.n)
		}
		if err != nil {
			return nil, tarError(err)
		}
		name, err := CleanEntryName(hdr.Name)
		if err != nil {
			return nil, err
		}
		e := Entry{
			Name:         name,
			Typeflag:     hdr.Typeflag,
			Mode:         hdr.Mode &^ int64(0o170000),
			UID:          hdr.Uid,
			GID:          hdr.Gid,
			Size:         hdr.Size,
			ModTime:      hdr.ModTime,
			Linkname:     hdr.Linkname,
			Devmajor:     hdr.Devmajor,
			Devminor:     hdr.Devminor,
			HeaderOffset: next,
			DataOffset:   cr.n,
		}
		switch hdr.Typeflag {
		case tar.TypeLink:
			target, err := CleanEntryName(hdr.Linkname)
			if err != nil {
				return nil, fmt.Errorf("hard link %q: %w", hdr.Name, err)
			}
			e.Linkname = target
			e.Size = 0
		case tar.TypeGNUSparse:
			e.Sparse = true
			e.Typeflag = tar.TypeReg
		case tar.TypeRegA:
			e.Typeflag = tar.TypeReg
		}
		for k, v := range hdr.PAXRecords {
			if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				if e.Xattrs == nil {
					e.Xattrs = map[string]string{}
				}
				e.Xattrs[x] = v
			}
			if strings.HasPrefix(k, "GNU.sparse.") {
				e.Sparse = true
			}
		}
		idx.Entries = append(idx.Entries, e)
		if e.Sparse {
			// tr.Next skips the stored fragments; reading them through tr
			// would expand the holes, which may claim terabytes. Where the
			// next header starts is then unknown.
			next = -1
			continue
		}
		if err := drain(tr, *buf); err != nil {
			return nil, tarError(err)
		}
		next = (cr.n + 511) &^ 511
	}
	if err := drain(cr, *buf); err != nil {
		return nil, tarError(err)
	}
	return idx, nil
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// drain reads r to its end in large reads (io.Discard would read 8 KiB at a
// time, and every read is also a write of the layer copy).
func drain(r io.Reader, buf []byte) error {
	for {
		_, err := r.Read(buf)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// checkTrailer fails when a tar stream that ended at offset end, whose last
// entry ended at lastEnd, lacks the zero blocks that close an archive: it was
// cut off between two entries.
func checkTrailer(end, lastEnd int64) error {
	if end == 0 {
		return errors.New("read tar: not a tar archive (it is empty)")
	}
	if lastEnd >= 0 && end-lastEnd < 512 {
		return tarError(io.ErrUnexpectedEOF)
	}
	return nil
}

func tarError(err error) error {
	switch {
	case err == io.ErrUnexpectedEOF:
		return fmt.Errorf("read tar: archive is truncated (%w)", err)
	case err == tar.ErrHeader:
		return fmt.Errorf("read tar: not a tar archive (%w)", err)
	}
	return fmt.Errorf("read tar: %w", err)
}
