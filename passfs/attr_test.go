package passfs_test

import (
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/passfs"
)

func TestSetattrModeSizeTimes(t *testing.T) {
	e := newEnv(t, nil)
	e.writeHost("f", "0123456789")
	f := e.lookup(fuse.RootID, "f")
	ctx := e.ctx(f.NodeID)
	var out fuse.AttrOut
	if errno := e.fs.Setattr(ctx, &fuse.SetattrIn{Valid: fuse.FattrMode, Mode: syscall.S_IFREG | 0o4751}, &out); errno != 0 {
		t.Fatal(errno)
	}
	if st := e.lstat("f"); st.Mode != syscall.S_IFREG|0o4751 || out.Attr.Mode != st.Mode {
		t.Fatalf("chmod: host %#o reply %#o", st.Mode, out.Attr.Mode)
	}
	// Size by path.
	if errno := e.fs.Setattr(ctx, &fuse.SetattrIn{Valid: fuse.FattrSize, Size: 4}, &out); errno != 0 {
		t.Fatal(errno)
	}
	if readHost(t, e.host("f")) != "0123" || out.Attr.Size != 4 {
		t.Fatalf("truncate by path: %q size %d", readHost(t, e.host("f")), out.Attr.Size)
	}
	// Size through a handle.
	fh := e.open(f.NodeID, syscall.O_RDWR)
	if errno := e.fs.Setattr(ctx, &fuse.SetattrIn{Valid: fuse.FattrSize | fuse.FattrFh, Fh: fh, Size: 2}, &out); errno != 0 {
		t.Fatal(errno)
	}
	if readHost(t, e.host("f")) != "01" {
		t.Fatal("truncate through a handle failed")
	}
	wantErrno(t, "setattr with an unknown fh", e.fs.Setattr(ctx, &fuse.SetattrIn{Valid: fuse.FattrSize | fuse.FattrFh, Fh: 999}, &out), syscall.EBADF)
	e.release(fh)
	// Explicit times, then mtime NOW.
	in := &fuse.SetattrIn{Valid: fuse.FattrAtime | fuse.FattrMtime, Atime: 1000, Atimensec: 5, Mtime: 2000, Mtimensec: 7}
	if errno := e.fs.Setattr(ctx, in, &out); errno != 0 {
		t.Fatal(errno)
	}
	st := e.lstat("f")
	if st.Atim.Sec != 1000 || st.Atim.Nsec != 5 || st.Mtim.Sec != 2000 || st.Mtim.Nsec != 7 || out.Attr.Mtime != 2000 {
		t.Fatalf("times: atime %v mtime %v", st.Atim, st.Mtim)
	}
	if errno := e.fs.Setattr(ctx, &fuse.SetattrIn{Valid: fuse.FattrMtimeNow}, &out); errno != 0 {
		t.Fatal(errno)
	}
	st = e.lstat("f")
	if st.Mtim.Sec < 1_600_000_000 || st.Atim.Sec != 1000 {
		t.Fatalf("MTIME_NOW: mtime %v (want now), atime %v (want unchanged)", st.Mtim, st.Atim)
	}
	// KILL_SUIDGID clears set-user-id, and set-group-id only with group execute.
	if err := os.Chmod(e.host("f"), 0o6750|os.ModeSetuid|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	if errno := e.fs.Setattr(ctx, &fuse.SetattrIn{Valid: fuse.FattrKillSuidgid}, &out); errno != 0 {
		t.Fatal(errno)
	}
	if st := e.lstat("f"); st.Mode&(syscall.S_ISUID|syscall.S_ISGID) != 0 {
		t.Fatalf("KILL_SUIDGID left mode %#o", st.Mode)
	}
}

func TestSetattrTimesOfSymlink(t *testing.T) {
	e := newEnv(t, nil)
	e.writeHost("target", "x")
	if err := os.Symlink("target", e.host("ln")); err != nil {
		t.Fatal(err)
	}
	ln := e.lookup(fuse.RootID, "ln")
	var out fuse.AttrOut
	if errno := e.fs.Setattr(e.ctx(ln.NodeID), &fuse.SetattrIn{Valid: fuse.FattrMtime, Mtime: 12345}, &out); errno != 0 {
		t.Fatal(errno)
	}
	if e.lstat("ln").Mtim.Sec != 12345 || e.lstat("target").Mtim.Sec == 12345 {
		t.Fatal("utimes on a symlink node must change the link, not its target")
	}
}

func TestSetattrOwner(t *testing.T) {
	needRoot(t)
	e := newEnv(t, func(o *passfs.Options) { o.UIDs = offsetMapper(100000) })
	e.writeHost("f", "x")
	f := e.lookup(fuse.RootID, "f")
	var out fuse.AttrOut
	if errno := e.fs.Setattr(e.ctx(f.NodeID), &fuse.SetattrIn{Valid: fuse.FattrUID | fuse.FattrGID, UID: 1000, GID: 1001}, &out); errno != 0 {
		t.Fatal(errno)
	}
	st := e.lstat("f")
	if st.Uid != 101000 || st.Gid != 1001 {
		t.Fatalf("host owner %d:%d, want 101000:1001 (uid translated)", st.Uid, st.Gid)
	}
	if out.Attr.UID != 1000 || out.Attr.GID != 1001 {
		t.Fatalf("reply owner %d:%d, want the guest's 1000:1001", out.Attr.UID, out.Attr.GID)
	}
	wantErrno(t, "forbidden uid", e.fs.Setattr(e.ctx(f.NodeID), &fuse.SetattrIn{Valid: fuse.FattrUID, UID: forbiddenID}, &out), syscall.EPERM)
	if e.lstat("f").Uid != 101000 {
		t.Fatal("a refused chown changed the owner")
	}
}

// offsetMapper maps guest id g to ns id g+offset; forbiddenID is refused.
type offsetMapper uint32

const forbiddenID = 4242

func (m offsetMapper) GuestToNS(id uint32) (uint32, error) {
	if id == forbiddenID {
		return 0, syscall.EPERM
	}
	return id + uint32(m), nil
}
func (m offsetMapper) NSToGuest(id uint32) uint32 { return id - uint32(m) }

func TestAccess(t *testing.T) {
	e := newEnv(t, nil)
	e.writeHost("f", "x")
	if err := os.Chmod(e.host("f"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(e.host("f"), os.Getuid(), os.Getgid()); err != nil {
		t.Fatal(err)
	}
	f := e.lookup(fuse.RootID, "f")
	owner := e.ctx(f.NodeID)
	other := &fuse.Context{NodeID: f.NodeID, UID: 5555, GID: 5555}
	group := &fuse.Context{NodeID: f.NodeID, UID: 5555, GID: uint32(os.Getgid())}
	cases := []struct {
		ctx  *fuse.Context
		mask uint32
		want fuse.Errno
	}{
		{owner, unix.R_OK | unix.W_OK, 0},
		{owner, unix.X_OK, syscall.EACCES},
		{group, unix.R_OK, 0},
		{group, unix.W_OK, syscall.EACCES},
		{other, unix.R_OK, syscall.EACCES},
		{other, unix.F_OK, 0},
	}
	if os.Getuid() != 0 {
		cases = append(cases, struct {
			ctx  *fuse.Context
			mask uint32
			want fuse.Errno
		}{&fuse.Context{NodeID: f.NodeID, UID: 0, GID: 0}, unix.X_OK, syscall.EACCES})
	}
	for i, c := range cases {
		if got := e.fs.Access(c.ctx, &fuse.AccessIn{Mask: c.mask}); got != c.want {
			t.Errorf("case %d: uid %d mask %d: %v, want %v", i, c.ctx.UID, c.mask, got, c.want)
		}
	}
	rootCtx := &fuse.Context{NodeID: f.NodeID, UID: 0, GID: 0}
	wantErrno(t, "root execute of a non-executable file", e.fs.Access(rootCtx, &fuse.AccessIn{Mask: unix.X_OK}), syscall.EACCES)
	wantErrno(t, "root write", e.fs.Access(rootCtx, &fuse.AccessIn{Mask: unix.W_OK}), 0)
}

func TestStatfsSyncfs(t *testing.T) {
	e := newEnv(t, nil)
	var out fuse.StatfsOut
	if errno := e.fs.Statfs(e.ctx(fuse.RootID), &out); errno != 0 {
		t.Fatal(errno)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(e.dir, &st); err != nil {
		t.Fatal(err)
	}
	if out.Blocks != st.Blocks || out.Bsize != uint32(st.Bsize) || out.Namelen != uint32(st.Namelen) || out.Files != st.Files {
		t.Fatalf("statfs %+v does not match host %+v", out, st)
	}
	if errno := e.fs.Syncfs(e.ctx(fuse.RootID), &fuse.SyncfsIn{}); errno != 0 {
		t.Fatal(errno)
	}
	wantErrno(t, "syncfs of an unknown node", e.fs.Syncfs(e.ctx(999), &fuse.SyncfsIn{}), syscall.EBADF)
}

func TestCachePolicies(t *testing.T) {
	for _, c := range []struct {
		name             string
		timeout          uint64
		fileFlags, dirFl uint32
	}{
		{"auto", 1, 0, 0},
		{"always", 86400, fuse.FopenKeepCache, fuse.FopenKeepCache | fuse.FopenCacheDir},
		{"metadata", 86400, fuse.FopenDirectIO, fuse.FopenCacheDir},
		{"never", 0, fuse.FopenDirectIO, 0},
	} {
		policy, err := passfs.ParseCachePolicy(c.name)
		if err != nil || policy.String() != c.name {
			t.Fatalf("ParseCachePolicy(%q) = %v, %v", c.name, policy, err)
		}
		e := newEnv(t, func(o *passfs.Options) { o.Cache = policy })
		e.writeHost("f", "x")
		ent := e.lookup(fuse.RootID, "f")
		if ent.EntryValid != c.timeout || ent.AttrValid != c.timeout {
			t.Errorf("%s: timeouts %d/%d, want %d", c.name, ent.EntryValid, ent.AttrValid, c.timeout)
		}
		var o fuse.OpenOut
		if errno := e.fs.Open(e.ctx(ent.NodeID), &fuse.OpenIn{}, &o); errno != 0 || o.OpenFlags != c.fileFlags {
			t.Errorf("%s: file open flags %#x, want %#x (%v)", c.name, o.OpenFlags, c.fileFlags, errno)
		}
		if errno := e.fs.Opendir(e.ctx(fuse.RootID), &fuse.OpenIn{}, &o); errno != 0 || o.OpenFlags != c.dirFl {
			t.Errorf("%s: dir open flags %#x, want %#x (%v)", c.name, o.OpenFlags, c.dirFl, errno)
		}
	}
	if _, err := passfs.ParseCachePolicy("sometimes"); err == nil {
		t.Fatal("unknown cache policy accepted")
	}
}

// TestStatxBirthTime answers STATX (a Linux 6.11+ guest's statx for the birth time) with the basic
// fields GETATTR gives and the host's birth time.
func TestStatxBirthTime(t *testing.T) {
	e := newEnv(t, nil)
	e.writeHost("f", "0123456789")
	f := e.lookup(fuse.RootID, "f")
	var host unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, e.host("f"), unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS|unix.STATX_BTIME, &host); err != nil {
		t.Fatal(err)
	}
	var out fuse.StatxOut
	if errno := e.fs.Statx(e.ctx(f.NodeID), &fuse.StatxIn{SxMask: unix.STATX_BASIC_STATS | unix.STATX_BTIME}, &out); errno != 0 {
		t.Fatal(errno)
	}
	var attr fuse.AttrOut
	if errno := e.fs.Getattr(e.ctx(f.NodeID), &fuse.GetattrIn{}, &attr); errno != 0 {
		t.Fatal(errno)
	}
	x := out.Stat
	if x.Mask&unix.STATX_BASIC_STATS != unix.STATX_BASIC_STATS || x.Size != 10 || x.Ino != attr.Attr.Ino ||
		uint32(x.Mode) != attr.Attr.Mode || x.UID != attr.Attr.UID || x.GID != attr.Attr.GID || x.Nlink != 1 ||
		x.Mtime.Sec != int64(attr.Attr.Mtime) || x.Mtime.Nsec != attr.Attr.Mtimensec || out.AttrValid != attr.AttrValid {
		t.Errorf("STATX %+v (valid %d) does not match GETATTR %+v (valid %d)", x, out.AttrValid, attr.Attr, attr.AttrValid)
	}
	if host.Mask&unix.STATX_BTIME != 0 && (x.Mask&unix.STATX_BTIME == 0 || x.Btime.Sec != host.Btime.Sec || x.Btime.Nsec != host.Btime.Nsec) {
		t.Errorf("birth time %+v (mask %#x), the host's %+v", x.Btime, x.Mask, host.Btime)
	}
	wantErrno(t, "STATX of an unknown node", e.fs.Statx(e.ctx(999), &fuse.StatxIn{}, &out), syscall.EBADF)
}
