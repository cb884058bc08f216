package main

// Full-stack tests of no-open mode (FUSE_NO_OPEN_SUPPORT, passfs/nodedata.go): the guest opens
// regular files without OPEN and RELEASE, and reads and writes them with fh 0.

import (
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/fuse/fusetest"
)

func newNoOpenStack(t *testing.T, opts ...stackOption) *stack {
	t.Helper()
	s := newStack(t, append([]stackOption{withGuestFlags(linux61Flags)}, opts...)...)
	agreed := uint64(s.init.Flags) | uint64(s.init.Flags2)<<32
	if agreed&fuse.CapNoOpenSupport == 0 {
		t.Fatalf("INIT flags %#x: NO_OPEN_SUPPORT not agreed", agreed)
	}
	if agreed&fuse.CapAtomicOTrunc != 0 {
		t.Fatalf("INIT flags %#x: ATOMIC_O_TRUNC agreed with NO_OPEN_SUPPORT (nobody would truncate on open)", agreed)
	}
	return s
}

// waitFDs polls until the daemon's fds to path satisfy ok (the idle write fd closes within about
// two seconds), failing after 5 s.
func waitFDs(t *testing.T, path, what string, ok func(fdCount) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := daemonFDs(t, path)
		if ok(c) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: daemon fds to %s are %+v", what, path, c)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStackNoOpenReadWrite(t *testing.T) {
	s := newNoOpenStack(t)
	s.writeHost("file", []byte("0123456789"))
	node := s.lookup(fuse.RootID, "file").NodeID
	_, err := fusetest.Call[fuse.OpenOut](s.c, fuse.OpOpen, node, fusetest.Bytes(&fuse.OpenIn{Flags: unix.O_RDONLY}))
	wantErrno(t, "OPEN in no-open mode", err, syscall.ENOSYS)

	got, err := s.read(node, 0, 3, 4)
	if err != nil || string(got) != "3456" {
		t.Fatalf("READ fh 0: %q, %v", got, err)
	}
	if c := daemonFDs(t, s.host("file")); c.opens != 1 || c.writers != 0 {
		t.Errorf("after READ: %+v, want one read-only data fd", c)
	}
	if n, err := s.write(node, 0, 2, []byte("ab")); err != nil || n != 2 {
		t.Fatalf("WRITE fh 0: %d, %v", n, err)
	}
	if b, _ := os.ReadFile(s.host("file")); string(b) != "01ab456789" {
		t.Errorf("host file after WRITE fh 0: %q", b)
	}
	if got, err := s.read(node, 0, 0, 100); err != nil || string(got) != "01ab456789" {
		t.Errorf("READ fh 0 after the write: %q, %v", got, err)
	}
	if _, err := s.c.Do(fuse.OpFsync, node, 0, fusetest.Bytes(&fuse.FsyncIn{})); err != nil {
		t.Errorf("FSYNC fh 0: %v", err)
	}
	// The guest truncates with SETATTR (no ATOMIC_O_TRUNC), naming fh 0.
	in := fuse.SetattrIn{Valid: fuse.FattrSize | fuse.FattrFh, Size: 4}
	if _, err := fusetest.Call[fuse.AttrOut](s.c, fuse.OpSetattr, node, fusetest.Bytes(&in)); err != nil {
		t.Fatalf("SETATTR size with fh 0: %v", err)
	}
	if st := s.lstat("file"); st.Size != 4 {
		t.Errorf("size after SETATTR: %d, want 4", st.Size)
	}
	_, err = s.c.Do(fuse.OpFlush, node, 0, fusetest.Bytes(&fuse.FlushIn{}))
	wantErrno(t, "FLUSH in no-open mode (stops the guest's FLUSHes)", err, syscall.ENOSYS)

	// The data fds go once the guest stops using them (an open write fd would make a host exec
	// fail with ETXTBSY; fds of every file ever read would crowd the node fds out of the budget).
	waitFDs(t, s.host("file"), "idle data fds", func(c fdCount) bool { return c.opens == 0 && c.paths == 1 })
	if got, err := s.read(node, 0, 0, 100); err != nil || string(got) != "01ab" {
		t.Errorf("READ fh 0 after the idle close: %q, %v", got, err)
	}
	// FORGET closes every fd of the node.
	if _, err := s.c.Do(fuse.OpForget, node, -1, fusetest.Bytes(&fuse.ForgetIn{Nlookup: 1})); err != nil {
		t.Fatal(err)
	}
	waitFDs(t, s.host("file"), "after FORGET", func(c fdCount) bool { return c.opens == 0 && c.paths == 0 })
}

