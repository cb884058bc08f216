package passfs_test

import (
	"os"
	"syscall"
	"testing"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/passfs"
)

func TestLookupGetattrMatchHost(t *testing.T) {
	e := newEnv(t, nil)
	e.writeHost("f", "hello")
	ent := e.lookup(fuse.RootID, "f")
	st := e.lstat("f")
	if ent.NodeID == 0 || ent.NodeID == fuse.RootID {
		t.Fatalf("bad node id %d", ent.NodeID)
	}
	if ent.Attr.Ino != st.Ino || ent.Attr.Size != 5 || ent.Attr.Mode != st.Mode || ent.Attr.Nlink != 1 ||
		ent.Attr.UID != st.Uid || ent.Attr.GID != st.Gid || ent.Attr.Mtime != uint64(st.Mtim.Sec) {
		t.Fatalf("entry attr %+v does not match host stat %+v", ent.Attr, st)
	}
	var out fuse.AttrOut
	if errno := e.fs.Getattr(e.ctx(ent.NodeID), &fuse.GetattrIn{}, &out); errno != 0 {
		t.Fatal(errno)
	}
	if out.Attr != ent.Attr {
		t.Fatalf("getattr %+v != lookup %+v", out.Attr, ent.Attr)
	}
	// A change on the host shows up.
	e.writeHost("f", "hello world")
	if errno := e.fs.Getattr(e.ctx(ent.NodeID), &fuse.GetattrIn{}, &out); errno != 0 || out.Attr.Size != 11 {
		t.Fatalf("getattr after host write: size %d, %v", out.Attr.Size, errno)
	}
	// A miss is a negative entry the guest may cache as long as entries (cache=auto: 1 s).
	var miss fuse.EntryOut
	if errno := e.fs.Lookup(e.ctx(fuse.RootID), cs("missing"), &miss); errno != 0 || miss.NodeID != 0 || miss.EntryValid != 1 {
		t.Fatalf("lookup of missing name: %v, entry %+v; want node 0 valid for 1 s", errno, miss)
	}
}

// With cache=never nothing is cached, a miss included: it is ENOENT.
func TestLookupMissWithoutCacheIsENOENT(t *testing.T) {
	e := newEnv(t, func(o *passfs.Options) { o.Cache = passfs.CacheNever })
	var miss fuse.EntryOut
	wantErrno(t, "lookup of missing name", e.fs.Lookup(e.ctx(fuse.RootID), cs("missing"), &miss), syscall.ENOENT)
}

func TestLookupCountsAndForget(t *testing.T) {
	e := newEnv(t, nil)
	e.writeHost("f", "x")
	if err := os.Link(e.host("f"), e.host("hard")); err != nil {
		t.Fatal(err)
	}
	base := e.fs.NodeCount()
	a := e.lookup(fuse.RootID, "f")
	b := e.lookup(fuse.RootID, "f")
	h := e.lookup(fuse.RootID, "hard")
	if a.NodeID != b.NodeID || a.NodeID != h.NodeID {
		t.Fatalf("hard links and repeated lookups must share one node: %d %d %d", a.NodeID, b.NodeID, h.NodeID)
	}
	if got := e.fs.NodeLookups(a.NodeID); got != 3 {
		t.Fatalf("lookup count %d, want 3", got)
	}
	if e.fs.NodeCount() != base+1 {
		t.Fatalf("node count %d, want %d", e.fs.NodeCount(), base+1)
	}
	e.fs.Forget(a.NodeID, 2)
	var out fuse.AttrOut
	if errno := e.fs.Getattr(e.ctx(a.NodeID), &fuse.GetattrIn{}, &out); errno != 0 {
		t.Fatalf("node gone before its last forget: %v", errno)
	}
	e.fs.Forget(a.NodeID, 1)
	wantErrno(t, "getattr of a forgotten node", e.fs.Getattr(e.ctx(a.NodeID), &fuse.GetattrIn{}, &out), syscall.EBADF)
	if e.fs.NodeCount() != base {
		t.Fatalf("node count %d after forget, want %d", e.fs.NodeCount(), base)
	}
	// A new lookup gets a new id: ids are never reused.
	c := e.lookup(fuse.RootID, "f")
	if c.NodeID == a.NodeID {
		t.Fatalf("node id %d reused", c.NodeID)
	}
	// Forgetting more than was looked up, the root, or unknown ids must not panic.
	e.fs.Forget(c.NodeID, 100)
	e.fs.Forget(fuse.RootID, 100)
	e.fs.Forget(12345, 1)
	if errno := e.fs.Getattr(e.ctx(fuse.RootID), &fuse.GetattrIn{}, &out); errno != 0 {
		t.Fatalf("root must survive FORGET: %v", errno)
	}
}

