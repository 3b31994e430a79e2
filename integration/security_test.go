package integration

import (
	"os"
	"strings"
	"testing"
)

// singleMapping tells whether containers here get a single id (no subuid
// range): the container's uid_map then has one line of size 1.
func singleMapping(t *testing.T, e *roostEnv, img string) bool {
	t.Helper()
	m := lines(e.ok("run", "--rm", img, "cat", "/proc/self/uid_map"))
	return len(m) == 1 && strings.HasSuffix(strings.Join(strings.Fields(m[0]), " "), " 1")
}

// TestSeccomp: Docker's default profile, unconfined, and a profile of the
// user's, in run and in exec.
func TestSeccomp(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	img := runImage(t, e)

	// Creating a user namespace needs no capability, so only seccomp refuses
	// it: Docker's default profile allows unshare with CAP_SYS_ADMIN only.
	r := e.run("run", "--rm", img, "unshare", "-U", "true")
	if r.code != 1 || !strings.Contains(r.stderr, "Operation not permitted") {
		t.Errorf("unshare -U under the default profile: want EPERM, got %s", r)
	}
	e.ok("run", "--rm", "--security-opt", "seccomp=unconfined", img, "unshare", "-U", "true")
	e.ok("run", "--rm", "--security-opt", "seccomp:unconfined", img, "unshare", "-U", "true")
	if out := e.ok("run", "--rm", img, "grep", "^Seccomp:", "/proc/self/status"); !strings.Contains(out, "2") {
		t.Errorf("the command is not in seccomp filter mode: %q", out)
	}
	// The profile follows the capabilities, as Docker's: with SYS_ADMIN,
	// mount is allowed.
	r = e.run("run", "--rm", img, "mount", "-t", "tmpfs", "none", "/mnt")
	if r.code == 0 {
		t.Errorf("mount without CAP_SYS_ADMIN worked: %s", r)
	}
	e.ok("run", "--rm", "--cap-add", "SYS_ADMIN", img, "sh", "-c", "mkdir -p /mnt && mount -t tmpfs none /mnt && grep -q ' /mnt tmpfs' /proc/mounts")

	// A profile of the user's, in Docker's format.
	prof := e.path("nomkdir.json")
	if err := os.WriteFile(prof, []byte(`{
		"defaultAction": "SCMP_ACT_ALLOW",
		"syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
	}`), 0o644); err != nil {
		t.Fatal(err)
	}
	r = e.run("run", "--rm", "--security-opt", "seccomp="+prof, img, "sh", "-c", "mkdir /tmp/d")
	if r.code == 0 || !strings.Contains(r.stderr, "Operation not permitted") {
		t.Errorf("mkdir under a profile that denies it: %s", r)
	}
	if out := e.ok("run", "--rm", "--security-opt", "seccomp="+prof, img, "sh", "-c", "touch /tmp/f && unshare -U true && echo ok"); out != "ok\n" {
		t.Errorf("under a profile that allows all but mkdir: %q", out)
	}
	// The profile is recorded by its contents, as Docker does: the
	// container keeps it when the file goes.
	e.ok("create", "--name", "custom", "--security-opt", "seccomp="+prof, img, "sh", "-c", "mkdir /tmp/d")
	if err := os.Remove(prof); err != nil {
		t.Fatal(err)
	}
	opts := e.ok("inspect", "--format", "{{json .HostConfig.SecurityOpt}}", "custom")
	if !strings.Contains(opts, `seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\"`) {
		t.Errorf("inspect SecurityOpt: %s", opts)
	}
	r = e.run("start", "-a", "custom")
	if r.code == 0 || !strings.Contains(r.stderr, "Operation not permitted") {
		t.Errorf("start of a container whose profile denies mkdir: %s", r)
	}

	// exec runs under the container's profile.
	e.ok("run", "-d", "--name", "box", img, "sleep", "300")
	waitFor(t, func() bool { return e.run("exec", "box", "true").code == 0 })
	r = e.run("exec", "box", "unshare", "-U", "true")
	if r.code != 1 || !strings.Contains(r.stderr, "Operation not permitted") {
		t.Errorf("exec unshare -U under the default profile: %s", r)
	}
	e.ok("rm", "-f", "box")
	e.ok("run", "-d", "--name", "free", "--security-opt", "seccomp=unconfined", img, "sleep", "300")
	waitFor(t, func() bool { return e.run("exec", "free", "true").code == 0 })
	e.ok("exec", "free", "unshare", "-U", "true")
	e.ok("rm", "-f", "free")

	// Bad profiles: one line, exit 125, nothing created.
	bad := e.path("bad.json")
	if err := os.WriteFile(bad, []byte(`{"defaultAction": `), 0o644); err != nil {
		t.Fatal(err)
	}
	notSupported := e.path("masked.json")
	if err := os.WriteFile(notSupported, []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":6,"valueTwo":2,"op":"SCMP_CMP_MASKED_EQ"}]}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	before := e.snapshot()
	for _, c := range []struct{ opt, want string }{
		{"seccomp=" + bad, "seccomp profile " + bad},
		{"seccomp=" + e.path("missing.json"), "no such file"},
		{"seccomp=" + notSupported, "not supported"},
		{"seccomp=", "seccomp profile"},
		{"apparmor=x", "not supported"},
	} {
		if msg := e.fails("run", "--rm", "--security-opt", c.opt, img, "true"); !strings.Contains(msg, c.want) {
			t.Errorf("--security-opt %s: %q does not say %q", c.opt, msg, c.want)
		}
	}
	e.wantUnchanged(before)
}

// TestChownWithoutSubuid: chown and the setuid family succeed in a
// container whether or not the user has a subuid range; with a range the
// owner is real.
func TestChownWithoutSubuid(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	img := runImage(t, e)
	out := e.ok("run", "--rm", img, "sh", "-c", "touch /tmp/f && chown 33:33 /tmp/f && chown -h 33 /tmp && echo chowned && stat -c %u /tmp/f")
	if !strings.HasPrefix(out, "chowned\n") {
		t.Fatalf("chown 33:33: %q", out)
	}
	if !singleMapping(t, e, img) && out != "chowned\n33\n" {
		t.Errorf("with a subuid range the owner is real: %q", out)
	}
	// Dropping privileges (setgroups, setgid, setuid) succeeds too.
	e.ok("run", "--rm", img, "su", "-s", "/bin/sh", "-c", "true", "www-data")
	// A profile that denies chown still wins.
	prof := e.path("nochown.json")
	if err := os.WriteFile(prof, []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["chown","fchownat","lchown","fchown"],"action":"SCMP_ACT_ERRNO"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.run("run", "--rm", "--security-opt", "seccomp="+prof, img, "sh", "-c", "touch /tmp/f && chown 33:33 /tmp/f")
	if r.code == 0 || !strings.Contains(r.stderr, "Operation not permitted") {
		t.Errorf("chown under a profile that denies it: %s", r)
	}
}
