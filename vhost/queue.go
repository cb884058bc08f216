package vhost

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// queue is the back-end state of one virtqueue. The control goroutine (ServeConn) configures it;
// one worker goroutine at a time pops chains; Complete may run on any goroutine. mu guards
// everything below it.
type queue struct {
	index int
	b     *Backend

	mu sync.Mutex

	// Configuration from the front-end.
	size       int // 0 until SET_VRING_NUM
	addr       VringAddr
	addrSet    bool
	kickFD     int // -1: none (or polling mode, which is not supported)
	callFD     int
	errFD      int
	enabled    bool
	enabledSet bool // SET_VRING_ENABLE seen; before that the default depends on PROTOCOL_FEATURES
	eventIdx   bool
	indirect   bool
	freshBase  bool // SET_VRING_BASE since the last start: resync used idx from guest memory

	// Ring state.
	mem       *memTable
	ring      vring
	ringOK    bool   // ring resolved against mem
	lastAvail uint16 // next available slot to pop
	usedIdx   uint16 // next used slot to fill
	broken    bool   // guest misbehaved beyond recovery; reset by reconfiguration
	epoch     uint64 // bumped when the ring is handed back (GET_VRING_BASE, reset)
	// handedBack mirrors epoch for drainers, which check it without the lock before serving each
	// chain of a batch: chains popped before the ring went back are returned unserved.
	handedBack atomic.Uint64
	badChains  atomic.Uint64 // malformed chains seen, to log only some
	served     atomic.Uint64 // chains taken from the ring (Backend.QueueCounts)

	// Dirty logging (dirtylog.go): log is nil unless VHOST_F_LOG_ALL is acked; logUsed says
	// whether used ring writes are logged too (VHOST_VRING_F_LOG at addr.Log).
	log     *dirtyLog
	logUsed bool

	// Notification state.
	batching       bool // worker or helpers are draining: completions only mark pendingSignal
	drainers       int  // how many of them (of the running worker generation)
	pendingSignal  bool
	pendingCount   int    // completions since the last notification decision
	signalled      uint16 // used idx at the last EVENT_IDX decision
	signalledValid bool
	callBuf        [8]byte

	// Requests.
	inflight  int           // popped and not yet completed, of the current ring (epoch) only
	throttled bool          // worker stopped popping because inflight reached size
	drained   chan struct{} // closed when inflight drops to 0 (GET_VRING_BASE waits on it)
	strays    int           // requests popped before a hand-back that is over, still being served
	free      []*Request

	// Worker.
	running    bool
	runGen     uint64 // identifies the current worker; stale workers see a newer value and exit
	ctlFD      int    // eventfd: wakes the worker to stop or to resume popping
	workerDone chan struct{}
}

func newQueue(b *Backend, index int) *queue {
	q := &queue{index: index, b: b, kickFD: -1, callFD: -1, errFD: -1, ctlFD: -1}
	binary.LittleEndian.PutUint64(q.callBuf[:], 1)
	return q
}

// isEnabledLocked applies the vhost-user rule: without PROTOCOL_FEATURES rings start enabled, with it
// they wait for SET_VRING_ENABLE.
func (q *queue) isEnabledLocked() bool {
	if q.enabledSet {
		return q.enabled
	}
	return !q.b.protocolNegotiated()
}

// pushUsedLocked adds one used element and publishes it, then notifies (or defers the
// notification while the worker drains). With dirty logging, each write is marked after it is
// made and the element before the index that publishes it.
func (q *queue) pushUsedLocked(head uint16, written uint32) {
	q.ring.putUsed(q.usedIdx, uint32(head), written)
	if q.log != nil {
		q.logUsedLocked(usedElemOffset(q.usedIdx, q.size), usedElemSize)
	}
	q.usedIdx++
	q.ring.publishUsed(q.usedIdx)
	if q.log != nil {
		q.logUsedLocked(0, 4) // flags and idx
	}
	if q.batching {
		q.pendingSignal = true
		q.pendingCount++
		return
	}
	q.signalLocked()
}

