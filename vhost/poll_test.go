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
			// A lost wake-up shows as Run's 10 s timeout error above; this only checks that
			// requests kept flowing (few on a loaded machine under -race).
			if ops < int64(depth) {
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

// publishForgets publishes n one-descriptor chains on the hiprio queue, spaced by gap, kicking
// only when avail_event asks for it, as the Linux driver does, and returns how often it kicked.
func publishForgets(t *testing.T, f *frontend.Frontend, n int, gap time.Duration) (kicks int) {
	t.Helper()
	for i := 0; i < n; i++ {
		gpa, _, err := f.Alloc(48)
		if err != nil {
			t.Fatal(err)
		}
		f.SetDesc(0, i, frontend.Desc{Addr: gpa, Len: 48})
		event := f.AvailEvent(0)
		f.Publish(0, uint16(i))
		if vhost.NeedEventForTest(event, uint16(i+1), uint16(i)) {
			kicks++
			if err := f.Kick(0); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(gap)
	}
	for i := 0; i < n; i++ {
		if _, err := f.WaitUsed(0, 5*time.Second); err != nil {
			t.Fatalf("FORGET %d of %d never completed: %v", i+1, n, err)
		}
	}
	return kicks
}

// hotWaits are the two ways a worker waits (sleep.go): through the runtime (-1) and hot (0 is the
// harness's default, uvfsd's).
var hotWaits = []time.Duration{-1, 0}

func TestHiprioGathersForgetsIntoFewInterrupts(t *testing.T) {
	for _, hot := range hotWaits {
		for _, gather := range []time.Duration{0, 200 * time.Millisecond} {
			hs := start(t, vhost.Config{HiprioGather: gather, HotWait: hot}, &echo{}, frontend.Options{EventIdx: true, QueueSize: 64})
			publishForgets(t, hs.f, 20, time.Millisecond)
			n := hs.f.Notifications(0)
			t.Logf("hot wait %v, gather %v: %d interrupts for 20 FORGETs", hot, gather, n)
			if gather > 0 && n > 2 {
				t.Errorf("hot wait %v, gather %v: %d interrupts for 20 FORGETs within about 20 ms, want 1 or 2", hot, gather, n)
			}
			// Without gathering each FORGET 1 ms apart is served on its own (a loaded machine
			// may merge a few): the test would not notice gathering if this were 1 or 2.
			if gather == 0 && n < 3 {
				t.Errorf("hot wait %v: without gathering, 20 FORGETs 1 ms apart caused only %d interrupts: the test does not measure what it should", hot, n)
			}
		}
	}
}

// With helpers draining the ring next to a polling worker, no request may be left unserved: a
// lost wake-up shows as the pipeline's 10 s timeout.
func TestHelpersAndPollingMissNoRequest(t *testing.T) {
	hs := start(t, vhost.Config{ThreadPoolSize: 4, PollMax: 20 * time.Microsecond}, &echo{},
		frontend.Options{EventIdx: true, Indirect: true, QueueSize: 64})
	for _, depth := range []int{1, 3, 8, 32} {
		p, err := hs.f.NewPipeline(1, depth, [][]byte{make([]byte, 16)}, []int{16})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := p.Run(200*time.Millisecond, 0, nil); err != nil {
			t.Fatalf("depth %d: %v", depth, err)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestHiprioLingerServesAFloodWithFewKicksAndInterrupts: while FORGETs keep coming (1 ms apart,
// linger 5 ms) the worker serves them on its timer, so the guest kicks for the first one only and
// gets an interrupt per quarter ring (16 of 64) and one when the flood ends, not one per FORGET
// (without lingering: one kick each, at least 10 of 40 even on a loaded machine).
func TestHiprioLingerServesAFloodWithFewKicksAndInterrupts(t *testing.T) {
	const n = 40
	for _, c := range []struct{ linger, hot time.Duration }{{0, 0}, {5 * time.Millisecond, -1}, {5 * time.Millisecond, 0}} {
		linger := c.linger
		hs := start(t, vhost.Config{HiprioLinger: linger, HotWait: c.hot}, &echo{}, frontend.Options{EventIdx: true, QueueSize: 64})
		f := hs.f
		kicks := publishForgets(t, f, n, time.Millisecond)
		time.Sleep(linger + 20*time.Millisecond) // the flood is over: the held-back interrupt must come
		irqs := f.Notifications(0)
		t.Logf("linger %v, hot wait %v: %d kicks and %d interrupts for %d FORGETs", linger, c.hot, kicks, irqs, n)
		if linger == 0 {
			// Served on kicks, each FORGET 1 ms apart is its own drain (a loaded machine may
			// merge a few): the test would not notice lingering if this were small.
			if kicks < 10 {
				t.Errorf("without lingering, %d FORGETs 1 ms apart caused only %d kicks: the test does not measure what it should", n, kicks)
			}
			continue
		}
		// Quiet, 1 kick and 2 interrupts; a loaded machine (the rest of the test suite, guests)
		// delays the sender past a linger period now and then, which ends the linger early.
		if kicks > n/4 {
			t.Errorf("linger %v, hot wait %v: %d kicks for %d FORGETs 1 ms apart, want at most %d", linger, c.hot, kicks, n, n/4)
		}
		if irqs < 1 || irqs > n/4 {
			t.Errorf("linger %v, hot wait %v: %d interrupts for %d FORGETs, want 1 to %d (a quarter ring each, and the end)", linger, c.hot, irqs, n, n/4)
		}
	}
}
