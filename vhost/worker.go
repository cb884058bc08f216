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
}

func (w *worker) run() {
	defer close(w.done)
	defer unix.Close(w.kickFD)
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
	w.drain()
	for w.current() {
		idleSince := time.Now()
		if w.pollRing(idleSince) || w.armKick() {
			w.drain()
			continue
		}
		fds[0].Revents, fds[1].Revents = 0, 0
		if _, err := unix.Poll(fds, -1); err != nil {
			if err == unix.EINTR {
				continue
			}
			w.q.b.logf("vhost: queue %d: poll: %v; stopping the queue", w.q.index, err)
			return
		}
		w.adaptPoll(time.Since(idleSince))
		if fds[1].Revents&unix.POLLIN != 0 {
			unix.Read(w.ctlFD, buf[:])
		}
		if fds[0].Revents&(unix.POLLERR|unix.POLLNVAL) != 0 {
			w.q.b.logf("vhost: queue %d: kick fd failed (revents %#x); stopping the queue", w.q.index, fds[0].Revents)
			return
		}
		if fds[0].Revents&unix.POLLIN != 0 {
			unix.Read(w.kickFD, buf[:])
			w.waitForMore(fds[1:])
		}
		if !w.current() {
			return
		}
		w.drain()
	}
}

// waitForMore gives the guest the gather time to queue more requests after its kick. avail_event
// still points at the entry that caused the kick, so the guest does not kick again meanwhile; a
// stop request (ctl) ends the wait at once.
func (w *worker) waitForMore(ctl []unix.PollFd) {
	if w.gather <= 0 {
		return
	}
	ts := unix.NsecToTimespec(w.gather.Nanoseconds())
	ctl[0].Revents = 0
	unix.Ppoll(ctl, &ts, nil)
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
	for {
		select {
		case <-w.wake:
			w.drain()
		case <-w.done:
			return
		}
	}
}

// drain pops and serves every available chain, then sends at most one notification for the
// completions that happened meanwhile. The worker and its helpers may drain at once; completions
// are batched while any of them drains, and each one flushes the batch when it runs dry.
func (w *worker) drain() {
	q := w.q
	q.mu.Lock()
	if q.runGen != w.gen {
		q.mu.Unlock()
		return
	}
	q.drainers++
	q.batching = true
	q.mu.Unlock()
	for {
		r, ring, more := w.pop()
		if r == nil {
			break
		}
		if more && w.wake != nil {
			select {
			case w.wake <- struct{}{}:
			default: // every helper is awake already
			}
		}
		var err error
		r.In, r.Out, err = walkChain(r.mem, ring.desc, ring.size, r.head, w.indirect, r.In, r.Out)
		if err != nil {
			q.b.logf("vhost: queue %d: descriptor chain at head %d: %v; returning it with 0 bytes", q.index, r.head, err)
			r.In, r.Out = r.In[:0], r.Out[:0]
			r.Complete(0)
			continue
		}
		q.b.h.Serve(q.index, r)
	}
	q.mu.Lock()
	if q.runGen == w.gen {
		q.drainers--
		q.batching = q.drainers > 0
		if q.pendingSignal {
			q.pendingSignal = false
			q.signalLocked()
		}
	}
	q.mu.Unlock()
}

// pop takes the next available chain (without asking for a kick: armKick does, before the worker
// sleeps), or returns nil when the ring is empty, the worker is stale,
// the ring is broken, or as many requests as the ring has slots are already in flight (which a
// well-behaved driver can never cause; the worker resumes when one completes).
func (w *worker) pop() (r *Request, ring vring, more bool) {
	q := w.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.runGen != w.gen || !q.ringOK || q.broken {
		return nil, vring{}, false
	}
	avail := q.ring.availIdx()
	if avail == q.lastAvail {
		return nil, vring{}, false
	}
	if int(avail-q.lastAvail) > q.size {
		q.broken = true
		q.b.logf("vhost: queue %d: guest claims %d new available entries in a ring of %d; stopping the queue", q.index, avail-q.lastAvail, q.size)
		return nil, vring{}, false
	}
	if q.inflight >= q.size {
		q.throttled = true
		return nil, vring{}, false
	}
	if n := len(q.free); n > 0 {
		r = q.free[n-1]
		q.free = q.free[:n-1]
	} else {
		r = new(Request)
	}
	r.head = q.ring.availHead(q.lastAvail)
	q.lastAvail++
	r.q, r.mem, r.epoch = q, q.mem, q.epoch
	q.mem.acquire()
	q.inflight++
	return r, q.ring, avail != q.lastAvail
}
