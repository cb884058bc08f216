package vhost

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Dirty logging (vhost-user.rst, "Migration"). While the front-end migrates the guest it acks
// VHOST_F_LOG_ALL, and the back-end marks every page of guest memory it writes in a bitmap the
// front-end shares through SET_LOG_BASE: bit page%8 of byte page/8, page = guest physical
// address / 4 KiB, set atomically (the front-end clears bits while the back-end sets them).
//
// What the back-end writes into guest memory, and where it is marked:
//   - the device-writable buffers of a chain, as far as the handler says it wrote (Complete's
//     count, which includes what the kernel read straight into guest memory): at completion,
//     before the used element that hands them back is published (retireLocked);
//   - the used ring (element, used->idx, avail_event) at the ring's log address, when the ring
//     was set up with VHOST_VRING_F_LOG (pushUsedLocked, armKick).
//
// Each page is marked after it is written, so a front-end that clears the bit and copies the page
// in between sees the bit again at its next pass. GET_VRING_BASE waits for in-flight requests,
// so everything a ring wrote is marked before the front-end's last pass after stopping the rings.
//
// Every mark happens with the queue's lock held, and queues pick up a new log (or none) under
// that lock; so once the control goroutine has installed a log in every queue, no one uses the
// previous one any more and it can be unmapped without reference counting. With logging off a
// completion pays one nil check.

// dirtyLog is one mapped log.
type dirtyLog struct {
	mapping []byte   // the whole mmap, for munmap (nil for the empty log)
	words   []uint64 // the bitmap as aligned words; bit p of the log is bit p%64 of word p/64 (little-endian order)
	pages   uint64   // pages the log covers: 8 bits per byte of mmap_size
	b       *Backend // where failures are reported
}

// littleEndian is true on hosts whose uint64 stores byte 0 in its low bits, as the log's
// bit numbering (byte p/8, bit p%8) assumes for a word.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// mapDirtyLog maps size bytes of fd at offset as a log. It takes no ownership of fd.
func mapDirtyLog(fd int, size, offset uint64) (*dirtyLog, error) {
	if size == 0 || size > MaxLogSize {
		return nil, fmt.Errorf("log size %d is not between 1 and %d bytes", size, MaxLogSize)
	}
	if offset%8 != 0 || offset > math.MaxInt64-MaxLogSize {
		return nil, fmt.Errorf("log offset %#x is not a multiple of 8 or too large", offset)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("log fd: %w", err)
	}
	// A page wholly past the end of the file raises SIGBUS when touched.
	if st.Mode&unix.S_IFMT == unix.S_IFREG && uint64(st.Size) < offset+size {
		return nil, fmt.Errorf("log needs %d bytes of its file but the file has %d", offset+size, st.Size)
	}
	page := uint64(unix.Getpagesize())
	start := offset % page
	// Round up to whole words: the last word shares its page with the log's last byte, so it is
	// mapped even when the file ends inside it; bits past the log are never set.
	length := start + (size+7)&^7
	m, err := unix.Mmap(fd, int64(offset-start), int(length), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mapping the %d-byte dirty log: %w", size, err)
	}
	words := unsafe.Slice((*uint64)(unsafe.Pointer(&m[start])), (size+7)/8)
	return &dirtyLog{mapping: m, words: words, pages: size * 8}, nil
}

// unmap releases the mapping; nobody may use l afterwards.
func (l *dirtyLog) unmap() {
	if l != nil && l.mapping != nil {
		unix.Munmap(l.mapping)
		l.mapping, l.words = nil, nil
	}
}

// mark sets the bits of every page in [addr, addr+n). A page beyond the log is reported once and
// makes a state saved later fail (the front-end would miss the write).
func (l *dirtyLog) mark(addr, n uint64, what string) {
	if n == 0 {
		return
	}
	last := addr + n - 1
	if last < addr {
		last = math.MaxUint64
	}
	first, lastPage := addr/LogPage, last/LogPage
	if lastPage >= l.pages {
		l.b.loseDirty(fmt.Errorf("%s at guest address %#x+%#x lies beyond the dirty log, which covers %#x bytes of guest memory",
			what, addr, n, l.pages*LogPage))
		if first >= l.pages {
			return
		}
		lastPage = l.pages - 1
	}
	for w := first / 64; w <= lastPage/64; w++ {
		lo, hi := max(first, w*64)-w*64, min(lastPage, w*64+63)-w*64
		m := (^uint64(0) >> (63 - hi)) &^ (1<<lo - 1)
		if !littleEndian {
			m = bits.ReverseBytes64(m)
		}
		p := &l.words[w]
		if atomic.LoadUint64(p)&m != m { // mostly set already while a migration runs
			atomic.OrUint64(p, m)
		}
	}
}

