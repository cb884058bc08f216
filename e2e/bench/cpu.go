package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"
	"time"
)

// With --cpu a lockstep round also records the CPU time that each system's daemon and QEMU used
// during each of its steps. On this 2-core host the guest's vCPU threads and the daemon share
// the cores, so a daemon that needs more CPU (or makes the guest need more) slows the step; CPU
// time says which side did the work and varies less from round to round than the wall time.

// userHZ is the unit of the CPU times in /proc/PID/stat (USER_HZ, 100 on every Linux ABI Go
// supports).
const userHZ = 100

// stepCPU is the CPU time one system used during one step.
type stepCPU struct {
	daemon, qemu time.Duration
}

// procCPU is one process's line of /proc/PID/stat: its parent and the CPU time it and its
// reaped children used.
type procCPU struct {
	ppid int
	cpu  time.Duration
}

// parseProcStat reads a /proc/PID/stat line. The command name (field 2) is in parentheses and
// may contain spaces and parentheses, so the fields are counted from the last ')'.
func parseProcStat(line []byte) (procCPU, error) {
	end := bytes.LastIndexByte(line, ')')
	if end < 0 {
		return procCPU{}, fmt.Errorf("no command name in %q", line)
	}
	// After ") ": state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
	// utime stime cutime cstime ...
	f := bytes.Fields(line[end+1:])
	if len(f) < 15 {
		return procCPU{}, fmt.Errorf("short stat line %q", line)
	}
	ppid, err := strconv.Atoi(string(f[1]))
	if err != nil {
		return procCPU{}, fmt.Errorf("ppid in %q: %w", line, err)
	}
	var ticks int64
	for _, field := range f[11:15] {
		n, err := strconv.ParseInt(string(field), 10, 64)
		if err != nil {
			return procCPU{}, fmt.Errorf("CPU time in %q: %w", line, err)
		}
		ticks += n
	}
	return procCPU{ppid: ppid, cpu: time.Duration(ticks) * time.Second / userHZ}, nil
}

// treeCPU returns the CPU time that the process root and all its descendants have used so far
// (a daemon may run in a child: uvfsd re-executes itself into a user namespace). It is 0 for
// root 0 (a system without a daemon).
func treeCPU(root int) (time.Duration, error) {
	if root == 0 {
		return 0, nil
	}
	dir, err := os.Open("/proc")
	if err != nil {
		return 0, err
	}
	names, err := dir.Readdirnames(-1)
	dir.Close()
	if err != nil {
		return 0, err
	}
	procs := map[int]procCPU{}
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		line, err := os.ReadFile("/proc/" + name + "/stat")
		if err != nil {
			continue // it exited meanwhile
		}
		if procs[pid], err = parseProcStat(line); err != nil {
			return 0, err
		}
	}
	if _, ok := procs[root]; !ok {
		return 0, fmt.Errorf("process %d is gone", root)
	}
	var total time.Duration
	for pid, p := range procs {
		for a := pid; ; a = procs[a].ppid {
			if a == root {
				total += p.cpu
				break
			}
			if _, ok := procs[a]; !ok || a <= 1 {
				break
			}
		}
	}
	return total, nil
}

// cpuSamples holds every round's CPU time: system -> workload -> one per round.
type cpuSamples map[string]map[string][]stepCPU

func (s cpuSamples) add(system string, steps map[string]stepCPU) {
	if s[system] == nil {
		s[system] = map[string][]stepCPU{}
	}
	for name, c := range steps {
		s[system][name] = append(s[system][name], c)
	}
}

// medians returns the median daemon and QEMU CPU time of one system's workload.
func (s cpuSamples) medians(system, workload string) (daemon, qemu time.Duration) {
	var ds, qs []time.Duration
	for _, c := range s[system][workload] {
		ds, qs = append(ds, c.daemon), append(qs, c.qemu)
	}
	return median(ds), median(qs)
}

// writeCPU prints each workload's median daemon and QEMU CPU time per system, and uvfsd's
// ratios to the C virtiofsd. 9p has no daemon: QEMU serves it.
func writeCPU(w io.Writer, s cpuSamples, sz sizes, systems []string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := "CPU time per step (median)\t"
	for _, sys := range systems {
		header += sys + " daemon\t" + sys + " QEMU\t"
	}
	fmt.Fprintln(tw, header+"daemon uvfsd/C\tQEMU uvfsd/C\t")
	ms := func(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }
	for _, wl := range workloads {
		row := wl.Label(sz) + "\t"
		for _, sys := range systems {
			if len(s[sys][wl.Name]) == 0 {
				row += "-\t-\t"
				continue
			}
			d, q := s.medians(sys, wl.Name)
			if sys == sys9p {
				row += "-\t" + ms(q) + "\t"
				continue
			}
			row += ms(d) + "\t" + ms(q) + "\t"
		}
		ud, uq := s.medians(sysUvfsd, wl.Name)
		cd, cq := s.medians(sysC, wl.Name)
		row += ratio(ud, cd) + "\t" + ratio(uq, cq) + "\t"
		fmt.Fprintln(tw, row)
	}
	tw.Flush()
}
