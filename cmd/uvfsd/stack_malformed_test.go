package main

// Hostile input through the real front-end: broken descriptor chains, broken FUSE framing, bad
// names, ".." and symlinks that lead out of the share. Each must end in an errno or an empty used
// entry, leave the host untouched, and leave the device serving good requests.

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/fuse/fusetest"
	"github.com/uvfsd/uvfsd/vhost/frontend"
)

const (
	malformedQueueSize = 16
	malformedMemSize   = 1 << 20
)

// mkdirRequest encodes a complete, valid MKDIR of name in the root.
func mkdirRequest(name string) []byte {
	args := append(fusetest.Bytes(&fuse.MkdirIn{Mode: 0o755}), fusetest.Name(name)...)
	h := fuse.InHeader{Len: uint32(40 + len(args)), Opcode: fuse.OpMkdir, Unique: 77, NodeID: fuse.RootID}
	return append(fusetest.Bytes(&h), args...)
}

// guestBuf places b in guest memory (zeroed writable space if b is nil and n > 0).
func (s *stack) guestBuf(b []byte, n int) uint64 {
	s.t.Helper()
	gpa, mem, err := s.f.Alloc(max(len(b), n))
	if err != nil {
		s.t.Fatal(err)
	}
	clear(mem)
	copy(mem, b)
	return gpa
}

// rawChain writes descs at ring indices 0.. of the request queue (Next fields as given), publishes
// index 0 and returns its used entry. Nothing else may be in flight.
func (s *stack) rawChain(descs ...frontend.Desc) frontend.UsedElem {
	s.t.Helper()
	for i, d := range descs {
		s.f.SetDesc(requestQueue, i, d)
	}
	s.f.Publish(requestQueue, 0)
	if err := s.f.Kick(requestQueue); err != nil {
		s.t.Fatal(err)
	}
	e, err := s.f.WaitUsed(requestQueue, 5*time.Second)
	if err != nil {
		s.t.Fatalf("the chain never came back: %v", err)
	}
	if e.ID != 0 {
		s.t.Fatalf("used entry for head %d, want 0", e.ID)
	}
	return e
}

