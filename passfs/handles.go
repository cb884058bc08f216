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

// handleTable maps file handles given to the guest to open fds. Handles are never reused. Like
// inodeTable.byID it is a sync.Map: READ and WRITE look their handle up on every request, from
// every request queue's worker at once, and a Load takes no lock and writes no shared memory.
type handleTable struct {
	m    sync.Map // uint64 -> *handle
	next atomic.Uint64
}

func newHandleTable() *handleTable {
	t := &handleTable{}
	t.next.Store(1)
	return t
}

func (t *handleTable) add(h *handle) uint64 {
	h.pins.Store(1)
	id := t.next.Add(1) - 1
	t.m.Store(id, h)
	return id
}

// get returns the handle pinned (call unpin when done), or nil for an unknown fh. A handle that a
// RELEASE removed between the Load and the pin is unknown too.
func (t *handleTable) get(fh uint64) *handle {
	v, ok := t.m.Load(fh)
	if !ok {
		return nil
	}
	h := v.(*handle)
	if !h.tryPin() {
		return nil
	}
	return h
}

// remove takes a handle out of the table; its fd closes once no operation uses it.
func (t *handleTable) remove(fh uint64) bool {
	v, ok := t.m.LoadAndDelete(fh)
	if !ok {
		return false
	}
	v.(*handle).unpin()
	return true
}

func (t *handleTable) removeAll() {
	t.m.Range(func(fh, _ any) bool {
		t.remove(fh.(uint64))
		return true
	})
}

func (t *handleTable) count() int {
	n := 0
	t.m.Range(func(_, _ any) bool { n++; return true })
	return n
}
