package fuse

import "syscall"

// Errno is the result of an operation: 0 for success, else a positive Linux errno that the guest
// receives negated in fuse_out_header.error.
type Errno = syscall.Errno

// OK is the zero Errno.
const OK Errno = 0

// Context is what the server knows about the request besides its arguments. Uid, Gid and Pid are the
// guest's (untranslated) ids. It lives in per-request scratch: do not keep it after returning.
type Context struct {
	Opcode Opcode
	Unique uint64
	NodeID uint64
	UID    uint32
	GID    uint32
	PID    uint32
	// SuppGID is the creating process's supplementary group that owns the parent directory, sent by
	// the kernel with CREATE_SUPP_GROUP. Valid only when HasSuppGID is set.
	SuppGID    uint32
	HasSuppGID bool
	// SecCtxName and SecCtx are the security context sent with SECURITY_CTX on creating operations
	// (e.g. "security.selinux" and its value); empty when absent. NUL-terminated CString.
	SecCtxName CString
	SecCtx     []byte
}

// CString is a byte string from the guest that the server checked to end in exactly one NUL: the
// NUL is the last byte. It can be handed to raw syscalls without copying.
type CString []byte

// Bytes returns the string without its terminating NUL.
func (c CString) Bytes() []byte {
	if len(c) == 0 {
		return nil
	}
	return c[:len(c)-1]
}

// Ptr returns a pointer to the NUL-terminated string for raw syscalls.
func (c CString) Ptr() *byte { return &c[0] }

// String returns a copy as a Go string (allocates; for logs and slow paths).
func (c CString) String() string { return string(c.Bytes()) }

// IsDot reports whether the name is "." and IsDotDot whether it is "..".
func (c CString) IsDot() bool    { return len(c) == 2 && c[0] == '.' }
func (c CString) IsDotDot() bool { return len(c) == 3 && c[0] == '.' && c[1] == '.' }

// InitInfo is what INIT negotiated, given to the file system so that it can adapt.
type InitInfo struct {
	Minor    uint32
	Flags    uint64 // the capabilities in force (both sides agreed)
	MaxWrite uint32
}

// FileSystem is implemented by passfs. Every method gets guest input that the server has already
// checked for size; names are checked CStrings: not empty, at most 255 bytes, no '/' (only LOOKUP may
// get "." or ".."). Returning an Errno other than OK must leave no side effect (a failed request
// changes nothing). Out structs are zeroed before the call.
type FileSystem interface {
	Init(info *InitInfo)
	Destroy()

	Lookup(ctx *Context, name CString, out *EntryOut) Errno
	// Forget drops nlookup references from a node; it has no reply.
	Forget(nodeID, nlookup uint64)
	Getattr(ctx *Context, in *GetattrIn, out *AttrOut) Errno
	// Statx is GETATTR with the birth time (STATX, 7.39), which the guest asks for when a
	// statx(2) wants more than the basic fields.
	Statx(ctx *Context, in *StatxIn, out *StatxOut) Errno
	Setattr(ctx *Context, in *SetattrIn, out *AttrOut) Errno
	// Readlink writes the link target into buf (at least 4096 bytes) and returns its length.
	Readlink(ctx *Context, buf []byte) (int, Errno)
	Symlink(ctx *Context, name, target CString, out *EntryOut) Errno
	Mknod(ctx *Context, in *MknodIn, name CString, out *EntryOut) Errno
	Mkdir(ctx *Context, in *MkdirIn, name CString, out *EntryOut) Errno
	Unlink(ctx *Context, name CString) Errno
	Rmdir(ctx *Context, name CString) Errno
	// Rename covers RENAME (flags 0) and RENAME2 (RENAME_NOREPLACE/EXCHANGE/WHITEOUT).
	Rename(ctx *Context, newDir uint64, flags uint32, oldName, newName CString) Errno
	Link(ctx *Context, in *LinkIn, name CString, out *EntryOut) Errno
	Open(ctx *Context, in *OpenIn, out *OpenOut) Errno
	Create(ctx *Context, in *CreateIn, name CString, entry *EntryOut, open *OpenOut) Errno
	// Tmpfile creates an unnamed file in the directory ctx.NodeID (O_TMPFILE).
	Tmpfile(ctx *Context, in *CreateIn, entry *EntryOut, open *OpenOut) Errno
	// Read reads into dst, which is guest memory (zero copy: preadv straight into it).
	Read(ctx *Context, in *ReadIn, dst [][]byte) (int, Errno)
	// Write writes src, which is guest memory, totalling in.Size bytes.
	Write(ctx *Context, in *WriteIn, src [][]byte) (int, Errno)
	Statfs(ctx *Context, out *StatfsOut) Errno
	Release(ctx *Context, in *ReleaseIn) Errno
	Flush(ctx *Context, in *FlushIn) Errno
	Fsync(ctx *Context, in *FsyncIn) Errno
	Opendir(ctx *Context, in *OpenIn, out *OpenOut) Errno
	// Readdir fills buf with entries from in.Offset; plus selects READDIRPLUS entries (each counts
	// as a lookup of its node, except "." and "..", which the kernel ignores).
	Readdir(ctx *Context, in *ReadIn, plus bool, buf *DirBuffer) Errno
	Releasedir(ctx *Context, in *ReleaseIn) Errno
	Fsyncdir(ctx *Context, in *FsyncIn) Errno
	Access(ctx *Context, in *AccessIn) Errno
	Fallocate(ctx *Context, in *FallocateIn) Errno
	Lseek(ctx *Context, in *LseekIn, out *LseekOut) Errno
	CopyFileRange(ctx *Context, in *CopyFileRangeIn, out *WriteOut) Errno
	Syncfs(ctx *Context, in *SyncfsIn) Errno
	Getlk(ctx *Context, in *LkIn, out *LkOut) Errno
	// Setlk sets a POSIX (OFD) lock or, with LkFlock in in.LkFlags, a flock lock. wait is SETLKW:
	// the server calls it on a goroutine of its own, so blocking is fine.
	Setlk(ctx *Context, in *LkIn, wait bool) Errno
	Setxattr(ctx *Context, in *SetxattrIn, name CString, value []byte) Errno
	// Getxattr with size 0 returns the value's length; otherwise it writes the value into dst
	// (len(dst) == size) and returns its length, or ERANGE.
	Getxattr(ctx *Context, name CString, size uint32, dst []byte) (int, Errno)
	// Listxattr is like Getxattr for the NUL-separated list of names.
	Listxattr(ctx *Context, size uint32, dst []byte) (int, Errno)
	Removexattr(ctx *Context, name CString) Errno
}
