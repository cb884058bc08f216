package vhost

import (
	"fmt"
	"math"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// mapping is one mmap of a front-end fd. Several memory tables can share it (ADD_MEM_REG builds a
// new table from the old one), so it is reference counted and unmapped by the last user.
type mapping struct {
	bytes []byte
	refs  atomic.Int64
}

func (m *mapping) acquire() { m.refs.Add(1) }

func (m *mapping) release() {
	if m.refs.Add(-1) == 0 {
		unix.Munmap(m.bytes)
	}
}

// region is one contiguous piece of guest memory, addressable by guest physical address (what
// descriptors hold) and by front-end virtual address (what SET_VRING_ADDR holds).
type region struct {
	MemRegion
	data []byte   // exactly Size bytes
	m    *mapping // nil when the memory is not ours to unmap (tests)
}

// memTable is an immutable set of regions. Requests hold a reference while their buffers point into
// it, so replacing the table never unmaps memory a handler is still writing to.
type memTable struct {
	regions []region
	refs    atomic.Int64 // 1 while current, +1 per in-flight request
}

// newMemTable takes over one reference on every region's mapping.
func newMemTable(regions []region) *memTable {
	t := &memTable{regions: regions}
	t.refs.Store(1)
	return t
}

// acquireN takes n references at once (a drainer's batch).
func (t *memTable) acquireN(n int) { t.refs.Add(int64(n)) }

// release drops one reference; the last one releases the mappings.
func (t *memTable) release() { t.releaseN(1) }

// releaseN drops n references; the last one releases the mappings.
func (t *memTable) releaseN(n int) {
	if t.refs.Add(int64(-n)) != 0 {
		return
	}
	for i := range t.regions {
		if m := t.regions[i].m; m != nil {
			m.release()
		}
	}
}

// guest returns n bytes of guest memory at guest physical address addr, if they lie inside one
// region. The slice's capacity is clipped so appends cannot reach neighbouring memory.
func (t *memTable) guest(addr, n uint64) ([]byte, bool) {
	for i := range t.regions {
		r := &t.regions[i]
		if b, ok := within(r.data, r.GuestAddr, addr, n); ok {
			return b, true
		}
	}
	return nil, false
}

// user is like guest for front-end virtual addresses (ring addresses).
func (t *memTable) user(addr, n uint64) ([]byte, bool) {
	for i := range t.regions {
		r := &t.regions[i]
		if b, ok := within(r.data, r.UserAddr, addr, n); ok {
			return b, true
		}
	}
	return nil, false
}

// within maps [addr, addr+n) into data, which starts at base; written to be overflow-free.
func within(data []byte, base, addr, n uint64) ([]byte, bool) {
	size := uint64(len(data))
	if addr < base || addr-base > size || n > size-(addr-base) {
		return nil, false
	}
	off := addr - base
	return data[off : off+n : off+n], true
}

// mapRegion mmaps a region described by the front-end. It takes no ownership of fd.
func mapRegion(r MemRegion, fd int) (region, error) {
	if r.Size == 0 {
		return region{}, fmt.Errorf("memory region at %#x has size 0", r.GuestAddr)
	}
	if r.GuestAddr+r.Size < r.GuestAddr || r.UserAddr+r.Size < r.UserAddr {
		return region{}, fmt.Errorf("memory region %#x+%#x wraps around the address space", r.GuestAddr, r.Size)
	}
	total := r.MmapOffset + r.Size
	if total < r.Size || total > math.MaxInt {
		return region{}, fmt.Errorf("memory region offset %#x + size %#x is too large", r.MmapOffset, r.Size)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return region{}, fmt.Errorf("memory region fd: %w", err)
	}
	// Touching a mapping beyond the end of a file raises SIGBUS, so refuse it up front.
	if st.Mode&unix.S_IFMT == unix.S_IFREG && uint64(st.Size) < total {
		return region{}, fmt.Errorf("memory region needs %d bytes of its file but the file has %d", total, st.Size)
	}
	b, err := unix.Mmap(fd, 0, int(total), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return region{}, fmt.Errorf("mapping %d bytes of guest memory: %w (is the QEMU memory backend share=on?)", total, err)
	}
	m := &mapping{bytes: b}
	m.refs.Store(1)
	return region{MemRegion: r, data: b[r.MmapOffset:total:total], m: m}, nil
}

// overlaps reports whether a shares guest or user addresses with any region in rs.
func overlaps(rs []region, a MemRegion) bool {
	for _, r := range rs {
		if a.GuestAddr < r.GuestAddr+r.Size && r.GuestAddr < a.GuestAddr+a.Size {
			return true
		}
		if a.UserAddr < r.UserAddr+r.Size && r.UserAddr < a.UserAddr+a.Size {
			return true
		}
	}
	return false
}

// mapRegions maps a whole SET_MEM_TABLE; on error nothing stays mapped.
func mapRegions(descs []MemRegion, fds []int) ([]region, error) {
	var out []region
	fail := func(err error) ([]region, error) {
		for _, r := range out {
			r.m.release()
		}
		return nil, err
	}
	for i, d := range descs {
		if overlaps(out, d) {
			return fail(fmt.Errorf("memory region %d (%#x+%#x) overlaps another region", i, d.GuestAddr, d.Size))
		}
		r, err := mapRegion(d, fds[i])
		if err != nil {
			return fail(err)
		}
		out = append(out, r)
	}
	return out, nil
}
