//go:build linux

package rootless

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
)

func init() {
	Register("rootless-test-show", func(args []string) int {
		uidMap, err := os.ReadFile("/proc/self/uid_map")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		gidMap, err := os.ReadFile("/proc/self/gid_map")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		// Root of the namespace with its capabilities may mount.
		if err := syscall.Mount("none", "/tmp", "tmpfs", 0, ""); err != nil {
			fmt.Fprintln(os.Stderr, "mount tmpfs:", err)
			return 2
		}
		fmt.Printf("uid=%d gid=%d args=%s env=%q\n", os.Getuid(), os.Getgid(), strings.Join(args, ","), os.Getenv(envEntry)+os.Getenv(envSync))
		fmt.Print(normalize(string(uidMap)), "--\n", normalize(string(gidMap)))
		return 7
	})
}

func TestMain(m *testing.M) {
	MaybeRunChild()
	os.Exit(m.Run())
}

func testingAsRoot() bool { return os.Getuid() == 0 }

// normalize collapses the kernel's column padding in /proc/PID/uid_map.
func normalize(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		b.WriteString(strings.Join(strings.Fields(line), " ") + "\n")
	}
	return b.String()
}

// TestReexec runs an entry point in a new user namespace with the caller's
// default mapping: run it as root, as a user with a subuid range and as one
// without, to cover all three mappings.
func TestReexec(t *testing.T) {
	m, err := DefaultMapping()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mapping %s: %+v", m.Kind(), m)
	cmd := Command(m, "rootless-test-show", "a", "b")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if ee, ok := err.(interface{ ExitCode() int }); !ok || ee.ExitCode() != 7 {
		t.Fatalf("run child: %v, want exit status 7; stderr: %s", err, stderr.String())
	}
	var want strings.Builder
	fmt.Fprintf(&want, "uid=0 gid=0 args=a,b env=\"\"\n")
	for _, x := range m.UIDs {
		fmt.Fprintf(&want, "%d %d %d\n", x.ContainerID, x.HostID, x.Size)
	}
	want.WriteString("--\n")
	for _, x := range m.GIDs {
		fmt.Fprintf(&want, "%d %d %d\n", x.ContainerID, x.HostID, x.Size)
	}
	if got := stdout.String(); got != want.String() {
		t.Errorf("child printed\n%s\nwant\n%s", got, want.String())
	}
}
