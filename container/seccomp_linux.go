//go:build linux

package container

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"unsafe"

	seccompbpf "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Seccomp. A container runs under Docker's default profile
// (github.com/moby/profiles/seccomp, given the container's capabilities),
// under the user's own profile (--security-opt seccomp=PROFILE.json, Docker's
// format) or under none (seccomp=unconfined). The profile is compiled to BPF
// with elastic/go-seccomp-bpf for the native architecture; calls of another
// architecture (i386 on x86_64) meet the default action, as do x32 calls
// (ENOSYS).
//
// Up to three filters are loaded, on init's (or exec's) locked thread, as runc
// does it: before the capabilities are dropped when no_new_privs is off (a
// filter then needs CAP_SYS_ADMIN), just before execve when it is on. In
// load order:
//
//  1. with a single id mapped (no subuid range), the id emulation: chown and
//     setuid-family calls return 0 without doing anything, as Charliecloud's
//     --seccomp does, so that package managers that hand files to other
//     owners or drop privileges work where only one id exists;
//  2. the profile;
//  3. where the profile's default denies, ENOSYS for syscall numbers above
//     the highest the profile names, as runc does, so that a C library
//     probing a syscall newer than the profile falls back instead of failing
//     on EPERM.
//
// The kernel runs every filter and keeps the strongest action, the newest
// filter's on a tie: a profile that denies chown wins over the emulation.
//
// Why three filters: elastic's assembler expresses Docker's default profile
// (its masked comparison of clone's flags is "no bits of the mask set"), and
// per-rule errno values pass through it, but its default action can only be
// EPERM, an errno of 0 (the emulation) turns into EPERM, and it has no
// "above this number" test. The two small filters are written here with
// golang.org/x/net/bpf, which elastic itself builds on. A user's profile
// with a masked comparison other than "no bits" or "one bit", or with
// SCMP_ACT_NOTIFY, is refused with a message.
//
// Cost: init compiles the profile (about 0.8 ms in a fresh process) and the
// kernel prepares the filters on load (about 0.8 ms, most of it for the
// profile's ~540 instructions); compiling once per container in the agent
// and passing the result to init was tried and bought nothing measurable.

// SeccompUnconfined is the --security-opt seccomp value that loads no profile.
const SeccompUnconfined = "unconfined"

// seccompOpt returns the seccomp value of --security-opt options
// ("seccomp=X" or the older "seccomp:X"): "" for the default profile.
func seccompOpt(opts []string) string {
	v := ""
	for _, o := range opts {
		if s, ok := strings.CutPrefix(o, "seccomp="); ok {
			v = s
		} else if s, ok := strings.CutPrefix(o, "seccomp:"); ok {
			v = s
		}
	}
	return v
}

// resolveSeccompOpt checks a --security-opt seccomp=X option and returns the
// option as it is recorded: a profile file is read, checked by compiling it,
// and recorded by its contents, as Docker does, so that the container does
// not depend on the file afterwards.
func resolveSeccompOpt(so string, capAdd, capDrop []string) (string, error) {
	v := seccompOpt([]string{so})
	switch v {
	case SeccompUnconfined, "builtin", "default":
		return so, nil
	case "":
		return "", fmt.Errorf("--security-opt %q: name a seccomp profile file, or unconfined", so)
	}
	b, err := os.ReadFile(v)
	if err != nil {
		return "", fmt.Errorf("seccomp profile: %w", err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, b); err != nil {
		return "", fmt.Errorf("seccomp profile %s: %w", v, err)
	}
	caps, err := capSet(capAdd, capDrop)
	if err != nil {
		return "", err
	}
	if _, err := compileSeccomp(compact.String(), caps, false); err != nil {
		return "", fmt.Errorf("seccomp profile %s: %w", v, err)
	}
	return "seccomp=" + compact.String(), nil
}

// seccompFilters compiles the filters for spec, in load order; none for
// unconfined without emulation.
func seccompFilters(spec *InitSpec) ([]*unix.SockFprog, error) {
	caps, err := capSet(spec.CapAdd, spec.CapDrop)
	if err != nil {
		return nil, failf(125, "%w", err)
	}
	fs, err := compileSeccomp(spec.Seccomp, caps, spec.Mapping == "single")
	if err != nil {
		return nil, failf(125, "seccomp: %w", err)
	}
	return fs, nil
}

// compileSeccomp compiles profile ("" for Docker's default, "unconfined" or
// a JSON profile) for a container with the capabilities caps.
func compileSeccomp(profile string, caps map[int]bool, emulateIDs bool) ([]*unix.SockFprog, error) {
	info, err := arch.GetInfo("")
	if err != nil {
		return nil, err
	}
	var out []*unix.SockFprog
	if emulateIDs {
		p, err := idEmulationFilter(info)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	if profile == SeccompUnconfined {
		return out, nil
	}
	rs := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}}
	for name, n := range capNames {
		if caps[n] {
			rs.Process.Capabilities.Bounding = append(rs.Process.Capabilities.Bounding, "CAP_"+name)
		}
	}
	var ls *specs.LinuxSeccomp
	if profile == "" || profile == "builtin" || profile == "default" {
		ls, err = seccomp.GetDefaultProfile(rs)
	} else {
		ls, err = seccomp.LoadProfile(profile, rs)
	}
	if err != nil {
		return nil, err
	}
	if ls == nil { // no default action and no rules: no filter, as Docker
		return out, nil
	}
	policy, maxNr, err := seccompPolicy(ls, info)
	if err != nil {
		return nil, err
	}
	insts, err := policy.Assemble()
	if err != nil {
		return nil, err
	}
	p, err := sockFprog(insts)
	if err != nil {
		return nil, err
	}
	out = append(out, p)
	if policy.DefaultAction == seccompbpf.ActionAllow || policy.DefaultAction == seccompbpf.ActionLog {
		return out, nil // a profile that denies by name: newer calls are allowed anyway
	}
	p, err = enosysFilter(info, maxNr)
	if err != nil {
		return nil, err
	}
	return append(out, p), nil
}

