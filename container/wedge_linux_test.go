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
	if len(args) > 1 && args[1] == "exec" {
		// A child on its way to exec a program on the union, as the
		// agent's fork of the command (direct_linux.go): it has the
		// agent's descriptors until the exec is done.
		go syscall.ForkExec(filepath.Join(mnt, "x"), []string{"x"}, &syscall.ProcAttr{Sys: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}})
	} else {
		go os.Stat(filepath.Join(mnt, "x"))
	}
	time.Sleep(300 * time.Millisecond) // the server has taken the lookup
	os.Exit(0)
	return 0
}

// TestWedgedAgent: a container whose agent died in a call on its own union
// (see wedge_linux.go), or while a child of it was on its way to exec a
// program from the union, is seen as exited, and its lock is free.
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
	for _, how := range []string{"call", "exec"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			cmd := rootless.Command(mapping, "wedge-helper", dir, how)
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pid := cmd.Process.Pid
			t.Cleanup(func() {
				// Should the test fail, nothing may stay wedged.
				if p, conn, _ := readLockInfo(dir); p != 0 {
					os.WriteFile(fmt.Sprintf("/sys/fs/fuse/connections/%d/abort", conn), []byte("1"), 0)
				}
				cmd.Process.Kill()
			})
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			// The helper wedges (call), or exits and leaves its child
			// wedged with the lock (exec).
			wedged := false
			for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
				if how == "call" && dying(pid) && lockHeld(dir) {
					wedged = true
					break
				}
				select {
				case err := <-exited:
					if how == "call" {
						t.Fatalf("the helper ended before it wedged: %v", err)
					}
					wedged = lockHeld(dir)
					if !wedged {
						t.Fatal("the helper's child did not keep the lock")
					}
				default:
				}
				if wedged {
					break
				}
			}
			if !wedged {
				t.Fatal("the helper did not wedge")
			}
			if agentAlive(dir) {
				t.Error("a wedged agent is reported alive")
			}
			if how == "call" {
				select {
				case <-exited:
				case <-time.After(10 * time.Second):
					t.Fatal("the wedged helper did not end once its connection was aborted")
				}
			}
			for end := time.Now().Add(10 * time.Second); lockHeld(dir) && time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			}
			if lockHeld(dir) {
				t.Error("the lock is still held")
			}
		})
	}
}
