package passfs

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
)

// The mapped ownership model (Options.Ownership = OwnershipMapped). Every file the guest makes is a
// plain host file or directory of the daemon's user; its guest owner, group, mode (with the set-id
// bits the host file never gets) and type live in OverrideXattr (override.go):
//
//   - a regular file or directory is itself, with the attribute;
//   - a symlink is a regular file whose data is the target;
//   - a FIFO, socket or device node is an empty regular file; it is never opened for the guest (the
//     guest's kernel opens FIFOs, sockets and devices itself and never asks: a device with no driver
//     in the guest gives ENXIO, as on any file system);
//   - a 0:0 character device, an overlayfs whiteout, stays a real one (the host allows making it
//     without privilege), so overlayfs on the host sees the guest's whiteouts; so does RENAME_WHITEOUT.
//
// Files without the attribute (made on the host, or before the model was turned on) show their host
// attributes as in the passthrough model until the guest changes their owner or mode; host symlinks
// and special files cannot carry a user.* attribute, so they keep their host owner (chown to another
// owner fails with EPERM). Hard links share the attribute, being one inode.
//
// The daemon creates, links and renames as itself: with default_permissions (always on for
// virtio-fs) the guest's kernel checks permissions against the attributes passfs reports, so the
// host kernel's checks as the guest caller would only refuse what the guest allowed. The checks the
// daemon makes itself (ACCESS, the set-id rules of chown, writes and truncation, set-group-id
// directories) use the mapped owner and mode. The guest cannot read, list, set or remove the
// attribute itself.
//
// Each node caches its attribute (mappedState) together with the inode's ctime when it was read:
// every change of an attribute, the mode or the owner on the host changes the ctime, so a reply
// reads the attribute again only after a change (one open, fgetxattr and close), and a guest that
// stats files it already knows costs no more than in the passthrough model. (Before Linux 6.13 the
// ctime moves in clock ticks: a host change in the tick of the daemon's last read shows after the
// next change. The daemon's own changes always show.)

// mappedState is a node's OverrideXattr as last read or written.
type mappedState struct {
	mu    sync.Mutex          // guards ctime, read, has and st
	ctime unix.StatxTimestamp // the inode's ctime from before the attribute was read
	read  bool                // ctime, has and st are set
	has   bool                // the node has a valid attribute, st
	st    overrideStat
	// kind is the guest's file type (S_IFMT) from the last reply, 0 before the first; read without
	// mu by the checks that must never open a special file.
	kind atomic.Uint32
	// change serializes the daemon's own read-modify-write of the attribute.
	change sync.Mutex
}

func (m *mappedState) store(ctime unix.StatxTimestamp, s overrideStat, has bool) {
	m.mu.Lock()
	m.ctime, m.st, m.has, m.read = ctime, s, has, true
	m.mu.Unlock()
	if has {
		m.kind.Store(s.fileType())
	}
}

// cached returns the attribute as last read, without checking that it is current.
func (m *mappedState) cached() (s overrideStat, has, read bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st, m.has, m.read
}

// guestType is the file type the guest sees: the mapped one once a reply said it, else the host's.
func (n *inode) guestType() uint32 {
	if n.mapped != nil {
		if k := n.mapped.kind.Load(); k != 0 {
			return k
		}
	}
	return n.fileType
}

// canHoldOverride reports whether the host file can carry a user.* attribute: only regular files
// and directories can.
func canHoldOverride(hostType uint32) bool {
	return hostType == unix.S_IFREG || hostType == unix.S_IFDIR
}

// mappedView returns n's attribute for st, a statx of n taken just now: the cached one while the
// inode's ctime is unchanged, else read anew. ok is false when n has none (its attributes are the
// host's) or it cannot be read.
func (fs *FS) mappedView(n *inode, st *unix.Statx_t) (overrideStat, bool) {
	m := n.mapped
	m.mu.Lock()
	if m.read && m.ctime == st.Ctime {
		s, has := m.st, m.has
		m.mu.Unlock()
		return s, has
	}
	m.mu.Unlock()
	if !canHoldOverride(n.fileType) || n.pseudo {
		m.store(st.Ctime, overrideStat{}, false)
		return overrideStat{}, false
	}
	s, has, e := fs.readOverride(n)
	if e != 0 {
		return overrideStat{}, false // not cached: tried again on the next reply
	}
	m.store(st.Ctime, s, has)
	return s, has
}

