package vhost_test

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/vhost"
	"github.com/uvfsd/uvfsd/vhost/frontend"
)

// A worker must serve every request whether it waits hot or not: back to back, spaced within the
// hot period (it waits in its raw ppoll), and spaced beyond it (it sleeps cold and must be kicked
// awake), on the request queue and on the lingering hiprio queue.
func TestHotAndColdWorkersMissNoRequest(t *testing.T) {
	for _, hot := range []time.Duration{-1, 20 * time.Millisecond} { // -1: never hot
		for _, eventIdx := range []bool{true, false} {
			hs := start(t, vhost.Config{HotWait: hot, HiprioLinger: time.Millisecond}, &echo{},
				frontend.Options{EventIdx: eventIdx, Indirect: true, QueueSize: 64})
			p, err := hs.f.NewPipeline(1, 4, [][]byte{make([]byte, 16)}, []int{16})
			if err != nil {
				t.Fatal(err)
			}
			if ops, _, err := p.Run(50*time.Millisecond, 0, nil); err != nil || ops < 4 {
				t.Fatalf("hot wait %v, event idx %v: pipeline: %d requests, %v", hot, eventIdx, ops, err)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			for _, gap := range []time.Duration{0, 2 * time.Millisecond, 7 * time.Millisecond, 50 * time.Millisecond} {
				for _, queue := range []int{0, 1} {
					time.Sleep(gap)
					hs.mustEcho(queue, "after a gap")
				}
			}
		}
	}
}

// GET_VRING_BASE must not wait for a hot nap to end: the control eventfd is in the raw ppoll too.
func TestHotWorkerStopsAtOnce(t *testing.T) {
	hs := start(t, vhost.Config{HotWait: 10 * time.Second}, &echo{}, frontend.Options{EventIdx: true, QueueSize: 64})
	hs.mustEcho(1, "now wait hot")
	time.Sleep(time.Millisecond)
	begin := time.Now()
	if _, err := hs.f.GetVringBase(1); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d > 500*time.Millisecond {
		t.Fatalf("GET_VRING_BASE took %v with the worker waiting hot", d)
	}
}

// A worker waiting hot keeps its P, so each adds one to GOMAXPROCS while it runs: even a process
// with a single P keeps serving (the front-end here needs a P too), and the count goes back when
// the connection ends.
func TestHotWorkersAddAPEach(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	hs, front := startBackend(t, vhost.Config{HotWait: time.Second}, &echo{})
	f, err := frontend.New(front, frontend.Options{EventIdx: true, QueueSize: 64, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	hs.f = f
	for range 20 {
		hs.mustEcho(1, "one P of our own")
	}
	if n := runtime.GOMAXPROCS(0); n != 3 {
		t.Errorf("GOMAXPROCS is %d with two hot workers in a process that had 1, want 3", n)
	}
	f.Close()
	if err := hs.wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Errorf("GOMAXPROCS is %d after the workers stopped, want 1 again", n)
	}
}

// After HotWait without a request a worker waits through the runtime again, which frees its P:
// its goroutine then shows in a system call the runtime knows about, not as running. Both workers
// (hiprio and the request queue) must get there.
func TestHotWorkerGoesColdWhenTheGuestIsIdle(t *testing.T) {
	hs := start(t, vhost.Config{HotWait: 20 * time.Millisecond}, &echo{}, frontend.Options{EventIdx: true, QueueSize: 64})
	for round := range 2 {
		hs.mustEcho(0, "then nothing")
		hs.mustEcho(1, "then nothing")
		deadline := time.Now().Add(5 * time.Second)
		for coldWorkers() < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %d of 2 workers sleep cold 5 s after the last request (HotWait 20 ms)", round, coldWorkers())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// coldWorkers counts the worker goroutines blocked in the runtime-visible poll.
func coldWorkers() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "[syscall") && strings.Contains(g, "vhost.(*worker).sleep") && strings.Contains(g, "unix.Poll") {
			n++
		}
	}
	return n
}
