package passfs

import (
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
)

// No-open mode (FUSE_NO_OPEN_SUPPORT): the daemon answers the guest's first OPEN of a regular file
// with ENOSYS, and from then on the guest opens and closes files without asking: no OPEN, no
// RELEASE, two round trips fewer per open(2)/close(2) pair (close is synchronous on virtio-fs). Its
// READ and WRITE then carry fh 0 and the node id, and the daemon keeps data fds on the node: one
// for reading (O_RDONLY), one for writing (O_WRONLY), opened on first use. CREATE also answers
// fh 0 and leaves its fd on the node, because a 6.1 guest sends no RELEASE for any file once it
// knows OPEN is not implemented.
//
// The data fds count against the fd budget like node fds and close with them. They also close
// once the guest has not used them for a while (dataIdle): a guest that read every file of a big
// tree would otherwise hold an fd per file it ever read, where RELEASE closed each one, which
// pushes node fds out of the budget; and an open write fd makes a host exec of the file fail with
// ETXTBSY, so it must not outlive the guest's writing by much. Reopening one costs an openat.

// dataIdle is how long a node's data fds stay open unused (between one and two of these).
const dataIdle = time.Second

// dataSlots are a node's fds for fh 0; changed under the node's mu, read without it. Each non-nil
// slot holds one pin on its handle, so an operation that pinned the handle keeps the fd open after
// the slot closes.
type dataSlots struct {
	read, write atomic.Pointer[handle]
}

func (d *dataSlots) slot(write bool) *atomic.Pointer[handle] {
	if write {
		return &d.write
	}
	return &d.read
}

// closeLocked empties both slots (n.mu held) and returns how many fds it let go.
func (d *dataSlots) closeLocked() int64 {
	closed := int64(0)
	for _, s := range []*atomic.Pointer[handle]{&d.read, &d.write} {
		if h := s.Swap(nil); h != nil {
			h.unpin()
			closed++
		}
	}
	return closed
}

// fileHandle returns the pinned handle for a request on a regular file: the open handle fh, or in
// no-open mode for fh 0 the node's data fd (write picks the write fd).
func (fs *FS) fileHandle(nodeID, fh uint64, write bool) (*handle, fuse.Errno) {
	if fh != 0 || !fs.noOpen.Load() {
		return fs.handle(fh)
	}
	n, e := fs.node(nodeID)
	if e != 0 {
		return nil, e
	}
	defer n.unpin()
	if n.fileType != unix.S_IFREG || n.guestType() != unix.S_IFREG {
		return nil, syscall.EBADF // a FIFO or device would block or reach host devices
	}
	return fs.nodeData(n, write)
}

// nodeData returns the pinned read or write fd of the pinned regular file n, opening it if needed.
func (fs *FS) nodeData(n *inode, write bool) (*handle, fuse.Errno) {
	if !n.dataUsed.Load() {
		n.dataUsed.Store(true)
	}
	// A handle whose last pin went (its slot closed meanwhile) cannot be pinned again: open anew.
	if h := n.data.slot(write).Load(); h != nil && h.tryPin() {
		return h, 0
	}
	// Opened without the lock (it may block); a concurrent opener's fd wins and ours is closed.
	flags := unix.O_RDONLY
	if write {
		flags = unix.O_WRONLY
	}
	fd, e := fs.openNode(n, flags)
	if e != 0 {
		return nil, e
	}
	return fs.installData(n, &handle{fd: fd}, !write, write), 0
}

// installData puts the new handle h into n's empty read and/or write slot and returns it pinned
// for the caller. A slot that is taken keeps its handle; if no slot wanted h, its fd is closed and
// the handle of the requested slot (read unless only write) is returned instead.
func (fs *FS) installData(n *inode, h *handle, read, write bool) *handle {
	h.pins.Store(1) // the caller's
	n.mu.Lock()
	installed := int64(0)
	if read && n.data.read.Load() == nil {
		h.pins.Add(1)
		n.data.read.Store(h)
		installed++
	}
	if write && n.data.write.Load() == nil {
		h.pins.Add(1)
		n.data.write.Store(h)
		installed++
	}
	var got *handle
	if installed == 0 {
		got = n.data.slot(!read).Load()
		got.pins.Add(1) // the slot's pin keeps it above 0 while n.mu is held
	}
	n.mu.Unlock()
	if installed == 0 {
		closeFD(h.fd)
		return got
	}
	fs.inodes.fds.open.Add(installed)
	fs.dataNodes.watch(fs, n)
	fs.inodes.fds.trim()
	return h
}

// sharedFDFlags are open flags that must not reach a data fd every open of the file shares: the
// guest computes append offsets itself and sends FSYNC for O_SYNC files.
const sharedFDFlags = unix.O_APPEND | unix.O_DIRECT | unix.O_SYNC | unix.O_DSYNC

// createFlags are dataFlags for CREATE and TMPFILE, whose fd becomes shared in no-open mode.
func (fs *FS) createFlags(guest uint32) (int, fuse.Errno) {
	f, e := fs.dataFlags(guest)
	if fs.noOpen.Load() {
		f &^= sharedFDFlags
	}
	return f, e
}

// dataAccess is which slots an fd opened with these flags may serve.
func dataAccess(flags int) (read, write bool) {
	switch flags & unix.O_ACCMODE {
	case unix.O_RDONLY:
		return true, false
	case unix.O_WRONLY:
		return false, true
	default:
		return true, true
	}
}

// adoptCreated keeps the fd that CREATE or TMPFILE opened on the new node (pinned by the caller
// or just inserted) for fh 0, or closes it if the node already has data fds.
func (fs *FS) adoptCreated(nodeID uint64, fd, flags int) {
	n := fs.inodes.get(nodeID)
	if n == nil {
		closeFD(fd)
		return
	}
	defer n.unpin()
	read, write := dataAccess(flags)
	fs.installData(n, &handle{fd: fd}, read, write).unpin()
}

// dataNodeSet closes the data fds the guest stopped using: every dataIdle, a node whose fds were
// not used since the last sweep loses them.
type dataNodeSet struct {
	mu      sync.Mutex
	nodes   map[*inode]struct{}
	started bool
	stop    chan struct{}
}

// watch adds n (which just got a data fd) and starts the sweeper on first use.
func (w *dataNodeSet) watch(fs *FS, n *inode) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.nodes == nil {
		w.nodes = map[*inode]struct{}{}
	}
	w.nodes[n] = struct{}{}
	if !w.started {
		w.started = true
		w.stop = make(chan struct{})
		go w.run(fs, w.stop)
	}
}

func (w *dataNodeSet) run(fs *FS, stop chan struct{}) {
	t := time.NewTicker(dataIdle)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			w.sweep(fs)
		}
	}
}

// sweep closes the data fds of nodes not used since the last sweep. An operation that pinned one
// of those handles keeps its fd open until it is done.
func (w *dataNodeSet) sweep(fs *FS) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for n := range w.nodes {
		if n.dataUsed.Swap(false) {
			continue
		}
		n.mu.Lock()
		closed := n.data.closeLocked()
		n.mu.Unlock()
		fs.inodes.fds.open.Add(-closed)
		delete(w.nodes, n)
	}
}

func (w *dataNodeSet) close() {
	w.mu.Lock()
	if w.started {
		close(w.stop)
		w.started = false
	}
	w.mu.Unlock()
}
