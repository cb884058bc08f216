package passfs_test

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/passfs"
)

// fsuidsOfAllThreads reads the fsuid and fsgid of every thread of the process.
func fsidsOfAllThreads(t *testing.T) []string {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/status")
		if err != nil {
			continue // the thread exited
		}
		var uid, gid string
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) == 5 && f[0] == "Uid:" {
				uid = f[4]
			}
			if len(f) == 5 && f[0] == "Gid:" {
				gid = f[4]
			}
		}
		ids = append(ids, uid+":"+gid)
	}
	return ids
}

func TestCredentialsPerThread(t *testing.T) {
	needRoot(t)
	e := newEnv(t, nil)
	const rounds = 50
	var wg sync.WaitGroup
	errs := make(chan error, 2*rounds)
	for _, id := range []uint32{1000, 2000} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				ctx := &fuse.Context{NodeID: fuse.RootID, UID: id, GID: id + 1}
				var ent fuse.EntryOut
				var o fuse.OpenOut
				name := fmt.Sprintf("f-%d-%d", id, i)
				if errno := e.fs.Create(ctx, &fuse.CreateIn{Flags: syscall.O_RDWR, Mode: 0o644}, cs(name), &ent, &o); errno != 0 {
					errs <- fmt.Errorf("create %s: %v", name, errno)
					return
				}
				e.fs.Release(ctx, &fuse.ReleaseIn{Fh: o.Fh})
				if ent.Attr.UID != id || ent.Attr.GID != id+1 {
					errs <- fmt.Errorf("%s: entry owner %d:%d", name, ent.Attr.UID, ent.Attr.GID)
				}
				if errno := e.fs.Mkdir(ctx, &fuse.MkdirIn{Mode: 0o755}, cs("d"+name), &ent); errno != 0 {
					errs <- fmt.Errorf("mkdir: %v", errno)
					return
				}
				runtime.Gosched()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, id := range []uint32{1000, 2000} {
		for i := range rounds {
			for _, name := range []string{fmt.Sprintf("f-%d-%d", id, i), fmt.Sprintf("df-%d-%d", id, i)} {
				st := e.lstat(name)
				if st.Uid != id || st.Gid != id+1 {
					t.Fatalf("%s owned by %d:%d, want %d:%d", name, st.Uid, st.Gid, id, id+1)
				}
			}
		}
	}
	for _, ids := range fsidsOfAllThreads(t) {
		if ids != "0:0" {
			t.Fatalf("a thread kept fsuid:fsgid %s", ids)
		}
	}
	if os.Geteuid() != 0 || os.Getegid() != 0 {
		t.Fatal("process credentials changed")
	}
}

func TestCredentialsTranslatedAndForbidden(t *testing.T) {
	needRoot(t)
	e := newEnv(t, func(o *passfs.Options) { o.UIDs = offsetMapper(100000); o.GIDs = offsetMapper(200000) })
	ctx := &fuse.Context{NodeID: fuse.RootID, UID: 7, GID: 8}
	var ent fuse.EntryOut
	if errno := e.fs.Symlink(ctx, cs("ln"), cs("target"), &ent); errno != 0 {
		t.Fatal(errno)
	}
	if st := e.lstat("ln"); st.Uid != 100007 || st.Gid != 200008 {
		t.Fatalf("host owner %d:%d, want 100007:200008", st.Uid, st.Gid)
	}
	if ent.Attr.UID != 7 || ent.Attr.GID != 8 {
		t.Fatalf("guest sees owner %d:%d, want 7:8", ent.Attr.UID, ent.Attr.GID)
	}
	ctx.UID = forbiddenID
	wantErrno(t, "forbidden uid", e.fs.Mknod(ctx, &fuse.MknodIn{Mode: syscall.S_IFREG | 0o644}, cs("x"), &ent), syscall.EPERM)
	if _, err := os.Lstat(e.host("x")); !os.IsNotExist(err) {
		t.Fatal("a forbidden caller created a file")
	}
}

