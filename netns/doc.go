// Package netns will own container networking: the private network namespace
// with user-mode NAT (gVisor netstack), the DNS forwarder, and the published
// port proxy (netns.PortProxy), as DESIGN.md describes. Nothing is built here
// yet: the networking issue adds it, and `roost run -p` says it is planned.
package netns
