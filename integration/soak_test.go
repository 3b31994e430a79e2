package integration

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fuseConnections counts this user's FUSE connections: the directories of
// /sys/fs/fuse/connections it owns (a mount made in any namespace has one).
func fuseConnections(t *testing.T) int {
	t.Helper()
	const dir = "/sys/fs/fuse/connections"
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("%s: %v (mount it as root: mount -t fusectl none %s)", dir, err, dir)
	}
	n := 0
	for _, d := range ents {
		fi, err := d.Info()
		if err == nil && int(fi.Sys().(*syscall.Stat_t).Uid) == os.Getuid() {
			n++
		}
	}
	return n
}

// openFDs counts the open files of process pid.
func openFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("open files of %d: %v", pid, err)
	}
	return len(ents)
}

// settle polls get for up to 10 seconds until it is at most want, and
// returns its last value: what a run leaves may take a moment to go.
func settle(get func() int, want int) int {
	n := get()
	for deadline := time.Now().Add(10 * time.Second); n > want && time.Now().Before(deadline); n = get() {
		time.Sleep(50 * time.Millisecond)
	}
	return n
}

// TestSoak: 100 sequential run --rm and 50 exec into one container leave no
// more processes, FUSE connections or open files of the agent than before
// (bench/soak/run does 1,000 and 200 and records the figures). It does not
// run in parallel with other tests: it counts the user's FUSE connections.
func TestSoak(t *testing.T) {
	e := newRoost(t)
	img := runImage(t, e)
	mine := func() int {
		n := 0
		for _, p := range roostProcesses(t) {
			if strings.Contains(p, e.dir) {
				n++
			}
		}
		return n
	}
	id := strings.TrimSpace(e.ok("run", "-d", "--name", "long", img, "sleep", "3600"))
	waitFor(t, func() bool { return e.run("exec", "long", "true").code == 0 })
	agent := e.agentPid(id)
	procs, conns, fds := mine(), fuseConnections(t), openFDs(t, agent)
	if procs == 0 || conns == 0 {
		t.Fatalf("a running container shows %d processes and %d FUSE connections", procs, conns)
	}

	for i := 0; i < 100; i++ {
		e.ok("run", "--rm", img, "true")
	}
	if n := settle(mine, procs); n > procs {
		t.Errorf("after 100 run --rm: %d roost processes, %d before: %v", n, procs, roostProcesses(t))
	}
	if n := settle(func() int { return fuseConnections(t) }, conns); n > conns {
		t.Errorf("after 100 run --rm: %d FUSE connections, %d before", n, conns)
	}

	for i := 0; i < 50; i++ {
		if out := e.ok("exec", "long", "echo", "hi"); out != "hi\n" {
			t.Fatalf("exec %d: %q", i, out)
		}
	}
	if n := settle(func() int { return openFDs(t, agent) }, fds); n > fds {
		t.Errorf("after 50 exec: the agent has %d open files, %d before", n, fds)
	}
	if n := settle(mine, procs); n > procs {
		t.Errorf("after 50 exec: %d roost processes, %d before", n, procs)
	}
	e.ok("rm", "-f", "long")
	if n := settle(mine, 0); n > 0 {
		t.Errorf("after rm -f: %d roost processes left", n)
	}
}
