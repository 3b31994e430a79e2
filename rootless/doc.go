// Package rootless owns the user-namespace machinery every other part of roost
// builds on: reading the caller's subordinate id ranges from /etc/subuid and
// /etc/subgid, choosing the uid and gid maps of a new user namespace, and
// re-executing /proc/self/exe into a new user and mount namespace with those
// maps written from outside.
//
// Three mappings, chosen by DefaultMapping:
//
//   - the caller is root: the full id range is mapped onto itself;
//   - the caller has a subuid and a subgid range and newuidmap and newgidmap are
//     installed: 0 maps to the caller and 1..N to the ranges, written by those
//     helpers on the child's pid;
//   - otherwise: one mapping, the caller to 0, with setgroups denied.
//
// The re-exec protocol (one place, parent and child in this package):
//
//  1. The parent (Cmd.Start) starts /proc/self/exe with CLONE_NEWUSER|CLONE_NEWNS
//     and the environment variable ROOST_REEXEC=<entry name>.
//  2. When the maps need the setuid helpers, the parent also passes the read end
//     of a pipe and names its descriptor in ROOST_USERNS_SYNC. It runs newuidmap
//     and newgidmap on the child's pid, then writes one byte; on failure it
//     closes the pipe without writing and kills the child. The child
//     (MaybeRunChild) waits for that byte and goes on as root of the
//     namespace. Its exec happened before its uid was mapped, which would
//     drop its capabilities: it keeps them as ambient capabilities, which the
//     parent asks the Go runtime to raise before that exec.
//     Without helpers the Go runtime writes the maps before the first exec and
//     no pipe is used.
//  3. The child runs the function registered under the entry name with the
//     arguments the parent gave, with ROOST_REEXEC and ROOST_USERNS_SYNC
//     removed from its environment, and exits with its return value.
//
// Nothing is ever mounted in the caller's mount namespace: whatever the child
// mounts disappears with it.
//
// Threads: code that changes what belongs to its thread alone (joins a
// namespace, unshares one, limits its capabilities or loads seccomp filters)
// runs in GoLocked, on a thread that ends with it and is never the main one.
package rootless
