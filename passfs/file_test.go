package passfs_test

import (
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
)

func TestFsyncFlushRelease(t *testing.T) {
	e := newEnv(t, nil)
	e.writeHost("f", "x")
	f := e.lookup(fuse.RootID, "f")
	fh := e.open(f.NodeID, syscall.O_RDWR)
	e.write(fh, 0, "synced")
	if errno := e.fs.Fsync(e.ctx(f.NodeID), &fuse.FsyncIn{Fh: fh}); errno != 0 {
		t.Fatal(errno)
	}
	if errno := e.fs.Fsync(e.ctx(f.NodeID), &fuse.FsyncIn{Fh: fh, FsyncFlags: fuse.FsyncFdatasync}); errno != 0 {
		t.Fatal(errno)
	}
	// FLUSH releases POSIX (process-owned) locks held through the fd, leaving the handle usable.
	fd, err := unix.Open(e.host("f"), unix.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if errno := e.fs.Flush(e.ctx(f.NodeID), &fuse.FlushIn{Fh: fh}); errno != 0 {
		t.Fatal(errno)
	}
	if s := e.read(fh, 0, 6); s != "synced" {
		t.Fatalf("handle unusable after FLUSH: %q", s)
	}
	if readHost(t, e.host("f")) != "synced" {
		t.Fatal("data not on the host")
	}
	dfh := openDir(t, e, fuse.RootID)
	if errno := e.fs.Fsyncdir(e.ctx(fuse.RootID), &fuse.FsyncIn{Fh: dfh}); errno != 0 {
		t.Fatal(errno)
	}
	if errno := e.fs.Releasedir(e.ctx(fuse.RootID), &fuse.ReleaseIn{Fh: dfh}); errno != 0 {
		t.Fatal(errno)
	}
	e.release(fh)
	if e.fs.HandleCount() != 0 {
		t.Fatalf("%d handles left", e.fs.HandleCount())
	}
}

func TestFallocateLseek(t *testing.T) {
	e := newEnv(t, nil)
	e.writeHost("f", "")
	f := e.lookup(fuse.RootID, "f")
	fh := e.open(f.NodeID, syscall.O_RDWR)
	if errno := e.fs.Fallocate(e.ctx(f.NodeID), &fuse.FallocateIn{Fh: fh, Offset: 0, Length: 1 << 20}); errno != 0 {
		t.Fatal(errno)
	}
	if st := e.lstat("f"); st.Size != 1<<20 || st.Blocks < (1<<20)/512 {
		t.Fatalf("fallocate: size %d blocks %d", st.Size, st.Blocks)
	}
	// Fill with data, punch a hole in the middle and find it with SEEK_HOLE / SEEK_DATA.
	// (Fallocated but unwritten extents count as holes on ext4, so write real data first.)
	n, errno := e.fs.Write(e.ctx(f.NodeID), &fuse.WriteIn{Fh: fh, Size: 1 << 20}, [][]byte{make([]byte, 1<<20)})
	if errno != 0 || n != 1<<20 {
		t.Fatalf("write: %d %v", n, errno)
	}
	if errno := e.fs.Fsync(e.ctx(f.NodeID), &fuse.FsyncIn{Fh: fh}); errno != 0 {
		t.Fatal(errno)
	}
	punch := &fuse.FallocateIn{Fh: fh, Offset: 256 << 10, Length: 256 << 10, Mode: unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE}
	if errno := e.fs.Fallocate(e.ctx(f.NodeID), punch); errno != 0 {
		t.Fatal(errno)
	}
	var out fuse.LseekOut
	if errno := e.fs.Lseek(e.ctx(f.NodeID), &fuse.LseekIn{Fh: fh, Offset: 0, Whence: unix.SEEK_HOLE}, &out); errno != 0 {
		t.Fatal(errno)
	}
	if out.Offset != 256<<10 {
		t.Fatalf("SEEK_HOLE found %d, want %d", out.Offset, 256<<10)
	}
	if errno := e.fs.Lseek(e.ctx(f.NodeID), &fuse.LseekIn{Fh: fh, Offset: 256 << 10, Whence: unix.SEEK_DATA}, &out); errno != 0 {
		t.Fatal(errno)
	}
	if out.Offset != 512<<10 {
		t.Fatalf("SEEK_DATA found %d, want %d", out.Offset, 512<<10)
	}
	wantErrno(t, "bad whence", e.fs.Lseek(e.ctx(f.NodeID), &fuse.LseekIn{Fh: fh, Whence: 9}, &out), syscall.EINVAL)
	wantErrno(t, "SEEK_DATA past the end", e.fs.Lseek(e.ctx(f.NodeID), &fuse.LseekIn{Fh: fh, Offset: 2 << 20, Whence: unix.SEEK_DATA}, &out), syscall.ENXIO)
	e.release(fh)
}

func TestCopyFileRange(t *testing.T) {
	e := newEnv(t, nil)
	e.writeHost("src", "0123456789")
	e.writeHost("dst", "abcdefghij")
	src := e.open(e.lookup(fuse.RootID, "src").NodeID, syscall.O_RDONLY)
	dstNode := e.lookup(fuse.RootID, "dst").NodeID
	dst := e.open(dstNode, syscall.O_RDWR)
	var out fuse.WriteOut
	in := &fuse.CopyFileRangeIn{FhIn: src, OffIn: 2, NodeIDOut: dstNode, FhOut: dst, OffOut: 5, Len: 4}
	if errno := e.fs.CopyFileRange(e.ctx(0), in, &out); errno != 0 {
		t.Fatal(errno)
	}
	if out.Size != 4 || readHost(t, e.host("dst")) != "abcde2345j" {
		t.Fatalf("copied %d bytes, dst %q", out.Size, readHost(t, e.host("dst")))
	}
	in.Flags = 1
	wantErrno(t, "flags", e.fs.CopyFileRange(e.ctx(0), in, &out), syscall.EINVAL)
	e.release(src)
	e.release(dst)
}

func TestPosixLocksAndFlock(t *testing.T) {
	e := newEnv(t, nil)
	e.writeHost("f", "0123456789")
	f := e.lookup(fuse.RootID, "f")
	h1 := e.open(f.NodeID, syscall.O_RDWR)
	h2 := e.open(f.NodeID, syscall.O_RDWR)
	// Each open as its own lock owner (process): owner h1 through h1, owner h2 through h2.
	lk := fuse.FileLock{Start: 2, End: 5, Type: unix.F_WRLCK}
	if errno := e.fs.Setlk(e.ctx(f.NodeID), &fuse.LkIn{Fh: h1, Owner: h1, Lk: lk}, false); errno != 0 {
		t.Fatal(errno)
	}
	var out fuse.LkOut
	if errno := e.fs.Getlk(e.ctx(f.NodeID), &fuse.LkIn{Fh: h2, Owner: h2, Lk: fuse.FileLock{Start: 0, End: 1<<63 - 1, Type: unix.F_RDLCK}}, &out); errno != 0 {
		t.Fatal(errno)
	}
	if out.Lk.Type != unix.F_WRLCK || out.Lk.Start != 2 || out.Lk.End != 5 {
		t.Fatalf("GETLK from another handle: %+v, want the write lock 2-5", out.Lk)
	}
	wantErrno(t, "conflicting SETLK", e.fs.Setlk(e.ctx(f.NodeID), &fuse.LkIn{Fh: h2, Owner: h2, Lk: fuse.FileLock{Start: 4, End: 4, Type: unix.F_RDLCK}}, false), syscall.EAGAIN)
	// The lock is visible on the host too (an OFD lock conflicts with a host process's lock).
	fd, err := unix.Open(e.host("f"), unix.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	hostLk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 3, Len: 1}
	if err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_GETLK, &hostLk); err != nil || hostLk.Type != unix.F_WRLCK {
		t.Fatalf("host does not see the lock: %+v %v", hostLk, err)
	}
	// Unlock, then the other handle gets it.
	if errno := e.fs.Setlk(e.ctx(f.NodeID), &fuse.LkIn{Fh: h1, Owner: h1, Lk: fuse.FileLock{Start: 2, End: 5, Type: unix.F_UNLCK}}, false); errno != 0 {
		t.Fatal(errno)
	}
	if errno := e.fs.Setlk(e.ctx(f.NodeID), &fuse.LkIn{Fh: h2, Owner: h2, Lk: fuse.FileLock{Start: 4, End: 4, Type: unix.F_RDLCK}}, true); errno != 0 {
		t.Fatalf("SETLKW after unlock: %v", errno)
	}
	if e.fs.LockFDCount() != 2 {
		t.Errorf("%d lock fds for two owners", e.fs.LockFDCount())
	}
	wantErrno(t, "bad range", e.fs.Setlk(e.ctx(f.NodeID), &fuse.LkIn{Fh: h1, Lk: fuse.FileLock{Start: 5, End: 2, Type: unix.F_RDLCK}}, false), syscall.EINVAL)
	wantErrno(t, "bad type", e.fs.Setlk(e.ctx(f.NodeID), &fuse.LkIn{Fh: h1, Lk: fuse.FileLock{Type: 7}}, false), syscall.EINVAL)

	// flock: exclusive on h1 blocks a non-waiting exclusive on h2.
	fl := func(fh uint64, typ uint32, wait bool) fuse.Errno {
		return e.fs.Setlk(e.ctx(f.NodeID), &fuse.LkIn{Fh: fh, Lk: fuse.FileLock{Type: typ}, LkFlags: fuse.LkFlock}, wait)
	}
	if errno := fl(h1, unix.F_WRLCK, false); errno != 0 {
		t.Fatal(errno)
	}
	wantErrno(t, "conflicting flock", fl(h2, unix.F_WRLCK, false), syscall.EWOULDBLOCK)
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != syscall.EWOULDBLOCK {
		t.Fatalf("host flock while the guest holds one: %v", err)
	}
	if errno := fl(h1, unix.F_UNLCK, false); errno != 0 {
		t.Fatal(errno)
	}
	if errno := fl(h2, unix.F_RDLCK, true); errno != 0 {
		t.Fatal(errno)
	}
	for _, h := range []uint64{h1, h2} {
		if errno := e.fs.Flush(e.ctx(f.NodeID), &fuse.FlushIn{Fh: h, LockOwner: h}); errno != 0 {
			t.Fatal(errno)
		}
	}
	if e.fs.LockFDCount() != 0 {
		t.Errorf("%d lock fds after both owners closed", e.fs.LockFDCount())
	}
	e.release(h1)
	e.release(h2)
}

