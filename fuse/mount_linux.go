//go:build linux

package fuse

import (
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/roost-containers/roost/layers"
	"golang.org/x/sys/unix"
)

// maxWrite is the largest WRITE request the kernel sends.
const maxWrite = 1 << 20

// Options say what to mount.
type Options struct {
	// Lowers are the read-only layers, bottom first.
	Lowers []Lower
	// Writable is the directory of the writable layer (see the package doc
	// for its layout); it is created when missing and kept after unmount.
	Writable string
	// Ephemeral marks a writable layer that is thrown away after unmount
	// (run --rm): its metadata journal is never synced to disk.
	Ephemeral bool
	// MountTargets are paths in the union ("etc/hosts") to give an empty
	// file, root's, mode 0644, where the union has nothing, before the
	// mount: targets for bind mounts, made without a request through the
	// kernel each. A path that exists (a symlink too), or whose directory
	// does not, is left alone.
	MountTargets []string
	// MergedView, where set, is the file of the merged view of Lowers
	// (view.go), in a store's merged/ directory: the union loads it where
	// it is, and where it is not (or is not of this format) builds the
	// tree from the layers' indexes, for Mount.SaveView to write. The
	// layers' Index may then be nil: IndexFile is read only to build.
	MergedView string
	// Logger, when set, receives go-fuse's warnings; with Debug, every request.
	Logger *log.Logger
	Debug  bool
}

// Mount is a mounted union filesystem, served by goroutines of this process.
type Mount struct {
	dir  string // the mountpoint
	srv  *fuse.Server
	root *node
	u    *union
	done chan struct{}
	err  error

	saveOnce sync.Once
}

// New mounts the union described by opts on mountpoint and serves it until
// Unmount. It must run in a user namespace that owns the current mount
// namespace (see package rootless): it mounts /dev/fuse directly, without
// fusermount. The union is mounted with default_permissions and allow_other,
// so that the kernel checks access against the owners and modes the layers
// record, for every user of the namespace.
func New(mountpoint string, opts Options) (*Mount, error) {
	u, err := openUnion(opts)
	if err != nil {
		return nil, err
	}
	for _, p := range opts.MountTargets {
		if errno := u.makeTarget(p); errno != 0 {
			u.close()
			return nil, fmt.Errorf("create mount target %s: %w", p, errno)
		}
	}
	root := &node{u: u}
	entryTimeout, negTimeout := lowerTimeout, lowerTimeout
	fsOpts := &fs.Options{
		MountOptions: fuse.MountOptions{
			FsName:       "roost",
			Name:         "roost",
			MaxWrite:     maxWrite,
			MaxReadAhead: 1 << 20,
			// A symlink's target never changes: a new one is a new
			// inode (inoOf), so the kernel may keep what it read. An
			// image with merged /usr goes through /lib and /bin, which
			// are symlinks, for every library and program it loads.
			EnableSymlinkCaching: true,
			Debug:                opts.Debug,
			Logger:               opts.Logger,
		},
		EntryTimeout:    &entryTimeout,
		NegativeTimeout: &negTimeout,
		NullPermissions: true,
		Logger:          opts.Logger,
		RootStableAttr:  &fs.StableAttr{Ino: 1, Gen: 1},
	}
	if opts.Logger == nil {
		quiet := log.New(discard{}, "", 0)
		fsOpts.Logger, fsOpts.MountOptions.Logger = quiet, quiet
	}
	srv, err := serve(mountpoint, root, fsOpts)
	if err != nil {
		u.close()
		return nil, fmt.Errorf("mount union filesystem on %s: %w", mountpoint, hintMount(err))
	}
	m := &Mount{dir: mountpoint, srv: srv, root: root, u: u, done: make(chan struct{})}
	go func() {
		srv.Wait()
		m.err = u.close()
		close(m.done)
	}()
	return m, nil
}

// serve mounts the union served by root on mountpoint and serves it.
//
// The mount is made here, not by go-fuse, for two reasons. go-fuse opens
// /dev/fuse without O_CLOEXEC: every process started from here would
// inherit the descriptor, and while any process holds it the kernel keeps
// the connection alive after this one dies (its processes then wait for
// answers forever, in D state); go-fuse's own mount left it to a scan of
// /proc/self/fd, with forks held off meanwhile. go-fuse is given the
// descriptor as the mountpoint /dev/fd/N.
func serve(mountpoint string, root fs.InodeEmbedder, o *fs.Options) (*fuse.Server, error) {
	var st unix.Stat_t
	if err := unix.Stat(mountpoint, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: mountpoint, Err: err}
	}
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: "/dev/fuse", Err: err}
	}
	// Not nosuid (go-fuse's default): setuid programs and file
	// capabilities of an image work, for the ids of the namespace only, as
	// the kernel limits them on a mount made in it. default_permissions:
	// the kernel checks modes (NullPermissions); allow_other: the
	// container's users are not the mounter.
	data := fmt.Sprintf("fd=%d,rootmode=%o,user_id=%d,group_id=%d,max_read=%d,default_permissions,allow_other",
		fd, st.Mode&unix.S_IFMT, os.Geteuid(), os.Getegid(), o.MaxWrite)
	if err := unix.Mount(o.FsName, mountpoint, "fuse."+o.Name, unix.MS_NODEV, data); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("mount", err)
	}
	srv, err := fuse.NewServer(fs.NewNodeFS(root, o), "/dev/fd/"+strconv.Itoa(fd), &o.MountOptions)
	if err != nil {
		// The descriptor is left open: go-fuse may have closed it, and
		// the number may be another's by now. The agent exits soon.
		unix.Unmount(mountpoint, unix.MNT_DETACH)
		return nil, err
	}
	go srv.Serve()
	pollOnce(mountpoint)
	return srv, nil
}

