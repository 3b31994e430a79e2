//go:build linux

package container

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A wedged agent. The agent serves the container's union and also makes
// calls on it (preload, the user database, the chown emulation). Were it to
// die in the middle of such a call (a panic, SIGKILL), the thread making the
// call waits for an answer that no one will give, in a wait no signal ends:
// the process cannot end while that thread waits, and holds the lock and the
// union's connection, and every command that waits for the agent would
// wait for ever. So agent.lock records the agent's pid and the union's
// FUSE connection ("PID CONN START"), and a command that finds the lock held by
// such a process aborts that connection (/sys/fs/fuse/connections/CONN/abort,
// which belongs to the user who mounted it, the agent being its root): the
// call fails, the thread ends, and the lock is free.

// writeLockInfo writes the agent's pid, the FUSE connection of its union,
// mounted at rootfs, and its start time into the lock file ("PID CONN
// START").
func writeLockInfo(lock *os.File, rootfs string) {
	if conn, ok := fuseConnection(rootfs); ok {
		fmt.Fprintf(lock, "%d %d %d\n", os.Getpid(), conn, startTime(os.Getpid()))
	}
}

// readLockInfo reads what writeLockInfo wrote for the container in dir
// (pid 0 where there is nothing; start 0 where an older agent wrote it).
func readLockInfo(dir string) (pid int, conn uint32, start uint64) {
	b, err := os.ReadFile(filepath.Join(dir, "agent.lock"))
	if err != nil {
		return 0, 0, 0
	}
	if n, _ := fmt.Sscan(string(b), &pid, &conn, &start); n < 2 || pid <= 0 {
		return 0, 0, 0
	}
	return pid, conn, start
}

// startTime is when process pid started, in clock ticks since boot (field
// 22 of /proc/PID/stat); 0 where there is no such process, or it has ended.
func startTime(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// pid (comm) STATE ...: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || f[0] == "Z" { // a zombie has ended
		return 0
	}
	n, _ := strconv.ParseUint(f[19], 10, 64)
	return n
}

// fuseConnection is the connection number of the FUSE mount at mountpoint:
// its device's minor number (major 0). AT_STATX_DONT_SYNC takes the device
// from the superblock without a call on the union.
func fuseConnection(mountpoint string) (uint32, bool) {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, mountpoint, unix.AT_STATX_DONT_SYNC, unix.STATX_TYPE, &st); err != nil || st.Dev_major != 0 {
		return 0, false
	}
	return st.Dev_minor, true
}

// unwedge aborts the union's connection of the container in dir if its
// lock is held by a dead agent (see above), or by another process while the
// agent is gone: a child of the agent that was on its way to exec the
// command (container/direct_linux.go) has the agent's descriptors, the lock
// and the union's connection among them, until the exec is done, and waits
// for ever where the agent died while the exec read the command from the
// union. It then waits up to timeout for the lock to go, and reports
// whether it aborted.
func unwedge(dir string, timeout time.Duration) bool {
	pid, conn, start := readLockInfo(dir)
	if pid == 0 || !dying(pid) && (start == 0 || startTime(pid) == start) {
		return false
	}
	abort := fmt.Sprintf("/sys/fs/fuse/connections/%d/abort", conn)
	if err := os.WriteFile(abort, []byte("1"), 0); err != nil {
		return false
	}
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if !lockHeld(dir) {
			break
		}
	}
	return true
}

// dying reports whether process pid is stuck on its way out: one of its
// threads has SIGKILL pending (as each has once the process exits or is
// killed) and waits uninterruptibly.
func dying(pid int) bool {
	// A quick look first: a wedged process's leader is a zombie, or the
	// thread that waits.
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) STATE ...: comm may hold spaces and parentheses.
	if i := bytes.LastIndexByte(b, ')'); i < 0 || i+2 >= len(b) || (b[i+2] != 'Z' && b[i+2] != 'D') {
		return false
	}
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/status")
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		var state string
		var pending uint64
		for _, line := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(line, ":")
			v = strings.TrimSpace(v)
			switch k {
			case "State":
				state = v
			case "SigPnd", "ShdPnd":
				n, _ := strconv.ParseUint(v, 16, 64)
				pending |= n
			}
		}
		if strings.HasPrefix(state, "D") && pending&(1<<(unix.SIGKILL-1)) != 0 {
			return true
		}
	}
	return false
}

// agentPid is the pid of the agent that holds the lock of the container in
// dir, as the lock file records it, or 0: where the lock is free, or that
// process is not the container's agent (its command line names dir).
func agentPid(dir string) int {
	if !lockHeld(dir) {
		return 0
	}
	pid, _, _ := readLockInfo(dir)
	if pid == 0 {
		return 0
	}
	cmd, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || !bytes.Contains(cmd, []byte(dir)) {
		return 0
	}
	return pid
}

// lockHeld reports whether anything holds the container's lock.
func lockHeld(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "agent.lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	return unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB) != nil
}
