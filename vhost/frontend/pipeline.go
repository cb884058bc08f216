package frontend

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/vhost"
)

// Pipeline keeps depth copies of one request in flight on a queue, resubmitting each chain as soon
// as its used entry appears. Chains and buffers are built once in guest memory, so running it
// allocates nothing and copies nothing: a benchmark built on it measures the back-end, not the
// front-end (Call allocates and copies per request and costs more than a back-end's GETATTR).
//
// While a Pipeline exists it owns its queue: Call must not be used on that queue until Close. It
// waits for completions like a guest: on its own call eventfd, asking for a notification only when
// it has nothing left to harvest (EVENT_IDX used_event), optionally spinning first.
type Pipeline struct {
	f       *Frontend
	q       *vq
	heads   []uint16 // one ring head per slot
	isHead  []bool   // by descriptor index: a head of this pipeline
	allocs  []uint64 // guest memory to free at Close
	descs   []uint16 // ring descriptors to return at Close
	callFD  int      // this pipeline's call eventfd (the queue's own is restored at Close)
	replies [][]byte // by head: the chain's first device-writable buffer (the out header)
}

// NewPipeline prepares depth chains of the same request on queue: in are device-readable buffers
// (shared by all chains: the back-end only reads them), outSizes the device-writable buffers each
// chain gets of its own. The queue must have no Call in flight.
func (f *Frontend) NewPipeline(queue, depth int, in [][]byte, outSizes []int) (*Pipeline, error) {
	q, err := f.q(queue)
	if err != nil {
		return nil, err
	}
	n := len(in) + len(outSizes)
	perChain := n
	if f.o.Indirect {
		perChain = 1
	}
	if n == 0 || depth < 1 || depth*perChain > q.size || (!f.o.Indirect && n > q.size) {
		return nil, fmt.Errorf("%d chains of %d buffers do not fit queue size %d", depth, n, q.size)
	}
	p := &Pipeline{f: f, q: q, isHead: make([]bool, q.size), replies: make([][]byte, q.size), callFD: -1}
	fail := func(err error) (*Pipeline, error) {
		p.release()
		return nil, err
	}
	shared := make([]Desc, len(in))
	for i, b := range in {
		gpa, err := f.alloc.alloc(len(b))
		if err != nil {
			return fail(err)
		}
		p.allocs = append(p.allocs, gpa)
		copy(f.mem.at(gpa, len(b)), b)
		shared[i] = Desc{Addr: gpa, Len: uint32(len(b))}
	}
	q.mu.Lock()
	if len(q.freeDesc) < depth*perChain {
		q.mu.Unlock()
		return fail(fmt.Errorf("queue %d: only %d free descriptors, need %d", queue, len(q.freeDesc), depth*perChain))
	}
	p.descs = append(p.descs, q.freeDesc[len(q.freeDesc)-depth*perChain:]...)
	q.freeDesc = q.freeDesc[:len(q.freeDesc)-depth*perChain]
	q.mu.Unlock()
	chain := make([]Desc, n)
	for slot := 0; slot < depth; slot++ {
		copy(chain, shared)
		ids := p.descs[slot*perChain : (slot+1)*perChain]
		for i, size := range outSizes {
			gpa, err := f.alloc.alloc(size)
			if err != nil {
				return fail(err)
			}
			p.allocs = append(p.allocs, gpa)
			chain[len(in)+i] = Desc{Addr: gpa, Len: uint32(size), Flags: DescWrite}
			if i == 0 {
				p.replies[ids[0]] = f.mem.at(gpa, size)
			}
		}
		if f.o.Indirect {
			table, err := f.alloc.alloc(16 * n)
			if err != nil {
				return fail(err)
			}
			p.allocs = append(p.allocs, table)
			for i, d := range chain {
				if i < n-1 {
					d.Flags, d.Next = d.Flags|DescNext, uint16(i+1)
				}
				d.encode(f.mem.at(table+uint64(16*i), 16))
			}
			Desc{Addr: table, Len: uint32(16 * n), Flags: DescIndirect}.encode(q.desc[16*int(ids[0]):])
		} else {
			for i, d := range chain {
				if i < n-1 {
					d.Flags, d.Next = d.Flags|DescNext, ids[i+1]
				}
				d.encode(q.desc[16*int(ids[i]):])
			}
		}
		p.heads = append(p.heads, ids[0])
		p.isHead[ids[0]] = true
	}
	if p.callFD, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fail(err)
	}
	// Take the queue's completions away from the notifier goroutine: harvest nothing that is
	// still pending, then point the back-end at this pipeline's eventfd.
	q.harvest()
	if err := f.requestU64(vhost.ReqSetVringCall, uint64(queue), []int{p.callFD}); err != nil {
		return fail(err)
	}
	q.pipelined.Store(true)
	return p, nil
}

// Check inspects one completion: written is the used entry's length, header the chain's first
// device-writable buffer. A non-nil error stops Run.
type Check func(header []byte, written uint32) error

