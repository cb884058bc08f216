package passfs

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
)

// FS is the passthrough file system. It implements fuse.FileSystem; its methods may be called
// concurrently.
type FS struct {
	o          Options
	procSelfFD int
	ownsProcFD bool // New opened procSelfFD and Close closes it
	uids, gids IDMapper
	timeout    uint64 // entry and attribute timeout in seconds
	groups     []uint32
	// setGroupsOK: requests may get exactly their own supplementary groups (creds.go).
	setGroupsOK bool
	// ownFsuid, ownFsgid: the daemon's own, read at New, which every thread has outside asCaller
	// (the daemon must not change its ids after New; uvfsd does not).
	ownFsuid, ownFsgid uint32

	inodes *inodeTable
	// lookupsNew: the last lookup that found an inode made a new node, so the next one opens
	// the name before it looks in the table (lookupIn).
	lookupsNew atomic.Bool
	handles    *handleTable
	locks      lockTable // POSIX locks' fds, one per (node, lock owner)

	useHandles bool     // nodes get file handles (filehandles.go); fixed after New
	mounts     mountFDs // mount fds for open_by_handle_at

	pseudoMounts pseudoMounts // recognises /proc, /sys, /dev and the like (pseudofs.go)

	// What INIT negotiated (set in Init, read by every request).
	dontMask   atomic.Bool // the kernel left the umask to us
	writeback  atomic.Bool // the kernel caches writes: it may read through write-only handles
	noFlush    atomic.Bool // no POSIX locks were agreed, so FLUSH has nothing to do
	noOpendir  atomic.Bool // the guest agreed to list directories without OPENDIR handles
	noOpen     atomic.Bool // regular files are opened without OPEN: fh 0 means the node's data fds
	dataNodes  dataNodeSet // nodes with data fds for fh 0, closed when idle (nodedata.go)
	dirScratch dirScratchPool

	// capHostName is the host name of security.capability when an xattr mapping renames it: the
	// host kernel then no longer drops it on write, so WRITE does (CVE-2021-20263). Nil otherwise.
	capHostName []byte

	specialXattr specialXattrWorker

	// mapped: the mapped ownership model (mapped.go); every node has mapped state. Fixed after New.
	mapped bool

	submountWarning    sync.Once // warnUnannouncedSubmount
	badOverrideWarning sync.Once // warnBadOverride

	closeOnce sync.Once
}

var _ fuse.FileSystem = (*FS)(nil)

