//go:build linux

package rootless

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Check is one thing the host allows or not, with a hint when it does not.
type Check struct {
	Name   string
	OK     bool
	Detail string
	// Hint says what to do when OK is false (or, for warnings, when Warn is set).
	Hint string
	// Warn marks a check that works but is not advised.
	Warn bool
}

// Probe inspects what this host allows an unprivileged user to do, for the
// storage root at root.
func Probe(root string) []Check {
	return []Check{
		kernelCheck(),
		usernsCheck(),
		subIDCheck("/etc/subuid", "subuid"),
		subIDCheck("/etc/subgid", "subgid"),
		helperCheck("newuidmap"),
		helperCheck("newgidmap"),
		deviceCheck("/dev/fuse", "chmod 0666 /dev/fuse (as root), or install fuse3"),
		deviceCheck("/dev/net/tun", "chmod 0666 /dev/net/tun (as root); without it containers get --network host or none only"),
		pingCheck(),
		cgroupCheck(),
		storageCheck(root),
	}
}

func kernelCheck() Check {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return Check{Name: "kernel", Detail: err.Error()}
	}
	return Check{Name: "kernel", OK: true, Detail: unix.ByteSliceToString(u.Release[:])}
}

func readInt(p string) (int, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

func usernsCheck() Check {
	c := Check{Name: "user namespaces"}
	if n, err := readInt("/proc/sys/user/max_user_namespaces"); err == nil && n == 0 {
		c.Detail = "user.max_user_namespaces is 0"
		c.Hint = "ask an administrator to set sysctl user.max_user_namespaces=15000"
		return c
	}
	if n, err := readInt("/proc/sys/kernel/unprivileged_userns_clone"); err == nil && n == 0 {
		c.Detail = "kernel.unprivileged_userns_clone is 0"
		c.Hint = "ask an administrator to set sysctl kernel.unprivileged_userns_clone=1"
		return c
	}
	if n, err := readInt("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"); err == nil && n == 1 {
		c.Detail = "AppArmor restricts unprivileged user namespaces"
		c.Hint = "ask an administrator for an AppArmor profile for roost, or sysctl kernel.apparmor_restrict_unprivileged_userns=0"
		return c
	}
	c.OK, c.Detail = true, "allowed"
	return c
}

func subIDCheck(file, what string) Check {
	c := Check{Name: what + " range"}
	name := ""
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	ranges, err := SubIDRanges(file, name, os.Getuid())
	if err != nil {
		c.Detail = err.Error()
		return c
	}
	if len(ranges) == 0 {
		c.OK, c.Warn = true, true
		c.Detail = "none in " + file
		c.Hint = "containers get one id (you as root); images with many owners still run. For more ids ask an administrator for a line in " + file
		return c
	}
	var parts []string
	for _, r := range ranges {
		parts = append(parts, fmt.Sprintf("%d-%d (%d ids)", r.Start, uint64(r.Start)+uint64(r.Count)-1, r.Count))
	}
	c.OK, c.Detail = true, strings.Join(parts, ", ")
	return c
}

func helperCheck(name string) Check {
	c := Check{Name: name}
	p, err := exec.LookPath(name)
	if err != nil {
		c.Detail = "not found"
		c.Hint = "install it (Debian: apt-get install uidmap) to use your subordinate id ranges"
		return c
	}
	fi, err := os.Stat(p)
	if err != nil {
		c.Detail = err.Error()
		return c
	}
	c.OK, c.Detail = true, p
	if fi.Mode()&os.ModeSetuid == 0 {
		caps, _ := exec.Command("getcap", p).Output()
		if len(bytes.TrimSpace(caps)) == 0 {
			c.Warn, c.Detail = true, p+" (neither setuid nor with file capabilities)"
			c.Hint = "reinstall uidmap so that " + name + " can write id maps"
		}
	}
	return c
}

func deviceCheck(p, hint string) Check {
	c := Check{Name: p}
	if err := unix.Access(p, unix.R_OK|unix.W_OK); err != nil {
		c.Detail = (&os.PathError{Op: "open", Path: p, Err: err}).Error()
		c.Hint = hint
		return c
	}
	c.OK, c.Detail = true, "read-write"
	return c
}

// PingSockets tells whether this user may open unprivileged ICMP sockets
// (socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)), through which an agent sends
// its container's pings; the error says what to change where not.
func PingSockets() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_ICMP)
	if err != nil {
		b, _ := os.ReadFile("/proc/sys/net/ipv4/ping_group_range")
		return fmt.Errorf("this user (gid %d) may not open ICMP sockets (%v; net.ipv4.ping_group_range is %q): as root, run sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"",
			os.Getgid(), err, strings.Join(strings.Fields(string(b)), " "))
	}
	unix.Close(fd)
	return nil
}

