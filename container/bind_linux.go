//go:build linux

package container

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A bind of a published TCP port (netns/handoff_linux.go). Where the
// container publishes TCP ports on its private network, init's notify
// filter hands bind(2) to the agent too; the agent answers:
//
//   - a bind the port proxy does not take (another port, another kind of
//     socket, an address other than any or the container's, a process in a
//     network namespace of its own) goes ahead as the caller asked
//     (SECCOMP_USER_NOTIF_FLAG_CONTINUE), as do calls it cannot decode: the
//     kernel then gives its own answer;
//   - otherwise the proxy's host socket for that port takes the place of
//     the caller's descriptor (SECCOMP_IOCTL_NOTIF_ADDFD with
//     SECCOMP_ADDFD_FLAG_SETFD, its close-on-exec flag kept), and the call
//     returns 0, or the error binding the host socket gave.

// seccompNotifAddfd is the kernel's struct seccomp_notif_addfd.
type seccompNotifAddfd struct {
	ID         uint64
	Flags      uint32
	Srcfd      uint32
	Newfd      uint32
	NewfdFlags uint32
}

// answerBind answers one bind(fd, addr, addrlen).
func (s *chownServer) answerBind(n *seccompNotif) seccompNotifResp {
	goOn := seccompNotifResp{ID: n.ID, Flags: unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE}
	fd, addrPtr, addrLen := int32(n.Data.Args[0]), n.Data.Args[1], n.Data.Args[2]
	if fd < 0 || addrLen < unix.SizeofSockaddrInet4 || addrLen > unix.SizeofSockaddrInet6 {
		return goOn
	}
	raw, err := readMemory(n.Pid, addrPtr, int(addrLen))
	if err != nil {
		return goOn
	}
	addr, ok := parseSockaddr(raw)
	if !ok {
		return goOn
	}
	// A process that made a network namespace of its own binds there.
	nsPath := fmt.Sprintf("/proc/%d/ns/net", n.Pid)
	var st unix.Stat_t
	if unix.Stat(nsPath, &st) != nil || st.Ino != s.netns {
		return goOn
	}
	pidfd, err := unix.PidfdOpen(int(n.Pid), 0)
	if err != nil {
		return goOn
	}
	defer unix.Close(pidfd)
	// What was read, and the pid, are the caller's only while its call is
	// pending.
	id := n.ID
	if ioctlPtr(s.listener, unix.SECCOMP_IOCTL_NOTIF_ID_VALID, unsafe.Pointer(&id)) != nil {
		return goOn
	}
	template, err := unix.PidfdGetfd(pidfd, int(fd), 0)
	if err != nil {
		return goOn
	}
	defer unix.Close(template)
	flags, err := fdFlags(n.Pid, int(fd))
	if err != nil {
		return goOn
	}
	host, ok, err := s.ports.HostSocket(template, addr, nsPath)
	if !ok {
		return goOn
	}
	if err != nil {
		errno, _ := err.(unix.Errno)
		return seccompNotifResp{ID: n.ID, Error: -int32(errno)}
	}
	add := seccompNotifAddfd{ID: n.ID, Flags: unix.SECCOMP_ADDFD_FLAG_SETFD, Srcfd: uint32(host), Newfd: uint32(fd), NewfdFlags: uint32(flags & unix.O_CLOEXEC)}
	err = ioctlPtr(s.listener, unix.SECCOMP_IOCTL_NOTIF_ADDFD, unsafe.Pointer(&add))
	unix.Close(host)
	if err != nil {
		// The proxy takes its port back and the caller binds its own.
		s.ports.Reclaim()
		return goOn
	}
	Trace("agent", "bind-handed")
	return seccompNotifResp{ID: n.ID}
}

// parseSockaddr reads a struct sockaddr_in or sockaddr_in6.
func parseSockaddr(b []byte) (netip.AddrPort, bool) {
	family := binary.NativeEndian.Uint16(b)
	port := binary.BigEndian.Uint16(b[2:])
	switch {
	case family == unix.AF_INET && len(b) >= unix.SizeofSockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port), true
	case family == unix.AF_INET6 && len(b) >= 24: // the kernel's least (SIN6_LEN_RFC2133)
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])), port), true
	}
	return netip.AddrPort{}, false
}

// readMemory reads n bytes at addr of process pid.
func readMemory(pid uint32, addr uint64, n int) ([]byte, error) {
	mem, err := os.Open("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/mem")
	if err != nil {
		return nil, err
	}
	defer mem.Close()
	b := make([]byte, n)
	if _, err := mem.ReadAt(b, int64(addr)); err != nil {
		return nil, err
	}
	return b, nil
}

// fdFlags are the open flags of descriptor fd of process pid, with
// O_CLOEXEC for its close-on-exec flag (/proc/PID/fdinfo/FD).
func fdFlags(pid uint32, fd int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		return 0, err
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("flags:")); ok {
			f, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 8, 32)
			return int(f), err
		}
	}
	return 0, fmt.Errorf("no flags in fdinfo of %d/%d", pid, fd)
}