// New makes a passthrough file system on o.RootFD, which it owns from then on (Close closes it).
// It sets the process umask to 0: the guest applies its own umask (or sends it, with DONT_MASK).
func New(o Options) (*FS, error) {
	if o.RootFD < 0 {
		return nil, errors.New("passfs: no root directory fd: open the shared directory with O_PATH|O_DIRECTORY first")
	}
	var st unix.Statx_t
	if e := fstatx(o.RootFD, &st); e != 0 {
		return nil, fmt.Errorf("passfs: stat of the shared directory failed: %w", e)
	}
	if uint32(st.Mode)&unix.S_IFMT != unix.S_IFDIR {
		return nil, errors.New("passfs: the shared directory is not a directory: pass a directory to --shared-dir")
	}
	if st.Mask&unix.STATX_MNT_ID == 0 {
		return nil, errors.New("passfs: the kernel does not report mount ids (statx STATX_MNT_ID): Linux 5.8 or newer is needed")
	}
	budget := int64(o.FDBudget)
	if budget <= 0 {
		budget = defaultFDBudget()
	}
	fs := &FS{o: o, procSelfFD: o.ProcSelfFD, uids: o.UIDs, gids: o.GIDs, timeout: o.Cache.timeout(),
		inodes: newInodeTable(budget), handles: newHandleTable()}
	if fs.uids == nil {
		fs.uids = identityMapper{}
	}
	if fs.gids == nil {
		fs.gids = identityMapper{}
	}
	groups, err := unix.Getgroups()
	if err != nil {
		return nil, fmt.Errorf("passfs: getgroups: %w", err)
	}
	for _, g := range groups {
		fs.groups = append(fs.groups, uint32(g))
	}
	fs.setGroupsOK = o.SetCreds && canSetGroups(fs.groups)
	fs.ownFsuid, fs.ownFsgid = ownFsids()
	if fs.procSelfFD < 0 {
		fd, err := unix.Open("/proc/self/fd", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("passfs: open /proc/self/fd (is /proc mounted?): %w", err)
		}
		fs.procSelfFD, fs.ownsProcFD = fd, true
	}
	fs.pseudoMounts.setUp(o.MountInfo, fs.procSelfFD)
	if kind, e := fs.pseudoKind(o.RootFD, &st); kind != "" || e != 0 {
		fs.pseudoMounts.close()
		if fs.ownsProcFD {
			closeFD(fs.procSelfFD)
		}
		if e != 0 {
			return nil, fmt.Errorf("passfs: statfs of the shared directory failed: %w", e)
		}
		return nil, fmt.Errorf("passfs: the shared directory is on %s, a kernel pseudo file system, which uvfsd never serves "+
			"(within a shared directory it shows as an empty directory): share a directory of another file system", kind)
	}
	if o.XattrMap != nil {
		host, errno := o.XattrMap.ToHost(nil, []byte("security.capability"))
		if errno == 0 && !bytes.Equal(host, []byte("security.capability")) {
			fs.capHostName = append(append([]byte(nil), host...), 0)
		}
	}
	err = fs.setUpFileHandles(o.InodeFileHandles, o.RootFD, st.Mnt_id)
	if err == nil && o.Ownership == OwnershipMapped {
		fs.mapped = true
		err = checkMappedOptions(&o)
	}
	if err != nil {
		fs.pseudoMounts.close()
		if fs.ownsProcFD {
			closeFD(fs.procSelfFD)
		}
		return nil, err
	}
	fs.writeback.Store(o.Writeback)
	unix.Umask(0)
	root := fs.inodes.addRoot(o.RootFD, keyOf(&st))
	if fs.mapped {
		root.mapped = &mappedState{}
	}
	return fs, nil
}

// Close releases every fd, including the root's. The FS must not be used afterwards.
func (fs *FS) Close() error {
	fs.closeOnce.Do(func() {
		fs.dataNodes.close()
		fs.locks.dropAll()
		fs.handles.removeAll()
		fs.inodes.dropAllBut(0)
		fs.mounts.closeAll()
		fs.specialXattr.stop()
		fs.pseudoMounts.close()
		if fs.ownsProcFD {
			closeFD(fs.procSelfFD)
		}
	})
	return nil
}

// Init adapts to what INIT negotiated.
func (fs *FS) Init(info *fuse.InitInfo) {
	fs.dontMask.Store(info.Flags&fuse.CapDontMask != 0)
	fs.writeback.Store(fs.o.Writeback && info.Flags&fuse.CapWritebackCache != 0)
	fs.noFlush.Store(info.Flags&fuse.CapPosixLocks == 0)
	// Without OPENDIR the guest caches listings (FOPEN_CACHE_DIR), revalidating them by the
	// directory's mtime once attributes time out; cache=never promises no caching at all.
	fs.noOpendir.Store(info.Flags&fuse.CapNoOpendirSupport != 0 && fs.o.Cache != CacheNever)
	// Without OPEN the guest keeps a file's page cache across opens (FOPEN_KEEP_CACHE), so the
	// policies that promise DIRECT_IO (never, metadata) cannot have it; locks need a handle per
	// open file to tell owners apart.
	fs.noOpen.Store(fs.o.NoOpen && info.Flags&fuse.CapNoOpenSupport != 0 && fs.o.Cache.CachesFileData() &&
		info.Flags&(fuse.CapPosixLocks|fuse.CapFlockLocks) == 0)
}

// openFlags are the FOPEN_* flags of a new file (dir false) or directory handle. FLUSH exists to
// drop the closing process's POSIX locks; without them, FOPEN_NOFLUSH spares the guest a round
// trip on every close(2).
func (fs *FS) openFlags(dir bool) uint32 {
	f := fs.o.Cache.openFlags(dir)
	if !dir && fs.noFlush.Load() {
		f |= fuse.FopenNoFlush
	}
	return f
}

// Destroy forgets every node but the root and closes every handle: the guest unmounted, and a new
// mount starts with a new INIT.
func (fs *FS) Destroy() {
	fs.locks.dropAll()
	fs.handles.removeAll()
	fs.inodes.dropAllBut(fuse.RootID)
}

