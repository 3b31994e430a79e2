//go:build linux

package container

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"unsafe"

	"github.com/elastic/go-seccomp-bpf/arch"
	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// seccompResult runs the filters as the kernel does (every filter; the
// strongest action wins, the newest filter's on a tie) on a native call.
func seccompResult(t *testing.T, filters []*unix.SockFprog, name string, args ...uint64) uint32 {
	t.Helper()
	info, err := arch.GetInfo("")
	if err != nil {
		t.Fatal(err)
	}
	nr, ok := info.SyscallNames[name]
	if !ok {
		t.Fatalf("no syscall %s here", name)
	}
	return seccompRun(t, filters, uint32(info.ID), uint32(nr), args...)
}

func seccompRun(t *testing.T, filters []*unix.SockFprog, auditArch, nr uint32, args ...uint64) uint32 {
	t.Helper()
	// struct seccomp_data, each 32-bit word big-endian: the VM loads words
	// in network order, the kernel in native (little-endian) order.
	data := make([]byte, 64)
	binary.BigEndian.PutUint32(data[0:], nr)
	binary.BigEndian.PutUint32(data[4:], auditArch)
	for i, a := range args {
		binary.BigEndian.PutUint32(data[16+8*i:], uint32(a))
		binary.BigEndian.PutUint32(data[16+8*i+4:], uint32(a>>32))
	}
	ret := uint32(unix.SECCOMP_RET_ALLOW)
	for i := len(filters) - 1; i >= 0; i-- {
		f := filters[i]
		raw := unsafe.Slice(f.Filter, f.Len)
		var rs []bpf.RawInstruction
		for _, r := range raw {
			rs = append(rs, bpf.RawInstruction{Op: r.Code, Jt: r.Jt, Jf: r.Jf, K: r.K})
		}
		insts, ok := bpf.Disassemble(rs)
		if !ok {
			t.Fatalf("filter %d does not disassemble", i)
		}
		vm, err := bpf.NewVM(insts)
		if err != nil {
			t.Fatalf("filter %d: %v", i, err)
		}
		n, err := vm.Run(data)
		if err != nil {
			t.Fatalf("filter %d: %v", i, err)
		}
		if int32(uint32(n)&unix.SECCOMP_RET_ACTION_FULL) < int32(ret&unix.SECCOMP_RET_ACTION_FULL) {
			ret = uint32(n)
		}
	}
	return ret
}

const (
	retAllow = unix.SECCOMP_RET_ALLOW
	retEPERM = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	retNoSys = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	retZero  = unix.SECCOMP_RET_ERRNO
	retNotif = unix.SECCOMP_RET_USER_NOTIF
)

