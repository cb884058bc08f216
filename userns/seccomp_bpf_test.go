package userns

import (
	"encoding/binary"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

// seccompCall is the struct seccomp_data the kernel hands the filter.
type seccompCall struct {
	nr   uint32
	arch uint32
	args [6]uint64
}

func (c seccompCall) bytes() []byte {
	b := make([]byte, 64)
	binary.LittleEndian.PutUint32(b[0:], c.nr)
	binary.LittleEndian.PutUint32(b[4:], c.arch)
	for i, a := range c.args {
		binary.LittleEndian.PutUint64(b[16+8*i:], a)
	}
	return b
}

// errArgLoad: the program read an argument, which the kernel's per-call cache cannot follow.
var errArgLoad = fmt.Errorf("the filter read an argument")

// runBPF interprets the classic BPF that compileSeccomp emits, as the kernel would. With noArgs
// it fails at the first load of anything but the number and the architecture, as the kernel's
// emulation does when it decides whether a call is always allowed (seccomp_is_const_allow).
func runBPF(prog []unix.SockFilter, c seccompCall, noArgs bool) (uint32, error) {
	data := c.bytes()
	var a uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			if in.K%4 != 0 || in.K+4 > uint32(len(data)) {
				return 0, fmt.Errorf("pc %d: load at %d", pc, in.K)
			}
			if noArgs && in.K != seccompNrOff && in.K != seccompArchOff {
				return 0, errArgLoad
			}
			a = binary.LittleEndian.Uint32(data[in.K:])
		case unix.BPF_JMP | unix.BPF_JA:
			pc += int(in.K)
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K, unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K:
			var taken bool
			switch in.Code &^ (unix.BPF_JMP | unix.BPF_K) {
			case unix.BPF_JEQ:
				taken = a == in.K
			case unix.BPF_JGE:
				taken = a >= in.K
			case unix.BPF_JSET:
				taken = a&in.K != 0
			}
			if taken {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case unix.BPF_RET | unix.BPF_K:
			return in.K, nil
		default:
			return 0, fmt.Errorf("pc %d: instruction %#x the test does not know", pc, in.Code)
		}
	}
	return 0, fmt.Errorf("the program ran off its end")
}

const testDeny = unix.SECCOMP_RET_KILL_PROCESS

func compileForTest(t *testing.T, ctx seccompContext) []unix.SockFilter {
	t.Helper()
	prog, err := compileSeccomp(seccompArch, seccompRules(ctx), testDeny)
	if err != nil {
		t.Fatal(err)
	}
	return prog
}

func checkVerdict(t *testing.T, prog []unix.SockFilter, c seccompCall, want uint32, what string) {
	t.Helper()
	got, err := runBPF(prog, c, false)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if got != want {
		t.Errorf("%s: filter returns %#x, want %#x", what, got, want)
	}
}

// TestSeccompFilterAllowsTheListOnly runs the compiled filter on every system call number of the
// architecture (and past it): the listed ones pass with the arguments their rules allow, all others
// and every call of another architecture are denied.
func TestSeccompFilterAllowsTheListOnly(t *testing.T) {
	if seccompArch == 0 {
		t.Skip("no allow-list for this architecture")
	}
	ctx := seccompContext{pid: 4242}
	prog := compileForTest(t, ctx)
	rules := map[uint32]sysRule{}
	for _, r := range seccompRules(ctx) {
		rules[r.nr] = r
	}
	for nr := uint32(0); nr < uint32(len(syscallNames))+64; nr++ {
		c := seccompCall{nr: nr, arch: seccompArch}
		r, listed := rules[nr]
		switch {
		case !listed:
			checkVerdict(t, prog, c, testDeny, syscallName(nr))
		case r.arg < 0:
			c.args = [6]uint64{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)}
			checkVerdict(t, prog, c, unix.SECCOMP_RET_ALLOW, syscallName(nr)+" with any arguments")
		default:
			checkRuleArguments(t, prog, r)
		}
		c.arch = unix.AUDIT_ARCH_I386
		checkVerdict(t, prog, c, testDeny, syscallName(nr)+" of i386")
		c.arch, c.nr = seccompArch, nr|0x40000000 // amd64's x32 calls
		checkVerdict(t, prog, c, testDeny, fmt.Sprintf("x32's %#x", c.nr))
	}
}