// TestStackMalformedChains sends chains whose readable part is a valid MKDIR: the back-end must
// refuse the whole chain (0 bytes written, the directory never made) and keep serving.
func TestStackMalformedChains(t *testing.T) {
	end := frontend.GuestBase + malformedMemSize
	type chain func(s *stack, req, out uint64) []frontend.Desc
	reqDesc := func(req uint64, next uint16) frontend.Desc {
		return frontend.Desc{Addr: req, Len: uint32(len(mkdirRequest("made"))), Flags: frontend.DescNext, Next: next}
	}
	cases := map[string]chain{
		"descriptor loop": func(s *stack, req, out uint64) []frontend.Desc {
			return []frontend.Desc{reqDesc(req, 1),
				{Addr: out, Len: 128, Flags: frontend.DescWrite | frontend.DescNext, Next: 2},
				{Addr: out + 128, Len: 128, Flags: frontend.DescWrite | frontend.DescNext, Next: 1}}
		},
		"chain longer than the ring": func(s *stack, req, out uint64) []frontend.Desc {
			d := []frontend.Desc{reqDesc(req, 1)}
			for i := 1; i < malformedQueueSize; i++ { // every index once, then back to 1
				next := uint16(i + 1)
				if i == malformedQueueSize-1 {
					next = 1
				}
				d = append(d, frontend.Desc{Addr: out, Len: 16, Flags: frontend.DescWrite | frontend.DescNext, Next: next})
			}
			return d
		},
		"loop inside an indirect table": func(s *stack, req, out uint64) []frontend.Desc {
			table := s.guestBuf(nil, 32)
			s.f.WriteDesc(table, reqDesc(req, 1))
			s.f.WriteDesc(table+16, frontend.Desc{Addr: out, Len: 16, Flags: frontend.DescWrite | frontend.DescNext, Next: 1})
			return []frontend.Desc{{Addr: table, Len: 32, Flags: frontend.DescIndirect}}
		},
		"writable buffer outside guest memory": func(s *stack, req, out uint64) []frontend.Desc {
			return []frontend.Desc{reqDesc(req, 1), {Addr: end, Len: 256, Flags: frontend.DescWrite}}
		},
		"writable buffer straddling the end of memory": func(s *stack, req, out uint64) []frontend.Desc {
			return []frontend.Desc{reqDesc(req, 1), {Addr: end - 64, Len: 256, Flags: frontend.DescWrite}}
		},
		"readable buffer below guest memory": func(s *stack, req, out uint64) []frontend.Desc {
			return []frontend.Desc{reqDesc(req, 1), {Addr: 0x1000, Len: 16, Flags: frontend.DescNext, Next: 2},
				{Addr: out, Len: 256, Flags: frontend.DescWrite}}
		},
		"addr plus len wraps": func(s *stack, req, out uint64) []frontend.Desc {
			return []frontend.Desc{reqDesc(req, 1), {Addr: 1<<64 - 0x100, Len: 0x1000, Flags: frontend.DescWrite}}
		},
		"length of 4 GiB - 1": func(s *stack, req, out uint64) []frontend.Desc {
			return []frontend.Desc{reqDesc(req, 1), {Addr: out, Len: 0xffffffff, Flags: frontend.DescWrite}}
		},
		"next index outside the ring": func(s *stack, req, out uint64) []frontend.Desc {
			return []frontend.Desc{reqDesc(req, 1), {Addr: out, Len: 256, Flags: frontend.DescWrite | frontend.DescNext, Next: 999}}
		},
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			s := newStack(t, withFrontend(func(o *frontend.Options) {
				o.QueueSize, o.MemSize, o.Indirect = malformedQueueSize, malformedMemSize, true
			}))
			req := s.guestBuf(mkdirRequest("made"), 0)
			out := s.guestBuf(nil, 256)
			e := s.rawChain(build(s, req, out)...)
			if e.Len != 0 {
				t.Errorf("used entry reports %d bytes written, want 0", e.Len)
			}
			if !s.logs.contains("descriptor chain") {
				t.Error("the refused chain was not logged")
			}
			s.notExist("made")
			s.alive()
			// The same request in a well-formed chain is served: the refusal was about the chain.
			if _, err := fusetest.Call[fuse.EntryOut](s.c, fuse.OpMkdir, fuse.RootID,
				fusetest.Bytes(&fuse.MkdirIn{Mode: 0o755}), fusetest.Name("made")); err != nil {
				t.Fatalf("good MKDIR afterwards: %v", err)
			}
			s.lstat("made")
		})
	}
}

// call sends raw device-readable buffers and returns the reply header, or nil when the request got
// no reply (0 bytes written).
func (s *stack) call(in [][]byte, outSize int) (*fuse.OutHeader, []byte) {
	s.t.Helper()
	out, n, err := s.f.Call(requestQueue, in, []int{outSize})
	if err != nil {
		s.t.Fatalf("front-end: %v", err)
	}
	if n == 0 {
		return nil, nil
	}
	oh, err := fusetest.Decode[fuse.OutHeader](out)
	if err != nil {
		s.t.Fatalf("reply of %d bytes: %v", n, err)
	}
	if int(oh.Len) != len(out) {
		s.t.Fatalf("reply header says %d bytes, %d were written", oh.Len, len(out))
	}
	return oh, out[16:]
}

