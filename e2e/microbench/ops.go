package main

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/fuse/fusetest"
	"github.com/uvfsd/uvfsd/vhost/frontend"
)

// Virtqueues of a virtio-fs device: FORGET goes to hiprio, the rest to the
// first request queue.
const (
	hiprioQueue  = 0
	requestQueue = 1
)

// session is a FUSE mount over one front-end: INIT done, fixture nodes
// looked up.
type session struct {
	f                               *frontend.Frontend
	c, hiprio                       *fusetest.Client
	base, file, wfile, list, newdir uint64
	cold                            []coldListing // READDIRPLUS cold lists these in turn

	// FORGETs go out without waiting for their completion, as the guest sends them, as long as
	// the hiprio queue has room: like the guest, forget waits for a free slot when it has none.
	forgets     sync.WaitGroup
	forgetSlots chan struct{}
	forgetErr   atomic.Pointer[error]
}

// forget sends a FORGET in the background and reports the first one that failed so far.
func (s *session) forget(node uint64) error {
	return s.sendForget(fuse.OpForget, node, fusetest.Bytes(&fuse.ForgetIn{Nlookup: 1}))
}

// batchForget sends one BATCH_FORGET in the background, like forget.
func (s *session) batchForget(forgets []fuse.ForgetOne) error {
	body := fusetest.Bytes(&fuse.BatchForgetIn{Count: uint32(len(forgets))})
	for i := range forgets {
		body = append(body, fusetest.Bytes(&forgets[i])...)
	}
	return s.sendForget(fuse.OpBatchForget, 0, body)
}

// sendForget sends a FORGET or BATCH_FORGET on the hiprio queue once it has a free slot, without
// waiting for the completion, and reports the first one that failed so far.
func (s *session) sendForget(op fuse.Opcode, node uint64, body []byte) error {
	s.forgetSlots <- struct{}{}
	s.forgets.Go(func() {
		defer func() { <-s.forgetSlots }()
		if _, err := s.hiprio.Do(op, node, 0, body); err != nil {
			s.forgetErr.CompareAndSwap(nil, &err)
		}
	})
	if p := s.forgetErr.Load(); p != nil {
		return fmt.Errorf("%s: %w", fuse.OpName(op), *p)
	}
	return nil
}

func newSession(f *frontend.Frontend, uid, gid uint32) (*session, error) {
	s := &session{
		f:      f,
		c:      &fusetest.Client{T: frontend.Transport{F: f, Queue: requestQueue}, UID: uid, GID: gid, PID: 1},
		hiprio: &fusetest.Client{T: frontend.Transport{F: f, Queue: hiprioQueue, NoReply: true}, UID: uid, GID: gid, PID: 1},
		// A FORGET takes one descriptor, but a chain's buffers may need two.
		forgetSlots: make(chan struct{}, frontOptions.QueueSize/2),
	}
	if _, err := s.c.Init(0); err != nil {
		return nil, fmt.Errorf("INIT: %w", err)
	}
	e, err := s.c.Lookup(fuse.RootID, fixtureDir)
	if err != nil {
		return nil, fmt.Errorf("LOOKUP %s: %w", fixtureDir, err)
	}
	s.base = e.NodeID
	for _, n := range []struct {
		name string
		id   *uint64
	}{{readFile, &s.file}, {writeFile, &s.wfile}, {listDir, &s.list}, {createDir, &s.newdir}} {
		e, err := s.c.Lookup(s.base, n.name)
		if err != nil {
			return nil, fmt.Errorf("LOOKUP %s: %w", n.name, err)
		}
		*n.id = e.NodeID
	}
	coldBase, err := s.c.Lookup(s.base, coldDir)
	if err != nil {
		return nil, fmt.Errorf("LOOKUP %s: %w", coldDir, err)
	}
	for i := range coldDirs {
		e, err := s.c.Lookup(coldBase.NodeID, coldName(i))
		if err != nil {
			return nil, fmt.Errorf("LOOKUP %s: %w", coldName(i), err)
		}
		fh, err := s.open(fuse.OpOpendir, e.NodeID, syscall.O_RDONLY)
		if err != nil {
			return nil, err
		}
		s.cold = append(s.cold, coldListing{e.NodeID, fusetest.Bytes(&fuse.ReadIn{Fh: fh, Size: readdirSize})})
	}
	return s, nil
}

// coldListing is one directory of READDIRPLUS cold and its READDIRPLUS request body.
type coldListing struct {
	node uint64
	in   []byte
}

// opFunc performs one operation; each worker goroutine gets its own.
type opFunc func() error

