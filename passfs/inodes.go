package passfs

import (
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
)

// inodeKey identifies a host inode. The mount id keeps inodes of different mounts of the same
// file system (bind mounts, submounts) apart, as the Rust virtiofsd does.
type inodeKey struct{ dev, ino, mnt uint64 }

func keyOf(st *unix.Statx_t) inodeKey {
	return inodeKey{dev: unix.Mkdev(st.Dev_major, st.Dev_minor), ino: st.Ino, mnt: st.Mnt_id}
}

// inode is one node the guest knows. Its fd is an O_PATH|O_NOFOLLOW fd that keeps the host inode
// alive, so (dev, ino) cannot be reused while the node exists.
type inode struct {
	id       uint64
	fd       int
	key      inodeKey
	fileType uint32 // S_IFMT bits; they never change for an inode
	submount bool   // a directory on another mount than its parent (announced with AttrSubmount)

	lookups atomic.Uint64 // the guest's lookup count; changed under the table's lock (read or write)
	// pins counts users of fd: 1 for the table while the node is in it, plus 1 per running
	// operation. The fd is closed when it drops to 0, so a FORGET racing an operation cannot make
	// the operation use a closed (or reused) fd number.
	pins atomic.Int64
}

func (n *inode) unpin() {
	if n.pins.Add(-1) == 0 {
		closeFD(n.fd)
	}
}

func (n *inode) isDir() bool { return n.fileType == unix.S_IFDIR }

// openable reports whether data may be opened from this inode: only regular files and directories.
// Opening a FIFO would block, a device node would reach host devices (CVE-2020-35517).
func (n *inode) openable() bool { return n.fileType == unix.S_IFREG || n.fileType == unix.S_IFDIR }

// inodeTable maps node ids and host keys to nodes. Node ids are never reused (a 64-bit counter),
// so the generation is always 0 and a stale id from the guest can only miss.
type inodeTable struct {
	mu     sync.RWMutex
	byID   map[uint64]*inode
	byKey  map[inodeKey]*inode
	nextID uint64
}

func newInodeTable() *inodeTable {
	return &inodeTable{byID: map[uint64]*inode{}, byKey: map[inodeKey]*inode{}, nextID: fuse.RootID + 1}
}

// get returns the node pinned (call unpin when done), or nil for an unknown id.
func (t *inodeTable) get(id uint64) *inode {
	t.mu.RLock()
	n := t.byID[id]
	if n != nil {
		n.pins.Add(1)
	}
	t.mu.RUnlock()
	return n
}

// refByKey adds a lookup to the node for key and returns it (not pinned), or nil if there is none.
func (t *inodeTable) refByKey(key inodeKey) *inode {
	t.mu.RLock()
	n := t.byKey[key]
	if n != nil {
		n.lookups.Add(1)
	}
	t.mu.RUnlock()
	return n
}

// ref adds a lookup to a node the caller holds pinned; false if it was forgotten meanwhile.
func (t *inodeTable) ref(n *inode) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.byID[n.id] != n {
		return false
	}
	n.lookups.Add(1)
	return true
}

// insert adds a node for fd with one lookup. If another request inserted the same inode meanwhile,
// that node gets the lookup and fd is closed. The node is returned unpinned.
func (t *inodeTable) insert(fd int, key inodeKey, fileType uint32, submount bool) *inode {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := t.byKey[key]; n != nil {
		n.lookups.Add(1)
		closeFD(fd)
		return n
	}
	n := &inode{id: t.nextID, fd: fd, key: key, fileType: fileType, submount: submount}
	t.nextID++
	n.lookups.Store(1)
	n.pins.Store(1)
	t.byID[n.id] = n
	t.byKey[key] = n
	return n
}

// forget drops nlookup lookups from a node and removes it at zero. The root is never removed.
func (t *inodeTable) forget(id, nlookup uint64) {
	if id == fuse.RootID {
		return
	}
	t.mu.Lock()
	n := t.byID[id]
	if n == nil {
		t.mu.Unlock()
		return
	}
	left := n.lookups.Load()
	if nlookup >= left {
		left = 0
	} else {
		left -= nlookup
	}
	n.lookups.Store(left)
	if left != 0 {
		t.mu.Unlock()
		return
	}
	delete(t.byID, id)
	if t.byKey[n.key] == n {
		delete(t.byKey, n.key)
	}
	t.mu.Unlock()
	n.unpin()
}

// dropAllBut removes every node except keep (at DESTROY: the guest forgot everything).
func (t *inodeTable) dropAllBut(keep uint64) {
	t.mu.Lock()
	var drop []*inode
	for id, n := range t.byID {
		if id != keep {
			drop = append(drop, n)
			delete(t.byID, id)
			if t.byKey[n.key] == n {
				delete(t.byKey, n.key)
			}
		}
	}
	t.mu.Unlock()
	for _, n := range drop {
		n.unpin()
	}
}

// count is the number of nodes (for tests and logs).
func (t *inodeTable) count() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.byID)
}
