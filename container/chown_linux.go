//go:build linux

package container

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"unsafe"

	"github.com/elastic/go-seccomp-bpf/arch"
	"github.com/roost-containers/roost/fuse"
	"github.com/roost-containers/roost/netns"
	"golang.org/x/sys/unix"
)

// Chown with a single id. Where the user has no subordinate id range the
// container's user namespace maps one id (root inside is the user), and the
// kernel refuses a chown to any other id (EINVAL) before the union sees it.
// So the id emulation's seccomp filter (seccomp_linux.go) hands the chown
// family to a listener (SECCOMP_RET_USER_NOTIF) that init, or exec, sends
// the agent over the socket InitSpec.NotifySocket names. The agent, the
// union's server, answers each call as the kernel would have:
//
//   - a caller without CAP_CHOWN gets the kernel's own answer (the call
//     continues, SECCOMP_USER_NOTIF_FLAG_CONTINUE);
//   - the path (or descriptor) is resolved from the caller's root, working
//     directory or directory descriptor, following a last symlink or not as
//     the call does; a failure is the call's error (ENOENT, ENOTDIR, ...);
//   - an object of the union gets the owner recorded in the writable
//     layer's metadata (fuse.Mount.Chown), so that commit and build put it
//     in the layer; it shows inside as the ids the namespace maps, and an
//     id it does not map as root (see package fuse);
//   - an object elsewhere (a volume, a tmpfs, /proc) is left as it is and
//     the call succeeds, as under Charliecloud's --seccomp;
//   - on a read-only mount (--read-only, a :ro volume) the call fails with
//     EROFS, as the kernel's.
//
// Nothing of this runs where more than one id is mapped: there the kernel
// chowns.

// The kernel's struct seccomp_data, seccomp_notif and seccomp_notif_resp
// (linux/seccomp.h), which golang.org/x/sys/unix does not define.
type seccompData struct {
	Nr                 int32
	Arch               uint32
	InstructionPointer uint64
	Args               [6]uint64
}

type seccompNotif struct {
	ID    uint64
	Pid   uint32
	Flags uint32
	Data  seccompData
}

type seccompNotifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

// notifySocket makes the socket pair for the listener: the agent's end and
// the child's, which the caller passes to init or exec.
func notifySocket() (agentEnd, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	return os.NewFile(uintptr(fds[0]), "chown"), os.NewFile(uintptr(fds[1]), "chown-child"), nil
}

// recvListener receives the listener on the agent's end of the socket
// (nil when the child went before sending it) and closes the socket.
func recvListener(sock *os.File) *os.File {
	defer sock.Close()
	return listenerFile(recvFd(sock))
}

// listenerFile is the seccomp listener fd as a file for serveNotify (nil
// for fd -1): non-blocking, so that the runtime's poller waits for calls,
// and a listener whose processes are all gone then reports a hang-up.
func listenerFile(fd int) *os.File {
	if fd < 0 {
		return nil
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil
	}
	return os.NewFile(uintptr(fd), "seccomp-listener")
}

// chownServer answers the chown calls of one listener.
type chownServer struct {
	union *fuse.Mount
	// unionRoot is the union's root, open where the agent mounted it;
	// ctrRoot is the container's root as its init sees it.
	unionRoot, ctrRoot int
	// hostRoot is this thread's own root, to come back to; proc its /proc.
	hostRoot, proc int
	// listener is the listener's descriptor (its *os.File's Fd would
	// make it blocking).
	listener uintptr
	nrs      map[int32]string
	// ports, where set, answers bind (bind_linux.go); bindNr is its number
	// and netns the container's network namespace (its inode).
	ports  *netns.PortProxy
	bindNr int32
	netns  uint64
}

