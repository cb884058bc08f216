package fuse

import (
	"sync"
	"sync/atomic"
	"syscall"
)

// Completer is the transport's handle on one request: Complete returns its buffers to the guest with
// the number of bytes written into the device-writable part. vhost.Request satisfies it.
type Completer interface{ Complete(written uint32) }

// scratchKeeper is a Completer that the transport reuses (vhost.Request) and that keeps the
// server's request scratch between uses: serving then takes no lock for it.
type scratchKeeper interface{ ScratchSlot() *any }

// Options say which capabilities the server offers in INIT; the kernel's offer narrows them.
type Options struct {
	// Want is the set of Cap* flags to enable when the kernel offers them.
	Want uint64
	// MaxWrite is the largest WRITE (and READ) the guest may send; 0 means 1 MiB.
	MaxWrite uint32
	// MaxBackground limits the guest's background requests (readahead, async writes); 0 means 256.
	MaxBackground uint16
	Logf          func(format string, a ...any)
	// Debugf, if set, receives what INIT agreed on.
	Debugf func(format string, a ...any)
}

// DefaultWant is what a virtio-fs server offers unless told otherwise.
const DefaultWant = CapAsyncRead | CapParallelDirops | CapBigWrites | CapAutoInvalData | CapAsyncDio |
	CapAtomicOTrunc | CapMaxPages | CapReaddirplus | CapReaddirplusAuto | CapExportSupport |
	CapInitExt | CapCreateSuppGroup | CapAllowIdmap

// Server decodes FUSE requests and calls a FileSystem. It is safe for concurrent use: any number of
// queue workers may call Serve at once.
type Server struct {
	fs     FileSystem
	opts   Options
	inited atomic.Bool
	// setxattrExt is whether INIT agreed on SETXATTR_EXT (the only agreed capability the
	// decoding depends on). Atomic: a guest may send INIT again while other queues serve.
	setxattrExt atomic.Bool
	maxWrite    uint32
	// agreed is what INIT agreed on, kept for a live migration's state (migrate.go).
	agreed atomic.Pointer[InitInfo]

	// free holds request scratch for reuse. Unlike a sync.Pool, which the garbage collector
	// empties, it keeps its ~200 KiB buffers: there are only ever as many as requests in flight.
	freeMu sync.Mutex
	free   []*request

	// served counts requests per opcode, for RequestCounts (what a guest workload costs).
	// Indexed by opcode. Sized by the last opcode rather than len(opTable), which would make the
	// types refer to each other; TestServedHasARowPerOpcode keeps the two in step.
	served [OpStatx + 1]atomic.Uint64
}

// NewServer returns a server for fs.
func NewServer(fs FileSystem, opts Options) *Server {
	s := &Server{fs: fs, opts: opts, maxWrite: opts.MaxWrite}
	if s.maxWrite == 0 {
		s.maxWrite = 1 << 20
	}
	if s.opts.MaxBackground == 0 {
		s.opts.MaxBackground = 256
	}
	return s
}

// request is the per-request scratch: the gathered header and arguments, the reply, and the
// decoded context. Pooled, so that serving a request allocates nothing.
type request struct {
	in      []byte // gathered request (everything for most opcodes; header and struct for WRITE)
	reply   []byte // OutHeader followed by the reply payload
	replyN  int    // payload length
	hdr     *InHeader
	args    []byte // in[inHeaderSize:hdr.Len-extensions]
	ctx     Context
	dir     DirBuffer
	iov     [][]byte
	inBufs  [][]byte
	outBufs [][]byte
	errno   Errno
	// noReply marks FORGET, BATCH_FORGET and INTERRUPT, which the guest does not wait for.
	noReply bool
	// direct marks READ, whose payload was written straight into outBufs after the header.
	direct bool
	// kept: the transport's Completer holds this scratch (scratchKeeper); not on the free list.
	kept   bool
	server *Server // the server a kept scratch belongs to
}

// A new scratch holds what almost every request needs; it grows to the protocol's maxima
// (maxRequest in, a 64 KiB xattr value out) on the first request that needs more, and keeps that.
// The transport keeps a scratch per request slot for good (scratchKeeper), so full-sized buffers
// from the start cost 200 KiB per slot that ever held a request: after a burst 64 deep, 12 MB
// that a daemon idling with 9 MB kept in RSS.
const (
	initialIn    = 4096                    // names, SETATTR, CREATE, small SETXATTR values
	initialReply = outHeaderSize + pathMax // READLINK's PATH_MAX, every fixed-size reply
)

