package main

// Full-stack tests of locking: GETLK, SETLK, SETLKW (OFD locks) and flock (LkFlock).

import (
	"math"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/fuse/fusetest"
	"github.com/uvfsd/uvfsd/vhost/frontend"
)

// wholeFile is a lock range covering the whole file, as the kernel sends it (end = OFFSET_MAX).
func wholeFile(typ uint32) fuse.FileLock {
	return fuse.FileLock{Start: 0, End: math.MaxInt64, Type: typ}
}

// setlk locks through handle fh as lock owner fh (as if each open belonged to its own process).
func (s *stack) setlk(op fuse.Opcode, node, fh uint64, lk fuse.FileLock, flags uint32) error {
	return s.setlkAs(op, node, fh, fh, lk, flags)
}

func (s *stack) setlkAs(op fuse.Opcode, node, fh, owner uint64, lk fuse.FileLock, flags uint32) error {
	in := fuse.LkIn{Fh: fh, Owner: owner, Lk: lk, LkFlags: flags}
	_, err := s.c.Do(op, node, 0, fusetest.Bytes(&in))
	return err
}

// flush is the guest's close(2) by lock owner owner.
func (s *stack) flush(node, fh, owner uint64) error {
	_, err := s.c.Do(fuse.OpFlush, node, 0, fusetest.Bytes(&fuse.FlushIn{Fh: fh, LockOwner: owner}))
	return err
}

// hostLock asks the host which lock conflicts with a write lock on the whole file, through a fresh
// fd of the test's own: F_UNLCK if none.
func hostLock(t *testing.T, path string) unix.Flock_t {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	fl := unix.Flock_t{Type: unix.F_WRLCK, Whence: unix.SEEK_SET}
	if err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_GETLK, &fl); err != nil {
		t.Fatal(err)
	}
	return fl
}

func TestStackPosixLocks(t *testing.T) {
	s := newStack(t, withFlags("--posix-lock"))
	o := s.create(fuse.RootID, "locked", unix.O_RDWR|unix.O_CREAT, 0o644)
	node, fh1 := o.Entry.NodeID, o.Open.Fh
	fh2 := s.open(node, unix.O_RDWR)

	if err := s.setlk(fuse.OpSetlk, node, fh1, fuse.FileLock{Start: 10, End: 19, Type: unix.F_WRLCK}, 0); err != nil {
		t.Fatalf("SETLK write lock on [10,19]: %v", err)
	}
	if fl := hostLock(t, s.host("locked")); fl.Type != unix.F_WRLCK || fl.Start != 10 || fl.Len != 10 {
		t.Fatalf("host sees lock %+v, want a write lock on 10 bytes at 10", fl)
	}
	getlk := func(fh uint64, lk fuse.FileLock) *fuse.LkOut {
		t.Helper()
		out, err := fusetest.Call[fuse.LkOut](s.c, fuse.OpGetlk, node, fusetest.Bytes(&fuse.LkIn{Fh: fh, Owner: fh, Lk: lk}))
		if err != nil {
			t.Fatalf("GETLK: %v", err)
		}
		return out
	}
	if got := getlk(fh2, wholeFile(unix.F_RDLCK)).Lk; got.Type != unix.F_WRLCK || got.Start != 10 || got.End != 19 {
		t.Errorf("GETLK from the second open reports %+v, want the write lock on [10,19]", got)
	}
	if got := getlk(fh2, fuse.FileLock{Start: 20, End: 100, Type: unix.F_WRLCK}).Lk; got.Type != unix.F_UNLCK {
		t.Errorf("GETLK of a free range reports %+v, want F_UNLCK", got)
	}
	if got := getlk(fh1, wholeFile(unix.F_WRLCK)).Lk; got.Type != unix.F_UNLCK {
		t.Errorf("GETLK by the lock's own handle reports %+v, want F_UNLCK", got)
	}
	wantErrno(t, "conflicting SETLK", s.setlk(fuse.OpSetlk, node, fh2, wholeFile(unix.F_WRLCK), 0), syscall.EAGAIN)
	wantErrno(t, "SETLK with a bad type", s.setlk(fuse.OpSetlk, node, fh2, wholeFile(7), 0), syscall.EINVAL)
	wantErrno(t, "SETLK with end before start", s.setlk(fuse.OpSetlk, node, fh2, fuse.FileLock{Start: 5, End: 4, Type: unix.F_RDLCK}, 0), syscall.EINVAL)

	// SETLKW waits on a goroutine of its own: the queue keeps serving meanwhile.
	waited, exited := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(exited)
		waited <- s.setlk(fuse.OpSetlkw, node, fh2, wholeFile(unix.F_WRLCK), 0)
	}()
	// If the test stops early, the front-end must outlive this Call (bounded by its timeout).
	t.Cleanup(func() { <-exited })
	select {
	case err := <-waited:
		t.Fatalf("SETLKW returned (%v) while a conflicting lock is held", err)
	case <-time.After(200 * time.Millisecond):
	}
	for i := 0; i < 5; i++ {
		start := time.Now()
		if _, err := s.getattr(node); err != nil {
			t.Fatalf("GETATTR while SETLKW waits: %v", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("GETATTR took %v while SETLKW waits: the queue is blocked", d)
		}
	}
	if err := s.setlk(fuse.OpSetlk, node, fh1, fuse.FileLock{Start: 10, End: 19, Type: unix.F_UNLCK}, 0); err != nil {
		t.Fatalf("SETLK unlock: %v", err)
	}
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("SETLKW after the conflicting lock went: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("SETLKW still waits 5 s after the conflicting lock was released")
	}
	if fl := hostLock(t, s.host("locked")); fl.Type != unix.F_WRLCK || fl.Start != 0 || fl.Len != 0 {
		t.Errorf("host sees lock %+v, want the SETLKW write lock on the whole file", fl)
	}
	if got := getlk(fh1, fuse.FileLock{Start: 0, End: 0, Type: unix.F_RDLCK}).Lk; got.Type != unix.F_WRLCK {
		t.Errorf("GETLK from the first open reports %+v, want the second open's lock", got)
	}
	// The guest's close(2) sends FLUSH with the closing owner: its locks go.
	if err := s.flush(node, fh2, fh2); err != nil {
		t.Fatal(err)
	}
	if fl := hostLock(t, s.host("locked")); fl.Type != unix.F_UNLCK {
		t.Errorf("host still sees lock %+v after FLUSH", fl)
	}
	s.release(node, fh2)
	s.release(node, fh1)
}

