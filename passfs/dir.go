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

// Opendir opens a directory node for reading. When the guest agreed to FUSE_NO_OPENDIR_SUPPORT
// (see Init), it answers ENOSYS: the guest then stops sending OPENDIR and RELEASEDIR (two round
// trips per directory it lists) and READDIR arrives with fh 0, served statelessly by readdirNode.
func (fs *FS) Opendir(ctx *fuse.Context, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Errno {
	if fs.noOpendir.Load() {
		return syscall.ENOSYS
	}
	n, fd, e := fs.openDir(ctx.NodeID)
	if e != 0 {
		return e
	}
	defer n.unpin()
	out.Fh = fs.handles.add(fs.newDirHandle(fd, n))
	out.OpenFlags = fs.openFlags(true)
	return 0
}

// newDirHandle makes the handle of directory n open as fd (-1 for a pseudo directory), its stream
// at offset 0. The stream comes from the pool and goes back when the handle's last pin does
// (handle.unpin): a walk opens one per directory, and a fresh 32 KiB buffer each time was most of
// what a cold ls -lR or find allocated, with the GC cycles that come with it. A pseudo directory
// is listed empty and needs no buffer.
func (fs *FS) newDirHandle(fd int, n *inode) *handle {
	h := &handle{fd: fd}
	if n.pseudo {
		h.dir = &dirStream{}
	} else {
		h.dir, h.dirPool = fs.dirScratch.get(), &fs.dirScratch
	}
	h.dir.node = n
	return h
}

// openDir opens the directory node id for reading. The node comes back pinned: unpin it when done.
// A pseudo directory is never opened (pseudofs.go): its fd is -1, and fillDir lists it as empty.
func (fs *FS) openDir(id uint64) (*inode, int, fuse.Errno) {
	n, e := fs.node(id)
	if e != 0 {
		return nil, -1, e
	}
	if !n.isDir() {
		n.unpin()
		return nil, -1, syscall.ENOTDIR
	}
	if n.pseudo {
		return n, -1, 0
	}
	fd, e := fs.openNode(n, unix.O_RDONLY|unix.O_DIRECTORY)
	if e != 0 {
		n.unpin()
		return nil, -1, e
	}
	return n, fd, 0
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
	if in.Fh == 0 && fs.noOpendir.Load() {
		return fs.readdirNode(ctx, in, plus, buf)
	}
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
	return fs.fillDir(d, h.fd, in.Offset, plus, buf)
}

// readdirNode serves READDIR without a handle (no-opendir mode). The directory's fd stays on the
// node for the next READDIR (keptDirFD), so a listing costs at most an lseek where opening through
// /proc/self/fd and closing cost two syscalls and about 4 µs per request. The getdents64 buffer is
// scratch: entries that did not fit are read again from the offset the guest passes back, so no
// memory stays per directory but the fd.
func (fs *FS) readdirNode(ctx *fuse.Context, in *fuse.ReadIn, plus bool, buf *fuse.DirBuffer) fuse.Errno {
	n, e := fs.node(ctx.NodeID)
	if e != 0 {
		return e
	}
	defer n.unpin()
	if !n.isDir() {
		return syscall.ENOTDIR
	}
	d := fs.dirScratch.get()
	defer fs.dirScratch.put(d)
	d.node = n
	if n.pseudo {
		return fs.fillDir(d, -1, in.Offset, plus, buf) // never opened (pseudofs.go)
	}
	kept, e := fs.keptDirFD(n)
	if e != 0 {
		return e
	}
	if kept == nil {
		// Another READDIR of this directory uses the kept fd: this one opens its own.
		fd, e := fs.openNode(n, unix.O_RDONLY|unix.O_DIRECTORY)
		if e != 0 {
			return e
		}
		defer closeFD(fd)
		return fs.fillDir(d, fd, in.Offset, plus, buf)
	}
	defer kept.unpin()
	pos := kept.dir
	defer pos.mu.Unlock()
	// fillDir seeks unless the guest continues where the fd stands.
	d.offset = pos.offset
	e = fs.fillDir(d, kept.fd, in.Offset, plus, buf)
	if e == 0 && d.pos >= d.end {
		pos.offset = d.offset // every entry getdents64 returned was used: the fd stands after the last
	} else {
		pos.offset = unknownDirPos
	}
	return e
}

// unknownDirPos is a kept directory fd's position when it is not the d_off of the last entry
// used: no offset the guest may pass (fillDir refuses those above 1<<63-1), so the next READDIR
// seeks.
const unknownDirPos = ^uint64(0)

// keptDirFD returns the directory node n's kept fd for handle-less READDIRs, pinned and with its
// dir.mu held (dir.offset is where the fd stands), opening it if there is none; or nil if another
// READDIR holds it. The fd sits in the node's read data slot, which directories do not use
// otherwise, so it counts against the fd budget, closes with the node's fds, and closes when idle
// like no-open mode's data fds (nodedata.go).
func (fs *FS) keptDirFD(n *inode) (*handle, fuse.Errno) {
	if !n.dataUsed.Load() {
		n.dataUsed.Store(true)
	}
	h := n.data.read.Load()
	if h == nil || !h.tryPin() {
		fd, e := fs.openNode(n, unix.O_RDONLY|unix.O_DIRECTORY)
		if e != 0 {
			return nil, e
		}
		// Only mu and offset of this dirStream are used; the buffer is the READDIR's scratch.
		h = fs.installData(n, &handle{fd: fd, dir: &dirStream{node: n}}, true, false)
	}
	if h.dir == nil || !h.dir.mu.TryLock() {
		h.unpin()
		return nil, 0
	}
	return h, 0
}

// fillDir adds the entries of the directory open as fd, from offset on, to buf. d holds the
// getdents64 state; the caller owns it.
func (fs *FS) fillDir(d *dirStream, fd int, offset uint64, plus bool, buf *fuse.DirBuffer) fuse.Errno {
	if d.node.pseudo {
		return fillEmptyDir(d.node, offset, buf)
	}
	if offset > 1<<63-1 {
		return syscall.EINVAL // also never matches unknownDirPos
	}
	if offset != d.offset {
		if _, err := unix.Seek(fd, int64(offset), unix.SEEK_SET); err != nil {
			return errnoOf(err)
		}
		d.pos, d.end, d.offset = 0, 0, offset
	}
	for {
		if d.pos >= d.end {
			r, _, e := unix.Syscall(unix.SYS_GETDENTS64, uintptr(fd), uintptr(unsafe.Pointer(&d.buf[0])), uintptr(len(d.buf)))
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
			e := fs.lookupIn(d.node, fd, fuse.CString(rec[direntNameOff:direntNameOff+nul+1]), &entry)
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
			if fs.mapped {
				typ = entry.Attr.Mode & unix.S_IFMT >> 12
			}
		} else if fs.mapped && typ == unix.DT_REG {
			// A regular host file may stand for a symlink or special file.
			typ = fs.mappedDirentType(fd, &rec[direntNameOff])
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

// dirScratchPool keeps getdents64 buffers for handle-less READDIRs and OPENDIR handles, so that
// listing directories allocates no buffer in steady state. It keeps at most dirPoolKeep: a guest
// that once held many directories open must not pin their buffers for good.
type dirScratchPool struct {
	mu   sync.Mutex
	free []*dirStream
}

// dirPoolKeep bounds the pool: a walk holds a few directories open at once (find and rm -rf one
// per level of the path they descend), and 16 buffers are 512 KiB.
const dirPoolKeep = 16

// get returns a stream at offset 0 with an empty buffer and no node.
func (p *dirScratchPool) get() *dirStream {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.free); n > 0 {
		d := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		return d
	}
	return &dirStream{buf: make([]byte, direntBufSize)}
}

// put takes back a stream nobody uses any more.
func (p *dirScratchPool) put(d *dirStream) {
	d.node, d.pos, d.end, d.offset = nil, 0, 0, 0
	p.mu.Lock()
	if len(p.free) < dirPoolKeep {
		p.free = append(p.free, d)
	}
	p.mu.Unlock()
}
