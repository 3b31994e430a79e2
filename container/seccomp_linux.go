//go:build linux

package container

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
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
// format) or under none (seccomp=unconfined). The profile is compiled to
// classic BPF for the native architecture (golang.org/x/net/bpf encodes it;
// elastic/go-seccomp-bpf gives the syscall tables); calls of another
// architecture (i386 on x86_64) meet the default action, as do x32 calls
// (ENOSYS).
//
// Up to three filters are loaded, on init's (or exec's) locked thread, as runc
// does it: before the capabilities are dropped when no_new_privs is off (a
// filter then needs CAP_SYS_ADMIN), just before execve when it is on. In
// load order:
//
//  1. with a single id mapped (no subuid range), the id emulation:
//     setuid-family calls return 0 without doing anything, as Charliecloud's
//     --seccomp does, and the chown family goes to the agent, which records
//     the owner in the writable layer (chown_linux.go), so that package
//     managers that hand files to other owners or drop privileges work
//     where only one id exists, and the layers they make keep the owners;
//  2. the profile;
//  3. where the profile's default denies, ENOSYS for syscall numbers above
//     the highest the profile names, as runc does, so that a C library
//     probing a syscall newer than the profile falls back instead of failing
//     on EPERM.
//
// The kernel runs every filter and keeps the strongest action, the newest
// filter's on a tie: a profile that denies chown wins over the emulation.
//
// Why three filters: each stays simple. The emulation is a plain list of
// numbers that may be loaded without a profile (unconfined), and the ENOSYS
// filter needs the highest number the profile names. A user's profile with
// SCMP_ACT_NOTIFY is refused with a message.
//
// Cost: compiling takes 0.2–0.3 ms, which the agent spends while init
// starts (InitSpec.SeccompFilters); the kernel prepares the filters on
// load, in time that grows with their length: rules are joined and numbers
// tested as ranges (joinRules), which brings Docker's profile from about 900
// instructions to about 300.

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
	if _, err := compileSeccomp(compact.String(), caps, false, false); err != nil {
		return "", fmt.Errorf("seccomp profile %s: %w", v, err)
	}
	return "seccomp=" + compact.String(), nil
}

// seccompFilters compiles the filters for spec (or takes those the agent
// compiled), in load order; none for unconfined without emulation.
func seccompFilters(spec *InitSpec) ([]*unix.SockFprog, error) {
	if spec.SeccompFilters != nil {
		out := make([]*unix.SockFprog, len(spec.SeccompFilters))
		for i, b := range spec.SeccompFilters {
			prog := make([]unix.SockFilter, len(b)/binary.Size(unix.SockFilter{}))
			if err := binary.Read(bytes.NewReader(b), binary.NativeEndian, prog); err != nil {
				return nil, failf(125, "seccomp: the agent's filter: %w", err)
			}
			out[i] = &unix.SockFprog{Len: uint16(len(prog)), Filter: unsafe.SliceData(prog)}
		}
		return out, nil
	}
	caps, err := capSet(spec.CapAdd, spec.CapDrop)
	if err != nil {
		return nil, failf(125, "%w", err)
	}
	fs, err := compileSeccomp(spec.Seccomp, caps, spec.Mapping == "single", spec.PortHandoff)
	if err != nil {
		return nil, failf(125, "seccomp: %w", err)
	}
	return fs, nil
}

// precompiledSeccomp compiles init's filters (see InitSpec.SeccompFilters),
// or returns nil where that fails: init then reports why.
func precompiledSeccomp(spec *InitSpec) [][]byte {
	fs, err := seccompFilters(spec)
	if err != nil {
		return nil
	}
	out := make([][]byte, len(fs))
	for i, f := range fs {
		out[i], err = binary.Append(nil, binary.NativeEndian, unsafe.Slice(f.Filter, f.Len))
		if err != nil {
			return nil
		}
	}
	return out
}