// benchOp is one measured operation: how a worker does it over FUSE and how
// it does the same work with direct syscalls on the host.
type benchOp struct {
	name   string
	fuse   func(s *session, worker int) (opFunc, error)
	direct func(d *directFixture, worker int) (opFunc, error)
	// pipe, if set, is the operation as one request repeated by a
	// frontend.Pipeline: no front-end cost per request. Ops that need a
	// new name or a follow-up request each time (CREATE) have none.
	pipe func(s *session) (pipeRequest, error)
}

// pipeRequest is a request for frontend.Pipeline and the reply length that
// proves it succeeded.
type pipeRequest struct {
	in       [][]byte
	outSize  int // reply area, including the 16-byte out header
	minReply uint32
}

// layout returns the request as the guest's driver lays it out.
func (r pipeRequest) layout() ([][]byte, []int) { return frontend.Layout(r.in, r.outSize) }

// check accepts a completion whose out header has no error, matches the
// used length and is at least minReply long.
func (r pipeRequest) check(header []byte, written uint32) error {
	oh := (*fuse.OutHeader)(unsafe.Pointer(&header[0]))
	if oh.Error != 0 || oh.Len != written || written < r.minReply {
		return fmt.Errorf("reply: error %d, %d bytes (header says %d), want at least %d", oh.Error, written, oh.Len, r.minReply)
	}
	return nil
}

// createSeq numbers created files across workers and measurements, so names never repeat.
var createSeq atomic.Uint64

var benchOps = []benchOp{
	{"LOOKUP", fuseLookup, directLookup, pipeLookup},
	{"GETATTR", fuseGetattr, directGetattr, pipeGetattr},
	{"READDIRPLUS", fuseReaddirplus, directReaddirplus, pipeReaddirplus},
	{"READDIRPLUS cold", fuseReaddirplusCold, directReaddirplusCold, nil},
	{"OPENDIR+RELEASEDIR", fuseOpendir, directOpendir, nil},
	{"CREATE+RELEASE+FORGET", fuseCreate, directCreate, nil},
	{"READ 4 KiB", fuseRead(smallIOSize), directRead(smallIOSize), pipeRead(smallIOSize)},
	{"READ 1 MiB", fuseRead(largeIOSize), directRead(largeIOSize), pipeRead(largeIOSize)},
	{"WRITE 4 KiB", fuseWrite(smallIOSize), directWrite(smallIOSize), pipeWrite(smallIOSize)},
	{"WRITE 1 MiB", fuseWrite(largeIOSize), directWrite(largeIOSize), pipeWrite(largeIOSize)},
}

var (
	entryOutSize = int(unsafe.Sizeof(fuse.EntryOut{}))
	attrOutSize  = int(unsafe.Sizeof(fuse.AttrOut{}))
	openOutSize  = int(unsafe.Sizeof(fuse.OpenOut{}))
	writeOutSize = int(unsafe.Sizeof(fuse.WriteOut{}))
)

func fuseLookup(s *session, _ int) (opFunc, error) {
	name := fusetest.Name(readFile)
	return func() error {
		p, err := s.c.Do(fuse.OpLookup, s.base, entryOutSize, name)
		if err == nil && len(p) < entryOutSize {
			err = fmt.Errorf("LOOKUP reply of %d bytes", len(p))
		}
		return err
	}, nil
}

func fuseGetattr(s *session, _ int) (opFunc, error) {
	in := fusetest.Bytes(&fuse.GetattrIn{})
	return func() error {
		p, err := s.c.Do(fuse.OpGetattr, s.file, attrOutSize, in)
		if err == nil && len(p) < attrOutSize {
			err = fmt.Errorf("GETATTR reply of %d bytes", len(p))
		}
		return err
	}, nil
}

// open opens node once for a worker (OPEN or OPENDIR) and returns the handle.
func (s *session) open(op fuse.Opcode, node uint64, flags uint32) (uint64, error) {
	o, err := fusetest.Call[fuse.OpenOut](s.c, op, node, fusetest.Bytes(&fuse.OpenIn{Flags: flags}))
	if errors.Is(err, syscall.ENOSYS) {
		// FUSE_NO_OPENDIR_SUPPORT / FUSE_NO_OPEN_SUPPORT: the kernel then lists, reads and
		// writes with fh 0, and so do we.
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("open node %d: %w", node, err)
	}
	return o.Fh, nil
}