// flushPendingLocked sends the notification that batching held back, if any.
func (q *queue) flushPendingLocked() {
	if q.pendingSignal {
		q.pendingSignal = false
		q.signalLocked()
	}
}

// signalLocked interrupts the guest if it asked for it: with EVENT_IDX when used idx moved past
// used_event since the last decision (vring_need_event), otherwise unless NO_INTERRUPT is set.
func (q *queue) signalLocked() {
	q.pendingCount = 0
	if q.callFD < 0 || !q.ringOK {
		return
	}
	if q.eventIdx {
		old, valid := q.signalled, q.signalledValid
		q.signalled, q.signalledValid = q.usedIdx, true
		if valid && !needEvent(q.ring.usedEvent(), q.usedIdx, old) {
			return
		}
	} else if q.ring.availFlags()&availFlagNoInterrupt != 0 {
		return
	}
	unix.Write(q.callFD, q.callBuf[:]) // EAGAIN means the counter is already non-zero
}

// wakeWorker makes the worker re-check its state (stop request or room for more requests).
func (q *queue) wakeWorker() {
	if q.ctlFD >= 0 {
		unix.Write(q.ctlFD, q.callBuf[:])
	}
}

// resolveLocked re-derives the ring's host views from the current memory table.
func (q *queue) resolveLocked() error {
	q.ringOK = false
	if !q.addrSet || q.size == 0 {
		return nil
	}
	r, err := resolveRing(q.mem, q.size, q.addr)
	if err != nil {
		return err
	}
	q.ring, q.ringOK = r, true
	return nil
}

// pause stops the worker (if any) and waits for it to exit, at most the stop timeout. A worker
// stuck inside a handler is abandoned: it sees a newer runGen and exits when the handler returns.
func (q *queue) pause() { q.pauseUntil(time.Now().Add(q.b.stopTimeout())) }

// pauseUntil is pause with a deadline.
func (q *queue) pauseUntil(deadline time.Time) {
	q.mu.Lock()
	if !q.running {
		q.mu.Unlock()
		return
	}
	q.running = false
	q.runGen++
	done := q.workerDone
	q.wakeWorker()
	q.mu.Unlock()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		q.b.logf("vhost: queue %d: worker did not stop within %v (a request handler is blocked); continuing without it", q.index, q.b.stopTimeout())
	}
	// Drainers of the stopped generation no longer flush the batch: completions from now on
	// (requests still in flight) notify on their own, and what is batched goes out now.
	q.mu.Lock()
	q.batching, q.drainers = false, 0
	q.flushPendingLocked()
	q.mu.Unlock()
}

// wakeDrainedLocked wakes waitIdle: inflight reached 0.
func (q *queue) wakeDrainedLocked() {
	if q.drained != nil {
		close(q.drained)
		q.drained = nil
	}
}

// waitIdle waits until every popped request was completed, at most until deadline.
func (q *queue) waitIdle(deadline time.Time) {
	q.mu.Lock()
	if q.inflight == 0 {
		q.mu.Unlock()
		return
	}
	if q.drained == nil {
		q.drained = make(chan struct{})
	}
	ch := q.drained
	n := q.inflight
	q.mu.Unlock()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-ch:
	case <-timer.C:
		q.b.logf("vhost: queue %d: %d requests still in flight after %v; their completions will be dropped", q.index, n, q.b.stopTimeout())
	}
}

