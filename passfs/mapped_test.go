package passfs_test

import (
	"errors"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/passfs"
)

func newMappedEnv(t *testing.T) *env {
	t.Helper()
	return newEnv(t, func(o *passfs.Options) { o.Ownership = passfs.OwnershipMapped; o.KillprivV2 = true })
}

// as is a request context of a guest user.
func (e *env) as(node uint64, uid, gid uint32) *fuse.Context {
	return &fuse.Context{NodeID: node, UID: uid, GID: gid}
}

// override returns the host file's mapped-model attribute, "" when it has none.
func (e *env) override(rel string) string {
	e.t.Helper()
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(e.host(rel), passfs.OverrideXattr, buf)
	if errors.Is(err, unix.ENODATA) {
		return ""
	}
	if err != nil {
		e.t.Fatalf("host getxattr %s: %v", rel, err)
	}
	return string(buf[:n])
}

// wantHostPlain checks that a host file is a regular file or directory of the test's own user with
// the given permission bits and the attribute.
func (e *env) wantHostPlain(rel string, typ, perm uint32, override string) {
	e.t.Helper()
	st := e.lstat(rel)
	if st.Mode != typ|perm || st.Uid != uint32(os.Getuid()) || st.Gid != uint32(os.Getgid()) {
		e.t.Errorf("host %s: mode %#o owner %d:%d, want %#o owned by %d:%d", rel, st.Mode, st.Uid, st.Gid,
			typ|perm, os.Getuid(), os.Getgid())
	}
	if got := e.override(rel); got != override {
		e.t.Errorf("host %s: %s = %q, want %q", rel, passfs.OverrideXattr, got, override)
	}
}

// create makes name in parent as the guest user uid:gid.
func (e *env) create(parent uint64, uid, gid uint32, name string, flags, mode uint32) (fuse.EntryOut, fuse.OpenOut) {
	e.t.Helper()
	var ent fuse.EntryOut
	var open fuse.OpenOut
	if errno := e.fs.Create(e.as(parent, uid, gid), &fuse.CreateIn{Flags: flags, Mode: mode}, cs(name), &ent, &open); errno != 0 {
		e.t.Fatalf("create %s: %v", name, errno)
	}
	return ent, open
}

func wantAttr(t *testing.T, what string, a fuse.Attr, mode, uid, gid uint32) {
	t.Helper()
	if a.Mode != mode || a.UID != uid || a.GID != gid {
		t.Errorf("%s: guest sees mode %#o owner %d:%d, want %#o %d:%d", what, a.Mode, a.UID, a.GID, mode, uid, gid)
	}
}

func TestMappedCreateMakesPlainHostFiles(t *testing.T) {
	e := newMappedEnv(t)
	root := uint64(fuse.RootID)
	ent, _ := e.create(root, 1234, 5678, "f", syscall.O_WRONLY, 0o640)
	wantAttr(t, "created file", ent.Attr, syscall.S_IFREG|0o640, 1234, 5678)
	e.wantHostPlain("f", syscall.S_IFREG, 0o640, "1234:5678:0640:file")

	if errno := e.fs.Mkdir(e.as(root, 0, 0), &fuse.MkdirIn{Mode: 0o1777}, cs("d"), &ent); errno != 0 {
		t.Fatal(errno)
	}
	wantAttr(t, "new directory", ent.Attr, syscall.S_IFDIR|0o1777, 0, 0)
	e.wantHostPlain("d", syscall.S_IFDIR, 0o1777, "0:0:1777:dir")
	// A mode the daemon's user could not use on the host is kept in the attribute only.
	if errno := e.fs.Mkdir(e.as(root, 7, 7), &fuse.MkdirIn{Mode: 0o000}, cs("closed"), &ent); errno != 0 {
		t.Fatal(errno)
	}
	wantAttr(t, "mode 0 directory", ent.Attr, syscall.S_IFDIR, 7, 7)
	e.wantHostPlain("closed", syscall.S_IFDIR, 0o700, "7:7:0000:dir")

	// Looked up afresh (a new daemon, after a restart), the attributes are the same.
	e2 := newEnvOn(t, e.dir, func(o *passfs.Options) { o.Ownership = passfs.OwnershipMapped })
	wantAttr(t, "file after restart", e2.lookup(root, "f").Attr, syscall.S_IFREG|0o640, 1234, 5678)
	wantAttr(t, "directory after restart", e2.lookup(root, "d").Attr, syscall.S_IFDIR|0o1777, 0, 0)
}

