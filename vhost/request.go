package vhost

// Request is one descriptor chain popped from a virtqueue. In are the device-readable buffers and
// Out the device-writable buffers, as slices of mapped guest memory (each checked to lie inside
// one region). Requests come from a per-queue pool: there is no allocation per request, and a
// Request must not be touched after Complete.
type Request struct {
	In, Out [][]byte

	// scratch is the handler's: it stays with the Request when the queue reuses it, so a handler
	// can keep per-request buffers here instead of on a locked free list (ScratchSlot).
	scratch any

	q     *queue
	mem   *memTable // keeps In/Out mapped until Complete
	epoch uint64    // ring lifetime the chain was popped in; stale completions are dropped
	head  uint16
}

// Complete returns the chain to the guest with written bytes written into Out (clamped to the
// size of Out). Call it exactly once per Request, from any goroutine. Completions made while the
// queue's worker is draining the ring (that is, synchronously inside Handler.Serve) are batched
// into one guest notification, which respects EVENT_IDX used_event and VRING_AVAIL_F_NO_INTERRUPT.
func (r *Request) Complete(written uint32) {
	q := r.q
	if q == nil {
		return // completed twice; the second call is ignored rather than corrupting the ring
	}
	mem := r.mem
	q.mu.Lock()
	r.q, r.mem = nil, nil
	if r.epoch == q.epoch && q.ringOK {
		if total := outLen(r.Out); uint64(written) > total {
			written = uint32(total)
		}
		q.pushUsedLocked(r.head, written)
	}
	q.inflight--
	if q.inflight == 0 && q.drained != nil {
		close(q.drained)
		q.drained = nil
	}
	if q.throttled {
		q.throttled = false
		q.wakeWorker()
	}
	r.In, r.Out = r.In[:0], r.Out[:0]
	q.free = append(q.free, r)
	q.mu.Unlock()
	mem.release()
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