// compileSeccomp compiles profile ("" for Docker's default, "unconfined" or
// a JSON profile) for a container with the capabilities caps. With
// emulateIDs or handBind, the notify filter comes first (notifyFilter).
func compileSeccomp(profile string, caps map[int]bool, emulateIDs, handBind bool) ([]*unix.SockFprog, error) {
	info, err := arch.GetInfo("")
	if err != nil {
		return nil, err
	}
	var out []*unix.SockFprog
	if emulateIDs || handBind {
		p, err := notifyFilter(info, emulateIDs, handBind)
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
	rules, def, maxNr, err := seccompPolicy(ls, info)
	if err != nil {
		return nil, err
	}
	p, err := sockFprog(assembleSeccomp(info, def, joinRules(rules)))
	if err != nil {
		return nil, err
	}
	out = append(out, p)
	if def == uint32(seccompbpf.ActionAllow) || def == uint32(seccompbpf.ActionLog) {
		return out, nil // a profile that denies by name: newer calls are allowed anyway
	}
	p, err = enosysFilter(info, maxNr)
	if err != nil {
		return nil, err
	}
	return append(out, p), nil
}

// seccompRule is one rule of a profile for the native architecture: the
// calls it names, the condition sets of which any one must hold (none: the
// rule holds for every call of those numbers), and its action.
type seccompRule struct {
	nrs    []uint32
	sets   [][]specs.LinuxSeccompArg
	action uint32
}

// seccompPolicy turns a runtime-spec profile into rules for the native
// architecture and returns the default action and the highest syscall number
// the profile names. Rules keep their order: the first that matches a call
// decides. As runc, the conditions of a rule must all hold, unless two of
// them test the same argument: then any one of them suffices. Names this
// architecture does not know are left out.
func seccompPolicy(ls *specs.LinuxSeccomp, info *arch.Info) ([]seccompRule, uint32, uint32, error) {
	def, err := seccompAction(ls.DefaultAction, ls.DefaultErrnoRet)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("default action: %w", err)
	}
	if ls.ListenerPath != "" {
		return nil, 0, 0, errors.New("SCMP_ACT_NOTIFY and listenerPath are not supported")
	}
	var rules []seccompRule
	var maxNr uint32
	for _, sc := range ls.Syscalls {
		action, err := seccompAction(sc.Action, sc.ErrnoRet)
		if err != nil {
			return nil, 0, 0, fmt.Errorf("syscalls %v: %w", sc.Names, err)
		}
		perArg := map[uint]int{}
		for _, a := range sc.Args {
			if err := checkSeccompArg(a); err != nil {
				return nil, 0, 0, fmt.Errorf("syscalls %v: %w", sc.Names, err)
			}
			perArg[a.Index]++
		}
		var sets [][]specs.LinuxSeccompArg
		if len(sc.Args) > 0 {
			sets = [][]specs.LinuxSeccompArg{sc.Args}
			for _, n := range perArg {
				if n > 1 {
					sets = nil
					for _, a := range sc.Args {
						sets = append(sets, []specs.LinuxSeccompArg{a})
					}
					break
				}
			}
		}
		r := seccompRule{sets: sets, action: uint32(action)}
		seen := map[string]bool{}
		for _, name := range sc.Names {
			nr, ok := info.SyscallNames[name]
			if !ok || seen[name] {
				continue
			}
			seen[name] = true
			maxNr = max(maxNr, uint32(nr))
			r.nrs = append(r.nrs, uint32(nr|info.SeccompMask))
		}
		if len(r.nrs) > 0 {
			rules = append(rules, r)
		}
	}
	return rules, uint32(def), maxNr, nil
}

// assembleSeccomp writes the rules as one classic BPF program for the native
// architecture: calls of another architecture and x32 calls meet the default
// action (x32: ENOSYS), the others the first rule that matches them.
//
// It is written here, not with elastic's assembler, because that one loses
// the syscall number: after a rule whose number matched but whose conditions
// did not (socket with AF_NETLINK against Docker's first socket rule), it
// compares the loaded argument with the numbers of the rules after it, so
// that the call meets some other call's rule. Here each conditional rule
// loads the number again when its conditions fail.
func assembleSeccomp(info *arch.Info, def uint32, rules []seccompRule) []bpf.Instruction {
	loadNr := bpf.LoadAbsolute{Off: 0, Size: 4}
	var body []bpf.Instruction
	for _, r := range rules {
		if len(r.sets) == 0 {
			// Each run of consecutive numbers: inside it, on to the
			// return after the test; else past it. A single number:
			// equal, on to the return.
			for _, run := range numberRuns(r.nrs) {
				if run[0] == run[1] {
					body = append(body, bpf.JumpIf{Cond: bpf.JumpEqual, Val: run[0], SkipFalse: 1})
				} else {
					body = append(body, bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: run[0], SkipFalse: 2},
						bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: run[1], SkipTrue: 1})
				}
				body = append(body, bpf.RetConstant{Val: r.action})
			}
			continue
		}
		var conds []bpf.Instruction
		for _, set := range r.sets {
			conds = append(conds, seccompSet(set, r.action)...)
		}
		// Any of the numbers: on to the conditions; none: past them and the
		// reload.
		for i, nr := range r.nrs {
			body = append(body, bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr, SkipTrue: uint8(len(r.nrs) - i)})
		}
		body = append(body, bpf.Jump{Skip: uint32(len(conds) + 1)})
		body = append(body, conds...)
		body = append(body, loadNr)
	}
	body = append(body, bpf.RetConstant{Val: def})
	prog := []bpf.Instruction{bpf.LoadAbsolute{Off: 4, Size: 4}} // seccomp_data.arch
	prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(info.ID), SkipTrue: 1}, bpf.RetConstant{Val: def}, loadNr)
	if info.ID == arch.X86_64.ID {
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: uint32(arch.X32.SeccompMask), SkipFalse: 1},
			bpf.RetConstant{Val: uint32(seccompbpf.ActionErrno) | uint32(unix.ENOSYS)})
	}
	return append(prog, body...)
}