func newRequest(maxWrite uint32) *request {
	return &request{
		in:    alignedBuffer(initialIn),
		reply: alignedBuffer(initialReply),
		// A READ or WRITE of maxWrite bytes spans one guest page per 4 KiB, plus unaligned ends.
		iov: make([][]byte, 0, maxWrite/4096+4),
	}
}

// getRequest takes request scratch from the free list, or makes new scratch.
func (s *Server) getRequest() *request {
	s.freeMu.Lock()
	defer s.freeMu.Unlock()
	if n := len(s.free); n > 0 {
		r := s.free[n-1]
		s.free = s.free[:n-1]
		return r
	}
	return newRequest(s.maxWrite)
}

// scratchFor returns the scratch the Completer keeps for this server, or gives it one.
func (s *Server) scratchFor(c Completer) *request {
	k, ok := c.(scratchKeeper)
	if !ok {
		return s.getRequest()
	}
	slot := k.ScratchSlot()
	if r, ok := (*slot).(*request); ok && r.server == s {
		return r
	}
	r := s.getRequest()
	r.kept, r.server = true, s
	*slot = r
	return r
}

// putRequest returns request scratch to the free list.
func (s *Server) putRequest(r *request) {
	s.freeMu.Lock()
	s.free = append(s.free, r)
	s.freeMu.Unlock()
}

// alignedBuffer returns a byte slice whose first byte is 8-byte aligned, so that wire structs can be
// read in place.
func alignedBuffer(n int) []byte {
	words := make([]uint64, (n+7)/8)
	return asBytesSlice(words)[:n]
}

// payload returns the reply payload area with room for n bytes, or nil if n is too large.
func (r *request) payload(n int) []byte {
	if outHeaderSize+n > len(r.reply) {
		if n > xattrSizeMax {
			return nil
		}
		r.reply = alignedBuffer(outHeaderSize + xattrSizeMax)
	}
	r.replyN = n
	p := r.reply[outHeaderSize : outHeaderSize+n]
	clear(p)
	return p
}

// Serve handles one request: in are its device-readable buffers, out its device-writable buffers.
// It calls c.Complete exactly once, usually before returning; a blocking lock request completes
// later from a goroutine of its own. in and out must stay valid until then.
func (s *Server) Serve(in, out [][]byte, c Completer) {
	r := s.scratchFor(c)
	r.inBufs, r.outBufs = in, out
	if s.decode(r) {
		if r.hdr.Opcode == OpSetlkw {
			go s.finish(r, c)
			return
		}
		s.dispatch(r)
	}
	s.complete(r, c)
}

// finish runs a request that may block for long (SETLKW) and completes it.
func (s *Server) finish(r *request, c Completer) {
	s.dispatch(r)
	s.complete(r, c)
}

// decode gathers and checks the header. It returns false when the request cannot be dispatched;
// r.errno or r.noReply then say how to answer.
func (s *Server) decode(r *request) bool {
	r.hdr, r.errno, r.noReply, r.direct, r.replyN = nil, OK, false, false, 0
	total := totalLen(r.inBufs)
	if total < inHeaderSize {
		r.noReply = true // not even a header: nothing to answer to
		return false
	}
	gather(r.in[:inHeaderSize], r.inBufs)
	r.hdr = argAt[InHeader](r.in, 0)
	h := r.hdr
	if int(h.Opcode) < len(opTable) {
		r.noReply = opTable[h.Opcode].noReply // a FORGET gets no reply, not even an error
	}
	if int(h.Len) < inHeaderSize || int(h.Len) > total {
		r.errno = syscall.EINVAL
		return false
	}
	want := int(h.Len)
	if h.Opcode == OpWrite {
		// Only the header and fuse_write_in are copied; the data stays in guest memory.
		want = min(want, inHeaderSize+sizeOf[WriteIn]())
	} else if want > maxRequest {
		r.errno = syscall.E2BIG
		return false
	} else if want > len(r.in) {
		grown := alignedBuffer(maxRequest)
		copy(grown, r.in[:inHeaderSize])
		r.in = grown
		r.hdr = argAt[InHeader](r.in, 0)
		h = r.hdr
	}
	// The rest only: the header was checked, and the guest may have changed it since.
	gatherAt(r.in[inHeaderSize:want], r.inBufs, inHeaderSize)
	argsEnd := want
	if h.TotalExtlen != 0 && h.Opcode != OpWrite {
		extLen := int(h.TotalExtlen) * 8
		if extLen > want-inHeaderSize {
			r.errno = syscall.EINVAL
			return false
		}
		argsEnd = want - extLen
		if e := parseExtensions(&r.ctx, r.in[argsEnd:want]); e != OK {
			r.errno = e
			return false
		}
	} else {
		r.ctx.HasSuppGID, r.ctx.SecCtxName, r.ctx.SecCtx = false, nil, nil
	}
	r.args = r.in[inHeaderSize:argsEnd]
	r.ctx.Opcode, r.ctx.Unique, r.ctx.NodeID = h.Opcode, h.Unique, h.NodeID
	r.ctx.UID, r.ctx.GID, r.ctx.PID = h.UID, h.GID, h.PID
	if !s.inited.Load() && h.Opcode != OpInit {
		r.errno = syscall.EIO
		return false
	}
	return true
}

