// Package container owns containers: their records and state on disk, the
// agent that runs each one, the container's init (where one is needed), and
// its logs.
//
// On disk, under the storage root:
//
//	containers/<id>/config.json   the Record, written by the CLI (create, rename)
//	containers/<id>/state.json    the State, written by the agent at each change
//	containers/<id>/agent.lock    flock held by the agent while it lives; holds "PID CONN START" (wedge_linux.go)
//	containers/<id>/ctr.log       stdout and stderr, one JSON object a line (Docker's json-file)
//	containers/<id>/agent.log     what the agent itself had to say
//	containers/<id>/diff/         the writable layer (package fuse)
//	containers/<id>/rootfs/       the mountpoint, used only inside the agent's mount namespace
//	containers/<id>/hosts, hostname, resolv.conf   bind-mounted into the container
//	containers.lock               guards name uniqueness
//	volumes/<name>/_data          named and anonymous volumes
//
// and under the runtime directory: <id>/ctl.sock, the agent's control socket.
//
// Processes (see DESIGN.md): the CLI re-executes roost as the agent in a new
// user and mount namespace (package rootless); the agent mounts the union
// filesystem and sets the container up in new pid, net, uts, ipc, cgroup
// and mount namespaces: /proc, /dev, /sys, the mounts and the user, a pivot
// into the union, and an exec of the command, which so becomes PID 1.
// Nothing of roost stays inside the container after that exec.
//
// Where the kernel allows (Linux 6.17 and later) the agent does that on one
// of its own threads and forks the command from there (direct_linux.go):
// no third Go process starts on the way. Otherwise, and for what only a
// process of its own can do (--init, --ulimit, a nested user namespace, a
// cgroup, a seccomp profile of the user's), it re-executes roost as the
// container's init (init_linux.go), which does the same and execs the
// command.
//
// Start-up overlaps these steps, each a Go process that takes milliseconds
// to reach its first line: `run` starts the agent before it makes the
// container (Store.Prespawn; the agent then reads its spec on stdin); the
// agent's thread unshares the other namespaces while the agent reads that
// spec (earlyNamespaces), and makes /proc, /sys and /dev as detached mounts
// while the union mounts (systree_linux.go), to attach them once it is
// there (or init starts then, and unshares its mount namespace only when
// its spec arrives, after the mount, so that it sees the union); the
// private network is set up while the root is.
//
// What must hold:
//   - The agent holds agent.lock from before it reports the container started
//     until after it wrote the final state (a --rm container has none: its
//     directory goes). So a State that says running
//     while the lock is free means the agent died (kill -9, reboot): the
//     container is shown exited, and can be started again. An agent that
//     died in a call on its own union holds the lock until a command
//     aborts that union's connection (wedge_linux.go).
//   - The container's process dies with the agent (parent-death signal; the
//     thread it was forked from lives until it is reaped), and the union
//     mount dies with the agent's mount namespace: nothing is left mounted
//     or running after a crash. A fork of the agent on its way to exec the
//     command holds the agent's descriptors until the exec is done; where
//     the agent died meanwhile, a command aborts the union's connection
//     (wedge_linux.go).
//   - No lock is held while a container runs, except the agent's own.
//
// The protocols that cross processes are written down in protocol.go.
package container