func TestLookupDotAndDotDot(t *testing.T) {
	e := newEnv(t, nil)
	if err := os.Mkdir(e.host("sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	up := e.lookup(fuse.RootID, "..")
	if up.NodeID != fuse.RootID {
		t.Fatalf(`".." at the root gave node %d, want the root`, up.NodeID)
	}
	rootSt := e.lstat(".")
	if up.Attr.Ino != rootSt.Ino {
		t.Fatalf(`".." at the root has ino %d, the share root has %d`, up.Attr.Ino, rootSt.Ino)
	}
	dot := e.lookup(fuse.RootID, ".")
	if dot.NodeID != fuse.RootID {
		t.Fatalf(`"." at the root gave %d`, dot.NodeID)
	}
	sub := e.lookup(fuse.RootID, "sub")
	if self := e.lookup(sub.NodeID, "."); self.NodeID != sub.NodeID {
		t.Fatalf(`"." in sub gave %d, want %d`, self.NodeID, sub.NodeID)
	}
	if got := e.fs.NodeLookups(sub.NodeID); got != 2 {
		t.Fatalf(`"." must count a lookup: %d`, got)
	}
	if parent := e.lookup(sub.NodeID, ".."); parent.NodeID != fuse.RootID {
		t.Fatalf(`".." in sub gave %d, want the root`, parent.NodeID)
	}
	// ".." climbing repeatedly still stops at the root.
	cur := sub.NodeID
	for range 5 {
		cur = e.lookup(cur, "..").NodeID
	}
	if cur != fuse.RootID {
		t.Fatalf("climbing left the root: %d", cur)
	}
	// ".." of a directory whose parent the guest does not know is refused: passfs never hands
	// out a parent it has not seen inside the share.
	if err := os.Mkdir(e.host("sub/inner"), 0o755); err != nil {
		t.Fatal(err)
	}
	inner := e.lookup(sub.NodeID, "inner")
	e.fs.Forget(sub.NodeID, 1<<30)
	var out fuse.EntryOut
	wantErrno(t, `".." with an unknown parent`, e.fs.Lookup(e.ctx(inner.NodeID), cs(".."), &out), syscall.ENOENT)
}

func TestLookupSymlinkNotFollowed(t *testing.T) {
	e := newEnv(t, nil)
	if err := os.Symlink("/etc", e.host("x")); err != nil {
		t.Fatal(err)
	}
	ent := e.lookup(fuse.RootID, "x")
	if ent.Attr.Mode&syscall.S_IFMT != syscall.S_IFLNK {
		t.Fatalf("symlink reported with mode %#o: it was followed", ent.Attr.Mode)
	}
	if ent.Attr.Ino != e.lstat("x").Ino {
		t.Fatal("symlink entry is not the link itself")
	}
	// Looking up through the symlink must not reach /etc/passwd.
	var out fuse.EntryOut
	if errno := e.fs.Lookup(e.ctx(ent.NodeID), cs("passwd"), &out); errno == 0 {
		t.Fatalf("lookup through a symlink to /etc succeeded: %+v", out)
	}
	var o fuse.OpenOut
	wantErrno(t, "open of a symlink", e.fs.Open(e.ctx(ent.NodeID), &fuse.OpenIn{Flags: syscall.O_RDONLY}, &o), syscall.EBADF)
	wantErrno(t, "opendir of a symlink", e.fs.Opendir(e.ctx(ent.NodeID), &fuse.OpenIn{}, &o), syscall.ENOTDIR)
	buf := make([]byte, 4096)
	n, errno := e.fs.Readlink(e.ctx(ent.NodeID), buf)
	if errno != 0 || string(buf[:n]) != "/etc" {
		t.Fatalf("readlink: %q, %v", buf[:n], errno)
	}
}

func TestNamesAreNeverJoined(t *testing.T) {
	e := newEnv(t, nil)
	if err := os.Mkdir(e.host("sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.writeHost("sub/file", "secret")
	var out fuse.EntryOut
	for _, name := range []string{"sub/file", "/etc", "../x", ""} {
		if errno := e.fs.Lookup(e.ctx(fuse.RootID), cs(name), &out); errno != syscall.EINVAL {
			t.Errorf("Lookup(%q) = %v, want EINVAL", name, errno)
		}
	}
	if errno := e.fs.Mkdir(e.ctx(fuse.RootID), &fuse.MkdirIn{Mode: 0o755}, cs(".."), &out); errno != syscall.EINVAL {
		t.Errorf(`Mkdir("..") = %v, want EINVAL`, errno)
	}
	if errno := e.fs.Unlink(e.ctx(fuse.RootID), cs("sub/file")); errno != syscall.EINVAL {
		t.Errorf(`Unlink("sub/file") = %v, want EINVAL`, errno)
	}
	if _, err := os.Stat(e.host("sub/file")); err != nil {
		t.Fatal("a name with a slash removed a file deeper down")
	}
}

func TestUnknownNodesAndHandles(t *testing.T) {
	e := newEnv(t, nil)
	ctx := e.ctx(999)
	var attr fuse.AttrOut
	var ent fuse.EntryOut
	var open fuse.OpenOut
	wantErrno(t, "getattr", e.fs.Getattr(ctx, &fuse.GetattrIn{}, &attr), syscall.EBADF)
	wantErrno(t, "lookup", e.fs.Lookup(ctx, cs("a"), &ent), syscall.EBADF)
	wantErrno(t, "open", e.fs.Open(ctx, &fuse.OpenIn{}, &open), syscall.EBADF)
	wantErrno(t, "mkdir", e.fs.Mkdir(ctx, &fuse.MkdirIn{Mode: 0o755}, cs("d"), &ent), syscall.EBADF)
	wantErrno(t, "setattr", e.fs.Setattr(ctx, &fuse.SetattrIn{Valid: fuse.FattrMode}, &attr), syscall.EBADF)
	wantErrno(t, "link", e.fs.Link(e.ctx(fuse.RootID), &fuse.LinkIn{OldNodeID: 999}, cs("l"), &ent), syscall.EBADF)
	wantErrno(t, "rename", e.fs.Rename(e.ctx(fuse.RootID), 999, 0, cs("a"), cs("b")), syscall.EBADF)
	_, errno := e.fs.Read(e.ctx(0), &fuse.ReadIn{Fh: 77, Size: 10}, [][]byte{make([]byte, 10)})
	wantErrno(t, "read", errno, syscall.EBADF)
	_, errno = e.fs.Write(e.ctx(0), &fuse.WriteIn{Fh: 77, Size: 1}, [][]byte{{1}})
	wantErrno(t, "write", errno, syscall.EBADF)
	wantErrno(t, "release", e.fs.Release(e.ctx(0), &fuse.ReleaseIn{Fh: 77}), syscall.EBADF)
	wantErrno(t, "releasedir", e.fs.Releasedir(e.ctx(0), &fuse.ReleaseIn{Fh: 77}), syscall.EBADF)
	wantErrno(t, "flush", e.fs.Flush(e.ctx(0), &fuse.FlushIn{Fh: 77}), syscall.EBADF)
	wantErrno(t, "fsync", e.fs.Fsync(e.ctx(0), &fuse.FsyncIn{Fh: 77}), syscall.EBADF)
	wantErrno(t, "setlk", e.fs.Setlk(e.ctx(0), &fuse.LkIn{Fh: 77}, false), syscall.EBADF)
	var buf fuse.DirBuffer
	buf.Reset(4096, false)
	wantErrno(t, "readdir", e.fs.Readdir(e.ctx(0), &fuse.ReadIn{Fh: 77, Size: 4096}, false, &buf), syscall.EBADF)
	// A file handle is not a directory handle.
	e.writeHost("f", "x")
	fh := e.open(e.lookup(fuse.RootID, "f").NodeID, syscall.O_RDONLY)
	wantErrno(t, "readdir on a file handle", e.fs.Readdir(e.ctx(0), &fuse.ReadIn{Fh: fh, Size: 4096}, false, &buf), syscall.ENOTDIR)
	e.release(fh)
	wantErrno(t, "second release", e.fs.Release(e.ctx(0), &fuse.ReleaseIn{Fh: fh}), syscall.EBADF)
}

// After a lookup that made a node the next one opens the name first; one that then finds a
// known inode must give the same node, count the lookup, close the fd it opened and switch back.
func TestLookupOrderFollowsTheLastLookup(t *testing.T) {
	e := newEnv(t, nil)
	e.writeHost("a", "x")
	e.writeHost("b", "y")
	a := e.lookup(fuse.RootID, "a")
	if !e.fs.LookupsExpectNew() {
		t.Fatal("a lookup that made a node did not make the next one open first")
	}
	nodes, fds, procFDs := e.fs.NodeCount(), e.fs.OpenNodeFDs(), openFDs(t)
	again := e.lookup(fuse.RootID, "a") // opened first, then found in the table
	if again.NodeID != a.NodeID || e.fs.NodeLookups(a.NodeID) != 2 {
		t.Fatalf("second lookup: node %d (want %d) with %d lookups (want 2)", again.NodeID, a.NodeID, e.fs.NodeLookups(a.NodeID))
	}
	if e.fs.NodeCount() != nodes || e.fs.OpenNodeFDs() != fds || openFDs(t) != procFDs {
		t.Fatalf("a known inode opened first left nodes %d->%d, node fds %d->%d, process fds %d->%d",
			nodes, e.fs.NodeCount(), fds, e.fs.OpenNodeFDs(), procFDs, openFDs(t))
	}
	if e.fs.LookupsExpectNew() {
		t.Fatal("a lookup that found a known inode left the next one opening first")
	}
	third := e.lookup(fuse.RootID, "a") // statx by name first
	if third.NodeID != a.NodeID || e.fs.NodeLookups(a.NodeID) != 3 {
		t.Fatalf("third lookup: node %d with %d lookups", third.NodeID, e.fs.NodeLookups(a.NodeID))
	}
	b := e.lookup(fuse.RootID, "b")
	if b.NodeID == a.NodeID || !e.fs.LookupsExpectNew() {
		t.Fatalf("b: node %d (a is %d), expect new %v", b.NodeID, a.NodeID, e.fs.LookupsExpectNew())
	}
	// A miss while opening first is the same negative entry as by statx.
	var miss fuse.EntryOut
	if errno := e.fs.Lookup(e.ctx(fuse.RootID), cs("missing"), &miss); errno != 0 || miss.NodeID != 0 {
		t.Fatalf("miss while opening first: %v, %+v", errno, miss)
	}
}
