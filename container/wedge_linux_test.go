//go:build linux

package container

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	gofuse "github.com/hanwen/go-fuse/v2/fuse"
	"github.com/roost-containers/roost/rootless"
)

func TestMain(m *testing.M) {
	rootless.Register("wedge-helper", wedgeHelper)
	rootless.MaybeRunChild()
	os.Exit(m.Run())
}

// hangingRoot is a directory whose lookups never answer.
type hangingRoot struct{ fs.Inode }

func (*hangingRoot) Lookup(ctx context.Context, name string, out *gofuse.EntryOut) (*fs.Inode, syscall.Errno) {
	select {}
}

// wedgeHelper plays an agent that dies in a call on its own union: it
// mounts one in its namespaces, records itself in DIR/agent.lock as the
// agent does, makes a call that its server never answers, and exits.
func wedgeHelper(args []string) int {
	dir := args[0]
	mnt := filepath.Join(dir, "rootfs")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := fs.Mount(mnt, &hangingRoot{}, &fs.Options{MountOptions: gofuse.MountOptions{DirectMountStrict: true, FsName: "wedge"}}); err != nil {
		fmt.Fprintln(os.Stderr, "mount:", err)
		return 1
	}
	lock, err := os.OpenFile(filepath.Join(dir, "agent.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil || syscall.Flock(int(lock.Fd()), syscall.LOCK_EX) != nil {
		fmt.Fprintln(os.Stderr, "lock:", err)
		return 1
	}
	writeLockInfo(lock, mnt)
	go os.Stat(filepath.Join(mnt, "x"))
	time.Sleep(300 * time.Millisecond) // the server has taken the lookup
	os.Exit(0)
	return 0
}

// TestWedgedAgent: a container whose agent died in a call on its own union
// (see wedge_linux.go) is seen as exited, and its lock is free.
func TestWedgedAgent(t *testing.T) {
	if _, err := os.Stat("/sys/fs/fuse/connections"); err != nil {
		t.Fatalf("needs the FUSE control filesystem (mount -t fusectl none /sys/fs/fuse/connections): %v", err)
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Fatalf("needs /dev/fuse: %v", err)
	}
	mapping, err := rootless.DefaultMapping()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := rootless.Command(mapping, "wedge-helper", dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		// Should the test fail, the helper must not stay wedged.
		if p, conn := readLockInfo(dir); p != 0 {
			os.WriteFile(fmt.Sprintf("/sys/fs/fuse/connections/%d/abort", conn), []byte("1"), 0)
		}
		cmd.Process.Kill()
	})
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	wedged := false
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if dying(pid) && lockHeld(dir) {
			wedged = true
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("the helper ended before it wedged: %v", err)
		default:
		}
	}
	if !wedged {
		t.Fatal("the helper did not wedge")
	}
	if agentAlive(dir) {
		t.Error("a wedged agent is reported alive")
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the wedged helper did not end once its connection was aborted")
	}
	if lockHeld(dir) {
		t.Error("the lock is still held")
	}
}