func TestDefaultSeccompProfile(t *testing.T) {
	caps, err := capSet(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := compileSeccomp("", caps, false, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []uint64
		want uint32
	}{
		{"read", nil, retAllow},
		{"execve", nil, retAllow},
		{"keyctl", nil, retEPERM},
		{"add_key", nil, retEPERM},
		{"kexec_load", nil, retEPERM},
		{"unshare", nil, retEPERM},
		{"mount", nil, retEPERM},
		{"chown", nil, retAllow},
		{"clone", []uint64{uint64(unix.SIGCHLD)}, retAllow},
		{"clone", []uint64{unix.CLONE_NEWUSER | uint64(unix.SIGCHLD)}, retEPERM},
		{"clone3", nil, retNoSys},
		{"socket", []uint64{unix.AF_INET}, retAllow},
		{"socket", []uint64{unix.AF_UNIX}, retAllow},
		{"socket", []uint64{unix.AF_NETLINK}, retAllow},
		{"socket", []uint64{unix.AF_PACKET}, retAllow},
		{"socket", []uint64{unix.AF_ALG}, retEPERM},
		// The first socket rule's number matched and its condition failed:
		// AF_VSOCK is 40, sendfile's number, which a later rule allows.
		{"socket", []uint64{40}, retEPERM},
		{"sendfile", nil, retAllow},
		{"personality", []uint64{0xffffffff}, retAllow},
		{"personality", []uint64{0x1_0000_0000}, retEPERM},
		{"socket", []uint64{unix.AF_VSOCK}, retEPERM},
		{"personality", []uint64{0}, retAllow},
		{"personality", []uint64{0x0400000}, retEPERM},
	} {
		if got := seccompResult(t, fs, c.name, c.args...); got != c.want {
			t.Errorf("%s%v: got %#x, want %#x", c.name, c.args, got, c.want)
		}
	}
	info, _ := arch.GetInfo("")
	if got := seccompRun(t, fs, uint32(info.ID), 1000); got != retNoSys {
		t.Errorf("syscall 1000: got %#x, want ENOSYS", got)
	}
	if got := seccompRun(t, fs, unix.AUDIT_ARCH_I386, 0); got != retEPERM {
		t.Errorf("another architecture: got %#x, want EPERM", got)
	}

	// With CAP_SYS_ADMIN, Docker's profile allows mount and unshare.
	caps, _ = capSet([]string{"SYS_ADMIN"}, nil)
	fs, err = compileSeccomp("", caps, false, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"mount", "unshare", "clone3"} {
		if got := seccompResult(t, fs, name); got != retAllow {
			t.Errorf("with SYS_ADMIN, %s: got %#x, want allow", name, got)
		}
	}
}

func TestSeccompIDEmulation(t *testing.T) {
	caps, _ := capSet(nil, nil)
	fs, err := compileSeccomp("", caps, true, false)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]uint32{"chown": retNotif, "fchownat": retNotif, "lchown": retNotif, "fchown": retNotif,
		"setresuid": retZero, "setgroups": retZero, "setfsgid": retZero, "capset": retAllow, "read": retAllow, "keyctl": retEPERM} {
		if got := seccompResult(t, fs, name); got != want {
			t.Errorf("%s: got %#x, want %#x", name, got, want)
		}
	}
	// A profile that denies chown wins over the emulation.
	fs, err = compileSeccomp(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["chown","mkdir"],"action":"SCMP_ACT_ERRNO"}]}`, caps, true, false)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]uint32{"chown": retEPERM, "mkdir": retEPERM, "fchown": retNotif, "setuid": retZero, "keyctl": retAllow} {
		if got := seccompResult(t, fs, name); got != want {
			t.Errorf("custom profile, %s: got %#x, want %#x", name, got, want)
		}
	}
	// Unconfined keeps only the emulation.
	fs, err = compileSeccomp(SeccompUnconfined, caps, true, false)
	if err != nil || len(fs) != 1 {
		t.Fatalf("unconfined with emulation: %d filters, %v", len(fs), err)
	}
}

func TestSeccompBindHandoff(t *testing.T) {
	caps, _ := capSet(nil, nil)
	for _, c := range []struct {
		emulate bool
		want    map[string]uint32
	}{
		{false, map[string]uint32{"bind": retNotif, "chown": retAllow, "setresuid": retAllow, "connect": retAllow, "keyctl": retEPERM}},
		{true, map[string]uint32{"bind": retNotif, "chown": retNotif, "setresuid": retZero, "listen": retAllow}},
	} {
		fs, err := compileSeccomp("", caps, c.emulate, true)
		if err != nil {
			t.Fatal(err)
		}
		for name, want := range c.want {
			if got := seccompResult(t, fs, name); got != want {
				t.Errorf("emulating ids %v, %s: got %#x, want %#x", c.emulate, name, got, want)
			}
		}
	}
	// Unconfined keeps the notify filter alone.
	fs, err := compileSeccomp(SeccompUnconfined, caps, false, true)
	if err != nil || len(fs) != 1 {
		t.Fatalf("unconfined with handoff: %d filters, %v", len(fs), err)
	}
	if got := seccompResult(t, fs, "bind"); got != retNotif {
		t.Errorf("unconfined, bind: got %#x, want notify", got)
	}
}

func TestSeccompProfileErrors(t *testing.T) {
	caps, _ := capSet(nil, nil)
	for _, p := range []string{
		`{"defaultAction":`,
		`{"defaultAction":"SCMP_ACT_BOGUS","syscalls":[]}`,
		`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_NOTIFY"}]}`,
		`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":7,"value":1,"op":"SCMP_CMP_EQ"}]}]}`,
	} {
		if _, err := compileSeccomp(p, caps, false, false); err == nil {
			t.Errorf("%s: compiled, want an error", p)
		}
	}
}

