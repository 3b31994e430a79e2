//go:build linux

package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Resources are a container's limits (run's --memory, --cpus, --pids-limit).
type Resources struct {
	Memory    int64   `json:",omitempty"` // bytes; 0: none
	NanoCPUs  int64   `json:",omitempty"` // CPUs × 1e9; 0: none
	PidsLimit int64   `json:",omitempty"` // 0: none
	CPUs      float64 `json:"-"`
}

// Empty reports whether no limit is set.
func (r Resources) Empty() bool { return r.Memory == 0 && r.NanoCPUs == 0 && r.PidsLimit == 0 }

// cgroupParent finds the cgroup v2 directory under which roost may make one
// cgroup per container: $ROOST_CGROUP, or the caller's own cgroup when it is
// writable and delegates the controllers (a systemd user session with
// Delegate=yes, or a subtree an administrator gave the user). It returns ""
// when there is none: then there are no limits and pause uses signals.
func cgroupParent() string {
	isV2 := func(p string) bool {
		var st unix.Statfs_t
		return unix.Statfs(p, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
	}
	if p := os.Getenv("ROOST_CGROUP"); p != "" {
		// Any cgroup v2 directory, also the "unified" one of a hybrid
		// layout, where the freezer works without controllers.
		if !filepath.IsAbs(p) {
			p = filepath.Join("/sys/fs/cgroup", p)
		}
		if isV2(p) {
			return p
		}
		return ""
	}
	if !isV2("/sys/fs/cgroup") {
		return ""
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if rel, ok := strings.CutPrefix(line, "0::"); ok {
			dir := filepath.Join("/sys/fs/cgroup", rel)
			if unix.Access(filepath.Join(dir, "cgroup.subtree_control"), unix.W_OK) == nil &&
				unix.Access(filepath.Join(dir, "cgroup.procs"), unix.W_OK) == nil {
				return dir
			}
		}
	}
	return ""
}

// CgroupsAvailable reports whether containers can get cgroup v2 limits here.
func CgroupsAvailable() bool { return cgroupParent() != "" }

// CgroupStats reads the usage of container id's cgroup, when it has one:
// memory in bytes, CPU time in microseconds, and the number of pids.
func CgroupStats(id string) (mem, cpuUsec, pids uint64, ok bool) {
	parent := cgroupParent()
	if parent == "" {
		return 0, 0, 0, false
	}
	dir := filepath.Join(parent, "roost-"+id[:12])
	num := func(file string) (uint64, bool) {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			return 0, false
		}
		n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		return n, err == nil
	}
	var okMem, okPids bool
	mem, okMem = num("memory.current")
	pids, okPids = num("pids.current")
	if b, err := os.ReadFile(filepath.Join(dir, "cpu.stat")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, found := strings.CutPrefix(line, "usage_usec "); found {
				cpuUsec, _ = strconv.ParseUint(v, 10, 64)
			}
		}
	}
	return mem, cpuUsec, pids, okMem && okPids
}

// cgroup is one container's cgroup.
type cgroup struct {
	dir  string
	pids int64
}

// newCgroup makes the container's cgroup under parent, with the controllers
// its limits need, and writes the limits.
func newCgroup(parent, id string, r Resources) (*cgroup, error) {
	want := []string{"+pids", "+memory", "+cpu"}
	ctrl, _ := os.ReadFile(filepath.Join(parent, "cgroup.controllers"))
	var enable []string
	for _, c := range want {
		if strings.Contains(" "+string(ctrl)+" ", " "+c[1:]+" ") || strings.Contains(string(ctrl), c[1:]) {
			enable = append(enable, c)
		}
	}
	// Best effort: where the parent has processes of its own the kernel
	// refuses, and the controllers must have been enabled already.
	os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte(strings.Join(enable, " ")), 0)
	dir := filepath.Join(parent, "roost-"+id[:12])
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	cg := &cgroup{dir: dir}
	set := func(file, value string) error {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0); err != nil {
			return fmt.Errorf("set %s in cgroup %s: %w (is the controller delegated? see roost info)", file, dir, err)
		}
		return nil
	}
	if r.Memory > 0 {
		if err := set("memory.max", strconv.FormatInt(r.Memory, 10)); err != nil {
			cg.remove()
			return nil, err
		}
		set("memory.swap.max", "0")
	}
	if r.NanoCPUs > 0 {
		const period = 100000
		if err := set("cpu.max", fmt.Sprintf("%d %d", r.NanoCPUs*period/1e9, period)); err != nil {
			cg.remove()
			return nil, err
		}
	}
	cg.pids = r.PidsLimit
	return cg, nil
}

// limitPids applies the pids limit. It waits until the container's command
// runs: roost's init is a Go program whose own threads count as pids.
func (cg *cgroup) limitPids() error {
	if cg.pids <= 0 {
		return nil
	}
	if err := os.WriteFile(filepath.Join(cg.dir, "pids.max"), []byte(strconv.FormatInt(cg.pids, 10)), 0); err != nil {
		return fmt.Errorf("set pids.max in cgroup %s: %w (is the pids controller delegated? see roost info)", cg.dir, err)
	}
	return nil
}

// open returns a descriptor of the cgroup directory, for CLONE_INTO_CGROUP.
func (cg *cgroup) open() (*os.File, error) {
	return os.OpenFile(cg.dir, unix.O_DIRECTORY|os.O_RDONLY, 0)
}

// freeze freezes or thaws the cgroup and waits until the kernel says so.
func (cg *cgroup) freeze(on bool) error {
	v := "0"
	if on {
		v = "1"
	}
	if err := os.WriteFile(filepath.Join(cg.dir, "cgroup.freeze"), []byte(v), 0); err != nil {
		return fmt.Errorf("freeze cgroup: %w", err)
	}
	for i := 0; i < 200; i++ {
		b, _ := os.ReadFile(filepath.Join(cg.dir, "cgroup.events"))
		if strings.Contains(string(b), "frozen "+v) {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return errors.New("freeze cgroup: the kernel did not confirm within 1s")
}

// remove deletes the cgroup once it is empty.
func (cg *cgroup) remove() {
	for i := 0; i < 50; i++ {
		if err := os.Remove(cg.dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
