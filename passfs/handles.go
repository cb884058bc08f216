package passfs

import (
	"slices"
	"sync"
	"sync/atomic"
)

// handle is an open file or directory: a real (not O_PATH) fd opened through /proc/self/fd.
type handle struct {
	id  uint64 // the fh the guest knows it by
	fd  int
	dir *dirStream // non-nil for OPENDIR handles
	// dirPool, if set, takes dir back when the last pin goes.
	dirPool *dirScratchPool
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
		if h.dirPool != nil {
			// h.dir stays set: a stale lookup may still hold the handle, but its tryPin fails
			// before anything reads the stream.
			h.dirPool.put(h.dir)
		}
	}
}

// handleTable maps file handles given to the guest to open fds. Handles are never reused. READ
// and WRITE look their handle up on every request, from every request queue's worker at once: an
// idTable, whose lookups take no lock and write no shared memory.
type handleTable struct {
	mu   sync.Mutex // serializes changes of m
	m    idTable[handle, *handle]
	next atomic.Uint64
}

func newHandleTable() *handleTable {
	t := &handleTable{}
	t.m.init()
	t.next.Store(1)
	return t
}

func (h *handle) tableID() uint64 { return h.id }

func (t *handleTable) add(h *handle) uint64 {
	h.pins.Store(1)
	t.mu.Lock()
	h.id = t.next.Add(1) - 1 // under mu: addAt may move next past a migrated fh meanwhile
	t.m.put(h)
	t.mu.Unlock()
	return h.id
}

// addAt adds a handle under a given fh (a migrated one); false if fh is taken.
func (t *handleTable) addAt(fh uint64, h *handle) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m.get(fh) != nil {
		return false
	}
	h.pins.Store(1)
	h.id = fh
	t.m.put(h)
	// New handles must never get this fh, whatever next the migration state carried.
	if t.next.Load() <= fh {
		t.next.Store(fh + 1)
	}
	return true
}

// get returns the handle pinned (call unpin when done), or nil for an unknown fh. A handle that a
// RELEASE removed between the lookup and the pin is unknown too.
func (t *handleTable) get(fh uint64) *handle {
	h := t.m.get(fh)
	if h == nil || !h.tryPin() {
		return nil
	}
	return h
}

// remove takes a handle out of the table; its fd closes once no operation uses it.
func (t *handleTable) remove(fh uint64) bool {
	t.mu.Lock()
	h := t.m.remove(fh)
	t.mu.Unlock()
	if h == nil {
		return false
	}
	h.unpin()
	return true
}

func (t *handleTable) removeAll() {
	t.mu.Lock()
	all := slices.Collect(t.m.all())
	for _, h := range all {
		t.m.remove(h.id)
	}
	t.mu.Unlock()
	for _, h := range all {
		h.unpin()
	}
}

// pinnedSnapshot returns every handle, pinned (for SaveState; unpin each when done): a request
// still running past a stop timeout may release one meanwhile, and a released directory handle
// gives its stream back to the pool.
func (t *handleTable) pinnedSnapshot() []*handle {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*handle
	for h := range t.m.all() {
		if h.tryPin() {
			out = append(out, h)
		}
	}
	return out
}

func (t *handleTable) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m.len()
}
