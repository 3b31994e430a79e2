//go:build linux

package fuse

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/roost-containers/roost/rootless"
)

// TestMain runs the tests in a new user and mount namespace (mounting needs
// one; the host's mount table never sees a test mount), mapped as
// rootless.DefaultMapping says for the calling user.
func TestMain(m *testing.M) {
	rootless.Register("fuse-test", func([]string) int { return m.Run() })
	rootless.MaybeRunChild()
	// Fuzzing (go test -fuzz) runs here: its targets need no mount, and its
	// workers are started again by os.Args[0].
	for _, a := range os.Args[1:] {
		if strings.HasPrefix(a, "-test.fuzz") {
			os.Exit(m.Run())
		}
	}

	mapping, err := rootless.DefaultMapping()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fuse tests:", err)
		os.Exit(2)
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		fmt.Fprintln(os.Stderr, "fuse tests need /dev/fuse (modprobe fuse; chmod 0666 /dev/fuse):", err)
		os.Exit(2)
	}
	cmd := rootless.Command(mapping, "fuse-test", os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		os.Exit(0)
	case errors.As(err, &ee):
		os.Exit(ee.ExitCode())
	}
	fmt.Fprintf(os.Stderr, "fuse tests: run in a user namespace (%s mapping): %v\n", mapping.Kind(), err)
	os.Exit(2)
}
