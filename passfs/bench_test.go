package passfs_test

import (
	"encoding/binary"
	"os"
	"strconv"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/passfs"
)

// The per-new-inode paths without the transport, as the microbenchmark's READDIRPLUS cold and
// CREATE+RELEASE+FORGET drive them (e2e/microbench), file handles off as in rootless uvfsd:
//
//	go test -run '^$' -bench 'Cold|Create' -benchmem ./passfs

// BenchmarkReaddirplusCold lists one of 64 directories of 20 files the daemon does not know (no
// OPENDIR, as a Linux guest lists) and forgets the entries again.
func BenchmarkReaddirplusCold(b *testing.B) {
	e := newBenchEnv(b)
	e.fs.Init(&fuse.InitInfo{Flags: fuse.CapNoOpendirSupport})
	var dirs []uint64
	for d := range 64 {
		name := "d" + strconv.Itoa(d)
		if err := os.Mkdir(e.host(name), 0o755); err != nil {
			b.Fatal(err)
		}
		for f := range 20 {
			e.writeHost(name+"/file-"+strconv.Itoa(f), "")
		}
		var out fuse.EntryOut
		if errno := e.fs.Lookup(e.ctx(fuse.RootID), cs(name), &out); errno != 0 {
			b.Fatal(errno)
		}
		dirs = append(dirs, out.NodeID)
	}
	const size = 64 << 10
	var buf fuse.DirBuffer
	in := &fuse.ReadIn{Size: size}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		buf.Reset(size, true)
		if errno := e.fs.Readdir(e.ctx(dirs[i%len(dirs)]), in, true, &buf); errno != 0 {
			b.Fatal(errno)
		}
		nodes := 0
		for p := buf.Bytes(); len(p) >= entryOutSize+24; {
			if id := binary.LittleEndian.Uint64(p); id != 0 {
				e.fs.Forget(id, 1)
				nodes++
			}
			namelen := int(binary.LittleEndian.Uint32(p[entryOutSize+16:]))
			p = p[min(len(p), entryOutSize+(24+namelen+7)&^7):]
		}
		if nodes != 20 {
			b.Fatalf("%d nodes in a listing of 20 files", nodes)
		}
	}
}

// BenchmarkCreateReleaseForget creates a file, closes it and forgets its node.
func BenchmarkCreateReleaseForget(b *testing.B) {
	e := newBenchEnv(b)
	if err := os.Mkdir(e.host("new"), 0o777); err != nil {
		b.Fatal(err)
	}
	dir := e.lookup(fuse.RootID, "new")
	ctx := e.ctx(dir.NodeID)
	in := &fuse.CreateIn{Flags: syscall.O_RDWR | syscall.O_CREAT | syscall.O_EXCL, Mode: syscall.S_IFREG | 0o644, Umask: 0o022}
	names := make([]fuse.CString, b.N)
	for i := range names {
		names[i] = cs("f" + strconv.Itoa(i))
	}
	var entry fuse.EntryOut
	var open fuse.OpenOut
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if errno := e.fs.Create(ctx, in, names[i], &entry, &open); errno != 0 {
			b.Fatal(errno)
		}
		if open.Fh != 0 {
			if errno := e.fs.Release(e.ctx(entry.NodeID), &fuse.ReleaseIn{Fh: open.Fh}); errno != 0 {
				b.Fatal(errno)
			}
		}
		e.fs.Forget(entry.NodeID, 1)
	}
}

func newBenchEnv(b *testing.B) *env {
	b.Helper()
	dir := b.TempDir()
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	fs, err := passfs.New(passfs.Options{RootFD: fd, ProcSelfFD: -1, SetCreds: os.Geteuid() == 0, InodeFileHandles: passfs.FileHandlesNever})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { fs.Close() })
	return &env{t: b, dir: dir, fs: fs}
}