// readOverride reads n's attribute; n is a regular file or directory on the host. The node is
// pinned (and its fd reopened) for the read.
func (fs *FS) readOverride(n *inode) (overrideStat, bool, fuse.Errno) {
	n.pins.Add(1)
	defer n.unpin()
	if e := fs.openPinned(n); e != 0 {
		return overrideStat{}, false, e
	}
	fd, e := fs.reopenFD(n.fd, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY)
	if e != 0 {
		return overrideStat{}, false, e
	}
	var buf [overrideMax]byte
	l, e := fdXattr(xattrGet, fd, &overrideName[0], buf[:], 0)
	closeFD(fd)
	switch e {
	case 0:
	case syscall.ENODATA, syscall.ENOTSUP, syscall.ERANGE:
		return overrideStat{}, false, 0 // none, or too long to be one (read as none)
	default:
		return overrideStat{}, false, e
	}
	s, ok := parseOverride(buf[:l], n.fileType)
	if !ok {
		fs.warnBadOverride(n)
	}
	return s, ok, 0
}

func (fs *FS) warnBadOverride(n *inode) {
	fs.badOverrideWarning.Do(func() {
		n.mu.Lock()
		name := n.name
		n.mu.Unlock()
		fs.logf("passfs: %q has a %s attribute uvfsd cannot read (want UID:GID:MODE[:TYPE]); it shows its host owner and mode until the guest changes them",
			trimNUL(name), OverrideXattr)
	})
}

func trimNUL(s string) string {
	if len(s) > 0 && s[len(s)-1] == 0 {
		return s[:len(s)-1]
	}
	return s
}

// writeOverride sets n's attribute to s (n pinned with its fd open, a regular file or directory on
// the host) and remembers it.
func (fs *FS) writeOverride(n *inode, s *overrideStat) fuse.Errno {
	if !canHoldOverride(n.fileType) || n.pseudo {
		return syscall.EPERM
	}
	fd, e := fs.reopenFD(n.fd, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY)
	if e != 0 {
		return e
	}
	defer closeFD(fd)
	var buf [overrideMax]byte
	if _, e := fdXattr(xattrSet, fd, &overrideName[0], s.format(&buf), 0); e != 0 {
		return e
	}
	var st unix.Statx_t
	if fstatx(fd, &st) == 0 {
		n.mapped.store(st.Ctime, *s, true)
	}
	return 0
}

// applyMapped puts n's mapped attributes into a, which fillAttr filled from st.
func (fs *FS) applyMapped(n *inode, st *unix.Statx_t, a *fuse.Attr) {
	if s, ok := fs.mappedView(n, st); ok {
		a.UID, a.GID, a.Mode = s.uid, s.gid, s.mode
		switch s.fileType() {
		case unix.S_IFBLK, unix.S_IFCHR:
			a.Rdev = encodeDev(s.major, s.minor)
		default:
			a.Rdev = 0
		}
	}
	if k := a.Mode & unix.S_IFMT; n.mapped.kind.Load() != k {
		n.mapped.kind.Store(k)
	}
}

