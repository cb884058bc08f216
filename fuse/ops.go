package fuse

import "syscall"

// opRow describes one opcode: its name, the size of its fixed argument struct, and its handler.
// Handlers decode the arguments after that struct (names, data) themselves, with the checked
// helpers in codec.go. Rows with no handler answer ENOSYS.
type opRow struct {
	name    string
	inSize  int
	noReply bool
	handle  func(s *Server, r *request) Errno
}

// opTable is the one place that says what each opcode carries.
var opTable = [...]opRow{
	OpLookup:        {name: "LOOKUP", handle: (*Server).lookup},
	OpForget:        {name: "FORGET", inSize: sizeOf[ForgetIn](), noReply: true, handle: (*Server).forget},
	OpGetattr:       {name: "GETATTR", inSize: sizeOf[GetattrIn](), handle: (*Server).getattr},
	OpSetattr:       {name: "SETATTR", inSize: sizeOf[SetattrIn](), handle: (*Server).setattr},
	OpReadlink:      {name: "READLINK", handle: (*Server).readlink},
	OpSymlink:       {name: "SYMLINK", handle: (*Server).symlink},
	OpMknod:         {name: "MKNOD", inSize: sizeOf[MknodIn](), handle: (*Server).mknod},
	OpMkdir:         {name: "MKDIR", inSize: sizeOf[MkdirIn](), handle: (*Server).mkdir},
	OpUnlink:        {name: "UNLINK", handle: (*Server).unlink},
	OpRmdir:         {name: "RMDIR", handle: (*Server).rmdir},
	OpRename:        {name: "RENAME", inSize: sizeOf[RenameIn](), handle: (*Server).rename},
	OpLink:          {name: "LINK", inSize: sizeOf[LinkIn](), handle: (*Server).link},
	OpOpen:          {name: "OPEN", inSize: sizeOf[OpenIn](), handle: (*Server).open},
	OpRead:          {name: "READ", inSize: sizeOf[ReadIn](), handle: (*Server).read},
	OpWrite:         {name: "WRITE", inSize: sizeOf[WriteIn](), handle: (*Server).write},
	OpStatfs:        {name: "STATFS", handle: (*Server).statfs},
	OpRelease:       {name: "RELEASE", inSize: sizeOf[ReleaseIn](), handle: (*Server).release},
	OpFsync:         {name: "FSYNC", inSize: sizeOf[FsyncIn](), handle: (*Server).fsync},
	OpSetxattr:      {name: "SETXATTR", inSize: 8, handle: (*Server).setxattr},
	OpGetxattr:      {name: "GETXATTR", inSize: sizeOf[GetxattrIn](), handle: (*Server).getxattr},
	OpListxattr:     {name: "LISTXATTR", inSize: sizeOf[GetxattrIn](), handle: (*Server).listxattr},
	OpRemovexattr:   {name: "REMOVEXATTR", handle: (*Server).removexattr},
	OpFlush:         {name: "FLUSH", inSize: sizeOf[FlushIn](), handle: (*Server).flush},
	OpInit:          {name: "INIT", inSize: 16, handle: (*Server).init},
	OpOpendir:       {name: "OPENDIR", inSize: sizeOf[OpenIn](), handle: (*Server).opendir},
	OpReaddir:       {name: "READDIR", inSize: sizeOf[ReadIn](), handle: (*Server).readdir},
	OpReleasedir:    {name: "RELEASEDIR", inSize: sizeOf[ReleaseIn](), handle: (*Server).releasedir},
	OpFsyncdir:      {name: "FSYNCDIR", inSize: sizeOf[FsyncIn](), handle: (*Server).fsyncdir},
	OpGetlk:         {name: "GETLK", inSize: sizeOf[LkIn](), handle: (*Server).getlk},
	OpSetlk:         {name: "SETLK", inSize: sizeOf[LkIn](), handle: (*Server).setlk},
	OpSetlkw:        {name: "SETLKW", inSize: sizeOf[LkIn](), handle: (*Server).setlk},
	OpAccess:        {name: "ACCESS", inSize: sizeOf[AccessIn](), handle: (*Server).access},
	OpCreate:        {name: "CREATE", inSize: sizeOf[CreateIn](), handle: (*Server).create},
	OpInterrupt:     {name: "INTERRUPT", inSize: sizeOf[InterruptIn](), noReply: true, handle: (*Server).interrupt},
	OpBmap:          {name: "BMAP"},
	OpDestroy:       {name: "DESTROY", handle: (*Server).destroy},
	OpIoctl:         {name: "IOCTL"},
	OpPoll:          {name: "POLL"},
	OpNotifyReply:   {name: "NOTIFY_REPLY"},
	OpBatchForget:   {name: "BATCH_FORGET", inSize: sizeOf[BatchForgetIn](), noReply: true, handle: (*Server).batchForget},
	OpFallocate:     {name: "FALLOCATE", inSize: sizeOf[FallocateIn](), handle: (*Server).fallocate},
	OpReaddirplus:   {name: "READDIRPLUS", inSize: sizeOf[ReadIn](), handle: (*Server).readdir},
	OpRename2:       {name: "RENAME2", inSize: sizeOf[Rename2In](), handle: (*Server).rename},
	OpLseek:         {name: "LSEEK", inSize: sizeOf[LseekIn](), handle: (*Server).lseek},
	OpCopyFileRange: {name: "COPY_FILE_RANGE", inSize: sizeOf[CopyFileRangeIn](), handle: (*Server).copyFileRange},
	OpSetupMapping:  {name: "SETUPMAPPING"},
	OpRemoveMapping: {name: "REMOVEMAPPING"},
	OpSyncfs:        {name: "SYNCFS", inSize: sizeOf[SyncfsIn](), handle: (*Server).syncfs},
	OpTmpfile:       {name: "TMPFILE", inSize: sizeOf[CreateIn](), handle: (*Server).tmpfile},
	OpStatx:         {name: "STATX", inSize: sizeOf[StatxIn](), handle: (*Server).statx},
}

