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
		if t != tUvfsd && t != tC && t != tDirect && t != tInProcess {
			variants = append(variants, t)
			h += t + "/C ops\t"
		}
	}
	fmt.Fprintln(tw, h+"uvfsd/C ops\tdirect/uvfsd ops\t")
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
			row += throughputRatio(u, r.get(tC, op.name, d)) + "\t" + throughputRatio(r.get(tDirect, op.name, d), u) + "\t"
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
