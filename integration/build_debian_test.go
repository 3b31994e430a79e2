package integration

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// debianRootfs is a Debian bookworm root filesystem tar made with
// mmdebstrap in fakechroot mode (no root and no subuid range needed), kept
// under /var/tmp per user and day so that a CI run makes it once.
func debianRootfs(t *testing.T) string {
	t.Helper()
	needTool(t, "mmdebstrap", "mmdebstrap")
	needTool(t, "fakechroot", "fakechroot")
	needTool(t, "fakeroot", "fakeroot")
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("/var/tmp", "roost-test-"+u.Username)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "debian-bookworm-"+time.Now().UTC().Format("2006-01-02")+".tar")
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
		return p
	}
	os.RemoveAll(p) // not a tar: left by an older version of this function
	// mmdebstrap takes the format from the name unless told: a name that
	// does not end in .tar would give a directory.
	tmp := strings.TrimSuffix(p, ".tar") + ".tmp.tar"
	os.RemoveAll(tmp)
	cmd := exec.Command("mmdebstrap", "--mode=fakechroot", "--format=tar", "--variant=apt", "bookworm", tmp, "http://deb.debian.org/debian")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make a Debian root filesystem with mmdebstrap (it needs deb.debian.org): %v\n%s", err, out)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBuildDebianWebServer is the seed's example: a Debian base, a web
// server installed with apt-get in a RUN, COPY, EXPOSE, ENTRYPOINT and
// CMD; the image then runs with -p and answers an HTTP GET.
func TestBuildDebianWebServer(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	e.importTar(debianRootfs(t), "debian:bookworm")
	ctx := buildContext(t, e, "ctx", map[string]string{
		"Dockerfile": `FROM debian:bookworm
RUN apt-get update && apt-get install -y --no-install-recommends busybox && rm -rf /var/lib/apt/lists/*
COPY site/ /srv/www/
EXPOSE 80
ENTRYPOINT ["busybox", "httpd", "-f", "-p", "80"]
CMD ["-h", "/srv/www"]
`,
		"site/index.html": "hello from a Dockerfile\n",
	})
	r := e.run("image", "build", "--tag", "first-image:0.1", "-f", filepath.Join(ctx, "Dockerfile"), ctx)
	if r.code != 0 {
		if strings.Contains(r.stdout, "unable to sync directory") {
			t.Fatalf("dpkg cannot fsync a directory of the union filesystem (fuse: directory fsync is missing): %s", r)
		}
		if strings.Contains(r.stdout, "setgroups") || strings.Contains(r.stdout, "seteuid") {
			t.Fatalf("apt-get in RUN drops privileges to _apt (setgroups, seteuid to an id outside the user namespace), which fails without a subuid range until roost emulates it: %s", r)
		}
		if strings.Contains(r.stdout, "Temporary failure resolving") || strings.Contains(r.stdout, "Could not resolve") || strings.Contains(r.stdout, "Failed to fetch") {
			t.Fatalf("apt-get in RUN cannot reach deb.debian.org: RUN's container has no outbound network (roost's user-mode NAT is missing): %s", r)
		}
		t.Fatalf("build: %s", r)
	}
	port := freePort(t)
	e.ok("run", "-d", "--name", "web", "-p", fmt.Sprintf("%d:80", port), "first-image:0.1")
	t.Cleanup(func() { e.run("rm", "-f", "web") })
	var body string
	waitFor(t, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/index.html", port))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == 200
	})
	if body != "hello from a Dockerfile\n" {
		t.Errorf("GET / = %q", body)
	}
}