func TestMappedMknodSymlinkAndWhiteout(t *testing.T) {
	e := newMappedEnv(t)
	root := uint64(fuse.RootID)
	ctx := e.as(root, 1000, 100)
	var ent fuse.EntryOut
	nodes := map[string]fuse.EntryOut{}
	for _, c := range []struct {
		name     string
		mode     uint32
		rdev     uint32 // guest encoding
		override string
	}{
		{"null", syscall.S_IFCHR | 0o666, 1<<8 | 3, "1000:100:0666:char-1-3"},
		{"sda1", syscall.S_IFBLK | 0o660, 8<<8 | 1, "1000:100:0660:block-8-1"},
		{"big", syscall.S_IFCHR | 0o600, 300<<8 | 0x45 | 0x123<<12<<8, "1000:100:0600:char-300-74565"},
		{"fifo", syscall.S_IFIFO | 0o644, 0, "1000:100:0644:pipe"},
		{"sock", syscall.S_IFSOCK | 0o755, 0, "1000:100:0755:socket"},
		{"reg", syscall.S_IFREG | 0o4750, 0, "1000:100:4750:file"},
	} {
		if errno := e.fs.Mknod(ctx, &fuse.MknodIn{Mode: c.mode, Rdev: c.rdev}, cs(c.name), &ent); errno != 0 {
			t.Fatalf("mknod %s: %v", c.name, errno)
		}
		wantAttr(t, c.name, ent.Attr, c.mode, 1000, 100)
		if ent.Attr.Rdev != c.rdev {
			t.Errorf("%s: rdev %#x, want %#x", c.name, ent.Attr.Rdev, c.rdev)
		}
		if c.name == "reg" {
			e.wantHostPlain(c.name, syscall.S_IFREG, 0o750, c.override)
		} else {
			e.wantHostPlain(c.name, syscall.S_IFREG, 0o644, c.override)
		}
		if ent.Attr.Size != 0 {
			t.Errorf("%s: size %d", c.name, ent.Attr.Size)
		}
		nodes[c.name] = ent
	}
	wantErrno(t, "mknod over an existing name", e.fs.Mknod(ctx, &fuse.MknodIn{Mode: syscall.S_IFIFO | 0o644}, cs("null"), &ent), syscall.EEXIST)

	// A special file is never opened on the host: with OPEN or without (no-open mode's fh 0).
	var o fuse.OpenOut
	for _, name := range []string{"null", "sda1", "fifo", "sock"} {
		wantErrno(t, "open of "+name, e.fs.Open(e.ctx(nodes[name].NodeID), &fuse.OpenIn{Flags: syscall.O_RDWR}, &o), syscall.ENXIO)
	}

	target := "../some/where/else"
	if errno := e.fs.Symlink(e.as(root, 33, 44), cs("ln"), cs(target), &ent); errno != 0 {
		t.Fatal(errno)
	}
	wantAttr(t, "symlink", ent.Attr, syscall.S_IFLNK|0o777, 33, 44)
	if ent.Attr.Size != uint64(len(target)) {
		t.Errorf("symlink size %d, want %d", ent.Attr.Size, len(target))
	}
	e.wantHostPlain("ln", syscall.S_IFREG, 0o644, "33:44:0777:symlink")
	if got := readHost(t, e.host("ln")); got != target {
		t.Errorf("host stand-in holds %q, want %q", got, target)
	}
	buf := make([]byte, 4096)
	n, errno := e.fs.Readlink(e.ctx(ent.NodeID), buf)
	if errno != 0 || string(buf[:n]) != target {
		t.Errorf("readlink = %q, %v; want %q", buf[:n], errno, target)
	}
	_, errno = e.fs.Readlink(e.ctx(nodes["fifo"].NodeID), buf)
	wantErrno(t, "readlink of a FIFO", errno, syscall.EINVAL)

	// Whiteouts stay real, so overlayfs on the host sees them.
	if errno := e.fs.Mknod(ctx, &fuse.MknodIn{Mode: syscall.S_IFCHR}, cs("wh"), &ent); errno != 0 {
		t.Fatal(errno)
	}
	if st := e.lstat("wh"); st.Mode&syscall.S_IFMT != syscall.S_IFCHR || st.Rdev != 0 || st.Uid != uint32(os.Getuid()) {
		t.Errorf("whiteout on the host: mode %#o rdev %d owner %d", st.Mode, st.Rdev, st.Uid)
	}
	if ent.Attr.Mode&syscall.S_IFMT != syscall.S_IFCHR || ent.Attr.Rdev != 0 {
		t.Errorf("whiteout in the guest: mode %#o rdev %d", ent.Attr.Mode, ent.Attr.Rdev)
	}
	// RENAME_WHITEOUT leaves a real one too.
	if errno := e.fs.Rename(e.ctx(root), root, unix.RENAME_WHITEOUT, cs("reg"), cs("reg2")); errno != 0 {
		t.Fatal(errno)
	}
	if st := e.lstat("reg"); st.Mode&syscall.S_IFMT != syscall.S_IFCHR || st.Rdev != 0 {
		t.Errorf("RENAME_WHITEOUT left mode %#o rdev %d", st.Mode, st.Rdev)
	}
	wantAttr(t, "renamed file", e.lookup(root, "reg2").Attr, syscall.S_IFREG|0o4750, 1000, 100)
}

