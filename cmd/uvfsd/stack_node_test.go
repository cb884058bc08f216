package main

// Full-stack tests of the node operations: LOOKUP, FORGET, BATCH_FORGET, GETATTR, SETATTR,
// READLINK, SYMLINK, MKNOD, MKDIR, UNLINK, RMDIR, RENAME, RENAME2, LINK, ACCESS, STATFS, SYNCFS.

import (
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/fuse/fusetest"
)

// checkAttr compares a FUSE attr with the host's lstat of rel.
func (s *stack) checkAttr(what string, a *fuse.Attr, rel string) {
	s.t.Helper()
	st := s.lstat(rel)
	if a.Ino != st.Ino || a.Mode != st.Mode || a.Size != uint64(st.Size) || a.Nlink != uint32(st.Nlink) ||
		a.UID != st.Uid || a.GID != st.Gid || a.Mtime != uint64(st.Mtim.Sec) || a.Mtimensec != uint32(st.Mtim.Nsec) {
		s.t.Fatalf("%s: attr %+v does not match host lstat of %s %+v", what, *a, rel, *st)
	}
}

func TestStackLookup(t *testing.T) {
	s := newStack(t)
	s.writeHost("file", []byte("hello"))
	e := s.lookup(fuse.RootID, "file")
	if e.NodeID == 0 || e.NodeID == fuse.RootID {
		t.Fatalf("LOOKUP gave node id %d", e.NodeID)
	}
	s.checkAttr("LOOKUP", &e.Attr, "file")
	if e.EntryValid != 1 || e.AttrValid != 1 {
		t.Errorf("cache=auto timeouts %d/%d s, want 1/1", e.EntryValid, e.AttrValid)
	}
	again := s.lookup(fuse.RootID, "file")
	if again.NodeID != e.NodeID {
		t.Errorf("second LOOKUP of the same file: node %d, first was %d", again.NodeID, e.NodeID)
	}
	miss, err := s.c.Lookup(fuse.RootID, "missing")
	wantMiss(t, "LOOKUP of a missing name", miss, err)
	_, err = s.c.Lookup(e.NodeID, "x")
	wantErrno(t, "LOOKUP in a regular file", err, syscall.ENOTDIR)
	_, err = s.c.Lookup(987654, "file")
	wantErrno(t, "LOOKUP in an unknown node", err, syscall.EBADF)
}

func TestStackForgetOnHiprio(t *testing.T) {
	s := newStack(t)
	s.writeHost("file", nil)
	e := s.lookup(fuse.RootID, "file")
	s.lookup(fuse.RootID, "file")
	s.lookup(fuse.RootID, "file") // nlookup 3
	if n := daemonFDs(t, s.host("file")); n.paths > 1 || n.opens != 0 {
		t.Fatalf("daemon holds %+v fds to a looked-up file, want at most one O_PATH fd", n)
	}
	forget := func(n uint64) {
		t.Helper()
		oh, payload, err := s.hiprio.Raw(fuse.OpForget, e.NodeID, 0, nil, fusetest.Bytes(&fuse.ForgetIn{Nlookup: n}))
		if err != nil || oh != (fuse.OutHeader{}) || payload != nil {
			t.Fatalf("FORGET got a reply (%+v %x) or failed (%v); it has none", oh, payload, err)
		}
	}
	forget(2)
	if _, err := s.getattr(e.NodeID); err != nil {
		t.Fatalf("GETATTR after forgetting 2 of 3 lookups: %v", err)
	}
	forget(1)
	_, err := s.getattr(e.NodeID)
	wantErrno(t, "GETATTR of a forgotten node", err, syscall.EBADF)
	if n := daemonFDs(t, s.host("file")); n != (fdCount{}) {
		t.Errorf("daemon still holds fds %+v to a forgotten file", n)
	}
	forget(5) // an unknown node: ignored
	oh, _, err := s.hiprio.Raw(fuse.OpForget, fuse.RootID, 0, nil, fusetest.Bytes(&fuse.ForgetIn{Nlookup: 100}))
	if err != nil || oh.Unique != 0 {
		t.Fatalf("FORGET of the root: %+v, %v", oh, err)
	}
	s.alive() // the root is never forgotten
}

