package vhost

import (
	"time"

	"golang.org/x/sys/unix"
)

// pollGrowStep is the first poll window a worker tries once sleeps turn out short.
const pollGrowStep = 4 * time.Microsecond

// worker serves one started queue. It blocks in poll(2) on the kick eventfd and the queue's control
// eventfd, so stopping it never depends on the guest kicking again (go-fuse's SetEnable can hang
// on exactly that).
type worker struct {
	q      *queue
	gen    uint64
	kickFD int // private dup, closed on exit
	ctlFD  int
	done   chan struct{}
	// wake, when helpers run, carries a token to an idle helper: the worker found more requests
	// than it can start at once. Helpers drain the same ring (pop is locked), so there is no
	// hand-off per request and a lone request is served inline with no extra cost.
	wake chan struct{}

	indirect bool // VIRTIO_RING_F_INDIRECT_DESC negotiated (fixed for the worker's lifetime)

	// pollMax bounds pollWindow, how long the worker watches the ring for the driver's next
	// request before it asks for a kick and sleeps (0: never poll). The window adapts like KVM's
	// halt polling: it grows while the driver keeps coming back within pollMax (a KVM guest in a
	// syscall loop, back-to-back requests) and shrinks to nothing when sleeps are long, so an idle
	// or slow guest costs no CPU. Catching a request while polling saves the daemon's wake-up and
	// the guest's kick (avail_event is not re-armed meanwhile).
	pollMax, pollWindow time.Duration

	// gather is how long the worker lets requests accumulate after a kick before it drains them
	// (the hiprio queue: Config.HiprioGather).
	gather time.Duration
	// linger is how long the worker serves the ring on a timer after a drain, with kicks off and
	// notifications held back (the hiprio queue: Config.HiprioLinger).
	linger time.Duration

	// hotWait is Config.HotWait; yielded is when the worker last yielded its P in a hot wait (see
	// sleep.go).
	hotWait time.Duration
	yielded time.Time
}

func (w *worker) run() {
	if w.hotWait > 0 {
		addHotWorker()
		defer removeHotWorker() // after done closes: pause need not wait for a stop-the-world
	}
	defer close(w.done)
	defer unix.Close(w.kickFD)
	// A lingering worker that stops on an error still owes the guest a notification.
	defer w.flushSignal()
	if n := w.q.b.cfg.ThreadPoolSize; n > 1 && w.q.index != 0 { // FORGETs gain nothing from it
		// Never closed: a helper may still try to wake another one after the worker returned.
		// Helpers leave when done closes.
		w.wake = make(chan struct{}, n-1)
		for range n - 1 {
			go w.help()
		}
	}
	fds := []unix.PollFd{{Fd: int32(w.kickFD), Events: unix.POLLIN}, {Fd: int32(w.ctlFD), Events: unix.POLLIN}}
	var buf [8]byte
	// The driver may have queued requests before the kick fd arrived.
	var d drainer
	w.drain(&d)
	for w.current() {
		if w.linger > 0 {
			w.lingerOn(&d)
			if !w.current() {
				return
			}
		}
		idleSince := time.Now()
		if w.pollRing(idleSince) || w.armKick() {
			w.drain(&d)
			continue
		}
		if err := w.sleep(fds); err != nil {
			w.q.b.logf("vhost: queue %d: poll: %v; stopping the queue", w.q.index, err)
			return
		}
		w.adaptPoll(time.Since(idleSince))
		if fds[1].Revents&unix.POLLIN != 0 {
			unix.Read(w.ctlFD, buf[:])
		}
		// An eventfd never hangs up: POLLHUP is a front-end that sent something else (a pipe
		// whose writer closed), which would stay readable and spin the worker.
		if fds[0].Revents&(unix.POLLERR|unix.POLLNVAL|unix.POLLHUP) != 0 {
			w.q.b.logf("vhost: queue %d: kick fd failed (revents %#x); stopping the queue", w.q.index, fds[0].Revents)
			return
		}
		if fds[0].Revents&unix.POLLIN != 0 {
			if n, err := unix.Read(w.kickFD, buf[:]); n == 0 && err == nil {
				// End of file: no eventfd (a regular file, say), and always readable.
				w.q.b.logf("vhost: queue %d: kick fd reads end of file, so it is no eventfd; stopping the queue", w.q.index)
				return
			}
			// The gather time lets the guest queue more requests after its kick. avail_event still
			// points at the entry that caused the kick, so the guest does not kick again
			// meanwhile; a stop request (ctl) ends the wait at once.
			if w.gather > 0 {
				w.wait(fds[1:], w.gather)
			}
		}
		if !w.current() {
			return
		}
		w.drain(&d)
	}
}