// joinRules joins each run of adjacent rules without conditions and with
// one action into one rule, whose numbers then test as ranges (numberRuns),
// and each run of adjacent rules with conditions on the same numbers and with
// one action into one rule that holds where any of their conditions do. The
// first rule that matches a call still decides. Docker's default profile
// then takes about 300 instructions instead of 900, which the kernel checks,
// translates and runs (for its cache of always-allowed numbers, once per
// number) at every start and exec.
func joinRules(rules []seccompRule) []seccompRule {
	var out []seccompRule
	for _, r := range rules {
		if n := len(out); n > 0 && out[n-1].action == r.action {
			last := &out[n-1]
			switch {
			case len(r.sets) == 0 && len(last.sets) == 0:
				last.nrs = append(last.nrs, r.nrs...)
				continue
			case len(r.sets) > 0 && len(last.sets) > 0 && slices.Equal(last.nrs, r.nrs):
				last.sets = append(last.sets, r.sets...)
				continue
			}
		}
		r.nrs, r.sets = slices.Clone(r.nrs), slices.Clone(r.sets)
		out = append(out, r)
	}
	return out
}

// numberRuns sorts nrs and returns its runs of consecutive numbers, each as
// its first and last.
func numberRuns(nrs []uint32) [][2]uint32 {
	sorted := slices.Clone(nrs)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	var runs [][2]uint32
	for _, nr := range sorted {
		if n := len(runs); n > 0 && runs[n-1][1]+1 == nr {
			runs[n-1][1] = nr
			continue
		}
		runs = append(runs, [2]uint32{nr, nr})
	}
	return runs
}

// seccompSet is one condition set: when every comparison holds, it returns
// action; when one fails, it goes on after its last instruction.
func seccompSet(set []specs.LinuxSeccompArg, action uint32) []bpf.Instruction {
	// Every jump falls through when false; when true it goes to "pass" (the
	// next comparison) or "fail" (after the set's return). The offsets are
	// filled in once the targets are known.
	var insts []bpf.Instruction
	var fails []int
	for _, a := range set {
		off := uint32(16 + 8*a.Index) // seccomp_data.args[i], little-endian
		lo := bpf.LoadAbsolute{Off: off, Size: 4}
		hi := bpf.LoadAbsolute{Off: off + 4, Size: 4}
		vLo, vHi := uint32(a.Value), uint32(a.Value>>32)
		var passesHere []int
		cmp := func(cond bpf.JumpTest, v uint32, passes bool) {
			at := len(insts)
			insts = append(insts, bpf.JumpIf{Cond: cond, Val: v})
			if passes {
				passesHere = append(passesHere, at)
			} else {
				fails = append(fails, at)
			}
		}
		switch a.Op {
		case specs.OpEqualTo:
			insts = append(insts, hi)
			cmp(bpf.JumpNotEqual, vHi, false)
			insts = append(insts, lo)
			cmp(bpf.JumpNotEqual, vLo, false)
		case specs.OpNotEqual:
			insts = append(insts, hi)
			cmp(bpf.JumpNotEqual, vHi, true)
			insts = append(insts, lo)
			cmp(bpf.JumpEqual, vLo, false)
		case specs.OpMaskedEqual: // (arg & Value) == ValueTwo
			mLo, mHi := uint32(a.Value), uint32(a.Value>>32)
			wLo, wHi := uint32(a.ValueTwo), uint32(a.ValueTwo>>32)
			insts = append(insts, hi, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: mHi})
			cmp(bpf.JumpNotEqual, wHi, false)
			insts = append(insts, lo, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: mLo})
			cmp(bpf.JumpNotEqual, wLo, false)
		default: // the orderings: decided by the high words unless they are equal
			var strict, last bpf.JumpTest
			switch a.Op {
			case specs.OpGreaterThan:
				strict, last = bpf.JumpGreaterThan, bpf.JumpLessOrEqual
			case specs.OpGreaterEqual:
				strict, last = bpf.JumpGreaterThan, bpf.JumpLessThan
			case specs.OpLessThan:
				strict, last = bpf.JumpLessThan, bpf.JumpGreaterOrEqual
			case specs.OpLessEqual:
				strict, last = bpf.JumpLessThan, bpf.JumpGreaterThan
			}
			insts = append(insts, hi)
			cmp(strict, vHi, true)
			cmp(bpf.JumpNotEqual, vHi, false)
			insts = append(insts, lo)
			cmp(last, vLo, false)
		}
		// A comparison's passes go to the instruction after it.
		for _, at := range passesHere {
			j := insts[at].(bpf.JumpIf)
			j.SkipTrue = uint8(len(insts) - at - 1)
			insts[at] = j
		}
	}
	insts = append(insts, bpf.RetConstant{Val: action})
	for _, at := range fails {
		j := insts[at].(bpf.JumpIf)
		j.SkipTrue = uint8(len(insts) - at - 1)
		insts[at] = j
	}
	return insts
}

