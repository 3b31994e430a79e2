package integration

import (
	"archive/tar"
	"os"
	"path/filepath"
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
	// What the profile allows works: a netlink socket (busybox ip reads the
	// interfaces with one), behind the profile's first socket rule.
	if out := e.ok("run", "--rm", img, "ip", "addr", "show", "lo"); !strings.Contains(out, "127.0.0.1") {
		t.Errorf("ip addr show lo under the default profile: %q", out)
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
	notSupported := e.path("notify.json")
	if err := os.WriteFile(notSupported, []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_NOTIFY"}]}`), 0o644); err != nil {
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

// TestSymlinkEscape: symlinks in the image or the writable layer that point
// out of the container (absolute, or up with ..) cannot make roost create,
// mount or write anything outside the container's root: every mount target
// resolves inside the root, as if the root were /.
func TestSymlinkEscape(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	// outside stands for the user's ~/.ssh: the container must not reach it.
	// Each link points at a directory of its own there.
	outside := e.path("outside")
	for _, d := range []string{"etc", "proc", "up", "abs", "data", "scratch"} {
		if err := os.MkdirAll(filepath.Join(outside, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	up := func(d string) string {
		return strings.Repeat("../", 20) + strings.TrimPrefix(filepath.Join(outside, d), "/")
	}
	es := busyboxEntries(t)
	for _, a := range []string{"mkdir", "ln", "mv", "grep", "touch", "test", "rm"} {
		es = append(es, entry{name: "bin/" + a, typ: tar.TypeSymlink, linkname: "busybox"})
	}
	var trapped []entry
	for _, en := range es {
		if !strings.HasPrefix(en.name, "etc/") {
			trapped = append(trapped, en)
		}
	}
	trapped = append(trapped,
		entry{name: "etc", typ: tar.TypeSymlink, linkname: filepath.Join(outside, "etc")}, // /etc/hosts, /etc/resolv.conf, ...
		entry{name: "proc", typ: tar.TypeSymlink, linkname: up("proc")},
		entry{name: "mnt/", typ: tar.TypeDir},
		entry{name: "mnt/up", typ: tar.TypeSymlink, linkname: up("up")},
		entry{name: "mnt/abs", typ: tar.TypeSymlink, linkname: filepath.Join(outside, "abs")},
	)
	writeTar(t, e.path("trap.tar"), trapped)
	e.importTar(e.path("trap.tar"), "trap")
	src := e.path("src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "marker"), []byte("inside\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantEmpty := func(when string) {
		t.Helper()
		for _, d := range dirList(t, outside) {
			if names := dirList(t, filepath.Join(outside, d)); len(names) > 0 {
				t.Errorf("%s: roost wrote outside the container: %s/%s holds %v", when, outside, d, names)
			}
		}
	}
	// In the container the links resolve to paths inside the root, where
	// the mounts are; the masked paths stay masked.
	in := func(d string) string { return filepath.Join(outside, d) }
	r := e.run("run", "--rm", "-v", src+":/mnt/up/vol", "--mount", "type=bind,src="+src+",dst=/mnt/abs/bind",
		"--tmpfs", "/mnt/up/tmp", "--device", "/dev/null:/mnt/abs/devnull", "trap", "sh", "-c",
		"cat "+in("up/vol/marker")+" "+in("abs/bind/marker")+" && test -c "+in("abs/devnull")+" && touch "+in("up/tmp/t")+
			" && grep -q localhost "+in("etc/hosts")+" && test -f /proc/self/status && test ! -s /proc/kcore && echo ok")
	if r.code != 0 || r.stdout != "inside\ninside\nok\n" {
		t.Errorf("mounts at symlinked targets: %s", r)
	}
	wantEmpty("run with -v, --mount, --tmpfs and --device at symlinked targets")

	// Links the container itself makes in its writable layer, met when the
	// container starts again.
	e.ok("create", "--name", "again", "-v", src+":/data/sub/vol", "--tmpfs", "/scratch/sub", busyboxImage(t, e, "bb"), "sh", "-c",
		"test -L /data && exit 0; mv /data /data.old && ln -s "+in("data")+" /data && mv /scratch /scratch.old && ln -s "+up("scratch")+" /scratch")
	e.ok("start", "-a", "again")
	if out := e.ok("start", "-a", "again"); out != "" {
		t.Errorf("second start: %q", out)
	}
	wantEmpty("a restart over links made in the writable layer")
	e.ok("rm", "-f", "again")

	// import of a directory keeps a link out of it a link: the file it
	// points at is not read into the image.
	secret := filepath.Join(outside, "abs", "id_ed25519")
	if err := os.WriteFile(secret, []byte("SECRET\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(secret)
	dir := e.path("importdir")
	for _, en := range busyboxEntries(t) {
		if en.typ == tar.TypeSymlink || en.typ == tar.TypeDir || strings.HasSuffix(en.name, "/") {
			continue
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(en.name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, en.name), []byte(en.body), os.FileMode(en.mode)|0o400); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(secret, filepath.Join(dir, "key")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("busybox", filepath.Join(dir, "bin", "sh")); err != nil {
		t.Fatal(err)
	}
	e.ok("import", dir, "fromdir:1")
	r = e.run("run", "--rm", "fromdir:1", "/bin/busybox", "sh", "-c", "/bin/busybox readlink /key; /bin/busybox cat /key")
	if r.stdout != secret+"\n" || strings.Contains(r.stdout+r.stderr, "SECRET") {
		t.Errorf("a link out of an imported directory: %s", r)
	}
}

func dirList(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}