func TestStackBatchForgetOnHiprio(t *testing.T) {
	s := newStack(t)
	names := []string{"a", "b", "c"}
	s.writeHost("d", nil)
	s.writeHost("e", nil)
	var list []byte
	for _, name := range names {
		s.writeHost(name, nil)
		e := s.lookup(fuse.RootID, name)
		list = append(list, fusetest.Bytes(&fuse.ForgetOne{NodeID: e.NodeID, Nlookup: 1})...)
	}
	keep := s.lookup(fuse.RootID, "a") // a second lookup of "a": it survives one forget
	// Count claims more entries than were sent: the server forgets what is there.
	oh, _, err := s.hiprio.Raw(fuse.OpBatchForget, 0, 0, nil, fusetest.Bytes(&fuse.BatchForgetIn{Count: 10}), list)
	if err != nil || oh.Unique != 0 {
		t.Fatalf("BATCH_FORGET: reply %+v, %v; want no reply", oh, err)
	}
	if _, err := s.getattr(keep.NodeID); err != nil {
		t.Fatalf("a node with a lookup left was dropped: %v", err)
	}
	for _, name := range names[1:] {
		if n := daemonFDs(t, s.host(name)); n != (fdCount{}) {
			t.Errorf("%s: daemon still holds fds %+v after BATCH_FORGET", name, n)
		}
		_, err := s.getattr(s.lookup(fuse.RootID, name).NodeID)
		if err != nil {
			t.Fatalf("GETATTR after a new LOOKUP of %s: %v", name, err)
		}
	}
	// A count below the entries sent forgets only that many.
	d, e := s.lookup(fuse.RootID, "d"), s.lookup(fuse.RootID, "e")
	two := append(fusetest.Bytes(&fuse.ForgetOne{NodeID: d.NodeID, Nlookup: 1}), fusetest.Bytes(&fuse.ForgetOne{NodeID: e.NodeID, Nlookup: 1})...)
	if _, _, err := s.hiprio.Raw(fuse.OpBatchForget, 0, 0, nil, fusetest.Bytes(&fuse.BatchForgetIn{Count: 1}), two); err != nil {
		t.Fatal(err)
	}
	_, err = s.getattr(d.NodeID)
	wantErrno(t, "GETATTR of the first node of a count-1 BATCH_FORGET", err, syscall.EBADF)
	if _, err := s.getattr(e.NodeID); err != nil {
		t.Fatalf("BATCH_FORGET with count 1 forgot the second entry too: %v", err)
	}
}

func TestStackGetattr(t *testing.T) {
	s := newStack(t)
	s.writeHost("file", []byte("twelve bytes"))
	e := s.lookup(fuse.RootID, "file")
	a, err := s.getattr(e.NodeID)
	if err != nil {
		t.Fatal(err)
	}
	s.checkAttr("GETATTR", &a.Attr, "file")
	if a.AttrValid != 1 {
		t.Errorf("attr_valid %d, want 1 (cache=auto)", a.AttrValid)
	}
	// The attr follows host changes.
	if err := os.WriteFile(s.host("file"), []byte("longer than before"), 0o644); err != nil {
		t.Fatal(err)
	}
	if a, err = s.getattr(e.NodeID); err != nil || a.Attr.Size != 18 {
		t.Fatalf("GETATTR after a host write: size %v, %v; want 18", a, err)
	}
	root, err := s.getattr(fuse.RootID)
	if err != nil {
		t.Fatal(err)
	}
	s.checkAttr("GETATTR root", &root.Attr, ".")
}

