package passfs

import (
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
)

// Lookup resolves name in the directory ctx.NodeID and counts a lookup of the result.
func (fs *FS) Lookup(ctx *fuse.Context, name fuse.CString, out *fuse.EntryOut) fuse.Errno {
	parent, e := fs.node(ctx.NodeID)
	if e != 0 {
		return e
	}
	defer parent.unpin()
	switch {
	case name.IsDot():
		return fs.lookupSelf(parent, out)
	case name.IsDotDot():
		return fs.lookupParent(parent, out)
	}
	if e := checkName(name); e != 0 {
		return e
	}
	return fs.lookupAt(parent, name.Ptr(), out)
}

// lookupAt resolves one name relative to the directory node parent, never following a final
// symlink, and fills out with the entry, counting one lookup. The common case of a node the guest
// already knows costs one statx and no allocation.
func (fs *FS) lookupAt(parent *inode, name *byte, out *fuse.EntryOut) fuse.Errno {
	return fs.lookupIn(parent.fd, parent.key.mnt, name, out)
}

func (fs *FS) lookupIn(dirfd int, parentMnt uint64, name *byte, out *fuse.EntryOut) fuse.Errno {
	var st unix.Statx_t
	if e := statx(dirfd, name, unix.AT_SYMLINK_NOFOLLOW|unix.AT_NO_AUTOMOUNT, &st); e != 0 {
		return e
	}
	if n := fs.inodes.refByKey(keyOf(&st)); n != nil {
		fs.fillEntry(n, &st, out)
		return 0
	}
	fd, e := openat(dirfd, name, pathFlags, 0)
	if e != 0 {
		if e == syscall.EMFILE || e == syscall.ENFILE {
			fs.logf("passfs: out of file descriptors (%v): raise the fd limit (--rlimit-nofile)", e)
		}
		return e
	}
	// Stat the fd, not the name again: the name may have been replaced meanwhile, and the key must
	// describe the inode the fd holds.
	if e := fstatx(fd, &st); e != 0 {
		closeFD(fd)
		return e
	}
	fileType := uint32(st.Mode) & unix.S_IFMT
	submount := fileType == unix.S_IFDIR && st.Mnt_id != parentMnt
	n := fs.inodes.insert(fd, keyOf(&st), fileType, submount)
	fs.fillEntry(n, &st, out)
	return 0
}

// lookupSelf answers "." with the directory itself.
func (fs *FS) lookupSelf(n *inode, out *fuse.EntryOut) fuse.Errno {
	var st unix.Statx_t
	if e := fstatx(n.fd, &st); e != 0 {
		return e
	}
	if !fs.inodes.ref(n) {
		return syscall.ENOENT
	}
	fs.fillEntry(n, &st, out)
	return 0
}

// lookupParent answers "..". At the root it is the root itself, so the guest cannot climb out of
// the share. Elsewhere the parent must be a node the guest already knows: a directory that a host
// process moved out of the share would otherwise lead outside it.
func (fs *FS) lookupParent(n *inode, out *fuse.EntryOut) fuse.Errno {
	if n.id == fuse.RootID {
		return fs.lookupSelf(n, out)
	}
	if !n.isDir() {
		return syscall.ENOTDIR
	}
	var st unix.Statx_t
	dotdot := [3]byte{'.', '.', 0}
	if e := statx(n.fd, &dotdot[0], unix.AT_SYMLINK_NOFOLLOW|unix.AT_NO_AUTOMOUNT, &st); e != 0 {
		return e
	}
	p := fs.inodes.refByKey(keyOf(&st))
	if p == nil {
		return syscall.ENOENT
	}
	fs.fillEntry(p, &st, out)
	return 0
}

// Forget drops nlookup lookups from a node; unknown ids are ignored (FORGET has no reply).
func (fs *FS) Forget(nodeID, nlookup uint64) { fs.inodes.forget(nodeID, nlookup) }
