package passfs_test

import (
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/passfs"
)

func TestMkdirMknodSymlink(t *testing.T) {
	e := newEnv(t, nil)
	e.fs.Init(&fuse.InitInfo{Flags: fuse.CapDontMask})
	var ent fuse.EntryOut
	if errno := e.fs.Mkdir(e.ctx(fuse.RootID), &fuse.MkdirIn{Mode: 0o777, Umask: 0o022}, cs("d"), &ent); errno != 0 {
		t.Fatal(errno)
	}
	st := e.lstat("d")
	if st.Mode != syscall.S_IFDIR|0o755 || ent.Attr.Mode != st.Mode || ent.Attr.Ino != st.Ino {
		t.Fatalf("mkdir: host mode %#o, entry mode %#o", st.Mode, ent.Attr.Mode)
	}
	wantErrno(t, "mkdir of an existing name", e.fs.Mkdir(e.ctx(fuse.RootID), &fuse.MkdirIn{Mode: 0o777}, cs("d"), &ent), syscall.EEXIST)

	if errno := e.fs.Mknod(e.ctx(fuse.RootID), &fuse.MknodIn{Mode: syscall.S_IFIFO | 0o666, Umask: 0o027}, cs("fifo"), &ent); errno != 0 {
		t.Fatal(errno)
	}
	if st := e.lstat("fifo"); st.Mode != syscall.S_IFIFO|0o640 || ent.Attr.Mode != st.Mode {
		t.Fatalf("mknod fifo: host mode %#o, entry %#o", st.Mode, ent.Attr.Mode)
	}
	if errno := e.fs.Mknod(e.ctx(fuse.RootID), &fuse.MknodIn{Mode: syscall.S_IFREG | 0o600}, cs("reg"), &ent); errno != 0 {
		t.Fatal(errno)
	}
	if st := e.lstat("reg"); st.Mode != syscall.S_IFREG|0o600 {
		t.Fatalf("mknod regular: %#o", st.Mode)
	}

	if errno := e.fs.Symlink(e.ctx(fuse.RootID), cs("ln"), cs("../../outside"), &ent); errno != 0 {
		t.Fatal(errno)
	}
	if target, err := os.Readlink(e.host("ln")); err != nil || target != "../../outside" {
		t.Fatalf("symlink target %q, %v", target, err)
	}
	if ent.Attr.Mode&syscall.S_IFMT != syscall.S_IFLNK || ent.Attr.Size != uint64(len("../../outside")) {
		t.Fatalf("symlink entry %+v", ent.Attr)
	}
}

