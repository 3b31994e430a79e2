package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestChownRecorded: a chown in a container gives the file its owner in
// the layers roost makes of it (build, commit), whether or not the user has
// a subuid range. With a range the kernel chowns; without one the agent
// records the owner the call asks for (see container/chown_linux.go).
func TestChownRecorded(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	img := runImage(t, e)
	single := singleMapping(t, e, img)

	// RUN: chown, chown -h of a link (the link, not its target), a
	// relative path from the working directory, a directory, and -1 (an
	// id left as it is).
	ctx := buildContext(t, e, "ctx", map[string]string{"Dockerfile": `FROM busybox
WORKDIR /work
RUN touch /f /g rel && ln -s /g /link && chown 33:33 /f && chown -h 1:1 /link && chown 5:6 rel && chown 7:8 . && chown :9 /g
RUN chown 44 /etc/passwd
`})
	e.ok("build", "-t", "chowned", ctx)
	e.wantOwners("chowned", map[string]string{
		"f": "33:33 644", "link": "1:1 777", "g": "0:9 644", "work/rel": "5:6 644", "work": "7:8 755",
		// A file of a lower layer: copied up with its owner changed.
		"etc/passwd": "44:0 644",
	})

	// A missing path fails as the kernel says, and the step with it.
	r := e.run("run", "--rm", img, "chown", "1", "/nope")
	if r.code == 0 || !strings.Contains(r.stderr, "No such file or directory") {
		t.Errorf("chown 1 /nope: want ENOENT, got %s", r)
	}
	r = e.run("run", "--rm", img, "sh", "-c", "touch /f && chown 1 /f/x")
	if r.code == 0 || !strings.Contains(r.stderr, "Not a directory") {
		t.Errorf("chown 1 /f/x: want ENOTDIR, got %s", r)
	}

	r = e.run("run", "--rm", "--read-only", img, "chown", "1", "/bin")
	if r.code == 0 || !strings.Contains(r.stderr, "Read-only file system") {
		t.Errorf("chown 1 /bin in a --read-only container: want EROFS, got %s", r)
	}

	// commit: of what the container's command chowned, and of what a
	// process started with exec chowned.
	e.ok("run", "--name", "c1", img, "sh", "-c", "mkdir /data && cd /data && touch x && chown 5:6 x && chown 2:3 .")
	e.ok("commit", "c1", "committed")
	e.wantOwners("committed", map[string]string{"data/x": "5:6 644", "data": "2:3 755"})
	e.ok("run", "-d", "--name", "c2", img, "sleep", "1000")
	t.Cleanup(func() { e.run("rm", "-f", "c2") })
	e.ok("exec", "c2", "sh", "-c", "touch /e && chown 12:13 /e && chown 14:33 /var/www")
	e.ok("commit", "c2", "exec-committed")
	e.wantOwners("exec-committed", map[string]string{"e": "12:13 644", "var/www": "14:33 755"})

	// A tmpfs is not the container's root: the call succeeds (and, with
	// a single id, changes nothing there).
	out := e.ok("run", "--rm", "--tmpfs", "/scratch", img, "sh", "-c", "touch /scratch/f && chown 33:33 /scratch/f && stat -c %u:%g /scratch/f")
	if want := "33:33\n"; single && out != "0:0\n" || !single && out != want {
		t.Errorf("chown on a tmpfs: stat says %q (single id: %v)", out, single)
	}
	// Inside, an id the namespace does not map shows as root; with a
	// range, as itself.
	out = e.ok("run", "--rm", img, "sh", "-c", "touch /f && chown 33:33 /f && stat -c %u:%g /f")
	if single && out != "0:0\n" || !single && out != "33:33\n" {
		t.Errorf("stat after chown 33:33: %q (single id: %v)", out, single)
	}
}

// TestBuildAptInstallOwners: apt-get install in a RUN gives the files the
// owners dpkg sets, those the package's data carries (root:adm) and those
// its maintainer script chowns (www-data), in the image's layer, whether or
// not the user has a subuid range.
func TestBuildAptInstallOwners(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	img := debianImage(t, e)
	fakeroot := needTool(t, "fakeroot", "fakeroot")
	dpkgDeb := needTool(t, "dpkg-deb", "dpkg")
	ctx := buildContext(t, e, "ctx", map[string]string{
		"Dockerfile": "FROM " + img + "\nCOPY owners_1.0_all.deb /tmp/\n" +
			"RUN apt-get install -y /tmp/owners_1.0_all.deb && rm /tmp/owners_1.0_all.deb\n",
	})
	src := buildContext(t, e, "debsrc", map[string]string{
		"DEBIAN/control":     "Package: owners\nVersion: 1.0\nArchitecture: all\nMaintainer: roost <roost@localhost>\nDescription: roost test package\n",
		"DEBIAN/postinst":    "#!/bin/sh\nset -e\nchown www-data:www-data /var/lib/owners/data\n",
		"var/log/owners/log": "log\n", "var/lib/owners/data": "data\n",
	})
	if err := os.Chmod(filepath.Join(src, "DEBIAN/postinst"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The data's owners as a package built as root would carry them.
	script := "chown -R 0:0 . && chown 0:4 var/log/owners var/log/owners/log && chmod 2750 var/log/owners && chmod 640 var/log/owners/log && " +
		dpkgDeb + " --build . " + filepath.Join(ctx, "owners_1.0_all.deb")
	cmd := exec.Command(fakeroot, "sh", "-c", script)
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb --build under fakeroot: %v\n%s", err, out)
	}
	e.ok("build", "--network", "none", "-t", "owners", ctx)
	e.wantOwners("owners", map[string]string{
		"var/log/owners":      "0:4 2750",
		"var/log/owners/log":  "0:4 640",
		"var/lib/owners/data": "33:33 644",
	})
}
