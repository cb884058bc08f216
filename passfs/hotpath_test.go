package passfs_test

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/passfs"
)

func TestHotPathsDoNotAllocate(t *testing.T) {
	e := newEnv(t, nil)
	e.writeHost("f", "0123456789")
	f := e.lookup(fuse.RootID, "f")
	fh := e.open(f.NodeID, syscall.O_RDWR)
	defer e.release(fh)
	ctx := e.ctx(f.NodeID)
	rootCtx := e.ctx(fuse.RootID)
	name := cs("f")
	var attr fuse.AttrOut
	var ent fuse.EntryOut
	buf := make([]byte, 4096)
	dst := [][]byte{buf[:3], buf[3:7], buf[7:]}
	src := [][]byte{[]byte("ab"), []byte("cd")}
	readIn := &fuse.ReadIn{Fh: fh, Size: 4096}
	writeIn := &fuse.WriteIn{Fh: fh, Offset: 2, Size: 4}
	getattrIn := &fuse.GetattrIn{}
	cases := map[string]func(){
		"GETATTR": func() {
			if errno := e.fs.Getattr(ctx, getattrIn, &attr); errno != 0 {
				t.Fatal(errno)
			}
		},
		"LOOKUP (known node)": func() {
			if errno := e.fs.Lookup(rootCtx, name, &ent); errno != 0 {
				t.Fatal(errno)
			}
		},
		"READ": func() {
			if n, errno := e.fs.Read(ctx, readIn, dst); errno != 0 || n != 10 {
				t.Fatal(n, errno)
			}
		},
		"WRITE": func() {
			if n, errno := e.fs.Write(ctx, writeIn, src); errno != 0 || n != 4 {
				t.Fatal(n, errno)
			}
		},
	}
	for op, fn := range cases {
		if allocs := testing.AllocsPerRun(100, fn); allocs != 0 {
			t.Errorf("%s allocates %.1f times per request", op, allocs)
		}
	}
	if got := e.read(fh, 0, 10); got != "01abcd6789" {
		t.Fatalf("data %q after the writes", got)
	}
}

// A node the guest has not seen costs one allocation (the node with its name) when its name is
// short, one more with a file handle (as root); nothing else grows per node (tables, the fd
// clock) once they have room.
func TestNewNodeAllocations(t *testing.T) {
	fileModes(t, func(t *testing.T, mode passfs.FileHandleMode) {
		e := newEnv(t, func(o *passfs.Options) { o.InodeFileHandles = mode })
		want := 1.0
		if mode == passfs.FileHandlesPrefer && os.Geteuid() == 0 {
			want = 2 // the handle; rootless uvfsd has none
		}
		for _, nameLen := range []int{1, 7, 20, 50, 80} {
			names := make([]fuse.CString, 200)
			for i := range names {
				name := strconv.Itoa(i)
				name += strings.Repeat("x", max(0, nameLen-len(name)))
				e.writeHost(name, "")
				names[i] = cs(name)
			}
			ctx := e.ctx(fuse.RootID)
			var ent fuse.EntryOut
			lookupForget := func(name fuse.CString) {
				if errno := e.fs.Lookup(ctx, name, &ent); errno != 0 {
					t.Fatal(errno)
				}
				e.fs.Forget(ent.NodeID, 1)
			}
			for _, name := range names {
				lookupForget(name) // tables and the clock grow to what the loop needs
			}
			i := 0
			allocs := testing.AllocsPerRun(len(names)-1, func() {
				lookupForget(names[i])
				i++
			})
			if allocs > want {
				t.Errorf("a new node with a %d-byte name: %.0f allocations, want %.0f", nameLen, allocs, want)
			}
			if got := e.fs.NodeCount(); got != 1 {
				t.Fatalf("%d nodes left after forgetting, want only the root", got)
			}
		}
	})
}

