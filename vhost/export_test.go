package vhost

import (
	"encoding/binary"
	"time"

	"golang.org/x/sys/unix"
)

// Test hooks for unexported pieces that are worth testing on their own.

// WalkForTest runs the descriptor walker over one region of ordinary memory at guest address base.
func WalkForTest(base uint64, mem, desc []byte, size int, head uint16, indirect bool) (in, out [][]byte, err error) {
	t := newMemTable([]region{{MemRegion: MemRegion{GuestAddr: base, Size: uint64(len(mem)), UserAddr: base}, data: mem}})
	return walkChain(t, desc, size, head, indirect, nil, nil)
}

// CheckMessageForTest validates framing like the connection loop does.
func CheckMessageForTest(hdr Header, payload []byte, nfds int) (hasReply bool, err error) {
	r, err := checkMessage(hdr, payload, nfds)
	return r.hasReply, err
}

// NeedEventForTest is vring_need_event.
func NeedEventForTest(event, newIdx, oldIdx uint16) bool { return needEvent(event, newIdx, oldIdx) }

// DrainHarness drives a queue whose rings live in ordinary Go memory, synchronously, so a test
// can measure allocations of the request path (pop, walk, Serve, Complete, notify).
type DrainHarness struct {
	q      *queue
	w      *worker
	mem    []byte
	callFD int
}

// Layout of the harness memory (guest address == offset + harnessBase).
const (
	harnessBase  = 0x10000
	harnessSize  = 8
	harnessDesc  = 0x0000
	harnessAvail = 0x1000
	harnessUsed  = 0x2000
	harnessIn    = 0x4000
	harnessOut   = 0x5000
)

// NewDrainHarness sets up queue 1 of size 8 with a two-descriptor chain at head 0: "ping" in,
// 64 writable bytes out.
func NewDrainHarness(h Handler, eventIdx bool) (*DrainHarness, error) {
	b := NewBackend(Config{}, h)
	mem := make([]byte, 0x8000)
	t := newMemTable([]region{{MemRegion: MemRegion{GuestAddr: harnessBase, Size: uint64(len(mem)), UserAddr: harnessBase}, data: mem}})
	b.mem = t
	q := newQueue(b, 1)
	q.size = harnessSize
	q.addr = VringAddr{Index: 1, Desc: harnessBase + harnessDesc, Avail: harnessBase + harnessAvail, Used: harnessBase + harnessUsed}
	q.addrSet, q.mem, q.eventIdx = true, t, eventIdx
	if err := q.resolveLocked(); err != nil {
		return nil, err
	}
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, err
	}
	q.callFD = fd
	copy(mem[harnessIn:], "ping")
	putDesc(mem[harnessDesc:], harnessBase+harnessIn, 4, descFlagNext, 1)
	putDesc(mem[harnessDesc+16:], harnessBase+harnessOut, 64, descFlagWrite, 0)
	return &DrainHarness{q: q, w: &worker{q: q, gen: q.runGen}, mem: mem, callFD: fd}, nil
}

func putDesc(b []byte, addr uint64, n uint32, flags, next uint16) {
	binary.LittleEndian.PutUint64(b[0:], addr)
	binary.LittleEndian.PutUint32(b[8:], n)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
}

// Step publishes head 0 once more and drains the ring; it returns how many notifications the
// guest received.
func (d *DrainHarness) Step() uint64 {
	avail := d.mem[harnessAvail:]
	idx := binary.LittleEndian.Uint16(avail[2:])
	binary.LittleEndian.PutUint16(avail[4+2*(int(idx)%harnessSize):], 0)
	binary.LittleEndian.PutUint16(avail[2:], idx+1)
	var dr drainer
	d.w.drain(&dr)
	var buf [8]byte
	if n, _ := unix.Read(d.callFD, buf[:]); n == 8 {
		return binary.NativeEndian.Uint64(buf[:])
	}
	return 0
}

// Out returns the harness's writable buffer and the last used element's length.
func (d *DrainHarness) Out() ([]byte, uint32) {
	used := d.mem[harnessUsed:]
	idx := binary.LittleEndian.Uint16(used[2:])
	slot := int(idx-1) % harnessSize
	return d.mem[harnessOut : harnessOut+64], binary.LittleEndian.Uint32(used[4+8*slot+4:])
}

// Close releases the harness eventfd.
func (d *DrainHarness) Close() { unix.Close(d.callFD) }

// AdaptPollForTest runs the poll-window rule on a worker allowed to poll up to max, starting from
// window, after an idle period, and returns the next window.
func AdaptPollForTest(max, window, idle time.Duration) time.Duration {
	w := &worker{pollMax: max, pollWindow: window}
	w.adaptPoll(idle)
	return w.pollWindow
}

// SetTransferIdleForTest shortens how long a device state transfer may stall; the returned
// function restores it.
func SetTransferIdleForTest(d time.Duration) (restore func()) {
	old := transferIdle.Swap(int64(d))
	return func() { transferIdle.Store(old) }
}

// LogForTest turns dirty logging on for the harness, into a log in ordinary memory that covers
// its guest memory, with the used ring logged at its guest address. It returns the log's words.
func (d *DrainHarness) LogForTest() []uint64 {
	words := make([]uint64, (harnessBase+len(d.mem))/LogPage/64+1)
	l := &dirtyLog{words: words, pages: uint64(len(words)) * 64, b: d.q.b}
	d.q.addr.Flags, d.q.addr.Log = VringFlagLog, harnessBase+harnessUsed
	d.q.b.logAll, d.q.b.log = true, l
	d.q.addrSet = true
	d.q.setLog(l)
	return words
}
