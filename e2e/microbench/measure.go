package main

import (
	"fmt"

	"github.com/uvfsd/uvfsd/vhost/frontend"
	"sync"
	"sync/atomic"
	"time"
)

// stats is one (target, operation, depth) measurement.
type stats struct {
	ops     int64
	elapsed time.Duration
	depth   int
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
// after a warm-up, and counts completed operations. The first error stops
// every worker and is returned.
func measure(depth int, dur time.Duration, newWorker func(worker int) (opFunc, error)) (stats, error) {
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
	t0 := time.Now()
	close(start)
	time.Sleep(dur)
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(t0)
	if firstErr != nil {
		return stats{}, firstErr
	}
	return stats{ops: total.Load(), elapsed: elapsed, depth: depth}, nil
}

// measurePipe keeps depth copies of req in flight with a frontend.Pipeline
// for dur, after a short warm-up, and counts completed operations.
func measurePipe(f *frontend.Frontend, depth int, dur, spin time.Duration, req pipeRequest) (stats, error) {
	in, outs := req.layout()
	p, err := f.NewPipeline(requestQueue, depth, in, outs)
	if err != nil {
		return stats{}, err
	}
	if _, _, err := p.Run(dur/20, spin, req.check); err != nil {
		return stats{}, fmt.Errorf("warm-up: %w", err)
	}
	ops, elapsed, err := p.Run(dur, spin, req.check)
	if err != nil {
		return stats{}, err
	}
	if err := p.Close(); err != nil {
		return stats{}, err
	}
	return stats{ops: ops, elapsed: elapsed, depth: depth}, nil
}