func openDir(t *testing.T, e *env, node uint64) uint64 {
	t.Helper()
	var o fuse.OpenOut
	if errno := e.fs.Opendir(e.ctx(node), &fuse.OpenIn{Flags: syscall.O_RDONLY | syscall.O_DIRECTORY}, &o); errno != 0 {
		t.Fatal(errno)
	}
	return o.Fh
}

type dirent struct {
	name string
	ino  uint64
	off  uint64
	typ  uint32
	node uint64
}

// parseDirBuffer decodes READDIR(PLUS) replies the way the guest kernel does.
func parseDirBuffer(t testing.TB, b []byte, plus bool) []dirent {
	t.Helper()
	var out []dirent
	for len(b) > 0 {
		var d dirent
		if plus {
			var ent fuse.EntryOut
			ent.NodeID = leU64(b)
			d.node = ent.NodeID
			b = b[entryOutSize:]
		}
		d.ino, d.off = leU64(b), leU64(b[8:])
		namelen := int(leU32(b[16:]))
		d.typ = leU32(b[20:])
		d.name = string(b[24 : 24+namelen])
		size := (24 + namelen + 7) &^ 7
		out = append(out, d)
		b = b[size:]
	}
	return out
}

const entryOutSize = 40 + 88

func leU64(b []byte) uint64 { return uint64(leU32(b)) | uint64(leU32(b[4:]))<<32 }
func leU32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// readAll reads a directory with replies of size bytes, continuing from each last offset.
func readAll(t testing.TB, e *env, fh uint64, size int, plus bool, from uint64) []dirent {
	t.Helper()
	var all []dirent
	off := from
	var buf fuse.DirBuffer
	for range 10000 {
		buf.Reset(size, plus)
		if errno := e.fs.Readdir(e.ctx(fuse.RootID), &fuse.ReadIn{Fh: fh, Offset: off, Size: uint32(size)}, plus, &buf); errno != 0 {
			t.Fatal(errno)
		}
		got := parseDirBuffer(t, buf.Bytes(), plus)
		if len(got) == 0 {
			return all
		}
		all = append(all, got...)
		off = got[len(got)-1].off
	}
	t.Fatal("readdir never ended")
	return nil
}