// mappedDirentType is the d_type of name, a regular file in the directory open as dirfd, in the
// mapped model: what its attribute says it stands for. overlayfs and find rely on d_type, so it is
// read rather than left DT_UNKNOWN: from the node when the guest knows the file, else from the
// attribute (DT_UNKNOWN if that fails).
func (fs *FS) mappedDirentType(dirfd int, name *byte) uint32 {
	fd, e := fs.openat(dirfd, name, pathFlags, 0)
	if e != 0 {
		return unix.DT_UNKNOWN
	}
	defer closeFD(fd)
	var st unix.Statx_t
	if fstatx(fd, &st) != 0 {
		return unix.DT_UNKNOWN
	}
	hostType := uint32(st.Mode) & unix.S_IFMT
	if hostType != unix.S_IFREG {
		return hostType >> 12 // replaced since getdents64 saw it
	}
	if n := fs.inodes.getByKey(keyOf(&st)); n != nil {
		k := n.mapped.kind.Load()
		n.unpin()
		if k != 0 {
			return k >> 12
		}
	}
	rfd, e := fs.reopenFD(fd, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY)
	if e != 0 {
		return unix.DT_UNKNOWN
	}
	var buf [overrideMax]byte
	l, e := fdXattr(xattrGet, rfd, &overrideName[0], buf[:], 0)
	closeFD(rfd)
	switch {
	case e == syscall.ENODATA:
		return unix.DT_REG
	case e != 0:
		return unix.DT_UNKNOWN
	}
	if s, ok := parseOverride(buf[:l], unix.S_IFREG); ok {
		return s.fileType() >> 12
	}
	return unix.DT_REG // read as none, as in replies
}

// hostMode is the mode of the host file for a guest file of mode (type and 07777 bits): a regular
// file or directory keeps its permission bits (and a directory its sticky bit), plus what the
// daemon's user needs to reach it without privilege; set-id bits stay in the attribute. A file
// standing for a symlink, FIFO, socket or device is 0644.
func hostMode(mode uint32) uint32 {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return mode&(0o777|unix.S_ISVTX) | 0o700
	case unix.S_IFREG:
		return mode&0o777 | 0o600
	}
	return 0o644
}

// newOverride is the attribute of a file of mode (type and 07777 bits) that the guest caller makes
// in parent: the caller's ids, or for a set-group-id parent its group (and a new directory keeps
// the set-group-id bit), as the kernel gives a new inode. rdev is the guest's device number.
func (fs *FS) newOverride(ctx *fuse.Context, parent *inode, mode, rdev uint32) (overrideStat, fuse.Errno) {
	if _, err := fs.uids.GuestToNS(ctx.UID); err != nil {
		return overrideStat{}, syscall.EPERM
	}
	if _, err := fs.gids.GuestToNS(ctx.GID); err != nil {
		return overrideStat{}, syscall.EPERM
	}
	s := overrideStat{uid: ctx.UID, gid: ctx.GID, mode: mode}
	// The parent's attribute as last read, when it was: a directory's ctime changes with every
	// entry made in it, so checking it would read the attribute again for each new file.
	ps, has, read := parent.mapped.cached()
	if !read || !has {
		var st unix.Statx_t
		if e := fstatx(parent.fd, &st); e != 0 {
			return s, e
		}
		if ps, has = fs.mappedView(parent, &st); !has {
			ps = overrideStat{mode: uint32(st.Mode), gid: fs.gids.NSToGuest(st.Gid)}
		}
	}
	pmode, pgid := ps.mode, ps.gid
	if pmode&unix.S_ISGID != 0 {
		s.gid = pgid
		if s.fileType() == unix.S_IFDIR {
			s.mode |= unix.S_ISGID
		}
	}
	if t := s.fileType(); t == unix.S_IFBLK || t == unix.S_IFCHR {
		d := decodeDev(rdev)
		s.major, s.minor = unix.Major(d), unix.Minor(d)
	}
	return s, 0
}

// setOverrideFD sets the attribute s on an open fd of a new file.
func setOverrideFD(fd int, s *overrideStat) fuse.Errno {
	var buf [overrideMax]byte
	_, e := fdXattr(xattrSet, fd, &overrideName[0], s.format(&buf), 0)
	return e
}