func TestMappedReaddirTypes(t *testing.T) {
	e := newMappedEnv(t)
	root := uint64(fuse.RootID)
	var ent fuse.EntryOut
	if errno := e.fs.Symlink(e.as(root, 0, 0), cs("ln"), cs("x"), &ent); errno != 0 {
		t.Fatal(errno)
	}
	if errno := e.fs.Mknod(e.as(root, 0, 0), &fuse.MknodIn{Mode: syscall.S_IFIFO | 0o600}, cs("fifo"), &ent); errno != 0 {
		t.Fatal(errno)
	}
	e.writeHost("plain", "")
	fh := openDir(t, e, root)
	types := func(plus bool) map[string]uint32 {
		got := map[string]uint32{}
		for _, d := range readAll(t, e, fh, 4096, plus, 0) {
			got[d.name] = d.typ
		}
		return got
	}
	// READDIR reads the attribute of files the guest does not know (a new daemon), READDIRPLUS
	// looks every entry up.
	e2 := newEnvOn(t, e.dir, func(o *passfs.Options) { o.Ownership = passfs.OwnershipMapped })
	e, fh = e2, openDir(t, e2, root)
	for _, plus := range []bool{false, true, false} {
		got := types(plus)
		if got["ln"] != unix.DT_LNK || got["fifo"] != unix.DT_FIFO || got["plain"] != unix.DT_REG || got["."] != unix.DT_DIR {
			t.Errorf("READDIR (plus %v) types %v", plus, got)
		}
	}
}

