package passfs

import (
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
)

// Per-request credentials. Creating operations run with the guest caller's ids (translated to the
// daemon's namespace) as the fsuid/fsgid of the current OS thread, so new files get the right
// owner and the host kernel checks permissions as that user. Go's unix.Setfsuid and friends may
// change every thread; these raw syscalls change only the calling thread, which the goroutine
// holds with runtime.LockOSThread for the duration.

// setfsuid and setfsgid return the previous id; an invalid id (-1) changes nothing, which reads
// the current one.
func setfsuid(id uint32) uint32 {
	r, _, _ := unix.RawSyscall(unix.SYS_SETFSUID, uintptr(id), 0, 0)
	return uint32(r)
}

func setfsgid(id uint32) uint32 {
	r, _, _ := unix.RawSyscall(unix.SYS_SETFSGID, uintptr(id), 0, 0)
	return uint32(r)
}

const noID = ^uint32(0)

func threadFsuid() uint32 { return setfsuid(noID) }
func threadFsgid() uint32 { return setfsgid(noID) }

// setThreadGroups sets the supplementary groups of the calling thread only.
func setThreadGroups(groups []uint32) fuse.Errno {
	var p uintptr
	if len(groups) > 0 {
		p = uintptr(unsafe.Pointer(&groups[0]))
	}
	_, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(groups)), p, 0)
	return e
}

// canSetGroups reports whether this process may change its supplementary groups: not in a user
// namespace whose gid_map was written without newgidmap (setgroups is denied there, and the
// daemon's groups, which it cannot drop, stay with every request).
func canSetGroups(groups []uint32) bool {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return setThreadGroups(groups) == 0 // the same groups: a no-op when allowed
}

// ownFsids reads the daemon's fsuid and fsgid (those of every thread while no request switched).
func ownFsids() (uid, gid uint32) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return threadFsuid(), threadFsgid()
}

// callerCreds is the state needed to undo a credential switch.
type callerCreds struct {
	prevUID, prevGID uint32
	groupsChanged    bool
}

// asCaller runs op with the caller's credentials when the daemon may switch them (SetCreds);
// otherwise op runs as the daemon. A forbidden id gets EPERM.
func (fs *FS) asCaller(ctx *fuse.Context, op func() fuse.Errno) fuse.Errno {
	if !fs.o.SetCreds {
		return op()
	}
	uid, err := fs.uids.GuestToNS(ctx.UID)
	if err != nil {
		return syscall.EPERM
	}
	gid, err := fs.gids.GuestToNS(ctx.GID)
	if err != nil {
		return syscall.EPERM
	}
	if uid == fs.ownFsuid && gid == fs.ownFsgid && !fs.changesGroups(ctx) {
		// The switch would change nothing: skip its eight syscalls. This is the common case of
		// a root guest on a rootless uvfsd (the Rust virtiofsd skips it for root as well).
		return op()
	}
	runtime.LockOSThread()
	c, e := fs.switchCreds(ctx, uid, gid)
	if e == 0 {
		e = op()
	}
	if !fs.restoreCreds(c) {
		// Not seen in practice (the daemon keeps CAP_SETUID/CAP_SETGID). The thread would serve
		// the next requests with the caller's ids, and a long-lived worker goroutine would keep
		// it: stop rather than go on with the wrong credentials.
		panic("passfs: could not restore the thread's credentials after a request")
	}
	runtime.UnlockOSThread()
	return e
}

// changesGroups reports whether switchCreds would set the thread's supplementary groups: to the
// caller's one (CREATE_SUPP_GROUP) or to none in place of the daemon's.
func (fs *FS) changesGroups(ctx *fuse.Context) bool {
	return fs.setGroupsOK && (ctx.HasSuppGID || len(fs.groups) > 0)
}

func (fs *FS) switchCreds(ctx *fuse.Context, uid, gid uint32) (callerCreds, fuse.Errno) {
	var c callerCreds
	// The caller's only supplementary group is the one CREATE_SUPP_GROUP names (the group that
	// owns the parent directory, so that a setgid directory owned by one of the caller's
	// groups works as it does locally). The daemon's own groups are never the caller's.
	var one [1]uint32
	groups := one[:0]
	if ctx.HasSuppGID {
		if g, err := fs.gids.GuestToNS(ctx.SuppGID); err == nil {
			groups = append(groups, g)
		}
	}
	if fs.setGroupsOK && (len(groups) > 0 || len(fs.groups) > 0) {
		if e := setThreadGroups(groups); e != 0 {
			return c, e
		}
		c.groupsChanged = true
	}
	c.prevGID = setfsgid(gid)
	c.prevUID = setfsuid(uid)
	// setfsuid reports no error: read the ids back. An id the namespace does not map stays unset.
	if threadFsgid() != gid || threadFsuid() != uid {
		return c, syscall.EPERM
	}
	return c, 0
}

// restoreCreds undoes switchCreds and reports whether the thread is clean again.
func (fs *FS) restoreCreds(c callerCreds) bool {
	setfsuid(c.prevUID)
	setfsgid(c.prevGID)
	ok := threadFsuid() == c.prevUID && threadFsgid() == c.prevGID
	if c.groupsChanged && setThreadGroups(fs.groups) != 0 {
		ok = false
	}
	return ok
}

// createMode applies the umask the kernel sent when it left masking to us (DONT_MASK, which the
// guest asks for with POSIX ACLs): as the kernel does locally, the umask applies only when the
// parent directory has no default ACL; with one, the ACL decides the permissions. Without
// DONT_MASK the guest already masked the mode.
func (fs *FS) createMode(parent *inode, mode, umask uint32) uint32 {
	if !fs.dontMask.Load() || umask == 0 {
		return mode
	}
	if fs.o.PosixACL && fs.hasDefaultACL(parent) {
		return mode
	}
	return mode &^ umask
}

var defaultACLName = []byte("system.posix_acl_default\x00")

func (fs *FS) hasDefaultACL(dir *inode) bool {
	n, e := fs.nodeXattr(dir, xattrGet, &defaultACLName[0], nil, 0)
	return e == 0 && n > 0
}