func TestStackSetattr(t *testing.T) {
	s := newStack(t)
	s.writeHost("file", []byte("some content"))
	e := s.lookup(fuse.RootID, "file")
	setattr := func(in fuse.SetattrIn) *fuse.AttrOut {
		t.Helper()
		a, err := fusetest.Call[fuse.AttrOut](s.c, fuse.OpSetattr, e.NodeID, fusetest.Bytes(&in))
		if err != nil {
			t.Fatalf("SETATTR valid %#x: %v", in.Valid, err)
		}
		s.checkAttr("SETATTR reply", &a.Attr, "file")
		return a
	}
	a := setattr(fuse.SetattrIn{Valid: fuse.FattrMode, Mode: 0o640})
	if st := s.lstat("file"); st.Mode&0o7777 != 0o640 || a.Attr.Mode&0o7777 != 0o640 {
		t.Errorf("mode: host %o, reply %o; want 640", st.Mode, a.Attr.Mode)
	}
	setattr(fuse.SetattrIn{Valid: fuse.FattrSize, Size: 4})
	if b, _ := os.ReadFile(s.host("file")); string(b) != "some" {
		t.Errorf("after truncating to 4 the host file holds %q", b)
	}
	fh := s.open(e.NodeID, unix.O_RDWR)
	setattr(fuse.SetattrIn{Valid: fuse.FattrSize | fuse.FattrFh, Fh: fh, Size: 9000})
	if st := s.lstat("file"); st.Size != 9000 {
		t.Errorf("size through a handle: host %d, want 9000", st.Size)
	}
	s.release(e.NodeID, fh)
	setattr(fuse.SetattrIn{Valid: fuse.FattrAtime | fuse.FattrMtime,
		Atime: 1000000000, Atimensec: 5, Mtime: 1200000000, Mtimensec: 123456789})
	st := s.lstat("file")
	if st.Atim.Sec != 1000000000 || st.Atim.Nsec != 5 || st.Mtim.Sec != 1200000000 || st.Mtim.Nsec != 123456789 {
		t.Errorf("times: host atime %v mtime %v", st.Atim, st.Mtim)
	}
	setattr(fuse.SetattrIn{Valid: fuse.FattrMtimeNow})
	if st2 := s.lstat("file"); st2.Mtim.Sec <= 1200000000 || st2.Atim != st.Atim {
		t.Errorf("MTIME_NOW: host mtime %v (atime %v, was %v)", st2.Mtim, st2.Atim, st.Atim)
	}
	_, err := fusetest.Call[fuse.AttrOut](s.c, fuse.OpSetattr, e.NodeID,
		fusetest.Bytes(&fuse.SetattrIn{Valid: fuse.FattrSize | fuse.FattrFh, Fh: 4242, Size: 1}))
	wantErrno(t, "SETATTR with an unknown handle", err, syscall.EBADF)
	if st := s.lstat("file"); st.Size != 9000 {
		t.Errorf("a failed SETATTR changed the size to %d", st.Size)
	}
	t.Run("owner as root", func(t *testing.T) {
		needRoot(t)
		a := setattr(fuse.SetattrIn{Valid: fuse.FattrUID | fuse.FattrGID, UID: 1234, GID: 5678})
		if st := s.lstat("file"); st.Uid != 1234 || st.Gid != 5678 || a.Attr.UID != 1234 || a.Attr.GID != 5678 {
			t.Errorf("chown: host %d:%d, reply %d:%d; want 1234:5678", st.Uid, st.Gid, a.Attr.UID, a.Attr.GID)
		}
	})
}

func TestStackSymlinkAndReadlink(t *testing.T) {
	s := newStack(t)
	e, err := fusetest.Call[fuse.EntryOut](s.c, fuse.OpSymlink, fuse.RootID, fusetest.Name("link"), fusetest.Name("../some/target"))
	if err != nil {
		t.Fatalf("SYMLINK: %v", err)
	}
	if target, err := os.Readlink(s.host("link")); err != nil || target != "../some/target" {
		t.Fatalf("host readlink: %q, %v", target, err)
	}
	s.checkAttr("SYMLINK", &e.Attr, "link")
	if e.Attr.Mode&unix.S_IFMT != unix.S_IFLNK {
		t.Errorf("SYMLINK reply mode %o is not a symlink", e.Attr.Mode)
	}
	got, err := s.c.Do(fuse.OpReadlink, e.NodeID, 4096)
	if err != nil || string(got) != "../some/target" {
		t.Fatalf("READLINK: %q, %v", got, err)
	}
	// A link made on the host reads back the same way.
	if err := os.Symlink("/host/made", s.host("hostlink")); err != nil {
		t.Fatal(err)
	}
	got, err = s.c.Do(fuse.OpReadlink, s.lookup(fuse.RootID, "hostlink").NodeID, 4096)
	if err != nil || string(got) != "/host/made" {
		t.Fatalf("READLINK of a host symlink: %q, %v", got, err)
	}
	s.writeHost("file", nil)
	_, err = s.c.Do(fuse.OpReadlink, s.lookup(fuse.RootID, "file").NodeID, 4096)
	wantErrno(t, "READLINK of a regular file", err, syscall.EINVAL)
	_, err = fusetest.Call[fuse.EntryOut](s.c, fuse.OpSymlink, fuse.RootID, fusetest.Name("link"), fusetest.Name("x"))
	wantErrno(t, "SYMLINK over an existing name", err, syscall.EEXIST)
}

