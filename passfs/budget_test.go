package passfs_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/passfs"
)

// openFDs counts the process's open fds (without the one reading /proc/self/fd).
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents) - 1
}

// fileModes runs f once per file handle mode that can work here: never, and prefer (which uses
// handles when run as root).
func fileModes(t *testing.T, f func(t *testing.T, mode passfs.FileHandleMode)) {
	for _, mode := range []passfs.FileHandleMode{passfs.FileHandlesNever, passfs.FileHandlesPrefer} {
		t.Run(mode.String(), func(t *testing.T) { f(t, mode) })
	}
}

func (e *env) getattr(node uint64) (fuse.Attr, fuse.Errno) {
	var out fuse.AttrOut
	errno := e.fs.Getattr(e.ctx(node), &fuse.GetattrIn{}, &out)
	return out.Attr, errno
}

func (e *env) mustGetattr(node uint64) fuse.Attr {
	e.t.Helper()
	a, errno := e.getattr(node)
	if errno != 0 {
		e.t.Fatalf("Getattr(%d): %v", node, errno)
	}
	return a
}

func TestSmallBudgetManyFiles(t *testing.T) {
	fileModes(t, func(t *testing.T, mode passfs.FileHandleMode) {
		t.Run("open", func(t *testing.T) { smallBudgetManyFiles(t, mode, false) })
		// In no-open mode every file read keeps a data fd on its node, in the same budget.
		t.Run("no-open", func(t *testing.T) { smallBudgetManyFiles(t, mode, true) })
	})
}

func smallBudgetManyFiles(t *testing.T, mode passfs.FileHandleMode, noOpen bool) {
	const budget, slack = 16, 6 // slack: a reopen chain's parents, the open file, ReadDir's fd
	e := newEnv(t, func(o *passfs.Options) { o.FDBudget = budget; o.InodeFileHandles = mode; o.NoOpen = noOpen })
	if noOpen {
		e.fs.Init(&fuse.InitInfo{Flags: fuse.CapNoOpenSupport})
	}
	if got := e.fs.FDBudget(); got != budget {
		t.Fatalf("budget %d, want %d", got, budget)
	}
	// 500 files in d0..d9/s0..s4, 10 each, so that reopening walks up evicted parents.
	type file struct {
		path string
		node uint64
		ino  uint64
	}
	var files []file
	for d := range 10 {
		for s := range 5 {
			dir := fmt.Sprintf("d%d/s%d", d, s)
			if err := os.MkdirAll(e.host(dir), 0o755); err != nil {
				t.Fatal(err)
			}
			for f := range 10 {
				p := fmt.Sprintf("%s/f%d", dir, f)
				e.writeHost(p, p)
				files = append(files, file{path: p})
			}
		}
	}
	base := openFDs(t) // the FS's root and /proc/self/fd fds included
	check := func(when string) {
		t.Helper()
		if n := openFDs(t); n > base+budget+slack {
			t.Fatalf("%s: %d fds open, more than %d before + budget %d + %d", when, n, base, budget, slack)
		}
		if n := e.fs.OpenNodeFDs(); n > budget {
			t.Fatalf("%s: %d inode fds open, budget %d", when, n, budget)
		}
	}
	readCheck := func(f file) {
		t.Helper()
		a := e.mustGetattr(f.node)
		if a.Ino != f.ino || a.Size != uint64(len(f.path)) {
			t.Fatalf("%s: getattr ino %d size %d, want %d %d", f.path, a.Ino, a.Size, f.ino, len(f.path))
		}
		var got string
		if noOpen {
			buf := make([]byte, 100)
			n, errno := e.fs.Read(e.ctx(f.node), &fuse.ReadIn{Size: 100}, [][]byte{buf})
			if errno != 0 {
				t.Fatalf("%s: Read fh 0: %v", f.path, errno)
			}
			got = string(buf[:n])
		} else {
			fh := e.open(f.node, syscall.O_RDONLY)
			got = e.read(fh, 0, 100)
			e.release(fh)
		}
		if got != f.path {
			t.Fatalf("read %q from %s", got, f.path)
		}
	}
	for i := range files {
		f := &files[i]
		node := uint64(fuse.RootID)
		for _, part := range []string{f.path[:2], f.path[3:5], f.path[6:]} {
			node = e.lookup(node, part).NodeID
		}
		f.node, f.ino = node, e.lstat(f.path).Ino
		readCheck(*f)
		check("first walk")
	}
	for _, i := range rand.Perm(len(files)) {
		readCheck(files[i])
		check("second walk")
	}
	for i := len(files) - 1; i >= 0; i-- {
		readCheck(files[i])
	}
	check("third walk")
}

