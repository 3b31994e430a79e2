// Package netns owns container networking: publishing container ports on the
// host (PortProxy), parsing -p specs, and the user-mode network of a
// container (NAT). The agent, which lives in the host's network namespace and
// is root in the container's user namespace, listens on the host and dials
// each connection with a socket made by a goroutine locked to an OS thread
// that has joined the container's network namespace (setns); the bytes then
// move between the two sockets with splice (io.Copy of two *net.TCPConn).
// With client addresses (NAT.DialPort) the connection is opened through the
// netstack instead, from the client's address. By default, though, a TCP
// port that the container's server binds itself is handed to it as a host
// socket (PortProxy.HostSocket, handoff_linux.go), and the proxy carries
// nothing for it.
//
// What must hold:
//   - A thread that joined a container's network namespace never runs other
//     goroutines: it stays locked until its goroutine ends, and the runtime
//     then discards it.
//   - All host ports are bound before the container is reported started, so
//     a port in use fails `run`, not later.
//
// The private network (NAT): the agent creates a TUN device, eth0, inside
// the container's network namespace and serves it with gVisor's netstack.
// Every TCP and UDP flow the container opens ends in the netstack and is
// opened again from the host's namespace: to the address it named, to the
// host's loopback for Gateway, to the resolver for DNSServer:53, or through
// another container's agent for a link address.
//
// ICMP echo requests (ping) never reach the netstack, which would answer
// them for any address: the TUN device's endpoint takes them out and sends
// each with an unprivileged ICMP socket of the host (SOCK_DGRAM,
// IPPROTO_ICMP; allowed to the groups in net.ipv4.ping_group_range), and
// the host's reply goes back to the container from the address it pinged.
// Gateway, DNSServer and link addresses are answered as the host's
// loopback answers, as this host serves them; the rest of Subnet, and every
// address where the host refuses such sockets, answers nothing.
//
//   - The netstack never sees the host's traffic: only what the container
//     sends to eth0.
//   - A NAT is closed, and its TUN descriptor with it, before the agent
//     serves the next run of the container (a new namespace).
package netns