func TestStackMknodFifo(t *testing.T) {
	s := newStack(t)
	e, err := fusetest.Call[fuse.EntryOut](s.c, fuse.OpMknod, fuse.RootID,
		fusetest.Bytes(&fuse.MknodIn{Mode: unix.S_IFIFO | 0o640}), fusetest.Name("fifo"))
	if err != nil {
		t.Fatalf("MKNOD fifo: %v", err)
	}
	st := s.lstat("fifo")
	if st.Mode != unix.S_IFIFO|0o640 {
		t.Errorf("host mode %o, want fifo 640", st.Mode)
	}
	s.checkAttr("MKNOD", &e.Attr, "fifo")
	// Opening a FIFO would block the daemon: refused.
	_, err = fusetest.Call[fuse.OpenOut](s.c, fuse.OpOpen, e.NodeID, fusetest.Bytes(&fuse.OpenIn{Flags: unix.O_RDONLY}))
	if err == nil {
		t.Error("OPEN of a FIFO succeeded")
	}
	s.alive()
}

func TestStackMknodWhiteoutAsRoot(t *testing.T) {
	needRoot(t)
	s := newStack(t)
	e, err := fusetest.Call[fuse.EntryOut](s.c, fuse.OpMknod, fuse.RootID,
		fusetest.Bytes(&fuse.MknodIn{Mode: unix.S_IFCHR, Rdev: 0}), fusetest.Name("whiteout"))
	if err != nil {
		t.Fatalf("MKNOD 0:0 char device: %v", err)
	}
	st := s.lstat("whiteout")
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("host mode %o rdev %d, want a 0:0 char device", st.Mode, st.Rdev)
	}
	if e.Attr.Mode&unix.S_IFMT != unix.S_IFCHR || e.Attr.Rdev != 0 {
		t.Errorf("reply mode %o rdev %d", e.Attr.Mode, e.Attr.Rdev)
	}
	_, err = fusetest.Call[fuse.OpenOut](s.c, fuse.OpOpen, e.NodeID, fusetest.Bytes(&fuse.OpenIn{Flags: unix.O_RDONLY}))
	if err == nil {
		t.Error("OPEN of a device node succeeded (CVE-2020-35517)")
	}
}

