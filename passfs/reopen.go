package passfs

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
)

// Reopening nodes whose fd the budget closed, and keeping their (parent, name) current.

// maxReopenDepth bounds the walk up the parents: a path cannot be deeper than PATH_MAX/2
// components, and a cycle (possible after host renames we only partly saw) must end in ESTALE.
const maxReopenDepth = 2048

// openPinned makes sure the node the caller pinned has its fd, reopening it if the budget
// closed it. Afterwards n.fd stays valid until the caller unpins n.
func (fs *FS) openPinned(n *inode) fuse.Errno { return fs.ensureFD(n, 0) }

// ensureFD is openPinned for a node the caller holds pinned (never call it unpinned: the fast path
// relies on that pin to keep closers away).
func (fs *FS) ensureFD(n *inode, depth int) fuse.Errno {
	if !n.recent.Load() {
		n.recent.Store(true)
	}
	// The caller's pin keeps closers away (they start only from 0 pins); a count that is not
	// positive means one is at work, so wait for it under mu.
	if n.pins.Load() > 0 && n.fdOpen.Load() {
		return 0
	}
	n.mu.Lock()
	if n.fd >= 0 {
		n.mu.Unlock()
		return 0
	}
	parent, name := n.parent, n.name
	n.mu.Unlock()
	// No lock is held while reopening: the parent may need reopening too, and concurrent users
	// of n may race us; the loser closes its fd below.
	fd, e := fs.reopen(n, parent, name, depth)
	if e != 0 {
		return e
	}
	n.mu.Lock()
	if n.fd >= 0 {
		n.mu.Unlock()
		closeFD(fd)
		return 0
	}
	n.fd = fd
	n.fdOpen.Store(true)
	n.mu.Unlock()
	fs.inodes.fds.open.Add(1)
	fs.inodes.fds.trim()
	return 0
}

// reopen opens n again, from its file handle if it has one, else from (parent, name), and checks
// that the result is still n's inode: a name that a host process renamed or removed meanwhile
// gives ESTALE, never another file.
func (fs *FS) reopen(n *inode, parent *inode, name string, depth int) (int, fuse.Errno) {
	if n.handle != nil {
		if fd, e := fs.openByHandle(n.handle); e == 0 {
			if fs.sameNode(fd, n) {
				return fd, 0
			}
			closeFD(fd)
		}
		// A handle that fails (e.g. the inode was removed) leaves the name to try.
	}
	if parent == nil || name == "" || depth >= maxReopenDepth {
		return -1, syscall.ESTALE
	}
	parent.pins.Add(1)
	defer parent.unpin()
	if e := fs.ensureFD(parent, depth+1); e != 0 {
		return -1, e
	}
	fd, e := fs.openat(parent.fd, unsafe.StringData(name), pathFlags, 0)
	if e != 0 {
		if e == syscall.ENOENT || e == syscall.ENOTDIR || e == syscall.ELOOP {
			return -1, syscall.ESTALE // renamed or removed on the host
		}
		return -1, e
	}
	if !fs.sameNode(fd, n) {
		closeFD(fd)
		return -1, syscall.ESTALE
	}
	return fd, 0
}

// sameNode reports whether fd refers to n's host inode (same device, inode number and mount) and,
// for a mount root, whether its file system is still of the same kind: device numbers and mount
// ids are reused, so the key of a mount point whose file system went could describe a pseudo
// file system mounted later (pseudofs.go).
func (fs *FS) sameNode(fd int, n *inode) bool {
	var st unix.Statx_t
	if fstatx(fd, &st) != 0 || keyOf(&st) != n.key {
		return false
	}
	if !n.mountRoot {
		return true
	}
	kind, e := fs.pseudoKind(fd, &st)
	return e == 0 && (kind != "") == n.pseudo
}

// reopenFD opens fd's file anew through /proc/self/fd (a new open file description, with flags and
// O_CLOEXEC), as every data fd of a node and every fd of a handle's file is made.
func (fs *FS) reopenFD(fd, flags int) (int, fuse.Errno) {
	var name fdName
	return fs.openat(fs.procSelfFD, name.of(fd), flags|unix.O_CLOEXEC, 0)
}

// openat is the raw openat for every fd the daemon opens: on EMFILE or ENFILE it closes some
// inode fds and tries once more.
func (fs *FS) openat(dirfd int, name *byte, flags int, mode uint32) (int, fuse.Errno) {
	fd, e := openat(dirfd, name, flags, mode)
	if (e == syscall.EMFILE || e == syscall.ENFILE) && fs.inodes.fds.relieve() {
		fd, e = openat(dirfd, name, flags, mode)
	}
	if e == syscall.EMFILE || e == syscall.ENFILE {
		fs.logf("passfs: out of file descriptors (%v) with %d inode fds open: raise the fd limit (--rlimit-nofile)",
			e, fs.inodes.fds.open.Load())
	}
	return fd, e
}

// noteName records that n was just found as name in parent, so that it reopens from there. It
// allocates only when the name changed, so repeated LOOKUPs of a known node do not.
func (n *inode) noteName(parent *inode, name fuse.CString) {
	if n.id == fuse.RootID || parent == nil || parent == n {
		return
	}
	n.mu.Lock()
	if n.parent != parent || n.name != string(name) {
		n.parent, n.name = parent, string(name)
		n.keepOpen = false // reachable by name again
	}
	n.mu.Unlock()
}

// keepOpenIfNamed is for a node whose name our own UNLINK or RENAME just removed: if that was the
// name it would reopen from, its fd must stay open until the guest forgets it (an unlinked file the
// guest still uses). The guest forgets deleted inodes soon, so few fds stay.
func (n *inode) keepOpenIfNamed(parent *inode, name fuse.CString) {
	n.mu.Lock()
	if n.parent == parent && n.name == string(name) {
		n.keepOpen = true
	}
	n.mu.Unlock()
}

// knownNodeAt returns the pinned node the guest knows as name in dir, with its fd open, or nil.
// UNLINK and RENAME use it before they change names, so that the node's fd is open while its
// name changes and its new place can be recorded.
func (fs *FS) knownNodeAt(dir *inode, name fuse.CString) *inode {
	var st unix.Statx_t
	if statx(dir.fd, name.Ptr(), unix.AT_SYMLINK_NOFOLLOW|unix.AT_NO_AUTOMOUNT, &st) != 0 {
		return nil
	}
	n := fs.inodes.getByKey(keyOf(&st))
	if n == nil {
		return nil
	}
	if fs.openPinned(n) != 0 {
		n.unpin()
		return nil
	}
	return n
}
