package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/uvfsd/uvfsd/e2e/guest"
	"github.com/uvfsd/uvfsd/scripts/vm"
)

// A lockstep round boots every system's guest at once and lets one guest at a time run each
// step, the systems taking turns in an order that rotates from step to step. This machine slows
// down for minutes at a time (steal time from the hypervisor's other guests); with one boot per
// system such a phase falls on one system's whole run, while in lockstep the systems' runs of a
// step are seconds apart and share it. The waiting guests sit idle at a gate (gated guestScript).

// gatedGuest is one system's guest in a lockstep round.
type gatedGuest struct {
	system  string
	bt      *boot
	gate    *io.PipeWriter // a line on the guest's console opens its next gate
	lines   lineSink       // the guest script's output
	done    chan struct{}  // closed when the boot ended; res and err are set before
	res     *vm.Result
	err     error
	broken  error // why the round stopped driving this guest
	qemuPid atomic.Int64
	cpu     map[string]stepCPU // with --cpu: per step
}

// cpuNow is the CPU time the guest's daemon and QEMU have used so far.
func (g *gatedGuest) cpuNow() (stepCPU, error) {
	var c stepCPU
	var err error
	if g.bt.daemon != nil {
		if c.daemon, err = guest.TreeCPU(g.bt.daemon.Pid()); err != nil {
			return c, fmt.Errorf("the daemon's CPU time: %w", err)
		}
	}
	if c.qemu, err = guest.TreeCPU(int(g.qemuPid.Load())); err != nil {
		return c, fmt.Errorf("QEMU's CPU time: %w", err)
	}
	return c, nil
}

// lineSink passes the guest script's lines to the round. It never blocks the console reader:
// the script prints a few dozen lines, far below the buffer.
type lineSink chan string

func (s lineSink) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		select {
		case s <- l:
		default:
		}
	}
	return len(p), nil
}

// await reads the guest's lines until one satisfies match, the guest ends or limit passes.
func (g *gatedGuest) await(what string, match func(string) bool, limit time.Duration) error {
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		select {
		case l := <-g.lines:
			if match(l) {
				return nil
			}
		case <-g.done:
			for {
				select {
				case l := <-g.lines:
					if match(l) {
						return nil
					}
				default:
					return fmt.Errorf("the guest ended before %s", what)
				}
			}
		case <-timer.C:
			return fmt.Errorf("no %s within %v", what, limit)
		}
	}
}

// runLockstep runs one round of systems in lockstep and returns each system's step times or
// why it failed.
func (b *bench) runLockstep(round int, systems []string) (map[string]map[string]time.Duration, map[string]map[string]stepCPU, map[string]error) {
	steps := map[string]map[string]time.Duration{}
	cpu := map[string]map[string]stepCPU{}
	failed := map[string]error{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var guests []*gatedGuest
	for _, system := range systems {
		bt, err := b.setUp(system)
		if err != nil {
			failed[system] = err
			continue
		}
		guests = append(guests, &gatedGuest{system: system, bt: bt, lines: make(lineSink, 4096), done: make(chan struct{}), cpu: map[string]stepCPU{}})
	}
	syscall.Sync() // what setUp and the last round left dirty, before any step runs
	for _, g := range guests {
		stdin, gate := io.Pipe()
		g.gate = gate
		machine := b.vm(g.bt, g.system)
		machine.ScriptOutput, machine.Stdin = g.lines, stdin
		machine.Started = func(pid int) { g.qemuPid.Store(int64(pid)) }
		machine.Timeout *= time.Duration(len(guests)) // each guest waits while the others run their steps
		if b.verbose {
			machine.Console = prefixWriter(g.system)
		}
		go func() {
			defer close(g.done)
			g.res, g.err = machine.Run(ctx)
		}()
	}
	// Every guest reaches its first gate before any step runs: what a guest does before it (its
	// boot, guest-tmpfs's copy of the tree) must not fall on another guest's first step.
	if len(workloads) > 0 {
		for _, g := range guests {
			g.broken = g.await("BENCH-WAIT "+workloads[0].Name, func(l string) bool {
				return strings.HasSuffix(l, "BENCH-WAIT "+workloads[0].Name)
			}, b.timeout)
		}
	}
	for i, w := range workloads {
		for j := range guests {
			g := guests[(i+j+round-1)%len(guests)]
			if g.broken != nil {
				continue
			}
			if i > 0 {
				if g.broken = g.await("BENCH-WAIT "+w.Name, func(l string) bool {
					return strings.HasSuffix(l, "BENCH-WAIT "+w.Name)
				}, b.timeout); g.broken != nil {
					continue
				}
			}
			syscall.Sync() // the host's writeback of the step before must not run in this one
			var before stepCPU
			if b.measureCPU {
				if before, g.broken = g.cpuNow(); g.broken != nil {
					continue
				}
			}
			if _, err := io.WriteString(g.gate, "\n"); err != nil {
				g.broken = fmt.Errorf("open the gate of %s: %w", w.Name, err)
				continue
			}
			g.broken = g.await("the time of "+w.Name, func(l string) bool {
				return strings.Contains(l, "BENCH "+w.Name+" ") || strings.Contains(l, "BENCH-FAIL ")
			}, b.timeout)
			if b.measureCPU && g.broken == nil {
				var after stepCPU
				after, g.broken = g.cpuNow()
				g.cpu[w.Name] = stepCPU{daemon: after.daemon - before.daemon, qemu: after.qemu - before.qemu}
			}
		}
	}
	// Every guest waits at the final gate until all have run their steps: a guest that powered
	// off at once would take the CPU from the steps still to run.
	for _, g := range guests {
		if g.broken == nil {
			g.broken = g.await("BENCH-WAIT end", func(l string) bool { return strings.HasSuffix(l, "BENCH-WAIT end") }, b.timeout)
		}
	}
	for _, g := range guests {
		if g.broken == nil {
			io.WriteString(g.gate, "\n")
		}
		// QEMU's exit waits for its standard input to end (exec copies it from the pipe).
		g.gate.Close()
		if g.broken != nil {
			cancel() // a guest stuck at a gate would wait for its whole timeout
		}
	}
	for _, g := range guests {
		<-g.done
		s, err := g.bt.stepsOf(g.res, g.err)
		if err == nil {
			err = g.broken
		}
		if err != nil {
			failed[g.system] = err
			continue
		}
		steps[g.system] = s
		cpu[g.system] = g.cpu
	}
	return steps, cpu, failed
}

// prefixWriter copies a guest's console to stderr with the system's name before each line.
func prefixWriter(system string) io.Writer {
	var s vm.LineSplitter
	s.Line = func(l string) { fmt.Fprintf(os.Stderr, "[%s] %s\n", system, l) }
	return &s
}
