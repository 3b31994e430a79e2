package fuse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// A sparse entry of a layer tar stores only its data fragments, one after
// the other; its sparse map says where each belongs in the file. The layer
// index marks such entries but keeps no map (archive/tar does not expose
// it), so the union reads the map from the entry's headers once, on first
// use, and then serves reads with pread at each fragment's offset in the tar,
// like those of any other file. The formats are the ones archive/tar reads:
// GNU PAX sparse 0.0, 0.1 and 1.0, and the old GNU 'S' entries.

// sparseFrag is one data fragment: Size bytes at Off in the file, stored at
// TarOff in the layer tar.
type sparseFrag struct{ off, size, tarOff int64 }

// sparseData is the loaded map of a sparse lower file.
type sparseData struct {
	frags []sparseFrag // by offset
	err   error
}

var errSparseFormat = errors.New("malformed sparse tar entry")

// readAt fills b with the file's bytes at off: fragments from the tar,
// zeros elsewhere. It returns how many bytes of b lie within size.
func (s *sparseData) readAt(tarFile *os.File, b []byte, off, size int64) (int, error) {
	if off >= size {
		return 0, nil
	}
	b = b[:min(int64(len(b)), size-off)]
	clear(b)
	end := off + int64(len(b))
	i := sort.Search(len(s.frags), func(i int) bool { return s.frags[i].off+s.frags[i].size > off })
	for ; i < len(s.frags) && s.frags[i].off < end; i++ {
		f := s.frags[i]
		from, to := max(off, f.off), min(end, f.off+f.size)
		if _, err := tarFile.ReadAt(b[from-off:to-off], f.tarOff+from-f.off); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

// allocated is the number of bytes the fragments hold.
func (s *sparseData) allocated() int64 {
	var n int64
	for _, f := range s.frags {
		n += f.size
	}
	return n
}

// seekData returns the first offset at or after off inside a fragment, or
// false when there is none before size.
func (s *sparseData) seekData(off int64) (int64, bool) {
	i := sort.Search(len(s.frags), func(i int) bool { return s.frags[i].off+s.frags[i].size > off })
	for ; i < len(s.frags); i++ {
		if s.frags[i].size > 0 {
			return max(off, s.frags[i].off), true
		}
	}
	return 0, false
}

// seekHole returns the first offset at or after off that lies in no
// fragment (the file's size counts as a hole).
func (s *sparseData) seekHole(off, size int64) int64 {
	i := sort.Search(len(s.frags), func(i int) bool { return s.frags[i].off+s.frags[i].size > off })
	for ; i < len(s.frags) && s.frags[i].off <= off; i++ {
		off = s.frags[i].off + s.frags[i].size
	}
	return min(off, size)
}

// tarBlocks reads a tar sequentially by raw 512-byte blocks.
type tarBlocks struct {
	f   io.ReaderAt
	pos int64
}

func (r *tarBlocks) block() ([]byte, error) {
	b := make([]byte, 512)
	if _, err := r.f.ReadAt(b, r.pos); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	r.pos += 512
	return b, nil
}

func (r *tarBlocks) data(n int64) ([]byte, error) {
	if n < 0 || n > 1<<24 {
		return nil, errSparseFormat
	}
	b := make([]byte, n)
	if _, err := r.f.ReadAt(b, r.pos); err != nil {
		return nil, err
	}
	r.pos += (n + 511) &^ 511
	return b, nil
}

// tarNumber parses a numeric header field: octal, or base-256 when the top
// bit of its first byte is set.
func tarNumber(b []byte) (int64, error) {
	if len(b) > 0 && b[0]&0x80 != 0 {
		var n int64
		for i, c := range b {
			if i == 0 {
				c &= 0x7f
			}
			if n>>55 != 0 {
				return 0, errSparseFormat
			}
			n = n<<8 | int64(c)
		}
		return n, nil
	}
	s := strings.Trim(string(b), " \x00")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 8, 64)
	if err != nil {
		return 0, errSparseFormat
	}
	return n, nil
}

// paxRecords parses the records of a PAX extended header. The repeated
// records of sparse format 0.0 are joined into one GNU.sparse.map, as
// archive/tar does.
func paxRecords(b []byte) (map[string]string, error) {
	recs := map[string]string{}
	var sparse0 []string
	for len(b) > 0 {
		sp := bytes.IndexByte(b, ' ')
		if sp <= 0 {
			return nil, errSparseFormat
		}
		n, err := strconv.Atoi(string(b[:sp]))
		if err != nil || n <= sp || n > len(b) || b[n-1] != '\n' {
			return nil, errSparseFormat
		}
		kv := string(b[sp+1 : n-1])
		b = b[n:]
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, errSparseFormat
		}
		if k == "GNU.sparse.offset" || k == "GNU.sparse.numbytes" {
			sparse0 = append(sparse0, v)
			continue
		}
		recs[k] = v
	}
	if len(sparse0) > 0 {
		recs["GNU.sparse.map"] = strings.Join(sparse0, ",")
	}
	return recs, nil
}

