package vhost_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/vhost"
	"github.com/uvfsd/uvfsd/vhost/frontend"
)

func TestPollWindowGrowsForAFastGuestAndShrinksForASlowOne(t *testing.T) {
	const max = 50 * time.Microsecond
	w := time.Duration(0)
	for range 10 {
		w = vhost.AdaptPollForTest(max, w, 3*time.Microsecond)
	}
	if w != max {
		t.Fatalf("after 10 short sleeps the window is %v, want %v", w, max)
	}
	for range 10 {
		w = vhost.AdaptPollForTest(max, w, time.Millisecond)
	}
	if w != 0 {
		t.Fatalf("after 10 long sleeps the window is %v, want 0", w)
	}
	if w := vhost.AdaptPollForTest(0, 0, time.Microsecond); w != 0 {
		t.Fatalf("a worker that may not poll got a window of %v", w)
	}
}

// A polling worker must never miss a request: not one that arrives while it polls (no kick, as
// avail_event is not armed then), nor one after it went to sleep.
func TestPollingWorkerMissesNoRequest(t *testing.T) {
	for _, eventIdx := range []bool{true, false} {
		hs := start(t, vhost.Config{PollMax: 200 * time.Microsecond}, &echo{},
			frontend.Options{EventIdx: eventIdx, Indirect: true, QueueSize: 64})
		for _, depth := range []int{1, 4} {
			p, err := hs.f.NewPipeline(1, depth, [][]byte{make([]byte, 16)}, []int{16})
			if err != nil {
				t.Fatal(err)
			}
			ops, _, err := p.Run(100*time.Millisecond, 0, nil)
			if err != nil {
				t.Fatalf("event idx %v, depth %d: %v", eventIdx, depth, err)
			}
			if ops < 100 {
				t.Fatalf("event idx %v, depth %d: only %d requests in 100 ms", eventIdx, depth, ops)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
		}
		// Requests spaced wider than the window: the worker sleeps and must be kicked awake.
		for range 5 {
			time.Sleep(2 * time.Millisecond)
			if _, _, err := hs.f.Call(1, [][]byte{make([]byte, 16)}, []int{16}); err != nil {
				t.Fatalf("event idx %v: request after a pause: %v", eventIdx, err)
			}
		}
	}
}

// rendezvous serves its first request only once a second one is being served: it completes only
// if two goroutines serve the queue at once.
type rendezvous struct {
	n      atomic.Int64
	second chan struct{}
	failed atomic.Bool
}

func (h *rendezvous) Serve(queue int, r *vhost.Request) {
	switch h.n.Add(1) {
	case 1:
		select {
		case <-h.second:
		case <-time.After(5 * time.Second):
			h.failed.Store(true)
		}
	case 2:
		close(h.second)
	}
	r.Complete(0)
}

func TestHelpersServeABacklogConcurrently(t *testing.T) {
	h := &rendezvous{second: make(chan struct{})}
	hs := start(t, vhost.Config{ThreadPoolSize: 2}, h, frontend.Options{EventIdx: true, QueueSize: 64})
	// Both chains are published before the one kick, so the worker sees a backlog.
	p, err := hs.f.NewPipeline(1, 2, [][]byte{make([]byte, 16)}, []int{16})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.Run(10*time.Millisecond, 0, nil); err != nil {
		t.Fatal(err)
	}
	if h.failed.Load() {
		t.Fatal("the second request was not served while the first one waited for it")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}