// openMapped creates and opens a regular file for CREATE (name in parent) or TMPFILE (name nil,
// flags with O_TMPFILE) with the guest mode and the caller's attribute, which it returns.
func (fs *FS) openMapped(ctx *fuse.Context, parent *inode, name fuse.CString, flags int, mode uint32) (int, *overrideStat, fuse.Errno) {
	s, e := fs.newOverride(ctx, parent, unix.S_IFREG|mode, 0)
	if e != 0 {
		return -1, nil, e
	}
	path := &dotPath[0]
	if name != nil {
		path = name.Ptr()
	}
	fd, e := fs.openat(parent.fd, path, flags, hostMode(s.mode))
	if e != 0 {
		return -1, nil, e
	}
	if e := setOverrideFD(fd, &s); e != 0 {
		closeFD(fd)
		if name != nil {
			unix.Syscall(unix.SYS_UNLINKAT, uintptr(parent.fd), ptr(name.Ptr()), 0)
		}
		return -1, nil, e
	}
	return fd, &s, 0
}

// mknodMapped makes a regular host file for MKNOD of a regular file, FIFO, socket or device (mode:
// type and 07777 bits; rdev in the guest's encoding).
func (fs *FS) mknodMapped(ctx *fuse.Context, parent *inode, name fuse.CString, mode, rdev uint32) fuse.Errno {
	switch mode & unix.S_IFMT {
	case 0:
		mode |= unix.S_IFREG
	case unix.S_IFREG, unix.S_IFIFO, unix.S_IFSOCK, unix.S_IFCHR, unix.S_IFBLK:
	default:
		return syscall.EINVAL
	}
	s, e := fs.newOverride(ctx, parent, mode, rdev)
	if e != 0 {
		return e
	}
	if s.fileType() == unix.S_IFREG {
		fd, e := fs.openat(parent.fd, name.Ptr(), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, hostMode(s.mode))
		if e != 0 {
			return e
		}
		e = setOverrideFD(fd, &s)
		closeFD(fd)
		if e != 0 {
			unix.Syscall(unix.SYS_UNLINKAT, uintptr(parent.fd), ptr(name.Ptr()), 0)
		}
		return e
	}
	return fs.createStandIn(parent, name, &s, nil)
}

