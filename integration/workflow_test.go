package integration

import (
	"archive/tar"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
)

// registryImage builds the seed's registry:2 from Debian's docker-registry
// binary, the libc it needs and a config that serves :5000 without auth.
func registryImage(t *testing.T, e *roostEnv) {
	t.Helper()
	bin := needTool(t, "docker-registry", "docker-registry")
	var es []entry
	for _, f := range []struct{ src, dst string }{
		{bin, "usr/bin/docker-registry"},
		{"/lib/x86_64-linux-gnu/libc.so.6", "lib/x86_64-linux-gnu/libc.so.6"},
		{"/lib64/ld-linux-x86-64.so.2", "lib64/ld-linux-x86-64.so.2"},
	} {
		b, err := os.ReadFile(f.src)
		if err != nil {
			t.Fatalf("registry image: %v (install docker-registry and libc6)", err)
		}
		es = append(es, entry{name: f.dst, body: string(b), mode: 0o755})
	}
	es = append(es,
		entry{name: "etc/docker/registry/config.yml", body: "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/registry\nhttp:\n  addr: :5000\n"},
		entry{name: "var/lib/registry/", typ: tar.TypeDir},
		entry{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
	)
	p := e.path("registry.tar")
	writeTar(t, p, es)
	e.importTar(p, "registry:2", "-c", `ENTRYPOINT ["/usr/bin/docker-registry"]`, "-c", `CMD ["serve", "/etc/docker/registry/config.yml"]`,
		"-c", "EXPOSE 5000", "-c", "VOLUME /var/lib/registry")
}

// TestLocalRegistryWorkflow is the seed's workflow, all with roost: a
// registry in a container with a published port and a restart policy, and
// push and pull through it.
func TestLocalRegistryWorkflow(t *testing.T) {
	e := newRoost(t)
	img := runImage(t, e)
	registryImage(t, e)
	port := freePort(t)
	e.ok("run", "-d", "-p", fmt.Sprintf("%d:5000", port), "--restart", "always", "--name", "registry", "registry:2")
	t.Cleanup(func() { e.run("rm", "-f", "-v", "registry") })
	var catalog string
	waitFor(t, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://localhost:%d/v2/_catalog", port))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		catalog = string(b)
		return resp.StatusCode == 200
	})
	if !strings.Contains(catalog, `"repositories":[]`) {
		t.Errorf("catalog of a new registry: %s", catalog)
	}
	ref := fmt.Sprintf("localhost:%d/ubuntu:16.04", port)
	e.ok("tag", img, ref)
	e.ok("push", ref)
	resp, err := http.Get(fmt.Sprintf("http://localhost:%d/v2/_catalog", port))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"ubuntu"`) {
		t.Errorf("catalog after push: %s", b)
	}
	e.ok("rmi", ref)
	e.ok("pull", ref)
	if out := e.ok("run", "--rm", ref, "cat", "/etc/os-release"); out != osRelease {
		t.Errorf("run of the pulled image: %q", out)
	}
	// Stopped and started again, the registry still has the image: its
	// data is in the image's VOLUME, which the container keeps.
	e.ok("kill", "-s", "KILL", "registry")
	e.ok("start", "registry")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("ps: %s\nlogs: %s\ninspect: %s", e.ok("ps", "-a"), e.run("logs", "--tail", "5", "registry").stderr, e.ok("inspect", "--format", "{{json .State}}", "registry"))
		}
	})
	var tags string
	waitFor(t, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://localhost:%d/v2/ubuntu/tags/list", port))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		tags = string(b)
		return resp.StatusCode == 200
	})
	if !strings.Contains(tags, "16.04") {
		t.Errorf("tags after a restart: %s", tags)
	}
}