func (fs *FS) logf(format string, a ...any) {
	if fs.o.Logf != nil {
		fs.o.Logf(format, a...)
	}
}

// node returns the pinned node for a guest node id with its fd open (reopened if the budget
// closed it), EBADF for an unknown id, or ESTALE if it cannot be reopened.
func (fs *FS) node(id uint64) (*inode, fuse.Errno) {
	n := fs.inodes.get(id)
	if n == nil {
		return nil, syscall.EBADF
	}
	if e := fs.openPinned(n); e != 0 {
		n.unpin()
		return nil, e
	}
	return n, 0
}

// handle returns the pinned handle for a guest file handle, or EBADF.
func (fs *FS) handle(fh uint64) (*handle, fuse.Errno) {
	h := fs.handles.get(fh)
	if h == nil {
		return nil, syscall.EBADF
	}
	return h, 0
}

// checkName rejects names the server should already have rejected: a second line of defence,
// since a name with '/' given to an *at() syscall would walk further than one directory.
func checkName(name fuse.CString) fuse.Errno {
	b := name.Bytes()
	if len(b) == 0 || len(b) > 255 || bytes.IndexByte(b, '/') >= 0 || bytes.IndexByte(b, 0) >= 0 ||
		name.IsDot() || name.IsDotDot() {
		return syscall.EINVAL
	}
	return 0
}

// fillAttr converts statx results of node n to a FUSE attr, with ids translated for the guest (and
// in the mapped model owner, mode and device number from the node's attribute).
func (fs *FS) fillAttr(st *unix.Statx_t, n *inode, a *fuse.Attr) {
	a.Ino = st.Ino
	a.Size = st.Size
	a.Blocks = st.Blocks
	a.Atime, a.Atimensec = uint64(st.Atime.Sec), st.Atime.Nsec
	a.Mtime, a.Mtimensec = uint64(st.Mtime.Sec), st.Mtime.Nsec
	a.Ctime, a.Ctimensec = uint64(st.Ctime.Sec), st.Ctime.Nsec
	a.Mode = uint32(st.Mode)
	a.Nlink = st.Nlink
	a.UID = fs.uids.NSToGuest(st.Uid)
	a.GID = fs.gids.NSToGuest(st.Gid)
	a.Rdev = encodeDev(st.Rdev_major, st.Rdev_minor)
	a.Blksize = st.Blksize
	a.Flags = 0
	if n.submount && fs.o.AnnounceSubmounts {
		a.Flags |= fuse.AttrSubmount
	}
	if n.pseudo {
		// An empty directory: nothing of the pseudo file system's own counts shows.
		a.Size, a.Blocks, a.Nlink = 0, 0, 1
		if n.isDir() {
			a.Nlink = 2
		}
		return
	}
	if n.mapped != nil {
		fs.applyMapped(n, st, a)
	}
}

// encodeDev packs a device number the way the guest kernel's new_decode_dev unpacks fuse_attr.rdev.
func encodeDev(major, minor uint32) uint32 {
	return (minor & 0xff) | (major&0xfff)<<8 | (minor&^0xff)<<12
}

// decodeDev is the inverse, for MKNOD's rdev.
func decodeDev(rdev uint32) uint64 {
	major := (rdev >> 8) & 0xfff
	minor := (rdev & 0xff) | ((rdev >> 12) & 0xfff00)
	return unix.Mkdev(major, minor)
}

func (fs *FS) fillAttrOut(st *unix.Statx_t, n *inode, out *fuse.AttrOut) {
	out.AttrValid = fs.timeout
	out.AttrValidNsec = 0
	fs.fillAttr(st, n, &out.Attr)
}

func (fs *FS) fillEntry(n *inode, st *unix.Statx_t, out *fuse.EntryOut) {
	out.NodeID = n.id
	out.Generation = 0
	out.EntryValid = fs.timeout
	out.AttrValid = fs.timeout
	fs.fillAttr(st, n, &out.Attr)
}

// readonlyErr is EROFS for modifying operations when the share is read-only.
func (fs *FS) readonlyErr() fuse.Errno {
	if fs.o.Readonly {
		return syscall.EROFS
	}
	return 0
}
