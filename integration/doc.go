// Package integration holds roost's end-to-end tests. They drive only the built
// binary, through its command line, as the unprivileged user that runs them,
// each test with its own storage root, configuration and runtime directories
// under t.TempDir().
//
// The binary is $ROOST_BIN when set; otherwise TestMain builds it once with
// `go build` (CGO_ENABLED=0) into a temp directory. The tests refuse to run as
// root: .ci/run runs them as two unprivileged users, one with a subuid/subgid
// range and one without.
//
// Tests that use other tools (podman, skopeo, busybox from busybox-static)
// fail with a message naming what is missing; nothing is skipped silently.
// Benchmarks live in bench/, never here.
package integration
