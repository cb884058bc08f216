package passfs_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/passfs"
)

// env is a passfs over a fresh temporary directory.
type env struct {
	t   testing.TB
	dir string
	fs  *passfs.FS
}

func newEnv(t *testing.T, configure func(*passfs.Options)) *env {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, dir: dir, fs: serveDir(t, dir, configure)}
}

// newEnvOn is newEnv on an existing directory (a second daemon on the same share).
func newEnvOn(t *testing.T, dir string, configure func(*passfs.Options)) *env {
	t.Helper()
	return &env{t: t, dir: dir, fs: serveDir(t, dir, configure)}
}

// serveDir is a passfs over dir, whatever it is (newEnv makes a fresh temporary one).
func serveDir(t *testing.T, dir string, configure func(*passfs.Options)) *passfs.FS {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	o := passfs.Options{RootFD: fd, ProcSelfFD: -1, Xattr: true, SetCreds: os.Geteuid() == 0, Logf: t.Logf}
	if configure != nil {
		configure(&o)
	}
	fs, err := passfs.New(o)
	if err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	return fs
}

func cs(s string) fuse.CString { return fuse.CString(append([]byte(s), 0)) }

func (e *env) ctx(node uint64) *fuse.Context {
	return &fuse.Context{NodeID: node, UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
}

func (e *env) host(rel string) string { return filepath.Join(e.dir, rel) }

func (e *env) writeHost(rel, data string) {
	e.t.Helper()
	if err := os.WriteFile(e.host(rel), []byte(data), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) lstat(rel string) *syscall.Stat_t {
	e.t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(e.host(rel), &st); err != nil {
		e.t.Fatal(err)
	}
	return &st
}

func (e *env) lookup(parent uint64, name string) fuse.EntryOut {
	e.t.Helper()
	var out fuse.EntryOut
	if errno := e.fs.Lookup(e.ctx(parent), cs(name), &out); errno != 0 {
		e.t.Fatalf("Lookup(%d, %q): %v", parent, name, errno)
	}
	return out
}

func (e *env) open(node uint64, flags uint32) uint64 {
	e.t.Helper()
	var out fuse.OpenOut
	if errno := e.fs.Open(e.ctx(node), &fuse.OpenIn{Flags: flags}, &out); errno != 0 {
		e.t.Fatalf("Open(%d, %#x): %v", node, flags, errno)
	}
	return out.Fh
}

func (e *env) release(fh uint64) {
	e.t.Helper()
	if errno := e.fs.Release(e.ctx(0), &fuse.ReleaseIn{Fh: fh}); errno != 0 {
		e.t.Fatalf("Release(%d): %v", fh, errno)
	}
}

func (e *env) read(fh uint64, off uint64, size int) string {
	e.t.Helper()
	buf := make([]byte, size)
	n, errno := e.fs.Read(e.ctx(0), &fuse.ReadIn{Fh: fh, Offset: off, Size: uint32(size)}, [][]byte{buf})
	if errno != 0 {
		e.t.Fatalf("Read: %v", errno)
	}
	return string(buf[:n])
}

func (e *env) write(fh uint64, off uint64, data string) {
	e.t.Helper()
	n, errno := e.fs.Write(e.ctx(0), &fuse.WriteIn{Fh: fh, Offset: off, Size: uint32(len(data))}, [][]byte{[]byte(data)})
	if errno != 0 || n != len(data) {
		e.t.Fatalf("Write: %d, %v", n, errno)
	}
}

func readHost(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_CHOWN/CAP_SETUID/CAP_MKNOD); run the tests as root to cover this")
	}
}

func wantErrno(t *testing.T, what string, got, want fuse.Errno) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: got errno %v (%d), want %v (%d)", what, got, int(got), want, int(want))
	}
}
