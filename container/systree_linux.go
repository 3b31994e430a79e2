//go:build linux

package container

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// systemTrees are a container's /proc, /sys and /dev as detached mounts,
// masks and all, for a direct start (direct_linux.go): its thread makes them
// while the union is being mounted, and prepareRoot only attaches them. Made
// with mountSystem on the union instead, they were a millisecond and more of
// mounts after it, each resolving its target through the union.
type systemTrees struct {
	proc, sys, dev int
}

// close closes the descriptors of the trees (attached ones stay mounted).
func (t *systemTrees) close() {
	for _, fd := range []int{t.proc, t.sys, t.dev} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// attach attaches the trees under root, as mountSystem would mount them.
func (t *systemTrees) attach(root string) error {
	for _, m := range []struct {
		fd     int
		target string
	}{{t.proc, "/proc"}, {t.sys, "/sys"}, {t.dev, "/dev"}} {
		if err := attach(m.fd, root, m.target); err != nil {
			return err
		}
	}
	return nil
}

// makeSystemTrees makes the trees for spec on this thread, which has the
// container's namespaces; proc is the detached proc mount (detachedProc),
// which it takes over (and closes on an error). The kernel of a direct start
// can mount onto detached mounts (Linux 6.15).
func makeSystemTrees(spec *InitSpec, proc int) (*systemTrees, error) {
	t := &systemTrees{proc: proc, sys: -1, dev: -1}
	err := maskTree(proc, "/proc")
	if err == nil {
		t.sys, err = sysTree(spec)
	}
	if err == nil {
		t.dev, err = devTree(spec)
	}
	if err != nil {
		t.close()
		return nil, err
	}
	return t, nil
}

// newMount makes a detached mount of a new fstype filesystem named source,
// with the options opts (name=value, or a flag's name alone) and the mount
// attributes attrs.
func newMount(source, fstype string, opts []string, attrs int) (int, error) {
	fs, err := unix.Fsopen(fstype, unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", fstype, err)
	}
	defer unix.Close(fs)
	for _, o := range append([]string{"source=" + source}, opts...) {
		if k, v, ok := strings.Cut(o, "="); ok {
			err = unix.FsconfigSetString(fs, k, v)
		} else {
			err = unix.FsconfigSetFlag(fs, k)
		}
		if err != nil {
			return -1, fmt.Errorf("%s option %s: %w", fstype, o, err)
		}
	}
	if err := unix.FsconfigCreate(fs); err != nil {
		return -1, fmt.Errorf("create %s: %w", fstype, err)
	}
	m, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, attrs)
	if err != nil {
		return -1, fmt.Errorf("mount %s: %w", fstype, err)
	}
	return m, nil
}

// mountOnto attaches the detached mount m at name under the tree dir, and
// closes m.
func mountOnto(m, dir int, name string) error {
	defer unix.Close(m)
	return unix.MoveMount(m, "", dir, name, unix.MOVE_MOUNT_F_EMPTY_PATH)
}

// bindOnto binds the host's path onto name under the tree dir.
func bindOnto(path string, dir int, name string) error {
	m, err := unix.OpenTree(unix.AT_FDCWD, path, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return err
	}
	return mountOnto(m, dir, name)
}

const nsdAttrs = unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC

// maskTree applies Docker's masked and read-only paths (maskPaths) under
// top ("/proc" or "/sys") to the tree dir mounted there.
func maskTree(dir int, top string) error {
	for _, p := range maskedPaths {
		name, ok := strings.CutPrefix(p, top+"/")
		if !ok {
			continue
		}
		var st unix.Stat_t
		if unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
			continue // not on this kernel
		}
		var err error
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			var m int
			if m, err = newMount("tmpfs", "tmpfs", []string{"size=0"}, unix.MOUNT_ATTR_RDONLY|nsdAttrs); err == nil {
				err = mountOnto(m, dir, name)
			}
		} else {
			err = bindOnto("/dev/null", dir, name)
		}
		if err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
	}
	for _, p := range readOnlyPaths {
		name, ok := strings.CutPrefix(p, top+"/")
		if !ok {
			continue
		}
		m, err := unix.OpenTree(dir, name, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE|unix.AT_SYMLINK_NOFOLLOW)
		if err == unix.ENOENT {
			continue
		}
		if err == nil {
			err = readOnly(m)
			if err == nil {
				err = mountOnto(m, dir, name)
			} else {
				unix.Close(m)
			}
		}
		if err != nil {
			return fmt.Errorf("make %s read-only: %w", p, err)
		}
	}
	return nil
}

// readOnly makes the top of the detached tree m read-only, as
// remountReadOnly does a mount: the mounts below keep their own flags.
func readOnly(m int) error {
	return unix.MountSetattr(m, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY})
}

// sysTree makes the container's /sys: a read-only sysfs of its network
// namespace, or the host's /sys where it has none of its own or the kernel
// refuses, with the masks.
func sysTree(spec *InitSpec) (int, error) {
	m := -1
	if !spec.HostNetwork {
		m, _ = newMount("sysfs", "sysfs", nil, unix.MOUNT_ATTR_RDONLY|nsdAttrs)
	}
	if m < 0 {
		var err error
		if m, err = unix.OpenTree(unix.AT_FDCWD, "/sys", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE); err != nil {
			return -1, fmt.Errorf("bind /sys: %w", err)
		}
		if err := readOnly(m); err != nil {
			unix.Close(m)
			return -1, fmt.Errorf("make /sys read-only: %w", err)
		}
	}
	if err := maskTree(m, "/sys"); err != nil {
		unix.Close(m)
		return -1, err
	}
	return m, nil
}

// devTree makes the container's /dev, as mountSystem does.
func devTree(spec *InitSpec) (dev int, err error) {
	dev, err = newMount("tmpfs", "tmpfs", []string{"mode=755", "size=65536k"}, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_STRICTATIME)
	if err != nil {
		return -1, err
	}
	defer func() {
		if err != nil {
			unix.Close(dev)
		}
	}()
	for _, n := range devNodes {
		f, err := unix.Openat(dev, n, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
		if err == nil {
			unix.Close(f)
			err = bindOnto("/dev/"+n, dev, n)
		}
		if err != nil {
			return -1, fmt.Errorf("add /dev/%s: %w", n, err)
		}
	}
	for link, target := range devLinks {
		if err := unix.Symlinkat(target, dev, link); err != nil {
			return -1, fmt.Errorf("create /dev/%s: %w", link, err)
		}
	}
	sub := func(name, source, fstype string, opts []string, attrs int) error {
		err := unix.Mkdirat(dev, name, 0o755)
		var m int
		if err == nil {
			m, err = newMount(source, fstype, opts, attrs)
		}
		if err == nil {
			err = mountOnto(m, dev, name)
		}
		if err != nil {
			return fmt.Errorf("mount %s on /dev/%s: %w", fstype, name, err)
		}
		return nil
	}
	if err := sub("pts", "devpts", "devpts", ptsOptions(spec), unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NOEXEC); err != nil {
		return -1, err
	}
	if err := sub("shm", "shm", "tmpfs", []string{"mode=1777", "size=65536k"}, nsdAttrs); err != nil {
		return -1, err
	}
	if sub("mqueue", "mqueue", "mqueue", nil, nsdAttrs) != nil {
		// Only the IPC namespace's owner may mount it; not fatal.
		unix.Unlinkat(dev, "mqueue", unix.AT_REMOVEDIR)
	}
	return dev, nil
}