// POSIX locks belong to a lock owner (a guest process), not to an open file: two owners sharing one
// open file (a parent and its child after fork) conflict, one owner's opens share its locks, and
// closing any of the owner's fds (FLUSH) drops all of them but not another owner's.
func TestStackPosixLocksFollowTheOwner(t *testing.T) {
	s := newStack(t, withFlags("--posix-lock"))
	o := s.create(fuse.RootID, "locked", unix.O_RDWR|unix.O_CREAT, 0o644)
	node, shared := o.Entry.NodeID, o.Open.Fh
	other := s.open(node, unix.O_RDWR)
	const parent, child = 101, 102
	if err := s.setlkAs(fuse.OpSetlk, node, shared, parent, fuse.FileLock{Start: 0, End: 9, Type: unix.F_WRLCK}, 0); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, "the child's lock through the same open file", s.setlkAs(fuse.OpSetlk, node, shared, child, fuse.FileLock{Start: 5, End: 5, Type: unix.F_WRLCK}, 0), syscall.EAGAIN)
	if err := s.setlkAs(fuse.OpSetlk, node, other, parent, fuse.FileLock{Start: 5, End: 14, Type: unix.F_WRLCK}, 0); err != nil {
		t.Errorf("the parent's lock through its other open: %v (its own locks must not conflict)", err)
	}
	if err := s.setlkAs(fuse.OpSetlk, node, shared, child, fuse.FileLock{Start: 20, End: 29, Type: unix.F_WRLCK}, 0); err != nil {
		t.Fatal(err)
	}
	// The parent closes its other fd: all its locks go, the child's stay.
	if err := s.flush(node, other, parent); err != nil {
		t.Fatal(err)
	}
	if err := s.setlkAs(fuse.OpSetlk, node, shared, child, fuse.FileLock{Start: 0, End: 14, Type: unix.F_WRLCK}, 0); err != nil {
		t.Errorf("the child's lock after the parent's close: %v", err)
	}
	wantErrno(t, "the parent's lock on the child's range", s.setlkAs(fuse.OpSetlk, node, shared, parent, fuse.FileLock{Start: 25, End: 25, Type: unix.F_RDLCK}, 0), syscall.EAGAIN)
	if err := s.flush(node, shared, child); err != nil {
		t.Fatal(err)
	}
	if fl := hostLock(t, s.host("locked")); fl.Type != unix.F_UNLCK {
		t.Errorf("host still sees lock %+v after both owners closed", fl)
	}
	s.release(node, other)
	s.release(node, shared)
}