func TestMappedSetattr(t *testing.T) {
	e := newMappedEnv(t)
	root := uint64(fuse.RootID)
	ent, open := e.create(root, 0, 0, "f", syscall.O_RDWR, 0o644)
	f := ent.NodeID
	var out fuse.AttrOut
	setattr := func(ctx *fuse.Context, in fuse.SetattrIn) fuse.Attr {
		t.Helper()
		if errno := e.fs.Setattr(ctx, &in, &out); errno != 0 {
			t.Fatalf("setattr %+v: %v", in, errno)
		}
		return out.Attr
	}
	// Set-id bits live in the attribute only.
	wantAttr(t, "chmod 06755", setattr(e.ctx(f), fuse.SetattrIn{Valid: fuse.FattrMode, Mode: 0o6755}), syscall.S_IFREG|0o6755, 0, 0)
	e.wantHostPlain("f", syscall.S_IFREG, 0o755, "0:0:6755:file")
	// chown clears set-user-id, and set-group-id with group execute.
	wantAttr(t, "chown", setattr(e.ctx(f), fuse.SetattrIn{Valid: fuse.FattrUID | fuse.FattrGID, UID: 65534, GID: 65533}),
		syscall.S_IFREG|0o755, 65534, 65533)
	e.wantHostPlain("f", syscall.S_IFREG, 0o755, "65534:65533:0755:file")
	// Without group execute, root keeps set-group-id; another user not of the group does not.
	setattr(e.ctx(f), fuse.SetattrIn{Valid: fuse.FattrMode, Mode: 0o6745})
	wantAttr(t, "chown by root", setattr(e.ctx(f), fuse.SetattrIn{Valid: fuse.FattrGID, GID: 12}), syscall.S_IFREG|0o2745, 65534, 12)
	setattr(e.ctx(f), fuse.SetattrIn{Valid: fuse.FattrMode, Mode: 0o6745})
	wantAttr(t, "chown by the owner", setattr(e.as(f, 65534, 13), fuse.SetattrIn{Valid: fuse.FattrGID, GID: 13}), syscall.S_IFREG|0o0745, 65534, 13)
	// Directories keep their set-id bits.
	if errno := e.fs.Mkdir(e.as(root, 0, 0), &fuse.MkdirIn{Mode: 0o2755}, cs("d"), &ent); errno != 0 {
		t.Fatal(errno)
	}
	wantAttr(t, "chown of a directory", setattr(e.ctx(ent.NodeID), fuse.SetattrIn{Valid: fuse.FattrUID, UID: 5}), syscall.S_IFDIR|0o2755, 5, 0)

	// A write by someone other than root (KILL_SUIDGID) clears set-user-id.
	setattr(e.ctx(f), fuse.SetattrIn{Valid: fuse.FattrMode, Mode: 0o4755})
	if n, errno := e.fs.Write(e.as(f, 1, 1), &fuse.WriteIn{Fh: open.Fh, Size: 2, WriteFlags: fuse.WriteKillSuidgid}, [][]byte{[]byte("ab")}); errno != 0 || n != 2 {
		t.Fatal(n, errno)
	}
	if errno := e.fs.Getattr(e.ctx(f), &fuse.GetattrIn{}, &out); errno != 0 {
		t.Fatal(errno)
	}
	wantAttr(t, "after a write", out.Attr, syscall.S_IFREG|0o755, 65534, 13)
	// So does truncation with KILL_SUIDGID, and a plain write leaves other bits alone.
	setattr(e.ctx(f), fuse.SetattrIn{Valid: fuse.FattrMode, Mode: 0o6775})
	wantAttr(t, "after truncate", setattr(e.ctx(f), fuse.SetattrIn{Valid: fuse.FattrSize | fuse.FattrKillSuidgid, Size: 1}),
		syscall.S_IFREG|0o775, 65534, 13)
	if n, errno := e.fs.Write(e.as(f, 1, 1), &fuse.WriteIn{Fh: open.Fh, Size: 2, WriteFlags: fuse.WriteKillSuidgid}, [][]byte{[]byte("ab")}); errno != 0 || n != 2 {
		t.Fatal(n, errno)
	}
	if got := e.override("f"); got != "65534:13:0775:file" {
		t.Errorf("after a write to a file without set-id bits: %q", got)
	}

	// A host file without the attribute shows its host attributes until the guest changes them.
	e.writeHost("h", "")
	if err := os.Chmod(e.host("h"), 0o604); err != nil {
		t.Fatal(err)
	}
	h := e.lookup(root, "h")
	wantAttr(t, "host file", h.Attr, syscall.S_IFREG|0o604, uint32(os.Getuid()), uint32(os.Getgid()))
	wantAttr(t, "host file chowned", setattr(e.ctx(h.NodeID), fuse.SetattrIn{Valid: fuse.FattrUID, UID: 42}),
		syscall.S_IFREG|0o604, 42, uint32(os.Getgid()))
	e.wantHostPlain("h", syscall.S_IFREG, 0o604, "42:"+itoa(os.Getgid())+":0604:file")

	// A host symlink cannot carry the attribute: chown to another owner fails, to its own succeeds.
	if err := os.Symlink("t", e.host("hostln")); err != nil {
		t.Fatal(err)
	}
	ln := e.lookup(root, "hostln")
	wantErrno(t, "chown of a host symlink", e.fs.Setattr(e.ctx(ln.NodeID), &fuse.SetattrIn{Valid: fuse.FattrUID, UID: 9}, &out), syscall.EPERM)
	if errno := e.fs.Setattr(e.ctx(ln.NodeID), &fuse.SetattrIn{Valid: fuse.FattrUID, UID: ln.Attr.UID}, &out); errno != 0 {
		t.Errorf("chown of a host symlink to its owner: %v", errno)
	}
}