func TestReaddir(t *testing.T) {
	e := newEnv(t, nil)
	want := map[string]uint32{".": unix.DT_DIR, "..": unix.DT_DIR, "sub": unix.DT_DIR, "ln": unix.DT_LNK}
	for i := range 150 {
		name := "file-with-a-longish-name-" + strconv.Itoa(i)
		e.writeHost(name, "")
		want[name] = unix.DT_REG
	}
	if err := os.Mkdir(e.host("sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", e.host("ln")); err != nil {
		t.Fatal(err)
	}
	fh := openDir(t, e, fuse.RootID)
	// Small replies force many continuations from the guest's offsets.
	all := readAll(t, e, fh, 300, false, 0)
	if len(all) != len(want) {
		t.Fatalf("got %d entries, want %d", len(all), len(want))
	}
	for _, d := range all {
		typ, ok := want[d.name]
		if !ok || typ != d.typ {
			t.Errorf("entry %q type %d: unexpected (want %d, known %v)", d.name, d.typ, typ, ok)
		}
		if d.name != "." && d.name != ".." && d.ino != e.lstat(d.name).Ino {
			t.Errorf("entry %q ino %d, host %d", d.name, d.ino, e.lstat(d.name).Ino)
		}
	}
	// Rewind to 0, and restart in the middle from a remembered offset.
	again := readAll(t, e, fh, 4096, false, 0)
	if len(again) != len(all) {
		t.Fatalf("rewind gave %d entries, want %d", len(again), len(all))
	}
	mid := readAll(t, e, fh, 1000, false, all[99].off)
	if len(mid) != len(all)-100 || mid[0].name != all[100].name {
		t.Fatalf("seek to the 100th offset gave %d entries starting at %q, want %d starting at %q", len(mid), mid[0].name, len(all)-100, all[100].name)
	}
	if errno := e.fs.Releasedir(e.ctx(fuse.RootID), &fuse.ReleaseIn{Fh: fh}); errno != 0 {
		t.Fatal(errno)
	}
}

func TestReaddirplus(t *testing.T) {
	e := newEnv(t, nil)
	names := []string{"a", "b", "c", "d", "e"}
	for _, n := range names {
		e.writeHost(n, n)
	}
	base := e.fs.NodeCount()
	fh := openDir(t, e, fuse.RootID)
	// Room for about two entries per reply: entries that do not fit must not be looked up.
	all := readAll(t, e, fh, 2*((entryOutSize+24+8)&^7)+8, true, 0)
	var got []string
	for _, d := range all {
		if d.name == "." || d.name == ".." {
			if d.node != 0 {
				t.Errorf("%q has node id %d, want 0", d.name, d.node)
			}
			continue
		}
		got = append(got, d.name)
		if d.node == 0 || e.fs.NodeLookups(d.node) != 1 {
			t.Errorf("%q: node %d with %d lookups, want one lookup", d.name, d.node, e.fs.NodeLookups(d.node))
		}
		if d.ino != e.lstat(d.name).Ino {
			t.Errorf("%q: ino %d", d.name, d.ino)
		}
	}
	sort.Strings(got)
	if len(got) != len(names) {
		t.Fatalf("entries %v, want %v", got, names)
	}
	if e.fs.NodeCount() != base+len(names) {
		t.Fatalf("node count %d, want %d", e.fs.NodeCount(), base+len(names))
	}
	// The nodes are the ones LOOKUP finds, and FORGET frees them.
	for _, d := range all {
		if d.node != 0 {
			if ent := e.lookup(fuse.RootID, d.name); ent.NodeID != d.node {
				t.Fatalf("lookup of %q gave %d, readdirplus %d", d.name, ent.NodeID, d.node)
			}
			e.fs.Forget(d.node, 2)
		}
	}
	if e.fs.NodeCount() != base {
		t.Fatalf("node count %d after forgetting, want %d", e.fs.NodeCount(), base)
	}
	e.fs.Releasedir(e.ctx(fuse.RootID), &fuse.ReleaseIn{Fh: fh})
}

// The lock owner is the guest's number: an fd per owner is bounded.
func TestLockOwnersAreBounded(t *testing.T) {
	e := newEnv(t, nil)
	e.writeHost("f", "x")
	f := e.lookup(fuse.RootID, "f")
	h := e.open(f.NodeID, syscall.O_RDWR)
	var errno fuse.Errno
	owners := 0
	for ; owners <= 5000 && errno == 0; owners++ {
		errno = e.fs.Setlk(e.ctx(f.NodeID), &fuse.LkIn{Fh: h, Owner: uint64(owners), Lk: fuse.FileLock{Start: uint64(owners), End: uint64(owners), Type: unix.F_RDLCK}}, false)
	}
	if errno != syscall.ENOLCK || owners > 4097 {
		t.Fatalf("owner %d: %v; want ENOLCK after at most 4096 owners", owners, errno)
	}
	e.fs.Destroy()
	if e.fs.LockFDCount() != 0 {
		t.Errorf("%d lock fds after DESTROY", e.fs.LockFDCount())
	}
}

// Without OPENDIR (FUSE_NO_OPENDIR_SUPPORT) READDIR comes with fh 0, and the directory's fd stays
// on its node between requests: listings continue, rewind and restart from any offset as through
// a handle, see the host's changes when they start over, and cost no new fd and no allocation
// once the fd is kept.
func TestReaddirWithoutOpendir(t *testing.T) {
	e := newEnv(t, nil)
	e.fs.Init(&fuse.InitInfo{Flags: fuse.CapNoOpendirSupport})
	var o fuse.OpenOut
	wantErrno(t, "OPENDIR in no-opendir mode", e.fs.Opendir(e.ctx(fuse.RootID), &fuse.OpenIn{Flags: syscall.O_RDONLY}, &o), syscall.ENOSYS)
	for i := range 150 {
		e.writeHost("file-with-a-longish-name-"+strconv.Itoa(i), "")
	}
	fds := e.fs.OpenNodeFDs()
	all := readAll(t, e, 0, 300, false, 0)
	if len(all) != 152 {
		t.Fatalf("got %d entries, want 152", len(all))
	}
	if got := e.fs.OpenNodeFDs(); got != fds+1 {
		t.Fatalf("%d fds open after a listing, want %d (one kept)", got, fds+1)
	}
	names := map[string]bool{}
	for _, d := range all {
		if names[d.name] {
			t.Fatalf("%q listed twice", d.name)
		}
		names[d.name] = true
	}
	mid := readAll(t, e, 0, 1000, false, all[99].off)
	if len(mid) != len(all)-100 || mid[0].name != all[100].name {
		t.Fatalf("restart at the 100th offset gave %d entries starting at %q, want %d starting at %q", len(mid), mid[0].name, len(all)-100, all[100].name)
	}
	// The host adds and removes files: a listing from the start sees it.
	e.writeHost("new", "")
	if err := os.Remove(e.host("file-with-a-longish-name-7")); err != nil {
		t.Fatal(err)
	}
	again := map[string]bool{}
	for _, d := range readAll(t, e, 0, 4096, false, 0) {
		again[d.name] = true
	}
	if len(again) != 152 || !again["new"] || again["file-with-a-longish-name-7"] {
		t.Fatalf("listing after host changes: %d entries, new %v, removed one %v", len(again), again["new"], again["file-with-a-longish-name-7"])
	}
	if got := e.fs.OpenNodeFDs(); got != fds+1 {
		t.Fatalf("%d fds open after more listings, want %d", got, fds+1)
	}
	var buf fuse.DirBuffer
	in := &fuse.ReadIn{Size: 4096}
	ctx := e.ctx(fuse.RootID)
	// A reply smaller than the listing leaves the kept fd's position unknown; an offset past
	// 1<<63-1 is still refused, not taken for "continue where the fd stands".
	buf.Reset(512, false)
	if errno := e.fs.Readdir(ctx, &fuse.ReadIn{Size: 512}, false, &buf); errno != 0 {
		t.Fatal(errno)
	}
	buf.Reset(4096, false)
	wantErrno(t, "READDIR at offset 2^64-1", e.fs.Readdir(ctx, &fuse.ReadIn{Size: 4096, Offset: ^uint64(0)}, false, &buf), syscall.EINVAL)
	if allocs := testing.AllocsPerRun(100, func() {
		buf.Reset(4096, false)
		if errno := e.fs.Readdir(ctx, in, false, &buf); errno != 0 {
			t.Fatal(errno)
		}
	}); allocs != 0 {
		t.Errorf("READDIR without OPENDIR allocates %.1f times per request", allocs)
	}
	// The budget may close the kept fd like a node's; the next listing opens it again.
	e.fs.EvictNodeFDs()
	e.fs.Destroy()
	if n := len(readAll(t, e, 0, 4096, false, 0)); n != 152 {
		t.Fatalf("listing after DESTROY: %d entries", n)
	}
}

// Listings of one directory at once without OPENDIR: one uses the kept fd, the others their own,
// and each sees every entry once.
func TestConcurrentReaddirWithoutOpendir(t *testing.T) {
	e := newEnv(t, nil)
	e.fs.Init(&fuse.InitInfo{Flags: fuse.CapNoOpendirSupport})
	if err := os.Mkdir(e.host("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		e.writeHost("d/f"+strconv.Itoa(i), "")
	}
	d := e.lookup(fuse.RootID, "d")
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			plus := w%2 == 0
			for range 20 {
				seen := map[string]bool{}
				off := uint64(0)
				var buf fuse.DirBuffer
				for {
					buf.Reset(700, plus)
					if errno := e.fs.Readdir(e.ctx(d.NodeID), &fuse.ReadIn{Offset: off, Size: 700}, plus, &buf); errno != 0 {
						t.Error(errno)
						return
					}
					got := parseDirBuffer(t, buf.Bytes(), plus)
					if len(got) == 0 {
						break
					}
					for _, ent := range got {
						if seen[ent.name] {
							t.Errorf("%q listed twice", ent.name)
							return
						}
						seen[ent.name] = true
						if ent.node != 0 {
							e.fs.Forget(ent.node, 1)
						}
					}
					off = got[len(got)-1].off
				}
				if len(seen) != 102 {
					t.Errorf("%d entries, want 102", len(seen))
					return
				}
			}
		}()
	}
	wg.Wait()
}