// maybeStart starts the worker if the ring is fully configured, enabled and has a kick fd.
func (q *queue) maybeStart() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.running || q.kickFD < 0 || !q.isEnabledLocked() || q.broken {
		return
	}
	if !q.ringOK {
		if err := q.resolveLocked(); err != nil || !q.ringOK {
			if err != nil {
				q.b.logf("vhost: not starting queue %d: %v", q.index, err)
			}
			return
		}
	}
	if q.ctlFD < 0 {
		fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			q.b.logf("vhost: not starting queue %d: eventfd: %v", q.index, err)
			return
		}
		q.ctlFD = fd
	}
	// The worker polls its own copy of the kick fd, so replacing or closing q.kickFD can never
	// pull the fd out from under a worker that was abandoned by pause.
	kick, err := unix.FcntlInt(uintptr(q.kickFD), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		q.b.logf("vhost: not starting queue %d: dup kick fd: %v", q.index, err)
		return
	}
	if q.freshBase {
		q.usedIdx = q.ring.usedIdx()
		q.freshBase = false
		q.signalledValid = false
	}
	q.runGen++
	q.running = true
	q.drainers = 0 // a stopped generation's drainers no longer count
	q.workerDone = make(chan struct{})
	w := &worker{q: q, gen: q.runGen, kickFD: kick, ctlFD: q.ctlFD, done: q.workerDone, indirect: q.indirect}
	if q.index != 0 { // queue 0 is hiprio
		w.pollMax = q.b.cfg.PollMax
	} else {
		w.gather = q.b.cfg.HiprioGather
		w.linger = q.b.cfg.HiprioLinger
	}
	w.hotWait = q.b.cfg.HotWait
	go w.run()
}

// stopRing hands the ring back to the front-end: stop the worker, let in-flight requests finish,
// and drop the kick and call fds. It returns the next available index to process. Only once
// every request popped from the ring is completed (its reply written, marked in the dirty log and
// published in the used ring) is the ring's state one the front-end can save and resume from; a
// handler blocked past the stop timeout (for worker and requests together) is left behind, since
// QEMU waits for GET_VRING_BASE.
func (q *queue) stopRing() uint16 {
	deadline := time.Now().Add(q.b.stopTimeout())
	q.pauseUntil(deadline)
	q.waitIdle(deadline)
	q.mu.Lock()
	defer q.mu.Unlock()
	q.epoch++
	q.handedBack.Store(q.epoch)
	// Requests still in flight (a handler blocked past the stop timeout) no longer count: they
	// would throttle the next ring, and every later hand-back would wait for them again. They
	// are strays until they complete, and a device state is not saved meanwhile.
	q.strays += q.inflight
	q.inflight, q.throttled = 0, false
	q.wakeDrainedLocked()
	closeFD(&q.kickFD)
	closeFD(&q.callFD)
	return q.lastAvail
}

// reset returns the queue to its initial state (RESET_DEVICE, disconnect).
func (q *queue) reset() {
	q.stopRing()
	q.mu.Lock()
	defer q.mu.Unlock()
	closeFD(&q.errFD)
	q.size, q.addrSet, q.ringOK, q.broken = 0, false, false, false
	q.enabled, q.enabledSet = false, false
	q.lastAvail, q.usedIdx, q.signalledValid, q.freshBase = 0, 0, false, false
}

// close releases the queue's own fds after reset; the control eventfd is kept if an abandoned
// worker might still poll it.
func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.workerDone != nil {
		select {
		case <-q.workerDone:
		default:
			return
		}
	}
	closeFD(&q.ctlFD)
}

func closeFD(fd *int) {
	if *fd >= 0 {
		unix.Close(*fd)
		*fd = -1
	}
}

// setSize handles SET_VRING_NUM. A size that would push a configured ring outside guest memory
// is refused without changing anything.
func (q *queue) setSize(n uint32) error {
	if n == 0 || n > MaxQueueSize || n&(n-1) != 0 {
		return fmt.Errorf("queue %d: size %d is not a power of two between 1 and %d", q.index, n, MaxQueueSize)
	}
	if err := q.checkRing(int(n), q.currentAddr()); err != nil {
		return err
	}
	q.pause()
	q.mu.Lock()
	q.size = int(n)
	err := q.resolveLocked()
	q.broken = false
	q.mu.Unlock()
	q.maybeStart()
	return err
}

