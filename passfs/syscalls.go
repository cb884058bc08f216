package passfs

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
)

// Raw syscall wrappers that take NUL-terminated names as *byte, so that hot paths (LOOKUP,
// GETATTR, READ, WRITE) make no heap allocation converting Go strings. Each returns an Errno
// (0 on success) rather than an error interface, which would allocate.

// emptyPath is "" for the AT_EMPTY_PATH variants.
var emptyPath = [1]byte{0}

// dotPath is "." (the directory itself, for O_TMPFILE).
var dotPath = [2]byte{'.', 0}

// O_PATH fds for inodes: never follow a final symlink, never leak into children.
const pathFlags = unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC

// statxMask is what every attribute reply needs, plus the mount id for inode keys and submounts.
const statxMask = unix.STATX_BASIC_STATS | unix.STATX_MNT_ID

func ptr(b *byte) uintptr { return uintptr(unsafe.Pointer(b)) }

func openat(dirfd int, name *byte, flags int, mode uint32) (int, fuse.Errno) {
	r, _, e := unix.Syscall6(unix.SYS_OPENAT, uintptr(dirfd), ptr(name), uintptr(flags), uintptr(mode), 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(r), 0
}

func statx(dirfd int, name *byte, flags int, st *unix.Statx_t) fuse.Errno {
	return statxMasked(dirfd, name, flags, statxMask, st)
}

// statxMasked is statx for the fields in mask.
func statxMasked(dirfd int, name *byte, flags int, mask uint32, st *unix.Statx_t) fuse.Errno {
	_, _, e := unix.Syscall6(unix.SYS_STATX, uintptr(dirfd), ptr(name), uintptr(flags|unix.AT_STATX_SYNC_AS_STAT),
		uintptr(mask), uintptr(unsafe.Pointer(st)), 0)
	return e
}

// fstatx stats the file an fd (O_PATH or not) refers to.
func fstatx(fd int, st *unix.Statx_t) fuse.Errno {
	return statx(fd, &emptyPath[0], unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, st)
}

func closeFD(fd int) {
	if fd >= 0 {
		unix.Syscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
	}
}

func iovecsPtr(iov []unix.Iovec) uintptr { return uintptr(unsafe.Pointer(&iov[0])) }

// vectorIO is preadv or pwritev (nr). On 64-bit Linux the offset is passed whole in pos_l
// (pos_h is ignored).
func vectorIO(nr uintptr, fd int, iov []unix.Iovec, off int64) (int, fuse.Errno) {
	r, _, e := unix.Syscall6(nr, uintptr(fd), iovecsPtr(iov), uintptr(len(iov)), uintptr(off), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), 0
}

// errnoOf turns an error from x/sys into an Errno; anything unexpected becomes EIO.
func errnoOf(err error) fuse.Errno {
	if err == nil {
		return 0
	}
	if e, ok := err.(syscall.Errno); ok {
		return e
	}
	return syscall.EIO
}

// fdName formats an fd number as a NUL-terminated decimal name, for openat(ProcSelfFD, name), in a
// fixed array so that it stays on the stack.
type fdName [12]byte

func (b *fdName) of(fd int) *byte {
	var tmp [11]byte
	i := len(tmp)
	u := uint(fd)
	for {
		i--
		tmp[i] = byte('0' + u%10)
		u /= 10
		if u == 0 {
			break
		}
	}
	n := copy(b[:], tmp[i:])
	b[n] = 0
	return &b[0]
}
