package passfs

import (
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
)

// Creating operations run as the guest caller (asCaller), resolve the new name relative to the
// parent's O_PATH fd, and answer with a lookup of the new entry.

// parentForCreate returns the pinned parent directory after the checks every creation needs.
func (fs *FS) parentForCreate(ctx *fuse.Context, name fuse.CString) (*inode, fuse.Errno) {
	if e := checkName(name); e != 0 {
		return nil, e
	}
	if e := fs.readonlyErr(); e != 0 {
		return nil, e
	}
	parent, e := fs.node(ctx.NodeID)
	if e != 0 {
		return nil, e
	}
	if !parent.isDir() {
		parent.unpin()
		return nil, syscall.ENOTDIR
	}
	if parent.pseudo {
		parent.unpin()
		return nil, syscall.EACCES // an empty directory nobody may change (pseudofs.go)
	}
	return parent, 0
}

// finishCreate looks up the new name and labels it with the guest's security context. If that
// fails, the new entry is removed again so that the failed request leaves nothing behind.
func (fs *FS) finishCreate(ctx *fuse.Context, parent *inode, name fuse.CString, isDir bool, out *fuse.EntryOut) fuse.Errno {
	e := fs.lookupAt(parent, name, out)
	if e == 0 {
		if e = fs.applySecCtx(ctx, out.NodeID); e != 0 {
			fs.inodes.forget(out.NodeID, 1)
			*out = fuse.EntryOut{}
		}
	}
	if e != 0 {
		flags := 0
		if isDir {
			flags = unix.AT_REMOVEDIR
		}
		unix.Syscall(unix.SYS_UNLINKAT, uintptr(parent.fd), ptr(name.Ptr()), uintptr(flags))
	}
	return e
}

// Mkdir creates a directory.
func (fs *FS) Mkdir(ctx *fuse.Context, in *fuse.MkdirIn, name fuse.CString, out *fuse.EntryOut) fuse.Errno {
	parent, e := fs.parentForCreate(ctx, name)
	if e != 0 {
		return e
	}
	defer parent.unpin()
	mode := fs.createMode(parent, in.Mode, in.Umask) & 07777
	if fs.mapped {
		s, e := fs.newOverride(ctx, parent, unix.S_IFDIR|mode, 0)
		if e == 0 {
			e = fs.mkdirMapped(parent, name, &s)
		}
		if e != 0 {
			return e
		}
		return fs.finishCreate(ctx, parent, name, true, out)
	}
	e = fs.asCaller(ctx, func() fuse.Errno {
		_, _, e := unix.Syscall(unix.SYS_MKDIRAT, uintptr(parent.fd), ptr(name.Ptr()), uintptr(mode))
		return e
	})
	if e != 0 {
		return e
	}
	return fs.finishCreate(ctx, parent, name, true, out)
}

// Mknod creates a regular file, FIFO, socket or device node (the last needs CAP_MKNOD on the host,
// except for a 0:0 character device, an overlayfs whiteout). In the mapped model all but whiteouts
// are regular host files with the type in their attribute.
func (fs *FS) Mknod(ctx *fuse.Context, in *fuse.MknodIn, name fuse.CString, out *fuse.EntryOut) fuse.Errno {
	parent, e := fs.parentForCreate(ctx, name)
	if e != 0 {
		return e
	}
	defer parent.unpin()
	mode := in.Mode&unix.S_IFMT | fs.createMode(parent, in.Mode, in.Umask)&07777
	dev := decodeDev(in.Rdev)
	mknod := func() fuse.Errno {
		_, _, e := unix.Syscall6(unix.SYS_MKNODAT, uintptr(parent.fd), ptr(name.Ptr()), uintptr(mode), uintptr(dev), 0, 0)
		return e
	}
	switch {
	case !fs.mapped:
		e = fs.asCaller(ctx, mknod)
	case mode&unix.S_IFMT == unix.S_IFCHR && dev == 0:
		e = mknod() // a real whiteout, the daemon's like every host file of the model
	default:
		e = fs.mknodMapped(ctx, parent, name, mode, in.Rdev)
	}
	if e != 0 {
		return e
	}
	return fs.finishCreate(ctx, parent, name, false, out)
}