func TestCredentialsSupplementaryGroup(t *testing.T) {
	needRoot(t)
	e := newEnv(t, nil)
	// A directory only group 3000 may write to: the caller is in it only as a supplementary group.
	if err := os.Mkdir(e.host("shared"), 0o770); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(e.host("shared"), 0, 3000); err != nil {
		t.Fatal(err)
	}
	dir := e.lookup(fuse.RootID, "shared")
	ctx := &fuse.Context{NodeID: dir.NodeID, UID: 1000, GID: 1000}
	var ent fuse.EntryOut
	wantErrno(t, "create without the group", e.fs.Mkdir(ctx, &fuse.MkdirIn{Mode: 0o755}, cs("a"), &ent), syscall.EACCES)
	ctx.SuppGID, ctx.HasSuppGID = 3000, true
	if errno := e.fs.Mkdir(ctx, &fuse.MkdirIn{Mode: 0o755}, cs("a"), &ent); errno != 0 {
		t.Fatalf("create with the supplementary group: %v", errno)
	}
	for _, ids := range fsidsOfAllThreads(t) {
		if ids != "0:0" {
			t.Fatalf("a thread kept fsuid:fsgid %s", ids)
		}
	}
	groups, _ := os.Getgroups()
	if len(groups) > 1 || len(groups) == 1 && groups[0] != 0 {
		t.Fatalf("process groups changed: %v", groups)
	}
}

// A request acts with the caller's ids only: the daemon's own supplementary groups (here group
// 3001, set before New reads them) give it nothing.
func TestCredentialsWithoutTheDaemonsGroups(t *testing.T) {
	needRoot(t)
	before, err := syscall.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Setgroups([]int{3001}); err != nil { // every thread: Go's AllThreadsSyscall
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Setgroups(before) })
	e := newEnv(t, nil)
	if err := os.Mkdir(e.host("team"), 0o770); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(e.host("team"), 0, 3001); err != nil {
		t.Fatal(err)
	}
	dir := e.lookup(fuse.RootID, "team")
	ctx := &fuse.Context{NodeID: dir.NodeID, UID: 1000, GID: 1000}
	var ent fuse.EntryOut
	wantErrno(t, "mkdir by 1000:1000 in a directory of the daemon's group", e.fs.Mkdir(ctx, &fuse.MkdirIn{Mode: 0o755}, cs("a"), &ent), syscall.EACCES)
	ctx.SuppGID, ctx.HasSuppGID = 3001, true
	if errno := e.fs.Mkdir(ctx, &fuse.MkdirIn{Mode: 0o755}, cs("a"), &ent); errno != 0 {
		t.Fatalf("mkdir with the group as CREATE_SUPP_GROUP: %v", errno)
	}
	if groups, _ := syscall.Getgroups(); len(groups) != 1 || groups[0] != 3001 {
		t.Fatalf("the daemon's groups are %v after the requests, want [3001]", groups)
	}
}

func TestCreateWithoutSetCreds(t *testing.T) {
	e := newEnv(t, func(o *passfs.Options) { o.SetCreds = false })
	ctx := &fuse.Context{NodeID: fuse.RootID, UID: 1234, GID: 1234}
	var ent fuse.EntryOut
	if errno := e.fs.Mkdir(ctx, &fuse.MkdirIn{Mode: 0o755}, cs("d"), &ent); errno != 0 {
		t.Fatal(errno)
	}
	if st := e.lstat("d"); st.Uid != uint32(os.Geteuid()) {
		t.Fatalf("without SetCreds the file must belong to the daemon, got uid %d", st.Uid)
	}
}