// OPENDIR takes its getdents64 buffer from a pool and RELEASEDIR gives it back, once no READDIR
// uses it any more: a walk opens one directory after another without allocating a buffer each
// time, and a recycled stream starts clean.
func TestOpendirReusesStreams(t *testing.T) {
	e := newEnv(t, nil)
	for _, dir := range []string{"big", "small"} {
		if err := os.Mkdir(e.host(dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 150 {
		e.writeHost("big/file-with-a-longish-name-"+strconv.Itoa(i), "")
	}
	e.writeHost("small/only", "")
	big := e.lookup(fuse.RootID, "big").NodeID
	small := e.lookup(fuse.RootID, "small").NodeID

	// A listing stopped early leaves entries in the stream's buffer.
	fh := openDir(t, e, big)
	var buf fuse.DirBuffer
	buf.Reset(300, false)
	if errno := e.fs.Readdir(e.ctx(big), &fuse.ReadIn{Fh: fh, Size: 300}, false, &buf); errno != 0 {
		t.Fatal(errno)
	}
	stopped := lastDirOffset(buf.Bytes())
	// A READDIR still running keeps the stream out of the pool past RELEASEDIR.
	pooled := e.fs.PooledDirStreams()
	release, ok := e.fs.HoldHandle(fh)
	if !ok {
		t.Fatal("the open handle is unknown")
	}
	if errno := e.fs.Releasedir(e.ctx(big), &fuse.ReleaseIn{Fh: fh}); errno != 0 {
		t.Fatal(errno)
	}
	if got := e.fs.PooledDirStreams(); got != pooled {
		t.Fatalf("%d streams pooled while a READDIR holds the released handle, want %d", got, pooled)
	}
	release()
	if got := e.fs.PooledDirStreams(); got != pooled+1 {
		t.Fatalf("%d streams pooled after the last READDIR, want %d", got, pooled+1)
	}

	// The next OPENDIR gets that stream, and nothing of the other directory's listing: not even
	// from the offset where that one stopped, which a stream that kept its position would take
	// for "continue from the buffer".
	fh = openDir(t, e, small)
	for _, from := range []uint64{stopped, 0} {
		got := map[string]bool{}
		for _, d := range readAll(t, e, fh, 4096, false, from) {
			if strings.HasPrefix(d.name, "file-") {
				t.Fatalf("small listed %q from offset %d with a recycled stream", d.name, from)
			}
			got[d.name] = true
		}
		if from == 0 && (len(got) != 3 || !got["only"]) {
			t.Fatalf("listing of small with a recycled stream: %v, want ., .. and only", got)
		}
	}
	e.fs.Releasedir(e.ctx(small), &fuse.ReleaseIn{Fh: fh})

	// In steady state a whole listing allocates only its handle.
	in := &fuse.ReadIn{Size: 4096}
	ctx := e.ctx(big)
	openIn := &fuse.OpenIn{Flags: syscall.O_RDONLY | syscall.O_DIRECTORY}
	var o fuse.OpenOut
	releaseIn := &fuse.ReleaseIn{}
	allocs := testing.AllocsPerRun(50, func() {
		if errno := e.fs.Opendir(ctx, openIn, &o); errno != 0 {
			t.Fatal(errno)
		}
		in.Fh, in.Offset = o.Fh, 0
		for {
			buf.Reset(4096, false)
			if errno := e.fs.Readdir(ctx, in, false, &buf); errno != 0 {
				t.Fatal(errno)
			}
			if buf.Empty() {
				break
			}
			in.Offset = lastDirOffset(buf.Bytes())
		}
		releaseIn.Fh = o.Fh
		if errno := e.fs.Releasedir(ctx, releaseIn); errno != 0 {
			t.Fatal(errno)
		}
	})
	if allocs > 1 {
		t.Errorf("OPENDIR, a whole listing and RELEASEDIR allocate %.1f times, want at most 1 (the handle)", allocs)
	}
}

// lastDirOffset returns the d_off of a READDIR reply's last entry.
func lastDirOffset(p []byte) uint64 {
	var last uint64
	for len(p) >= 24 {
		last = leU64(p[8:])
		p = p[min(len(p), (24+int(leU32(p[16:]))+7)&^7):]
	}
	return last
}
