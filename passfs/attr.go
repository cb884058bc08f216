package passfs

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
)

// Getattr stats the node through its O_PATH fd.
func (fs *FS) Getattr(ctx *fuse.Context, in *fuse.GetattrIn, out *fuse.AttrOut) fuse.Errno {
	n, e := fs.node(ctx.NodeID)
	if e != 0 {
		return e
	}
	defer n.unpin()
	var st unix.Statx_t
	if e := fstatx(n.fd, &st); e != 0 {
		return e
	}
	fs.fillAttrOut(&st, n, out)
	return 0
}

// Statx answers STATX: the basic fields as for GETATTR, and the birth time where the host file
// system keeps one.
func (fs *FS) Statx(ctx *fuse.Context, in *fuse.StatxIn, out *fuse.StatxOut) fuse.Errno {
	n, e := fs.node(ctx.NodeID)
	if e != 0 {
		return e
	}
	defer n.unpin()
	var st unix.Statx_t
	if e := statxMasked(n.fd, &emptyPath[0], unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, statxMask|unix.STATX_BTIME, &st); e != 0 {
		return e
	}
	var a fuse.Attr
	fs.fillAttr(&st, n, &a)
	out.AttrValid = fs.timeout
	x := &out.Stat
	x.Mask = st.Mask & (unix.STATX_BASIC_STATS | unix.STATX_BTIME)
	x.Blksize, x.Nlink, x.UID, x.GID, x.Mode = a.Blksize, a.Nlink, a.UID, a.GID, uint16(a.Mode)
	x.Attributes, x.AttributesMask = st.Attributes, st.Attributes_mask
	x.Ino, x.Size, x.Blocks = a.Ino, a.Size, a.Blocks
	sx := func(t unix.StatxTimestamp) fuse.SxTime { return fuse.SxTime{Sec: t.Sec, Nsec: t.Nsec} }
	x.Atime, x.Btime, x.Ctime, x.Mtime = sx(st.Atime), sx(st.Btime), sx(st.Ctime), sx(st.Mtime)
	x.RdevMajor, x.RdevMinor = st.Rdev_major, st.Rdev_minor
	if n.mapped != nil {
		d := decodeDev(a.Rdev) // the mapped device number
		x.RdevMajor, x.RdevMinor = unix.Major(d), unix.Minor(d)
	}
	x.DevMajor, x.DevMinor = st.Dev_major, st.Dev_minor
	return 0
}

const setattrModifying = fuse.FattrMode | fuse.FattrUID | fuse.FattrGID | fuse.FattrSize |
	fuse.FattrAtime | fuse.FattrMtime | fuse.FattrAtimeNow | fuse.FattrMtimeNow | fuse.FattrKillSuidgid

// Setattr changes mode, owner, size and times, in that order (as the Rust virtiofsd does).
func (fs *FS) Setattr(ctx *fuse.Context, in *fuse.SetattrIn, out *fuse.AttrOut) fuse.Errno {
	n, e := fs.node(ctx.NodeID)
	if e != 0 {
		return e
	}
	defer n.unpin()
	if in.Valid&setattrModifying != 0 {
		if e := fs.readonlyErr(); e != 0 {
			return e
		}
		if n.pseudo {
			return syscall.EPERM // the mount root of a pseudo file system (pseudofs.go)
		}
	}
	var h *handle
	// fh 0 in no-open mode: the node's own paths below do it (a truncate opens for writing
	// only for as long as it takes).
	if in.Valid&fuse.FattrFh != 0 && !(in.Fh == 0 && fs.noOpen.Load()) {
		if h, e = fs.handle(in.Fh); e != 0 {
			return e
		}
		defer h.unpin()
	}
	var name fdName
	if n.mapped != nil && in.Valid&(fuse.FattrMode|fuse.FattrUID|fuse.FattrGID) != 0 {
		if e := fs.setattrMapped(ctx, n, in); e != 0 {
			return e
		}
	} else {
		if in.Valid&fuse.FattrMode != 0 {
			if e := fs.chmod(n, h, &name, in.Mode&07777); e != 0 {
				return e
			}
		}
		if in.Valid&(fuse.FattrUID|fuse.FattrGID) != 0 {
			if e := fs.chown(n, in); e != 0 {
				return e
			}
		}
	}
	if in.Valid&fuse.FattrSize != 0 {
		if e := fs.truncate(n, h, in.Size); e != 0 {
			return e
		}
	}
	if in.Valid&fuse.FattrKillSuidgid != 0 && in.Valid&fuse.FattrMode == 0 {
		if e := fs.killSuidgid(n, h); e != 0 {
			return e
		}
	}
	if in.Valid&(fuse.FattrAtime|fuse.FattrMtime|fuse.FattrAtimeNow|fuse.FattrMtimeNow) != 0 {
		if e := fs.utimes(n, &name, in); e != 0 {
			return e
		}
	}
	var st unix.Statx_t
	if e := fstatx(n.fd, &st); e != 0 {
		return e
	}
	fs.fillAttrOut(&st, n, out)
	return 0
}