// lingerOn serves the ring every linger period without asking for kicks (avail_event stays behind
// what the worker has seen) while the guest keeps queueing, then flushes the held-back notification
// and returns once the ring stayed empty for a whole period. A stop request ends it at once.
func (w *worker) lingerOn(d *drainer) {
	ctl := []unix.PollFd{{Fd: int32(w.ctlFD), Events: unix.POLLIN}}
	var buf [8]byte
	// current first: a worker that pause gave up on shares ctlFD with its successor and must not
	// read the successor's stop wake-up.
	for w.current() {
		if readable, _ := w.wait(ctl, w.linger); readable {
			unix.Read(w.ctlFD, buf[:])
		}
		if !w.current() {
			return
		}
		if !w.ready() {
			w.flushSignal()
			return
		}
		w.drain(d)
	}
}

// flushSignal sends the notification a lingering worker held back, if any.
func (w *worker) flushSignal() {
	q := w.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.runGen == w.gen {
		q.flushPendingLocked()
	}
}

// pollRing watches the ring for up to the poll window from since and reports whether there is
// something to do (a request, or the worker went stale).
func (w *worker) pollRing(since time.Time) bool {
	if w.pollWindow <= 0 {
		return false
	}
	deadline := since.Add(w.pollWindow)
	for {
		if w.ready() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// ready reports whether pop would return a request, or the worker is stale.
func (w *worker) ready() bool {
	q := w.q
	q.mu.Lock()
	defer q.mu.Unlock()
	return w.readyLocked()
}

func (w *worker) readyLocked() bool {
	q := w.q
	if q.runGen != w.gen {
		return true
	}
	if !q.ringOK || q.broken || q.ring.availIdx() == q.lastAvail {
		return false
	}
	if q.inflight >= q.size {
		q.throttled = true // the next Complete wakes the worker
		return false
	}
	return true
}

// armKick asks the driver to kick for its next request (EVENT_IDX avail_event), then reports
// whether a request arrived before it could see that, which a sleep would miss. Both happen under
// one lock: a helper that popped in between would leave avail_event behind lastAvail, and the
// driver would never kick again.
func (w *worker) armKick() bool {
	q := w.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.runGen == w.gen && q.ringOK && q.eventIdx {
		q.ring.setAvailEvent(q.lastAvail) // a full barrier (CAS) before the re-check below
		if q.log != nil {
			q.logUsedLocked(availEventOffset(q.size), 2)
		}
	}
	return w.readyLocked()
}

// adaptPoll sizes the next poll window from how long the worker was idle.
func (w *worker) adaptPoll(idle time.Duration) {
	switch {
	case w.pollMax <= 0:
	case idle <= w.pollMax:
		w.pollWindow = min(w.pollMax, max(2*w.pollWindow, pollGrowStep))
	default:
		if w.pollWindow /= 2; w.pollWindow < time.Microsecond {
			w.pollWindow = 0
		}
	}
}

func (w *worker) current() bool {
	w.q.mu.Lock()
	defer w.q.mu.Unlock()
	return w.q.runGen == w.gen
}

// help drains the ring alongside the worker each time it is woken, until the worker exits.
func (w *worker) help() {
	var d drainer
	for {
		select {
		case <-w.wake:
			w.drain(&d)
		case <-w.done:
			return
		}
	}
}

// drainBatch is the most chains the worker takes from the ring in one lock hold (helpers take
// one at a time, see popLocked). The chains it completed inline go back to the guest in the same
// hold that takes the next batch: one lock per batch instead of two per request.
const drainBatch = 16

// signalEvery bounds how many completions a long drain of a request queue holds back from the
// guest: after that many it notifies (if the driver's used_event asks for it) instead of waiting
// for the ring to run dry, so the driver reaps and refills while the rest is served. A guest with
// one or two requests in flight never reaches it and still gets one interrupt per drain. The
// hiprio queue (FORGET floods, nothing to refill) always waits for the ring to run dry.
const signalEvery = drainBatch

// drainer is one draining goroutine's batch: chains popped and not yet served, and chains served
// and completed inline, not yet returned.
type drainer struct {
	todo  [drainBatch]*Request
	done  [drainBatch]*Request
	nTodo int
	nDone int
	ring  vring     // the ring the batch was popped from
	mem   *memTable // the memory table the batch holds references on (one each)
}

// drain pops and serves every available chain, then sends at most one notification for the
// completions that happened meanwhile (or one per signalEvery in a long drain). The worker and its
// helpers may drain at once, each with its own drainer; completions are batched while any of them
// drains, and each one flushes the batch when it runs dry.
func (w *worker) drain(d *drainer) {
	q := w.q
	q.mu.Lock()
	if q.runGen != w.gen {
		q.mu.Unlock()
		return
	}
	q.drainers++
	q.batching = true
	for {
		mem, finished := d.finishLocked(q)
		more := w.popLocked(d)
		if q.pendingCount >= signalEvery && q.index != 0 {
			q.flushPendingLocked()
		}
		dry := d.nTodo == 0
		if dry {
			w.stopDrainingLocked()
		}
		q.mu.Unlock()
		if mem != nil {
			mem.releaseN(finished)
		}
		if dry {
			return
		}
		if more && w.wake != nil {
			select {
			case w.wake <- struct{}{}:
			default: // every helper is awake already
			}
		}
		w.serve(d)
		q.mu.Lock()
	}
}

// stopDrainingLocked ends one drainer's turn: a drainer that runs dry flushes the batched
// notification (others still draining batch what comes next).
func (w *worker) stopDrainingLocked() {
	q := w.q
	if q.runGen != w.gen {
		return // pause reset the count and flushed for this generation
	}
	q.drainers--
	q.batching = q.drainers > 0
	// A lingering worker holds the notification until a quarter of the ring waits for the
	// guest to reclaim it (lingerOn flushes the rest).
	if w.linger <= 0 || q.pendingCount >= q.size/4 {
		q.flushPendingLocked()
	}
}

// serve walks and serves the drainer's batch. A chain the handler completes before Serve returns
// is kept for finishLocked; one it keeps (SETLKW) completes on its own later. If the ring was
// handed back meanwhile (a handler blocked past the stop timeout), the rest of the batch is
// returned unserved: the front-end owns the ring again and must not see late side effects. A
// pause alone (the same ring resumes) still serves the batch, whose chains were consumed.
func (w *worker) serve(d *drainer) {
	q := w.q
	for _, r := range d.todo[:d.nTodo] {
		r.completion.Store(completionHeld)
		var err error
		if q.handedBack.Load() != r.epoch {
			r.In, r.Out = r.In[:0], r.Out[:0]
			r.Complete(0)
		} else if r.In, r.Out, err = walkChain(r.mem, d.ring.desc, d.ring.size, r.head, w.indirect, r.In, r.Out); err != nil {
			if n := q.badChains.Add(1); n <= 10 || n%1000 == 0 { // a guest could flood the log
				q.b.logf("vhost: queue %d: descriptor chain at head %d: %v; returning it with 0 bytes (bad chain %d)", q.index, r.head, err, n)
			}
			r.In, r.Out = r.In[:0], r.Out[:0]
			r.Complete(0)
		} else {
			q.b.h.Serve(q.index, r)
		}
		if !r.completion.CompareAndSwap(completionHeld, 0) {
			d.done[d.nDone] = r
			d.nDone++
		}
	}
	d.nTodo = 0
}

// finishLocked returns the chains the drainer completed inline to the guest and reports the
// memory table they held references on and how many, to be released after unlocking (the last
// reference unmaps).
func (d *drainer) finishLocked(q *queue) (*memTable, int) {
	n := d.nDone
	if n == 0 {
		return nil, 0
	}
	for i, r := range d.done[:n] {
		written := uint32(r.completion.Load())
		r.completion.Store(0)
		q.retireLocked(r, written)
		d.done[i] = nil
	}
	d.nDone = 0
	return d.mem, n
}

// popLocked takes up to drainBatch available chains into the drainer's batch (without asking for a
// kick: armKick does, before the worker sleeps) and reports whether more are left. It takes none
// when the ring is empty, the worker is stale, the ring is broken, or as many requests as the ring
// has slots are already in flight (which a well-behaved driver can never cause; the worker resumes
// when one completes). With helpers it takes one chain at a time.
func (w *worker) popLocked(d *drainer) (more bool) {
	q := w.q
	d.nTodo = 0
	if q.runGen != w.gen || !q.ringOK || q.broken {
		return false
	}
	avail := q.ring.availIdx()
	pending := int(avail - q.lastAvail)
	if pending == 0 {
		return false
	}
	if pending > q.size {
		q.broken = true
		q.b.logf("vhost: queue %d: guest claims %d new available entries in a ring of %d; stopping the queue", q.index, pending, q.size)
		return false
	}
	room := q.size - q.inflight
	if room <= 0 {
		q.throttled = true
		return false
	}
	// With helpers, one chain at a time: a request that blocks then holds up only itself, and
	// what the others finish reaches the guest at once, as the pool promises.
	n := min(pending, room, drainBatch)
	if w.wake != nil {
		n = 1
	}
	for i := range n {
		var r *Request
		if k := len(q.free); k > 0 {
			r = q.free[k-1]
			q.free = q.free[:k-1]
		} else {
			r = new(Request)
		}
		r.head = q.ring.availHead(q.lastAvail)
		q.lastAvail++
		r.q, r.mem, r.epoch = q, q.mem, q.epoch
		d.todo[i] = r
	}
	d.nTodo, d.ring, d.mem = n, q.ring, q.mem
	q.mem.acquireN(n)
	q.inflight += n
	q.served.Add(uint64(n))
	return avail != q.lastAvail
}
