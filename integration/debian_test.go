package integration

import (
	"archive/tar"
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// debianImage imports a small Debian root filesystem made of the host's own
// installed Debian packages (apt, dpkg, a shell, coreutils and everything
// they depend on), with a dpkg database that lists them, and returns its
// reference. It needs a Debian host (dpkg-query); no network, no root.
func debianImage(t *testing.T, e *roostEnv) string {
	t.Helper()
	dpkgQuery := needTool(t, "dpkg-query", "dpkg")
	pkgs := installedClosure(t, dpkgQuery, "apt", "dpkg", "dash", "bash", "coreutils", "base-files", "base-passwd",
		"debianutils", "sed", "grep", "tar", "gzip", "findutils", "diffutils", "perl-base", "mawk", "util-linux", "libc-bin")
	p := e.path("debian.tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	seen := map[string]bool{}
	add := func(h *tar.Header, body io.Reader) {
		if seen[h.Name] {
			return
		}
		seen[h.Name] = true
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if body != nil {
			if _, err := io.Copy(tw, body); err != nil {
				t.Fatal(err)
			}
		}
	}
	// addHost adds a host path as it is (parents first), owned by root.
	var addHost func(p string)
	addHost = func(p string) {
		name := strings.TrimPrefix(p, "/")
		if name == "" || seen[name] || seen[name+"/"] {
			return
		}
		addHost(filepath.Dir(p))
		fi, err := os.Lstat(p)
		if err != nil {
			return // a diversion or a file the admin removed
		}
		link := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				t.Fatal(err)
			}
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			t.Fatal(err)
		}
		h.Name, h.Uid, h.Gid, h.Uname, h.Gname = name, 0, 0, "root", "root"
		if fi.IsDir() {
			h.Name += "/"
		}
		if !fi.Mode().IsRegular() {
			add(h, nil)
			return
		}
		r, err := os.Open(p)
		if err != nil {
			t.Fatalf("%s: %v (the Debian test image is made of the host's packages)", p, err)
		}
		defer r.Close()
		add(h, r)
	}
	var status strings.Builder
	for _, pkg := range pkgs {
		out, err := exec.Command(dpkgQuery, "-L", pkg).Output()
		if err != nil {
			t.Fatalf("dpkg-query -L %s: %v", pkg, err)
		}
		for _, l := range lines(string(out)) {
			if strings.HasPrefix(l, "/") {
				addHost(l)
			}
		}
		for _, suffix := range []string{".list", ".md5sums"} {
			for _, name := range []string{pkg, pkg + ":amd64", pkg + ":arm64"} {
				if _, err := os.Stat("/var/lib/dpkg/info/" + name + suffix); err == nil {
					addHost("/var/lib/dpkg/info/" + name + suffix)
				}
			}
		}
		entry, err := exec.Command(dpkgQuery, "-s", pkg).Output()
		if err != nil {
			t.Fatalf("dpkg-query -s %s: %v", pkg, err)
		}
		status.WriteString(strings.TrimSpace(string(entry)) + "\n\n")
	}
	for _, d := range []string{"tmp/", "root/", "var/", "var/lib/", "var/lib/dpkg/", "var/lib/dpkg/updates/", "var/lib/dpkg/triggers/",
		"var/lib/apt/", "var/lib/apt/lists/", "var/lib/apt/lists/partial/", "var/cache/", "var/cache/apt/", "var/cache/apt/archives/",
		"var/cache/apt/archives/partial/", "var/log/", "var/log/apt/", "etc/", "etc/apt/", "etc/apt/apt.conf.d/",
		"etc/apt/preferences.d/", "etc/apt/sources.list.d/", "etc/apt/trusted.gpg.d/", "var/www/"} {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		add(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: mode, ModTime: fixedTime}, nil)
	}
	for name, body := range map[string]string{
		"var/lib/dpkg/status":    status.String(),
		"var/lib/dpkg/available": "",
		"etc/passwd":             "root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n_apt:x:42:65534::/nonexistent:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
		"etc/group":              "root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\n",
	} {
		add(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body)), ModTime: fixedTime}, strings.NewReader(body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	e.importTar(p, "debian-host", "--change", `CMD ["bash"]`)
	return "debian-host"
}

