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

// inode is one node the guest knows. While it has an fd, that O_PATH|O_NOFOLLOW fd keeps the host
// inode alive. The fd budget (budget.go) may close the fd of a node the guest still holds; the next
// operation reopens it (reopen.go) from its file handle or its (parent, name) and checks that it is
// still the inode with key.
type inode struct {
	id        uint64
	key       inodeKey
	fileType  uint32       // S_IFMT bits; they never change for an inode
	submount  bool         // a directory on another mount than its parent (announced with AttrSubmount)
	mountRoot bool         // on another mount than its parent: a mount point the guest crossed into
	pseudo    bool         // on a kernel pseudo file system: an empty directory, never opened (pseudofs.go)
	handle    *fileHandle  // set at creation when file handles are in use (filehandles.go), else nil
	mapped    *mappedState // set at creation in the mapped ownership model (mapped.go), else nil
	tab       *inodeTable

	lookups atomic.Uint64 // the guest's lookup count; changed under the table's lock (read or write)
	// pins counts running operations that use the node. Closing the fds takes the node from 0 pins
	// to pinsClosing and back (closeIfUnpinnedLocked), so a pinned node's fd, once opened
	// (FS.openPinned), stays valid until unpin, and a pin taken meanwhile sees a negative count.
	pins      atomic.Int32
	fdOpen    atomic.Bool // fd >= 0: set after fd is written, cleared before it closes (under mu)
	recent    atomic.Bool // used since the clock hand last passed it (second chance, budget.go)
	forgotten atomic.Bool // out of the table: the fd closes when the last pin goes

	mu sync.Mutex // guards the fields below; never held while taking another lock
	// fd is the O_PATH fd, -1 while closed. Written only under mu; pinned users read it without mu
	// after openPinned, which is safe because nobody closes the fd of a pinned node (and fdOpen
	// orders the read after the write).
	fd     int
	parent *inode // a directory that held the node under name when we last saw it; nil for the root
	name   string // NUL-terminated; "" when no name is known (O_TMPFILE)
	// keepOpen: the budget must not close the fd because it could not be reopened: the root, an
	// O_TMPFILE file, a node whose known name our own UNLINK or RENAME removed.
	keepOpen bool
	data     dataSlots   // fds for fh 0 in no-open mode (nodedata.go)
	dataUsed atomic.Bool // data fds used since the last idle sweep

	clockIdx int // position in the budget's clock (guarded by its mutex); -1 when not in it
}

// pinsClosing is added to pins while a closer closes the node's fds: far below any real count.
const pinsClosing = -1 << 30

// unpin ends an operation's use of the node. A pin and unpin inside a closer's window (the count
// negative) close nothing here: forget's own closeUnused takes n.mu after that closer is done.
func (n *inode) unpin() {
	if n.pins.Add(-1) == 0 && n.forgotten.Load() {
		n.tab.closeUnused(n)
	}
}

func (n *inode) tableID() uint64 { return n.id }

func (n *inode) isDir() bool { return n.fileType == unix.S_IFDIR }

// openable reports whether data may be opened from this inode: only regular files and directories.
// Opening a FIFO would block, a device node would reach host devices (CVE-2020-35517). In the
// mapped model a host file standing for a symlink or special file is not opened either.
func (n *inode) openable() bool {
	t := n.guestType()
	return (n.fileType == unix.S_IFREG || n.fileType == unix.S_IFDIR) && (t == unix.S_IFREG || t == unix.S_IFDIR)
}

// inodeTable maps node ids and host keys to nodes. Node ids are never reused (a 64-bit counter),
// so the generation is always 0 and a stale id from the guest can only miss.
type inodeTable struct {
	mu sync.RWMutex // guards byKey, nextID, the lookup counts and every change of byID
	// byID is read without mu (get, on every request): its lookups take no lock and write no
	// shared memory, so requests on one node from several goroutines do not contend here.
	byID   idTable[inode, *inode]
	byKey  map[inodeKey]*inode
	nextID uint64

	fds fdBudget // the open node fds and the clock that closes them

	// evicting is held shared while a node's fds close and exclusively by RMDIR. A close that
	// drops the last reference to an unlinked inode evicts it (ext4 frees its blocks, which can
	// wait for I/O), and meanwhile its dead dentry is still listed under its directory: an rmdir
	// of that directory then spins in shrink_dcache_parent, walking the directory's dentries
	// again and again until the close is done. rm -rf makes exactly that race, FORGETs on the
	// hiprio queue against RMDIRs on the request queue: the spinning was 16% of uvfsd's CPU in it.
	evicting sync.RWMutex
}

func newInodeTable(budget int64) *inodeTable {
	t := &inodeTable{byKey: map[inodeKey]*inode{}, nextID: fuse.RootID + 1}
	t.byID.init()
	t.fds.limit = budget
	return t
}

// addRoot puts the root node (fd owned by the table from now on) into the empty table.
func (t *inodeTable) addRoot(fd int, key inodeKey) *inode {
	root := &inode{id: fuse.RootID, fd: fd, key: key, fileType: unix.S_IFDIR, tab: t, keepOpen: true, clockIdx: -1}
	root.fdOpen.Store(true)
	root.lookups.Store(1)
	t.fds.open.Add(1)
	t.mu.Lock()
	t.byID.put(root)
	t.byKey[root.key] = root
	t.mu.Unlock()
	return root
}

