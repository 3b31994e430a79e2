//go:build linux

package fuse

import (
	"os"
	"strconv"
	"strings"
)

// idRange is one line of /proc/self/uid_map or gid_map, inside view.
type idRange struct{ first, count uint64 }

// idMapper reports ids the current user namespace has no mapping for as 0,
// so that with a single mapping (user -> 0) files of other owners show as
// root's rather than as the overflow id, as DESIGN.md asks.
type idMapper struct {
	uids, gids []idRange
}

func readIDRanges(file string) []idRange {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil // not Linux /proc: show ids as they are
	}
	var out []idRange
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		first, err1 := strconv.ParseUint(f[0], 10, 32)
		count, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 == nil && err2 == nil {
			out = append(out, idRange{first, count})
		}
	}
	return out
}

func newIDMapper() *idMapper {
	return &idMapper{uids: readIDRanges("/proc/self/uid_map"), gids: readIDRanges("/proc/self/gid_map")}
}

func shown(ranges []idRange, id uint32) uint32 {
	if ranges == nil {
		return id
	}
	for _, r := range ranges {
		if uint64(id) >= r.first && uint64(id)-r.first < r.count {
			return id
		}
	}
	return 0
}

func (m *idMapper) uid(id uint32) uint32 { return shown(m.uids, id) }
func (m *idMapper) gid(id uint32) uint32 { return shown(m.gids, id) }