func TestStackMkdirRmdirUnlink(t *testing.T) {
	s := newStack(t)
	e, err := fusetest.Call[fuse.EntryOut](s.c, fuse.OpMkdir, fuse.RootID,
		fusetest.Bytes(&fuse.MkdirIn{Mode: 0o751}), fusetest.Name("dir"))
	if err != nil {
		t.Fatalf("MKDIR: %v", err)
	}
	if st := s.lstat("dir"); st.Mode != unix.S_IFDIR|0o751 {
		t.Errorf("host mode %o, want dir 751", st.Mode)
	}
	s.checkAttr("MKDIR", &e.Attr, "dir")
	_, err = fusetest.Call[fuse.EntryOut](s.c, fuse.OpMkdir, fuse.RootID, fusetest.Bytes(&fuse.MkdirIn{Mode: 0o755}), fusetest.Name("dir"))
	wantErrno(t, "MKDIR of an existing name", err, syscall.EEXIST)

	// MKDIR in a subdirectory, by its node id.
	if _, err := fusetest.Call[fuse.EntryOut](s.c, fuse.OpMkdir, e.NodeID, fusetest.Bytes(&fuse.MkdirIn{Mode: 0o700}), fusetest.Name("sub")); err != nil {
		t.Fatalf("MKDIR in a subdirectory: %v", err)
	}
	s.lstat("dir/sub")
	_, err = s.c.Do(fuse.OpRmdir, fuse.RootID, 0, fusetest.Name("dir"))
	wantErrno(t, "RMDIR of a non-empty directory", err, syscall.ENOTEMPTY)
	if _, err := s.c.Do(fuse.OpRmdir, e.NodeID, 0, fusetest.Name("sub")); err != nil {
		t.Fatalf("RMDIR: %v", err)
	}
	s.notExist("dir/sub")

	s.writeHost("dir/file", []byte("x"))
	_, err = s.c.Do(fuse.OpRmdir, e.NodeID, 0, fusetest.Name("file"))
	wantErrno(t, "RMDIR of a file", err, syscall.ENOTDIR)
	_, err = s.c.Do(fuse.OpUnlink, fuse.RootID, 0, fusetest.Name("dir"))
	wantErrno(t, "UNLINK of a directory", err, syscall.EISDIR)
	if _, err := s.c.Do(fuse.OpUnlink, e.NodeID, 0, fusetest.Name("file")); err != nil {
		t.Fatalf("UNLINK: %v", err)
	}
	s.notExist("dir/file")
	_, err = s.c.Do(fuse.OpUnlink, e.NodeID, 0, fusetest.Name("file"))
	wantErrno(t, "UNLINK of a missing name", err, syscall.ENOENT)
	if _, err := s.c.Do(fuse.OpRmdir, fuse.RootID, 0, fusetest.Name("dir")); err != nil {
		t.Fatalf("RMDIR of the now empty directory: %v", err)
	}
	s.notExist("dir")
}