// TestSeccompComparisons runs every comparison of a profile on values below,
// at and above its operand, in the low and the high word.
func TestSeccompComparisons(t *testing.T) {
	caps, _ := capSet(nil, nil)
	const v = 0x1_0000_0010
	for _, c := range []struct {
		op   string
		two  uint64
		args map[uint64]bool // argument: denied
	}{
		{"SCMP_CMP_EQ", 0, map[uint64]bool{v - 1: false, v: true, v + 1: false, 0x10: false}},
		{"SCMP_CMP_NE", 0, map[uint64]bool{v - 1: true, v: false, 0x10: true, 0x2_0000_0010: true}},
		{"SCMP_CMP_LT", 0, map[uint64]bool{v - 1: true, v: false, 0x11: true, 0x2_0000_0000: false}},
		{"SCMP_CMP_LE", 0, map[uint64]bool{v - 1: true, v: true, v + 1: false, 0xffff_ffff: true}},
		{"SCMP_CMP_GT", 0, map[uint64]bool{v - 1: false, v: false, v + 1: true, 0x2_0000_0000: true}},
		{"SCMP_CMP_GE", 0, map[uint64]bool{v - 1: false, v: true, 0x11: false, 0x2_0000_0000: true}},
		{"SCMP_CMP_MASKED_EQ", 0x10, map[uint64]bool{0x10: true, 0x11: true, 0x30: false, 0x20: false, 0: false}},
	} {
		p := fmt.Sprintf(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":1,"value":%d,"valueTwo":%d,"op":%q}]}]}`, v, c.two, c.op)
		if c.op == "SCMP_CMP_MASKED_EQ" {
			p = fmt.Sprintf(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":1,"value":%d,"valueTwo":%d,"op":%q}]}]}`, 0x1_0000_0030, c.two|0x1_0000_0000, c.op)
		}
		fs, err := compileSeccomp(p, caps, false, false)
		if err != nil {
			t.Fatalf("%s: %v", c.op, err)
		}
		for arg, denied := range c.args {
			if c.op == "SCMP_CMP_MASKED_EQ" {
				arg |= 0x1_0000_0000
			}
			want := uint32(retAllow)
			if denied {
				want = retEPERM
			}
			if got := seccompResult(t, fs, "read", 0, arg); got != want {
				t.Errorf("%s %#x: read(0, %#x): got %#x, want %#x", c.op, uint64(v), arg, got, want)
			}
		}
	}
}

func BenchmarkCompileDefaultSeccomp(b *testing.B) {
	caps, _ := capSet(nil, nil)
	for b.Loop() {
		if _, err := compileSeccomp("", caps, true, false); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSeccompRanges checks that joining rules and testing numbers as ranges
// decides every call as the plain program does, one number at a time: every
// number up to past the highest, with arguments that meet and miss the
// profile's conditions, with and without added capabilities.
func TestSeccompRanges(t *testing.T) {
	info, err := arch.GetInfo("")
	if err != nil {
		t.Fatal(err)
	}
	for _, add := range [][]string{nil, {"SYS_ADMIN", "SYS_PTRACE", "SYS_MODULE"}} {
		caps, err := capSet(add, nil)
		if err != nil {
			t.Fatal(err)
		}
		rs := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}}
		for name, n := range capNames {
			if caps[n] {
				rs.Process.Capabilities.Bounding = append(rs.Process.Capabilities.Bounding, "CAP_"+name)
			}
		}
		ls, err := seccomp.GetDefaultProfile(rs)
		if err != nil {
			t.Fatal(err)
		}
		rules, def, maxNr, err := seccompPolicy(ls, info)
		if err != nil {
			t.Fatal(err)
		}
		// The plain program: a rule per number, none joined.
		var single []seccompRule
		for _, r := range rules {
			if len(r.sets) > 0 {
				single = append(single, r)
				continue
			}
			for _, nr := range r.nrs {
				single = append(single, seccompRule{nrs: []uint32{nr}, action: r.action})
			}
		}
		plain, err := sockFprog(assembleSeccomp(info, def, single))
		if err != nil {
			t.Fatal(err)
		}
		merged, err := sockFprog(assembleSeccomp(info, def, joinRules(rules)))
		if err != nil {
			t.Fatal(err)
		}
		if merged.Len >= plain.Len {
			t.Errorf("caps %v: joined program has %d instructions, the plain one %d", add, merged.Len, plain.Len)
		}
		argSets := [][]uint64{nil, {0}, {uint64(unix.SIGCHLD)}, {unix.CLONE_NEWUSER}, {unix.AF_INET}, {unix.AF_ALG}, {40}, {0xffffffff}, {0x0400000}}
		for nr := uint32(0); nr <= maxNr+8; nr++ {
			for _, args := range argSets {
				want := seccompRun(t, []*unix.SockFprog{plain}, uint32(info.ID), nr, args...)
				if got := seccompRun(t, []*unix.SockFprog{merged}, uint32(info.ID), nr, args...); got != want {
					t.Fatalf("caps %v: syscall %d%v: joined program gives %#x, plain %#x", add, nr, args, got, want)
				}
			}
		}
		t.Logf("caps %v: %d instructions joined, %d plain", add, merged.Len, plain.Len)
	}
}

// TestPrecompiledSeccomp: the filters the agent compiles for init are those
// init would compile, instruction for instruction.
func TestPrecompiledSeccomp(t *testing.T) {
	for _, spec := range []InitSpec{
		{},
		{Mapping: "single"},
		{Seccomp: SeccompUnconfined},
		{Seccomp: SeccompUnconfined, Mapping: "single"},
		{CapAdd: []string{"SYS_ADMIN"}, CapDrop: []string{"CHOWN"}},
	} {
		want, err := seccompFilters(&spec)
		if err != nil {
			t.Fatal(err)
		}
		spec.SeccompFilters = precompiledSeccomp(&spec)
		if spec.SeccompFilters == nil {
			t.Fatalf("%+v: nothing precompiled", spec)
		}
		b, err := json.Marshal(spec) // as it travels to init
		if err != nil {
			t.Fatal(err)
		}
		var sent InitSpec
		if err := json.Unmarshal(b, &sent); err != nil {
			t.Fatal(err)
		}
		got, err := seccompFilters(&sent)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%+v: %d filters, want %d", spec, len(got), len(want))
		}
		for i := range want {
			w := unsafe.Slice(want[i].Filter, want[i].Len)
			g := unsafe.Slice(got[i].Filter, got[i].Len)
			if !slices.Equal(g, w) {
				t.Errorf("%+v: filter %d differs (%d instructions, want %d)", spec, i, len(g), len(w))
			}
		}
	}
	// A profile that fails to compile is left to init, which reports it.
	if got := precompiledSeccomp(&InitSpec{Seccomp: "{not json"}); got != nil {
		t.Errorf("a bad profile precompiled to %d filters", len(got))
	}
}