// serveNotify answers the calls of listener (the chown family, and bind
// where ports is set) until every process that holds its filter is gone.
// root is the union's mountpoint here, pid the container's first process
// (its init, or the command). It runs on a thread of rootless.GoLocked,
// whose root it changes.
func serveNotify(listener *os.File, m *fuse.Mount, root string, pid int, ports *netns.PortProxy) {
	defer listener.Close()
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		fmt.Fprintln(os.Stderr, "roost agent: chown: unshare:", err)
		return
	}
	s := &chownServer{union: m, nrs: map[int32]string{}, ports: ports, bindNr: -1}
	info, err := arch.GetInfo("")
	if err != nil {
		fmt.Fprintln(os.Stderr, "roost agent: chown:", err)
		return
	}
	if nr, ok := info.SyscallNames["bind"]; ok && ports != nil {
		var st unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st); err == nil {
			s.bindNr, s.netns = int32(nr), st.Ino
		}
	}
	for _, name := range chownCalls {
		if nr, ok := info.SyscallNames[name]; ok {
			s.nrs[int32(nr)] = name
		}
	}
	for _, o := range []struct {
		fd   *int
		path string
	}{{&s.hostRoot, "/"}, {&s.proc, "/proc"}, {&s.unionRoot, root}, {&s.ctrRoot, fmt.Sprintf("/proc/%d/root", pid)}} {
		if *o.fd, err = unix.Open(o.path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
			fmt.Fprintln(os.Stderr, "roost agent: chown:", &os.PathError{Op: "open", Path: o.path, Err: err})
			return
		}
		defer unix.Close(*o.fd)
	}
	rc, err := listener.SyscallConn()
	if err != nil {
		return
	}
	for {
		var n seccompNotif
		var recvErr error
		hangUp := false
		err := rc.Read(func(fd uintptr) bool {
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			for {
				if _, err := unix.Poll(pfd, 0); err != unix.EINTR {
					break
				}
			}
			switch {
			case pfd[0].Revents&unix.POLLIN != 0:
				n = seccompNotif{}
				recvErr = ioctlPtr(fd, unix.SECCOMP_IOCTL_NOTIF_RECV, unsafe.Pointer(&n))
				return true
			case pfd[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0:
				hangUp = true
				return true
			}
			return false
		})
		if err != nil || hangUp {
			return
		}
		if recvErr != nil {
			continue // the caller went away before we took its call
		}
		rc.Control(func(fd uintptr) { s.listener = fd })
		resp := s.answer(&n)
		// ENOENT: the caller went away meanwhile.
		ioctlPtr(s.listener, unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(&resp))
	}
}

func ioctlPtr(fd, req uintptr, arg unsafe.Pointer) error {
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, req, uintptr(arg)); errno != 0 {
		return errno
	}
	return nil
}

// answer handles one call.
func (s *chownServer) answer(n *seccompNotif) seccompNotifResp {
	if n.Data.Nr == s.bindNr {
		return s.answerBind(n)
	}
	resp := seccompNotifResp{ID: n.ID}
	fail := func(errno unix.Errno) seccompNotifResp {
		resp.Error = -int32(errno)
		return resp
	}
	name, ok := s.nrs[n.Data.Nr]
	if !ok {
		return fail(unix.ENOSYS)
	}
	if !hasCapChown(n.Pid) {
		resp.Flags = unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE
		return resp
	}
	args := n.Data.Args
	c := chownCall{dirfd: unix.AT_FDCWD}
	switch name {
	case "chown", "lchown":
		c.pathAddr, c.uid, c.gid, c.nofollow = args[0], args[1], args[2], name == "lchown"
	case "fchown":
		c.dirfd, c.emptyPath, c.uid, c.gid = int32(args[0]), true, args[1], args[2]
	case "fchownat":
		flags := int(args[4])
		if flags&^(unix.AT_SYMLINK_NOFOLLOW|unix.AT_EMPTY_PATH) != 0 {
			return fail(unix.EINVAL)
		}
		c.dirfd, c.pathAddr, c.uid, c.gid = int32(args[0]), args[1], args[2], args[3]
		c.nofollow = flags&unix.AT_SYMLINK_NOFOLLOW != 0
		c.emptyOK = flags&unix.AT_EMPTY_PATH != 0
	}
	if !c.emptyPath {
		p, errno := readString(n.Pid, c.pathAddr)
		if errno != 0 {
			return fail(errno)
		}
		c.path = p
		if p == "" {
			if !c.emptyOK {
				return fail(unix.ENOENT)
			}
			c.emptyPath = true
		}
	}
	// What was read is the caller's only while its call is pending.
	id := n.ID
	if ioctlPtr(s.listener, unix.SECCOMP_IOCTL_NOTIF_ID_VALID, unsafe.Pointer(&id)) != nil {
		return resp
	}
	fd, errno := s.open(n.Pid, &c)
	if errno != 0 {
		return fail(errno)
	}
	defer unix.Close(fd)
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err == nil && fs.Flags&unix.ST_RDONLY != 0 {
		return fail(unix.EROFS) // --read-only, or a read-only volume
	}
	if p, ok := s.unionPath(fd); ok {
		if err := s.union.Chown(p, int(int32(uint32(c.uid))), int(int32(uint32(c.gid)))); err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				if en, ok := pe.Err.(unix.Errno); ok {
					return fail(en)
				}
			}
			return fail(unix.EIO)
		}
	}
	return resp
}

// chownCall is a decoded call of the chown family.
type chownCall struct {
	dirfd              int32 // AT_FDCWD or the caller's descriptor
	pathAddr           uint64
	path               string
	emptyPath, emptyOK bool // the call names dirfd itself
	nofollow           bool
	uid, gid           uint64
}

