package rootless

import (
	"os"
	"os/exec"
	"os/user"
	"strconv"
)

// IDMap is one line of /proc/PID/uid_map or gid_map: the ids
// ContainerID..ContainerID+Size-1 inside the namespace are HostID..HostID+Size-1
// outside it.
type IDMap struct {
	ContainerID, HostID, Size uint32
}

// Mapping is how the ids of a new user namespace map onto the caller's.
type Mapping struct {
	UIDs, GIDs []IDMap
	// Helpers is set when the maps must be written by the setuid programs
	// newuidmap and newgidmap (the caller could not write them itself).
	Helpers bool
}

// Kind names the mapping in words for messages: "full", "subid" or "single".
func (m Mapping) Kind() string {
	switch {
	case m.Helpers:
		return "subid"
	case len(m.UIDs) == 1 && m.UIDs[0].Size > 1:
		return "full"
	}
	return "single"
}

// fullRange maps every valid id onto itself; only root may write it.
var fullRange = []IDMap{{ContainerID: 0, HostID: 0, Size: 1<<32 - 1}}

// Files and programs DefaultMapping consults; tests replace them.
var (
	subuidFile = "/etc/subuid"
	subgidFile = "/etc/subgid"
	lookPath   = exec.LookPath
)

// DefaultMapping returns the mapping for the calling process (see the package
// doc for the three cases). It fails only when /etc/subuid or /etc/subgid
// exists and cannot be read or parsed.
func DefaultMapping() (Mapping, error) {
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		return Mapping{UIDs: fullRange, GIDs: fullRange}, nil
	}
	name := ""
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		name = u.Username
	}
	single := Mapping{
		UIDs: []IDMap{{ContainerID: 0, HostID: uint32(uid), Size: 1}},
		GIDs: []IDMap{{ContainerID: 0, HostID: uint32(gid), Size: 1}},
	}
	subuids, err := SubIDRanges(subuidFile, name, uid)
	if err != nil {
		return Mapping{}, err
	}
	subgids, err := SubIDRanges(subgidFile, name, uid)
	if err != nil {
		return Mapping{}, err
	}
	if len(subuids) == 0 || len(subgids) == 0 {
		return single, nil
	}
	if _, err := lookPath("newuidmap"); err != nil {
		return single, nil
	}
	if _, err := lookPath("newgidmap"); err != nil {
		return single, nil
	}
	return Mapping{
		UIDs:    withRanges(uint32(uid), subuids),
		GIDs:    withRanges(uint32(gid), subgids),
		Helpers: true,
	}, nil
}

// withRanges maps 0 to id and 1.. to the ranges in order, stopping before the
// namespace's ids would overflow.
func withRanges(id uint32, ranges []SubIDRange) []IDMap {
	m := []IDMap{{ContainerID: 0, HostID: id, Size: 1}}
	next := uint64(1)
	for _, r := range ranges {
		size := uint64(r.Count)
		if next+size > 1<<32-1 {
			size = 1<<32 - 1 - next
		}
		if size == 0 {
			break
		}
		m = append(m, IDMap{ContainerID: uint32(next), HostID: r.Start, Size: uint32(size)})
		next += size
	}
	return m
}

// helperArgs formats maps as the arguments of newuidmap/newgidmap after the pid.
func helperArgs(maps []IDMap) []string {
	args := make([]string, 0, 3*len(maps))
	for _, m := range maps {
		args = append(args, strconv.FormatUint(uint64(m.ContainerID), 10),
			strconv.FormatUint(uint64(m.HostID), 10), strconv.FormatUint(uint64(m.Size), 10))
	}
	return args
}
