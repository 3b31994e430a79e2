package layers

import (
	"errors"
	"fmt"
	"io"
	"strconv"

	units "github.com/docker/go-units"
	"golang.org/x/sys/unix"
)

// ErrNoSpace is returned (wrapped) when a layer would leave less room free
// on the store's filesystem than the store keeps (see Reserve).
var ErrNoSpace = errors.New("not enough free space")

// Reserve is the room a store keeps free on its filesystem. A layer is
// refused while it streams in, before the disk fills, once the free space
// drops below it: a decompression bomb (a small gzip that expands to
// gigabytes of zeros) or a layer too large for the disk ends with ErrNoSpace
// and leaves the store as it was. The zero Reserve is the default: 5% of
// the filesystem's size, at most 1 GiB.
type Reserve struct {
	Bytes   int64   // at least this many bytes free, when set
	Percent float64 // or this share of the filesystem's size, when set
	Off     bool    // no check: write until the filesystem is full
}

// defaultReserve caps the default share of a large filesystem.
const defaultReserve = 1 << 30

// ParseReserve reads a reserve as the config key min_free_space gives it: a
// size ("512MiB", "2g"), a share of the filesystem ("5%"), "0" for none, or
// "" for the default.
func ParseReserve(s string) (Reserve, error) {
	switch {
	case s == "":
		return Reserve{}, nil
	case s == "0":
		return Reserve{Off: true}, nil
	case s[len(s)-1] == '%':
		p, err := strconv.ParseFloat(s[:len(s)-1], 64)
		if err != nil || p <= 0 || p >= 100 {
			return Reserve{}, fmt.Errorf("%q: want a size such as 1GiB or a share such as 5%%", s)
		}
		return Reserve{Percent: p}, nil
	}
	n, err := units.RAMInBytes(s)
	if err != nil || n < 0 {
		return Reserve{}, fmt.Errorf("%q: want a size such as 1GiB or a share such as 5%%", s)
	}
	if n == 0 {
		return Reserve{Off: true}, nil
	}
	return Reserve{Bytes: n}, nil
}

// of is the reserve in bytes on a filesystem of size total.
func (r Reserve) of(total int64) int64 {
	switch {
	case r.Off:
		return 0
	case r.Bytes > 0:
		return r.Bytes
	case r.Percent > 0:
		return int64(float64(total) * r.Percent / 100)
	}
	return min(total/20, defaultReserve)
}

// spaceGuard passes writes through to w and fails them with ErrNoSpace
// before they would leave the filesystem at dir with less than its reserve
// free. It looks at the free space again once half of what was above the
// reserve at the last look is written: rarely on a roomy disk, at every
// write close to the reserve.
type spaceGuard struct {
	w       io.Writer
	dir     string
	reserve Reserve
	budget  int64 // bytes that may be written before the next look
	err     error // the ErrNoSpace it failed with
}

func (g *spaceGuard) Write(p []byte) (int, error) {
	if !g.reserve.Off {
		if g.budget -= int64(len(p)); g.budget < 0 {
			var above int64
			if above, g.err = checkFree(g.dir, g.reserve, int64(len(p))); g.err != nil {
				return 0, g.err
			}
			g.budget = above / 2
		}
	}
	return g.w.Write(p)
}

// checkFree fails with ErrNoSpace when writing n more bytes would leave
// the filesystem at dir with less than the reserve free; it returns how much
// would still be free above the reserve.
func checkFree(dir string, r Reserve, n int64) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, nil // cannot tell: the write itself will say
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	want := r.of(int64(st.Blocks) * int64(st.Bsize))
	if free-n < want {
		return 0, fmt.Errorf("%w: the layer would leave less than the %s the store keeps free on its filesystem (%s free; config key min_free_space): a decompression bomb, or free some space (roost image prune)",
			ErrNoSpace, units.BytesSize(float64(want)), units.BytesSize(float64(free)))
	}
	return free - n - want, nil
}