// seccompPolicy turns a runtime-spec profile into a policy and returns the
// highest syscall number it names. Rules keep their order: the first that
// matches a call decides. As runc, the conditions of a rule must all hold,
// unless two of them test the same argument: then any one of them suffices.
// Names this architecture does not know are left out.
func seccompPolicy(ls *specs.LinuxSeccomp, info *arch.Info) (*seccompbpf.Policy, uint32, error) {
	def, err := seccompAction(ls.DefaultAction, ls.DefaultErrnoRet)
	if err != nil {
		return nil, 0, fmt.Errorf("default action: %w", err)
	}
	if def&unix.SECCOMP_RET_ACTION_FULL == seccompbpf.ActionErrno {
		if def&unix.SECCOMP_RET_DATA != seccompbpf.Action(unix.EPERM) {
			return nil, 0, errors.New("a default action of an errno other than EPERM is not supported")
		}
		def = seccompbpf.ActionErrno
	}
	if ls.ListenerPath != "" {
		return nil, 0, errors.New("SCMP_ACT_NOTIFY and listenerPath are not supported")
	}
	policy := &seccompbpf.Policy{DefaultAction: def}
	var maxNr uint32
	for _, sc := range ls.Syscalls {
		action, err := seccompAction(sc.Action, sc.ErrnoRet)
		if err != nil {
			return nil, 0, fmt.Errorf("syscalls %v: %w", sc.Names, err)
		}
		perArg := map[uint]int{}
		var conds []seccompbpf.Condition
		for _, a := range sc.Args {
			c, err := seccompCondition(a)
			if err != nil {
				return nil, 0, fmt.Errorf("syscalls %v: %w", sc.Names, err)
			}
			perArg[a.Index]++
			conds = append(conds, c)
		}
		sets := [][]seccompbpf.Condition{conds}
		for _, n := range perArg {
			if n > 1 {
				sets = nil
				for _, c := range conds {
					sets = append(sets, []seccompbpf.Condition{c})
				}
				break
			}
		}
		g := seccompbpf.SyscallGroup{Action: action}
		seen := map[string]bool{}
		for _, name := range sc.Names {
			nr, ok := info.SyscallNames[name]
			if !ok || seen[name] {
				continue
			}
			seen[name] = true
			maxNr = max(maxNr, uint32(nr))
			if len(conds) == 0 {
				g.Names = append(g.Names, name)
				continue
			}
			for _, s := range sets {
				g.NamesWithCondtions = append(g.NamesWithCondtions, seccompbpf.NameWithConditions{Name: name, Conditions: s})
			}
		}
		if len(g.Names)+len(g.NamesWithCondtions) > 0 {
			policy.Syscalls = append(policy.Syscalls, g)
		}
	}
	if len(policy.Syscalls) == 0 {
		// The assembler wants a rule; one that changes nothing.
		policy.Syscalls = []seccompbpf.SyscallGroup{{Names: []string{"exit_group"}, Action: def}}
	}
	return policy, maxNr, nil
}

func seccompAction(a specs.LinuxSeccompAction, errnoRet *uint) (seccompbpf.Action, error) {
	switch a {
	case specs.ActAllow:
		return seccompbpf.ActionAllow, nil
	case specs.ActErrno, specs.ActTrace:
		errno := uint(unix.EPERM)
		if errnoRet != nil {
			errno = *errnoRet
		}
		if a == specs.ActTrace {
			return seccompbpf.ActionTrace | seccompbpf.Action(errno&unix.SECCOMP_RET_DATA), nil
		}
		return seccompbpf.ActionErrno | seccompbpf.Action(errno&unix.SECCOMP_RET_DATA), nil
	case specs.ActKill, specs.ActKillThread:
		return seccompbpf.ActionKillThread, nil
	case specs.ActKillProcess:
		return seccompbpf.ActionKillProcess, nil
	case specs.ActTrap:
		return seccompbpf.ActionTrap, nil
	case specs.ActLog:
		return seccompbpf.ActionLog, nil
	}
	return 0, fmt.Errorf("action %q is not supported", a)
}