func checkRuleArguments(t *testing.T, prog []unix.SockFilter, r sysRule) {
	t.Helper()
	name := syscallName(r.nr)
	c := seccompCall{nr: r.nr, arch: seccompArch}
	for _, v := range r.values {
		c.args[r.arg] = uint64(v)
		checkVerdict(t, prog, c, unix.SECCOMP_RET_ALLOW, fmt.Sprintf("%s with argument %d = %#x", name, r.arg, v))
		c.args[r.arg] = uint64(v ^ 1)
		checkVerdict(t, prog, c, testDeny, fmt.Sprintf("%s with argument %d = %#x", name, r.arg, v^1))
		c.args[r.arg] = uint64(v) + 1<<32 // the high half is not the int the kernel reads
		checkVerdict(t, prog, c, unix.SECCOMP_RET_ALLOW, fmt.Sprintf("%s with argument %d = %#x", name, r.arg, c.args[r.arg]))
	}
	if r.clear != 0 {
		c.args[r.arg] = uint64(^r.clear)
		checkVerdict(t, prog, c, unix.SECCOMP_RET_ALLOW, fmt.Sprintf("%s with argument %d = %#x", name, r.arg, c.args[r.arg]))
		c.args[r.arg] = uint64(r.clear)
		checkVerdict(t, prog, c, testDeny, fmt.Sprintf("%s with argument %d = %#x", name, r.arg, c.args[r.arg]))
	}
}

