//go:build linux

package rootless

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Environment variables of the re-exec protocol (see the package doc).
const (
	envEntry = "ROOST_REEXEC"
	envSync  = "ROOST_USERNS_SYNC"
)

var (
	entriesMu sync.Mutex
	entries   = map[string]func(args []string) int{}
)

// Register makes fn the child entry point called name: a process started by
// Command(…, name, args…) runs fn(args) inside the new namespaces and exits
// with its return value. Call it from an init function, so that the entry
// exists before main calls MaybeRunChild. Registering a name twice panics.
func Register(name string, fn func(args []string) int) {
	entriesMu.Lock()
	defer entriesMu.Unlock()
	if _, dup := entries[name]; dup {
		panic("rootless: entry " + name + " registered twice")
	}
	entries[name] = fn
}

// MaybeRunChild returns at once when this process was not started by Cmd.Start.
// Otherwise it never returns: it waits until the parent has written the id
// maps, runs the registered entry point and exits with its status (125 when
// the entry is unknown or the parent failed). main must call it before doing
// anything else, in particular before parsing flags.
func MaybeRunChild() {
	name, ok := os.LookupEnv(envEntry)
	if !ok {
		return
	}
	if fdStr, ok := os.LookupEnv(envSync); ok {
		waitForMaps(fdStr)
	}
	os.Unsetenv(envEntry)
	entriesMu.Lock()
	fn := entries[name]
	entriesMu.Unlock()
	if fn == nil {
		fmt.Fprintf(os.Stderr, "roost: internal error: no re-exec entry %q in this binary\n", name)
		os.Exit(125)
	}
	os.Exit(fn(os.Args[1:]))
}

// waitForMaps is step 2 of the protocol on the child's side.
func waitForMaps(fdStr string) {
	fd, err := strconv.Atoi(fdStr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "roost: internal error: bad %s=%q\n", envSync, fdStr)
		os.Exit(125)
	}
	pipe := os.NewFile(uintptr(fd), "userns-sync")
	var b [1]byte
	n, _ := pipe.Read(b[:])
	pipe.Close()
	if n != 1 {
		// The parent reports why; stay quiet.
		os.Exit(125)
	}
	os.Unsetenv(envSync)
}

// Cmd runs a registered entry point of this binary in a new user namespace
// and mount namespace. Set the embedded exec.Cmd's Stdin, Stdout, Stderr, Env,
// Dir and ExtraFiles as for any command before Start; SysProcAttr.Cloneflags
// may get more CLONE_NEW* flags ORed in. Wait and the other exec.Cmd methods
// work as usual once Start has returned.
type Cmd struct {
	*exec.Cmd
	// Mapping is written into the new user namespace; Command sets it to
	// DefaultMapping's result.
	Mapping Mapping
}

// Command prepares /proc/self/exe to run the entry registered as name with
// args, in a new user and mount namespace, mapped as m.
func Command(m Mapping, name string, args ...string) *Cmd {
	c := exec.Command("/proc/self/exe", args...)
	c.Args[0] = name
	c.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
	}
	c.Env = append(os.Environ(), envEntry+"="+name)
	return &Cmd{Cmd: c, Mapping: m}
}

// Start starts the child and writes its id maps. When it returns nil the
// maps are in place and the child is running its entry point (or about to);
// on error the child, if it was started, has been killed and reaped.
func (c *Cmd) Start() error {
	mapIDs, err := c.StartMapping()
	if err != nil {
		return err
	}
	return mapIDs()
}

// StartMapping starts the child, as Start does, but returns once it
// exists: mapIDs then writes its id maps (newuidmap and newgidmap take
// milliseconds) and lets it run its entry point, or kills and reaps it and
// says why it could not. Where the caller writes the maps itself, the
// kernel has them when StartMapping returns, and mapIDs does nothing.
func (c *Cmd) StartMapping() (mapIDs func() error, err error) {
	if c.SysProcAttr == nil {
		c.SysProcAttr = &syscall.SysProcAttr{}
	}
	c.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS
	if c.Env == nil {
		c.Env = os.Environ()
	}
	if !hasEnv(c.Env, envEntry) {
		c.Env = append(c.Env, envEntry+"="+c.Args[0])
	}
	if !c.Mapping.Helpers {
		c.SysProcAttr.UidMappings = sysMaps(c.Mapping.UIDs)
		c.SysProcAttr.GidMappings = sysMaps(c.Mapping.GIDs)
		// An unprivileged writer of gid_map must deny setgroups first; root
		// mapping the full range keeps it.
		c.SysProcAttr.GidMappingsEnableSetgroups = os.Getuid() == 0
		if err := c.Cmd.Start(); err != nil {
			return nil, fmt.Errorf("start in user namespace: %w", hintUserns(err))
		}
		return func() error { return nil }, nil
	}

	// The child execs before its uid is mapped, which would drop its
	// capabilities: it carries them through that exec as ambient ones.
	c.SysProcAttr.AmbientCaps = allCaps()
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start in user namespace: %w", err)
	}
	c.ExtraFiles = append(c.ExtraFiles, r)
	c.Env = append(c.Env, envSync+"="+strconv.Itoa(2+len(c.ExtraFiles)))
	err = c.Cmd.Start()
	r.Close()
	c.ExtraFiles = c.ExtraFiles[:len(c.ExtraFiles)-1]
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("start in user namespace: %w", hintUserns(err))
	}
	return func() error {
		defer w.Close()
		return c.writeMaps(w)
	}, nil
}

// writeMaps runs newuidmap and newgidmap on the child and then releases it
// through w.
func (c *Cmd) writeMaps(w *os.File) error {
	pid := strconv.Itoa(c.Process.Pid)
	// Both helpers at once: each is a setuid exec of its own.
	errs := make(chan error, 2)
	for _, h := range []struct {
		prog string
		maps []IDMap
	}{{"newuidmap", c.Mapping.UIDs}, {"newgidmap", c.Mapping.GIDs}} {
		go func() {
			out, err := exec.Command(h.prog, append([]string{pid}, helperArgs(h.maps)...)...).CombinedOutput()
			if err != nil {
				err = fmt.Errorf("write id map with %s: %w: %s (check /etc/subuid and /etc/subgid)", h.prog, err, bytes.TrimSpace(out))
			}
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			c.Process.Kill()
			c.Wait()
			return err
		}
	}
	if _, err := w.Write([]byte{0}); err != nil {
		c.Process.Kill()
		c.Wait()
		return fmt.Errorf("start in user namespace: release child: %w", err)
	}
	return nil
}

// Run starts the command and waits for it.
func (c *Cmd) Run() error {
	if err := c.Start(); err != nil {
		return err
	}
	return c.Wait()
}

func hasEnv(env []string, key string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, key+"=") {
			return true
		}
	}
	return false
}

func sysMaps(maps []IDMap) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(maps))
	for i, m := range maps {
		out[i] = syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)}
	}
	return out
}

// allCaps lists every capability the kernel may know.
func allCaps() []uintptr {
	caps := make([]uintptr, 0, 41)
	for c := uintptr(0); c <= 40; c++ {
		caps = append(caps, c)
	}
	return caps
}

// hintUserns adds what to do to the errors unprivileged user namespaces give
// when the kernel or a security module forbids them.
func hintUserns(err error) error {
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("%w (unprivileged user namespaces may be disabled: check the sysctls user.max_user_namespaces and kernel.apparmor_restrict_unprivileged_userns)", err)
	}
	return err
}
