package userns

import (
	"fmt"
	"slices"

	"golang.org/x/sys/unix"
)

// sysRule allows one system call, with any arguments or only with some values of one argument.
type sysRule struct {
	nr uint32
	// arg is the argument checked, -1 for none. Only its low 32 bits are compared: every
	// argument checked is a C int (flags, a pid, an option), of which the kernel reads no more.
	arg int
	// values: the argument must be one of these; clear: it must have none of these bits set.
	values []uint32
	clear  uint32
}

func allow(nr uintptr) sysRule { return sysRule{nr: uint32(nr), arg: -1} }

func allowIf(nr uintptr, arg int, values ...uint32) sysRule {
	return sysRule{nr: uint32(nr), arg: arg, values: values}
}

func allowIfClear(nr uintptr, arg int, bits uint32) sysRule {
	return sysRule{nr: uint32(nr), arg: arg, clear: bits}
}

// Offsets in struct seccomp_data (little endian: an argument's low half comes first).
const (
	seccompNrOff   = 0
	seccompArchOff = 4
	seccompArgsOff = 16
)

func bpfStmt(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }

func bpfJump(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
}

// compileSeccomp turns the rules into a classic BPF program for seccomp: a call of another
// architecture (i386's int 0x80 on amd64) or one no rule allows gets deny. The calls are found by
// binary search over their numbers; a call whose rule checks no argument reads nothing but the
// number and the architecture, so the kernel (5.11 and newer) allows it from its per-call cache
// without running the program at all.
func compileSeccomp(arch uint32, rules []sysRule, deny uint32) ([]unix.SockFilter, error) {
	rules = slices.Clone(rules)
	slices.SortFunc(rules, func(a, b sysRule) int { return int(a.nr) - int(b.nr) })
	for i := 1; i < len(rules); i++ {
		if rules[i].nr == rules[i-1].nr {
			return nil, fmt.Errorf("seccomp list: system call %s twice", syscallName(rules[i].nr))
		}
	}
	prog := []unix.SockFilter{
		bpfStmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, seccompArchOff),
		bpfJump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, arch, 1, 0),
		bpfStmt(unix.BPF_RET|unix.BPF_K, deny),
		bpfStmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, seccompNrOff),
	}
	prog, err := compileRange(prog, rules, deny)
	if err != nil {
		return nil, err
	}
	if len(prog) > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("seccomp list: the filter has %d instructions, more than the kernel's %d", len(prog), unix.BPF_MAXINSNS)
	}
	return prog, nil
}

// compileRange appends the search for the number in the accumulator among rules (sorted); every
// path ends in a return.
func compileRange(prog []unix.SockFilter, rules []sysRule, deny uint32) ([]unix.SockFilter, error) {
	const leaf = 4
	if len(rules) <= leaf {
		for _, r := range rules {
			block, err := ruleBlock(r, deny)
			if err != nil {
				return nil, err
			}
			prog = append(prog, bpfJump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, r.nr, 0, uint8(len(block))))
			prog = append(prog, block...)
		}
		return append(prog, bpfStmt(unix.BPF_RET|unix.BPF_K, deny)), nil
	}
	mid := len(rules) / 2
	// nr >= rules[mid].nr: fall into the jump to the upper half; below: skip it.
	prog = append(prog, bpfJump(unix.BPF_JMP|unix.BPF_JGE|unix.BPF_K, rules[mid].nr, 0, 1))
	ja := len(prog)
	prog = append(prog, bpfStmt(unix.BPF_JMP|unix.BPF_JA, 0))
	prog, err := compileRange(prog, rules[:mid], deny)
	if err != nil {
		return nil, err
	}
	prog[ja].K = uint32(len(prog) - ja - 1)
	return compileRange(prog, rules[mid:], deny)
}

// ruleBlock is what follows the match of r's number: allow, or check the argument and return.
func ruleBlock(r sysRule, deny uint32) ([]unix.SockFilter, error) {
	ret := func(k uint32) unix.SockFilter { return bpfStmt(unix.BPF_RET|unix.BPF_K, k) }
	if r.arg < 0 {
		return []unix.SockFilter{ret(unix.SECCOMP_RET_ALLOW)}, nil
	}
	if r.arg > 5 || (len(r.values) == 0) == (r.clear == 0) || len(r.values) > 32 {
		return nil, fmt.Errorf("seccomp list: bad rule for %s", syscallName(r.nr))
	}
	block := []unix.SockFilter{bpfStmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, uint32(seccompArgsOff+8*r.arg))}
	if r.clear != 0 {
		// Any of the bits set: deny (the next instruction); none: skip to allow.
		return append(block, bpfJump(unix.BPF_JMP|unix.BPF_JSET|unix.BPF_K, r.clear, 0, 1), ret(deny), ret(unix.SECCOMP_RET_ALLOW)), nil
	}
	for i, v := range r.values {
		// A match jumps over the remaining comparisons and the deny to the allow.
		block = append(block, bpfJump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, v, uint8(len(r.values)-i), 0))
	}
	return append(block, ret(deny), ret(unix.SECCOMP_RET_ALLOW)), nil
}