// Run submits every chain, resubmits each one as it completes, and stops resubmitting after dur.
// It returns the completions counted up to that moment and the time they took. spin is how long
// to poll the used ring before sleeping on the call eventfd (0: sleep at once, like a guest).
func (p *Pipeline) Run(dur, spin time.Duration, check Check) (ops int64, elapsed time.Duration, err error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	q, f := p.q, p.f
	eventIdx := f.features&vhost.FeatureEventIdx != 0
	fds := []unix.PollFd{{Fd: int32(p.callFD), Events: unix.POLLIN}}
	var buf [8]byte

	q.mu.Lock()
	old := q.availIdx
	for _, h := range p.heads {
		q.publishLocked(h)
	}
	q.mu.Unlock()
	if err := p.kickIfNeeded(old, eventIdx); err != nil {
		return 0, 0, err
	}
	start := time.Now()
	deadline := start.Add(dur)
	inflight, stopping := len(p.heads), false
	var idleSince time.Time
	for inflight > 0 {
		usedIdx := load16(q.used, 2)
		if usedIdx == q.lastUsed {
			now := time.Now()
			if idleSince.IsZero() {
				idleSince = now
			}
			if now.Sub(idleSince) < spin {
				continue
			}
			// Ask for a notification at the next used entry, then look again before sleeping.
			p.setUsedEvent(q.lastUsed, eventIdx)
			if load16(q.used, 2) != q.lastUsed {
				continue
			}
			fds[0].Revents = 0
			n, perr := unix.Poll(fds, 10000)
			if perr != nil && perr != unix.EINTR {
				return ops, time.Since(start), perr
			}
			if n == 0 {
				return ops, time.Since(start), fmt.Errorf("queue %d: no completion within 10 s (%d in flight)", q.index, inflight)
			}
			unix.Read(p.callFD, buf[:])
			continue
		}
		idleSince = time.Time{}
		// Completions are harvested without asking for interrupts: a busy pipeline polls.
		p.setUsedEvent(q.lastUsed+0x8000, eventIdx)
		old := q.availIdx
		for ; q.lastUsed != usedIdx; q.lastUsed++ {
			off := 4 + 8*(int(q.lastUsed)%q.size)
			id := binary.LittleEndian.Uint32(q.used[off:])
			written := binary.LittleEndian.Uint32(q.used[off+4:])
			if id >= uint32(q.size) || !p.isHead[id] {
				return ops, time.Since(start), fmt.Errorf("queue %d: used entry for unknown head %d", q.index, id)
			}
			if check != nil {
				if err := check(p.replies[id], written); err != nil {
					return ops, time.Since(start), err
				}
			}
			if stopping {
				inflight--
				continue
			}
			ops++
			q.publishLocked(uint16(id)) // this goroutine alone touches the queue while it runs
		}
		if err := p.kickIfNeeded(old, eventIdx); err != nil {
			return ops, time.Since(start), err
		}
		if !stopping {
			if now := time.Now(); now.After(deadline) {
				stopping, elapsed = true, now.Sub(start)
			}
		}
	}
	return ops, elapsed, nil
}

// kickIfNeeded kicks the back-end for the entries published since old, unless it said it does not
// need one (EVENT_IDX avail_event, or VRING_USED_F_NO_NOTIFY).
func (p *Pipeline) kickIfNeeded(old uint16, eventIdx bool) error {
	q := p.q
	if q.availIdx == old {
		return nil
	}
	if eventIdx {
		event := load16(q.used, 4+8*q.size)
		if uint16(q.availIdx-event-1) >= uint16(q.availIdx-old) {
			return nil
		}
	} else if load16(q.used, 0)&1 != 0 {
		return nil
	}
	return p.f.Kick(q.index)
}

// setUsedEvent asks for an interrupt once the used index passes v (EVENT_IDX), or turns
// interrupts on or off as a whole without it.
func (p *Pipeline) setUsedEvent(v uint16, eventIdx bool) {
	q := p.q
	if eventIdx {
		store16(q.avail, 4+2*q.size, v)
		return
	}
	if v == q.lastUsed {
		store16(q.avail, 0, 0)
	} else {
		store16(q.avail, 0, AvailNoInterrupt)
	}
}

// Close gives the queue back: the original call eventfd, descriptors and guest memory. Run must
// have returned without error (after an error the back-end may still hold chains).
func (p *Pipeline) Close() error {
	err := p.f.requestU64(vhost.ReqSetVringCall, uint64(p.q.index), []int{p.q.callFD})
	p.q.pipelined.Store(false)
	p.q.mu.Lock()
	p.q.manualUsedEvent = false
	p.q.mu.Unlock()
	p.release()
	return err
}

func (p *Pipeline) release() {
	for _, a := range p.allocs {
		p.f.alloc.release(a)
	}
	p.allocs = nil
	if len(p.descs) > 0 {
		p.q.mu.Lock()
		p.q.freeDesc = append(p.q.freeDesc, p.descs...)
		p.q.mu.Unlock()
		p.descs = nil
	}
	if p.callFD >= 0 {
		unix.Close(p.callFD)
		p.callFD = -1
	}
}
