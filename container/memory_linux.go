//go:build linux

package container

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// startHeapLimit is the heap size at which the agent collects garbage
// before settle (see runAgent).
const startHeapLimit = 64 << 20

// settle turns the agent's garbage collection on (a small heap goal: an
// agent's heap is small and lives long) and returns what the agent's start
// used: the heap's free pages go back to the kernel, and the pages of
// roost's executable that start-up touched (package initialisation, the
// union's mount, the network's set-up: most of an idle agent's resident
// set) leave its page tables. Those stay in the page cache, shared with
// every other roost process, and come back on a minor fault where the agent
// runs that code again; unmapped, the kernel reclaims them sooner than
// mapped ones when memory runs short.
func settle() {
	debug.SetGCPercent(20)
	debug.SetMemoryLimit(math.MaxInt64)
	debug.FreeOSMemory()
	for _, r := range cleanExecutableMappings() {
		unix.Syscall(unix.SYS_MADVISE, r[0], r[1]-r[0], unix.MADV_DONTNEED)
	}
}

// cleanExecutableMappings returns the address ranges where this process maps
// its own executable read-only and holds no private copy of a page: there,
// dropping a page loses nothing, as the file has the same bytes.
func cleanExecutableMappings() [][2]uintptr {
	var exe syscall.Stat_t
	if err := syscall.Stat("/proc/self/exe", &exe); err != nil {
		return nil
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return nil
	}
	defer f.Close()
	dev := fmtDev(uint64(exe.Dev))
	var out [][2]uintptr
	var cur [2]uintptr
	ours := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 5 && strings.Contains(fields[0], "-") && len(fields[1]) == 4 {
			// A mapping's first line: range perms offset dev inode [path].
			ours = false
			start, end, ok := strings.Cut(fields[0], "-")
			lo, err1 := strconv.ParseUint(start, 16, 64)
			hi, err2 := strconv.ParseUint(end, 16, 64)
			ino, err3 := strconv.ParseUint(fields[4], 10, 64)
			if ok && err1 == nil && err2 == nil && err3 == nil && ino == exe.Ino && fields[3] == dev && !strings.Contains(fields[1], "w") {
				cur, ours = [2]uintptr{uintptr(lo), uintptr(hi)}, true
			}
			continue
		}
		// Anonymous pages in a read-only mapping of the file would be
		// private copies: leave such a mapping alone.
		if ours && len(fields) >= 2 && fields[0] == "Anonymous:" {
			if fields[1] == "0" {
				out = append(out, cur)
			}
			ours = false
		}
	}
	return out
}

// fmtDev writes a device number as /proc/PID/maps does (major:minor in hex).
func fmtDev(d uint64) string {
	return fmt.Sprintf("%02x:%02x", unix.Major(d), unix.Minor(d))
}