// OpName returns the opcode's name for logs.
func OpName(op Opcode) string {
	if int(op) < len(opTable) && opTable[op].name != "" {
		return opTable[op].name
	}
	return "UNKNOWN"
}

// in returns the request's fixed argument struct.
func in[T any](r *request) *T { return argAt[T](r.args, 0) }

// out reserves the reply payload for a struct of type T and returns it, zeroed.
func out[T any](r *request) *T {
	p := r.payload(sizeOf[T]())
	return argAt[T](p, 0)
}

// names decodes NUL-terminated names after the fixed struct of size skip, each checked as a file
// name. Bytes after the last name are ignored (the kernel sends none).
func (r *request) names(skip int, dots bool, dst ...*CString) Errno {
	rest := r.args[skip:]
	for _, d := range dst {
		n, tail, ok := cstring(rest, nameMax)
		if !ok {
			if len(rest) > nameMax {
				return syscall.ENAMETOOLONG
			}
			return syscall.EINVAL
		}
		if e := checkName(n, dots); e != OK {
			return e
		}
		*d, rest = n, tail
	}
	return OK
}

func (s *Server) lookup(r *request) Errno {
	var name CString
	if e := r.names(0, true, &name); e != OK {
		return e
	}
	return s.fs.Lookup(&r.ctx, name, out[EntryOut](r))
}

func (s *Server) forget(r *request) Errno {
	s.fs.Forget(r.hdr.NodeID, in[ForgetIn](r).Nlookup)
	return OK
}

func (s *Server) batchForget(r *request) Errno {
	count := int(in[BatchForgetIn](r).Count)
	entries := r.args[sizeOf[BatchForgetIn]():]
	one := sizeOf[ForgetOne]()
	if count > len(entries)/one {
		count = len(entries) / one // forget what was sent; a short list is the guest's problem
	}
	for i := 0; i < count; i++ {
		f := argAt[ForgetOne](entries, i*one)
		s.fs.Forget(f.NodeID, f.Nlookup)
	}
	return OK
}

func (s *Server) getattr(r *request) Errno {
	return s.fs.Getattr(&r.ctx, in[GetattrIn](r), out[AttrOut](r))
}

func (s *Server) statx(r *request) Errno {
	return s.fs.Statx(&r.ctx, in[StatxIn](r), out[StatxOut](r))
}

func (s *Server) setattr(r *request) Errno {
	return s.fs.Setattr(&r.ctx, in[SetattrIn](r), out[AttrOut](r))
}

func (s *Server) readlink(r *request) Errno {
	buf := r.payload(pathMax)
	n, e := s.fs.Readlink(&r.ctx, buf)
	if e != OK {
		return e
	}
	if n < 0 || n > len(buf) {
		return syscall.EIO
	}
	r.replyN = n
	return OK
}

func (s *Server) symlink(r *request) Errno {
	var name CString
	if e := r.names(0, false, &name); e != OK {
		return e
	}
	target, _, ok := cstring(r.args[len(name):], pathMax)
	if !ok || len(target) < 2 {
		return syscall.EINVAL
	}
	return s.fs.Symlink(&r.ctx, name, target, out[EntryOut](r))
}