func itoa(i int) string { return string(appendInt(nil, i)) }

func appendInt(b []byte, i int) []byte {
	if i >= 10 {
		b = appendInt(b, i/10)
	}
	return append(b, byte('0'+i%10))
}

func TestMappedSetgidDirectoryAndAccess(t *testing.T) {
	e := newMappedEnv(t)
	root := uint64(fuse.RootID)
	var ent fuse.EntryOut
	if errno := e.fs.Mkdir(e.as(root, 0, 50), &fuse.MkdirIn{Mode: 0o2777}, cs("shared"), &ent); errno != 0 {
		t.Fatal(errno)
	}
	dir := ent.NodeID
	ent, _ = e.create(dir, 1000, 1000, "f", syscall.O_RDONLY, 0o600)
	wantAttr(t, "file in a set-group-id directory", ent.Attr, syscall.S_IFREG|0o600, 1000, 50)
	f := ent.NodeID
	if errno := e.fs.Mkdir(e.as(dir, 1000, 1000), &fuse.MkdirIn{Mode: 0o755}, cs("sub"), &ent); errno != 0 {
		t.Fatal(errno)
	}
	wantAttr(t, "directory in a set-group-id directory", ent.Attr, syscall.S_IFDIR|0o2755, 1000, 50)
	if errno := e.fs.Symlink(e.as(dir, 1000, 1000), cs("ln"), cs("f"), &ent); errno != 0 {
		t.Fatal(errno)
	}
	wantAttr(t, "symlink in a set-group-id directory", ent.Attr, syscall.S_IFLNK|0o777, 1000, 50)

	// ACCESS checks the mapped owner and mode, not the host's (0600, the daemon's user).
	for _, c := range []struct {
		uid, gid, mask uint32
		want           fuse.Errno
	}{
		{1000, 1000, unix.R_OK | unix.W_OK, 0},
		{1001, 50, unix.R_OK, syscall.EACCES},
		{1001, 1001, unix.W_OK, syscall.EACCES},
		{0, 0, unix.R_OK | unix.W_OK, 0},
		{0, 0, unix.X_OK, syscall.EACCES},
	} {
		wantErrno(t, "access", e.fs.Access(e.as(f, c.uid, c.gid), &fuse.AccessIn{Mask: c.mask}), c.want)
	}
}

