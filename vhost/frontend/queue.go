package frontend

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Descriptor flags (struct virtq_desc).
const (
	DescNext     uint16 = 1
	DescWrite    uint16 = 2
	DescIndirect uint16 = 4

	AvailNoInterrupt uint16 = 1 // VRING_AVAIL_F_NO_INTERRUPT
)

// Desc is one descriptor as the driver writes it.
type Desc struct {
	Addr  uint64
	Len   uint32
	Flags uint16
	Next  uint16
}

func (d Desc) encode(b []byte) {
	binary.LittleEndian.PutUint64(b[0:], d.Addr)
	binary.LittleEndian.PutUint32(b[8:], d.Len)
	binary.LittleEndian.PutUint16(b[12:], d.Flags)
	binary.LittleEndian.PutUint16(b[14:], d.Next)
}

// UsedElem is one entry of the used ring.
type UsedElem struct {
	ID, Len uint32
}

// vq is the driver side of one split ring in front-end guest memory.
type vq struct {
	index                      int
	size                       int
	descGPA, availGPA, usedGPA uint64
	desc, avail, used          []byte
	kickFD, callFD             int
	notifications              atomic.Uint64
	mu                         sync.Mutex
	freeDesc                   []uint16
	availIdx                   uint16
	lastUsed                   uint16
	waiters                    []chan UsedElem // by head index
	unclaimed                  []UsedElem
	manualUsedEvent            bool
	resumeBase                 uint16      // from the last GetVringBase
	pipelined                  atomic.Bool // a Pipeline owns the ring: harvest nothing
}

func roundUp(n, to uint64) uint64 { return (n + to - 1) &^ (to - 1) }

// layoutQueue places a ring at gpa like Linux does (desc, avail right after, used page aligned)
// and returns the first free address after it.
func (f *Frontend) layoutQueue(index int, gpa uint64) (*vq, uint64, error) {
	size := f.o.QueueSize
	q := &vq{index: index, size: size, waiters: make([]chan UsedElem, size)}
	q.descGPA = gpa
	q.availGPA = gpa + uint64(16*size)
	q.usedGPA = roundUp(q.availGPA+uint64(6+2*size), 4096)
	end := roundUp(q.usedGPA+uint64(6+8*size)+2, 4096)
	if end-GuestBase > uint64(len(f.mem.bytes)) {
		return nil, 0, errors.New("guest memory too small for the rings; raise Options.MemSize")
	}
	q.desc = f.mem.at(q.descGPA, 16*size)
	q.avail = f.mem.at(q.availGPA, int(roundUp(uint64(6+2*size), 4)))
	q.used = f.mem.at(q.usedGPA, int(roundUp(uint64(6+8*size), 4)))
	for i := size - 1; i >= 0; i-- {
		q.freeDesc = append(q.freeDesc, uint16(i))
	}
	var err error
	if q.kickFD, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, 0, err
	}
	if q.callFD, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		unix.Close(q.kickFD)
		return nil, 0, err
	}
	return q, end, nil
}

func word(b []byte, off int) *uint32 { return (*uint32)(unsafe.Pointer(&b[off&^3])) }

func load16(b []byte, off int) uint16 {
	var tmp [4]byte
	binary.NativeEndian.PutUint32(tmp[:], atomic.LoadUint32(word(b, off)))
	return binary.LittleEndian.Uint16(tmp[off&2:])
}

// store16 replaces one half of an aligned word atomically, keeping the other half.
func store16(b []byte, off int, v uint16) {
	w := word(b, off)
	for {
		old := atomic.LoadUint32(w)
		var tmp [4]byte
		binary.NativeEndian.PutUint32(tmp[:], old)
		binary.LittleEndian.PutUint16(tmp[off&2:], v)
		if atomic.CompareAndSwapUint32(w, old, binary.NativeEndian.Uint32(tmp[:])) {
			return
		}
	}
}

func (f *Frontend) q(queue int) (*vq, error) {
	if queue < 0 || queue >= len(f.queues) {
		return nil, fmt.Errorf("queue %d does not exist (front-end has %d)", queue, len(f.queues))
	}
	return f.queues[queue], nil
}

// publishLocked makes head available and advances avail idx (release).
func (q *vq) publishLocked(head uint16) {
	binary.LittleEndian.PutUint16(q.avail[4+2*(int(q.availIdx)%q.size):], head)
	q.availIdx++
	store16(q.avail, 2, q.availIdx)
}