func TestMknodDevice(t *testing.T) {
	needRoot(t)
	e := newEnv(t, nil)
	var ent fuse.EntryOut
	rdev := uint32(1<<8 | 3) // guest encoding of /dev/null (1, 3)
	if errno := e.fs.Mknod(e.ctx(fuse.RootID), &fuse.MknodIn{Mode: syscall.S_IFCHR | 0o666, Rdev: rdev}, cs("null"), &ent); errno != 0 {
		t.Fatal(errno)
	}
	st := e.lstat("null")
	if st.Mode&syscall.S_IFMT != syscall.S_IFCHR || unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
		t.Fatalf("device node: mode %#o rdev %d:%d", st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	if ent.Attr.Rdev != rdev {
		t.Fatalf("entry rdev %#x, want %#x", ent.Attr.Rdev, rdev)
	}
	// CVE-2020-35517: a device node is never opened.
	var o fuse.OpenOut
	wantErrno(t, "open of a device node", e.fs.Open(e.ctx(ent.NodeID), &fuse.OpenIn{Flags: syscall.O_RDWR}, &o), syscall.EBADF)
}

// openWithTimeout fails the test if op blocks (opening a FIFO would).
func openWithTimeout(t *testing.T, what string, op func() fuse.Errno) fuse.Errno {
	t.Helper()
	done := make(chan fuse.Errno, 1)
	go func() { done <- op() }()
	select {
	case errno := <-done:
		return errno
	case <-time.After(5 * time.Second):
		t.Fatalf("%s blocked", what)
		return 0
	}
}

func TestSpecialFilesAreNeverOpened(t *testing.T) {
	e := newEnv(t, nil)
	if err := syscall.Mkfifo(e.host("fifo"), 0o666); err != nil {
		t.Fatal(err)
	}
	ent := e.lookup(fuse.RootID, "fifo")
	var o fuse.OpenOut
	errno := openWithTimeout(t, "open of a FIFO", func() fuse.Errno {
		return e.fs.Open(e.ctx(ent.NodeID), &fuse.OpenIn{Flags: syscall.O_RDONLY}, &o)
	})
	wantErrno(t, "open of a FIFO", errno, syscall.EBADF)
	// CREATE of an existing FIFO without O_EXCL must not open it either.
	var ce fuse.EntryOut
	errno = openWithTimeout(t, "create over a FIFO", func() fuse.Errno {
		return e.fs.Create(e.ctx(fuse.RootID), &fuse.CreateIn{Flags: syscall.O_WRONLY, Mode: 0o644}, cs("fifo"), &ce, &o)
	})
	wantErrno(t, "create over a FIFO", errno, syscall.ESTALE)
	// Truncating a FIFO by path must not open it.
	var attr fuse.AttrOut
	errno = openWithTimeout(t, "truncate of a FIFO", func() fuse.Errno {
		return e.fs.Setattr(e.ctx(ent.NodeID), &fuse.SetattrIn{Valid: fuse.FattrSize}, &attr)
	})
	if errno == 0 {
		t.Fatal("truncate of a FIFO succeeded")
	}
	if e.fs.HandleCount() != 0 {
		t.Fatalf("%d handles left open", e.fs.HandleCount())
	}
}

func TestUnlinkRmdir(t *testing.T) {
	e := newEnv(t, nil)
	e.writeHost("f", "x")
	if err := os.Mkdir(e.host("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.writeHost("d/inner", "y")
	wantErrno(t, "unlink of a directory", e.fs.Unlink(e.ctx(fuse.RootID), cs("d")), syscall.EISDIR)
	wantErrno(t, "rmdir of a non-empty directory", e.fs.Rmdir(e.ctx(fuse.RootID), cs("d")), syscall.ENOTEMPTY)
	if errno := e.fs.Unlink(e.ctx(fuse.RootID), cs("f")); errno != 0 {
		t.Fatal(errno)
	}
	if _, err := os.Lstat(e.host("f")); !os.IsNotExist(err) {
		t.Fatalf("unlinked file still there: %v", err)
	}
	d := e.lookup(fuse.RootID, "d")
	if errno := e.fs.Unlink(e.ctx(d.NodeID), cs("inner")); errno != 0 {
		t.Fatal(errno)
	}
	if errno := e.fs.Rmdir(e.ctx(fuse.RootID), cs("d")); errno != 0 {
		t.Fatal(errno)
	}
	if _, err := os.Lstat(e.host("d")); !os.IsNotExist(err) {
		t.Fatalf("removed directory still there: %v", err)
	}
	// The node of a removed directory still answers GETATTR (the guest may hold it open).
	var attr fuse.AttrOut
	if errno := e.fs.Getattr(e.ctx(d.NodeID), &fuse.GetattrIn{}, &attr); errno != 0 || attr.Attr.Nlink != 0 {
		t.Fatalf("getattr of a removed directory: nlink %d, %v", attr.Attr.Nlink, errno)
	}
}

func TestRename(t *testing.T) {
	e := newEnv(t, nil)
	e.writeHost("a", "A")
	e.writeHost("b", "B")
	if err := os.Mkdir(e.host("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	d := e.lookup(fuse.RootID, "d")
	root := e.ctx(fuse.RootID)
	wantErrno(t, "NOREPLACE onto an existing name", e.fs.Rename(root, fuse.RootID, unix.RENAME_NOREPLACE, cs("a"), cs("b")), syscall.EEXIST)
	if errno := e.fs.Rename(root, fuse.RootID, unix.RENAME_EXCHANGE, cs("a"), cs("b")); errno != 0 {
		t.Fatal(errno)
	}
	if readHost(t, e.host("a")) != "B" || readHost(t, e.host("b")) != "A" {
		t.Fatal("RENAME_EXCHANGE did not swap the files")
	}
	if errno := e.fs.Rename(root, d.NodeID, 0, cs("a"), cs("moved")); errno != 0 {
		t.Fatal(errno)
	}
	if readHost(t, e.host("d/moved")) != "B" {
		t.Fatal("rename into a subdirectory failed")
	}
	if _, err := os.Lstat(e.host("a")); !os.IsNotExist(err) {
		t.Fatal("old name still exists")
	}
	wantErrno(t, "unknown flags", e.fs.Rename(root, fuse.RootID, 1<<10, cs("b"), cs("c")), syscall.EINVAL)
	wantErrno(t, "bad new name", e.fs.Rename(root, fuse.RootID, 0, cs("b"), cs("x/y")), syscall.EINVAL)
	if os.Geteuid() == 0 {
		if errno := e.fs.Rename(root, fuse.RootID, unix.RENAME_WHITEOUT, cs("b"), cs("c")); errno != 0 {
			t.Fatalf("RENAME_WHITEOUT: %v", errno)
		}
		st := e.lstat("b")
		if st.Mode&syscall.S_IFMT != syscall.S_IFCHR || st.Rdev != 0 {
			t.Fatalf("no whiteout left behind: mode %#o rdev %d", st.Mode, st.Rdev)
		}
		if readHost(t, e.host("c")) != "A" {
			t.Fatal("whiteout rename lost the file")
		}
	}
}

func TestLink(t *testing.T) {
	e := newEnv(t, nil)
	e.writeHost("f", "data")
	f := e.lookup(fuse.RootID, "f")
	var ent fuse.EntryOut
	if errno := e.fs.Link(e.ctx(fuse.RootID), &fuse.LinkIn{OldNodeID: f.NodeID}, cs("g"), &ent); errno != 0 {
		t.Fatal(errno)
	}
	if ent.NodeID != f.NodeID || ent.Attr.Nlink != 2 {
		t.Fatalf("link entry: node %d (want %d), nlink %d", ent.NodeID, f.NodeID, ent.Attr.Nlink)
	}
	if e.lstat("g").Ino != e.lstat("f").Ino {
		t.Fatal("host link is not the same inode")
	}
	// A hard link to a symlink links the symlink, not its target.
	if err := os.Symlink("/etc/passwd", e.host("sl")); err != nil {
		t.Fatal(err)
	}
	sl := e.lookup(fuse.RootID, "sl")
	if errno := e.fs.Link(e.ctx(fuse.RootID), &fuse.LinkIn{OldNodeID: sl.NodeID}, cs("sl2"), &ent); errno != 0 {
		t.Fatal(errno)
	}
	if e.lstat("sl2").Mode&syscall.S_IFMT != syscall.S_IFLNK {
		t.Fatal("link of a symlink followed it")
	}
}

func TestCreateOpenReadWrite(t *testing.T) {
	e := newEnv(t, nil)
	var ent fuse.EntryOut
	var o fuse.OpenOut
	in := &fuse.CreateIn{Flags: syscall.O_RDWR | syscall.O_EXCL, Mode: syscall.S_IFREG | 0o640}
	if errno := e.fs.Create(e.ctx(fuse.RootID), in, cs("f"), &ent, &o); errno != 0 {
		t.Fatal(errno)
	}
	if st := e.lstat("f"); st.Mode != syscall.S_IFREG|0o640 || st.Ino != ent.Attr.Ino {
		t.Fatalf("created mode %#o", st.Mode)
	}
	wantErrno(t, "create with O_EXCL of an existing file", e.fs.Create(e.ctx(fuse.RootID), in, cs("f"), &ent, &o), syscall.EEXIST)
	// Write from 20 guest buffers (more than one pwritev takes).
	var src [][]byte
	want := ""
	for i := range 20 {
		chunk := string(rune('a'+i)) + "0123456789"
		src = append(src, []byte(chunk))
		want += chunk
	}
	n, errno := e.fs.Write(e.ctx(ent.NodeID), &fuse.WriteIn{Fh: o.Fh, Offset: 3, Size: uint32(len(want))}, src)
	if errno != 0 || n != len(want) {
		t.Fatalf("write %d, %v", n, errno)
	}
	if got := readHost(t, e.host("f")); got != "\x00\x00\x00"+want {
		t.Fatalf("host content %q", got)
	}
	// Read into 30 small buffers, limited by Size, and at end of file.
	dst := make([][]byte, 30)
	for i := range dst {
		dst[i] = make([]byte, 7)
	}
	n, errno = e.fs.Read(e.ctx(ent.NodeID), &fuse.ReadIn{Fh: o.Fh, Offset: 3, Size: 100}, dst)
	if errno != 0 || n != 100 {
		t.Fatalf("read %d, %v", n, errno)
	}
	var got []byte
	for _, b := range dst {
		got = append(got, b...)
	}
	if string(got[:100]) != want[:100] || got[100] != 0 {
		t.Fatalf("read %q, want %q and nothing beyond Size", got[:101], want[:100])
	}
	if s := e.read(o.Fh, uint64(3+len(want)-5), 100); s != want[len(want)-5:] {
		t.Fatalf("read at the end: %q", s)
	}
	if s := e.read(o.Fh, 1<<20, 10); s != "" {
		t.Fatalf("read past the end: %q", s)
	}
	_, errno = e.fs.Read(e.ctx(0), &fuse.ReadIn{Fh: o.Fh, Offset: 1 << 63, Size: 1}, [][]byte{make([]byte, 1)})
	wantErrno(t, "read at a negative offset", errno, syscall.EINVAL)
	e.release(o.Fh)
	if e.fs.HandleCount() != 0 {
		t.Fatal("handle not released")
	}
	// CREATE without O_EXCL of an existing file does not open it: the guest's view was stale,
	// and it looks again (create.go). Nothing is truncated, no handle is made.
	in.Flags = syscall.O_RDWR | syscall.O_TRUNC
	wantErrno(t, "create of an existing file without O_EXCL", e.fs.Create(e.ctx(fuse.RootID), in, cs("f"), &ent, &o), syscall.ESTALE)
	if st := e.lstat("f"); st.Size == 0 || e.fs.HandleCount() != 0 {
		t.Fatalf("after CREATE O_TRUNC of an existing file: size %d, %d handles", st.Size, e.fs.HandleCount())
	}
}

func TestOpenFlags(t *testing.T) {
	e := newEnv(t, func(o *passfs.Options) { o.Writeback = true })
	e.fs.Init(&fuse.InitInfo{Flags: fuse.CapWritebackCache})
	e.writeHost("f", "abc")
	f := e.lookup(fuse.RootID, "f")
	// With writeback the kernel reads through write-only opens and does appends itself.
	fh := e.open(f.NodeID, syscall.O_WRONLY|syscall.O_APPEND)
	if s := e.read(fh, 0, 3); s != "abc" {
		t.Fatalf("read through a write-only handle with writeback: %q", s)
	}
	e.write(fh, 1, "X")
	if got := readHost(t, e.host("f")); got != "aXc" {
		t.Fatalf("O_APPEND was not cleared: %q", got)
	}
	e.release(fh)
	// O_TRUNC truncates.
	fh = e.open(f.NodeID, syscall.O_RDWR|syscall.O_TRUNC)
	e.release(fh)
	if got := readHost(t, e.host("f")); got != "" {
		t.Fatalf("O_TRUNC: %q", got)
	}

	// Without writeback, O_WRONLY stays write-only.
	e2 := newEnv(t, nil)
	e2.writeHost("f", "abc")
	fh = e2.open(e2.lookup(fuse.RootID, "f").NodeID, syscall.O_WRONLY)
	_, errno := e2.fs.Read(e2.ctx(0), &fuse.ReadIn{Fh: fh, Size: 3}, [][]byte{make([]byte, 3)})
	wantErrno(t, "read through a write-only handle", errno, syscall.EBADF)
	e2.release(fh)
}

func TestTmpfile(t *testing.T) {
	e := newEnv(t, nil)
	var ent fuse.EntryOut
	var o fuse.OpenOut
	if errno := e.fs.Tmpfile(e.ctx(fuse.RootID), &fuse.CreateIn{Flags: syscall.O_RDWR, Mode: 0o600}, &ent, &o); errno != 0 {
		t.Fatal(errno)
	}
	if ent.Attr.Nlink != 0 || ent.Attr.Mode != syscall.S_IFREG|0o600 {
		t.Fatalf("tmpfile attr %+v", ent.Attr)
	}
	// Its dentry, named "/" in the guest, must never be revalidated (a LOOKUP of "/" fails).
	if ent.EntryValid < 50*365*24*3600 {
		t.Errorf("tmpfile entry timeout %d s: an expired tmpfile dentry breaks overlayfs copy-up (Linux 6.12)", ent.EntryValid)
	}
	entries, _ := os.ReadDir(e.dir)
	if len(entries) != 0 {
		t.Fatalf("tmpfile has a name: %v", entries)
	}
	e.write(o.Fh, 0, "temp")
	var link fuse.EntryOut
	if errno := e.fs.Link(e.ctx(fuse.RootID), &fuse.LinkIn{OldNodeID: ent.NodeID}, cs("named"), &link); errno != 0 {
		t.Fatal(errno)
	}
	if readHost(t, e.host("named")) != "temp" || link.NodeID != ent.NodeID {
		t.Fatal("linking the tmpfile failed")
	}
	if link.EntryValid >= 50*365*24*3600 {
		t.Errorf("the link's entry timeout is %d s, the tmpfile's: a named dentry follows the cache policy", link.EntryValid)
	}
	e.release(o.Fh)
	wantErrno(t, "read-only tmpfile", e.fs.Tmpfile(e.ctx(fuse.RootID), &fuse.CreateIn{Flags: syscall.O_RDONLY, Mode: 0o600}, &ent, &o), syscall.EINVAL)
}

// defaultACL encodes a minimal POSIX ACL (owner, group, other all rwx) in the kernel's xattr form.
func defaultACL() []byte {
	b := []byte{2, 0, 0, 0} // version 2
	for _, tag := range []uint16{0x01, 0x04, 0x20} {
		b = append(b, byte(tag), byte(tag>>8), 7, 0, 0xff, 0xff, 0xff, 0xff)
	}
	return b
}

func TestUmaskAndDefaultACL(t *testing.T) {
	e := newEnv(t, func(o *passfs.Options) { o.PosixACL = true })
	e.fs.Init(&fuse.InitInfo{Flags: fuse.CapDontMask})
	if err := os.Mkdir(e.host("acl"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(e.host("acl"), "system.posix_acl_default", defaultACL(), 0); err != nil {
		t.Skipf("no POSIX ACLs on the test file system: %v", err)
	}
	acl := e.lookup(fuse.RootID, "acl")
	var ent fuse.EntryOut
	if errno := e.fs.Mkdir(e.ctx(acl.NodeID), &fuse.MkdirIn{Mode: 0o777, Umask: 0o022}, cs("d"), &ent); errno != 0 {
		t.Fatal(errno)
	}
	if m := e.lstat("acl/d").Mode & 0o777; m != 0o777 {
		t.Fatalf("under a default ACL the umask must not apply: mode %#o", m)
	}
	if errno := e.fs.Mkdir(e.ctx(fuse.RootID), &fuse.MkdirIn{Mode: 0o777, Umask: 0o022}, cs("plain"), &ent); errno != 0 {
		t.Fatal(errno)
	}
	if m := e.lstat("plain").Mode & 0o777; m != 0o755 {
		t.Fatalf("without a default ACL the umask applies: mode %#o", m)
	}
}