func (s *Server) mknod(r *request) Errno {
	var name CString
	if e := r.names(sizeOf[MknodIn](), false, &name); e != OK {
		return e
	}
	return s.fs.Mknod(&r.ctx, in[MknodIn](r), name, out[EntryOut](r))
}

func (s *Server) mkdir(r *request) Errno {
	var name CString
	if e := r.names(sizeOf[MkdirIn](), false, &name); e != OK {
		return e
	}
	return s.fs.Mkdir(&r.ctx, in[MkdirIn](r), name, out[EntryOut](r))
}

func (s *Server) unlink(r *request) Errno {
	var name CString
	if e := r.names(0, false, &name); e != OK {
		return e
	}
	return s.fs.Unlink(&r.ctx, name)
}

func (s *Server) rmdir(r *request) Errno {
	var name CString
	if e := r.names(0, false, &name); e != OK {
		return e
	}
	return s.fs.Rmdir(&r.ctx, name)
}

func (s *Server) rename(r *request) Errno {
	var oldName, newName CString
	var newDir uint64
	var flags uint32
	skip := sizeOf[RenameIn]()
	if r.hdr.Opcode == OpRename2 {
		a := in[Rename2In](r)
		newDir, flags, skip = a.Newdir, a.Flags, sizeOf[Rename2In]()
	} else {
		newDir = in[RenameIn](r).Newdir
	}
	if e := r.names(skip, false, &oldName, &newName); e != OK {
		return e
	}
	return s.fs.Rename(&r.ctx, newDir, flags, oldName, newName)
}

func (s *Server) link(r *request) Errno {
	var name CString
	if e := r.names(sizeOf[LinkIn](), false, &name); e != OK {
		return e
	}
	return s.fs.Link(&r.ctx, in[LinkIn](r), name, out[EntryOut](r))
}

func (s *Server) open(r *request) Errno {
	return s.fs.Open(&r.ctx, in[OpenIn](r), out[OpenOut](r))
}

func (s *Server) opendir(r *request) Errno {
	return s.fs.Opendir(&r.ctx, in[OpenIn](r), out[OpenOut](r))
}

// createReply is CREATE's and TMPFILE's reply: an entry followed by an open handle.
type createReply struct {
	Entry EntryOut
	Open  OpenOut
}

func (s *Server) create(r *request) Errno {
	var name CString
	if e := r.names(sizeOf[CreateIn](), false, &name); e != OK {
		return e
	}
	o := out[createReply](r)
	return s.fs.Create(&r.ctx, in[CreateIn](r), name, &o.Entry, &o.Open)
}

func (s *Server) tmpfile(r *request) Errno {
	o := out[createReply](r)
	return s.fs.Tmpfile(&r.ctx, in[CreateIn](r), &o.Entry, &o.Open)
}

func (s *Server) read(r *request) Errno {
	a := in[ReadIn](r)
	if a.Size > s.maxWrite {
		return syscall.EINVAL
	}
	room := totalLen(r.outBufs) - outHeaderSize
	if room < 0 {
		return syscall.EINVAL
	}
	size := min(int(a.Size), room)
	r.iov = window(r.iov[:0], r.outBufs, outHeaderSize, size)
	n, e := s.fs.Read(&r.ctx, a, r.iov)
	if e != OK {
		return e
	}
	if n < 0 || n > size {
		return syscall.EIO
	}
	r.replyN, r.direct = n, true
	return OK
}

func (s *Server) write(r *request) Errno {
	a := in[WriteIn](r)
	start := inHeaderSize + sizeOf[WriteIn]()
	if a.Size > s.maxWrite || int(r.hdr.Len) < start+int(a.Size) {
		return syscall.EINVAL
	}
	r.iov = window(r.iov[:0], r.inBufs, start, int(a.Size))
	n, e := s.fs.Write(&r.ctx, a, r.iov)
	if e != OK {
		return e
	}
	if n < 0 || n > int(a.Size) {
		return syscall.EIO
	}
	out[WriteOut](r).Size = uint32(n)
	return OK
}

func (s *Server) statfs(r *request) Errno {
	return s.fs.Statfs(&r.ctx, out[StatfsOut](r))
}

func (s *Server) release(r *request) Errno {
	return s.fs.Release(&r.ctx, in[ReleaseIn](r))
}

func (s *Server) releasedir(r *request) Errno {
	return s.fs.Releasedir(&r.ctx, in[ReleaseIn](r))
}

func (s *Server) fsync(r *request) Errno {
	return s.fs.Fsync(&r.ctx, in[FsyncIn](r))
}

func (s *Server) fsyncdir(r *request) Errno {
	return s.fs.Fsyncdir(&r.ctx, in[FsyncIn](r))
}

func (s *Server) flush(r *request) Errno {
	return s.fs.Flush(&r.ctx, in[FlushIn](r))
}