func fuseReaddirplus(s *session, _ int) (opFunc, error) {
	fh, err := s.open(fuse.OpOpendir, s.list, syscall.O_RDONLY)
	if err != nil {
		return nil, err
	}
	in := fusetest.Bytes(&fuse.ReadIn{Fh: fh, Size: readdirSize})
	return func() error {
		p, err := s.c.Do(fuse.OpReaddirplus, s.list, readdirSize, in)
		// "." and ".." are the first entries; a short reply means a short listing.
		if err == nil && len(p) < dirEntries*(entryOutSize+24+8) {
			err = fmt.Errorf("READDIRPLUS returned only %d bytes for %d entries", len(p), dirEntries)
		}
		return err
	}, nil
}

// coldSeq takes the cold directories in turn across workers and measurements.
var coldSeq atomic.Uint64

// fuseReaddirplusCold lists a directory whose entries the daemon does not know, as the guest's
// find or ls -lR do after drop_caches: it forgets the reply's entries (in the background, in one
// BATCH_FORGET so that the front-end's cost of many FORGETs does not dominate) and comes back to
// the directory only after coldDirs-1 other listings.
func fuseReaddirplusCold(s *session, _ int) (opFunc, error) {
	return func() error {
		d := s.cold[coldSeq.Add(1)%coldDirs]
		p, err := s.c.Do(fuse.OpReaddirplus, d.node, readdirSize, d.in)
		if err != nil {
			return err
		}
		var forgets []fuse.ForgetOne
		for off := 0; off+entryOutSize+direntSize <= len(p); {
			e := (*fuse.EntryOut)(unsafe.Pointer(&p[off]))
			de := (*fuse.Dirent)(unsafe.Pointer(&p[off+entryOutSize]))
			if e.NodeID != 0 { // "." and ".." come with node 0: no lookup to forget
				forgets = append(forgets, fuse.ForgetOne{NodeID: e.NodeID, Nlookup: 1})
			}
			off += entryOutSize + (direntSize+int(de.Namelen)+7)&^7
		}
		if len(forgets) < dirEntries {
			return fmt.Errorf("READDIRPLUS returned %d entries with a node, want %d", len(forgets), dirEntries)
		}
		return s.batchForget(forgets)
	}, nil
}

var direntSize = int(unsafe.Sizeof(fuse.Dirent{}))

// errNotApplicable is an operation's setup saying that the target does not have it (OPENDIR of a
// daemon in no-opendir mode): the run goes on without that operation for that target.
var errNotApplicable = errors.New("not applicable")