// get returns the node pinned (call unpin when done), or nil for an unknown id. Its fd may be
// closed: FS.node also reopens it.
func (t *inodeTable) get(id uint64) *inode {
	n := t.byID.get(id)
	if n == nil {
		return nil
	}
	n.pins.Add(1)
	// Forgotten between the load and the pin: the guest sent FORGET for a node it still used,
	// which a correct guest does not; answer as for an unknown id.
	if n.forgotten.Load() {
		n.unpin()
		return nil
	}
	return n
}

// lookupLocked is the node for id (t.mu held), or nil.
func (t *inodeTable) lookupLocked(id uint64) *inode { return t.byID.get(id) }

// getByKey is get for a host inode, without counting a lookup.
func (t *inodeTable) getByKey(key inodeKey) *inode {
	t.mu.RLock()
	n := t.byKey[key]
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
	if t.lookupLocked(n.id) != n {
		return false
	}
	n.lookups.Add(1)
	return true
}

// insert adds the new node cand (its fd open and counted by nobody yet) with one lookup. If another
// request inserted the same inode meanwhile, that node gets the lookup and cand's fd is closed.
// The node is returned unpinned; the caller then calls fds.trim.
func (t *inodeTable) insert(cand *inode) *inode {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := t.byKey[cand.key]; n != nil {
		n.lookups.Add(1)
		closeFD(cand.fd)
		return n
	}
	n := cand
	n.id = t.nextID
	n.tab = t
	t.nextID++
	n.lookups.Store(1)
	n.recent.Store(true)
	n.fdOpen.Store(n.fd >= 0)
	t.byID.put(n)
	t.byKey[n.key] = n
	t.fds.open.Add(1)
	t.fds.add(n)
	return n
}

// forget drops nlookup lookups from a node and removes it at zero. The root is never removed.
func (t *inodeTable) forget(id, nlookup uint64) {
	if id == fuse.RootID {
		return
	}
	t.mu.Lock()
	n := t.lookupLocked(id)
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
	t.removeLocked(n)
	t.mu.Unlock()
	t.closeUnused(n)
}

// removeLocked takes n out of the maps and the clock; t.mu is held for writing.
func (t *inodeTable) removeLocked(n *inode) {
	t.byID.remove(n.id)
	if t.byKey[n.key] == n {
		delete(t.byKey, n.key)
	}
	t.fds.remove(n)
	n.forgotten.Store(true)
}

// closeFDsLocked closes the node's data fds and, unless keepOpen applies (and keepKept), its fd;
// n.mu is held and the node is unpinned. It returns how many fds it closed, already taken off the
// budget's count.
func (n *inode) closeFDsLocked(keepKept bool) int64 {
	n.tab.evicting.RLock()
	defer n.tab.evicting.RUnlock()
	closed := n.data.closeLocked()
	if n.fd >= 0 && !(keepKept && n.keepOpen) {
		n.fdOpen.Store(false)
		closeFD(n.fd)
		n.fd = -1
		closed++
	}
	n.tab.fds.open.Add(-closed)
	return closed
}

// closeUnused closes the fd of a forgotten node once no operation uses it. A node that is only a
// parent on the way to reopening another one may be reopened after this; its last unpin closes
// the fd again.
func (t *inodeTable) closeUnused(n *inode) {
	n.mu.Lock()
	n.closeIfUnpinnedLocked(false)
	n.mu.Unlock()
}

// closeIfUnpinnedLocked is closeFDsLocked for a node no operation uses (n.mu held): it claims the
// node from 0 pins, so an operation that pins it meanwhile sees a negative count and waits for
// n.mu before it reads fd (FS.ensureFD). It returns how many fds it closed.
func (n *inode) closeIfUnpinnedLocked(keepKept bool) int64 {
	if !n.pins.CompareAndSwap(0, pinsClosing) {
		return 0
	}
	closed := n.closeFDsLocked(keepKept)
	n.pins.Add(-pinsClosing)
	return closed
}

// dropAllBut removes every node except keep (at DESTROY: the guest forgot everything).
func (t *inodeTable) dropAllBut(keep uint64) {
	t.mu.Lock()
	var drop []*inode
	for n := range t.byID.all() {
		if n.id != keep {
			drop = append(drop, n)
		}
	}
	for _, n := range drop {
		t.removeLocked(n)
	}
	t.mu.Unlock()
	for _, n := range drop {
		t.closeUnused(n)
	}
}

// count is the number of nodes (for tests and logs).
func (t *inodeTable) count() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.byID.len()
}

// insertMigrated adds a node that arrives with a live migration under the id and lookup count the
// guest knows it by (fd open, counted by nobody yet). False if the id or the inode is taken.
func (t *inodeTable) insertMigrated(n *inode, id, lookups uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.lookupLocked(id) != nil || t.byKey[n.key] != nil {
		return false
	}
	n.id, n.tab = id, t
	n.lookups.Store(lookups)
	n.fdOpen.Store(n.fd >= 0)
	t.byID.put(n)
	t.byKey[n.key] = n
	t.nextID = max(t.nextID, id+1)
	t.fds.open.Add(1)
	t.fds.add(n)
	return true
}