func TestEvictionVsConcurrentGetattr(t *testing.T) {
	fileModes(t, func(t *testing.T, mode passfs.FileHandleMode) {
		e := newEnv(t, func(o *passfs.Options) { o.FDBudget = 4; o.InodeFileHandles = mode })
		const files = 100
		nodes := make([]uint64, files)
		inos := make([]uint64, files)
		for i := range files {
			name := "f" + strconv.Itoa(i)
			e.writeHost(name, name)
			nodes[i] = e.lookup(fuse.RootID, name).NodeID
			inos[i] = e.lstat(name).Ino
		}
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(w), 1))
				for range 1000 {
					i := r.IntN(files)
					a, errno := e.getattr(nodes[i])
					if errno != 0 || a.Ino != inos[i] {
						t.Errorf("getattr f%d: ino %d (want %d), %v", i, a.Ino, inos[i], errno)
						return
					}
					if r.IntN(10) == 0 {
						var ent fuse.EntryOut
						if errno := e.fs.Lookup(e.ctx(fuse.RootID), cs("f"+strconv.Itoa(i)), &ent); errno != 0 || ent.NodeID != nodes[i] {
							t.Errorf("lookup f%d: node %d (want %d), %v", i, ent.NodeID, nodes[i], errno)
							return
						}
					}
					if r.IntN(50) == 0 {
						e.fs.EvictNodeFDs()
					}
				}
			}()
		}
		wg.Wait()
		if n := e.fs.OpenNodeFDs(); n > 4 {
			t.Fatalf("%d inode fds open after the run, budget 4", n)
		}
	})
}

func TestHostRenameAfterEvictionIsESTALE(t *testing.T) {
	e := newEnv(t, func(o *passfs.Options) { o.InodeFileHandles = passfs.FileHandlesNever })
	e.writeHost("f", "old")
	e.writeHost("g", "gone")
	f := e.lookup(fuse.RootID, "f")
	g := e.lookup(fuse.RootID, "g")
	if e.fs.EvictNodeFDs() < 2 {
		t.Fatal("eviction closed fewer than the two file nodes' fds")
	}
	// Behind our back: f is renamed and another file takes its name; g is removed.
	if err := os.Rename(e.host("f"), e.host("f2")); err != nil {
		t.Fatal(err)
	}
	e.writeHost("f", "new file")
	if err := os.Remove(e.host("g")); err != nil {
		t.Fatal(err)
	}
	_, errno := e.getattr(f.NodeID)
	wantErrno(t, "getattr of a node whose name now holds another file", errno, syscall.ESTALE)
	var out fuse.OpenOut
	wantErrno(t, "open of it", e.fs.Open(e.ctx(f.NodeID), &fuse.OpenIn{Flags: syscall.O_RDONLY}, &out), syscall.ESTALE)
	_, errno = e.getattr(g.NodeID)
	wantErrno(t, "getattr of a node removed on the host", errno, syscall.ESTALE)
	// Looking the renamed file up again finds the same node and makes it reachable again.
	if again := e.lookup(fuse.RootID, "f2"); again.NodeID != f.NodeID {
		t.Fatalf("f2 is node %d, want the old node %d", again.NodeID, f.NodeID)
	}
	e.fs.EvictNodeFDs()
	if a := e.mustGetattr(f.NodeID); a.Size != 3 || a.Ino != e.lstat("f2").Ino {
		t.Fatalf("after the new lookup: %+v", a)
	}
}