// parseExtensions reads the request extensions (CREATE_SUPP_GROUP's group, SECURITY_CTX's context).
func parseExtensions(ctx *Context, ext []byte) Errno {
	ctx.HasSuppGID, ctx.SecCtxName, ctx.SecCtx = false, nil, nil
	for len(ext) > 0 {
		h := argAt[ExtHeader](ext, 0)
		if h == nil || h.Size < 8 || int(h.Size) > len(ext) || h.Size%8 != 0 {
			return syscall.EINVAL
		}
		body := ext[8:h.Size]
		switch {
		case h.Type == ExtGroups:
			if len(body) < 8 {
				return syscall.EINVAL
			}
			n := *argAt[uint32](body, 0)
			if n != 1 || len(body) < 8 {
				return syscall.EINVAL
			}
			ctx.SuppGID, ctx.HasSuppGID = *argAt[uint32](body, 4), true
		case h.Type <= ExtMaxNrSecctx:
			// The extension header is the fuse_secctx_header: its type is nr_secctx.
			if e := parseSecctx(ctx, h.Type, body); e != OK {
				return e
			}
		}
		ext = ext[h.Size:]
	}
	return OK
}

// parseSecctx reads the first of nr security contexts that follow a fuse_secctx_header: a
// fuse_secctx (the context's size), the xattr name with its NUL, then the context.
func parseSecctx(ctx *Context, nr uint32, b []byte) Errno {
	if nr == 0 {
		return OK
	}
	e := argAt[SecctxEntry](b, 0)
	if e == nil {
		return syscall.EINVAL
	}
	name, rest, ok := cstring(b[8:], nameMax)
	if !ok || int(e.Size) > len(rest) {
		return syscall.EINVAL
	}
	ctx.SecCtxName, ctx.SecCtx = name, rest[:e.Size]
	return OK
}

// dispatch runs the handler of the request's opcode.
func (s *Server) dispatch(r *request) {
	op := r.hdr.Opcode
	if int(op) >= len(opTable) || opTable[op].handle == nil {
		r.errno = syscall.ENOSYS
		return
	}
	if int(op) < len(s.served) {
		s.served[op].Add(1)
	}
	row := &opTable[op]
	if len(r.args) < row.inSize {
		r.errno = syscall.EINVAL
		return
	}
	r.errno = row.handle(s, r)
}

// complete encodes the reply into the writable buffers and completes the request.
func (s *Server) complete(r *request, c Completer) {
	var written int
	switch {
	case r.noReply || r.hdr == nil:
		written = 0
	case r.direct && r.errno == OK:
		oh := OutHeader{Len: uint32(outHeaderSize + r.replyN), Unique: r.hdr.Unique}
		if scatter(r.outBufs, asBytes(&oh)) == outHeaderSize {
			written = outHeaderSize + r.replyN
		}
	default:
		n := outHeaderSize
		if r.errno == OK {
			n += r.replyN
		}
		oh := (*OutHeader)(argAt[OutHeader](r.reply, 0))
		*oh = OutHeader{Len: uint32(n), Error: -int32(r.errno), Unique: r.hdr.Unique}
		if totalLen(r.outBufs) < n {
			// The guest gave too little room for the answer: tell it so if the header fits.
			*oh = OutHeader{Len: uint32(outHeaderSize), Error: -int32(syscall.ERANGE), Unique: r.hdr.Unique}
			n = outHeaderSize
		}
		written = scatter(r.outBufs, r.reply[:n])
		if written < outHeaderSize {
			written = 0
		}
	}
	r.inBufs, r.outBufs, r.iov = nil, nil, r.iov[:0]
	r.ctx.SecCtxName, r.ctx.SecCtx = nil, nil
	if !r.kept {
		s.putRequest(r)
	}
	c.Complete(uint32(written))
}

// RequestCounts returns how many requests of each opcode were dispatched so far, by opcode name,
// leaving out those never seen.
func (s *Server) RequestCounts() map[string]uint64 {
	m := map[string]uint64{}
	for op := range s.served {
		if n := s.served[op].Load(); n > 0 {
			m[opTable[op].name] = n
		}
	}
	return m
}

func (s *Server) logf(format string, a ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, a...)
	}
}
