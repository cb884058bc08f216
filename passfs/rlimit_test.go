package passfs_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/passfs"
)

const rlimitChildDir = "UVFSD_PASSFS_RLIMIT_DIR"

// TestWalkUnderLowRlimit walks and stats a tree of 5,000 files twice in a process whose
// RLIMIT_NOFILE is 256, with the default budget: the acceptance test without a guest.
func TestWalkUnderLowRlimit(t *testing.T) {
	if dir := os.Getenv(rlimitChildDir); dir != "" {
		walkUnderLowRlimit(t, dir)
		return
	}
	if testing.Short() {
		t.Skip("creates 5,000 files; skipped with -short")
	}
	dir := t.TempDir()
	// 1,000 files in one directory (more than the limit) and 4,000 in 20 directories two deep.
	mk := func(sub string, n int) {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if err := os.WriteFile(filepath.Join(dir, sub, fmt.Sprintf("f%d", i)), []byte(sub), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk("big", 1000)
	for d := range 20 {
		mk(fmt.Sprintf("d%02d/sub", d), 200)
	}
	for _, mode := range []string{"never", "prefer"} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestWalkUnderLowRlimit$", "-test.v")
			cmd.Env = append(os.Environ(), rlimitChildDir+"="+dir, "UVFSD_PASSFS_RLIMIT_MODE="+mode)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "walked 5000 files twice") {
				t.Fatalf("child: %v\n%s", err, out)
			}
			t.Logf("%s", out)
		})
	}
}

func walkUnderLowRlimit(t *testing.T, dir string) {
	mode, err := passfs.ParseInodeFileHandles(os.Getenv("UVFSD_PASSFS_RLIMIT_MODE"))
	if err != nil {
		t.Fatal(err)
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	lim.Cur = 256
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	fs, err := newFSOn(dir, mode)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	if b := fs.FDBudget(); b >= 256 || b < 32 {
		t.Fatalf("default budget %d with RLIMIT_NOFILE 256", b)
	}
	e := &env{t: t, dir: dir, fs: fs}
	for pass := range 2 {
		if n := walkTree(e, fuse.RootID, ""); n != 5000 {
			t.Fatalf("pass %d: %d files, want 5000", pass, n)
		}
	}
	fmt.Printf("walked 5000 files twice: budget %d, %d inode fds open, %d nodes, file handles %v\n",
		fs.FDBudget(), fs.OpenNodeFDs(), fs.NodeCount(), fs.UsesFileHandles())
}

// walkTree does what "find -exec stat" does in the guest: READDIRPLUS of each directory, then a
// LOOKUP and GETATTR of every entry, into subdirectories. It returns how many files it saw.
func walkTree(e *env, node uint64, path string) int {
	e.t.Helper()
	var out fuse.OpenOut
	if errno := e.fs.Opendir(e.ctx(node), &fuse.OpenIn{}, &out); errno != 0 {
		e.t.Fatalf("opendir %q: %v", path, errno)
	}
	ents := readAll(e.t, e, out.Fh, 4096, true, 0)
	if errno := e.fs.Releasedir(e.ctx(node), &fuse.ReleaseIn{Fh: out.Fh}); errno != 0 {
		e.t.Fatal(errno)
	}
	files := 0
	for _, d := range ents {
		if d.name == "." || d.name == ".." {
			continue
		}
		p := path + "/" + d.name
		ent := e.lookup(node, d.name)
		if ent.NodeID != d.node {
			e.t.Fatalf("%s: readdirplus gave node %d, lookup %d", p, d.node, ent.NodeID)
		}
		a := e.mustGetattr(ent.NodeID)
		if a.Ino != d.ino {
			e.t.Fatalf("%s: getattr ino %d, readdir ino %d", p, a.Ino, d.ino)
		}
		if a.Mode&syscall.S_IFMT == syscall.S_IFDIR {
			files += walkTree(e, ent.NodeID, p)
		} else {
			files++
		}
	}
	return files
}