func TestOwnRenameUnlinkKeepNodesReachable(t *testing.T) {
	fileModes(t, func(t *testing.T, mode passfs.FileHandleMode) {
		e := newEnv(t, func(o *passfs.Options) { o.InodeFileHandles = mode })
		for _, d := range []string{"a", "b", "a/sub"} {
			if err := os.Mkdir(e.host(d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		e.writeHost("a/sub/deep", "deep")
		e.writeHost("a/f", "ffff")
		e.writeHost("a/x", "x")
		e.writeHost("b/y", "yy")
		e.writeHost("a/doomed", "d")
		a := e.lookup(fuse.RootID, "a")
		b := e.lookup(fuse.RootID, "b")
		sub := e.lookup(a.NodeID, "sub")
		deep := e.lookup(sub.NodeID, "deep")
		f := e.lookup(a.NodeID, "f")
		x := e.lookup(a.NodeID, "x")
		y := e.lookup(b.NodeID, "y")
		doomed := e.lookup(a.NodeID, "doomed")
		fh := e.open(doomed.NodeID, syscall.O_RDONLY)
		defer e.release(fh)
		e.fs.EvictNodeFDs()

		if errno := e.fs.Rename(e.ctx(a.NodeID), b.NodeID, 0, cs("f"), cs("moved")); errno != 0 {
			t.Fatal(errno)
		}
		if errno := e.fs.Rename(e.ctx(a.NodeID), fuse.RootID, 0, cs("sub"), cs("sub2")); errno != 0 {
			t.Fatal(errno)
		}
		if errno := e.fs.Rename(e.ctx(a.NodeID), b.NodeID, unix.RENAME_EXCHANGE, cs("x"), cs("y")); errno != 0 {
			t.Fatal(errno)
		}
		if errno := e.fs.Unlink(e.ctx(a.NodeID), cs("doomed")); errno != 0 {
			t.Fatal(errno)
		}
		e.fs.EvictNodeFDs()
		for _, c := range []struct {
			node uint64
			host string
		}{{f.NodeID, "b/moved"}, {deep.NodeID, "sub2/deep"}, {sub.NodeID, "sub2"}, {x.NodeID, "b/y"}, {y.NodeID, "a/x"}} {
			if a := e.mustGetattr(c.node); a.Ino != e.lstat(c.host).Ino {
				t.Fatalf("node %d: ino %d, want %s's %d", c.node, a.Ino, c.host, e.lstat(c.host).Ino)
			}
		}
		// The unlinked file the guest still has open keeps its fd: no name leads to it any more.
		if a := e.mustGetattr(doomed.NodeID); a.Nlink != 0 || a.Size != 1 {
			t.Fatalf("unlinked node: %+v", a)
		}
		if got := e.read(fh, 0, 10); got != "d" {
			t.Fatalf("read %q from the unlinked file", got)
		}
	})
}

func TestEMFILERetriesAfterEviction(t *testing.T) {
	e := newEnv(t, func(o *passfs.Options) { o.FDBudget = 1000; o.InodeFileHandles = passfs.FileHandlesNever })
	for i := range 60 {
		e.writeHost("f"+strconv.Itoa(i), "x")
	}
	for i := range 50 {
		e.lookup(fuse.RootID, "f"+strconv.Itoa(i))
	}
	// Leave exactly as many free fd slots as the daemon has inode fds beyond the root: the next
	// opens hit EMFILE unless the daemon gives some of its own back.
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Setrlimit(unix.RLIMIT_NOFILE, &lim) })
	fill := []int{}
	t.Cleanup(func() {
		for _, fd := range fill {
			unix.Close(fd)
		}
	})
	// Occupy every fd number below a low limit, so that no new fd fits.
	tight := unix.Rlimit{Cur: uint64(openFDs(t) + 4), Max: lim.Max}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &tight); err != nil {
		t.Fatal(err)
	}
	for {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			break
		}
		fill = append(fill, fd)
	}
	before := e.fs.OpenNodeFDs()
	for i := 50; i < 60; i++ {
		e.lookup(fuse.RootID, "f"+strconv.Itoa(i)) // fails with EMFILE without the retry
	}
	fh := e.open(e.lookup(fuse.RootID, "f0").NodeID, syscall.O_RDONLY)
	e.release(fh)
	if after := e.fs.OpenNodeFDs(); after >= before {
		t.Fatalf("%d inode fds before, %d after: nothing was evicted", before, after)
	}
}