func TestStackRename(t *testing.T) {
	s := newStack(t)
	if err := os.Mkdir(s.host("dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	s.writeHost("a", []byte("A"))
	s.writeHost("b", []byte("B"))
	dir := s.lookup(fuse.RootID, "dir").NodeID
	ino := s.lstat("a").Ino
	rename := func(newDir uint64, oldName, newName string) error {
		_, err := s.c.Do(fuse.OpRename, fuse.RootID, 0, fusetest.Bytes(&fuse.RenameIn{Newdir: newDir}),
			fusetest.Name(oldName), fusetest.Name(newName))
		return err
	}
	if err := rename(dir, "a", "moved"); err != nil {
		t.Fatalf("RENAME into a subdirectory: %v", err)
	}
	s.notExist("a")
	if st := s.lstat("dir/moved"); st.Ino != ino {
		t.Errorf("dir/moved is inode %d, a was %d", st.Ino, ino)
	}
	s.writeHost("c", []byte("C"))
	if err := rename(fuse.RootID, "c", "b"); err != nil {
		t.Fatalf("RENAME over an existing file: %v", err)
	}
	if b, _ := os.ReadFile(s.host("b")); string(b) != "C" {
		t.Errorf("b holds %q after c replaced it", b)
	}
	wantErrno(t, "RENAME of a missing name", rename(fuse.RootID, "nope", "x"), syscall.ENOENT)
	wantErrno(t, "RENAME into a file node", rename(s.lookup(fuse.RootID, "b").NodeID, "b", "x"), syscall.ENOTDIR)
}

func TestStackRename2(t *testing.T) {
	s := newStack(t)
	rename2 := func(flags uint32, oldName, newName string) error {
		_, err := s.c.Do(fuse.OpRename2, fuse.RootID, 0, fusetest.Bytes(&fuse.Rename2In{Newdir: fuse.RootID, Flags: flags}),
			fusetest.Name(oldName), fusetest.Name(newName))
		return err
	}
	s.writeHost("one", []byte("1"))
	s.writeHost("two", []byte("2"))
	wantErrno(t, "RENAME2 NOREPLACE over an existing name", rename2(unix.RENAME_NOREPLACE, "one", "two"), syscall.EEXIST)
	if b, _ := os.ReadFile(s.host("two")); string(b) != "2" {
		t.Fatalf("a refused NOREPLACE rename changed two to %q", b)
	}
	if err := rename2(unix.RENAME_NOREPLACE, "one", "three"); err != nil {
		t.Fatalf("RENAME2 NOREPLACE to a free name: %v", err)
	}
	s.notExist("one")
	if err := rename2(unix.RENAME_EXCHANGE, "two", "three"); err != nil {
		t.Fatalf("RENAME2 EXCHANGE: %v", err)
	}
	two, _ := os.ReadFile(s.host("two"))
	three, _ := os.ReadFile(s.host("three"))
	if string(two) != "1" || string(three) != "2" {
		t.Errorf("after EXCHANGE two=%q three=%q, want 1 and 2", two, three)
	}
	wantErrno(t, "RENAME2 with unknown flags", rename2(1<<20, "two", "four"), syscall.EINVAL)
	s.notExist("four")
	t.Run("whiteout as root", func(t *testing.T) {
		needRoot(t)
		if err := rename2(unix.RENAME_WHITEOUT, "two", "five"); err != nil {
			t.Fatalf("RENAME2 WHITEOUT: %v", err)
		}
		if b, _ := os.ReadFile(s.host("five")); string(b) != "1" {
			t.Errorf("five holds %q, want 1", b)
		}
		st := s.lstat("two")
		if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
			t.Errorf("the source is mode %o rdev %d, want a whiteout (0:0 char device)", st.Mode, st.Rdev)
		}
	})
}

func TestStackLink(t *testing.T) {
	s := newStack(t)
	s.writeHost("orig", []byte("data"))
	old := s.lookup(fuse.RootID, "orig")
	e, err := fusetest.Call[fuse.EntryOut](s.c, fuse.OpLink, fuse.RootID,
		fusetest.Bytes(&fuse.LinkIn{OldNodeID: old.NodeID}), fusetest.Name("hard"))
	if err != nil {
		t.Fatalf("LINK: %v", err)
	}
	if e.NodeID != old.NodeID || e.Attr.Nlink != 2 {
		t.Errorf("LINK reply node %d nlink %d; want node %d nlink 2", e.NodeID, e.Attr.Nlink, old.NodeID)
	}
	a, b := s.lstat("orig"), s.lstat("hard")
	if a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("host: orig ino %d nlink %d, hard ino %d", a.Ino, a.Nlink, b.Ino)
	}
	_, err = fusetest.Call[fuse.EntryOut](s.c, fuse.OpLink, fuse.RootID,
		fusetest.Bytes(&fuse.LinkIn{OldNodeID: 99999}), fusetest.Name("bad"))
	wantErrno(t, "LINK of an unknown node", err, syscall.EBADF)
	s.notExist("bad")
}

func TestStackAccess(t *testing.T) {
	s := newStack(t)
	s.writeHost("private", nil)
	if err := os.Chmod(s.host("private"), 0o600); err != nil {
		t.Fatal(err)
	}
	node := s.lookup(fuse.RootID, "private").NodeID
	owner := s.lstat("private")
	access := func(c *fusetest.Client, mask uint32) error {
		_, err := c.Do(fuse.OpAccess, node, 0, fusetest.Bytes(&fuse.AccessIn{Mask: mask}))
		return err
	}
	asOwner := &fusetest.Client{T: s.c.T, UID: owner.Uid, GID: owner.Gid}
	if err := access(asOwner, unix.R_OK|unix.W_OK); err != nil {
		t.Errorf("ACCESS rw as the owner of a 0600 file: %v", err)
	}
	wantErrno(t, "ACCESS x of a 0600 file", access(asOwner, unix.X_OK), syscall.EACCES)
	stranger := &fusetest.Client{T: s.c.T, UID: owner.Uid + 1000, GID: owner.Gid + 1000}
	wantErrno(t, "ACCESS r as another user", access(stranger, unix.R_OK), syscall.EACCES)
	if err := access(stranger, unix.F_OK); err != nil {
		t.Errorf("ACCESS F_OK: %v", err)
	}
	if err := os.Chmod(s.host("private"), 0o604); err != nil {
		t.Fatal(err)
	}
	if err := access(stranger, unix.R_OK); err != nil {
		t.Errorf("ACCESS r as another user after the host made it world-readable: %v", err)
	}
}