// markBuffers marks the first written bytes of bufs, which lie in guest memory of t. A buffer
// that is in no region of t (a handler resliced it somewhere else) cannot be logged.
func (l *dirtyLog) markBuffers(t *memTable, bufs [][]byte, written uint32) {
	left := uint64(written)
	for _, b := range bufs {
		if left == 0 {
			return
		}
		n := min(uint64(len(b)), left)
		left -= n
		if n == 0 {
			continue
		}
		gpa, ok := t.guestAddrOf(b)
		if !ok {
			l.b.loseDirty(fmt.Errorf("a %d-byte reply buffer is not in guest memory", len(b)))
			continue
		}
		l.mark(gpa, n, "reply buffer")
	}
}

// guestAddrOf returns the guest physical address of b's first byte, which must lie in one of t's
// regions.
func (t *memTable) guestAddrOf(b []byte) (uint64, bool) {
	if t == nil || len(b) == 0 {
		return 0, false
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	for i := range t.regions {
		r := &t.regions[i]
		if len(r.data) == 0 {
			continue
		}
		start := uintptr(unsafe.Pointer(unsafe.SliceData(r.data)))
		if p >= start && p-start < uintptr(len(r.data)) && uint64(len(b)) <= uint64(len(r.data))-uint64(p-start) {
			return r.GuestAddr + uint64(p-start), true
		}
	}
	return 0, false
}

// logUsedLocked marks n bytes of the used ring written at offset off, at the ring's log address.
func (q *queue) logUsedLocked(off, n uint64) {
	if q.logUsed {
		q.log.mark(q.addr.Log+off, n, "used ring")
	}
}

// setLogBase handles SET_LOG_BASE: map the new log, give it to every queue, unmap the old one.
// Whatever fails, the old log is dropped (the front-end frees it after this reply).
func (b *Backend) setLogBase(m *message) error {
	size := binary.LittleEndian.Uint64(m.payload[0:])
	offset := binary.LittleEndian.Uint64(m.payload[8:])
	l, err := mapDirtyLog(m.fds[0], size, offset)
	old := b.log
	b.log = l // nil on error
	if l != nil {
		l.b = b
	}
	b.installLog()
	old.unmap()
	if err != nil && b.logAll {
		b.loseDirty(fmt.Errorf("SET_LOG_BASE failed while logging: %w", err))
	}
	return err
}

// installLog gives every queue the log it must write to: the mapped one while LOG_ALL is acked,
// an empty one (every mark fails) while LOG_ALL is acked before a log came, none otherwise.
func (b *Backend) installLog() {
	l := b.queueLog()
	for _, q := range b.queues {
		q.setLog(l)
	}
}

// queueLog is the log queues write to now (see installLog).
func (b *Backend) queueLog() *dirtyLog {
	if !b.logAll {
		return nil
	}
	if b.log == nil {
		return &dirtyLog{b: b}
	}
	return b.log
}

// setLog installs l (nil: logging off) under the queue's lock; see dirtyLog.
func (q *queue) setLog(l *dirtyLog) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.log = l
	q.logUsed = l != nil && q.addrSet && q.addr.Flags&VringFlagLog != 0
}

// setLogAll follows VHOST_F_LOG_ALL in SET_FEATURES. Turning it on starts a new migration
// attempt: what went wrong during an earlier one no longer counts.
func (b *Backend) setLogAll(on bool) {
	if on == b.logAll {
		return
	}
	if on {
		b.clearTaint()
	}
	b.logAll = on
	b.installLog()
}

// dropLog unmaps the log and turns logging off (reset, disconnect).
func (b *Backend) dropLog() {
	b.logAll = false
	b.installLog()
	b.log.unmap()
	b.log = nil
}

// setLogFD handles SET_LOG_FD: the eventfd would tell the front-end that the log changed, which
// QEMU does not need (it reads the log when it syncs). It is closed.
func (b *Backend) setLogFD(*message) error { return nil }