// No-open mode under a small budget: concurrent fh 0 reads and writes of many files while the
// budget closes their data fds (and the idle sweep their write fds) must see only their own data.
func TestNoOpenDataFDsUnderEviction(t *testing.T) {
	const budget, files, workers = 16, 60, 4
	e := newEnv(t, func(o *passfs.Options) { o.FDBudget = budget; o.NoOpen = true })
	e.fs.Init(&fuse.InitInfo{Flags: fuse.CapNoOpenSupport})
	nodes := e.numberedFiles(files)
	var wg sync.WaitGroup
	errs := make(chan string, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			buf := make([]byte, 8)
			for range 2000 {
				i := r.IntN(files)
				ctx := e.ctx(nodes[i])
				want := numbered(i)
				if r.IntN(4) == 0 {
					if n, errno := e.fs.Write(ctx, &fuse.WriteIn{Size: 8}, [][]byte{[]byte(want)}); errno != 0 || n != 8 {
						errs <- fmt.Sprintf("write %d: %d, %v", i, n, errno)
						return
					}
					continue
				}
				n, errno := e.fs.Read(ctx, &fuse.ReadIn{Size: 8}, [][]byte{buf})
				if errno != 0 || string(buf[:n]) != want {
					errs <- fmt.Sprintf("read %d: %q, %v", i, buf[:n], errno)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
	if n := e.fs.OpenNodeFDs(); n > budget {
		t.Errorf("%d node and data fds open, budget %d", n, budget)
	}
}

// TestForgetVsConcurrentUse forgets and looks up nodes again while other goroutines read and stat
// them by their (possibly just forgotten) ids, with the budget evicting meanwhile. Requests on a
// forgotten id may fail with EBADF, never with another file's data; once everything is forgotten
// only the root's fd may remain.
func TestForgetVsConcurrentUse(t *testing.T) {
	const files, workers = 20, 4
	e := newEnv(t, func(o *passfs.Options) { o.FDBudget = 8; o.NoOpen = true })
	e.fs.Init(&fuse.InitInfo{Flags: fuse.CapNoOpenSupport})
	var ids [files]atomic.Uint64
	for i, node := range e.numberedFiles(files) {
		ids[i].Store(node)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan string, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 2))
			buf := make([]byte, 8)
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := r.IntN(files)
				ctx := e.ctx(ids[i].Load())
				if r.IntN(2) == 0 {
					if _, errno := e.getattr(ctx.NodeID); errno != 0 && errno != syscall.EBADF {
						errs <- fmt.Sprintf("getattr f%d: %v", i, errno)
						return
					}
					continue
				}
				n, errno := e.fs.Read(ctx, &fuse.ReadIn{Size: 8}, [][]byte{buf})
				if errno != 0 && errno != syscall.EBADF || errno == 0 && string(buf[:n]) != numbered(i) {
					errs <- fmt.Sprintf("read f%d: %q, %v", i, buf[:n], errno)
					return
				}
			}
		}()
	}
	r := rand.New(rand.NewPCG(9, 9))
	for range 3000 {
		i := r.IntN(files)
		e.fs.Forget(ids[i].Load(), 1)
		ids[i].Store(e.lookup(fuse.RootID, "f"+strconv.Itoa(i)).NodeID)
		if r.IntN(20) == 0 {
			e.fs.EvictNodeFDs()
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
	for i := range files {
		e.fs.Forget(ids[i].Load(), 1)
	}
	if n := e.fs.OpenNodeFDs(); n != 1 {
		t.Errorf("%d node and data fds open after every node was forgotten, want 1 (the root)", n)
	}
}

// numbered is the 8-byte content of file i of numberedFiles.
func numbered(i int) string { return fmt.Sprintf("%08d", i) }

// numberedFiles makes files f0..f(n-1) in the share, each holding numbered(i), and returns their
// node ids.
func (e *env) numberedFiles(n int) []uint64 {
	e.t.Helper()
	nodes := make([]uint64, n)
	for i := range nodes {
		name := "f" + strconv.Itoa(i)
		e.writeHost(name, numbered(i))
		nodes[i] = e.lookup(fuse.RootID, name).NodeID
	}
	return nodes
}
