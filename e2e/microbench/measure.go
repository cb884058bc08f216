package main

import (
	"fmt"

	"sync"
	"sync/atomic"
	"time"

	"github.com/uvfsd/uvfsd/e2e/guest"
	"github.com/uvfsd/uvfsd/vhost/frontend"
	"golang.org/x/sys/unix"
)

// stats is one (target, operation, depth) measurement.
type stats struct {
	ops     int64
	elapsed time.Duration
	depth   int
	// cpu is the CPU time the target used during the timed run (the daemon's processes, or this
	// process for the direct syscalls); hasCPU says it was measured.
	cpu    time.Duration
	hasCPU bool
}

// cpuPerOp is the CPU time per completed operation, 0 when not measured.
func (s stats) cpuPerOp() time.Duration {
	if !s.hasCPU || s.ops == 0 {
		return 0
	}
	return time.Duration(int64(s.cpu) / s.ops)
}

// cpuClock reads a target's CPU time used so far; nil for a target without one.
type cpuClock func() (time.Duration, error)

// timeCPU runs f between two readings of clock and records the difference in st.
func timeCPU(clock cpuClock, f func() (stats, error)) (stats, error) {
	if clock == nil {
		return f()
	}
	before, err := clock()
	if err != nil {
		return stats{}, fmt.Errorf("CPU time: %w", err)
	}
	st, err := f()
	if err != nil {
		return st, err
	}
	after, err := clock()
	if err != nil {
		return stats{}, fmt.Errorf("CPU time: %w", err)
	}
	st.cpu, st.hasCPU = after-before, true
	return st, nil
}

// selfCPU is this process's CPU time (all threads), the clock of the direct syscalls.
func selfCPU() (time.Duration, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// treeCPU returns the clock of the daemon process pid and its descendants.
func treeCPU(pid int) cpuClock {
	return func() (time.Duration, error) { return guest.TreeCPU(pid) }
}

// opsPerSec is completed operations per second of wall time.
func (s stats) opsPerSec() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.ops) / s.elapsed.Seconds()
}

// latency is the mean time one operation is in flight: with depth requests
// always outstanding, depth × wall time / operations (Little's law).
func (s stats) latency() time.Duration {
	if s.ops == 0 {
		return 0
	}
	return time.Duration(int64(s.elapsed) * int64(s.depth) / s.ops)
}

// warmupOps runs before timing on each worker: opens files, fills caches and
// the back-end's request pools.
const warmupOps = 20

// measure runs depth workers, each its own opFunc from newWorker, for dur
// after a warm-up, and counts completed operations and the CPU time clock
// shows for that time (nil: none). The first error stops every worker and is
// returned.
func measure(depth int, dur time.Duration, clock cpuClock, newWorker func(worker int) (opFunc, error)) (stats, error) {
	fns := make([]opFunc, depth)
	for w := range fns {
		fn, err := newWorker(w)
		if err != nil {
			return stats{}, err
		}
		fns[w] = fn
	}
	var (
		wg       sync.WaitGroup
		total    atomic.Int64
		stop     atomic.Bool
		errOnce  sync.Once
		firstErr error
		start    = make(chan struct{})
		ready    sync.WaitGroup
	)
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err })
		stop.Store(true)
	}
	ready.Add(depth)
	for _, fn := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range warmupOps {
				if err := fn(); err != nil {
					ready.Done()
					fail(fmt.Errorf("warm-up: %w", err))
					return
				}
			}
			ready.Done()
			<-start
			var n int64
			for !stop.Load() {
				if err := fn(); err != nil {
					fail(err)
					break
				}
				n++
			}
			total.Add(n)
		}()
	}
	ready.Wait()
	st, err := timeCPU(clock, func() (stats, error) {
		t0 := time.Now()
		close(start)
		time.Sleep(dur)
		stop.Store(true)
		wg.Wait()
		return stats{ops: total.Load(), elapsed: time.Since(t0), depth: depth}, nil
	})
	if firstErr != nil {
		return stats{}, firstErr
	}
	return st, err
}

// measurePipe keeps depth copies of req in flight with a frontend.Pipeline
// for dur, after a short warm-up, and counts completed operations and the CPU
// time clock shows for that time (nil: none).
func measurePipe(f *frontend.Frontend, depth int, dur, spin time.Duration, clock cpuClock, req pipeRequest) (stats, error) {
	in, outs := req.layout()
	p, err := f.NewPipeline(requestQueue, depth, in, outs)
	if err != nil {
		return stats{}, err
	}
	if _, _, err := p.Run(dur/20, spin, req.check); err != nil {
		return stats{}, fmt.Errorf("warm-up: %w", err)
	}
	st, err := timeCPU(clock, func() (stats, error) {
		ops, elapsed, err := p.Run(dur, spin, req.check)
		return stats{ops: ops, elapsed: elapsed, depth: depth}, err
	})
	if err != nil {
		return stats{}, err
	}
	if err := p.Close(); err != nil {
		return stats{}, err
	}
	return st, nil
}