// loadSparse reads the sparse map of the ordinal-th entry of a layer tar,
// whose headers start at headerOffset (-1 when the index does not know:
// then the tar is walked from its start).
func loadSparse(tarFile io.ReaderAt, headerOffset int64, ordinal int) (*sparseData, error) {
	r := &tarBlocks{f: tarFile}
	target := ordinal
	if headerOffset >= 0 {
		r.pos, target = headerOffset, 0
	}
	for entry := 0; ; {
		var pax map[string]string
		var hdr []byte
		for hdr == nil { // the prefix headers, then the entry's own
			b, err := r.block()
			if err != nil {
				return nil, err
			}
			if bytes.Equal(b, make([]byte, 512)) {
				return nil, fmt.Errorf("%w: entry %d not found", errSparseFormat, ordinal)
			}
			size, err := tarNumber(b[124:136])
			if err != nil {
				return nil, err
			}
			switch b[156] {
			case 'x':
				d, err := r.data(size)
				if err != nil {
					return nil, err
				}
				if pax, err = paxRecords(d); err != nil {
					return nil, err
				}
			case 'L', 'K':
				r.pos += (size + 511) &^ 511
			default:
				hdr = b
			}
		}
		stored, err := tarNumber(hdr[124:136])
		if err != nil {
			return nil, err
		}
		if s, ok := pax["size"]; ok {
			if stored, err = strconv.ParseInt(s, 10, 64); err != nil {
				return nil, errSparseFormat
			}
		}
		if entry < target {
			if hdr[156] == 'S' && hdr[482] != 0 {
				for { // extension blocks of old GNU sparse headers
					b, err := r.block()
					if err != nil {
						return nil, err
					}
					if b[504] == 0 {
						break
					}
				}
			}
			switch hdr[156] {
			case '1', '2', '3', '4', '5', '6':
				stored = 0 // header-only types: archive/tar skips no data
			}
			r.pos += (stored + 511) &^ 511
			entry++
			continue
		}
		return parseSparse(r, hdr, pax)
	}
}

// parseSparse reads the map of the entry whose header block is hdr; r is
// just past that block.
func parseSparse(r *tarBlocks, hdr []byte, pax map[string]string) (*sparseData, error) {
	var nums []int64
	switch {
	case hdr[156] == 'S':
		parse := func(b []byte, n int) error {
			for i := 0; i < n; i++ {
				e := b[i*24 : i*24+24]
				if e[0] == 0 {
					return nil
				}
				off, err1 := tarNumber(e[:12])
				size, err2 := tarNumber(e[12:])
				if err1 != nil || err2 != nil {
					return errSparseFormat
				}
				nums = append(nums, off, size)
			}
			return nil
		}
		if err := parse(hdr[386:482], 4); err != nil {
			return nil, err
		}
		for ext := hdr[482] != 0; ext; {
			b, err := r.block()
			if err != nil {
				return nil, err
			}
			if err := parse(b[:504], 21); err != nil {
				return nil, err
			}
			ext = b[504] != 0
		}
	case pax["GNU.sparse.major"] == "1" && pax["GNU.sparse.minor"] == "0":
		var text []byte
		want := -1
		for {
			b, err := r.block()
			if err != nil {
				return nil, err
			}
			text = append(text, b...)
			lines := bytes.Count(text, []byte("\n"))
			if want < 0 && lines > 0 {
				n, err := strconv.Atoi(string(text[:bytes.IndexByte(text, '\n')]))
				if err != nil || n < 0 || n > 1<<24 {
					return nil, errSparseFormat
				}
				want = 1 + 2*n
			}
			if want >= 0 && lines >= want {
				break
			}
		}
		fields := strings.Split(string(text), "\n")[1:want]
		for _, f := range fields {
			n, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				return nil, errSparseFormat
			}
			nums = append(nums, n)
		}
	case pax["GNU.sparse.map"] != "" || pax["GNU.sparse.numblocks"] == "0":
		if m := pax["GNU.sparse.map"]; m != "" {
			for _, f := range strings.Split(m, ",") {
				n, err := strconv.ParseInt(f, 10, 64)
				if err != nil {
					return nil, errSparseFormat
				}
				nums = append(nums, n)
			}
		}
	default:
		return nil, fmt.Errorf("%w: no sparse map", errSparseFormat)
	}
	if len(nums)%2 != 0 {
		return nil, errSparseFormat
	}
	s := &sparseData{}
	pos := r.pos
	for i := 0; i < len(nums); i += 2 {
		off, size := nums[i], nums[i+1]
		if off < 0 || size < 0 || len(s.frags) > 0 && off < s.frags[len(s.frags)-1].off+s.frags[len(s.frags)-1].size {
			return nil, errSparseFormat
		}
		s.frags = append(s.frags, sparseFrag{off: off, size: size, tarOff: pos})
		pos += size
	}
	return s, nil
}
