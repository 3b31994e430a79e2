//go:build linux

package container

import (
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

// rssFile reads this process's resident pages of files, in kB.
func rssFile(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "RssFile:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

func TestSettleDropsExecutablePages(t *testing.T) {
	ranges := cleanExecutableMappings()
	if len(ranges) == 0 {
		t.Fatal("found no read-only mapping of the test binary")
	}
	for _, r := range ranges {
		if r[1] <= r[0] {
			t.Fatalf("bad range %#x-%#x", r[0], r[1])
		}
	}
	before := rssFile(t)
	settle()
	after := rssFile(t)
	t.Logf("RssFile %d kB before, %d kB after", before, after)
	if after >= before {
		t.Errorf("RssFile %d kB after settle, %d kB before: nothing dropped", after, before)
	}
	// The code still runs: pages come back on demand.
	if _, err := compileSeccomp("", map[int]bool{}, true, false); err != nil {
		t.Fatal(err)
	}
}

// TestSettleTurnsCollectionOn: the agent starts with garbage collection off
// but for a heap limit (runAgent); settle turns it on with a small goal and
// no limit.
func TestSettleTurnsCollectionOn(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(startHeapLimit))
	settle()
	if got := debug.SetGCPercent(20); got != 20 {
		t.Errorf("GC percent after settle: %d, want 20", got)
	}
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("memory limit after settle: %d, want none", got)
	}
}
