package passfs

import (
	"bytes"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
)

// Extended attributes. f*xattr do not work on O_PATH fds, so regular files and directories are
// opened through /proc/self/fd; symlinks and special files (which must never be opened) are
// reached by path from a helper thread whose working directory is /proc/self/fd (xattr_special.go).
// Without Options.Xattr every xattr request gets ENOSYS, as in virtiofsd: the guest then stops
// asking.

type xattrOp int

const (
	xattrGet xattrOp = iota
	xattrSet
	xattrList
	xattrRemove
)

func ptrOrNil(b []byte) uintptr {
	if len(b) == 0 {
		return 0
	}
	return uintptr(unsafe.Pointer(&b[0]))
}

// fdXattr runs op on an open fd.
func fdXattr(op xattrOp, fd int, name *byte, buf []byte, flags int) (int, fuse.Errno) {
	var r uintptr
	var e syscall.Errno
	switch op {
	case xattrGet:
		r, _, e = unix.Syscall6(unix.SYS_FGETXATTR, uintptr(fd), ptr(name), ptrOrNil(buf), uintptr(len(buf)), 0, 0)
	case xattrSet:
		r, _, e = unix.Syscall6(unix.SYS_FSETXATTR, uintptr(fd), ptr(name), ptrOrNil(buf), uintptr(len(buf)), uintptr(flags), 0)
	case xattrList:
		r, _, e = unix.Syscall(unix.SYS_FLISTXATTR, uintptr(fd), ptrOrNil(buf), uintptr(len(buf)))
	case xattrRemove:
		r, _, e = unix.Syscall(unix.SYS_FREMOVEXATTR, uintptr(fd), ptr(name), 0)
	}
	return int(r), e
}

// pathXattr runs op on a path, following a final (magic) link.
func pathXattr(op xattrOp, path *byte, name *byte, buf []byte, flags int) (int, fuse.Errno) {
	var r uintptr
	var e syscall.Errno
	switch op {
	case xattrGet:
		r, _, e = unix.Syscall6(unix.SYS_GETXATTR, ptr(path), ptr(name), ptrOrNil(buf), uintptr(len(buf)), 0, 0)
	case xattrSet:
		r, _, e = unix.Syscall6(unix.SYS_SETXATTR, ptr(path), ptr(name), ptrOrNil(buf), uintptr(len(buf)), uintptr(flags), 0)
	case xattrList:
		r, _, e = unix.Syscall(unix.SYS_LISTXATTR, ptr(path), ptrOrNil(buf), uintptr(len(buf)))
	case xattrRemove:
		r, _, e = unix.Syscall(unix.SYS_REMOVEXATTR, ptr(path), ptr(name), 0)
	}
	return int(r), e
}

// nodeXattr runs op on a node.
func (fs *FS) nodeXattr(n *inode, op xattrOp, name *byte, buf []byte, flags int) (int, fuse.Errno) {
	if n.pseudo {
		return pseudoXattr(op)
	}
	if !n.openable() {
		return fs.specialXattr.do(fs.procSelfFD, op, n.fd, name, buf, flags)
	}
	fd, e := fs.openNode(n, unix.O_RDONLY|unix.O_NONBLOCK)
	if e != 0 {
		return 0, e
	}
	defer closeFD(fd)
	return fdXattr(op, fd, name, buf, flags)
}

// xattrNameBuf holds a mapped name: the longest guest name plus room for a mapping's prefix.
type xattrNameBuf [320]byte

// hostXattrName maps a guest name for the host, NUL-terminated, into buf when it fits.
func (fs *FS) hostXattrName(buf *xattrNameBuf, name fuse.CString) ([]byte, fuse.Errno) {
	if len(name) < 2 {
		return nil, syscall.EINVAL
	}
	if fs.o.XattrMap == nil {
		return name, 0
	}
	host, e := fs.o.XattrMap.ToHost(buf[:0], name.Bytes())
	if e != 0 {
		return nil, e
	}
	if len(host) == 0 || bytes.IndexByte(host, 0) >= 0 {
		return nil, syscall.EINVAL
	}
	return append(host, 0), 0
}

func (fs *FS) xattrNode(ctx *fuse.Context) (*inode, fuse.Errno) {
	if !fs.o.Xattr {
		return nil, syscall.ENOSYS
	}
	return fs.node(ctx.NodeID)
}

// Getxattr reads an attribute (its length when size is 0); the ids inside a POSIX ACL are
// translated for the guest (acl.go).
func (fs *FS) Getxattr(ctx *fuse.Context, name fuse.CString, size uint32, dst []byte) (int, fuse.Errno) {
	n, e := fs.xattrNode(ctx)
	if e != 0 {
		return 0, e
	}
	defer n.unpin()
	var nameBuf xattrNameBuf
	host, e := fs.hostXattrName(&nameBuf, name)
	if e == syscall.EPERM {
		// A name the map refuses reads as absent, as the C virtiofsd answers and as
		// LISTXATTR hides it: tools probe names like security.selinux and take EPERM as a
		// failure, ENODATA as "none".
		return 0, syscall.ENODATA
	}
	if e != 0 {
		return 0, e
	}
	if fs.mapped && isOverrideHostName(host) {
		return 0, syscall.ENODATA // the mapped model's own attribute
	}
	if int(size) > len(dst) {
		return 0, syscall.EINVAL
	}
	l, e := fs.nodeXattr(n, xattrGet, &host[0], dst[:size], 0)
	if e == 0 && size != 0 && isACLName(name.Bytes()) && fs.translatesACLs() {
		e = aclToGuest(dst[:l], fs.uids, fs.gids)
	}
	return l, e
}

