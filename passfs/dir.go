package passfs

import (
	"encoding/binary"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
)

// direntBufSize is the getdents64 buffer each open directory keeps.
const direntBufSize = 32 << 10

// dirStream is the reading state of an open directory. Entries that getdents64 returned but that
// did not fit into the last reply stay in buf for the next READDIR.
type dirStream struct {
	mu       sync.Mutex
	buf      []byte
	pos, end int    // unread entries are buf[pos:end]
	offset   uint64 // d_off of the last entry sent: where the guest continues; 0 at the start
	node     *inode // the directory: the parent of the nodes READDIRPLUS adds
}

// Opendir opens a directory node for reading.
func (fs *FS) Opendir(ctx *fuse.Context, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Errno {
	n, e := fs.node(ctx.NodeID)
	if e != 0 {
		return e
	}
	defer n.unpin()
	if !n.isDir() {
		return syscall.ENOTDIR
	}
	fd, e := fs.openNode(n, unix.O_RDONLY|unix.O_DIRECTORY)
	if e != 0 {
		return e
	}
	out.Fh = fs.handles.add(&handle{fd: fd, dir: &dirStream{buf: make([]byte, direntBufSize), node: n}})
	out.OpenFlags = fs.openFlags(true)
	return 0
}

// Releasedir closes a directory handle.
func (fs *FS) Releasedir(ctx *fuse.Context, in *fuse.ReleaseIn) fuse.Errno {
	if !fs.handles.remove(in.Fh) {
		return syscall.EBADF
	}
	return 0
}

// Offsets of struct linux_dirent64's fields.
const (
	direntOffOff    = 8
	direntReclenOff = 16
	direntTypeOff   = 18
	direntNameOff   = 19
)

// Readdir fills buf with entries from in.Offset on. For READDIRPLUS every entry but "." and ".."
// is looked up (counting a lookup), and only after DirBuffer.Fits said it will be sent.
func (fs *FS) Readdir(ctx *fuse.Context, in *fuse.ReadIn, plus bool, buf *fuse.DirBuffer) fuse.Errno {
	h, e := fs.handle(in.Fh)
	if e != 0 {
		return e
	}
	defer h.unpin()
	d := h.dir
	if d == nil {
		return syscall.ENOTDIR
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if in.Offset != d.offset {
		if in.Offset > 1<<63-1 {
			return syscall.EINVAL
		}
		if _, err := unix.Seek(h.fd, int64(in.Offset), unix.SEEK_SET); err != nil {
			return errnoOf(err)
		}
		d.pos, d.end, d.offset = 0, 0, in.Offset
	}
	for {
		if d.pos >= d.end {
			r, _, e := unix.Syscall(unix.SYS_GETDENTS64, uintptr(h.fd), uintptr(unsafe.Pointer(&d.buf[0])), uintptr(len(d.buf)))
			if e != 0 {
				if buf.Empty() {
					return e
				}
				return 0
			}
			if r == 0 {
				return 0 // end of directory
			}
			d.pos, d.end = 0, int(r)
		}
		rec := d.buf[d.pos:d.end]
		if len(rec) < direntNameOff+1 {
			return syscall.EIO
		}
		reclen := int(binary.NativeEndian.Uint16(rec[direntReclenOff:]))
		if reclen < direntNameOff+1 || reclen > len(rec) {
			return syscall.EIO
		}
		rec = rec[:reclen]
		name := rec[direntNameOff:]
		nul := 0
		for nul < len(name) && name[nul] != 0 {
			nul++
		}
		if nul == len(name) {
			return syscall.EIO
		}
		name = name[:nul]
		ino := binary.NativeEndian.Uint64(rec)
		off := binary.NativeEndian.Uint64(rec[direntOffOff:])
		typ := uint32(rec[direntTypeOff])
		if !buf.Fits(len(name)) {
			return 0
		}
		var entry fuse.EntryOut
		var ep *fuse.EntryOut
		if plus && !isDotName(name) {
			e := fs.lookupIn(d.node, h.fd, fuse.CString(rec[direntNameOff:direntNameOff+nul+1]), &entry)
			if e == syscall.ENOENT {
				d.pos += reclen // removed since getdents64 saw it: skip
				d.offset = off
				continue
			}
			if e != 0 {
				if buf.Empty() {
					return e
				}
				return 0
			}
			ep = &entry
			ino = entry.Attr.Ino
		}
		if !buf.Add(ino, off, typ, name, ep) {
			if ep != nil {
				fs.inodes.forget(ep.NodeID, 1)
			}
			return 0
		}
		d.pos += reclen
		d.offset = off
	}
}

func isDotName(name []byte) bool {
	return len(name) == 1 && name[0] == '.' || len(name) == 2 && name[0] == '.' && name[1] == '.'
}