func TestStackFlock(t *testing.T) {
	s := newStack(t, withFlags("--flock"))
	o := s.create(fuse.RootID, "flocked", unix.O_RDWR|unix.O_CREAT, 0o644)
	node, fh1 := o.Entry.NodeID, o.Open.Fh
	fh2 := s.open(node, unix.O_RDONLY)
	hostTry := func() error {
		fd, err := unix.Open(s.host("flocked"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		return unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
	}
	if err := s.setlk(fuse.OpSetlk, node, fh1, wholeFile(unix.F_WRLCK), fuse.LkFlock); err != nil {
		t.Fatalf("flock LOCK_EX: %v", err)
	}
	if err := hostTry(); err != unix.EWOULDBLOCK {
		t.Fatalf("host flock while the guest holds LOCK_EX: %v, want EWOULDBLOCK", err)
	}
	wantErrno(t, "conflicting flock", s.setlk(fuse.OpSetlk, node, fh2, wholeFile(unix.F_RDLCK), fuse.LkFlock), syscall.EWOULDBLOCK)
	_, err := fusetest.Call[fuse.LkOut](s.c, fuse.OpGetlk, node, fusetest.Bytes(&fuse.LkIn{Fh: fh2, Lk: wholeFile(unix.F_RDLCK), LkFlags: fuse.LkFlock}))
	wantErrno(t, "GETLK for flock", err, syscall.EINVAL)

	// RELEASE with FLOCK_UNLOCK drops the lock, so the second open gets it.
	if _, err := s.c.Do(fuse.OpRelease, node, 0, fusetest.Bytes(&fuse.ReleaseIn{Fh: fh1, ReleaseFlags: fuse.ReleaseFlockUnlock})); err != nil {
		t.Fatalf("RELEASE with FLOCK_UNLOCK: %v", err)
	}
	if err := s.setlk(fuse.OpSetlkw, node, fh2, wholeFile(unix.F_RDLCK), fuse.LkFlock); err != nil {
		t.Fatalf("flock LOCK_SH after the release: %v", err)
	}
	if err := hostTry(); err != unix.EWOULDBLOCK {
		t.Errorf("host LOCK_EX while the guest holds LOCK_SH: %v, want EWOULDBLOCK", err)
	}
	if err := s.setlk(fuse.OpSetlk, node, fh2, wholeFile(unix.F_UNLCK), fuse.LkFlock); err != nil {
		t.Fatalf("flock LOCK_UN: %v", err)
	}
	if err := hostTry(); err != nil {
		t.Errorf("host LOCK_EX after the guest unlocked: %v", err)
	}
	s.release(node, fh2)
}

// TestStackDisconnectWithSetlkwPending hangs up while a SETLKW waits: the back-end must still end
// the session (ServeConn returns nil after its stop timeout), and once the file system is closed
// the abandoned request finishes and leaves no lock and no fd behind.
func TestStackDisconnectWithSetlkwPending(t *testing.T) {
	s := newStack(t, withFlags("--posix-lock"))
	o := s.create(fuse.RootID, "locked", unix.O_RDWR|unix.O_CREAT, 0o644)
	node, fh1 := o.Entry.NodeID, o.Open.Fh
	fh2 := s.open(node, unix.O_RDWR)
	if err := s.setlk(fuse.OpSetlk, node, fh1, wholeFile(unix.F_WRLCK), 0); err != nil {
		t.Fatal(err)
	}
	lk := fuse.LkIn{Fh: fh2, Owner: fh2, Lk: wholeFile(unix.F_WRLCK)}
	h := fuse.InHeader{Len: 40 + uint32(len(fusetest.Bytes(&lk))), Opcode: fuse.OpSetlkw, Unique: 9, NodeID: node}
	req := s.guestBuf(append(fusetest.Bytes(&h), fusetest.Bytes(&lk)...), 0)
	out := s.guestBuf(nil, 16)
	// Placed by hand, not with Call: the front-end must not wait on guest memory it unmaps below.
	s.f.SetDesc(requestQueue, 0, frontend.Desc{Addr: req, Len: h.Len, Flags: frontend.DescNext, Next: 1})
	s.f.SetDesc(requestQueue, 1, frontend.Desc{Addr: out, Len: 16, Flags: frontend.DescWrite})
	s.f.Publish(requestQueue, 0)
	if err := s.f.Kick(requestQueue); err != nil {
		t.Fatal(err)
	}
	if e, err := s.f.WaitUsed(requestQueue, 200*time.Millisecond); err == nil {
		t.Fatalf("SETLKW completed (%+v) while the conflicting lock is held", e)
	}
	start := time.Now()
	s.shutdown() // checks that ServeConn returns nil
	t.Logf("ServeConn returned %v after the disconnect", time.Since(start))
	deadline := time.Now().Add(5 * time.Second)
	for {
		fds := daemonFDs(t, s.host("locked"))
		fl := hostLock(t, s.host("locked"))
		if fds == (fdCount{}) && fl.Type == unix.F_UNLCK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("5 s after closing the file system: fds %+v and lock %+v remain", fds, fl)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
