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

// TestStartMapping: StartMapping returns with the child made; where
// newuidmap and newgidmap write the maps, the child has none until mapIDs
// ran (it waits for them), and then runs its entry as Start's would. A map
// the helpers refuse fails mapIDs, with the child killed and reaped.
func TestStartMapping(t *testing.T) {
	m, err := DefaultMapping()
	if err != nil {
		t.Fatal(err)
	}
	cmd := Command(m, "rootless-test-show")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	mapIDs, err := cmd.StartMapping()
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if m.Helpers && len(before) != 0 {
		t.Errorf("uid_map before mapIDs: %q, want none", before)
	}
	var want strings.Builder
	for _, x := range m.UIDs {
		fmt.Fprintf(&want, "%d %d %d\n", x.ContainerID, x.HostID, x.Size)
	}
	if !m.Helpers && normalize(string(before)) != want.String() {
		t.Errorf("uid_map without helpers: %q, want %q", before, want.String())
	}
	if err := mapIDs(); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if ee, ok := err.(interface{ ExitCode() int }); !ok || ee.ExitCode() != 7 || !strings.HasPrefix(stdout.String(), "uid=0 gid=0") {
		t.Fatalf("child: %v, printed %q, want exit status 7 as root; stderr: %s", err, stdout.String(), stderr.String())
	}
	if !m.Helpers {
		return
	}
	bad := m
	bad.UIDs = append([]IDMap{}, m.UIDs...)
	bad.UIDs[len(bad.UIDs)-1].Size++ // one more than the range holds
	cmd = Command(bad, "rootless-test-show")
	if mapIDs, err = cmd.StartMapping(); err != nil {
		t.Fatal(err)
	}
	if err := mapIDs(); err == nil || !strings.Contains(err.Error(), "newuidmap") {
		t.Errorf("mapIDs with a range too long: %v, want newuidmap's refusal", err)
	}
	if cmd.ProcessState == nil {
		t.Error("the child of a refused map was not reaped")
	}
}
