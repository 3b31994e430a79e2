//go:build linux

package rootless

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// GoLocked runs fn in a new goroutine locked to an OS thread other than the
// process's main one. fn may change what belongs to its thread alone (its
// namespaces, with setns or unshare; its capabilities and seccomp filters):
// when fn returns still locked, the Go runtime ends the thread with the
// goroutine, as it does every locked thread but the main one, which it keeps
// parked for ever with all it holds (a namespace stays alive, a mount
// namespace with all its mounts). fn may unlock its thread where it changed
// nothing.
func GoLocked(fn func()) {
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			fn()
			return
		}
		// While this goroutine holds the main thread, the next one gets
		// another.
		locked := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			close(locked)
			fn()
		}()
		<-locked
		runtime.UnlockOSThread()
	}()
}