func (fs *FS) chmod(n *inode, h *handle, name *fdName, mode uint32) fuse.Errno {
	if h != nil {
		return errnoOf(unix.Fchmod(h.fd, mode))
	}
	if n.fileType == unix.S_IFLNK {
		return syscall.EOPNOTSUPP // Linux has no symlink modes
	}
	// fchmod does not work on O_PATH fds; /proc/self/fd/N reaches the inode itself.
	_, _, e := unix.Syscall6(unix.SYS_FCHMODAT, uintptr(fs.procSelfFD), ptr(name.of(n.fd)), uintptr(mode), 0, 0, 0)
	return e
}

func (fs *FS) chown(n *inode, in *fuse.SetattrIn) fuse.Errno {
	uid, gid := noID, noID
	var err error
	if in.Valid&fuse.FattrUID != 0 {
		if uid, err = fs.uids.GuestToNS(in.UID); err != nil {
			return syscall.EPERM
		}
	}
	if in.Valid&fuse.FattrGID != 0 {
		if gid, err = fs.gids.GuestToNS(in.GID); err != nil {
			return syscall.EPERM
		}
	}
	_, _, e := unix.Syscall6(unix.SYS_FCHOWNAT, uintptr(n.fd), ptr(&emptyPath[0]), uintptr(uid), uintptr(gid),
		unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, 0)
	if e == 0 && fs.capHostName != nil && n.openable() {
		// chown drops security.capability on the host, but not under its mapped name.
		fs.nodeXattr(n, xattrRemove, &fs.capHostName[0], nil, 0)
	}
	return e
}

func (fs *FS) truncate(n *inode, h *handle, size uint64) fuse.Errno {
	if size > 1<<63-1 {
		return syscall.EINVAL
	}
	if h != nil {
		fs.dropMappedCap(h.fd)
		return errnoOf(unix.Ftruncate(h.fd, int64(size)))
	}
	switch n.guestType() {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		return syscall.EISDIR
	default:
		return syscall.EINVAL
	}
	fd, e := fs.reopenFD(n.fd, unix.O_WRONLY)
	if e != 0 {
		return e
	}
	defer closeFD(fd)
	fs.dropMappedCap(fd)
	return errnoOf(unix.Ftruncate(fd, int64(size)))
}

// killSuidgid clears the set-user-id bit and, if the group may execute, the set-group-id bit, as
// the guest kernel asks with KILL_SUIDGID (HANDLE_KILLPRIV_V2) when an unprivileged user changes
// the file.
func (fs *FS) killSuidgid(n *inode, h *handle) fuse.Errno {
	if n.mapped != nil {
		return fs.killSuidgidMapped(n, h)
	}
	return fs.killSuidgidHost(n, h)
}

// killSuidgidHost is killSuidgid on the host file's mode.
func (fs *FS) killSuidgidHost(n *inode, h *handle) fuse.Errno {
	if n.fileType != unix.S_IFREG {
		return 0
	}
	var st unix.Statx_t
	if e := fstatx(n.fd, &st); e != 0 {
		return e
	}
	mode := uint32(st.Mode) & 07777
	kill := uint32(unix.S_ISUID)
	if mode&unix.S_IXGRP != 0 {
		kill |= unix.S_ISGID
	}
	if mode&kill == 0 {
		return 0
	}
	var name fdName
	return fs.chmod(n, h, &name, mode&^kill)
}

func (fs *FS) utimes(n *inode, name *fdName, in *fuse.SetattrIn) fuse.Errno {
	ts := [2]unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
	switch {
	case in.Valid&fuse.FattrAtimeNow != 0:
		ts[0].Nsec = unix.UTIME_NOW
	case in.Valid&fuse.FattrAtime != 0:
		ts[0] = unix.Timespec{Sec: int64(in.Atime), Nsec: int64(in.Atimensec)}
	}
	switch {
	case in.Valid&fuse.FattrMtimeNow != 0:
		ts[1].Nsec = unix.UTIME_NOW
	case in.Valid&fuse.FattrMtime != 0:
		ts[1] = unix.Timespec{Sec: int64(in.Mtime), Nsec: int64(in.Mtimensec)}
	}
	if ts[0].Nsec > 999999999 && ts[0].Nsec != unix.UTIME_NOW && ts[0].Nsec != unix.UTIME_OMIT ||
		ts[1].Nsec > 999999999 && ts[1].Nsec != unix.UTIME_NOW && ts[1].Nsec != unix.UTIME_OMIT {
		return syscall.EINVAL
	}
	// utimensat on an O_PATH fd needs a path; /proc/self/fd/N reaches the inode itself, also for a
	// symlink (the magic link is not followed further).
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fs.procSelfFD), ptr(name.of(n.fd)),
		uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	return e
}

