package vhost_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/vhost"
	"github.com/uvfsd/uvfsd/vhost/frontend"
)

// TestLongDrainNotifiesEverySixteenCompletions: a drain of 48 requests tells the guest about its
// completions every 16 (so the driver can reap and refill meanwhile), not only when the ring runs
// dry, and not once per request.
func TestLongDrainNotifiesEverySixteenCompletions(t *testing.T) {
	hs := start(t, vhost.Config{}, &echo{}, frontend.Options{QueueSize: 128})
	f := hs.f
	const n = 48
	for i := range n {
		publishEcho(t, f, 1, uint16(2*i), fmt.Sprintf("req %d", i))
	}
	if err := f.Kick(1); err != nil {
		t.Fatal(err)
	}
	waitUsed(t, f, 1, n)
	time.Sleep(50 * time.Millisecond) // let a (wrong) late notification arrive
	if got := f.Notifications(1); got != n/16 {
		t.Fatalf("one drain of %d requests raised %d notifications, want %d", n, got, n/16)
	}
}

// handoff completes each request from another goroutine while Serve still runs (and waits for
// it), then tries to complete it a second time: the chain must come back once, with the first
// length.
type handoff struct{}

func (handoff) Serve(_ int, r *vhost.Request) {
	done := make(chan struct{})
	n := uint32(copyChain(r.Out, r.In))
	go func() {
		r.Complete(n)
		close(done)
	}()
	<-done
	r.Complete(1) // ignored: completed already
}

func TestCompletionFromAnotherGoroutineDuringServe(t *testing.T) {
	hs := start(t, vhost.Config{ThreadPoolSize: 2}, handoff{}, frontend.Options{QueueSize: 128})
	f := hs.f
	const n = 40
	for i := range n {
		publishEcho(t, f, 1, uint16(2*i), fmt.Sprintf("handoff %02d", i))
	}
	if err := f.Kick(1); err != nil {
		t.Fatal(err)
	}
	for i, e := range waitUsed(t, f, 1, n) {
		if e.Len != uint32(len("handoff 00")) {
			t.Errorf("used entry %d (head %d): length %d, want %d", i, e.ID, e.Len, len("handoff 00"))
		}
	}
	time.Sleep(50 * time.Millisecond)
	if idx := f.UsedIdx(1); idx != n {
		t.Fatalf("used idx %d after %d requests: a second Complete returned a chain twice", idx, n)
	}
}

// firstBlocks blocks the first request it gets until release closes and counts every request.
type firstBlocks struct {
	release chan struct{}
	served  atomic.Int32
}

func (b *firstBlocks) Serve(_ int, r *vhost.Request) {
	if b.served.Add(1) == 1 {
		<-b.release
	}
	r.Complete(0)
}

// TestBatchAfterRingHandedBackIsNotServed: the first request of a batch blocks past the stop
// timeout and GET_VRING_BASE hands the ring back; the rest of the batch, popped with it, must not
// reach the handler afterwards (the front-end owns those chains again).
func TestBatchAfterRingHandedBackIsNotServed(t *testing.T) {
	h := &firstBlocks{release: make(chan struct{})}
	hs := start(t, vhost.Config{StopTimeout: 100 * time.Millisecond}, h, frontend.Options{QueueSize: 64})
	f := hs.f
	for i := range 8 {
		publishEcho(t, f, 1, uint16(2*i), "x")
	}
	if err := f.Kick(1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for h.served.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if _, err := f.GetVringBase(1); err != nil {
		t.Fatal(err)
	}
	close(h.release)
	time.Sleep(100 * time.Millisecond) // let a (wrong) late batch run
	if n := h.served.Load(); n != 1 {
		t.Fatalf("%d requests reached the handler, want only the blocked one: the rest were popped before the ring was handed back", n)
	}
}
