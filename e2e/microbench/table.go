package main

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

func numCPU() int { return runtime.NumCPU() }

// micros formats a latency in µs, "-" for none.
func micros(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", float64(d)/float64(time.Microsecond))
}

func rate(v float64) string {
	if v <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", v)
}

// throughputRatio is a's ops/s over b's, "-" when either is missing.
func throughputRatio(a, b stats) string {
	if a.opsPerSec() <= 0 || b.opsPerSec() <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a.opsPerSec()/b.opsPerSec())
}

// writeTable prints latency (µs) and ops/s per target for each operation and
// depth, then uvfsd's throughput relative to the C virtiofsd (>= 1: uvfsd
// is at least as fast) and the direct syscalls' relative to uvfsd (how far
// from the limit uvfsd is).
func writeTable(w io.Writer, r results, targets []string, depths []int) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	h := "op\tdepth\t"
	for _, t := range targets {
		h += t + " µs\t" + t + " ops/s\t"
	}
	// Variants (uvfsd with other flags) get a ratio to the C virtiofsd each.
	var variants []string
	for _, t := range targets {
		if t != tUvfsd && t != tC && t != tRust && t != tDirect && t != tInProcess {
			variants = append(variants, t)
			h += t + "/C ops\t"
		}
	}
	fmt.Fprintln(tw, h+"uvfsd/C ops\tuvfsd/rust ops\tdirect/uvfsd ops\t")
	for _, op := range benchOps {
		for _, d := range depths {
			row := fmt.Sprintf("%s\t%d\t", op.name, d)
			for _, t := range targets {
				s := r.get(t, op.name, d)
				row += micros(s.latency()) + "\t" + rate(s.opsPerSec()) + "\t"
			}
			for _, v := range variants {
				row += throughputRatio(r.get(v, op.name, d), r.get(tC, op.name, d)) + "\t"
			}
			u := r.get(tUvfsd, op.name, d)
			row += throughputRatio(u, r.get(tC, op.name, d)) + "\t" + throughputRatio(u, r.get(tRust, op.name, d)) + "\t" +
				throughputRatio(r.get(tDirect, op.name, d), u) + "\t"
			fmt.Fprintln(tw, row)
		}
	}
	tw.Flush()
}

// writeAllocTable prints heap allocations per request: by uvfsd's packages
// (the target is 0), by the test front-end, and by the runtime alone.
func writeAllocTable(w io.Writer, a map[string]allocResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "op (in-process, depth 1)\tuvfsd allocs/req\tfront-end allocs/req\truntime allocs/req\t")
	names := make([]string, 0, len(benchOps))
	for _, op := range benchOps {
		names = append(names, op.name)
	}
	for name := range a {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	for _, name := range names {
		r, ok := a[name]
		if !ok {
			continue
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t\n", name, r.server, r.client, r.runtime)
	}
	tw.Flush()
}

// writeAllocSites lists where uvfsd allocates, per operation: sites above
// minPerReq allocations per request, most first.
func writeAllocSites(w io.Writer, a map[string]allocResult, minPerReq float64) {
	for _, op := range benchOps {
		r := a[op.name]
		sites := make([]string, 0, len(r.sites))
		for s, n := range r.sites {
			if n >= minPerReq {
				sites = append(sites, s)
			}
		}
		slices.SortFunc(sites, func(x, y string) int {
			switch {
			case r.sites[x] > r.sites[y]:
				return -1
			case r.sites[x] < r.sites[y]:
				return 1
			}
			return strings.Compare(x, y)
		})
		for _, s := range sites {
			fmt.Fprintf(w, "  %-16s %6.2f/req  %s\n", op.name, r.sites[s], s)
		}
	}
}

// cpuMicros formats a CPU time per request in µs, "-" for none.
func cpuMicros(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", float64(d)/float64(time.Microsecond))
}

// cpuRatio is a's CPU per request over b's, "-" when either is missing.
func cpuRatio(a, b stats) string {
	if a.cpuPerOp() <= 0 || b.cpuPerOp() <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", float64(a.cpuPerOp())/float64(b.cpuPerOp()))
}

// writeCPUTable prints, per operation and depth, the CPU time per request of every target that
// has one (a daemon's processes together; for direct, this process running the syscalls), each
// daemon's ratio to direct, and uvfsd's to each anchor (<= 1: uvfsd spends no more).
func writeCPUTable(w io.Writer, r results, targets []string, depths []int) {
	var cols, daemons []string
	for _, t := range targets {
		if t != tInProcess {
			cols = append(cols, t)
		}
		if t != tInProcess && t != tDirect {
			daemons = append(daemons, t)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	h := "CPU µs per request (median)\tdepth\t"
	for _, t := range cols {
		h += t + "\t"
	}
	for _, t := range daemons {
		h += t + "/direct\t"
	}
	fmt.Fprintln(tw, h+"uvfsd/C\tuvfsd/rust\t")
	for _, op := range benchOps {
		for _, d := range depths {
			row := fmt.Sprintf("%s\t%d\t", op.name, d)
			for _, t := range cols {
				row += cpuMicros(r.getCPU(t, op.name, d).cpuPerOp()) + "\t"
			}
			direct := r.getCPU(tDirect, op.name, d)
			for _, t := range daemons {
				row += cpuRatio(r.getCPU(t, op.name, d), direct) + "\t"
			}
			u := r.getCPU(tUvfsd, op.name, d)
			row += cpuRatio(u, r.getCPU(tC, op.name, d)) + "\t" + cpuRatio(u, r.getCPU(tRust, op.name, d)) + "\t"
			fmt.Fprintln(tw, row)
		}
	}
	tw.Flush()
}

// writeMemTable prints each daemon's resident memory, its processes together (median of the
// rounds), idle after setup (INIT and the fixture's lookups) and idle after the benchmark: all of
// it (VmRSS) and without shared memory (RssShmem, mostly the guest RAM the daemon touched, which
// the VM owns).
func writeMemTable(w io.Writer, m memory, targets []string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "idle RSS MiB, all processes (median)\tafter setup\twithout shmem\tafter the run\twithout shmem\t")
	mib := func(v []int64) string {
		if len(v) == 0 {
			return "-"
		}
		slices.Sort(v)
		return fmt.Sprintf("%.1f", float64(v[(len(v)-1)/2])/(1<<20))
	}
	for _, t := range targets {
		samples, ok := m[t]
		if !ok {
			continue
		}
		var cols [4][]int64
		for _, s := range samples {
			for i, v := range []int64{s.setup.Total, s.setup.Own(), s.after.Total, s.after.Own()} {
				cols[i] = append(cols[i], v)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", t, mib(cols[0]), mib(cols[1]), mib(cols[2]), mib(cols[3]))
	}
	tw.Flush()
}