// harvest collects new used entries: to the waiting Call, or to the unclaimed list.
func (q *vq) harvest() {
	if q.pipelined.Load() {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for idx := load16(q.used, 2); q.lastUsed != idx; q.lastUsed++ {
		off := 4 + 8*(int(q.lastUsed)%q.size)
		e := UsedElem{ID: binary.LittleEndian.Uint32(q.used[off:]), Len: binary.LittleEndian.Uint32(q.used[off+4:])}
		if e.ID < uint32(q.size) && q.waiters[e.ID] != nil {
			q.waiters[e.ID] <- e
			q.waiters[e.ID] = nil
			continue
		}
		q.unclaimed = append(q.unclaimed, e)
	}
	if !q.manualUsedEvent {
		store16(q.avail, 4+2*q.size, q.lastUsed) // EVENT_IDX: interrupt me at the next one
	}
}

// notifier counts call eventfd signals and harvests used entries until stopFD becomes readable.
func (q *vq) notifier(stopFD int, done *sync.WaitGroup) {
	defer done.Done()
	fds := []unix.PollFd{{Fd: int32(q.callFD), Events: unix.POLLIN}, {Fd: int32(stopFD), Events: unix.POLLIN}}
	var buf [8]byte
	for {
		fds[0].Revents, fds[1].Revents = 0, 0
		if _, err := unix.Poll(fds, -1); err != nil {
			if err == unix.EINTR {
				continue
			}
			return
		}
		if fds[1].Revents != 0 {
			return
		}
		if n, _ := unix.Read(q.callFD, buf[:]); n == 8 {
			q.notifications.Add(binary.NativeEndian.Uint64(buf[:]))
		}
		q.harvest()
	}
}

// Call places in (each slice its own device-readable descriptor) and writable buffers of the
// given sizes into guest memory, chains them (through an indirect table if Options.Indirect),
// kicks, waits for the used entry and returns the writable bytes concatenated up to written.
// Safe for concurrent use, also on one queue.
func (f *Frontend) Call(queue int, in [][]byte, outSizes []int) ([]byte, uint32, error) {
	q, err := f.q(queue)
	if err != nil {
		return nil, 0, err
	}
	if q.pipelined.Load() {
		return nil, 0, fmt.Errorf("queue %d is driven by a Pipeline", queue)
	}
	n := len(in) + len(outSizes)
	if n == 0 || n > q.size {
		return nil, 0, fmt.Errorf("a chain of %d buffers does not fit queue size %d", n, q.size)
	}
	descs := make([]Desc, 0, n)
	var bufs []uint64
	defer func() {
		for _, a := range bufs {
			f.alloc.release(a)
		}
	}()
	for i := 0; i < n; i++ {
		size, flags := 0, uint16(0)
		if i < len(in) {
			size = len(in[i])
		} else {
			size, flags = outSizes[i-len(in)], DescWrite
		}
		gpa, err := f.alloc.alloc(size)
		if err != nil {
			return nil, 0, err
		}
		bufs = append(bufs, gpa)
		b := f.mem.at(gpa, size)
		if i < len(in) {
			copy(b, in[i])
		} else {
			clear(b)
		}
		if i < n-1 {
			flags |= DescNext
		}
		descs = append(descs, Desc{Addr: gpa, Len: uint32(size), Flags: flags})
	}
	var table uint64
	if f.o.Indirect {
		if table, err = f.alloc.alloc(16 * n); err != nil {
			return nil, 0, err
		}
		bufs = append(bufs, table)
		for i, d := range descs {
			d.Next = uint16(i + 1)
			d.encode(f.mem.at(table+uint64(16*i), 16))
		}
	}
	ch := make(chan UsedElem, 1)
	heads, err := q.submit(f, descs, table, ch)
	if err != nil {
		return nil, 0, err
	}
	if err := f.Kick(queue); err != nil {
		return nil, 0, err
	}
	e, err := q.wait(ch, f.o.Timeout)
	if err != nil {
		// The back-end may still use the chain: leak its memory and descriptors rather than reuse
		// them, and let a late used entry go to WaitUsed.
		bufs = nil
		q.mu.Lock()
		if q.waiters[heads[0]] == ch {
			q.waiters[heads[0]] = nil
		}
		q.mu.Unlock()
		return nil, 0, err
	}
	q.mu.Lock()
	q.freeDesc = append(q.freeDesc, heads...)
	q.mu.Unlock()
	var out []byte
	left := int(e.Len)
	for i := len(in); i < n && left > 0; i++ {
		b := f.mem.at(descs[i].Addr, int(descs[i].Len))
		take := min(left, len(b))
		out = append(out, b[:take]...)
		left -= take
	}
	return out, e.Len, nil
}

// submit takes descriptors from the free list, writes the chain (or one indirect descriptor
// pointing at table) and publishes it.
func (q *vq) submit(f *Frontend, descs []Desc, table uint64, ch chan UsedElem) ([]uint16, error) {
	need := len(descs)
	if table != 0 {
		need = 1
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.freeDesc) < need {
		return nil, fmt.Errorf("queue %d: only %d free descriptors, need %d", q.index, len(q.freeDesc), need)
	}
	heads := append([]uint16(nil), q.freeDesc[len(q.freeDesc)-need:]...)
	q.freeDesc = q.freeDesc[:len(q.freeDesc)-need]
	if table != 0 {
		Desc{Addr: table, Len: uint32(16 * len(descs)), Flags: DescIndirect}.encode(q.desc[16*int(heads[0]):])
	} else {
		for i, d := range descs {
			if i+1 < need {
				d.Next = heads[i+1]
			}
			d.encode(q.desc[16*int(heads[i]):])
		}
	}
	q.waiters[heads[0]] = ch
	q.publishLocked(heads[0])
	return heads, nil
}

// wait blocks for the used entry of a submitted chain, polling the used ring as well so that
// suppressed notifications do not stall it.
func (q *vq) wait(ch chan UsedElem, timeout time.Duration) (UsedElem, error) {
	deadline := time.After(timeout)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case e := <-ch:
			return e, nil
		case <-tick.C:
			q.harvest()
		case <-deadline:
			return UsedElem{}, fmt.Errorf("queue %d: no used entry within %v", q.index, timeout)
		}
	}
}