// setAddr handles SET_VRING_ADDR. The ring must lie inside the current memory table; otherwise
// the request fails and the old addresses stay.
func (q *queue) setAddr(a VringAddr) error {
	q.mu.Lock()
	size := q.size
	q.mu.Unlock()
	if size == 0 {
		size = 1 // SET_VRING_NUM comes first in practice; check what can be checked
	}
	a.Flags &= VringFlagLog // the only flag defined
	if err := q.checkRing(size, &a); err != nil {
		return err
	}
	q.mu.Lock()
	if q.addrSet && q.ringOK && sameRing(q.addr, a) {
		// Only the log flag or address changed: QEMU turns logging on and off like this while
		// the ring runs, and the worker need not stop for it.
		q.addr = a
		q.logUsed = q.log != nil && a.Flags&VringFlagLog != 0
		q.mu.Unlock()
		return nil
	}
	q.mu.Unlock()
	q.pause()
	q.mu.Lock()
	q.addr, q.addrSet = a, true
	q.logUsed = q.log != nil && a.Flags&VringFlagLog != 0
	err := q.resolveLocked()
	q.broken = false
	q.mu.Unlock()
	q.maybeStart()
	return err
}

// sameRing reports whether a and b place the ring's three parts at the same addresses.
func sameRing(a, b VringAddr) bool {
	return a.Desc == b.Desc && a.Avail == b.Avail && a.Used == b.Used
}

// isRunning reports whether a worker serves the ring.
func (q *queue) isRunning() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.running
}

// strayCount is how many requests of rings already handed back are still being served.
func (q *queue) strayCount() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.strays
}

// currentAddr returns the configured ring addresses, or nil before SET_VRING_ADDR.
func (q *queue) currentAddr() *VringAddr {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.addrSet {
		return nil
	}
	a := q.addr
	return &a
}

// checkRing verifies that a ring of size entries at a fits the current memory (nil a: nothing
// to check yet).
func (q *queue) checkRing(size int, a *VringAddr) error {
	if a == nil {
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	_, err := resolveRing(q.mem, size, *a)
	return err
}

// setBase handles SET_VRING_BASE.
func (q *queue) setBase(n uint32) error {
	if n > 0xffff {
		return fmt.Errorf("queue %d: base %d does not fit a split ring index (packed rings are not supported)", q.index, n)
	}
	q.pause()
	q.mu.Lock()
	q.lastAvail = uint16(n)
	q.freshBase = true
	q.broken = false
	q.mu.Unlock()
	q.maybeStart()
	return nil
}

// setKick handles SET_VRING_KICK; fd < 0 means no fd (polling), which leaves the ring stopped.
func (q *queue) setKick(fd int) {
	q.pause()
	q.mu.Lock()
	closeFD(&q.kickFD)
	q.kickFD = fd
	q.mu.Unlock()
	if fd < 0 {
		q.b.logf("vhost: queue %d: polling mode (no kick fd) is not supported; the ring stays stopped", q.index)
	}
	q.maybeStart()
}

// setCall handles SET_VRING_CALL; it takes effect immediately, without stopping the worker.
func (q *queue) setCall(fd int) {
	q.mu.Lock()
	closeFD(&q.callFD)
	q.callFD = fd
	q.signalledValid = false
	q.mu.Unlock()
}

// setErr handles SET_VRING_ERR (kept only to be closed later: errors are logged instead).
func (q *queue) setErr(fd int) {
	q.mu.Lock()
	closeFD(&q.errFD)
	q.errFD = fd
	q.mu.Unlock()
}

// setEnable handles SET_VRING_ENABLE.
func (q *queue) setEnable(on bool) {
	q.mu.Lock()
	q.enabled, q.enabledSet = on, true
	q.mu.Unlock()
	if !on {
		q.pause()
		return
	}
	q.maybeStart()
}

// setFeatures records the negotiated ring features; the worker restarts to pick them up. When
// they do not change (SET_FEATURES only switching dirty logging) the worker runs on.
func (q *queue) setFeatures(eventIdx, indirect bool) {
	q.mu.Lock()
	same := q.eventIdx == eventIdx && q.indirect == indirect
	q.mu.Unlock()
	if same {
		return
	}
	q.pause()
	q.mu.Lock()
	q.eventIdx, q.indirect = eventIdx, indirect
	q.signalledValid = false
	q.mu.Unlock()
	q.maybeStart()
}

// setMem installs a new memory table; the caller paused the worker and restarts it afterwards.
func (q *queue) setMem(t *memTable) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.mem = t
	if err := q.resolveLocked(); err != nil {
		q.b.logf("vhost: queue %d after memory change: %v", q.index, err)
	}
}