// Symlink creates a symlink with the target as given; it is never resolved on the host.
func (fs *FS) Symlink(ctx *fuse.Context, name, target fuse.CString, out *fuse.EntryOut) fuse.Errno {
	parent, e := fs.parentForCreate(ctx, name)
	if e != 0 {
		return e
	}
	defer parent.unpin()
	if len(target) < 2 {
		return syscall.ENOENT // empty target, as symlink(2) says
	}
	if fs.mapped {
		if len(target) > unix.PathMax {
			return syscall.ENAMETOOLONG
		}
		s, e := fs.newOverride(ctx, parent, unix.S_IFLNK|0o777, 0)
		if e == 0 {
			e = fs.createStandIn(parent, name, &s, target.Bytes())
		}
		if e != 0 {
			return e
		}
		return fs.finishCreate(ctx, parent, name, false, out)
	}
	e = fs.asCaller(ctx, func() fuse.Errno {
		_, _, e := unix.Syscall(unix.SYS_SYMLINKAT, ptr(target.Ptr()), uintptr(parent.fd), ptr(name.Ptr()))
		return e
	})
	if e != 0 {
		return e
	}
	return fs.finishCreate(ctx, parent, name, false, out)
}

// Link makes a hard link to in.OldNodeID in the directory ctx.NodeID. It links through
// /proc/self/fd, which needs no CAP_DAC_READ_SEARCH (unlike AT_EMPTY_PATH) and also works for an
// O_TMPFILE file.
func (fs *FS) Link(ctx *fuse.Context, in *fuse.LinkIn, name fuse.CString, out *fuse.EntryOut) fuse.Errno {
	parent, e := fs.parentForCreate(ctx, name)
	if e != 0 {
		return e
	}
	defer parent.unpin()
	old, e := fs.node(in.OldNodeID)
	if e != 0 {
		return e
	}
	defer old.unpin()
	if old.pseudo {
		return syscall.EXDEV // never linked through its magic link (pseudofs.go)
	}
	var oldName fdName
	_, _, e = unix.Syscall6(unix.SYS_LINKAT, uintptr(fs.procSelfFD), ptr(oldName.of(old.fd)),
		uintptr(parent.fd), ptr(name.Ptr()), unix.AT_SYMLINK_FOLLOW, 0)
	if e != 0 {
		return e
	}
	return fs.lookupAt(parent, name, out) // also records the new name as one to reopen old from
}

// Unlink removes a non-directory.
func (fs *FS) Unlink(ctx *fuse.Context, name fuse.CString) fuse.Errno {
	return fs.unlink(ctx, name, 0)
}

// Rmdir removes an empty directory.
func (fs *FS) Rmdir(ctx *fuse.Context, name fuse.CString) fuse.Errno {
	return fs.unlink(ctx, name, unix.AT_REMOVEDIR)
}

func (fs *FS) unlink(ctx *fuse.Context, name fuse.CString, flags int) fuse.Errno {
	parent, e := fs.parentForCreate(ctx, name)
	if e != 0 {
		return e
	}
	defer parent.unpin()
	victim := fs.knownNodeAt(parent, name)
	// Held around the system call alone (see inodeTable.evicting): victim.unpin below may close
	// fds, which takes the lock shared.
	if flags&unix.AT_REMOVEDIR != 0 {
		fs.inodes.evicting.Lock()
	}
	_, _, e = unix.Syscall(unix.SYS_UNLINKAT, uintptr(parent.fd), ptr(name.Ptr()), uintptr(flags))
	if flags&unix.AT_REMOVEDIR != 0 {
		fs.inodes.evicting.Unlock()
	}
	if victim != nil {
		if e == 0 {
			victim.keepOpenIfNamed(parent, name)
		}
		victim.unpin()
	}
	return e
}

const renameFlags = unix.RENAME_NOREPLACE | unix.RENAME_EXCHANGE | unix.RENAME_WHITEOUT

