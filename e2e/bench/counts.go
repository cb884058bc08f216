package main

// Request counting (--count-requests): how many FUSE requests of each
// opcode one guest workload costs with each daemon. Round trips, not the
// daemon's own work, dominate guest time, so this is where structural
// differences between uvfsd and the C virtiofsd show.

import (
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/scripts/vm"
)

var (
	// The C virtiofsd's debug log (-d) has one such line per request.
	cRequestLine = regexp.MustCompile(`opcode: ([A-Z_]+) \(`)
	// The Rust virtiofsd's (--log-level=debug) names the opcode in its own spelling
	// ("opcode=BatchForget (42)"): the number gives the name the others use.
	rustRequestLine = regexp.MustCompile(`Received request: opcode=[A-Za-z0-9]+ \(([0-9]+)\)`)
	// uvfsd prints its totals on SIGUSR1.
	uvfsdCountsLine = regexp.MustCompile(`requests served: ([^;]*)`)
)

// requestCounter follows a daemon's log as it is written and keeps the
// request totals it shows.
type requestCounter struct {
	mu      sync.Mutex
	split   vm.LineSplitter // calls line, under mu
	totals  map[string]uint64
	reports int // uvfsd "requests served" lines seen
	changed *sync.Cond
}

func newRequestCounter() *requestCounter {
	c := &requestCounter{totals: map[string]uint64{}}
	c.changed = sync.NewCond(&c.mu)
	c.split.Line = c.line
	return c
}

func (c *requestCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.split.Write(p)
}

func (c *requestCounter) line(l string) {
	if m := cRequestLine.FindStringSubmatch(l); m != nil {
		c.totals[m[1]]++
		return
	}
	if m := rustRequestLine.FindStringSubmatch(l); m != nil {
		if n, err := strconv.ParseUint(m[1], 10, 32); err == nil {
			c.totals[fuse.OpName(fuse.Opcode(n))]++
		}
		return
	}
	if m := uvfsdCountsLine.FindStringSubmatch(l); m != nil {
		c.totals = parseCounts(m[1])
		c.reports++
		c.changed.Broadcast()
	}
}

// parseCounts reads "LOOKUP=12 GETATTR=3".
func parseCounts(s string) map[string]uint64 {
	m := map[string]uint64{}
	for _, f := range strings.Fields(s) {
		name, n, ok := strings.Cut(f, "=")
		if v, err := strconv.ParseUint(n, 10, 64); ok && err == nil {
			m[name] = v
		}
	}
	return m
}

// snapshot returns the current totals. With signal set (uvfsd) it first
// asks the daemon for a fresh report and waits up to a second for it.
func (c *requestCounter) snapshot(signal func() error) map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if signal != nil {
		before := c.reports
		if err := signal(); err == nil {
			deadline := time.Now().Add(time.Second)
			timer := time.AfterFunc(time.Second, func() {
				c.mu.Lock()
				c.changed.Broadcast()
				c.mu.Unlock()
			})
			for c.reports == before && time.Now().Before(deadline) {
				c.changed.Wait()
			}
			timer.Stop()
		}
	}
	out := make(map[string]uint64, len(c.totals))
	for k, v := range c.totals {
		out[k] = v
	}
	return out
}

// watchSteps returns a console writer that calls onStep with each workload
// name as the guest prints its BENCH line. The VM writes the console from
// one goroutine, so the splitter needs no lock.
func watchSteps(onStep func(name string)) io.Writer {
	return &vm.LineSplitter{Line: func(l string) {
		if j := strings.Index(l, "BENCH "); j >= 0 {
			if f := strings.Fields(l[j+len("BENCH "):]); len(f) == 2 {
				onStep(f[0])
			}
		}
	}}
}

// stepCounts is one boot's requests per workload.
type stepCounts map[string]map[string]uint64

// countSteps returns a console writer that records, at each finished step,
// the requests since the previous one.
func countSteps(counter *requestCounter, signal func() error) (io.Writer, stepCounts) {
	counts := stepCounts{}
	prev := map[string]uint64{}
	return watchSteps(func(name string) {
		now := counter.snapshot(signal)
		delta := map[string]uint64{}
		for op, n := range now {
			if d := n - prev[op]; d > 0 {
				delta[op] = d
			}
		}
		counts[name], prev = delta, now
	}), counts
}

// signalProcess returns a function that sends SIGUSR1 to pid.
func signalProcess(pid int) func() error {
	return func() error { return syscall.Kill(pid, syscall.SIGUSR1) }
}

// writeCounts prints, per workload, each opcode's request count for every
// system side by side.
func writeCounts(w io.Writer, counts map[string]stepCounts, systems []string, s sizes) {
	fmt.Fprintf(w, "\nrequests per workload (one boot each; a step's drop_caches FORGETs count in that step):\n\n")
	fmt.Fprintf(w, "%22s  %-14s", "workload", "opcode")
	for _, sys := range systems {
		fmt.Fprintf(w, " %12s", sys)
	}
	fmt.Fprintln(w)
	for _, wl := range workloads {
		ops := map[string]bool{}
		for _, sys := range systems {
			for op := range counts[sys][wl.Name] {
				ops[op] = true
			}
		}
		names := make([]string, 0, len(ops))
		for op := range ops {
			names = append(names, op)
		}
		slices.Sort(names)
		label := wl.Label(s)
		totals := make([]uint64, len(systems))
		for _, op := range names {
			fmt.Fprintf(w, "%22s  %-14s", label, op)
			label = ""
			for i, sys := range systems {
				n := counts[sys][wl.Name][op]
				totals[i] += n
				fmt.Fprintf(w, " %12d", n)
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%22s  %-14s", label, "all")
		for _, n := range totals {
			fmt.Fprintf(w, " %12d", n)
		}
		fmt.Fprintln(w)
	}
}