// open opens (O_PATH) what the call names, resolved as the kernel resolves
// it for the caller: this thread takes the caller's root for the time.
func (s *chownServer) open(pid uint32, c *chownCall) (int, unix.Errno) {
	proc := "/proc/" + strconv.FormatUint(uint64(pid), 10)
	if c.emptyPath {
		if c.dirfd == unix.AT_FDCWD {
			return openErrno(unix.Open(proc+"/cwd", unix.O_PATH|unix.O_CLOEXEC, 0))
		}
		fd, errno := openErrno(unix.Open(proc+"/fd/"+strconv.Itoa(int(c.dirfd)), unix.O_PATH|unix.O_CLOEXEC, 0))
		if errno == unix.ENOENT {
			errno = unix.EBADF
		}
		return fd, errno
	}
	root, err := unix.Open(proc+"/root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, unix.ESRCH
	}
	defer unix.Close(root)
	base := unix.AT_FDCWD
	if !strings.HasPrefix(c.path, "/") {
		dir := proc + "/cwd"
		if c.dirfd != unix.AT_FDCWD {
			dir = proc + "/fd/" + strconv.Itoa(int(c.dirfd))
		}
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			return -1, unix.EBADF
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return -1, unix.ENOTDIR
		}
		if base, err = unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
			return -1, unix.EBADF
		}
		defer unix.Close(base)
	}
	flags := unix.O_PATH | unix.O_CLOEXEC
	if c.nofollow {
		flags |= unix.O_NOFOLLOW
	}
	if err := s.chroot(root); err != nil {
		return -1, unix.EIO
	}
	fd, err := unix.Openat(base, c.path, flags, 0)
	if err := s.chroot(s.hostRoot); err != nil {
		// This thread must not serve anything else from the container's
		// root: end it.
		panic(fmt.Sprintf("roost agent: chown: cannot return to the root: %v", err))
	}
	return openErrno(fd, err)
}

func openErrno(fd int, err error) (int, unix.Errno) {
	if err != nil {
		var en unix.Errno
		if errors.As(err, &en) {
			return -1, en
		}
		return -1, unix.EIO
	}
	return fd, 0
}

// chroot makes dir this thread's root and working directory.
func (s *chownServer) chroot(dir int) error {
	if err := unix.Fchdir(dir); err != nil {
		return err
	}
	return unix.Chroot(".")
}

// unionPath is the union's path of fd when fd is an object of the union as
// the container's root shows it: a path from the container's root that
// names the same object in the union.
func (s *chownServer) unionPath(fd int) (string, bool) {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || s.chroot(s.ctrRoot) != nil {
		return "", false
	}
	// /proc here is the container's: read the link through the host's.
	p, err := readlinkat(s.proc, "self/fd/"+strconv.Itoa(fd))
	if err := s.chroot(s.hostRoot); err != nil {
		panic(fmt.Sprintf("roost agent: chown: cannot return to the root: %v", err))
	}
	if err != nil || !strings.HasPrefix(p, "/") {
		return "", false
	}
	p = path.Clean(p)
	var ust unix.Stat_t
	if p == "/" {
		p = "."
		err = unix.Fstat(s.unionRoot, &ust)
	} else {
		p = p[1:]
		err = unix.Fstatat(s.unionRoot, p, &ust, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err != nil || ust.Dev != st.Dev || ust.Ino != st.Ino {
		return "", false
	}
	return p, true
}

func readlinkat(dir int, p string) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dir, p, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// readString reads the NUL-terminated path at addr of process pid.
func readString(pid uint32, addr uint64) (string, unix.Errno) {
	if addr == 0 {
		return "", unix.EFAULT
	}
	mem, err := os.Open("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/mem")
	if err != nil {
		return "", unix.ESRCH
	}
	defer mem.Close()
	var out []byte
	buf := make([]byte, 4096)
	for len(out) < unix.PathMax {
		// Up to the end of the page: the next one may not be mapped.
		n := 4096 - int(addr%4096)
		k, err := mem.ReadAt(buf[:n], int64(addr))
		if i := bytes.IndexByte(buf[:k], 0); i >= 0 {
			return string(append(out, buf[:i]...)), 0
		}
		if err != nil || k < n {
			return "", unix.EFAULT
		}
		out = append(out, buf[:k]...)
		addr += uint64(k)
	}
	return "", unix.ENAMETOOLONG
}

// hasCapChown reports whether process pid has CAP_CHOWN in effect.
func hasCapChown(pid uint32) bool {
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<unix.CAP_CHOWN) != 0
		}
	}
	return false
}
