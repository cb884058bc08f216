package passfs

import (
	"math"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
)

// oTmpfileOnly is __O_TMPFILE without O_DIRECTORY: only TMPFILE may use it.
const oTmpfileOnly = unix.O_TMPFILE &^ unix.O_DIRECTORY

// dataFlags turns the guest's open flags into the flags for the host open, as the Rust virtiofsd
// does, and refuses writing opens on a read-only share.
func (fs *FS) dataFlags(guest uint32) (int, fuse.Errno) {
	f := int(guest)
	f &^= unix.O_CREAT | unix.O_EXCL | unix.O_NOCTTY | unix.O_NOFOLLOW | unix.O_PATH | oTmpfileOnly
	if fs.o.Readonly && (f&unix.O_ACCMODE != unix.O_RDONLY || f&unix.O_TRUNC != 0) {
		return 0, syscall.EROFS
	}
	if !fs.o.PreserveNoatime {
		f &^= unix.O_NOATIME // would fail with EPERM for files the daemon does not own
	}
	if !fs.o.AllowDirectIO {
		f &^= unix.O_DIRECT
	}
	if fs.writeback.Load() {
		// The kernel reads pages to fill its cache even through write-only files, and it does
		// appends itself (it knows the size).
		if f&unix.O_ACCMODE == unix.O_WRONLY {
			f = f&^unix.O_ACCMODE | unix.O_RDWR
		}
		f &^= unix.O_APPEND
	}
	return f | unix.O_CLOEXEC, 0
}

