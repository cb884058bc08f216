package vhost

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"unsafe"
)

// Split virtqueue layout (virtio 1.2 section 2.7).
const (
	descSize = 16 // le64 addr, le32 len, le16 flags, le16 next

	descFlagNext     = 1
	descFlagWrite    = 2
	descFlagIndirect = 4

	availFlagNoInterrupt = 1 // VRING_AVAIL_F_NO_INTERRUPT (ignored with EVENT_IDX)
)

// vring holds the host views of one split ring. The ring indices are shared with the guest and
// accessed with atomic 32-bit operations on the aligned word containing them (Go has no 16-bit
// atomics); that gives the acquire/release ordering the virtio memory model needs.
type vring struct {
	size  int    // queue size, a power of two <= 32768
	desc  []byte // size * 16
	avail []byte // flags, idx, ring[size], used_event, padded to a 4-byte word
	used  []byte // flags, idx, ring[size]{id, len}, avail_event, padded to a 4-byte word
}

func availLen(size int) uint64 { return roundUp4(6 + 2*uint64(size)) }
func usedLen(size int) uint64  { return roundUp4(6 + 8*uint64(size)) }
func roundUp4(n uint64) uint64 { return (n + 3) &^ 3 }

// resolveRing finds a ring's three parts in guest memory by front-end virtual address. Each part
// must lie entirely inside one region; avail and used must be 4-byte aligned so that their index
// words can be accessed atomically (Linux and Windows guests always align them further).
func resolveRing(t *memTable, size int, a VringAddr) (vring, error) {
	if t == nil {
		return vring{}, fmt.Errorf("queue %d: no guest memory table yet", a.Index)
	}
	desc, ok := t.user(a.Desc, uint64(size)*descSize)
	if !ok {
		return vring{}, fmt.Errorf("queue %d: descriptor table %#x (%d entries) is outside guest memory", a.Index, a.Desc, size)
	}
	avail, ok := t.user(a.Avail, availLen(size))
	if !ok {
		return vring{}, fmt.Errorf("queue %d: available ring %#x is outside guest memory", a.Index, a.Avail)
	}
	used, ok := t.user(a.Used, usedLen(size))
	if !ok {
		return vring{}, fmt.Errorf("queue %d: used ring %#x is outside guest memory", a.Index, a.Used)
	}
	if !aligned4(avail) || !aligned4(used) {
		return vring{}, fmt.Errorf("queue %d: available ring %#x or used ring %#x is not 4-byte aligned", a.Index, a.Avail, a.Used)
	}
	return vring{size: size, desc: desc, avail: avail, used: used}, nil
}

func aligned4(b []byte) bool { return uintptr(unsafe.Pointer(unsafe.SliceData(b)))%4 == 0 }

// word returns the aligned 32-bit word holding byte offset off of b (b itself is 4-byte aligned
// and its length a multiple of 4, so the word is always inside b).
func word(b []byte, off int) *uint32 {
	return (*uint32)(unsafe.Pointer(&b[off&^3]))
}

// load16 atomically reads the little-endian u16 at offset off (a multiple of 2).
func load16(b []byte, off int) uint16 {
	var tmp [4]byte
	binary.NativeEndian.PutUint32(tmp[:], atomic.LoadUint32(word(b, off)))
	return binary.LittleEndian.Uint16(tmp[off&2:])
}

// availIdx is where the driver will put its next available entry (load-acquire).
func (v *vring) availIdx() uint16 { return load16(v.avail, 2) }

// availFlags returns the driver's avail->flags.
func (v *vring) availFlags() uint16 { return load16(v.avail, 0) }

// usedEvent is the driver's used_event (EVENT_IDX): notify when used idx passes it.
func (v *vring) usedEvent() uint16 { return load16(v.avail, 4+2*v.size) }

// availHead returns the head descriptor index in available slot i (mod size). Plain read: it is
// ordered after the acquire load of availIdx that made it visible.
func (v *vring) availHead(i uint16) uint16 {
	return binary.LittleEndian.Uint16(v.avail[4+2*(int(i)&(v.size-1)):])
}

// usedElemSize is the size of struct virtq_used_elem.
const usedElemSize = 8

// usedElemOffset is where used element slot i (mod size) lies in the used ring.
func usedElemOffset(i uint16, size int) uint64 { return 4 + usedElemSize*uint64(int(i)&(size-1)) }

// availEventOffset is where avail_event lies in the used ring.
func availEventOffset(size int) uint64 { return 4 + usedElemSize*uint64(size) }

// putUsed writes used element slot i (mod size); publishUsed makes it visible.
func (v *vring) putUsed(i uint16, id, length uint32) {
	off := int(usedElemOffset(i, v.size))
	binary.LittleEndian.PutUint32(v.used[off:], id)
	binary.LittleEndian.PutUint32(v.used[off+4:], length)
}

// publishUsed stores used->idx with release semantics. The device owns used->flags, which shares
// the word, so it writes both (flags stay 0: the device never asks the driver not to kick).
func (v *vring) publishUsed(idx uint16) {
	var tmp [4]byte
	binary.LittleEndian.PutUint16(tmp[2:], idx)
	atomic.StoreUint32(word(v.used, 0), binary.NativeEndian.Uint32(tmp[:]))
}

// usedIdx reads back used->idx (the device's own last store, unless the guest scribbled on it).
func (v *vring) usedIdx() uint16 { return load16(v.used, 2) }

// setAvailEvent stores avail_event (EVENT_IDX) as a full barrier. The other half of its word lies
// past the end of the used ring and is not ours, so a compare-and-swap preserves it; a guest that
// keeps rewriting that word only loses the suppression hint.
func (v *vring) setAvailEvent(idx uint16) {
	off := 4 + 8*v.size
	w := word(v.used, off)
	for range 64 {
		old := atomic.LoadUint32(w)
		var tmp [4]byte
		binary.NativeEndian.PutUint32(tmp[:], old)
		binary.LittleEndian.PutUint16(tmp[off&2:], idx)
		if atomic.CompareAndSwapUint32(w, old, binary.NativeEndian.Uint32(tmp[:])) {
			return
		}
	}
}

// needEvent is vring_need_event: notify if event lies in [old, new) modulo 2^16.
func needEvent(event, newIdx, oldIdx uint16) bool {
	return newIdx-event-1 < newIdx-oldIdx
}

// descriptor is one decoded struct virtq_desc.
type descriptor struct {
	addr  uint64
	len   uint32
	flags uint16
	next  uint16
}

// readDesc decodes entry i of a descriptor table; the caller checks i < len(table)/16.
func readDesc(table []byte, i int) descriptor {
	b := table[i*descSize : i*descSize+descSize]
	return descriptor{
		addr:  binary.LittleEndian.Uint64(b[0:]),
		len:   binary.LittleEndian.Uint32(b[8:]),
		flags: binary.LittleEndian.Uint16(b[12:]),
		next:  binary.LittleEndian.Uint16(b[14:]),
	}
}
