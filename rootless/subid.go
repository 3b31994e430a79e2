package rootless

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// SubIDRange is one range of subordinate ids: Start, Start+1, ..., Start+Count-1.
type SubIDRange struct {
	Start, Count uint32
}

// ParseSubIDs reads a file in the format of /etc/subuid and /etc/subgid
// ("owner:start:count" per line) and returns, in file order, the ranges whose
// owner is name or the decimal form of uid. An empty name matches by uid only;
// a negative uid matches by name only. Blank lines and lines starting with '#'
// are skipped. A malformed line, a zero count, or a range that runs past the
// largest 32-bit id is an error that names the line.
func ParseSubIDs(r io.Reader, name string, uid int) ([]SubIDRange, error) {
	uidStr := ""
	if uid >= 0 {
		uidStr = strconv.Itoa(uid)
	}
	var ranges []SubIDRange
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Split(line, ":")
		if len(fields) != 3 {
			return nil, fmt.Errorf("parse line %d %q: want owner:start:count", lineNo, line)
		}
		owner := fields[0]
		if owner == "" {
			return nil, fmt.Errorf("parse line %d %q: empty owner", lineNo, line)
		}
		start, err := strconv.ParseUint(fields[1], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("parse line %d %q: start: %w", lineNo, line, err)
		}
		count, err := strconv.ParseUint(fields[2], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("parse line %d %q: count: %w", lineNo, line, err)
		}
		if count == 0 {
			return nil, fmt.Errorf("parse line %d %q: count is zero", lineNo, line)
		}
		if start+count-1 > 1<<32-2 {
			// 4294967295 is the invalid id (-1) and can never be mapped.
			return nil, fmt.Errorf("parse line %d %q: range ends past id 4294967294", lineNo, line)
		}
		if (name != "" && owner == name) || (uidStr != "" && owner == uidStr) {
			ranges = append(ranges, SubIDRange{Start: uint32(start), Count: uint32(count)})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read subordinate ids: %w", err)
	}
	return ranges, nil
}

// SubIDRanges returns the ranges file (such as "/etc/subuid") grants to the
// user with this name or uid. A missing file yields no ranges and no error.
func SubIDRanges(file, name string, uid int) ([]SubIDRange, error) {
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read subordinate ids: %w", err)
	}
	defer f.Close()
	ranges, err := ParseSubIDs(f, name, uid)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	return ranges, nil
}