// mkdirMapped makes the directory name in parent with the attribute s.
func (fs *FS) mkdirMapped(parent *inode, name fuse.CString, s *overrideStat) fuse.Errno {
	_, _, e := unix.Syscall(unix.SYS_MKDIRAT, uintptr(parent.fd), ptr(name.Ptr()), uintptr(hostMode(s.mode)))
	if e != 0 {
		return e
	}
	fd, e := fs.openat(parent.fd, name.Ptr(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if e == 0 {
		e = setOverrideFD(fd, s)
		closeFD(fd)
	}
	if e != 0 {
		unix.Syscall(unix.SYS_UNLINKAT, uintptr(parent.fd), ptr(name.Ptr()), unix.AT_REMOVEDIR)
	}
	return e
}

// createStandIn makes name in parent a regular host file holding data (a symlink's target) with
// the attribute s, for a guest symlink, FIFO, socket or device node. Where the host file system
// has O_TMPFILE the name appears only with both in place, so no reader sees a half-made file.
func (fs *FS) createStandIn(parent *inode, name fuse.CString, s *overrideStat, data []byte) fuse.Errno {
	mode := hostMode(s.mode)
	named := false
	fd, e := fs.openat(parent.fd, &dotPath[0], unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, mode)
	if e == syscall.EOPNOTSUPP || e == syscall.EISDIR || e == syscall.EINVAL {
		named = true
		fd, e = fs.openat(parent.fd, name.Ptr(), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
	}
	if e != 0 {
		return e
	}
	for off := 0; e == 0 && off < len(data); {
		var n int
		n, e = pwrite(fd, data[off:], int64(off))
		off += n
	}
	if e == 0 {
		e = setOverrideFD(fd, s)
	}
	if e == 0 && !named {
		var fdn fdName
		_, _, e = unix.Syscall6(unix.SYS_LINKAT, uintptr(fs.procSelfFD), ptr(fdn.of(fd)),
			uintptr(parent.fd), ptr(name.Ptr()), unix.AT_SYMLINK_FOLLOW, 0)
	}
	closeFD(fd)
	if e != 0 && named {
		unix.Syscall(unix.SYS_UNLINKAT, uintptr(parent.fd), ptr(name.Ptr()), 0)
	}
	return e
}

// pwrite writes b (not empty) at off, with pwritev like every write of the daemon.
func pwrite(fd int, b []byte, off int64) (int, fuse.Errno) {
	iov := [1]unix.Iovec{{Base: &b[0]}}
	iov[0].SetLen(len(b))
	r, e := vectorIO(unix.SYS_PWRITEV, fd, iov[:], off)
	if e == 0 && r == 0 {
		return 0, syscall.EIO
	}
	return r, e
}

// readStandInLink reads the target of a symlink that a regular host file stands for.
func (fs *FS) readStandInLink(n *inode, buf []byte) (int, fuse.Errno) {
	fd, e := fs.reopenFD(n.fd, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY)
	if e != 0 {
		return 0, e
	}
	defer closeFD(fd)
	r, _, e := unix.Syscall6(unix.SYS_PREAD64, uintptr(fd), ptrOrNil(buf), uintptr(len(buf)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), 0
}

// changeOverride applies change to n's attribute (n pinned with its fd open) and writes the result
// when change says so. A file without one starts from its host attributes as the guest sees them.
// A regular file's or directory's host mode follows the new permission bits.
func (fs *FS) changeOverride(n *inode, change func(s *overrideStat) bool) fuse.Errno {
	m := n.mapped
	m.change.Lock()
	defer m.change.Unlock()
	var st unix.Statx_t
	if e := fstatx(n.fd, &st); e != 0 {
		return e
	}
	s, has := fs.mappedView(n, &st)
	if !has {
		s = overrideStat{uid: fs.uids.NSToGuest(st.Uid), gid: fs.gids.NSToGuest(st.Gid),
			mode: uint32(st.Mode) & (unix.S_IFMT | 0o7777)}
	}
	if !change(&s) {
		return 0
	}
	if e := fs.writeOverride(n, &s); e != 0 {
		return e
	}
	t := s.fileType()
	if want := hostMode(s.mode); (t == unix.S_IFREG || t == unix.S_IFDIR) && uint32(st.Mode)&0o7777 != want {
		var name fdName
		_, _, e := unix.Syscall6(unix.SYS_FCHMODAT, uintptr(fs.procSelfFD), ptr(name.of(n.fd)), uintptr(want), 0, 0, 0)
		if e != 0 {
			return e
		}
		if fstatx(n.fd, &st) == 0 {
			m.store(st.Ctime, s, true)
		}
	}
	return 0
}

// setattrMapped changes mode and owner in the attribute (SETATTR with FATTR_MODE, FATTR_UID or
// FATTR_GID). Changing the owner of a non-directory clears its set-user-id bit, and its
// set-group-id bit if the group may execute or the caller is neither root nor of the file's group,
// as the kernel's chown does.
func (fs *FS) setattrMapped(ctx *fuse.Context, n *inode, in *fuse.SetattrIn) fuse.Errno {
	if in.Valid&fuse.FattrUID != 0 {
		if _, err := fs.uids.GuestToNS(in.UID); err != nil {
			return syscall.EPERM
		}
	}
	if in.Valid&fuse.FattrGID != 0 {
		if _, err := fs.gids.GuestToNS(in.GID); err != nil {
			return syscall.EPERM
		}
	}
	chown := in.Valid&(fuse.FattrUID|fuse.FattrGID) != 0
	if !canHoldOverride(n.fileType) {
		return fs.setattrUnmappable(ctx, n, in, chown)
	}
	e := fs.changeOverride(n, func(s *overrideStat) bool {
		if in.Valid&fuse.FattrMode != 0 {
			s.mode = s.mode&unix.S_IFMT | in.Mode&0o7777
		}
		if chown {
			oldGID := s.gid
			if in.Valid&fuse.FattrUID != 0 {
				s.uid = in.UID
			}
			if in.Valid&fuse.FattrGID != 0 {
				s.gid = in.GID
			}
			if s.fileType() != unix.S_IFDIR {
				s.mode &^= unix.S_ISUID
				if s.mode&unix.S_IXGRP != 0 || ctx.UID != 0 && ctx.GID != oldGID {
					s.mode &^= unix.S_ISGID
				}
			}
		}
		return true
	})
	if e == 0 && chown && fs.capHostName != nil && n.openable() {
		// chown drops file capabilities, as the host kernel drops security.capability.
		fs.nodeXattr(n, xattrRemove, &fs.capHostName[0], nil, 0)
	}
	return e
}

// setattrUnmappable serves chmod and chown of a host symlink or special file, which cannot carry
// the attribute: chmod changes the host file (a symlink has no mode: EOPNOTSUPP), and chown
// succeeds only when it changes nothing the guest sees.
func (fs *FS) setattrUnmappable(ctx *fuse.Context, n *inode, in *fuse.SetattrIn, chown bool) fuse.Errno {
	if in.Valid&fuse.FattrMode != 0 {
		var name fdName
		if e := fs.chmod(n, nil, &name, in.Mode&0o7777); e != 0 {
			return e
		}
	}
	if !chown {
		return 0
	}
	var st unix.Statx_t
	if e := fstatx(n.fd, &st); e != 0 {
		return e
	}
	if in.Valid&fuse.FattrUID != 0 && in.UID != fs.uids.NSToGuest(st.Uid) ||
		in.Valid&fuse.FattrGID != 0 && in.GID != fs.gids.NSToGuest(st.Gid) {
		return syscall.EPERM
	}
	return 0
}

// killSuidgidMapped clears the set-user-id bit of a regular file and, if the group may execute,
// its set-group-id bit (KILL_SUIDGID on WRITE, truncate and O_TRUNC). It trusts the cached
// attribute to say there are none, so writes cost no system call here.
func (fs *FS) killSuidgidMapped(n *inode, h *handle) fuse.Errno {
	s, has, read := n.mapped.cached()
	switch {
	case read && has && s.mode&(unix.S_ISUID|unix.S_ISGID) == 0:
		return 0
	case read && !has:
		return fs.killSuidgidHost(n, h)
	}
	if e := fs.openPinned(n); e != 0 {
		return e
	}
	return fs.changeOverride(n, func(s *overrideStat) bool {
		if s.fileType() != unix.S_IFREG {
			return false
		}
		kill := uint32(unix.S_ISUID)
		if s.mode&unix.S_IXGRP != 0 {
			kill |= unix.S_ISGID
		}
		if s.mode&kill == 0 {
			return false
		}
		s.mode &^= kill
		return true
	})
}

var (
	errMappedACL = errors.New("passfs: --ownership=mapped cannot be combined with --posix-acl: " +
		"an ACL's entries would be kept by the host, apart from the mapped owner and mode; drop one of them")
	errMappedNoXattr = errors.New("passfs: --ownership=mapped needs extended attributes (user.*) on the shared " +
		"directory's file system, and it has none: share a directory on ext4, xfs, btrfs or tmpfs")
)

// checkMappedOptions refuses what the mapped model cannot do, and a share whose file system has no
// user.* attributes.
func checkMappedOptions(o *Options) error {
	if o.PosixACL {
		return errMappedACL
	}
	fd, e := openat(o.RootFD, &dotPath[0], unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if e != 0 {
		return fmt.Errorf("passfs: open the shared directory: %w", e)
	}
	defer closeFD(fd)
	var buf [overrideMax]byte
	if _, e := fdXattr(xattrGet, fd, &overrideName[0], buf[:], 0); e == syscall.ENOTSUP {
		return errMappedNoXattr
	}
	return nil
}

// isOverrideHostName reports whether a NUL-terminated host attribute name is OverrideXattr.
func isOverrideHostName(host []byte) bool { return string(host) == string(overrideName) }
