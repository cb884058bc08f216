package passfs

import (
	"syscall"
	"unsafe"

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
	e = fs.lookupAt(parent, name, out)
	if e == syscall.ENOENT && fs.timeout > 0 {
		// A zero node id with an entry timeout makes the guest cache the miss (a negative
		// dentry) for as long as it caches entries, saving a round trip per repeated miss
		// (PATH and include-path searches).
		*out = fuse.EntryOut{EntryValid: fs.timeout}
		return 0
	}
	return e
}

// lookupAt resolves one name relative to the directory node parent, never following a final
// symlink, and fills out with the entry, counting one lookup. The common case of a node the guest
// already knows costs one statx and no allocation.
func (fs *FS) lookupAt(parent *inode, name fuse.CString, out *fuse.EntryOut) fuse.Errno {
	return fs.lookupIn(parent, parent.fd, name, out)
}

// lookupIn is lookupAt with the directory given as dirfd, an fd of parent (READDIRPLUS uses the
// open directory's fd).
//
// A node the guest already knows costs one statx by name; a new one needs an O_PATH fd, and a
// statx of the fd (the name may be replaced meanwhile, and the key must describe the inode the fd
// holds). Which comes first follows the last lookup that found an inode: a walk after the guest
// dropped its caches (find, ls -lR, stat of many files) meets new inodes one after another, and
// opening first saves the statx by name for each, while revalidations meet known ones.
func (fs *FS) lookupIn(parent *inode, dirfd int, name fuse.CString, out *fuse.EntryOut) fuse.Errno {
	if parent.pseudo {
		return syscall.ENOENT // an empty directory to the guest (pseudofs.go)
	}
	var st unix.Statx_t
	openFirst := fs.lookupsNew.Load()
	if !openFirst {
		if e := statx(dirfd, name.Ptr(), unix.AT_SYMLINK_NOFOLLOW|unix.AT_NO_AUTOMOUNT, &st); e != 0 {
			return e
		}
		if n := fs.inodes.refByKey(keyOf(&st)); n != nil {
			n.noteName(parent, name)
			fs.fillEntry(n, &st, out)
			return 0
		}
	}
	fd, e := fs.openat(dirfd, name.Ptr(), pathFlags, 0)
	if e != 0 {
		return e
	}
	if e := fstatx(fd, &st); e != 0 {
		closeFD(fd)
		return e
	}
	// Opened first, the inode may be known after all: then the fd goes, before addNode would get
	// a file handle and allocate a node for nothing. (After a statx miss, addNode finds a node
	// added meanwhile itself.)
	var n *inode
	if openFirst {
		n = fs.inodes.refByKey(keyOf(&st))
	}
	isNew := n == nil
	if isNew {
		if n, isNew, e = fs.addNode(fd, &st, parent, name); e != 0 {
			return e
		}
	} else {
		closeFD(fd)
		n.noteName(parent, name)
	}
	if openFirst != isNew {
		fs.lookupsNew.Store(isNew)
	}
	fs.fillEntry(n, &st, out)
	return 0
}

// addNode makes a node for the O_PATH fd (which it takes over) of an inode st found as name in
// parent (name nil: it has none, an O_TMPFILE file), or finds the node that has it already (isNew
// false; fd is closed). It counts one lookup and may close other nodes' fds to stay within the
// budget.
func (fs *FS) addNode(fd int, st *unix.Statx_t, parent *inode, name fuse.CString) (n *inode, isNew bool, e fuse.Errno) {
	cand, e := fs.newNode(fd, st, parent, name)
	if e != 0 {
		return nil, false, e
	}
	n = fs.inodes.insert(cand)
	if n != cand && name != nil {
		n.noteName(parent, name)
	}
	if n == cand && cand.submount && !cand.pseudo && !fs.o.AnnounceSubmounts {
		fs.warnUnannouncedSubmount(name)
	}
	fs.inodes.fds.trim()
	return n, n == cand, 0
}

// newNode makes the node, not yet in the table, for the O_PATH fd of an inode st found as name in
// parent (name nil: an O_TMPFILE file, which keeps its fd open). On failure fd is closed.
func (fs *FS) newNode(fd int, st *unix.Statx_t, parent *inode, name fuse.CString) (*inode, fuse.Errno) {
	fileType := uint32(st.Mode) & unix.S_IFMT
	// Only a mount root can be on another kind of file system than its parent (pseudofs.go).
	mountRoot, pseudo := st.Mnt_id != parent.key.mnt, parent.pseudo
	if mountRoot {
		kind, e := fs.pseudoKind(fd, st)
		if e != 0 {
			closeFD(fd)
			return nil, e
		}
		if pseudo = kind != ""; pseudo {
			fs.notePseudo(name, kind)
		}
	}
	var fh *fileHandle
	if !pseudo {
		var e fuse.Errno
		if fh, e = fs.takeHandle(fd, fileType); e != 0 {
			closeFD(fd)
			return nil, e
		}
	}
	n := allocNode(name)
	n.fd, n.key, n.fileType, n.handle, n.parent, n.clockIdx = fd, keyOf(st), fileType, fh, parent, -1
	n.submount, n.mountRoot, n.pseudo = fileType == unix.S_IFDIR && mountRoot, mountRoot, pseudo
	if fs.mapped {
		n.mapped = &mappedState{}
	}
	if name == nil {
		n.keepOpen = true // no name to reopen it from
	}
	return n, 0
}

// allocNode allocates a zero node with its name (NUL-terminated, nil for none) in the same object
// when the name is short, as nearly all are: one allocation per new node instead of two. The
// sizes fill Go's size classes (the node alone is 168 bytes, in the 176-byte class). A later
// name (noteName) is a string of its own; the buffer then just goes with the node.
func allocNode(name fuse.CString) *inode {
	switch l := len(name); {
	case l == 0:
		return &inode{}
	case l <= 8:
		return withName(new(nodeAndName[[8]byte]), name)
	case l <= 24:
		return withName(new(nodeAndName[[24]byte]), name)
	case l <= 56:
		return withName(new(nodeAndName[[56]byte]), name)
	case l <= 88:
		return withName(new(nodeAndName[[88]byte]), name)
	}
	return &inode{name: string(name)}
}

type nodeAndName[buf any] struct {
	n    inode
	name buf // a byte array
}

func withName[buf any](a *nodeAndName[buf], name fuse.CString) *inode {
	b := unsafe.Slice((*byte)(unsafe.Pointer(&a.name)), unsafe.Sizeof(a.name))
	copy(b, name)
	a.n.name = unsafe.String(&b[0], len(name))
	return &a.n
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

// warnUnannouncedSubmount says once that the share has mount points the guest is not told about:
// the guest then sees one st_dev for all of them, so two files on different host file systems can
// show the same (st_dev, st_ino) and look like hard links to each other (find, du, tar, cp -a).
// passfs itself keeps them apart (inode keys include the mount id).
func (fs *FS) warnUnannouncedSubmount(name fuse.CString) {
	fs.submountWarning.Do(func() {
		fs.logf("passfs: %q is a mount point inside the shared directory; the guest sees one device for all of them, "+
			"so inode numbers of different file systems can collide there: start uvfsd with --announce-submounts", name.Bytes())
	})
}
