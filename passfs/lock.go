package passfs

import (
	"math"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
)

// POSIX locks are taken as open file description (OFD) locks on the handle's fd: owned by the
// handle rather than by the daemon process, so locks of different guest opens conflict as they
// would locally, and closing the handle drops them. flock() locks use flock(2) on the handle.

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
	if err := unix.FcntlFlock(uintptr(h.fd), unix.F_OFD_GETLK, &fl); err != nil {
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
	cmd := unix.F_OFD_SETLK
	if wait {
		cmd = unix.F_OFD_SETLKW
	}
	for {
		err := unix.FcntlFlock(uintptr(h.fd), cmd, &fl)
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