func TestMappedHardLinksShareTheAttribute(t *testing.T) {
	e := newMappedEnv(t)
	root := uint64(fuse.RootID)
	var ent fuse.EntryOut
	if errno := e.fs.Mknod(e.as(root, 3, 4), &fuse.MknodIn{Mode: syscall.S_IFCHR | 0o640, Rdev: 4<<8 | 1}, cs("tty"), &ent); errno != 0 {
		t.Fatal(errno)
	}
	tty := ent.NodeID
	if errno := e.fs.Link(e.ctx(root), &fuse.LinkIn{OldNodeID: tty}, cs("tty2"), &ent); errno != 0 {
		t.Fatal(errno)
	}
	if ent.NodeID != tty || ent.Attr.Nlink != 2 {
		t.Errorf("link: node %d nlink %d, want node %d nlink 2", ent.NodeID, ent.Attr.Nlink, tty)
	}
	wantAttr(t, "link", ent.Attr, syscall.S_IFCHR|0o640, 3, 4)
	var out fuse.AttrOut
	if errno := e.fs.Setattr(e.ctx(tty), &fuse.SetattrIn{Valid: fuse.FattrUID, UID: 8}, &out); errno != 0 {
		t.Fatal(errno)
	}
	e2 := newEnvOn(t, e.dir, func(o *passfs.Options) { o.Ownership = passfs.OwnershipMapped })
	wantAttr(t, "the other link", e2.lookup(root, "tty2").Attr, syscall.S_IFCHR|0o640, 8, 4)
}

func TestMappedAttributeIsHiddenFromTheGuest(t *testing.T) {
	for _, rootless := range []bool{false, true} {
		e := newEnv(t, func(o *passfs.Options) {
			o.Ownership = passfs.OwnershipMapped
			if rootless {
				o.XattrMap = passfs.RootlessDefault()
			}
		})
		ent, _ := e.create(fuse.RootID, 5, 5, "f", 0, 0o644)
		f := ent.NodeID
		if errno := e.fs.Setxattr(e.ctx(f), &fuse.SetxattrIn{}, cs("user.other"), []byte("v")); errno != 0 {
			t.Fatal(errno)
		}
		if _, errno := getxattr(t, e, f, passfs.OverrideXattr); errno != syscall.ENODATA {
			t.Errorf("rootless map %v: getxattr of the attribute: %v, want ENODATA", rootless, errno)
		}
		if names := listxattr(t, e, f); !slices.Equal(names, []string{"user.other"}) {
			t.Errorf("rootless map %v: listxattr %q, want only user.other", rootless, names)
		}
		wantErrno(t, "setxattr of the attribute", e.fs.Setxattr(e.ctx(f), &fuse.SetxattrIn{}, cs(passfs.OverrideXattr), []byte("0:0:4755:file")), syscall.EPERM)
		wantErrno(t, "removexattr of the attribute", e.fs.Removexattr(e.ctx(f), cs(passfs.OverrideXattr)), syscall.EPERM)
		if got := e.override("f"); got != "5:5:0644:file" {
			t.Errorf("rootless map %v: the attribute is now %q", rootless, got)
		}
		if !rootless {
			continue
		}
		// chown drops file capabilities, also under their mapped name.
		if errno := e.fs.Setxattr(e.ctx(f), &fuse.SetxattrIn{}, cs("security.capability"), []byte("cap")); errno != 0 {
			t.Fatal(errno)
		}
		var out fuse.AttrOut
		if errno := e.fs.Setattr(e.ctx(f), &fuse.SetattrIn{Valid: fuse.FattrUID, UID: 6}, &out); errno != 0 {
			t.Fatal(errno)
		}
		if _, errno := getxattr(t, e, f, "security.capability"); errno != syscall.ENODATA {
			t.Errorf("security.capability after chown: %v, want ENODATA", errno)
		}
	}
}

// A host change of the attribute (rootless podman, setfattr) shows at the next GETATTR: it changes
// the inode's ctime, which the cache is checked against.
func TestMappedSeesHostChanges(t *testing.T) {
	e := newMappedEnv(t)
	e.writeHost("f", "")
	f := e.lookup(fuse.RootID, "f")
	// Kernels before 6.13 keep ctime in clock ticks (up to 10 ms): a change in the tick of the
	// daemon's read would not show (mapped.go). Wait one out.
	time.Sleep(20 * time.Millisecond)
	if err := unix.Lsetxattr(e.host("f"), passfs.OverrideXattr, []byte("0:0:4711:file"), 0); err != nil {
		t.Fatal(err)
	}
	var out fuse.AttrOut
	if errno := e.fs.Getattr(e.ctx(f.NodeID), &fuse.GetattrIn{}, &out); errno != 0 {
		t.Fatal(errno)
	}
	wantAttr(t, "after a host setxattr", out.Attr, syscall.S_IFREG|0o4711, 0, 0)
	// A value that is not in the format reads as none.
	time.Sleep(20 * time.Millisecond)
	if err := unix.Lsetxattr(e.host("f"), passfs.OverrideXattr, []byte("nonsense"), 0); err != nil {
		t.Fatal(err)
	}
	if errno := e.fs.Getattr(e.ctx(f.NodeID), &fuse.GetattrIn{}, &out); errno != 0 {
		t.Fatal(errno)
	}
	st := e.lstat("f")
	wantAttr(t, "with a bad value", out.Attr, st.Mode, st.Uid, st.Gid)
}

