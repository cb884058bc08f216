package main

// Full-stack tests of the file operations: OPEN, CREATE, TMPFILE, READ, WRITE, RELEASE, FSYNC,
// FLUSH, FALLOCATE, LSEEK, COPY_FILE_RANGE.

import (
	"bytes"
	"math/rand/v2"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/fuse/fusetest"
	"github.com/uvfsd/uvfsd/vhost/frontend"
)

func (s *stack) write(node, fh, off uint64, data []byte) (uint32, error) {
	in := fuse.WriteIn{Fh: fh, Offset: off, Size: uint32(len(data))}
	o, err := fusetest.Call[fuse.WriteOut](s.c, fuse.OpWrite, node, fusetest.Bytes(&in), data)
	if err != nil {
		return 0, err
	}
	return o.Size, nil
}

func (s *stack) read(node, fh, off uint64, size int) ([]byte, error) {
	in := fuse.ReadIn{Fh: fh, Offset: off, Size: uint32(size)}
	return s.c.Do(fuse.OpRead, node, size, fusetest.Bytes(&in))
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestStackOpenReadRelease(t *testing.T) {
	s := newStack(t)
	s.writeHost("file", []byte("0123456789"))
	node := s.lookup(fuse.RootID, "file").NodeID
	o, err := fusetest.Call[fuse.OpenOut](s.c, fuse.OpOpen, node, fusetest.Bytes(&fuse.OpenIn{Flags: unix.O_RDONLY}))
	if err != nil {
		t.Fatalf("OPEN: %v", err)
	}
	if o.Fh == 0 || o.OpenFlags&fuse.FopenDirectIO != 0 {
		t.Errorf("OPEN reply %+v: want a handle and no DIRECT_IO under cache=auto", *o)
	}
	if n := daemonFDs(t, s.host("file")); n.opens != 1 {
		t.Errorf("daemon holds %d open fds to the file, want 1 (the handle)", n.opens)
	}
	got, err := s.read(node, o.Fh, 3, 4)
	if err != nil || string(got) != "3456" {
		t.Fatalf("READ 4 at 3: %q, %v", got, err)
	}
	got, err = s.read(node, o.Fh, 8, 100)
	if err != nil || string(got) != "89" {
		t.Fatalf("READ past the end: %q, %v", got, err)
	}
	got, err = s.read(node, o.Fh, 1000, 100)
	if err != nil || len(got) != 0 {
		t.Fatalf("READ at 1000 of a 10-byte file: %q, %v", got, err)
	}
	_, err = s.write(node, o.Fh, 0, []byte("no"))
	wantErrno(t, "WRITE through a read-only handle", err, syscall.EBADF)
	if b, _ := os.ReadFile(s.host("file")); string(b) != "0123456789" {
		t.Errorf("a refused WRITE changed the file to %q", b)
	}
	s.release(node, o.Fh)
	if n := daemonFDs(t, s.host("file")); n.opens != 0 {
		t.Errorf("daemon holds %d open fds to the file after RELEASE, want 0", n.opens)
	}
	_, err = s.read(node, o.Fh, 0, 4)
	wantErrno(t, "READ through a released handle", err, syscall.EBADF)
	_, err = s.c.Do(fuse.OpRelease, node, 0, fusetest.Bytes(&fuse.ReleaseIn{Fh: o.Fh}))
	wantErrno(t, "second RELEASE", err, syscall.EBADF)

	// O_TRUNC on open truncates on the host.
	fh := s.open(node, unix.O_WRONLY|unix.O_TRUNC)
	if st := s.lstat("file"); st.Size != 0 {
		t.Errorf("OPEN O_TRUNC left %d bytes", st.Size)
	}
	s.release(node, fh)
	_, err = fusetest.Call[fuse.OpenOut](s.c, fuse.OpOpen, 4242, fusetest.Bytes(&fuse.OpenIn{}))
	wantErrno(t, "OPEN of an unknown node", err, syscall.EBADF)
}

func TestStackCreate(t *testing.T) {
	s := newStack(t)
	o := s.create(fuse.RootID, "new", unix.O_RDWR|unix.O_CREAT, 0o640)
	st := s.lstat("new")
	if st.Mode != unix.S_IFREG|0o640 || st.Size != 0 {
		t.Errorf("host: mode %o size %d; want regular 640, empty", st.Mode, st.Size)
	}
	s.checkAttr("CREATE", &o.Entry.Attr, "new")
	if o.Open.Fh == 0 || o.Entry.NodeID == 0 {
		t.Fatalf("CREATE reply %+v", *o)
	}
	if n, err := s.write(o.Entry.NodeID, o.Open.Fh, 0, []byte("created")); err != nil || n != 7 {
		t.Fatalf("WRITE through the CREATE handle: %d, %v", n, err)
	}
	if b, _ := os.ReadFile(s.host("new")); string(b) != "created" {
		t.Errorf("host file holds %q", b)
	}
	_, err := fusetest.Call[createOut](s.c, fuse.OpCreate, fuse.RootID,
		fusetest.Bytes(&fuse.CreateIn{Flags: unix.O_RDWR | unix.O_CREAT | unix.O_EXCL, Mode: 0o600}), fusetest.Name("new"))
	wantErrno(t, "CREATE O_EXCL of an existing file", err, syscall.EEXIST)
	// Without O_EXCL the guest's negative dentry was stale: ESTALE sends it to look the name up
	// again, and the existing file is left alone (O_TRUNC does not truncate it), as is a
	// directory at the name.
	_, err = fusetest.Call[createOut](s.c, fuse.OpCreate, fuse.RootID,
		fusetest.Bytes(&fuse.CreateIn{Flags: unix.O_RDWR | unix.O_CREAT | unix.O_TRUNC, Mode: 0o600}), fusetest.Name("new"))
	wantErrno(t, "CREATE O_TRUNC of an existing file", err, syscall.ESTALE)
	if st := s.lstat("new"); st.Size != 7 || st.Mode&0o777 != 0o640 {
		t.Errorf("after CREATE O_TRUNC of the existing file: size %d mode %o, want 7 and 640", st.Size, st.Mode)
	}
	if err := os.Mkdir(s.host("dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = fusetest.Call[createOut](s.c, fuse.OpCreate, fuse.RootID,
		fusetest.Bytes(&fuse.CreateIn{Flags: unix.O_RDWR | unix.O_CREAT, Mode: 0o600}), fusetest.Name("dir"))
	wantErrno(t, "CREATE of an existing directory", err, syscall.ESTALE)
	s.release(o.Entry.NodeID, o.Open.Fh)
}

func TestStackTmpfile(t *testing.T) {
	s := newStack(t)
	before, _ := os.ReadDir(s.dir)
	o, err := fusetest.Call[createOut](s.c, fuse.OpTmpfile, fuse.RootID,
		fusetest.Bytes(&fuse.CreateIn{Flags: unix.O_RDWR, Mode: 0o600}))
	if err != nil {
		t.Fatalf("TMPFILE: %v", err)
	}
	if o.Entry.Attr.Nlink != 0 || o.Entry.Attr.Mode != unix.S_IFREG|0o600 || o.Open.Fh == 0 {
		t.Fatalf("TMPFILE reply %+v: want an unlinked 0600 file and a handle", *o)
	}
	if after, _ := os.ReadDir(s.dir); len(after) != len(before) {
		t.Fatalf("TMPFILE added a name to the directory: %d entries, was %d", len(after), len(before))
	}
	if n, err := s.write(o.Entry.NodeID, o.Open.Fh, 0, []byte("anonymous")); err != nil || n != 9 {
		t.Fatalf("WRITE to the tmpfile: %d, %v", n, err)
	}
	// LINK gives it a name: the data shows up on the host.
	if _, err := fusetest.Call[fuse.EntryOut](s.c, fuse.OpLink, fuse.RootID,
		fusetest.Bytes(&fuse.LinkIn{OldNodeID: o.Entry.NodeID}), fusetest.Name("named")); err != nil {
		t.Fatalf("LINK of the tmpfile: %v", err)
	}
	if b, _ := os.ReadFile(s.host("named")); string(b) != "anonymous" {
		t.Errorf("linked tmpfile holds %q", b)
	}
	if st := s.lstat("named"); st.Ino != o.Entry.Attr.Ino {
		t.Errorf("linked file is inode %d, tmpfile was %d", st.Ino, o.Entry.Attr.Ino)
	}
	s.release(o.Entry.NodeID, o.Open.Fh)
	_, err = fusetest.Call[createOut](s.c, fuse.OpTmpfile, fuse.RootID, fusetest.Bytes(&fuse.CreateIn{Flags: unix.O_RDONLY, Mode: 0o600}))
	wantErrno(t, "read-only TMPFILE", err, syscall.EINVAL)
}

// TestStackLargeWriteAndRead writes 1 MiB in one WRITE, whose data the transport splits into 256
// page descriptors, and reads it back the same way, with plain and with indirect descriptors.
func TestStackLargeWriteAndRead(t *testing.T) {
	for _, indirect := range []bool{false, true} {
		name := "direct descriptors"
		if indirect {
			name = "indirect descriptors"
		}
		t.Run(name, func(t *testing.T) {
			s := newStack(t, withFrontend(func(o *frontend.Options) { o.Indirect = indirect }))
			data := randomBytes(1<<20, 7)
			o := s.create(fuse.RootID, "big", unix.O_RDWR|unix.O_CREAT, 0o644)
			n, err := s.write(o.Entry.NodeID, o.Open.Fh, 0, data)
			if err != nil || n != 1<<20 {
				t.Fatalf("1 MiB WRITE: %d, %v", n, err)
			}
			host, err := os.ReadFile(s.host("big"))
			if err != nil || !bytes.Equal(host, data) {
				t.Fatalf("host file differs from what was written (%d bytes, %v)", len(host), err)
			}
			got, err := s.read(o.Entry.NodeID, o.Open.Fh, 0, 1<<20)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("1 MiB READ differs from the data (%d bytes, %v)", len(got), err)
			}
			// An unaligned piece across page boundaries.
			got, err = s.read(o.Entry.NodeID, o.Open.Fh, 4000, 10000)
			if err != nil || !bytes.Equal(got, data[4000:14000]) {
				t.Fatalf("READ of 10000 at 4000 differs (%d bytes, %v)", len(got), err)
			}
			// One byte over max_write is refused, and the file stays as it was.
			_, err = s.write(o.Entry.NodeID, o.Open.Fh, 0, make([]byte, 1<<20+1))
			wantErrno(t, "WRITE larger than max_write", err, syscall.EINVAL)
			if host, _ := os.ReadFile(s.host("big")); !bytes.Equal(host, data) {
				t.Fatal("a refused WRITE changed the file")
			}
			s.release(o.Entry.NodeID, o.Open.Fh)
		})
	}
}

func TestStackFsyncFlush(t *testing.T) {
	s := newStack(t)
	o := s.create(fuse.RootID, "f", unix.O_RDWR|unix.O_CREAT, 0o644)
	node, fh := o.Entry.NodeID, o.Open.Fh
	if _, err := s.write(node, fh, 0, []byte("synced")); err != nil {
		t.Fatal(err)
	}
	for _, flags := range []uint32{0, fuse.FsyncFdatasync} {
		if _, err := s.c.Do(fuse.OpFsync, node, 0, fusetest.Bytes(&fuse.FsyncIn{Fh: fh, FsyncFlags: flags})); err != nil {
			t.Fatalf("FSYNC flags %d: %v", flags, err)
		}
	}
	_, err := s.c.Do(fuse.OpFsync, node, 0, fusetest.Bytes(&fuse.FsyncIn{Fh: 999}))
	wantErrno(t, "FSYNC of an unknown handle", err, syscall.EBADF)
	if _, err := s.c.Do(fuse.OpFlush, node, 0, fusetest.Bytes(&fuse.FlushIn{Fh: fh})); err != nil {
		t.Fatalf("FLUSH: %v", err)
	}
	// FLUSH is a close() in the guest, not the end of the handle.
	if got, err := s.read(node, fh, 0, 6); err != nil || string(got) != "synced" {
		t.Fatalf("READ after FLUSH: %q, %v", got, err)
	}
	if n := daemonFDs(t, s.host("f")); n.opens != 1 {
		t.Errorf("daemon holds %d open fds to the file after FLUSH, want 1 (FLUSH must neither leak nor close)", n.opens)
	}
	_, err = s.c.Do(fuse.OpFlush, node, 0, fusetest.Bytes(&fuse.FlushIn{Fh: 999}))
	wantErrno(t, "FLUSH of an unknown handle", err, syscall.EBADF)
	s.release(node, fh)
}

func TestStackFallocate(t *testing.T) {
	s := newStack(t)
	o := s.create(fuse.RootID, "f", unix.O_RDWR|unix.O_CREAT, 0o644)
	fallocate := func(mode uint32, off, length uint64) error {
		in := fuse.FallocateIn{Fh: o.Open.Fh, Offset: off, Length: length, Mode: mode}
		_, err := s.c.Do(fuse.OpFallocate, o.Entry.NodeID, 0, fusetest.Bytes(&in))
		return err
	}
	if err := fallocate(0, 0, 1<<20); err != nil {
		t.Fatalf("FALLOCATE 1 MiB: %v", err)
	}
	st := s.lstat("f")
	if st.Size != 1<<20 || st.Blocks*512 < 1<<20 {
		t.Fatalf("after FALLOCATE: size %d, %d blocks; want 1 MiB allocated", st.Size, st.Blocks)
	}
	if err := fallocate(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 512<<10); err != nil {
		t.Fatalf("FALLOCATE punch hole: %v", err)
	}
	st2 := s.lstat("f")
	if st2.Size != 1<<20 || st2.Blocks >= st.Blocks {
		t.Errorf("after punching 512 KiB: size %d, %d blocks (were %d)", st2.Size, st2.Blocks, st.Blocks)
	}
	wantErrno(t, "FALLOCATE with an offset past 2^63", fallocate(0, 1<<63, 1), syscall.EINVAL)
	s.release(o.Entry.NodeID, o.Open.Fh)
}

func TestStackLseekSparse(t *testing.T) {
	s := newStack(t)
	const mib = 1 << 20
	f, err := os.Create(s.host("sparse"))
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 2 * mib} {
		if _, err := f.WriteAt(bytes.Repeat([]byte{'d'}, 4096), off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(4 * mib); err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	node := s.lookup(fuse.RootID, "sparse").NodeID
	fh := s.open(node, unix.O_RDONLY)
	for _, q := range []struct {
		whence int
		off    int64
	}{{unix.SEEK_HOLE, 0}, {unix.SEEK_DATA, 8192}, {unix.SEEK_HOLE, 2 * mib}, {unix.SEEK_DATA, 0}, {unix.SEEK_SET, 77}} {
		want, err := unix.Seek(int(f.Fd()), q.off, q.whence) // the host's answer for the same file
		if err != nil {
			t.Fatal(err)
		}
		in := fuse.LseekIn{Fh: fh, Offset: uint64(q.off), Whence: uint32(q.whence)}
		got, err := fusetest.Call[fuse.LseekOut](s.c, fuse.OpLseek, node, fusetest.Bytes(&in))
		if err != nil {
			t.Fatalf("LSEEK whence %d offset %d: %v", q.whence, q.off, err)
		}
		if int64(got.Offset) != want {
			t.Errorf("LSEEK whence %d offset %d = %d, host says %d", q.whence, q.off, got.Offset, want)
		}
	}
	if hole, _ := unix.Seek(int(f.Fd()), 0, unix.SEEK_HOLE); hole >= 2*mib {
		t.Logf("the host file system reports no holes (first hole at %d): SEEK_DATA/HOLE checks are weak here", hole)
	}
	_, err = fusetest.Call[fuse.LseekOut](s.c, fuse.OpLseek, node, fusetest.Bytes(&fuse.LseekIn{Fh: fh, Offset: 5 * mib, Whence: unix.SEEK_DATA}))
	wantErrno(t, "SEEK_DATA past the end", err, syscall.ENXIO)
	_, err = fusetest.Call[fuse.LseekOut](s.c, fuse.OpLseek, node, fusetest.Bytes(&fuse.LseekIn{Fh: fh, Whence: 17}))
	wantErrno(t, "LSEEK with an unknown whence", err, syscall.EINVAL)
	_, err = fusetest.Call[fuse.LseekOut](s.c, fuse.OpLseek, node, fusetest.Bytes(&fuse.LseekIn{Fh: fh, Offset: 1 << 63, Whence: unix.SEEK_SET}))
	wantErrno(t, "LSEEK to 2^63", err, syscall.EINVAL)
	s.release(node, fh)
}

func TestStackCopyFileRange(t *testing.T) {
	s := newStack(t)
	src := randomBytes(5000, 3)
	s.writeHost("src", src)
	srcNode := s.lookup(fuse.RootID, "src").NodeID
	srcFh := s.open(srcNode, unix.O_RDONLY)
	dst := s.create(fuse.RootID, "dst", unix.O_RDWR|unix.O_CREAT, 0o644)
	if _, err := s.write(dst.Entry.NodeID, dst.Open.Fh, 0, []byte("#####")); err != nil {
		t.Fatal(err)
	}
	in := fuse.CopyFileRangeIn{FhIn: srcFh, OffIn: 10, NodeIDOut: dst.Entry.NodeID, FhOut: dst.Open.Fh, OffOut: 5, Len: 1000}
	o, err := fusetest.Call[fuse.WriteOut](s.c, fuse.OpCopyFileRange, srcNode, fusetest.Bytes(&in))
	if err != nil || o.Size != 1000 {
		t.Fatalf("COPY_FILE_RANGE: %v, %v; want 1000 bytes", o, err)
	}
	want := append([]byte("#####"), src[10:1010]...)
	if got, _ := os.ReadFile(s.host("dst")); !bytes.Equal(got, want) {
		t.Errorf("host dst differs after COPY_FILE_RANGE (%d bytes, want %d)", len(got), len(want))
	}
	in.Flags = 1
	_, err = fusetest.Call[fuse.WriteOut](s.c, fuse.OpCopyFileRange, srcNode, fusetest.Bytes(&in))
	wantErrno(t, "COPY_FILE_RANGE with flags", err, syscall.EINVAL)
	in.Flags, in.FhOut = 0, 999
	_, err = fusetest.Call[fuse.WriteOut](s.c, fuse.OpCopyFileRange, srcNode, fusetest.Bytes(&in))
	wantErrno(t, "COPY_FILE_RANGE to an unknown handle", err, syscall.EBADF)
	s.release(srcNode, srcFh)
	s.release(dst.Entry.NodeID, dst.Open.Fh)
}

// Without POSIX locks FLUSH has nothing to do, so file handles say FOPEN_NOFLUSH and the guest's
// close(2) costs no round trip; with --posix-lock the guest must flush to drop its locks.
func TestStackNoFlushUnlessPosixLocks(t *testing.T) {
	for _, tc := range []struct {
		flags       []string
		wantNoFlush bool
	}{{nil, true}, {[]string{"--posix-lock"}, false}} {
		s := newStack(t, withFlags(tc.flags...))
		s.writeHost("f", []byte("x"))
		node := s.lookup(fuse.RootID, "f").NodeID
		o, err := fusetest.Call[fuse.OpenOut](s.c, fuse.OpOpen, node, fusetest.Bytes(&fuse.OpenIn{Flags: unix.O_RDONLY}))
		if err != nil {
			t.Fatal(err)
		}
		c := s.create(fuse.RootID, "new", unix.O_WRONLY, 0o644)
		for what, flags := range map[string]uint32{"OPEN": o.OpenFlags, "CREATE": c.Open.OpenFlags} {
			if got := flags&fuse.FopenNoFlush != 0; got != tc.wantNoFlush {
				t.Errorf("%v: %s open flags %#x, NOFLUSH %v, want %v", tc.flags, what, flags, got, tc.wantNoFlush)
			}
		}
		dir := s.lookup(fuse.RootID, ".").NodeID
		d, err := fusetest.Call[fuse.OpenOut](s.c, fuse.OpOpendir, dir, fusetest.Bytes(&fuse.OpenIn{}))
		if err != nil || d.OpenFlags&fuse.FopenNoFlush != 0 {
			t.Errorf("OPENDIR: %v, flags %+v: directories never get NOFLUSH", err, d)
		}
		s.shutdown()
	}
}