// Kick notifies the back-end that queue has new available entries.
func (f *Frontend) Kick(queue int) error {
	q, err := f.q(queue)
	if err != nil {
		return err
	}
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	if _, err := unix.Write(q.kickFD, one[:]); err != nil && err != unix.EAGAIN {
		return fmt.Errorf("kick queue %d: %w", queue, err)
	}
	return nil
}

// SetDesc writes descriptor i of queue's ring table directly (for malformed chains).
func (f *Frontend) SetDesc(queue, i int, d Desc) {
	q := f.queues[queue]
	d.encode(q.desc[16*i:])
}

// WriteDesc writes a descriptor at an arbitrary guest address (entries of indirect tables).
func (f *Frontend) WriteDesc(gpa uint64, d Desc) { d.encode(f.mem.at(gpa, 16)) }

// Alloc reserves n bytes of guest memory and returns its guest address and a view of it.
func (f *Frontend) Alloc(n int) (uint64, []byte, error) {
	gpa, err := f.alloc.alloc(n)
	if err != nil {
		return 0, nil, err
	}
	return gpa, f.mem.at(gpa, n), nil
}

// Free returns memory from Alloc.
func (f *Frontend) Free(gpa uint64) { f.alloc.release(gpa) }

// Publish puts an arbitrary head index into queue's available ring (without kicking).
func (f *Frontend) Publish(queue int, head uint16) {
	q := f.queues[queue]
	q.mu.Lock()
	defer q.mu.Unlock()
	q.publishLocked(head)
}

// SetAvailIdx overwrites avail->idx, e.g. to claim more entries than the ring holds.
func (f *Frontend) SetAvailIdx(queue int, idx uint16) {
	q := f.queues[queue]
	q.mu.Lock()
	defer q.mu.Unlock()
	q.availIdx = idx
	store16(q.avail, 2, idx)
}

// SetAvailFlags writes avail->flags (AvailNoInterrupt suppresses interrupts without EVENT_IDX).
func (f *Frontend) SetAvailFlags(queue int, flags uint16) {
	store16(f.queues[queue].avail, 0, flags)
}

// SetUsedEvent writes used_event (EVENT_IDX) and stops the front-end from updating it itself.
func (f *Frontend) SetUsedEvent(queue int, v uint16) {
	q := f.queues[queue]
	q.mu.Lock()
	defer q.mu.Unlock()
	q.manualUsedEvent = true
	store16(q.avail, 4+2*q.size, v)
}

// AvailEvent reads the back-end's avail_event (EVENT_IDX).
func (f *Frontend) AvailEvent(queue int) uint16 {
	q := f.queues[queue]
	return load16(q.used, 4+8*q.size)
}

// UsedIdx reads used->idx as published by the back-end.
func (f *Frontend) UsedIdx(queue int) uint16 { return load16(f.queues[queue].used, 2) }

// Notifications counts call eventfd signals received for queue so far.
func (f *Frontend) Notifications(queue int) uint64 {
	q := f.queues[queue]
	// Count anything still pending in the eventfd too.
	var buf [8]byte
	if n, _ := unix.Read(q.callFD, buf[:]); n == 8 {
		q.notifications.Add(binary.NativeEndian.Uint64(buf[:]))
	}
	return q.notifications.Load()
}

// WaitUsed returns the next used entry that no Call is waiting for, or an error after timeout.
func (f *Frontend) WaitUsed(queue int, timeout time.Duration) (UsedElem, error) {
	q, err := f.q(queue)
	if err != nil {
		return UsedElem{}, err
	}
	deadline := time.Now().Add(timeout)
	for {
		q.harvest()
		q.mu.Lock()
		if len(q.unclaimed) > 0 {
			e := q.unclaimed[0]
			q.unclaimed = q.unclaimed[1:]
			q.mu.Unlock()
			return e, nil
		}
		q.mu.Unlock()
		if time.Now().After(deadline) {
			return UsedElem{}, fmt.Errorf("queue %d: no used entry within %v", queue, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// QueueSize is the size of every ring.
func (f *Frontend) QueueSize() int { return f.o.QueueSize }