func TestStackMalformedFuseFraming(t *testing.T) {
	s := newStack(t)
	s.writeHost("file", []byte("unchanged"))
	good := mkdirRequest("made")
	hdr := func(mut func(h *fuse.InHeader)) []byte {
		b := bytes.Clone(good)
		h, _ := fusetest.Decode[fuse.InHeader](b)
		mut(h)
		copy(b, fusetest.Bytes(h))
		return b
	}
	t.Run("truncated header", func(t *testing.T) {
		for _, in := range [][][]byte{{good[:39]}, {good[:20], good[20:39]}, {good[:1]}, {{}}} {
			if oh, _ := s.call(in, 256); oh != nil {
				t.Errorf("a request of %d bytes was answered: %+v", len(bytes.Join(in, nil)), *oh)
			}
		}
	})
	cases := []struct {
		name string
		req  []byte
		want syscall.Errno
	}{
		{"header len larger than the chain", hdr(func(h *fuse.InHeader) { h.Len = 4096 }), syscall.EINVAL},
		{"header len 2^32-1", hdr(func(h *fuse.InHeader) { h.Len = 0xffffffff }), syscall.EINVAL},
		{"header len below the header size", hdr(func(h *fuse.InHeader) { h.Len = 12 }), syscall.EINVAL},
		{"header len cuts the name off", hdr(func(h *fuse.InHeader) { h.Len = 40 + 8 + 2 }), syscall.EINVAL},
		{"header len cuts the argument struct", hdr(func(h *fuse.InHeader) { h.Len = 44 }), syscall.EINVAL},
		{"extensions longer than the request", hdr(func(h *fuse.InHeader) { h.TotalExtlen = 0xffff }), syscall.EINVAL},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			oh, _ := s.call([][]byte{c.req}, 256)
			if oh == nil {
				t.Fatal("no reply")
			}
			if oh.Error != -int32(c.want) || oh.Unique != 77 {
				t.Errorf("reply %+v, want error %d for unique 77", *oh, -int32(c.want))
			}
			s.notExist("made")
			s.alive()
		})
	}
	t.Run("reply area smaller than a header", func(t *testing.T) {
		getattr := fuse.InHeader{Len: 56, Opcode: fuse.OpGetattr, Unique: 5, NodeID: fuse.RootID}
		if oh, _ := s.call([][]byte{fusetest.Bytes(&getattr), make([]byte, 16)}, 8); oh != nil {
			t.Errorf("an answer was squeezed into 8 bytes: %+v", *oh)
		}
		oh, _ := s.call([][]byte{fusetest.Bytes(&getattr), make([]byte, 16)}, 40)
		if oh == nil || oh.Error != -int32(syscall.ERANGE) {
			t.Errorf("GETATTR with 40 bytes for its reply: %+v, want ERANGE", oh)
		}
		s.alive()
	})
	t.Run("write size beyond the data", func(t *testing.T) {
		node := s.lookup(fuse.RootID, "file").NodeID
		fh := s.open(node, unix.O_RDWR)
		in := fuse.WriteIn{Fh: fh, Size: 1 << 20}
		_, err := s.c.Do(fuse.OpWrite, node, 8, fusetest.Bytes(&in), []byte("overwrite"))
		wantErrno(t, "WRITE claiming 1 MiB with 9 bytes of data", err, syscall.EINVAL)
		in.Size = 0xffffffff
		_, err = s.c.Do(fuse.OpWrite, node, 8, fusetest.Bytes(&in), []byte("overwrite"))
		wantErrno(t, "WRITE claiming 4 GiB", err, syscall.EINVAL)
		in.Size, in.Offset = 9, 1<<63
		_, err = s.c.Do(fuse.OpWrite, node, 8, fusetest.Bytes(&in), []byte("overwrite"))
		wantErrno(t, "WRITE at offset 2^63", err, syscall.EINVAL)
		if b, _ := os.ReadFile(s.host("file")); string(b) != "unchanged" {
			t.Errorf("a refused WRITE changed the file to %q", b)
		}
		_, err = s.c.Do(fuse.OpRead, node, 1<<20, fusetest.Bytes(&fuse.ReadIn{Fh: fh, Size: 1<<20 + 1}))
		wantErrno(t, "READ larger than max_write", err, syscall.EINVAL)
		s.release(node, fh)
	})
	t.Run("short argument structs", func(t *testing.T) {
		for _, op := range []fuse.Opcode{fuse.OpGetattr, fuse.OpSetattr, fuse.OpOpen, fuse.OpRead, fuse.OpWrite,
			fuse.OpMkdir, fuse.OpMknod, fuse.OpRename2, fuse.OpGetlk, fuse.OpSetlk, fuse.OpCopyFileRange, fuse.OpLseek} {
			_, err := s.c.Do(op, fuse.RootID, 256, []byte{1, 2, 3})
			wantErrno(t, fuse.OpName(op)+" with a 3-byte argument", err, syscall.EINVAL)
		}
		s.alive()
	})
}

