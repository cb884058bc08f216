package guest

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// A daemon's cost as /proc shows it: the CPU time and resident memory of a process and all its
// descendants (a daemon may run in a child: uvfsd re-executes itself into a user namespace, the
// C virtiofsd forks one for its sandbox). The e2e benchmarks read them around their runs.

// userHZ is the unit of the CPU times in /proc/PID/stat (USER_HZ, 100 on every Linux ABI Go
// supports).
const userHZ = 100

// ProcStat is what the e2e tests take from one /proc/PID/stat line: the benchmarks the CPU time
// of a process tree, the client tests a process's state, group and session.
type ProcStat struct {
	PID int
	// Comm is the command name (field 2) without its parentheses: at most 15 bytes of the
	// executable's name or of what the process set with prctl(PR_SET_NAME), which may hold
	// spaces and parentheses.
	Comm string
	// State is the state letter: 'R' running, 'S' sleeping, 'Z' zombie, 'X' dead, ...
	State   byte
	PPID    int
	PGRP    int // the process group
	Session int
	// CPU is user + system time of all the process's threads, live and exited, and of its
	// reaped children (utime + stime + cutime + cstime).
	CPU time.Duration
}

// ParseProcStat reads a /proc/PID/stat line. The command name (field 2) is in parentheses and
// may contain spaces and parentheses, so the fields are counted from the last ')'.
func ParseProcStat(line []byte) (ProcStat, error) {
	start, end := bytes.IndexByte(line, '('), bytes.LastIndexByte(line, ')')
	if start < 0 || end < start {
		return ProcStat{}, fmt.Errorf("no command name in %q", line)
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(line[:start])))
	if err != nil {
		return ProcStat{}, fmt.Errorf("pid in %q: %w", line, err)
	}
	// After ") ": state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
	// utime stime cutime cstime ...
	f := bytes.Fields(line[end+1:])
	if len(f) < 15 {
		return ProcStat{}, fmt.Errorf("short stat line %q", line)
	}
	if len(f[0]) != 1 {
		return ProcStat{}, fmt.Errorf("state in %q: want one letter", line)
	}
	s := ProcStat{PID: pid, Comm: string(line[start+1 : end]), State: f[0][0]}
	for i, n := range []struct {
		name string
		into *int
	}{{"ppid", &s.PPID}, {"pgrp", &s.PGRP}, {"session", &s.Session}} {
		if *n.into, err = strconv.Atoi(string(f[1+i])); err != nil {
			return ProcStat{}, fmt.Errorf("%s in %q: %w", n.name, line, err)
		}
	}
	var ticks int64
	for _, field := range f[11:15] {
		n, err := strconv.ParseInt(string(field), 10, 64)
		if err != nil {
			return ProcStat{}, fmt.Errorf("CPU time in %q: %w", line, err)
		}
		ticks += n
	}
	s.CPU = time.Duration(ticks) * time.Second / userHZ
	return s, nil
}

// ReadProcStat reads and parses /proc/PID/stat. For a process that is gone, or goes while it
// is read, the error is the read's (a *fs.PathError, ENOENT or ESRCH).
func ReadProcStat(pid int) (ProcStat, error) {
	line, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ProcStat{}, err
	}
	s, err := ParseProcStat(line)
	if err != nil {
		return ProcStat{}, fmt.Errorf("process %d: %w", pid, err)
	}
	return s, nil
}

// RSS is a process's resident memory from /proc/PID/status, in bytes.
type RSS struct {
	Total int64 // VmRSS
	// Shmem is the shared memory in Total (RssShmem): for a vhost-user daemon mostly the guest's
	// RAM, which it maps and touches as it serves requests, and which is the VM's, not its own.
	Shmem int64
}

// Own is the resident memory without the shared memory.
func (r RSS) Own() int64 { return r.Total - r.Shmem }

// ParseRSS reads the VmRSS and RssShmem lines of a /proc/PID/status; a process without them (a
// zombie) has none.
func ParseRSS(status []byte) (RSS, error) {
	var r RSS
	for line := range bytes.Lines(status) {
		var into *int64
		name, rest, ok := bytes.Cut(line, []byte(":"))
		switch {
		case !ok:
			continue
		case string(name) == "VmRSS":
			into = &r.Total
		case string(name) == "RssShmem":
			into = &r.Shmem
		default:
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return RSS{}, fmt.Errorf("%s line %q: want \"%[1]s: N kB\"", name, bytes.TrimSpace(line))
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return RSS{}, fmt.Errorf("%s line %q: %w", name, bytes.TrimSpace(line), err)
		}
		*into = kb << 10
	}
	return r, nil
}

// processTree returns every process's stat line, by pid, and the pids of root and its
// descendants.
func processTree(root int) (map[int]ProcStat, []int, error) {
	dir, err := os.Open("/proc")
	if err != nil {
		return nil, nil, err
	}
	names, err := dir.Readdirnames(-1)
	dir.Close()
	if err != nil {
		return nil, nil, err
	}
	procs := map[int]ProcStat{}
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		line, err := os.ReadFile("/proc/" + name + "/stat")
		if err != nil {
			continue // it exited meanwhile
		}
		if procs[pid], err = ParseProcStat(line); err != nil {
			return nil, nil, err
		}
	}
	if _, ok := procs[root]; !ok {
		return nil, nil, fmt.Errorf("process %d is gone", root)
	}
	var tree []int
	for pid := range procs {
		for a := pid; ; a = procs[a].PPID {
			if a == root {
				tree = append(tree, pid)
				break
			}
			if _, ok := procs[a]; !ok || a <= 1 {
				break
			}
		}
	}
	return procs, tree, nil
}

// TreeCPU returns the CPU time that the process root and all its descendants have used so far.
// It is 0 for root 0 (a system without a daemon).
func TreeCPU(root int) (time.Duration, error) {
	if root == 0 {
		return 0, nil
	}
	procs, tree, err := processTree(root)
	if err != nil {
		return 0, err
	}
	var total time.Duration
	for _, pid := range tree {
		total += procs[pid].CPU
	}
	return total, nil
}

// TreeRSS returns the resident memory of the process root and all its descendants together
// (the sum of their VmRSS and RssShmem: pages that two of them share count twice).
func TreeRSS(root int) (RSS, error) {
	_, tree, err := processTree(root)
	if err != nil {
		return RSS{}, err
	}
	var total RSS
	for _, pid := range tree {
		status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
		if err != nil {
			continue // it exited meanwhile
		}
		rss, err := ParseRSS(status)
		if err != nil {
			return RSS{}, fmt.Errorf("process %d: %w", pid, err)
		}
		total.Total += rss.Total
		total.Shmem += rss.Shmem
	}
	return total, nil
}
