package passfs_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/passfs"
)

func TestParseInodeFileHandles(t *testing.T) {
	for s, want := range map[string]passfs.FileHandleMode{
		"never": passfs.FileHandlesNever, "prefer": passfs.FileHandlesPrefer, "mandatory": passfs.FileHandlesMandatory,
	} {
		got, err := passfs.ParseInodeFileHandles(s)
		if err != nil || got != want || got.String() != s {
			t.Errorf("%q: %v (%s), %v", s, got, got, err)
		}
	}
	if _, err := passfs.ParseInodeFileHandles("always"); err == nil {
		t.Error("\"always\" accepted")
	}
}

func TestFileHandlesReopenAfterHostRename(t *testing.T) {
	needRoot(t)
	e := newEnv(t, func(o *passfs.Options) { o.InodeFileHandles = passfs.FileHandlesMandatory })
	if !e.fs.UsesFileHandles() {
		t.Fatal("mandatory file handles as root, but New did not enable them")
	}
	for _, d := range []string{"dir", "other"} {
		if err := os.Mkdir(e.host(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.writeHost("dir/f", "handle")
	e.writeHost("dir/g", "gone")
	dir := e.lookup(fuse.RootID, "dir")
	f := e.lookup(dir.NodeID, "f")
	g := e.lookup(dir.NodeID, "g")
	// The handle a node keeps (from a raw name_to_handle_at into a fixed buffer) is the kernel's.
	want, _, err := unix.NameToHandleAt(unix.AT_FDCWD, e.host("dir/f"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if typ, h, ok := e.fs.NodeFileHandle(f.NodeID); !ok || typ != want.Type() || string(h) != string(want.Bytes()) {
		t.Fatalf("node's file handle: type %d %x (ok %v), want type %d %x", typ, h, ok, want.Type(), want.Bytes())
	}
	e.fs.EvictNodeFDs()
	// Behind our back: f moves to another directory and its old directory is renamed too, so
	// neither (parent, name) leads to it any more; g is removed.
	if err := os.Rename(e.host("dir/f"), e.host("other/f3")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(e.host("dir"), e.host("dir2")); err != nil {
		t.Fatal(err)
	}
	e.writeHost("dir2/f", "an impostor")
	if err := os.Remove(e.host("dir2/g")); err != nil {
		t.Fatal(err)
	}
	if a := e.mustGetattr(f.NodeID); a.Ino != e.lstat("other/f3").Ino || a.Size != 6 {
		t.Fatalf("reopened by handle: %+v, want other/f3", a)
	}
	fh := e.open(f.NodeID, syscall.O_RDONLY)
	if got := e.read(fh, 0, 20); got != "handle" {
		t.Fatalf("read %q", got)
	}
	e.release(fh)
	if a := e.mustGetattr(dir.NodeID); a.Ino != e.lstat("dir2").Ino {
		t.Fatalf("directory reopened by handle: %+v", a)
	}
	e.fs.EvictNodeFDs()
	_, errno := e.getattr(g.NodeID)
	wantErrno(t, "getattr of a node removed on the host", errno, syscall.ESTALE)
}

func TestFileHandleProbeFailure(t *testing.T) {
	for _, c := range []struct {
		probe   error
		mode    passfs.FileHandleMode
		wantErr string // "" : New succeeds without file handles
	}{
		{syscall.EPERM, passfs.FileHandlesPrefer, ""},
		{syscall.EPERM, passfs.FileHandlesNever, ""},
		{syscall.EPERM, passfs.FileHandlesMandatory, "needs CAP_DAC_READ_SEARCH in the initial user namespace"},
		{fmt.Errorf("name_to_handle_at: %w", syscall.EOPNOTSUPP), passfs.FileHandlesMandatory, "does not support file handles"},
	} {
		t.Run(fmt.Sprintf("%v/%s", c.probe, c.mode), func(t *testing.T) {
			passfs.SimulateFileHandleProbe(t, c.probe)
			fs, err := newFSOn(t.TempDir(), c.mode)
			if c.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				defer fs.Close()
				if fs.UsesFileHandles() {
					t.Fatal("file handles in use although the probe failed")
				}
				return
			}
			if err == nil {
				fs.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), "--inode-file-handles=prefer or never") ||
				!errors.Is(err, c.probe) {
				t.Fatalf("error %q should say %q, name the fix and wrap %v", err, c.wantErr, c.probe)
			}
		})
	}
}

// newFSOn makes a passfs on dir with the given file handle mode.
func newFSOn(dir string, mode passfs.FileHandleMode) (*passfs.FS, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return passfs.New(passfs.Options{RootFD: fd, ProcSelfFD: -1, InodeFileHandles: mode})
}

// TestFileHandlesInUserNamespace runs the check the way rootless uvfsd meets it: "root" in a
// user namespace, without CAP_DAC_READ_SEARCH in the initial one.
func TestFileHandlesInUserNamespace(t *testing.T) {
	const marker = "UVFSD_PASSFS_USERNS_CHILD"
	if dir := os.Getenv(marker); dir != "" {
		if _, err := newFSOn(dir, passfs.FileHandlesMandatory); err == nil ||
			!strings.Contains(err.Error(), "needs CAP_DAC_READ_SEARCH in the initial user namespace") {
			t.Fatalf("mandatory in a user namespace: %v", err)
		}
		fs, err := newFSOn(dir, passfs.FileHandlesPrefer)
		if err != nil {
			t.Fatal(err)
		}
		defer fs.Close()
		if fs.UsesFileHandles() {
			t.Fatal("prefer uses file handles in a user namespace")
		}
		fmt.Println("userns child: checks passed")
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFileHandlesInUserNamespace$", "-test.v")
	cmd.Env = append(os.Environ(), marker+"="+t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	out, err := cmd.CombinedOutput()
	if err != nil && strings.Contains(err.Error(), "operation not permitted") {
		t.Skipf("cannot create a user namespace here (%v): the rootless case is not covered", err)
	}
	if err != nil || !strings.Contains(string(out), "userns child: checks passed") {
		t.Fatalf("child in a user namespace: %v\n%s", err, out)
	}
}