// seccompCondition maps a libseccomp comparison onto the assembler's. A
// masked comparison is supported where it tests for no bits (value 0) or
// for one bit.
func seccompCondition(a specs.LinuxSeccompArg) (seccompbpf.Condition, error) {
	c := seccompbpf.Condition{Argument: uint32(a.Index), Value: a.Value}
	if a.Index > 5 {
		return c, fmt.Errorf("argument index %d: a syscall has six arguments", a.Index)
	}
	switch a.Op {
	case specs.OpEqualTo:
		c.Operation = seccompbpf.Equal
	case specs.OpNotEqual:
		c.Operation = seccompbpf.NotEqual
	case specs.OpLessThan:
		c.Operation = seccompbpf.LessThan
	case specs.OpLessEqual:
		c.Operation = seccompbpf.LessOrEqual
	case specs.OpGreaterThan:
		c.Operation = seccompbpf.GreaterThan
	case specs.OpGreaterEqual:
		c.Operation = seccompbpf.GreaterOrEqual
	case specs.OpMaskedEqual:
		switch {
		case a.ValueTwo == 0:
			c.Operation = seccompbpf.BitsNotSet
		case a.ValueTwo == a.Value && a.Value&(a.Value-1) == 0:
			c.Operation = seccompbpf.BitsSet
		default:
			return c, fmt.Errorf("%s with mask %#x and value %#x is not supported (only value 0 or a single bit)", a.Op, a.Value, a.ValueTwo)
		}
	default:
		return c, fmt.Errorf("comparison %q is not supported", a.Op)
	}
	return c, nil
}

// The id emulation's calls: they succeed and change nothing. capset is not
// among them: init itself drops capabilities with it.
var emulatedIDCalls = []string{"chown", "fchown", "lchown", "fchownat", "chown32", "fchown32", "lchown32",
	"setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups", "setfsuid", "setfsgid",
	"setuid32", "setgid32", "setreuid32", "setregid32", "setresuid32", "setresgid32", "setgroups32", "setfsuid32", "setfsgid32"}

// idEmulationFilter: for the native architecture, the emulated calls return 0.
func idEmulationFilter(info *arch.Info) (*unix.SockFprog, error) {
	var nrs []uint32
	for _, name := range emulatedIDCalls {
		if nr, ok := info.SyscallNames[name]; ok {
			nrs = append(nrs, uint32(nr|info.SeccompMask))
		}
	}
	sort.Slice(nrs, func(i, j int) bool { return nrs[i] < nrs[j] })
	insts := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4}, // seccomp_data.arch
		// Another architecture: on to allow.
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(info.ID), SkipFalse: uint8(len(nrs) + 1)},
		bpf.LoadAbsolute{Off: 0, Size: 4}, // seccomp_data.nr
	}
	for i, nr := range nrs {
		insts = append(insts, bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr, SkipTrue: uint8(len(nrs) - i)})
	}
	insts = append(insts,
		bpf.RetConstant{Val: uint32(seccompbpf.ActionAllow)},
		bpf.RetConstant{Val: uint32(seccompbpf.ActionErrno)}, // errno 0: success
	)
	return sockFprog(insts)
}

// enosysFilter: for the native architecture, syscall numbers above maxNr
// fail with ENOSYS.
func enosysFilter(info *arch.Info, maxNr uint32) (*unix.SockFprog, error) {
	insts := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(info.ID), SkipFalse: 3},
		bpf.LoadAbsolute{Off: 0, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: maxNr | uint32(info.SeccompMask), SkipFalse: 1},
		bpf.RetConstant{Val: uint32(seccompbpf.ActionErrno) | uint32(unix.ENOSYS)},
		bpf.RetConstant{Val: uint32(seccompbpf.ActionAllow)},
	}
	return sockFprog(insts)
}

func sockFprog(insts []bpf.Instruction) (*unix.SockFprog, error) {
	raw, err := bpf.Assemble(insts)
	if err != nil {
		return nil, err
	}
	if len(raw) > 4096 {
		return nil, fmt.Errorf("the filter has %d instructions, more than the kernel's 4096", len(raw))
	}
	fs := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		fs[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return &unix.SockFprog{Len: uint16(len(fs)), Filter: &fs[0]}, nil
}

// loadSeccomp loads the filters on the calling thread only: it is the thread
// that execs, and the others die with the exec.
func loadSeccomp(filters []*unix.SockFprog) error {
	for _, f := range filters {
		if _, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(f))); errno != 0 {
			return fmt.Errorf("load seccomp filter: %w", errno)
		}
	}
	return nil
}