// checkSeccompArg refuses comparisons a syscall cannot have.
func checkSeccompArg(a specs.LinuxSeccompArg) error {
	if a.Index > 5 {
		return fmt.Errorf("argument index %d: a syscall has six arguments", a.Index)
	}
	switch a.Op {
	case specs.OpEqualTo, specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual,
		specs.OpGreaterThan, specs.OpGreaterEqual, specs.OpMaskedEqual:
		return nil
	}
	return fmt.Errorf("comparison %q is not supported", a.Op)
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

// The id emulation's calls. The chown family goes to the agent (see
// chown_linux.go), which records the owner; the setuid family succeeds and
// changes nothing. capset is not among them: init itself drops
// capabilities with it.
var (
	chownCalls      = []string{"chown", "fchown", "lchown", "fchownat"}
	emulatedIDCalls = []string{"setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups", "setfsuid", "setfsgid",
		"setuid32", "setgid32", "setreuid32", "setregid32", "setresuid32", "setresgid32", "setgroups32", "setfsuid32", "setfsgid32",
		// The 32-bit chowns exist on 32-bit architectures only, which
		// the agent's handler does not decode: they change nothing.
		"chown32", "fchown32", "lchown32"}
)

// notifyFilter: for the native architecture, with emulateIDs the chown
// family is handed to the filter's listener (SECCOMP_RET_USER_NOTIF) and
// the other emulated id calls return 0; with handBind, bind is handed to
// the listener too.
func notifyFilter(info *arch.Info, emulateIDs, handBind bool) (*unix.SockFprog, error) {
	nrsOf := func(names []string) []uint32 {
		var nrs []uint32
		for _, name := range names {
			if nr, ok := info.SyscallNames[name]; ok {
				nrs = append(nrs, uint32(nr|info.SeccompMask))
			}
		}
		sort.Slice(nrs, func(i, j int) bool { return nrs[i] < nrs[j] })
		return nrs
	}
	var notify, succeed []uint32
	if emulateIDs {
		notify, succeed = nrsOf(chownCalls), nrsOf(emulatedIDCalls)
	}
	if handBind {
		notify = append(notify, nrsOf([]string{"bind"})...)
	}
	n := len(notify) + len(succeed)
	insts := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4}, // seccomp_data.arch
		// Another architecture: on to allow.
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(info.ID), SkipFalse: uint8(n + 1)},
		bpf.LoadAbsolute{Off: 0, Size: 4}, // seccomp_data.nr
	}
	// Each test jumps, when it matches, to its return: the three returns
	// follow the tests as allow, errno 0, notify.
	for i, nr := range notify {
		insts = append(insts, bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr, SkipTrue: uint8(n - i + 1)})
	}
	for i, nr := range succeed {
		insts = append(insts, bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr, SkipTrue: uint8(len(succeed) - i)})
	}
	insts = append(insts,
		bpf.RetConstant{Val: uint32(seccompbpf.ActionAllow)},
		bpf.RetConstant{Val: uint32(seccompbpf.ActionErrno)}, // errno 0: success
		bpf.RetConstant{Val: unix.SECCOMP_RET_USER_NOTIF},
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
// that execs, and the others die with the exec. With listen, the first
// filter (the id emulation's) is loaded with a listener, whose descriptor
// it returns (-1 without).
func loadSeccomp(filters []*unix.SockFprog, listen bool) (int, error) {
	listener := -1
	for i, f := range filters {
		flags := uintptr(0)
		if listen && i == 0 {
			flags = unix.SECCOMP_FILTER_FLAG_NEW_LISTENER
		}
		r, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(f)))
		if errno != 0 {
			if listener >= 0 {
				unix.Close(listener)
			}
			return -1, fmt.Errorf("load seccomp filter: %w", errno)
		}
		if flags != 0 {
			listener = int(r)
		}
	}
	return listener, nil
}