func TestMappedRefusesPosixACL(t *testing.T) {
	fd, err := unix.Open(t.TempDir(), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := passfs.New(passfs.Options{RootFD: fd, ProcSelfFD: -1, Ownership: passfs.OwnershipMapped, PosixACL: true}); err == nil {
		t.Fatal("New accepted the mapped model with POSIX ACLs")
	}
}

func TestMappedHotPathsDoNotAllocate(t *testing.T) {
	e := newMappedEnv(t)
	ent, open := e.create(fuse.RootID, 3, 3, "f", syscall.O_RDWR, 0o644)
	ctx := e.as(ent.NodeID, 3, 3)
	rootCtx := e.ctx(fuse.RootID)
	name := cs("f")
	var attr fuse.AttrOut
	src := [][]byte{[]byte("ab")}
	getattrIn := &fuse.GetattrIn{}
	writeIn := &fuse.WriteIn{Fh: open.Fh, Size: 2, WriteFlags: fuse.WriteKillSuidgid}
	cases := map[string]func(){
		"GETATTR": func() {
			if errno := e.fs.Getattr(ctx, getattrIn, &attr); errno != 0 || attr.Attr.UID != 3 {
				t.Fatal(errno, attr.Attr.UID)
			}
		},
		"LOOKUP (known node)": func() {
			if errno := e.fs.Lookup(rootCtx, name, &ent); errno != 0 || ent.Attr.UID != 3 {
				t.Fatal(errno)
			}
		},
		// A write changes the ctime, so the next GETATTR reads the attribute again.
		"WRITE (KILL_SUIDGID) and GETATTR": func() {
			if n, errno := e.fs.Write(ctx, writeIn, src); errno != 0 || n != 2 {
				t.Fatal(n, errno)
			}
			if errno := e.fs.Getattr(ctx, getattrIn, &attr); errno != 0 || attr.Attr.UID != 3 {
				t.Fatal(errno, attr.Attr.UID)
			}
		},
	}
	for op, fn := range cases {
		fn()
		if allocs := testing.AllocsPerRun(100, fn); allocs != 0 {
			t.Errorf("%s allocates %.1f times per request", op, allocs)
		}
	}
}

// STATX (a Linux 6.12 guest asking for the birth time) reports the mapped owner, mode and device.
func TestMappedStatx(t *testing.T) {
	e := newMappedEnv(t)
	var ent fuse.EntryOut
	if errno := e.fs.Mknod(e.as(fuse.RootID, 7, 8), &fuse.MknodIn{Mode: syscall.S_IFBLK | 0o640, Rdev: 259<<8 | 1}, cs("nvme"), &ent); errno != 0 {
		t.Fatal(errno)
	}
	var out fuse.StatxOut
	if errno := e.fs.Statx(e.ctx(ent.NodeID), &fuse.StatxIn{}, &out); errno != 0 {
		t.Fatal(errno)
	}
	x := out.Stat
	if x.UID != 7 || x.GID != 8 || x.Mode != syscall.S_IFBLK|0o640 || x.RdevMajor != 259 || x.RdevMinor != 1 || x.Size != 0 {
		t.Errorf("STATX: uid %d gid %d mode %#o rdev %d:%d size %d, want 7 8 block 0640 259:1 0", x.UID, x.GID, x.Mode, x.RdevMajor, x.RdevMinor, x.Size)
	}
}
