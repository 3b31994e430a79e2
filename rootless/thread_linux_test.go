//go:build linux

package rootless

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestGoLockedOffMainThread: fn never runs on the process's main thread,
// which the runtime would keep, changed, for ever.
func TestGoLockedOffMainThread(t *testing.T) {
	onMain := 0
	for range 500 {
		done := make(chan bool)
		GoLocked(func() { done <- unix.Gettid() == unix.Getpid() })
		if <-done {
			onMain++
		}
	}
	if onMain > 0 {
		t.Errorf("fn ran on the main thread %d times in 500", onMain)
	}
}
