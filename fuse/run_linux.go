//go:build linux

package fuse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"syscall"

	"github.com/roost-containers/roost/rootless"
)

// RunOptions say what RunMounted runs.
type RunOptions struct {
	// Layers are the image's layers, bottom first: each a layer tar and the
	// path of its index (layers.Store.LayerTar and LayerIndex).
	Layers []LayerFiles
	// TempDir is where the throw-away writable layer and the mountpoint are
	// made; RunMounted removes what it made there before it returns.
	TempDir string
	// Command and its arguments; it runs with $ROOST_MOUNT set to the mountpoint.
	Command []string
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
}

// LayerFiles names the files of one stored layer.
type LayerFiles struct {
	Tar   string `json:"tar"`
	Index string `json:"index"`
}

// runSpec is what the parent hands the child entry point "fuse-run" (as its
// only argument, JSON).
type runSpec struct {
	Layers   []LayerFiles `json:"layers"`
	Writable string       `json:"writable"`
	Mount    string       `json:"mount"`
	Command  []string     `json:"command"`
}

const runEntry = "fuse-run"

func init() { rootless.Register(runEntry, runChild) }

// RunMounted runs a command in a new user and mount namespace with the union
// of the layers mounted, writable, at $ROOST_MOUNT; the changes are thrown
// away afterwards. It returns the command's exit status (126 when it cannot
// be started, 127 when it is not found) or an error when roost itself failed.
// The binary's main must call rootless.MaybeRunChild.
func RunMounted(ctx context.Context, opts RunOptions) (int, error) {
	if len(opts.Command) == 0 {
		return 0, errors.New("run in mounted image: no command")
	}
	mapping, err := rootless.DefaultMapping()
	if err != nil {
		return 0, fmt.Errorf("run in mounted image: %w", err)
	}
	dir, err := os.MkdirTemp(opts.TempDir, "mount-")
	if err != nil {
		return 0, fmt.Errorf("run in mounted image: %w", err)
	}
	defer os.RemoveAll(dir)
	spec, err := json.Marshal(runSpec{Layers: opts.Layers, Writable: filepath.Join(dir, "writable"),
		Mount: filepath.Join(dir, "root"), Command: opts.Command})
	if err != nil {
		return 0, err
	}
	cmd := rootless.Command(mapping, runEntry, string(spec))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = opts.Stdin, opts.Stdout, opts.Stderr
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("run in mounted image: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { cmd.Process.Signal(syscall.SIGTERM) })
	defer stop()
	err = cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee) && ee.ExitCode() == childFailed:
		return 0, errors.New("run in mounted image: mount failed (see the message above)")
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		return ee.ExitCode(), nil
	}
	return 0, fmt.Errorf("run in mounted image: %w", err)
}

// cpuProfileEnv names a file: when set, the process that serves the union
// writes a CPU profile of its whole life there (go tool pprof FILE), for
// benchmarks (bench/fuse).
const cpuProfileEnv = "ROOST_FUSE_CPUPROFILE"

func startCPUProfile(p string) (stop func(), err error) {
	f, err := os.Create(p)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "roost: cpu profile:", err)
		}
	}, nil
}

// childFailed is the child's status when roost failed before the command ran.
const childFailed = 125

func runChild(args []string) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "roost:", err)
		return childFailed
	}
	if len(args) != 1 {
		return fail(errors.New("internal error: fuse-run wants one argument"))
	}
	var spec runSpec
	if err := json.Unmarshal([]byte(args[0]), &spec); err != nil {
		return fail(fmt.Errorf("internal error: %w", err))
	}
	// Mounts made here must not propagate back to the host's namespace.
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fail(fmt.Errorf("make mounts private: %w", err))
	}
	lowers, err := ReadLowers(spec.Layers)
	if err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(spec.Mount, 0o700); err != nil {
		return fail(err)
	}
	if p := os.Getenv(cpuProfileEnv); p != "" {
		stop, err := startCPUProfile(p)
		if err != nil {
			return fail(err)
		}
		defer stop()
	}
	m, err := New(spec.Mount, Options{Lowers: lowers, Writable: spec.Writable, Ephemeral: true})
	if err != nil {
		return fail(err)
	}
	cmd := exec.Command(spec.Command[0], spec.Command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "ROOST_MOUNT="+spec.Mount)
	// Nothing the command starts may outlive the process that serves its
	// files (kill -9 of this process): it would keep the mount namespace,
	// and a dead mount, alive. So the command is init of a pid namespace of
	// its own, killed when this thread dies; its descendants die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Pdeathsig: syscall.SIGKILL}
	runtime.LockOSThread() // Pdeathsig follows the thread that started the command
	code := 0
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			code = ee.ExitCode()
			if code < 0 {
				code = 128 + int(ee.Sys().(syscall.WaitStatus).Signal())
			}
		case errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist):
			fmt.Fprintln(os.Stderr, "roost:", err)
			code = 127
		default:
			fmt.Fprintln(os.Stderr, "roost:", err)
			code = 126
		}
	}
	if err := m.Unmount(); err != nil {
		fmt.Fprintln(os.Stderr, "roost:", err)
	}
	return code
}