// Access checks the guest caller's permission from the owner and mode, like the Rust virtiofsd:
// the daemon's own credentials say nothing about the guest user's.
func (fs *FS) Access(ctx *fuse.Context, in *fuse.AccessIn) fuse.Errno {
	n, e := fs.node(ctx.NodeID)
	if e != 0 {
		return e
	}
	defer n.unpin()
	var st unix.Statx_t
	if e := fstatx(n.fd, &st); e != 0 {
		return e
	}
	mask := in.Mask & (unix.R_OK | unix.W_OK | unix.X_OK)
	if mask == unix.F_OK {
		return 0
	}
	if mask&unix.W_OK != 0 && fs.o.Readonly {
		return syscall.EROFS
	}
	mode := uint32(st.Mode)
	uid, gid := fs.uids.NSToGuest(st.Uid), fs.gids.NSToGuest(st.Gid)
	if n.mapped != nil {
		if s, ok := fs.mappedView(n, &st); ok {
			mode, uid, gid = s.mode, s.uid, s.gid
		}
	}
	owner := uid == ctx.UID
	group := gid == ctx.GID
	allowed := func(userBit, groupBit, otherBit uint32) bool {
		return owner && mode&userBit != 0 || group && mode&groupBit != 0 || mode&otherBit != 0
	}
	root := ctx.UID == 0
	if mask&unix.R_OK != 0 && !root && !allowed(0400, 0040, 0004) {
		return syscall.EACCES
	}
	if mask&unix.W_OK != 0 && !root && !allowed(0200, 0020, 0002) {
		return syscall.EACCES
	}
	// root may execute only what someone may execute
	if mask&unix.X_OK != 0 && (!root || mode&0111 == 0) && !allowed(0100, 0010, 0001) {
		return syscall.EACCES
	}
	return 0
}

// Readlink reads a symlink's target through its O_PATH fd.
func (fs *FS) Readlink(ctx *fuse.Context, buf []byte) (int, fuse.Errno) {
	n, e := fs.node(ctx.NodeID)
	if e != 0 {
		return 0, e
	}
	defer n.unpin()
	if n.guestType() != unix.S_IFLNK {
		return 0, syscall.EINVAL
	}
	if n.pseudo {
		return 0, syscall.EACCES
	}
	if len(buf) == 0 {
		return 0, syscall.ERANGE
	}
	if n.fileType == unix.S_IFREG {
		return fs.readStandInLink(n, buf)
	}
	r, _, e := unix.Syscall6(unix.SYS_READLINKAT, uintptr(n.fd), ptr(&emptyPath[0]),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), 0
}

// Statfs reports the file system that holds the node.
func (fs *FS) Statfs(ctx *fuse.Context, out *fuse.StatfsOut) fuse.Errno {
	n, e := fs.node(ctx.NodeID)
	if e != 0 {
		return e
	}
	defer n.unpin()
	var st unix.Statfs_t
	if err := unix.Fstatfs(n.fd, &st); err != nil {
		return errnoOf(err)
	}
	out.Blocks, out.Bfree, out.Bavail = st.Blocks, st.Bfree, st.Bavail
	out.Files, out.Ffree = st.Files, st.Ffree
	out.Bsize, out.Namelen, out.Frsize = uint32(st.Bsize), uint32(st.Namelen), uint32(st.Frsize)
	return 0
}

// Syncfs syncs the file system that holds the node (the guest sends one per announced submount).
func (fs *FS) Syncfs(ctx *fuse.Context, in *fuse.SyncfsIn) fuse.Errno {
	n, e := fs.node(ctx.NodeID)
	if e != 0 {
		return e
	}
	defer n.unpin()
	if n.pseudo {
		return 0 // nothing of it is the guest's to sync
	}
	fd, e := fs.openNode(n, unix.O_RDONLY|unix.O_NONBLOCK)
	if e != 0 {
		return e
	}
	defer closeFD(fd)
	_, _, e = unix.Syscall(unix.SYS_SYNCFS, uintptr(fd), 0, 0)
	return e
}

// openNode opens the node's data through /proc/self/fd. Only regular files and directories are
// ever opened: a FIFO would block the daemon and a device node would give access to host devices
// (CVE-2020-35517); like virtiofsd, others get EBADF. Nothing on a pseudo file system is ever
// opened (pseudofs.go): EACCES.
func (fs *FS) openNode(n *inode, flags int) (int, fuse.Errno) {
	if n.pseudo {
		return -1, syscall.EACCES
	}
	if !n.openable() {
		return -1, syscall.EBADF
	}
	// O_NOFOLLOW would refuse the magic link itself; O_CREAT/O_EXCL make no sense on an existing fd.
	return fs.reopenFD(n.fd, flags&^(unix.O_NOFOLLOW|unix.O_CREAT|unix.O_EXCL|unix.O_NOCTTY))
}
