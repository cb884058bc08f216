package frontend

import (
	"errors"
	"fmt"
	"sort"
	"sync"

	"golang.org/x/sys/unix"
)

// Where the front-end's single memory region sits. Guest physical and front-end virtual addresses
// differ on purpose, so a back-end that mixes them up fails the tests.
const (
	GuestBase uint64 = 0x1000_0000      // guest physical address of byte 0 of the memfd
	UserBase  uint64 = 0x7f00_0000_0000 // front-end virtual address of byte 0 of the memfd
)

// guestMemory is a memfd shared with the back-end, mapped here too.
type guestMemory struct {
	fd    int
	bytes []byte
}

func newGuestMemory(size int) (*guestMemory, error) {
	fd, err := unix.MemfdCreate("uvfsd-test-guest", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sizing guest memory: %w", err)
	}
	b, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("mapping guest memory: %w", err)
	}
	return &guestMemory{fd: fd, bytes: b}, nil
}

func (m *guestMemory) close() {
	unix.Munmap(m.bytes)
	unix.Close(m.fd)
}

// at returns n bytes at guest physical address gpa (panics on a test bug: out of range).
func (m *guestMemory) at(gpa uint64, n int) []byte {
	off := gpa - GuestBase
	return m.bytes[off : off+uint64(n) : off+uint64(n)]
}

// allocator hands out 16-byte aligned pieces of guest memory (first fit, coalescing frees).
type allocator struct {
	mu   sync.Mutex
	free []span // sorted by start, non-adjacent
	used map[uint64]uint64
}

type span struct{ start, end uint64 }

var errNoMemory = errors.New("front-end guest memory exhausted")

func newAllocator(start, end uint64) *allocator {
	return &allocator{free: []span{{start, end}}, used: map[uint64]uint64{}}
}

func (a *allocator) alloc(n int) (uint64, error) {
	size := (uint64(max(n, 1)) + 15) &^ 15
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, s := range a.free {
		if s.end-s.start < size {
			continue
		}
		a.free[i].start += size
		if a.free[i].start == a.free[i].end {
			a.free = append(a.free[:i], a.free[i+1:]...)
		}
		a.used[s.start] = size
		return s.start, nil
	}
	return 0, errNoMemory
}

func (a *allocator) release(addr uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	size, ok := a.used[addr]
	if !ok {
		return
	}
	delete(a.used, addr)
	a.free = append(a.free, span{addr, addr + size})
	sort.Slice(a.free, func(i, j int) bool { return a.free[i].start < a.free[j].start })
	merged := a.free[:1]
	for _, s := range a.free[1:] {
		last := &merged[len(merged)-1]
		if last.end == s.start {
			last.end = s.end
		} else {
			merged = append(merged, s)
		}
	}
	a.free = merged
}