func TestStackNoOpenCreate(t *testing.T) {
	s := newNoOpenStack(t)
	o := s.create(fuse.RootID, "new", unix.O_WRONLY|unix.O_CREAT|unix.O_APPEND, 0o640)
	if o.Open.Fh != 0 {
		t.Fatalf("CREATE in no-open mode gave fh %d, want 0 (a 6.1 guest never releases it)", o.Open.Fh)
	}
	node := o.Entry.NodeID
	if n, err := s.write(node, 0, 0, []byte("created")); err != nil || n != 7 {
		t.Fatalf("WRITE fh 0 after CREATE: %d, %v", n, err)
	}
	// The guest computes append offsets; the shared fd must not append by itself.
	if n, err := s.write(node, 0, 0, []byte("C")); err != nil || n != 1 {
		t.Fatalf("WRITE fh 0 at 0: %d, %v", n, err)
	}
	if b, _ := os.ReadFile(s.host("new")); string(b) != "Created" {
		t.Errorf("host file holds %q, want %q", b, "Created")
	}
	if got, err := s.read(node, 0, 0, 100); err != nil || string(got) != "Created" {
		t.Errorf("READ fh 0 of the created file: %q, %v", got, err)
	}
	if c := daemonFDs(t, s.host("new")); c.writers != 1 || c.opens != 2 {
		t.Errorf("after CREATE, WRITE and READ: %+v, want CREATE's write fd and a read fd", c)
	}
	// Newer guests do send RELEASE for a created file; fh 0 has nothing to close.
	if _, err := s.c.Do(fuse.OpRelease, node, 0, fusetest.Bytes(&fuse.ReleaseIn{Fh: 0})); err != nil {
		t.Errorf("RELEASE fh 0: %v", err)
	}
	// CREATE of an existing name without O_EXCL opens nothing (ESTALE: the guest looks again).
	_, err := fusetest.Call[createOut](s.c, fuse.OpCreate, fuse.RootID,
		fusetest.Bytes(&fuse.CreateIn{Flags: unix.O_RDWR | unix.O_CREAT | unix.O_TRUNC, Mode: 0o600}), fusetest.Name("new"))
	wantErrno(t, "CREATE O_TRUNC of the existing file", err, syscall.ESTALE)
	if st := s.lstat("new"); st.Size != 7 {
		t.Errorf("CREATE O_TRUNC of the existing file: %d bytes left, want 7", st.Size)
	}
	waitFDs(t, s.host("new"), "idle data fds", func(c fdCount) bool { return c.opens == 0 })
}

// fh 0 reaches only regular files: a FIFO would block the worker, a directory has no data.
func TestStackNoOpenRefusesOtherTypes(t *testing.T) {
	s := newNoOpenStack(t)
	if err := unix.Mkfifo(s.host("fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(s.host("dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"fifo", "dir"} {
		node := s.lookup(fuse.RootID, name).NodeID
		_, err := s.read(node, 0, 0, 10)
		wantErrno(t, "READ fh 0 of "+name, err, syscall.EBADF)
		_, err = s.write(node, 0, 0, []byte("x"))
		wantErrno(t, "WRITE fh 0 of "+name, err, syscall.EBADF)
	}
	_, err := s.read(4242, 0, 0, 10)
	wantErrno(t, "READ fh 0 of an unknown node", err, syscall.EBADF)
	s.alive()
}

// Locks need a handle per open file, cache=never and metadata (DIRECT_IO) must not let the guest
// keep pages across opens: they keep OPEN (and ATOMIC_O_TRUNC).
func TestStackNoOpenNotWithLocksOrDirectIO(t *testing.T) {
	for _, flags := range [][]string{{"--posix-lock"}, {"--flock"}, {"--cache=never"}, {"--cache=metadata"}, {"--no-open=false"}} {
		s := newStack(t, withGuestFlags(linux61Flags), withFlags(flags...))
		if uint64(s.init.Flags)&fuse.CapAtomicOTrunc == 0 {
			t.Errorf("%v: ATOMIC_O_TRUNC not agreed", flags)
		}
		s.writeHost("f", []byte("x"))
		fh := s.open(s.lookup(fuse.RootID, "f").NodeID, unix.O_RDONLY)
		if fh == 0 {
			t.Errorf("%v: OPEN gave no handle", flags)
		}
		s.shutdown()
	}
}
