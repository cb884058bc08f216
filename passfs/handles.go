package passfs

import (
	"sync"
	"sync/atomic"
)

// handle is an open file or directory: a real (not O_PATH) fd opened through /proc/self/fd.
type handle struct {
	fd  int
	dir *dirStream // non-nil for OPENDIR handles
	// pins works as for inodes: 1 for the table, 1 per running operation; the fd closes at 0.
	pins atomic.Int64
}

// tryPin pins a handle found without a lock, unless its last pin is gone (its fd closed or closing).
func (h *handle) tryPin() bool {
	for p := h.pins.Load(); p > 0; p = h.pins.Load() {
		if h.pins.CompareAndSwap(p, p+1) {
			return true
		}
	}
	return false
}

func (h *handle) unpin() {
	if h.pins.Add(-1) == 0 {
		closeFD(h.fd)
	}
}

// handleTable maps file handles given to the guest to open fds. Handles are never reused.
type handleTable struct {
	mu   sync.RWMutex
	m    map[uint64]*handle
	next uint64
}

func newHandleTable() *handleTable { return &handleTable{m: map[uint64]*handle{}, next: 1} }

func (t *handleTable) add(h *handle) uint64 {
	h.pins.Store(1)
	t.mu.Lock()
	id := t.next
	t.next++
	t.m[id] = h
	t.mu.Unlock()
	return id
}

// get returns the handle pinned (call unpin when done), or nil for an unknown fh.
func (t *handleTable) get(fh uint64) *handle {
	t.mu.RLock()
	h := t.m[fh]
	if h != nil {
		h.pins.Add(1)
	}
	t.mu.RUnlock()
	return h
}

// remove takes a handle out of the table; its fd closes once no operation uses it.
func (t *handleTable) remove(fh uint64) bool {
	t.mu.Lock()
	h := t.m[fh]
	delete(t.m, fh)
	t.mu.Unlock()
	if h == nil {
		return false
	}
	h.unpin()
	return true
}

func (t *handleTable) removeAll() {
	t.mu.Lock()
	all := t.m
	t.m = map[uint64]*handle{}
	t.mu.Unlock()
	for _, h := range all {
		h.unpin()
	}
}

func (t *handleTable) count() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.m)
}