func (s *Server) setxattr(r *request) Errno {
	var a SetxattrIn
	skip := 8 // without SETXATTR_EXT the kernel sends only size and flags
	if s.setxattrExt.Load() {
		if len(r.args) < sizeOf[SetxattrIn]() {
			return syscall.EINVAL
		}
		skip = sizeOf[SetxattrIn]()
		a = *in[SetxattrIn](r)
	} else {
		a.Size, a.Flags = in[[2]uint32](r)[0], in[[2]uint32](r)[1]
	}
	name, rest, ok := cstring(r.args[skip:], nameMax)
	if !ok || len(name) < 2 {
		return syscall.EINVAL
	}
	if a.Size > xattrSizeMax || int(a.Size) > len(rest) {
		return syscall.E2BIG
	}
	return s.fs.Setxattr(&r.ctx, &a, name, rest[:a.Size])
}

func (s *Server) getxattr(r *request) Errno {
	name, _, ok := cstring(r.args[sizeOf[GetxattrIn]():], nameMax)
	if !ok || len(name) < 2 {
		return syscall.EINVAL
	}
	return s.xattrReply(r, in[GetxattrIn](r).Size, name)
}

func (s *Server) listxattr(r *request) Errno {
	return s.xattrReply(r, in[GetxattrIn](r).Size, nil)
}

// xattrReply answers GETXATTR (name set) and LISTXATTR (name nil): with size 0 the needed length in
// a fuse_getxattr_out, otherwise the value itself.
func (s *Server) xattrReply(r *request, size uint32, name CString) Errno {
	size = min(size, xattrSizeMax)
	var dst []byte
	if size != 0 {
		dst = r.payload(int(size))
	}
	var n int
	var e Errno
	if name != nil {
		n, e = s.fs.Getxattr(&r.ctx, name, size, dst)
	} else {
		n, e = s.fs.Listxattr(&r.ctx, size, dst)
	}
	if e != OK {
		return e
	}
	if size == 0 {
		if n < 0 {
			return syscall.EIO
		}
		out[GetxattrOut](r).Size = uint32(n)
		return OK
	}
	if n < 0 || n > len(dst) {
		return syscall.ERANGE
	}
	r.replyN = n
	return OK
}

func (s *Server) removexattr(r *request) Errno {
	name, _, ok := cstring(r.args, nameMax)
	if !ok || len(name) < 2 {
		return syscall.EINVAL
	}
	return s.fs.Removexattr(&r.ctx, name)
}

func (s *Server) readdir(r *request) Errno {
	a := in[ReadIn](r)
	plus := r.hdr.Opcode == OpReaddirplus
	size := min(int(a.Size), maxReaddir, totalLen(r.outBufs)-outHeaderSize)
	if size < 0 {
		return syscall.EINVAL
	}
	r.dir.Reset(size, plus)
	if e := s.fs.Readdir(&r.ctx, a, plus, &r.dir); e != OK {
		return e
	}
	b := r.dir.Bytes()
	r.iov = window(r.iov[:0], r.outBufs, outHeaderSize, len(b))
	for _, dst := range r.iov {
		b = b[copy(dst, b):]
	}
	r.replyN, r.direct = len(r.dir.Bytes()), true
	return OK
}

func (s *Server) getlk(r *request) Errno {
	return s.fs.Getlk(&r.ctx, in[LkIn](r), out[LkOut](r))
}

func (s *Server) setlk(r *request) Errno {
	return s.fs.Setlk(&r.ctx, in[LkIn](r), r.hdr.Opcode == OpSetlkw)
}

func (s *Server) access(r *request) Errno {
	return s.fs.Access(&r.ctx, in[AccessIn](r))
}

func (s *Server) interrupt(r *request) Errno {
	// Requests are not interruptible here: they run to completion quickly, and SETLKW is the
	// only one that waits; the guest gets its answer when the lock is granted.
	return OK
}

func (s *Server) destroy(r *request) Errno {
	s.fs.Destroy()
	s.inited.Store(false)
	return OK
}

func (s *Server) fallocate(r *request) Errno {
	return s.fs.Fallocate(&r.ctx, in[FallocateIn](r))
}

func (s *Server) lseek(r *request) Errno {
	return s.fs.Lseek(&r.ctx, in[LseekIn](r), out[LseekOut](r))
}

func (s *Server) copyFileRange(r *request) Errno {
	return s.fs.CopyFileRange(&r.ctx, in[CopyFileRangeIn](r), out[WriteOut](r))
}

func (s *Server) syncfs(r *request) Errno {
	return s.fs.Syncfs(&r.ctx, in[SyncfsIn](r))
}