func TestStackBadNames(t *testing.T) {
	s := newStack(t)
	if err := os.Mkdir(s.host("sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	s.writeHost("sub/file", []byte("x"))
	s.writeHost("file", []byte("x"))
	fileNode := s.lookup(fuse.RootID, "file").NodeID
	mkdirIn := fusetest.Bytes(&fuse.MkdirIn{Mode: 0o755})
	long := strings.Repeat("n", 256)
	cases := []struct {
		name string
		op   fuse.Opcode
		args [][]byte
		want syscall.Errno
	}{
		// "sub/file" exists on the host: a server that let '/' through would find it.
		{"LOOKUP with a slash", fuse.OpLookup, [][]byte{fusetest.Name("sub/file")}, syscall.EINVAL},
		{"LOOKUP without NUL", fuse.OpLookup, [][]byte{[]byte("file")}, syscall.EINVAL},
		{"LOOKUP of an empty name", fuse.OpLookup, [][]byte{fusetest.Name("")}, syscall.EINVAL},
		{"LOOKUP of 256 bytes", fuse.OpLookup, [][]byte{fusetest.Name(long)}, syscall.ENAMETOOLONG},
		{"MKDIR with a slash", fuse.OpMkdir, [][]byte{mkdirIn, fusetest.Name("sub/new")}, syscall.EINVAL},
		{"MKDIR without NUL", fuse.OpMkdir, [][]byte{mkdirIn, []byte("new")}, syscall.EINVAL},
		{"MKDIR ..", fuse.OpMkdir, [][]byte{mkdirIn, fusetest.Name("..")}, syscall.EINVAL},
		{"MKDIR .", fuse.OpMkdir, [][]byte{mkdirIn, fusetest.Name(".")}, syscall.EINVAL},
		{"CREATE with a slash", fuse.OpCreate, [][]byte{fusetest.Bytes(&fuse.CreateIn{Flags: unix.O_RDWR | unix.O_CREAT, Mode: 0o644}),
			fusetest.Name("sub/new")}, syscall.EINVAL},
		{"MKNOD with a slash", fuse.OpMknod, [][]byte{fusetest.Bytes(&fuse.MknodIn{Mode: unix.S_IFIFO | 0o644}),
			fusetest.Name("sub/new")}, syscall.EINVAL},
		{"SYMLINK with a slash", fuse.OpSymlink, [][]byte{fusetest.Name("sub/new"), fusetest.Name("target")}, syscall.EINVAL},
		{"SYMLINK target without NUL", fuse.OpSymlink, [][]byte{fusetest.Name("new"), []byte("target")}, syscall.EINVAL},
		{"LINK to a slashed name", fuse.OpLink, [][]byte{fusetest.Bytes(&fuse.LinkIn{OldNodeID: fileNode}), fusetest.Name("sub/new")}, syscall.EINVAL},
		{"RENAME to a slashed name", fuse.OpRename, [][]byte{fusetest.Bytes(&fuse.RenameIn{Newdir: fuse.RootID}),
			fusetest.Name("file"), fusetest.Name("sub/new")}, syscall.EINVAL},
		{"RENAME to ..", fuse.OpRename, [][]byte{fusetest.Bytes(&fuse.RenameIn{Newdir: fuse.RootID}),
			fusetest.Name("file"), fusetest.Name("..")}, syscall.EINVAL},
		{"RENAME of ..", fuse.OpRename, [][]byte{fusetest.Bytes(&fuse.RenameIn{Newdir: fuse.RootID}),
			fusetest.Name(".."), fusetest.Name("new")}, syscall.EINVAL},
		{"RENAME with the second name unterminated", fuse.OpRename, [][]byte{fusetest.Bytes(&fuse.RenameIn{Newdir: fuse.RootID}),
			fusetest.Name("file"), []byte("new")}, syscall.EINVAL},
		{"UNLINK with a slash", fuse.OpUnlink, [][]byte{fusetest.Name("sub/file")}, syscall.EINVAL},
		{"UNLINK ..", fuse.OpUnlink, [][]byte{fusetest.Name("..")}, syscall.EINVAL},
		{"RMDIR with a slash", fuse.OpRmdir, [][]byte{fusetest.Name("sub/..")}, syscall.EINVAL},
		{"RMDIR .", fuse.OpRmdir, [][]byte{fusetest.Name(".")}, syscall.EINVAL},
	}
	for _, c := range cases {
		_, err := s.c.Do(c.op, fuse.RootID, 256, c.args...)
		wantErrno(t, c.name, err, c.want)
	}
	// Nothing was made, moved or removed.
	for _, gone := range []string{"new", "sub/new", filepath.Join("..", "new")} {
		s.notExist(gone)
	}
	s.lstat("file")
	s.lstat("sub/file")
	s.alive()
}

func TestStackDotDotAtTheRoot(t *testing.T) {
	s := newStack(t)
	if err := os.Mkdir(s.host("sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	rootIno := s.lstat(".").Ino
	e := s.lookup(fuse.RootID, "..")
	if e.NodeID != fuse.RootID || e.Attr.Ino != rootIno {
		t.Fatalf("LOOKUP .. at the root: node %d ino %d; want the root (node 1, ino %d)", e.NodeID, e.Attr.Ino, rootIno)
	}
	if e := s.lookup(fuse.RootID, "."); e.NodeID != fuse.RootID {
		t.Errorf("LOOKUP . at the root: node %d", e.NodeID)
	}
	sub := s.lookup(fuse.RootID, "sub").NodeID
	if e := s.lookup(sub, ".."); e.NodeID != fuse.RootID {
		t.Errorf("LOOKUP .. in a subdirectory: node %d, want the root", e.NodeID)
	}
	// Climbing from the root's ".." goes nowhere either.
	up := s.lookup(s.lookup(fuse.RootID, "..").NodeID, "..")
	if up.NodeID != fuse.RootID {
		t.Errorf("LOOKUP .. of the root's ..: node %d", up.NodeID)
	}
	// The share's parent holds a file the guest must not reach.
	parentFile := filepath.Join(filepath.Dir(s.dir), filepath.Base(s.dir)+"-outside")
	if err := os.WriteFile(parentFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(parentFile)
	beside, err := s.c.Lookup(up.NodeID, filepath.Base(parentFile))
	wantMiss(t, "LOOKUP of a name beside the share through ..", beside, err)
}

func TestStackSymlinkOutOfTheShare(t *testing.T) {
	s := newStack(t, withFlags("--xattr"))
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"etc": "/etc", "out": outside, "secretlink": filepath.Join(outside, "secret"),
		"dangling": filepath.Join(outside, "created")} {
		if err := os.Symlink(target, s.host(name)); err != nil {
			t.Fatal(err)
		}
	}
	etc := s.lookup(fuse.RootID, "etc")
	if etc.Attr.Mode&unix.S_IFMT != unix.S_IFLNK || etc.Attr.Ino != s.lstat("etc").Ino {
		t.Fatalf("LOOKUP etc gave mode %o ino %d: the symlink was followed", etc.Attr.Mode, etc.Attr.Ino)
	}
	for _, name := range []string{"passwd", "hostname", ".."} {
		if e, err := s.c.Lookup(etc.NodeID, name); err == nil {
			t.Errorf("LOOKUP %q under the /etc symlink succeeded: node %d ino %d", name, e.NodeID, e.Attr.Ino)
		}
	}
	for _, op := range []fuse.Opcode{fuse.OpOpen, fuse.OpOpendir} {
		if o, err := fusetest.Call[fuse.OpenOut](s.c, op, etc.NodeID, fusetest.Bytes(&fuse.OpenIn{Flags: unix.O_RDONLY})); err == nil {
			t.Errorf("%s of the /etc symlink succeeded (fh %d)", fuse.OpName(op), o.Fh)
		}
	}
	secret := s.lookup(fuse.RootID, "secretlink")
	_, err := fusetest.Call[fuse.OpenOut](s.c, fuse.OpOpen, secret.NodeID, fusetest.Bytes(&fuse.OpenIn{Flags: unix.O_RDWR}))
	if err == nil {
		t.Error("OPEN of a symlink to a file outside the share succeeded")
	}
	// CREATE over a dangling symlink must not create its target outside.
	_, err = fusetest.Call[createOut](s.c, fuse.OpCreate, fuse.RootID,
		fusetest.Bytes(&fuse.CreateIn{Flags: unix.O_RDWR | unix.O_CREAT, Mode: 0o644}), fusetest.Name("dangling"))
	if err == nil {
		t.Error("CREATE through a dangling symlink succeeded")
	}
	if _, err := os.Lstat(filepath.Join(outside, "created")); err == nil {
		t.Fatal("CREATE through a symlink made a file outside the share")
	}
	// Attribute changes act on the link, never on its target.
	_, err = fusetest.Call[fuse.AttrOut](s.c, fuse.OpSetattr, secret.NodeID, fusetest.Bytes(&fuse.SetattrIn{Valid: fuse.FattrSize, Size: 0}))
	if err == nil {
		t.Error("SETATTR size on a symlink succeeded")
	}
	_, err = fusetest.Call[fuse.AttrOut](s.c, fuse.OpSetattr, secret.NodeID, fusetest.Bytes(&fuse.SetattrIn{Valid: fuse.FattrMode, Mode: 0o666}))
	if err == nil {
		t.Error("SETATTR mode on a symlink succeeded")
	}
	_, err = fusetest.Call[fuse.AttrOut](s.c, fuse.OpSetattr, secret.NodeID, fusetest.Bytes(&fuse.SetattrIn{Valid: fuse.FattrMtime, Mtime: 1}))
	if err != nil {
		t.Errorf("SETATTR mtime of the symlink itself: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(outside, "secret"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != 6 || st.Mode&0o777 != 0o600 || st.Mtim.Sec == 1 {
		t.Errorf("the file outside changed: size %d mode %o mtime %d", st.Size, st.Mode, st.Mtim.Sec)
	}
	if s.lstat("secretlink").Mtim.Sec != 1 {
		t.Errorf("the symlink's own mtime was not set")
	}
	_ = s.setxattr(secret.NodeID, "user.escape", []byte("x"), 0)
	if _, err := unix.Getxattr(filepath.Join(outside, "secret"), "user.escape", make([]byte, 8)); err == nil {
		t.Error("SETXATTR on a symlink set the attribute on its target outside the share")
	}
	// The link's own parent directory is the share; a directory symlink leads nowhere.
	out := s.lookup(fuse.RootID, "out")
	if _, err := fusetest.Call[fuse.EntryOut](s.c, fuse.OpMkdir, out.NodeID, fusetest.Bytes(&fuse.MkdirIn{Mode: 0o755}), fusetest.Name("evil")); err == nil {
		t.Error("MKDIR inside a symlink to a directory outside succeeded")
	}
	if _, err := os.Lstat(filepath.Join(outside, "evil")); err == nil {
		t.Fatal("MKDIR through a symlink made a directory outside the share")
	}
	if got, err := s.c.Do(fuse.OpReadlink, etc.NodeID, 4096); err != nil || string(got) != "/etc" {
		t.Errorf("READLINK of the /etc symlink: %q, %v", got, err)
	}
	s.alive()
}