// TestSeccompRulesThatMatter pins the argument rules the issue asks for: threads only from clone,
// no executable memory, signals to the daemon itself, prctl only for the runtime's mapping names,
// and no socket at all unless --syslog, then a local one only.
func TestSeccompRulesThatMatter(t *testing.T) {
	if seccompArch == 0 {
		t.Skip("no allow-list for this architecture")
	}
	const pid = 4242
	prog := compileForTest(t, seccompContext{pid: pid})
	withSyslog := compileForTest(t, seccompContext{pid: pid, syslog: true})
	allowed, denied := uint32(unix.SECCOMP_RET_ALLOW), uint32(testDeny)
	for _, c := range []struct {
		what string
		prog []unix.SockFilter
		nr   uintptr
		args []uint64
		want uint32
	}{
		{"a runtime thread", prog, unix.SYS_CLONE, []uint64{cloneThreadFlags}, allowed},
		{"fork", prog, unix.SYS_CLONE, []uint64{uint64(unix.SIGCHLD)}, denied},
		{"a thread in a new user namespace", prog, unix.SYS_CLONE, []uint64{cloneThreadFlags | unix.CLONE_NEWUSER}, denied},
		{"clone3", prog, unix.SYS_CLONE3, nil, denied},
		{"execve", prog, unix.SYS_EXECVE, nil, denied},
		{"mmap read-write", prog, unix.SYS_MMAP, []uint64{0, 4096, unix.PROT_READ | unix.PROT_WRITE}, allowed},
		{"mmap executable", prog, unix.SYS_MMAP, []uint64{0, 4096, unix.PROT_READ | unix.PROT_EXEC}, denied},
		{"mprotect executable", prog, unix.SYS_MPROTECT, []uint64{0, 4096, unix.PROT_EXEC}, denied},
		{"tgkill of its own thread", prog, unix.SYS_TGKILL, []uint64{pid, 7, uint64(unix.SIGURG)}, allowed},
		{"tgkill of another process", prog, unix.SYS_TGKILL, []uint64{pid + 1, 7, uint64(unix.SIGKILL)}, denied},
		{"kill of another process", prog, unix.SYS_KILL, []uint64{1, uint64(unix.SIGKILL)}, denied},
		{"kill of every process", prog, unix.SYS_KILL, []uint64{uint64(1<<64 - 1), uint64(unix.SIGKILL)}, denied},
		{"prctl naming a mapping", prog, unix.SYS_PRCTL, []uint64{prSetVMA}, allowed},
		{"prctl giving capabilities back", prog, unix.SYS_PRCTL, []uint64{unix.PR_CAP_AMBIENT}, denied},
		{"unshare of the working directory", prog, unix.SYS_UNSHARE, []uint64{unix.CLONE_FS}, allowed},
		{"unshare of a user namespace", prog, unix.SYS_UNSHARE, []uint64{unix.CLONE_NEWUSER}, denied},
		{"socket", prog, unix.SYS_SOCKET, []uint64{unix.AF_UNIX}, denied},
		{"connect", prog, unix.SYS_CONNECT, nil, denied},
		{"syslog's socket", withSyslog, unix.SYS_SOCKET, []uint64{unix.AF_UNIX}, allowed},
		{"syslog's connect", withSyslog, unix.SYS_CONNECT, nil, allowed},
		{"a TCP socket with --syslog", withSyslog, unix.SYS_SOCKET, []uint64{unix.AF_INET}, denied},
		{"ptrace", prog, unix.SYS_PTRACE, nil, denied},
		{"mount", prog, unix.SYS_MOUNT, nil, denied},
		{"setns", prog, unix.SYS_SETNS, nil, denied},
		{"bpf", prog, unix.SYS_BPF, nil, denied},
		{"io_uring_setup", prog, unix.SYS_IO_URING_SETUP, nil, denied},
		{"keyctl", prog, unix.SYS_KEYCTL, nil, denied},
	} {
		call := seccompCall{nr: uint32(c.nr), arch: seccompArch}
		copy(call.args[:], c.args)
		checkVerdict(t, c.prog, call, c.want, c.what)
	}
}

// TestSeccompFilterIsCacheable checks that a call whose rule checks no argument is decided from
// its number and architecture alone: the kernel then allows it from a per-call bitmap without
// running the filter, which keeps the filter off the cost of the calls each request makes.
func TestSeccompFilterIsCacheable(t *testing.T) {
	if seccompArch == 0 {
		t.Skip("no allow-list for this architecture")
	}
	prog := compileForTest(t, seccompContext{pid: 4242})
	for _, r := range seccompRules(seccompContext{pid: 4242}) {
		got, err := runBPF(prog, seccompCall{nr: r.nr, arch: seccompArch}, true)
		switch {
		case r.arg < 0 && (err != nil || got != unix.SECCOMP_RET_ALLOW):
			t.Errorf("%s: the kernel could not cache it: %#x, %v", syscallName(r.nr), got, err)
		case r.arg >= 0 && err != errArgLoad:
			t.Errorf("%s: its argument rule is not checked (%#x, %v)", syscallName(r.nr), got, err)
		}
	}
}

// TestSeccompCompileRejectsBadLists covers the list's own mistakes.
func TestSeccompCompileRejectsBadLists(t *testing.T) {
	for _, rules := range [][]sysRule{
		{allow(unix.SYS_READ), allow(unix.SYS_READ)},
		{{nr: unix.SYS_PRCTL, arg: 6, values: []uint32{1}}},
		{{nr: unix.SYS_PRCTL, arg: 0}},
		{{nr: unix.SYS_PRCTL, arg: 0, values: []uint32{1}, clear: 2}},
	} {
		if _, err := compileSeccomp(seccompArch, rules, testDeny); err == nil {
			t.Errorf("compileSeccomp(%v) succeeded", rules)
		}
	}
}