func TestStackStatfs(t *testing.T) {
	s := newStack(t)
	out, err := fusetest.Call[fuse.StatfsOut](s.c, fuse.OpStatfs, fuse.RootID)
	if err != nil {
		t.Fatalf("STATFS: %v", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(s.dir, &st); err != nil {
		t.Fatal(err)
	}
	if out.Blocks != st.Blocks || out.Bsize != uint32(st.Bsize) || out.Namelen != uint32(st.Namelen) ||
		out.Frsize != uint32(st.Frsize) || out.Files != st.Files {
		t.Errorf("STATFS %+v does not match the host's %+v", *out, st)
	}
	_, err = fusetest.Call[fuse.StatfsOut](s.c, fuse.OpStatfs, 31337)
	wantErrno(t, "STATFS of an unknown node", err, syscall.EBADF)
}

func TestStackSyncfs(t *testing.T) {
	s := newStack(t)
	if _, err := s.c.Do(fuse.OpSyncfs, fuse.RootID, 0, fusetest.Bytes(&fuse.SyncfsIn{})); err != nil {
		t.Fatalf("SYNCFS: %v", err)
	}
	_, err := s.c.Do(fuse.OpSyncfs, 31337, 0, fusetest.Bytes(&fuse.SyncfsIn{}))
	wantErrno(t, "SYNCFS of an unknown node", err, syscall.EBADF)
	// A short argument struct is refused before the file system sees it.
	_, err = s.c.Do(fuse.OpSyncfs, fuse.RootID, 0, []byte{1, 2})
	wantErrno(t, "SYNCFS with a 2-byte argument", err, syscall.EINVAL)
}

// --ownership=mapped: a device node is an empty file of the daemon's user with its guest owner,
// mode and device number in user.containers.override_stat, which the guest cannot read.
func TestStackMknodDeviceMapped(t *testing.T) {
	s := newStack(t, withFlags("--ownership=mapped", "--xattr"))
	e, err := fusetest.Call[fuse.EntryOut](s.c, fuse.OpMknod, fuse.RootID,
		fusetest.Bytes(&fuse.MknodIn{Mode: unix.S_IFBLK | 0o4660, Rdev: 8<<8 | 2}), fusetest.Name("sda2"))
	if err != nil {
		t.Fatalf("MKNOD block device: %v", err)
	}
	if e.Attr.Mode != unix.S_IFBLK|0o4660 || e.Attr.Rdev != 8<<8|2 {
		t.Errorf("reply mode %o rdev %#x, want block 4660 8:2", e.Attr.Mode, e.Attr.Rdev)
	}
	st := s.lstat("sda2")
	if st.Mode != unix.S_IFREG|0o644 || st.Size != 0 || st.Uid != uint32(os.Getuid()) {
		t.Errorf("host file mode %o size %d owner %d, want an empty 0644 regular file of uid %d", st.Mode, st.Size, st.Uid, os.Getuid())
	}
	buf := make([]byte, 128)
	n, err := unix.Lgetxattr(s.host("sda2"), "user.containers.override_stat", buf)
	if err != nil || string(buf[:n]) != "0:0:4660:block-8-2" {
		t.Errorf("host attribute %q, %v", buf[:max(n, 0)], err)
	}
	_, err = s.c.Do(fuse.OpGetxattr, e.NodeID, 128, fusetest.Bytes(&fuse.GetxattrIn{Size: 128}), fusetest.Name("user.containers.override_stat"))
	wantErrno(t, "GETXATTR of the mapped attribute", err, syscall.ENODATA)
	_, err = fusetest.Call[fuse.OpenOut](s.c, fuse.OpOpen, e.NodeID, fusetest.Bytes(&fuse.OpenIn{Flags: unix.O_RDONLY}))
	wantErrno(t, "OPEN of a mapped device node", err, syscall.ENXIO)
}