func pingCheck() Check {
	c := Check{Name: "ping from containers", OK: true}
	if err := PingSockets(); err != nil {
		c.Warn, c.Detail = true, err.Error()
		c.Hint = "without it a container's ping gets no reply; everything else works"
		return c
	}
	c.Detail = "allowed (net.ipv4.ping_group_range)"
	return c
}

func cgroupCheck() Check {
	c := Check{Name: "cgroup v2 delegation"}
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		c.OK, c.Warn = true, true
		c.Detail = "no unified cgroup v2 hierarchy at /sys/fs/cgroup (hybrid or v1)"
		c.Hint = "--memory, --cpus and --pids-limit need cgroup v2; pause falls back to signals"
		return c
	}
	if p := os.Getenv("ROOST_CGROUP"); p != "" {
		if !filepath.IsAbs(p) {
			p = filepath.Join("/sys/fs/cgroup", p)
		}
		if unix.Access(filepath.Join(p, "cgroup.procs"), unix.W_OK) != nil {
			c.OK, c.Warn = true, true
			c.Detail = "ROOST_CGROUP=" + p + " is not writable by you"
			c.Hint = "ask an administrator to chown that cgroup directory to you"
			return c
		}
		ctrl, _ := os.ReadFile(filepath.Join(p, "cgroup.controllers"))
		c.OK, c.Detail = true, fmt.Sprintf("ROOST_CGROUP=%s (controllers: %s)", p, strings.TrimSpace(string(ctrl)))
		return c
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		c.Detail = err.Error()
		return c
	}
	rel := ""
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if r, ok := strings.CutPrefix(line, "0::"); ok {
			rel = r
		}
	}
	dir := filepath.Join("/sys/fs/cgroup", rel)
	if unix.Access(dir, unix.W_OK) != nil {
		c.OK, c.Warn = true, true
		c.Detail = "cgroup " + rel + " is not writable by you"
		c.Hint = "run under a systemd user session (systemd-run --user --scope), or set ROOST_CGROUP to a cgroup delegated to you, for resource limits and the freezer"
		return c
	}
	ctrl, _ := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	c.OK, c.Detail = true, fmt.Sprintf("%s (controllers: %s)", rel, strings.TrimSpace(string(ctrl)))
	return c
}

func storageCheck(root string) Check {
	c := Check{Name: "storage filesystem"}
	p := root
	for {
		if _, err := os.Stat(p); err == nil || p == "/" {
			break
		}
		p = filepath.Dir(p)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		c.Detail = err.Error()
		return c
	}
	const lustreMagic = 0x0BD00BD0
	switch st.Type {
	case unix.NFS_SUPER_MAGIC:
		c.OK, c.Warn, c.Detail = true, true, "NFS"
	case lustreMagic:
		c.OK, c.Warn, c.Detail = true, true, "Lustre"
	default:
		c.OK, c.Detail = true, fmt.Sprintf("local (type 0x%x)", st.Type)
		return c
	}
	c.Hint = "the storage root works on a network filesystem but is slow there: set root in the config to a local disk (e.g. /tmp or $XDG_RUNTIME_DIR) where one exists"
	return c
}
