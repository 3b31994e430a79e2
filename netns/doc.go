// Package netns owns container networking: publishing container ports on the
// host (PortProxy) and parsing -p specs. The agent, which lives in the host's
// network namespace and is root in the container's user namespace, listens on
// the host and dials each connection from a goroutine locked to an OS thread
// that has joined the container's network namespace (setns); the bytes then
// move between the two sockets with splice (io.Copy of two *net.TCPConn).
//
// What must hold:
//   - A thread that joined a container's network namespace never runs other
//     goroutines: it stays locked until its goroutine ends, and the runtime
//     then discards it.
//   - All host ports are bound before the container is reported started, so
//     a port in use fails `run`, not later.
//
// Not built yet: user-mode NAT for outbound traffic, DNS, links (the
// networking issue); a private network has loopback only.
package netns