func TestReadonly(t *testing.T) {
	e := newEnv(t, func(o *passfs.Options) { o.Readonly = true })
	e.writeHost("f", "data")
	f := e.lookup(fuse.RootID, "f")
	root := e.ctx(fuse.RootID)
	var ent fuse.EntryOut
	var o fuse.OpenOut
	var attr fuse.AttrOut
	checks := map[string]fuse.Errno{
		"mkdir":    e.fs.Mkdir(root, &fuse.MkdirIn{Mode: 0o755}, cs("d"), &ent),
		"mknod":    e.fs.Mknod(root, &fuse.MknodIn{Mode: syscall.S_IFREG | 0o644}, cs("n"), &ent),
		"symlink":  e.fs.Symlink(root, cs("s"), cs("t"), &ent),
		"create":   e.fs.Create(root, &fuse.CreateIn{Flags: syscall.O_RDWR, Mode: 0o644}, cs("c"), &ent, &o),
		"tmpfile":  e.fs.Tmpfile(root, &fuse.CreateIn{Flags: syscall.O_RDWR, Mode: 0o644}, &ent, &o),
		"link":     e.fs.Link(root, &fuse.LinkIn{OldNodeID: f.NodeID}, cs("l"), &ent),
		"unlink":   e.fs.Unlink(root, cs("f")),
		"rmdir":    e.fs.Rmdir(root, cs("f")),
		"rename":   e.fs.Rename(root, fuse.RootID, 0, cs("f"), cs("g")),
		"setattr":  e.fs.Setattr(e.ctx(f.NodeID), &fuse.SetattrIn{Valid: fuse.FattrSize}, &attr),
		"open rw":  e.fs.Open(e.ctx(f.NodeID), &fuse.OpenIn{Flags: syscall.O_RDWR}, &o),
		"trunc":    e.fs.Open(e.ctx(f.NodeID), &fuse.OpenIn{Flags: syscall.O_RDONLY | syscall.O_TRUNC}, &o),
		"setxattr": e.fs.Setxattr(e.ctx(f.NodeID), &fuse.SetxattrIn{}, cs("user.a"), []byte("b")),
		"rmxattr":  e.fs.Removexattr(e.ctx(f.NodeID), cs("user.a")),
		"access w": e.fs.Access(e.ctx(f.NodeID), &fuse.AccessIn{Mask: 2}),
	}
	for op, errno := range checks {
		if errno != syscall.EROFS {
			t.Errorf("%s on a read-only share: %v, want EROFS", op, errno)
		}
	}
	fh := e.open(f.NodeID, syscall.O_RDONLY)
	if s := e.read(fh, 0, 4); s != "data" {
		t.Fatalf("read on a read-only share: %q", s)
	}
	_, errno := e.fs.Write(e.ctx(f.NodeID), &fuse.WriteIn{Fh: fh, Size: 1}, [][]byte{{'x'}})
	wantErrno(t, "write", errno, syscall.EROFS)
	wantErrno(t, "fallocate", e.fs.Fallocate(e.ctx(f.NodeID), &fuse.FallocateIn{Fh: fh, Length: 1}), syscall.EROFS)
	e.release(fh)
	entries, _ := os.ReadDir(e.dir)
	if len(entries) != 1 || readHost(t, e.host("f")) != "data" {
		t.Fatalf("the read-only share changed: %v", entries)
	}
}

func TestWriteKillsSuidgid(t *testing.T) {
	e := newEnv(t, func(o *passfs.Options) { o.KillprivV2 = true })
	e.writeHost("f", "x")
	if err := os.Chmod(e.host("f"), 0o755|os.ModeSetuid|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	f := e.lookup(fuse.RootID, "f")
	fh := e.open(f.NodeID, syscall.O_RDWR)
	// Without the flag (a privileged writer in the guest), the bits stay when the daemon is root.
	e.write(fh, 0, "a")
	if os.Geteuid() == 0 && e.lstat("f").Mode&(syscall.S_ISUID|syscall.S_ISGID) == 0 {
		t.Fatal("a write without KILL_SUIDGID cleared the set-id bits")
	}
	if err := os.Chmod(e.host("f"), 0o755|os.ModeSetuid|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	n, errno := e.fs.Write(e.ctx(f.NodeID), &fuse.WriteIn{Fh: fh, Size: 1, WriteFlags: fuse.WriteKillSuidgid}, [][]byte{{'b'}})
	if errno != 0 || n != 1 {
		t.Fatal(errno)
	}
	if m := e.lstat("f").Mode; m&(syscall.S_ISUID|syscall.S_ISGID) != 0 || m&0o777 != 0o755 {
		t.Fatalf("mode after a KILL_SUIDGID write: %#o", m)
	}
	e.release(fh)
}
