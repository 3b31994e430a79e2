//go:build linux

package container

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is one process of a container, as the agent sees it.
type Proc struct {
	Pid, PPid int
	UID       int
	// CPU is user+system time in clock ticks; RSS in bytes.
	CPU   uint64
	RSS   uint64
	Start uint64 // start time in clock ticks since boot
	State string
	Comm  string
	Args  string
	TTY   int
}

// procs lists the processes in the pid namespace of process init.
func procs(init int) ([]Proc, error) {
	want, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", init))
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []Proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ns, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns/pid")); err != nil || ns != want {
			continue
		}
		if p, ok := readProc(pid); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

func readProc(pid int) (Proc, bool) {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return Proc{}, false
	}
	open, close := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	if open < 0 || close < open {
		return Proc{}, false
	}
	f := strings.Fields(string(stat[close+2:]))
	if len(f) < 22 {
		return Proc{}, false
	}
	num := func(i int) uint64 { n, _ := strconv.ParseUint(f[i], 10, 64); return n }
	p := Proc{Pid: pid, Comm: string(stat[open+1 : close]), State: f[0], PPid: int(num(1)), TTY: int(num(4)),
		CPU: num(11) + num(12), Start: num(19), RSS: num(21) * uint64(os.Getpagesize())}
	if fi, err := os.Stat(dir); err == nil {
		p.UID = int(fi.Sys().(*syscall.Stat_t).Uid)
	}
	if args, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil && len(args) > 0 {
		p.Args = strings.TrimSpace(string(bytes.ReplaceAll(args, []byte{0}, []byte{' '})))
	} else {
		p.Args = "[" + p.Comm + "]"
	}
	return p, true
}

// freeze stops every process of the container with SIGSTOP, again until no
// new one appears (a process may fork while the others stop).
func freeze(init int) error {
	stopped := map[int]bool{}
	for round := 0; round < 50; round++ {
		ps, err := procs(init)
		if err != nil {
			return err
		}
		fresh := false
		for _, p := range ps {
			if !stopped[p.Pid] {
				syscall.Kill(p.Pid, syscall.SIGSTOP)
				stopped[p.Pid] = true
				fresh = true
			}
		}
		if !fresh {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
	return fmt.Errorf("pause: processes kept appearing")
}

// thaw continues every process of the container.
func thaw(init int) error {
	ps, err := procs(init)
	if err != nil {
		return err
	}
	for _, p := range ps {
		syscall.Kill(p.Pid, syscall.SIGCONT)
	}
	return nil
}