// Open opens a regular file (or directory) node for reading and writing.
func (fs *FS) Open(ctx *fuse.Context, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Errno {
	n, e := fs.node(ctx.NodeID)
	if e != 0 {
		return e
	}
	defer n.unpin()
	if t := n.guestType(); t != unix.S_IFREG && t != unix.S_IFDIR && n.fileType == unix.S_IFREG {
		return syscall.ENXIO // a mapped special file: the guest opens those itself
	}
	if fs.noOpen.Load() && n.fileType == unix.S_IFREG {
		return syscall.ENOSYS // the guest stops sending OPEN (and RELEASE) for files
	}
	flags, e := fs.dataFlags(in.Flags)
	if e != 0 {
		return e
	}
	fd, e := fs.openNode(n, flags)
	if e != 0 {
		return e
	}
	h := &handle{fd: fd}
	if fs.o.KillprivV2 && in.OpenFlags&fuse.OpenKillSuidgid != 0 && flags&unix.O_TRUNC != 0 {
		if e := fs.killSuidgid(n, h); e != 0 {
			closeFD(fd)
			return e
		}
	}
	out.Fh = fs.handles.add(h)
	out.OpenFlags = fs.openFlags(n.isDir())
	return 0
}

// maxIovecs is how many guest buffers one preadv/pwritev takes: the kernel's limit (UIO_MAXIOV),
// which is also the largest descriptor table a ring can have, so a request moves in one call. The
// guest sends one buffer per page: with 16 a 1 MiB WRITE took 16 pwritev calls, and each call
// into a large page-cache folio walks all of the folio's blocks again (0.70x the C virtiofsd's
// 1 MiB WRITE throughput).
const maxIovecs = 1024

// smallIovecs covers the requests with few guest buffers (a 4 KiB READ or WRITE has one or two):
// transfer gives them an array this size, because the compiler zeroes a local array on every
// call, and zeroing maxIovecs entries (16 KiB) was 4% of a 4 KiB READ's CPU.
const smallIovecs = 8

// fillIovecs points iov at up to maxIovecs non-empty buffers from bufs, taking at most limit
// bytes, and returns how many entries it used, their total size and how many buffers it consumed.
func fillIovecs(iov []unix.Iovec, bufs [][]byte, limit int) (n, size, used int) {
	for used < len(bufs) && n < len(iov) && size < limit {
		b := bufs[used]
		used++
		if len(b) > limit-size {
			b = b[:limit-size]
		}
		if len(b) == 0 {
			continue
		}
		iov[n].Base = &b[0]
		iov[n].SetLen(len(b))
		n++
		size += len(b)
	}
	return n, size, used
}

func checkOffset(off uint64) fuse.Errno {
	if off > math.MaxInt64 {
		return syscall.EINVAL
	}
	return 0
}

// transfer moves up to limit bytes between fd at off and the guest buffers bufs, straight from
// and into guest memory, with the iovec array on the stack. It stops early at end of file (or a
// short write); an error after some bytes moved reports those bytes. nr is SYS_PREADV or
// SYS_PWRITEV (a syscall number rather than a function value, which would move iov to the heap).
func transfer(fd int, bufs [][]byte, limit int, off int64, nr uintptr) (int, fuse.Errno) {
	if len(bufs) <= smallIovecs {
		var iov [smallIovecs]unix.Iovec
		return transferWith(iov[:], fd, bufs, limit, off, nr)
	}
	return transferMany(fd, bufs, limit, off, nr)
}

// transferMany is transfer with the full iovec array, in a frame of its own: the compiler zeroes
// an address-taken array of pointers at function entry, so in transfer's frame it would be
// zeroed for small requests too.
//
//go:noinline
func transferMany(fd int, bufs [][]byte, limit int, off int64, nr uintptr) (int, fuse.Errno) {
	var iov [maxIovecs]unix.Iovec
	return transferWith(iov[:], fd, bufs, limit, off, nr)
}

// transferWith is transfer with iov as the iovec array, len(iov) entries per call.
func transferWith(iov []unix.Iovec, fd int, bufs [][]byte, limit int, off int64, nr uintptr) (int, fuse.Errno) {
	total := 0
	for len(bufs) > 0 && total < limit {
		cnt, size, used := fillIovecs(iov, bufs, limit-total)
		bufs = bufs[used:]
		if cnt == 0 {
			continue
		}
		r, e := vectorIO(nr, fd, iov[:cnt], off+int64(total))
		if e != 0 {
			if total > 0 {
				break
			}
			return 0, e
		}
		total += r
		if r < size {
			break
		}
	}
	return total, 0
}

// Read reads at in.Offset straight into guest memory (preadv, no copy), at most in.Size bytes.
func (fs *FS) Read(ctx *fuse.Context, in *fuse.ReadIn, dst [][]byte) (int, fuse.Errno) {
	h, e := fs.fileHandle(ctx.NodeID, in.Fh, false)
	if e != 0 {
		return 0, e
	}
	defer h.unpin()
	if e := checkOffset(in.Offset); e != 0 {
		return 0, e
	}
	return transfer(h.fd, dst, int(in.Size), int64(in.Offset), unix.SYS_PREADV)
}

// Write writes guest memory at in.Offset (pwritev, no copy), at most in.Size bytes.
func (fs *FS) Write(ctx *fuse.Context, in *fuse.WriteIn, src [][]byte) (int, fuse.Errno) {
	if e := fs.readonlyErr(); e != 0 {
		return 0, e
	}
	h, e := fs.fileHandle(ctx.NodeID, in.Fh, true)
	if e != 0 {
		return 0, e
	}
	defer h.unpin()
	if e := checkOffset(in.Offset); e != 0 {
		return 0, e
	}
	if in.WriteFlags&fuse.WriteKillSuidgid != 0 && fs.o.KillprivV2 {
		if e := fs.killSuidgidWrite(ctx.NodeID, h.fd); e != 0 {
			return 0, e
		}
	}
	fs.dropMappedCap(h.fd)
	return transfer(h.fd, src, int(in.Size), int64(in.Offset), unix.SYS_PWRITEV)
}

// killSuidgidWrite clears set-id bits for a WRITE with KILL_SUIDGID to the node through its open
// fd: in the mapped model in the node's attribute.
func (fs *FS) killSuidgidWrite(nodeID uint64, fd int) fuse.Errno {
	if !fs.mapped {
		return fs.killSuidgidFD(fd)
	}
	n, e := fs.node(nodeID)
	if e != 0 {
		return e
	}
	defer n.unpin()
	return fs.killSuidgidMapped(n, nil)
}

// killSuidgidFD clears set-id bits through an open fd (WRITE with KILL_SUIDGID).
func (fs *FS) killSuidgidFD(fd int) fuse.Errno {
	var st unix.Statx_t
	if e := fstatx(fd, &st); e != 0 {
		return e
	}
	if uint32(st.Mode)&unix.S_IFMT != unix.S_IFREG {
		return 0
	}
	mode := uint32(st.Mode) & 07777
	kill := uint32(unix.S_ISUID)
	if mode&unix.S_IXGRP != 0 {
		kill |= unix.S_ISGID
	}
	if mode&kill == 0 {
		return 0
	}
	_, _, e := unix.Syscall(unix.SYS_FCHMOD, uintptr(fd), uintptr(mode&^kill), 0)
	return e
}

// Release closes a file handle (once no running request uses it).
func (fs *FS) Release(ctx *fuse.Context, in *fuse.ReleaseIn) fuse.Errno {
	if in.Fh == 0 && fs.noOpen.Load() {
		return 0 // a file CREATE opened with fh 0: its fds stay on the node
	}
	if in.ReleaseFlags&fuse.ReleaseFlockUnlock != 0 {
		if h := fs.handles.get(in.Fh); h != nil {
			unix.Flock(h.fd, unix.LOCK_UN)
			h.unpin()
		}
	}
	if !fs.handles.remove(in.Fh) {
		return syscall.EBADF
	}
	return 0
}

// Flush drops the closing owner's POSIX locks on the file (lock.go) and closes a duplicate of the
// handle's fd (what close(2) does to a file on the host), as virtiofsd does on every close() in
// the guest.
func (fs *FS) Flush(ctx *fuse.Context, in *fuse.FlushIn) fuse.Errno {
	if fs.noOpen.Load() {
		// Files opened without OPEN lack FOPEN_NOFLUSH; ENOSYS stops FLUSH for good, and without
		// locks there is nothing to release on close.
		return syscall.ENOSYS
	}
	h, e := fs.handle(in.Fh)
	if e != 0 {
		return e
	}
	defer h.unpin()
	fs.locks.drop(lockKey{ctx.NodeID, in.LockOwner})
	r, _, e := unix.Syscall(unix.SYS_DUP, uintptr(h.fd), 0, 0)
	if e != 0 {
		return e
	}
	_, _, e = unix.Syscall(unix.SYS_CLOSE, r, 0, 0)
	return e
}

// Fsync flushes a file to disk (only its data with FSYNC_FDATASYNC).
func (fs *FS) Fsync(ctx *fuse.Context, in *fuse.FsyncIn) fuse.Errno {
	return fs.fsyncHandle(ctx, in)
}

// Fsyncdir is Fsync for a directory handle.
func (fs *FS) Fsyncdir(ctx *fuse.Context, in *fuse.FsyncIn) fuse.Errno {
	if in.Fh == 0 && fs.noOpendir.Load() {
		// No-opendir mode: there is no handle, so sync the directory through a fresh fd.
		n, fd, e := fs.openDir(ctx.NodeID)
		if e != 0 {
			return e
		}
		defer n.unpin()
		if fd < 0 {
			return 0 // a pseudo directory (pseudofs.go): nothing to sync
		}
		defer closeFD(fd)
		_, _, e = unix.Syscall(unix.SYS_FSYNC, uintptr(fd), 0, 0)
		return e
	}
	return fs.fsyncHandle(ctx, in)
}

func (fs *FS) fsyncHandle(ctx *fuse.Context, in *fuse.FsyncIn) fuse.Errno {
	h, e := fs.fileHandle(ctx.NodeID, in.Fh, false)
	if e != 0 {
		return e
	}
	defer h.unpin()
	if h.fd < 0 {
		return 0 // a pseudo directory's handle (pseudofs.go): nothing to sync
	}
	nr := uintptr(unix.SYS_FSYNC)
	if in.FsyncFlags&fuse.FsyncFdatasync != 0 {
		nr = unix.SYS_FDATASYNC
	}
	_, _, e = unix.Syscall(nr, uintptr(h.fd), 0, 0)
	return e
}

// Fallocate allocates or punches space (fallocate(2) modes pass through).
func (fs *FS) Fallocate(ctx *fuse.Context, in *fuse.FallocateIn) fuse.Errno {
	if e := fs.readonlyErr(); e != 0 {
		return e
	}
	h, e := fs.fileHandle(ctx.NodeID, in.Fh, true)
	if e != 0 {
		return e
	}
	defer h.unpin()
	if in.Offset > math.MaxInt64 || in.Length > math.MaxInt64 {
		return syscall.EINVAL
	}
	fs.dropMappedCap(h.fd)
	return errnoOf(unix.Fallocate(h.fd, in.Mode, int64(in.Offset), int64(in.Length)))
}

// dropMappedCap removes a file's security.capability stored under a mapped name (--xattrmap)
// before the file changes: the host kernel drops the attribute on write, truncate and fallocate,
// but not under another name.
func (fs *FS) dropMappedCap(fd int) {
	if fs.capHostName != nil {
		unix.Syscall(unix.SYS_FREMOVEXATTR, uintptr(fd), ptr(&fs.capHostName[0]), 0)
	}
}

// Lseek finds data or holes (SEEK_DATA/SEEK_HOLE); SEEK_SET/CUR/END are answered too.
func (fs *FS) Lseek(ctx *fuse.Context, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Errno {
	h, e := fs.fileHandle(ctx.NodeID, in.Fh, false)
	if e != 0 {
		return e
	}
	defer h.unpin()
	switch in.Whence {
	case unix.SEEK_SET, unix.SEEK_CUR, unix.SEEK_END, unix.SEEK_DATA, unix.SEEK_HOLE:
	default:
		return syscall.EINVAL
	}
	if e := checkOffset(in.Offset); e != 0 {
		return e
	}
	// A private dup would share the offset anyway; lseek on the handle is what virtiofsd does.
	r, _, e := unix.Syscall(unix.SYS_LSEEK, uintptr(h.fd), uintptr(in.Offset), uintptr(in.Whence))
	if e != 0 {
		return e
	}
	out.Offset = uint64(r)
	return 0
}

// maxCopy is the most one COPY_FILE_RANGE may report (fuse_write_out.size is 32 bits).
const maxCopy = math.MaxUint32 &^ 4095

// CopyFileRange copies between two open files on the host, without passing the data through the
// guest.
func (fs *FS) CopyFileRange(ctx *fuse.Context, in *fuse.CopyFileRangeIn, out *fuse.WriteOut) fuse.Errno {
	if e := fs.readonlyErr(); e != 0 {
		return e
	}
	if in.Flags != 0 {
		return syscall.EINVAL
	}
	if in.OffIn > math.MaxInt64 || in.OffOut > math.MaxInt64 {
		return syscall.EINVAL
	}
	src, e := fs.fileHandle(ctx.NodeID, in.FhIn, false)
	if e != 0 {
		return e
	}
	defer src.unpin()
	dst, e := fs.fileHandle(in.NodeIDOut, in.FhOut, true)
	if e != 0 {
		return e
	}
	defer dst.unpin()
	length := min(in.Len, maxCopy)
	fs.dropMappedCap(dst.fd)
	offIn, offOut := int64(in.OffIn), int64(in.OffOut)
	r, _, e := unix.Syscall6(unix.SYS_COPY_FILE_RANGE, uintptr(src.fd), uintptr(unsafe.Pointer(&offIn)),
		uintptr(dst.fd), uintptr(unsafe.Pointer(&offOut)), uintptr(length), 0)
	if e != 0 {
		return e
	}
	out.Size = uint32(r)
	return 0
}