// Setxattr sets an attribute; the ids inside a POSIX ACL are translated (acl.go). With SETXATTR_ACL_KILL_SGID (the guest found that the caller may not
// keep the set-group-id bit) setting an access ACL also clears S_ISGID.
func (fs *FS) Setxattr(ctx *fuse.Context, in *fuse.SetxattrIn, name fuse.CString, value []byte) fuse.Errno {
	n, e := fs.xattrNode(ctx)
	if e != 0 {
		return e
	}
	defer n.unpin()
	if e := fs.readonlyErr(); e != 0 {
		return e
	}
	var nameBuf xattrNameBuf
	host, e := fs.hostXattrName(&nameBuf, name)
	if e != 0 {
		return e
	}
	if fs.mapped && isOverrideHostName(host) {
		return syscall.EPERM
	}
	if in.Flags&^(unix.XATTR_CREATE|unix.XATTR_REPLACE) != 0 {
		return syscall.EINVAL
	}
	var aclBuf aclValueBuf
	if isACLName(name.Bytes()) && fs.translatesACLs() {
		if value, e = fs.aclValueToNS(&aclBuf, value); e != 0 {
			return e
		}
	}
	if _, e := fs.nodeXattr(n, xattrSet, &host[0], value, int(in.Flags)); e != 0 {
		return e
	}
	if in.SetxattrFlags&fuse.SetxattrACLKillSgid != 0 && bytes.Equal(name.Bytes(), []byte("system.posix_acl_access")) {
		return fs.clearSgid(n)
	}
	return 0
}

func (fs *FS) clearSgid(n *inode) fuse.Errno {
	var st unix.Statx_t
	if e := fstatx(n.fd, &st); e != 0 {
		return e
	}
	if st.Mode&unix.S_ISGID == 0 || !n.openable() {
		return 0
	}
	var name fdName
	return fs.chmod(n, nil, &name, uint32(st.Mode)&07777&^unix.S_ISGID)
}

// Removexattr removes an attribute.
func (fs *FS) Removexattr(ctx *fuse.Context, name fuse.CString) fuse.Errno {
	n, e := fs.xattrNode(ctx)
	if e != 0 {
		return e
	}
	defer n.unpin()
	if e := fs.readonlyErr(); e != 0 {
		return e
	}
	var nameBuf xattrNameBuf
	host, e := fs.hostXattrName(&nameBuf, name)
	if e != 0 {
		return e
	}
	if fs.mapped && isOverrideHostName(host) {
		return syscall.EPERM
	}
	_, e = fs.nodeXattr(n, xattrRemove, &host[0], nil, 0)
	return e
}

// Listxattr lists attribute names (the list's length when size is 0). With a mapping (or in the
// mapped ownership model, whose attribute the guest does not see), the host list is read whole and
// translated; names the mapping hides are left out.
func (fs *FS) Listxattr(ctx *fuse.Context, size uint32, dst []byte) (int, fuse.Errno) {
	n, e := fs.xattrNode(ctx)
	if e != 0 {
		return 0, e
	}
	defer n.unpin()
	if int(size) > len(dst) {
		return 0, syscall.EINVAL
	}
	if fs.o.XattrMap == nil && !fs.mapped {
		return fs.nodeXattr(n, xattrList, nil, dst[:size], 0)
	}
	list, e := fs.hostXattrList(n)
	if e != 0 {
		return 0, e
	}
	total := 0
	out := dst[:size]
	var guestBuf xattrNameBuf
	for len(list) > 0 {
		end := bytes.IndexByte(list, 0)
		if end < 0 {
			end = len(list)
		}
		hostName := list[:end]
		list = list[min(end+1, len(list)):]
		if fs.mapped && string(hostName) == OverrideXattr {
			continue
		}
		guest, ok := hostName, true
		if fs.o.XattrMap != nil {
			guest, ok = fs.o.XattrMap.FromHost(guestBuf[:0], hostName)
		}
		if !ok || len(guest) == 0 {
			continue
		}
		if size != 0 {
			if total+len(guest)+1 > len(out) {
				return 0, syscall.ERANGE
			}
			copy(out[total:], guest)
			out[total+len(guest)] = 0
		}
		total += len(guest) + 1
	}
	return total, 0
}

// hostXattrList reads the node's whole host list, retrying if it grows between the calls.
func (fs *FS) hostXattrList(n *inode) ([]byte, fuse.Errno) {
	for range 5 {
		l, e := fs.nodeXattr(n, xattrList, nil, nil, 0)
		if e != 0 {
			return nil, e
		}
		if l == 0 {
			return nil, 0
		}
		buf := make([]byte, l)
		l, e = fs.nodeXattr(n, xattrList, nil, buf, 0)
		if e == syscall.ERANGE {
			continue
		}
		if e != 0 {
			return nil, e
		}
		return buf[:l], 0
	}
	return nil, syscall.ERANGE
}

// applySecCtx labels a new node with the security context the guest sent (SECURITY_CTX), when
// Options.SecurityLabel is on.
func (fs *FS) applySecCtx(ctx *fuse.Context, nodeID uint64) fuse.Errno {
	if !fs.o.SecurityLabel || len(ctx.SecCtx) == 0 || len(ctx.SecCtxName) < 2 {
		return 0
	}
	n, e := fs.node(nodeID)
	if e != 0 {
		return e
	}
	defer n.unpin()
	var nameBuf xattrNameBuf
	host, e := fs.hostXattrName(&nameBuf, ctx.SecCtxName)
	if e != 0 {
		return e
	}
	_, e = fs.nodeXattr(n, xattrSet, &host[0], ctx.SecCtx, 0)
	return e
}