// pollOnce makes the kernel ask the union once whether a file can be polled,
// on go-fuse's poll-hack file, which go-fuse answers "not implemented": the
// kernel then asks no more. It must be done before this process opens a
// file on the union: the Go runtime adds each file it opens to its epoll
// set, epoll asks the filesystem with its lock held, and the runtime's own
// epoll_wait then waits for that lock while the answer waits for the
// runtime (seen as a hang of the fuse tests when this ran beside them).
// go-fuse's mount does the same (its poll hack), except for a mount it is
// given as /dev/fd/N.
func pollOnce(mountpoint string) {
	fd, err := unix.Open(filepath.Join(mountpoint, ".go-fuse-epoll-hack"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLPRI | unix.POLLOUT}}, 0)
	unix.Close(fd)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func hintMount(err error) error {
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("%w (mounting needs a user and mount namespace of its own, and /dev/fuse readable and writable by the user: chmod 0666 /dev/fuse)", err)
	}
	return err
}

// Unmount unmounts the union, waits until serving has stopped and the
// writable layer's metadata is synced, and reports a failure of either.
func (m *Mount) Unmount() error {
	var err error
	for i := 0; i < 20; i++ {
		if err = unix.Unmount(m.dir, 0); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond) // busy: a process is still leaving
	}
	if err != nil {
		return fmt.Errorf("unmount union filesystem: %w", err)
	}
	<-m.done
	return m.err
}

// Detach takes the union out of this mount namespace at once (a lazy
// unmount) and returns without waiting for its server to stop: that happens
// when the last process using it goes, or with this process. It is for a
// union whose writable layer is thrown away: its metadata is not closed.
func (m *Mount) Detach() error {
	if err := unix.Unmount(m.dir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount union filesystem: %w", err)
	}
	return nil
}

// SaveView writes the merged view of the union's lower layers where this
// mount built their tree (Options.MergedView), once; it takes milliseconds
// for a large image, so the caller picks the moment: roost's agent does it
// once the container runs, and waits for it before it reports the exit.
func (m *Mount) SaveView() {
	m.saveOnce.Do(func() {
		if m.u.saveView != nil {
			m.u.saveView()
		}
	})
}

// Wait blocks until the union is unmounted (by Unmount, or by umount from
// elsewhere in the namespace) and returns the error of closing the metadata.
func (m *Mount) Wait() error {
	<-m.done
	return m.err
}

// openUnion opens the layers and the writable layer.
func openUnion(opts Options) (*union, error) {
	up, work := filepath.Join(opts.Writable, "upper"), filepath.Join(opts.Writable, "work")
	for _, d := range []string{up, work} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create writable layer: %w", err)
		}
	}
	// Leftovers of copy-ups a crash interrupted.
	if ents, err := os.ReadDir(work); err == nil {
		for _, e := range ents {
			os.RemoveAll(filepath.Join(work, e.Name()))
		}
	}
	meta, err := openMeta(filepath.Join(opts.Writable, "meta"), up)
	if err == nil && opts.Ephemeral {
		meta.dirty, meta.ephemeral = false, true
	}
	if err != nil {
		return nil, err
	}
	lower, save, err := lowerTreeOf(opts)
	if err != nil {
		meta.close()
		return nil, err
	}
	u := &union{
		lower:    lower,
		saveView: save,
		upper:    up,
		direct:   layers.TakesDirectIO(up),
		work:     work,
		ids:      newIDMapper(),
		log:      opts.Logger,
		meta:     meta,
		pathInos: map[string]uint64{},
		noUpper:  map[string]bool{},
		hostInos: map[uint64]uint64{},
	}
	u.nextIno = u.lower.maxIno
	for _, l := range opts.Lowers {
		f, err := os.Open(l.Tar)
		if err != nil {
			u.close()
			return nil, fmt.Errorf("open layer: %w", err)
		}
		u.tars = append(u.tars, f)
	}
	return u, nil
}

func (u *union) close() error {
	for _, f := range u.tars {
		f.Close()
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.meta.close()
}

// lowerTreeOf loads the merged view of opts.Lowers, or builds their tree;
// then save, if not nil, writes its view (see Options.MergedView).
func lowerTreeOf(opts Options) (t *lowerTree, save func(), err error) {
	if opts.MergedView != "" {
		if t, err := readView(opts.MergedView, len(opts.Lowers)); err == nil {
			return t, nil, nil
		}
	}
	lowers := slices.Clone(opts.Lowers)
	for i, l := range lowers {
		if l.Index == nil {
			if lowers[i].Index, err = readIndex(l.IndexFile); err != nil {
				return nil, nil, err
			}
		}
	}
	t = buildLowerTree(lowers)
	if opts.MergedView != "" {
		save = func() { saveView(opts.MergedView, t, len(lowers)) }
	}
	return t, save, nil
}

// ReadLowers returns the layers of files with their indexes read.
func ReadLowers(files []LayerFiles) ([]Lower, error) {
	lowers := make([]Lower, len(files))
	for i, f := range files {
		idx, err := readIndex(f.Index)
		if err != nil {
			return nil, err
		}
		lowers[i] = Lower{Tar: f.Tar, Index: idx, IndexFile: f.Index}
	}
	return lowers, nil
}

func readIndex(p string) (*layers.Index, error) {
	idx, err := layers.ReadIndexFile(p)
	if err != nil {
		return nil, fmt.Errorf("read layer index %s: %w", p, err)
	}
	return idx, nil
}