// installedClosure is pkgs and every installed package they depend on.
func installedClosure(t *testing.T, dpkgQuery string, pkgs ...string) []string {
	t.Helper()
	seen := map[string]bool{}
	for len(pkgs) > 0 {
		p := pkgs[0]
		pkgs = pkgs[1:]
		if seen[p] {
			continue
		}
		out, err := exec.Command(dpkgQuery, "-W", "-f", "${Status}\n${Pre-Depends}, ${Depends}", p).Output()
		if err != nil || !strings.Contains(string(out), "ok installed") {
			continue // not installed here: an alternative is
		}
		seen[p] = true
		_, deps, _ := strings.Cut(string(out), "\n")
		for _, d := range strings.Split(deps, ",") {
			d, _, _ = strings.Cut(d, "|")
			d, _, _ = strings.Cut(d, "(")
			d, _, _ = strings.Cut(strings.TrimSpace(d), ":")
			if d != "" {
				pkgs = append(pkgs, d)
			}
		}
	}
	for _, must := range []string{"apt", "dpkg", "dash", "coreutils"} {
		if !seen[must] {
			t.Fatalf("the Debian package %s is not installed on this host: the Debian test image is made of the host's packages", must)
		}
	}
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// testDeb builds a package whose maintainer script hands a file to
// www-data, with dpkg-deb, and returns its path.
func testDeb(t *testing.T, e *roostEnv) string {
	t.Helper()
	dpkgDeb := needTool(t, "dpkg-deb", "dpkg")
	root := e.path("debsrc")
	for name, body := range map[string]string{
		"DEBIAN/control":              "Package: roosttest\nVersion: 1.0\nArchitecture: all\nMaintainer: roost <roost@localhost>\nDescription: roost test package\n",
		"DEBIAN/postinst":             "#!/bin/sh\nset -e\nchown www-data:www-data /var/lib/roosttest/owned\n",
		"var/lib/roosttest/owned":     "owned\n",
		"usr/share/roosttest/content": "content\n",
	} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, "postinst") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	deb := e.path("debs", "roosttest_1.0_all.deb")
	if err := os.MkdirAll(filepath.Dir(deb), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(dpkgDeb, "--root-owner-group", "--build", root, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb --build: %v\n%s", err, out)
	}
	return deb
}

// TestAptInstall: dpkg and apt install a package (maintainer script with
// chown, apt's _apt sandbox) with or without a subuid range.
func TestAptInstall(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	img := debianImage(t, e)
	deb := testDeb(t, e)
	mnt := filepath.Dir(deb) + ":/debs:ro"

	out := e.ok("run", "--rm", "--network", "none", "-v", mnt, img, "sh", "-c",
		"dpkg -i /debs/roosttest_1.0_all.deb >/dev/null && dpkg-query -W -f '${Status}\\n' roosttest && cat /usr/share/roosttest/content")
	if out != "install ok installed\ncontent\n" {
		t.Errorf("dpkg -i: %q", out)
	}
	r := e.run("run", "--rm", "--network", "none", "-v", mnt, img, "sh", "-c",
		"apt-get install -y /debs/roosttest_1.0_all.deb && dpkg-query -W -f '${Status}\\n' roosttest && stat -c %u /var/lib/roosttest/owned")
	if r.code != 0 || !strings.Contains(r.stdout, "install ok installed\n") {
		t.Fatalf("apt-get install: %s", r)
	}
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	var last string
	for sc.Scan() {
		last = sc.Text()
	}
	if !singleMapping(t, e, img) && last != "33" {
		t.Errorf("with a subuid range the maintainer script's chown is real: owner %q", last)
	}
}

// TestShortDynamicRuns: a dynamically linked program that exits at once,
// while its agent may still be preloading its libraries through the union
// it serves, leaves no agent behind (one that exited in the middle of such
// a call would wait for its own answer forever, in D state).
func TestShortDynamicRuns(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	img := debianImage(t, e)
	for i := 0; i < 30; i++ {
		if out := e.ok("run", "--rm", "--network", "none", img, "apt-get", "--version"); !strings.HasPrefix(out, "apt ") {
			t.Fatalf("apt-get --version printed %q", out)
		}
	}
	left := func() (n int) {
		for _, p := range roostProcesses(t) {
			if strings.Contains(p, e.dir) {
				n++
			}
		}
		return n
	}
	if n := settle(left, 0); n > 0 {
		t.Errorf("agents left after 30 run --rm of a dynamic program: %v", roostProcesses(t))
	}
}