func TestConcurrentLookupForgetGetattr(t *testing.T) {
	e := newEnv(t, nil)
	for i := range 20 {
		e.writeHost("f"+strconv.Itoa(i), "x")
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				name := "f" + strconv.Itoa((i+w)%20)
				var ent fuse.EntryOut
				if errno := e.fs.Lookup(e.ctx(fuse.RootID), cs(name), &ent); errno != 0 {
					t.Error(errno)
					return
				}
				var attr fuse.AttrOut
				if errno := e.fs.Getattr(e.ctx(ent.NodeID), &fuse.GetattrIn{}, &attr); errno != 0 && errno != syscall.EBADF {
					t.Error(errno)
					return
				}
				// A hostile guest forgets too much, racing the others' GETATTRs.
				e.fs.Forget(ent.NodeID, uint64(1+i%2))
			}
		}()
	}
	wg.Wait()
	for i := range 20 {
		ent := e.lookup(fuse.RootID, "f"+strconv.Itoa(i))
		e.fs.Forget(ent.NodeID, 1<<40)
	}
	if e.fs.NodeCount() != 1 {
		t.Fatalf("%d nodes left, want only the root", e.fs.NodeCount())
	}
}

func TestDestroyForgetsEverything(t *testing.T) {
	e := newEnv(t, nil)
	e.writeHost("f", "x")
	f := e.lookup(fuse.RootID, "f")
	fh := e.open(f.NodeID, syscall.O_RDONLY)
	e.fs.Destroy()
	if e.fs.NodeCount() != 1 || e.fs.HandleCount() != 0 {
		t.Fatalf("after DESTROY: %d nodes, %d handles", e.fs.NodeCount(), e.fs.HandleCount())
	}
	var attr fuse.AttrOut
	wantErrno(t, "old node", e.fs.Getattr(e.ctx(f.NodeID), &fuse.GetattrIn{}, &attr), syscall.EBADF)
	_, errno := e.fs.Read(e.ctx(0), &fuse.ReadIn{Fh: fh, Size: 1}, [][]byte{make([]byte, 1)})
	wantErrno(t, "old handle", errno, syscall.EBADF)
	// A new mount works.
	if ent := e.lookup(fuse.RootID, "f"); ent.NodeID == f.NodeID {
		t.Fatal("node id reused after DESTROY")
	}
}

func TestSubmountsAnnounced(t *testing.T) {
	needRoot(t)
	for _, announce := range []bool{true, false} {
		e := newEnv(t, func(o *passfs.Options) { o.AnnounceSubmounts = announce })
		if err := os.Mkdir(e.host("mnt"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(e.host("plain"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("tmpfs", e.host("mnt"), "tmpfs", 0, "size=1m"); err != nil {
			t.Skipf("cannot mount a tmpfs for the submount test: %v", err)
		}
		t.Cleanup(func() { unix.Unmount(e.host("mnt"), unix.MNT_DETACH) })
		e.writeHost("mnt/inner", "x")
		mnt := e.lookup(fuse.RootID, "mnt")
		plain := e.lookup(fuse.RootID, "plain")
		want := uint32(0)
		if announce {
			want = fuse.AttrSubmount
		}
		if mnt.Attr.Flags != want || plain.Attr.Flags != 0 {
			t.Fatalf("announce=%v: mount point flags %#x (want %#x), plain dir flags %#x", announce, mnt.Attr.Flags, want, plain.Attr.Flags)
		}
		// The mounted file system is what the node shows, and its files are reachable.
		inner := e.lookup(mnt.NodeID, "inner")
		if inner.Attr.Flags != 0 || inner.Attr.Size != 1 {
			t.Fatalf("file in the submount: %+v", inner.Attr)
		}
		var st fuse.StatfsOut
		if errno := e.fs.Statfs(e.ctx(mnt.NodeID), &st); errno != 0 || st.Blocks != 256 {
			t.Fatalf("statfs of the submount: %d blocks, %v (want the 1 MiB tmpfs)", st.Blocks, errno)
		}
		if errno := e.fs.Syncfs(e.ctx(mnt.NodeID), &fuse.SyncfsIn{}); errno != 0 {
			t.Fatal(errno)
		}
	}
}
