package integration

import (
	"strings"
	"testing"
)

// TestCommit: a stopped container's changes (a new file, a deletion)
// become an image with the container's config and -c changes; a running
// container is committed paused and keeps running.
func TestCommit(t *testing.T) {
	t.Parallel()
	e := newRoost(t)
	img := runImage(t, e)
	e.ok("run", "--name", "c1", "-e", "FROM_RUN=1", "-w", "/tmp", img, "sh", "-c", "echo made > /made && rm /etc/os-release")
	id := strings.TrimSpace(e.ok("commit", "-m", "a message", "-a", "someone", "-c", `CMD ["cat", "/made"]`, "c1", "committed:1"))
	if !isImageID(id) {
		t.Fatalf("commit printed %q, want an image ID", id)
	}
	if got := e.ok("run", "--rm", "committed:1"); got != "made\n" {
		t.Errorf("the committed image's CMD printed %q", got)
	}
	if got := e.runOut("committed:1", "test -e /etc/os-release && echo present || echo deleted; pwd; echo $FROM_RUN"); got != "deleted\n/tmp\n1\n" {
		t.Errorf("the committed image: %q", got)
	}
	files := e.imageFiles("committed:1")
	if _, ok := files["etc/hosts"]; ok {
		t.Errorf("the commit's layer has the mount point /etc/hosts that init made")
	}
	if a := strings.TrimSpace(e.ok("inspect", "--format", "{{.Author}} {{.Comment}}", "committed:1")); a != "someone a message" {
		t.Errorf("Author and Comment: %q", a)
	}

	e.ok("run", "-d", "--name", "c2", img, "sh", "-c", "echo live > /live; sleep 300")
	waitFor(t, func() bool { return e.run("exec", "c2", "test", "-e", "/live").code == 0 })
	e.ok("commit", "c2", "committed:2")
	if got := e.runOut("committed:2", "cat /live"); got != "live\n" {
		t.Errorf("committed while running: /live = %q", got)
	}
	if st := e.inspectContainer("c2").State.Status; st != "running" {
		t.Errorf("after commit the container is %s, want running", st)
	}
	e.ok("rm", "-f", "c2")
	if msg := e.fails("commit", "nosuchcontainer"); !strings.Contains(msg, "nosuchcontainer") {
		t.Errorf("commit of a missing container: %q", msg)
	}
}
