package passfs

import (
	"math"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
)

// POSIX locks belong to a lock owner (a guest process's files) and a file: closing any of the
// owner's fds to the file drops all of them (the guest sends FLUSH with the owner). passfs takes
// them as open file description (OFD) locks on an fd of their own per (node, owner), like the C
// virtiofsd: so different owners conflict even through one shared handle (after fork), one owner's
// locks do not conflict across its handles, and FLUSH drops an owner's locks by closing its fd.
// flock() locks belong to an open file and use flock(2) on the handle.

// maxLockOwners bounds the lock fds: the owner is the guest's number, so it could ask for an fd per
// number.
const maxLockOwners = 4096

type lockKey struct{ node, owner uint64 }

// lockFD is one owner's fd to one file. pins: 1 for the table, 1 per running lock request.
type lockFD struct {
	fd   int
	pins int
}

// lockTable holds the lock fds.
type lockTable struct {
	mu  sync.Mutex
	fds map[lockKey]*lockFD
}

// get returns the owner's lock fd for the node, pinned, opening it from the handle's fd if it has
// none yet (create false: only an existing one, else nil).
func (t *lockTable) get(fs *FS, key lockKey, h *handle, create bool) (*lockFD, fuse.Errno) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l := t.fds[key]; l != nil {
		l.pins++
		return l, 0
	}
	if !create {
		return nil, 0
	}
	if len(t.fds) >= maxLockOwners {
		return nil, syscall.ENOLCK
	}
	if h.fd < 0 {
		return nil, syscall.EBADF // a pseudo directory's handle (pseudofs.go) has no fd to reopen
	}
	// Read-write, so that one fd serves both lock types; a file only readable gets the
	// handle's own access mode.
	fd, e := fs.reopenFD(h.fd, unix.O_RDWR)
	if e != 0 {
		flags, err := unix.FcntlInt(uintptr(h.fd), unix.F_GETFL, 0)
		if err != nil {
			return nil, errnoOf(err)
		}
		if fd, e = fs.reopenFD(h.fd, flags&unix.O_ACCMODE); e != 0 {
			return nil, e
		}
	}
	if t.fds == nil {
		t.fds = map[lockKey]*lockFD{}
	}
	l := &lockFD{fd: fd, pins: 2}
	t.fds[key] = l
	return l, 0
}

func (t *lockTable) unpinLocked(l *lockFD) {
	if l.pins--; l.pins == 0 {
		unix.Close(l.fd)
	}
}

func (t *lockTable) unpin(l *lockFD) {
	t.mu.Lock()
	t.unpinLocked(l)
	t.mu.Unlock()
}

// drop closes the owner's lock fd for the node (once no request uses it), which releases its
// locks.
func (t *lockTable) drop(key lockKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l := t.fds[key]; l != nil {
		delete(t.fds, key)
		t.unpinLocked(l)
	}
}

// dropAll drops every owner's locks (DESTROY, Close).
func (t *lockTable) dropAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for key, l := range t.fds {
		delete(t.fds, key)
		t.unpinLocked(l)
	}
}

func (t *lockTable) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.fds)
}

// toFlock converts a FUSE lock range [Start, End] to a struct flock.
func toFlock(l *fuse.FileLock) (unix.Flock_t, fuse.Errno) {
	var fl unix.Flock_t
	switch l.Type {
	case unix.F_RDLCK, unix.F_WRLCK, unix.F_UNLCK:
	default:
		return fl, syscall.EINVAL
	}
	if l.Start > math.MaxInt64 || l.End < l.Start {
		return fl, syscall.EINVAL
	}
	fl.Type = int16(l.Type)
	fl.Whence = unix.SEEK_SET
	fl.Start = int64(l.Start)
	if l.End < math.MaxInt64 {
		fl.Len = int64(l.End - l.Start + 1)
	} // else Len 0: to the end of the file (OFFSET_MAX)
	return fl, 0
}

func fromFlock(fl *unix.Flock_t, l *fuse.FileLock) {
	l.Type = uint32(fl.Type)
	l.Start = uint64(fl.Start)
	l.End = math.MaxInt64
	if fl.Len > 0 {
		l.End = uint64(fl.Start + fl.Len - 1)
	}
	l.PID = 0 // an OFD lock has no owning process
}

// Getlk reports a lock that would conflict with in.Lk, or F_UNLCK.
func (fs *FS) Getlk(ctx *fuse.Context, in *fuse.LkIn, out *fuse.LkOut) fuse.Errno {
	h, e := fs.handle(in.Fh)
	if e != 0 {
		return e
	}
	defer h.unpin()
	if in.LkFlags&fuse.LkFlock != 0 {
		return syscall.EINVAL
	}
	fl, e := toFlock(&in.Lk)
	if e != 0 {
		return e
	}
	// The owner's own locks never conflict: ask through its fd. An owner without one holds no
	// locks, and the handle's fd holds none either.
	fd := h.fd
	l, e := fs.locks.get(fs, lockKey{ctx.NodeID, in.Owner}, h, false)
	if e != 0 {
		return e
	}
	if l != nil {
		defer fs.locks.unpin(l)
		fd = l.fd
	}
	if err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_GETLK, &fl); err != nil {
		return errnoOf(err)
	}
	fromFlock(&fl, &out.Lk)
	return 0
}

// Setlk takes or releases a lock; wait (SETLKW) blocks until it is granted.
func (fs *FS) Setlk(ctx *fuse.Context, in *fuse.LkIn, wait bool) fuse.Errno {
	h, e := fs.handle(in.Fh)
	if e != 0 {
		return e
	}
	defer h.unpin()
	if in.LkFlags&fuse.LkFlock != 0 {
		return flockHandle(h.fd, in.Lk.Type, wait)
	}
	fl, e := toFlock(&in.Lk)
	if e != 0 {
		return e
	}
	l, e := fs.locks.get(fs, lockKey{ctx.NodeID, in.Owner}, h, fl.Type != unix.F_UNLCK)
	if e != 0 || l == nil { // no fd: the owner holds nothing to unlock
		return e
	}
	defer fs.locks.unpin(l)
	cmd := unix.F_OFD_SETLK
	if wait {
		cmd = unix.F_OFD_SETLKW
	}
	for {
		err := unix.FcntlFlock(uintptr(l.fd), cmd, &fl)
		if err != syscall.EINTR {
			return errnoOf(err)
		}
	}
}

func flockHandle(fd int, typ uint32, wait bool) fuse.Errno {
	var op int
	switch typ {
	case unix.F_RDLCK:
		op = unix.LOCK_SH
	case unix.F_WRLCK:
		op = unix.LOCK_EX
	case unix.F_UNLCK:
		op = unix.LOCK_UN
	default:
		return syscall.EINVAL
	}
	if !wait {
		op |= unix.LOCK_NB
	}
	for {
		err := unix.Flock(fd, op)
		if err != syscall.EINTR {
			return errnoOf(err)
		}
	}
}
