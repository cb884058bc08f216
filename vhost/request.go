package vhost

import (
	"fmt"
	"sync/atomic"
)

// Request is one descriptor chain popped from a virtqueue. In are the device-readable buffers and
// Out the device-writable buffers, as slices of mapped guest memory (each checked to lie inside
// one region). Requests come from a per-queue pool: there is no allocation per request, and a
// Request must not be touched after Complete.
type Request struct {
	In, Out [][]byte

	// scratch is the handler's: it stays with the Request when the queue reuses it, so a handler
	// can keep per-request buffers here instead of on a locked free list (ScratchSlot).
	scratch any

	// completion is completionHeld while a drainer serves the request; Complete then only records
	// completionDone|written here and the drainer returns the chain with its batch (no lock).
	completion atomic.Uint64

	q     *queue
	mem   *memTable // keeps In/Out mapped until Complete
	epoch uint64    // ring lifetime the chain was popped in; stale completions are dropped
	head  uint16
}

// Complete returns the chain to the guest with written bytes written into Out (clamped to the
// size of Out). Call it exactly once per Request, from any goroutine. During a live migration
// the dirty log marks the first written bytes of Out, so written must cover every byte the
// handler put into guest memory (preadv straight into Out included); Complete runs after those
// writes. Completions made while the
// queue's worker is draining the ring (that is, synchronously inside Handler.Serve) are batched
// into one guest notification, which respects EVENT_IDX used_event and VRING_AVAIL_F_NO_INTERRUPT.
func (r *Request) Complete(written uint32) {
	if r.completion.CompareAndSwap(completionHeld, completionDone|uint64(written)) {
		return // inside Handler.Serve: the drainer returns it with its batch
	}
	q := r.q
	if q == nil || r.completion.Load()&completionDone != 0 {
		return // completed twice; the second call is ignored rather than corrupting the ring
	}
	mem := r.mem
	q.mu.Lock()
	q.retireLocked(r, written)
	q.mu.Unlock()
	mem.release()
}

const (
	completionHeld = 1 << 32 // a drainer is serving the request
	completionDone = 2 << 32 // completed while held; the low 32 bits are the bytes written
)

// retireLocked returns r's chain to the guest with written bytes (unless the ring was handed back
// since r was popped) and r to the pool. The caller releases r's memory reference after unlocking.
func (q *queue) retireLocked(r *Request, written uint32) {
	mem := r.mem
	r.q, r.mem = nil, nil
	if total := outLen(r.Out); uint64(written) > total {
		written = uint32(total)
	}
	if q.log != nil {
		// What the handler wrote, before the used element that returns it (dirtylog.go).
		q.log.markBuffers(mem, r.Out, written)
	}
	// A request popped before the ring was handed back belongs to a ring the front-end owns
	// again: it is not returned, and it stopped counting as in flight at the hand-back.
	if r.epoch == q.epoch {
		if q.ringOK {
			q.pushUsedLocked(r.head, written)
		}
		if q.inflight--; q.inflight == 0 {
			q.wakeDrainedLocked()
		}
		if q.throttled {
			q.throttled = false
			q.wakeWorker()
		}
	} else {
		if q.strays > 0 {
			q.strays--
		}
		if q.log != nil && written > 0 {
			// The front-end may have read the log for the last time when it stopped the ring.
			q.b.loseDirty(fmt.Errorf("queue %d: a request completed after its ring was stopped, writing guest memory", q.index))
		}
	}
	r.In, r.Out = r.In[:0], r.Out[:0]
	q.free = append(q.free, r)
}

// ScratchSlot returns the handler's slot on this Request (see fuse.Server.Serve). A Request is
// used by one handler call at a time, so the slot needs no lock.
func (r *Request) ScratchSlot() *any { return &r.scratch }

func outLen(out [][]byte) uint64 {
	var n uint64
	for _, b := range out {
		n += uint64(len(b))
	}
	return n
}