// fuseOpendir opens and releases a directory, what a guest's walk (ls -lR, find, rm -rf) pays per
// directory on top of its listing.
func fuseOpendir(s *session, _ int) (opFunc, error) {
	in := fusetest.Bytes(&fuse.OpenIn{Flags: syscall.O_RDONLY | syscall.O_DIRECTORY})
	releaseIn := fusetest.Bytes(&fuse.ReleaseIn{})
	fh, err := s.open(fuse.OpOpendir, s.list, syscall.O_RDONLY|syscall.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	if fh == 0 {
		return nil, fmt.Errorf("OPENDIR answers ENOSYS (no-opendir mode): %w", errNotApplicable)
	}
	if _, err := s.c.Do(fuse.OpReleasedir, s.list, 0, fusetest.Bytes(&fuse.ReleaseIn{Fh: fh})); err != nil {
		return nil, fmt.Errorf("RELEASEDIR: %w", err)
	}
	return func() error {
		p, err := s.c.Do(fuse.OpOpendir, s.list, openOutSize, in)
		if err != nil {
			return fmt.Errorf("OPENDIR: %w", err)
		}
		o, err := fusetest.Decode[fuse.OpenOut](p)
		if err != nil {
			return err
		}
		(*fuse.ReleaseIn)(unsafe.Pointer(&releaseIn[0])).Fh = o.Fh
		if _, err := s.c.Do(fuse.OpReleasedir, s.list, 0, releaseIn); err != nil {
			return fmt.Errorf("RELEASEDIR: %w", err)
		}
		return nil
	}, nil
}

func fuseCreate(s *session, worker int) (opFunc, error) {
	in := fusetest.Bytes(&fuse.CreateIn{Flags: syscall.O_RDWR | syscall.O_CREAT | syscall.O_EXCL, Mode: syscall.S_IFREG | 0o644, Umask: 0o022})
	prefix := "w" + strconv.Itoa(worker) + "-"
	return func() error {
		name := prefix + strconv.FormatUint(createSeq.Add(1), 10)
		p, err := s.c.Do(fuse.OpCreate, s.newdir, entryOutSize+openOutSize, in, fusetest.Name(name))
		if err != nil {
			return fmt.Errorf("CREATE: %w", err)
		}
		e, err := fusetest.Decode[fuse.EntryOut](p)
		if err != nil {
			return err
		}
		o, err := fusetest.Decode[fuse.OpenOut](p[entryOutSize:])
		if err != nil {
			return err
		}
		// fh 0 is no-open mode, where the 6.1 guest sends no RELEASE.
		if o.Fh != 0 {
			if _, err = s.c.Do(fuse.OpRelease, e.NodeID, 0, fusetest.Bytes(&fuse.ReleaseIn{Fh: o.Fh})); err != nil {
				return fmt.Errorf("RELEASE: %w", err)
			}
		}
		// As the guest does when it drops the inode (else the daemon keeps an fd per file), and
		// like the guest without waiting: a daemon may complete FORGETs late (--forget-linger-us).
		return s.forget(e.NodeID)
	}, nil
}

func fuseRead(size int) func(s *session, _ int) (opFunc, error) {
	return func(s *session, _ int) (opFunc, error) {
		fh, err := s.open(fuse.OpOpen, s.file, syscall.O_RDONLY)
		if err != nil {
			return nil, err
		}
		in := fusetest.Bytes(&fuse.ReadIn{Fh: fh, Size: uint32(size)})
		return func() error {
			p, err := s.c.Do(fuse.OpRead, s.file, size, in)
			if err == nil && len(p) != size {
				err = fmt.Errorf("READ of %d bytes returned %d", size, len(p))
			}
			return err
		}, nil
	}
}

func fuseWrite(size int) func(s *session, _ int) (opFunc, error) {
	return func(s *session, _ int) (opFunc, error) {
		fh, err := s.open(fuse.OpOpen, s.wfile, syscall.O_WRONLY)
		if err != nil {
			return nil, err
		}
		in := fusetest.Bytes(&fuse.WriteIn{Fh: fh, Size: uint32(size)})
		data := make([]byte, size)
		return func() error {
			p, err := s.c.Do(fuse.OpWrite, s.wfile, writeOutSize, in, data)
			if err != nil {
				return err
			}
			w, err := fusetest.Decode[fuse.WriteOut](p)
			if err == nil && int(w.Size) != size {
				err = fmt.Errorf("WRITE of %d bytes wrote %d", size, w.Size)
			}
			return err
		}, nil
	}
}

func pipeLookup(s *session) (pipeRequest, error) {
	return pipeRequest{in: s.c.Frame(fuse.OpLookup, s.base, fusetest.Name(readFile)),
		outSize: 16 + entryOutSize, minReply: uint32(16 + entryOutSize)}, nil
}

func pipeGetattr(s *session) (pipeRequest, error) {
	return pipeRequest{in: s.c.Frame(fuse.OpGetattr, s.file, fusetest.Bytes(&fuse.GetattrIn{})),
		outSize: 16 + attrOutSize, minReply: uint32(16 + attrOutSize)}, nil
}

func pipeReaddirplus(s *session) (pipeRequest, error) {
	fh, err := s.open(fuse.OpOpendir, s.list, syscall.O_RDONLY)
	if err != nil {
		return pipeRequest{}, err
	}
	return pipeRequest{in: s.c.Frame(fuse.OpReaddirplus, s.list, fusetest.Bytes(&fuse.ReadIn{Fh: fh, Size: readdirSize})),
		outSize: 16 + readdirSize, minReply: uint32(16 + dirEntries*(entryOutSize+24+8))}, nil
}

func pipeRead(size int) func(s *session) (pipeRequest, error) {
	return func(s *session) (pipeRequest, error) {
		fh, err := s.open(fuse.OpOpen, s.file, syscall.O_RDONLY)
		if err != nil {
			return pipeRequest{}, err
		}
		return pipeRequest{in: s.c.Frame(fuse.OpRead, s.file, fusetest.Bytes(&fuse.ReadIn{Fh: fh, Size: uint32(size)})),
			outSize: 16 + size, minReply: uint32(16 + size)}, nil
	}
}

func pipeWrite(size int) func(s *session) (pipeRequest, error) {
	return func(s *session) (pipeRequest, error) {
		fh, err := s.open(fuse.OpOpen, s.wfile, syscall.O_WRONLY)
		if err != nil {
			return pipeRequest{}, err
		}
		in := s.c.Frame(fuse.OpWrite, s.wfile, fusetest.Bytes(&fuse.WriteIn{Fh: fh, Size: uint32(size)}), make([]byte, size))
		return pipeRequest{in: in, outSize: 16 + writeOutSize, minReply: uint32(16 + writeOutSize)}, nil
	}
}