// Rename moves oldName in ctx.NodeID to newName in newDir with renameat2 (flags: NOREPLACE,
// EXCHANGE, WHITEOUT).
func (fs *FS) Rename(ctx *fuse.Context, newDir uint64, flags uint32, oldName, newName fuse.CString) fuse.Errno {
	if flags&^renameFlags != 0 {
		return syscall.EINVAL
	}
	if e := checkName(newName); e != 0 {
		return e
	}
	parent, e := fs.parentForCreate(ctx, oldName)
	if e != 0 {
		return e
	}
	defer parent.unpin()
	target, e := fs.node(newDir)
	if e != 0 {
		return e
	}
	defer target.unpin()
	if !target.isDir() {
		return syscall.ENOTDIR
	}
	if target.pseudo {
		return syscall.EACCES
	}
	// The nodes at both names, pinned with their fds open while the names change, so that no
	// concurrent reopen looks for them by a name that is no longer theirs.
	moved := fs.knownNodeAt(parent, oldName)
	replaced := fs.knownNodeAt(target, newName)
	_, _, e = unix.Syscall6(unix.SYS_RENAMEAT2, uintptr(parent.fd), ptr(oldName.Ptr()),
		uintptr(target.fd), ptr(newName.Ptr()), uintptr(flags), 0)
	if e == 0 {
		if moved != nil {
			moved.noteName(target, newName)
		}
		if replaced != nil && replaced != moved {
			if flags&unix.RENAME_EXCHANGE != 0 {
				replaced.noteName(parent, oldName)
			} else {
				replaced.keepOpenIfNamed(target, newName)
			}
		}
	}
	if moved != nil {
		moved.unpin()
	}
	if replaced != nil {
		replaced.unpin()
	}
	return e
}

// Create creates and opens a regular file. The file is created with O_EXCL, so an existing file
// is never opened here: EEXIST if the guest asked for O_EXCL, else ESTALE (see below).
func (fs *FS) Create(ctx *fuse.Context, in *fuse.CreateIn, name fuse.CString, entry *fuse.EntryOut, open *fuse.OpenOut) fuse.Errno {
	parent, e := fs.parentForCreate(ctx, name)
	if e != 0 {
		return e
	}
	defer parent.unpin()
	flags, e := fs.createFlags(in.Flags)
	if e != 0 {
		return e
	}
	mode := fs.createMode(parent, in.Mode, in.Umask) & 07777
	fd := -1
	var seed *overrideStat
	if fs.mapped {
		fd, seed, e = fs.openMapped(ctx, parent, name, flags|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW, mode)
	} else {
		e = fs.asCaller(ctx, func() fuse.Errno {
			var e fuse.Errno
			fd, e = fs.openat(parent.fd, name.Ptr(), flags|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW, mode)
			return e
		})
	}
	if e == syscall.EEXIST && in.Flags&unix.O_EXCL == 0 {
		// The guest sends CREATE only for a name it believes absent, so its view is stale (the
		// host made the name meanwhile). Opening what is there would be wrong: a CREATE reply
		// counts as a new file, which the guest opens without its permission checks (and
		// would truncate as the daemon). ESTALE makes the guest's VFS look the name up afresh
		// and open it the usual way.
		return syscall.ESTALE
	}
	if e != 0 {
		return e
	}
	if e := fs.entryFromOpenFD(parent, name, fd, seed, entry); e != 0 {
		closeFD(fd)
		unix.Syscall(unix.SYS_UNLINKAT, uintptr(parent.fd), ptr(name.Ptr()), 0)
		return e
	}
	if e := fs.applySecCtx(ctx, entry.NodeID); e != 0 {
		fs.inodes.forget(entry.NodeID, 1)
		*entry = fuse.EntryOut{}
		closeFD(fd)
		unix.Syscall(unix.SYS_UNLINKAT, uintptr(parent.fd), ptr(name.Ptr()), 0)
		return e
	}
	fs.answerOpen(entry.NodeID, fd, flags, open)
	return 0
}

