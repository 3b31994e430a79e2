// Package container owns containers: their records and state on disk, the
// agent that runs each one, the container's init, and its logs.
//
// On disk, under the storage root:
//
//	containers/<id>/config.json   the Record, written by the CLI (create, rename)
//	containers/<id>/state.json    the State, written by the agent at each change
//	containers/<id>/agent.lock    flock held by the agent while it lives; holds "PID CONN" (wedge_linux.go)
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
// filesystem and re-executes roost as the container's init in new pid, net,
// uts, ipc and cgroup namespaces; init sets up /proc, /dev, /sys, mounts and
// the user, pivots into the union and execs the command, which so becomes
// PID 1. Nothing of roost stays inside the container after that exec.
//
// Start-up overlaps these steps, each a Go process that takes milliseconds
// to reach its first line: `run` starts the agent before it makes the
// container (Store.Prespawn; the agent then reads its spec on stdin), and
// the agent starts init while it reads the layers' indexes and mounts the
// union; init unshares its mount namespace only when its spec arrives,
// after the mount, so that it sees the union.
//
// What must hold:
//   - The agent holds agent.lock from before it reports the container started
//     until after it wrote the final state (a --rm container has none: its
//     directory goes). So a State that says running
//     while the lock is free means the agent died (kill -9, reboot): the
//     container is shown exited, and can be started again. An agent that
//     died in a call on its own union holds the lock until a command
//     aborts that union's connection (wedge_linux.go).
//   - The container's init dies with the agent (parent-death signal), and the
//     union mount dies with the agent's mount namespace: nothing is left
//     mounted or running after a crash.
//   - No lock is held while a container runs, except the agent's own.
//
// The protocols that cross processes are written down in protocol.go.
package container