// answerOpen hands the fd a creating request opened to the guest: as a new handle, or in no-open
// mode as the node's data fd with fh 0 (nodedata.go).
func (fs *FS) answerOpen(nodeID uint64, fd, flags int, open *fuse.OpenOut) {
	if fs.noOpen.Load() {
		fs.adoptCreated(nodeID, fd, flags)
		open.Fh = 0
	} else {
		open.Fh = fs.handles.add(&handle{fd: fd})
	}
	open.OpenFlags = fs.openFlags(false)
}

// entryFromOpenFD makes (or finds) the node for a file that was just opened as fd, race-free:
// the O_PATH fd is opened from the data fd through /proc/self/fd, not by name again. name is
// where it was created in parent (nil for O_TMPFILE). seed, in the mapped model, is the attribute
// the file was just given.
func (fs *FS) entryFromOpenFD(parent *inode, name fuse.CString, fd int, seed *overrideStat, out *fuse.EntryOut) fuse.Errno {
	pfd, e := fs.reopenFD(fd, unix.O_PATH)
	if e != 0 {
		return e
	}
	var st unix.Statx_t
	if e := fstatx(pfd, &st); e != 0 {
		closeFD(pfd)
		return e
	}
	n, _, e := fs.addNode(pfd, &st, parent, name)
	if e != 0 {
		return e
	}
	if seed != nil && n.mapped != nil {
		n.mapped.store(st.Ctime, *seed, true)
	}
	fs.fillEntry(n, &st, out)
	return 0
}

// tmpfileEntryValid is the entry timeout of a tmpfile's dentry, in seconds: a century.
const tmpfileEntryValid = 100 * 365 * 24 * 3600

// Tmpfile creates an unnamed regular file in the directory ctx.NodeID (O_TMPFILE) and opens it.
func (fs *FS) Tmpfile(ctx *fuse.Context, in *fuse.CreateIn, entry *fuse.EntryOut, open *fuse.OpenOut) fuse.Errno {
	if e := fs.readonlyErr(); e != 0 {
		return e
	}
	parent, e := fs.node(ctx.NodeID)
	if e != 0 {
		return e
	}
	defer parent.unpin()
	if !parent.isDir() {
		return syscall.ENOTDIR
	}
	if parent.pseudo {
		return syscall.EACCES
	}
	flags, e := fs.createFlags(in.Flags)
	if e != 0 {
		return e
	}
	if flags&unix.O_ACCMODE == unix.O_RDONLY {
		return syscall.EINVAL // O_TMPFILE needs write access, as open(2) says
	}
	mode := fs.createMode(parent, in.Mode, in.Umask) & 07777
	fd := -1
	var seed *overrideStat
	if fs.mapped {
		fd, seed, e = fs.openMapped(ctx, parent, nil, flags|unix.O_TMPFILE, mode)
	} else {
		e = fs.asCaller(ctx, func() fuse.Errno {
			var e fuse.Errno
			fd, e = fs.openat(parent.fd, &dotPath[0], flags|unix.O_TMPFILE, mode)
			return e
		})
	}
	if e != 0 {
		return e
	}
	if e := fs.entryFromOpenFD(parent, nil, fd, seed, entry); e != 0 {
		closeFD(fd)
		return e
	}
	// The guest's dentry of a tmpfile has no name it could look up ("/"), so it must never
	// expire: Linux revalidates an expired one with a LOOKUP of "/", which can only fail, and
	// overlayfs, whose copy-up keeps that dentry as the upper file (Linux 6.12), then fails every
	// later access to the copied-up file with ESTALE. A link of it gets a dentry of its own.
	entry.EntryValid, entry.EntryValidNsec = tmpfileEntryValid, 0
	if e := fs.applySecCtx(ctx, entry.NodeID); e != 0 {
		fs.inodes.forget(entry.NodeID, 1)
		*entry = fuse.EntryOut{}
		closeFD(fd)
		return e
	}
	fs.answerOpen(entry.NodeID, fd, flags, open)
	return 0
}
