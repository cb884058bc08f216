package passfs_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/passfs"
)

func TestDevtmpfsDeviceFromMountinfo(t *testing.T) {
	cases := []struct {
		name, info string
		dev        uint64
		found      bool
	}{
		{"with optional fields", "26 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n" +
			"23 26 0:6 / /dev rw,nosuid shared:2 master:7 - devtmpfs udev rw,size=12334808k\n", unix.Mkdev(0, 6), true},
		{"without", "21 26 0:20 / /proc rw - proc proc rw\n23 26 0:5 / /dev rw - devtmpfs devtmpfs rw\n", unix.Mkdev(0, 5), true},
		{"a tmpfs /dev (a container's)", "1 0 0:40 / /dev rw - tmpfs tmpfs rw\n", 0, false},
		{"a mount point named devtmpfs", "1 0 8:1 / /devtmpfs rw - ext4 /dev/sda1 rw\n", 0, false},
		{"a bind of a devtmpfs directory, escaped spaces", "30 26 0:6 /a\\040b /x rw - devtmpfs udev rw\n", unix.Mkdev(0, 6), true},
		{"large numbers", "30 26 259:1048575 / /x rw - devtmpfs udev rw\n", unix.Mkdev(259, 1048575), true},
		{"empty", "", 0, false},
	}
	for _, c := range cases {
		dev, found, err := passfs.DevtmpfsDevice(strings.NewReader(c.info))
		if err != nil || found != c.found || dev != c.dev {
			t.Errorf("%s: got %#x, %v, %v; want %#x, %v", c.name, dev, found, err, c.dev, c.found)
		}
	}
	if _, _, err := passfs.DevtmpfsDevice(strings.NewReader("1 0 x / /dev rw - devtmpfs udev rw\n")); err == nil {
		t.Error("a device that is not MAJOR:MINOR was accepted")
	}
}

func guestCtx(node uint64) *fuse.Context {
	return &fuse.Context{NodeID: node, UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
}

// listDir reads a directory whole through READDIR or READDIRPLUS (fh 0: without OPENDIR) and
// returns its names; READDIRPLUS entries other than "." and ".." are forgotten again.
func listDir(t *testing.T, fs *passfs.FS, node, fh uint64, plus bool) []string {
	t.Helper()
	var names []string
	var buf fuse.DirBuffer
	off := uint64(0)
	for range 100000 {
		buf.Reset(4096, plus)
		if errno := fs.Readdir(guestCtx(node), &fuse.ReadIn{Fh: fh, Offset: off, Size: 4096}, plus, &buf); errno != 0 {
			t.Fatalf("READDIR(plus=%v) of node %d: %v", plus, node, errno)
		}
		got := parseDirBuffer(t, buf.Bytes(), plus)
		if len(got) == 0 {
			return names
		}
		for _, d := range got {
			names = append(names, d.name)
			if d.node != 0 {
				fs.Forget(d.node, 1)
			}
		}
		off = got[len(got)-1].off
	}
	t.Fatal("READDIR never ended")
	return nil
}

// listOpened is listDir through a directory handle (OPENDIR, RELEASEDIR).
func listOpened(t *testing.T, fs *passfs.FS, node uint64, plus bool) []string {
	t.Helper()
	var open fuse.OpenOut
	if errno := fs.Opendir(guestCtx(node), &fuse.OpenIn{Flags: unix.O_RDONLY | unix.O_DIRECTORY}, &open); errno != 0 {
		t.Fatalf("OPENDIR of node %d: %v", node, errno)
	}
	defer fs.Releasedir(guestCtx(node), &fuse.ReleaseIn{Fh: open.Fh})
	return listDir(t, fs, node, open.Fh, plus)
}

// lookupIn is LOOKUP of name in parent: the node id, or 0 and the errno (a cached miss, NodeID 0
// with errno 0, counts as ENOENT).
func lookupIn(fs *passfs.FS, parent uint64, name string) (fuse.EntryOut, fuse.Errno) {
	var out fuse.EntryOut
	errno := fs.Lookup(guestCtx(parent), cs(name), &out)
	if errno == 0 && out.NodeID == 0 {
		errno = syscall.ENOENT
	}
	return out, errno
}

// checkEmptyMount checks that name in parent, a mount of a pseudo file system, is an empty
// directory to the guest that no request gets through to: probes are names that exist in the
// pseudo file system. With writes it also tries to create, change, move and remove things there,
// so that a bug would change that file system: set it only for a private instance (devpts with
// newinstance, mqueue in a new IPC namespace), never for one that shares its superblock with the
// host's (devtmpfs, sysfs, cgroup2: such a bug once unlinked the host's /dev/null), and even then
// only with names that do not exist and a mode that changes nothing. It returns the node id.
func checkEmptyMount(t *testing.T, fs *passfs.FS, parent uint64, name string, probes []string, writes bool) uint64 {
	t.Helper()
	ent, errno := lookupIn(fs, parent, name)
	if errno != 0 {
		t.Fatalf("LOOKUP %s: %v; the mount point must be found", name, errno)
	}
	node := ent.NodeID
	ctx := guestCtx(node)
	if ent.Attr.Mode&unix.S_IFMT != unix.S_IFDIR || ent.Attr.Nlink != 2 || ent.Attr.Size != 0 || ent.Attr.Blocks != 0 {
		t.Errorf("%s: mode %#o nlink %d size %d blocks %d, want an empty directory's (nlink 2, size 0)",
			name, ent.Attr.Mode, ent.Attr.Nlink, ent.Attr.Size, ent.Attr.Blocks)
	}
	var attr fuse.AttrOut
	if errno := fs.Getattr(ctx, &fuse.GetattrIn{}, &attr); errno != 0 || attr.Attr.Nlink != 2 || attr.Attr.Ino != ent.Attr.Ino {
		t.Errorf("GETATTR %s: %v, nlink %d ino %d (LOOKUP said ino %d)", name, errno, attr.Attr.Nlink, attr.Attr.Ino, ent.Attr.Ino)
	}
	for _, p := range probes {
		if got, errno := lookupIn(fs, node, p); errno != syscall.ENOENT {
			t.Errorf("LOOKUP %s/%s: node %d, %v; want ENOENT", name, p, got.NodeID, errno)
		}
	}
	if dot, errno := lookupIn(fs, node, "."); errno != 0 || dot.NodeID != node {
		t.Errorf(`LOOKUP %s/".": node %d, %v; want %d`, name, dot.NodeID, errno, node)
	} else {
		fs.Forget(node, 1)
	}
	if up, errno := lookupIn(fs, node, ".."); errno != 0 || up.NodeID != parent {
		t.Errorf(`LOOKUP %s/"..": node %d, %v; want the parent %d`, name, up.NodeID, errno, parent)
	} else {
		fs.Forget(parent, 1)
	}

	// Listed through a handle (OPENDIR) and, below, without one.
	var open fuse.OpenOut
	if errno := fs.Opendir(ctx, &fuse.OpenIn{Flags: unix.O_RDONLY | unix.O_DIRECTORY}, &open); errno != 0 {
		t.Fatalf("OPENDIR %s: %v", name, errno)
	}
	for _, plus := range []bool{false, true} {
		if got := listDir(t, fs, node, open.Fh, plus); !slices.Equal(got, []string{".", ".."}) {
			t.Errorf("READDIR(plus=%v) of %s through a handle lists %q, want only . and ..", plus, name, got)
		}
	}
	if errno := fs.Fsyncdir(ctx, &fuse.FsyncIn{Fh: open.Fh}); errno != 0 {
		t.Errorf("FSYNCDIR %s: %v", name, errno)
	}
	lk := &fuse.LkIn{Fh: open.Fh, Owner: 1, Lk: fuse.FileLock{Type: unix.F_WRLCK, End: 1<<63 - 1}}
	if errno := fs.Setlk(ctx, lk, false); errno != syscall.EBADF {
		t.Errorf("SETLK on the directory handle of %s: %v, want EBADF", name, errno)
	}
	if errno := fs.Releasedir(ctx, &fuse.ReleaseIn{Fh: open.Fh}); errno != 0 {
		t.Errorf("RELEASEDIR %s: %v", name, errno)
	}

	if errno := fs.Open(ctx, &fuse.OpenIn{Flags: unix.O_RDONLY | unix.O_DIRECTORY}, &open); errno != syscall.EACCES {
		t.Errorf("OPEN %s: %v, want EACCES", name, errno)
	}
	buf := make([]byte, 256)
	for _, x := range []string{"security.selinux", "user.x", "system.posix_acl_access"} {
		if _, errno := fs.Getxattr(ctx, cs(x), uint32(len(buf)), buf); errno != syscall.ENODATA {
			t.Errorf("GETXATTR %s %s: %v, want ENODATA", name, x, errno)
		}
	}
	if n, errno := fs.Listxattr(ctx, uint32(len(buf)), buf); errno != 0 || n != 0 {
		t.Errorf("LISTXATTR %s: %d bytes, %v; want none", name, n, errno)
	}
	var st fuse.StatfsOut
	if errno := fs.Statfs(ctx, &st); errno != 0 {
		t.Errorf("STATFS %s: %v", name, errno)
	}
	if errno := fs.Syncfs(ctx, &fuse.SyncfsIn{}); errno != 0 {
		t.Errorf("SYNCFS %s: %v", name, errno)
	}
	if errno := fs.Access(ctx, &fuse.AccessIn{Mask: unix.R_OK | unix.X_OK}); errno != 0 {
		t.Errorf("ACCESS %s: %v", name, errno)
	}
	if !writes {
		return node
	}
	var entry fuse.EntryOut
	x := cs("uvfsd-test-x")
	for op, errno := range map[string]fuse.Errno{
		"MKDIR":    fs.Mkdir(ctx, &fuse.MkdirIn{Mode: 0o755}, x, &entry),
		"MKNOD":    fs.Mknod(ctx, &fuse.MknodIn{Mode: unix.S_IFREG | 0o644}, x, &entry),
		"SYMLINK":  fs.Symlink(ctx, x, cs("/etc"), &entry),
		"CREATE":   fs.Create(ctx, &fuse.CreateIn{Flags: unix.O_RDWR, Mode: 0o644}, x, &entry, &open),
		"TMPFILE":  fs.Tmpfile(ctx, &fuse.CreateIn{Flags: unix.O_RDWR, Mode: 0o644}, &entry, &open),
		"LINK":     fs.Link(ctx, &fuse.LinkIn{OldNodeID: fuse.RootID}, x, &entry),
		"RENAME":   fs.Rename(guestCtx(parent), node, 0, cs("uvfsd-test-no-such-name"), x),
		"UNLINK":   fs.Unlink(ctx, x),
		"RMDIR":    fs.Rmdir(ctx, x),
		"SETXATTR": fs.Setxattr(ctx, &fuse.SetxattrIn{Size: 1, Flags: unix.XATTR_REPLACE}, cs("user.uvfsd-test-x"), []byte("1")),
		"RMXATTR":  fs.Removexattr(ctx, cs("user.uvfsd-test-x")),
		"SETATTR":  fs.Setattr(ctx, &fuse.SetattrIn{Valid: fuse.FattrMode, Mode: ent.Attr.Mode & 0o7777}, &attr),
	} {
		want := syscall.EACCES
		switch op {
		case "SETXATTR", "RMXATTR", "SETATTR":
			want = syscall.EPERM
		}
		if errno != want {
			t.Errorf("%s in or on %s: %v, want %v", op, name, errno, want)
		}
	}
	return node
}

// TestPseudoMountsOfTheHostRoot serves "/" as virtme-ng does: the host's /proc, /sys and /dev
// are empty directories to the guest, /etc is served. It needs no privilege.
func TestPseudoMountsOfTheHostRoot(t *testing.T) {
	var logs []string
	fs := serveDir(t, "/", func(o *passfs.Options) {
		o.Logf = func(format string, a ...any) { logs = append(logs, format) }
	})
	root := uint64(fuse.RootID)
	checkEmptyMount(t, fs, root, "proc", []string{"self", "1", "cpuinfo", "sys"}, false)
	if isMountOf(t, "/sys", "sysfs") {
		checkEmptyMount(t, fs, root, "sys", []string{"kernel", "fs", "class"}, false)
	}
	if isMountOf(t, "/dev", "devtmpfs") {
		checkEmptyMount(t, fs, root, "dev", []string{"null", "pts", "shm"}, false)
	} else {
		t.Logf("/dev is no devtmpfs here: not checked")
	}
	said := 0
	for _, l := range logs {
		if strings.Contains(l, "pseudo file system") {
			said++
		}
	}
	if said != 1 {
		t.Errorf("want one log line about pseudo file systems, got %q", logs)
	}
	etc, errno := lookupIn(fs, root, "etc")
	if errno != 0 {
		t.Fatalf("LOOKUP /etc: %v", errno)
	}
	if got := listOpened(t, fs, etc.NodeID, true); !slices.Contains(got, "passwd") {
		t.Errorf("/etc lists %d names without passwd", len(got))
	}
	passwd, errno := lookupIn(fs, etc.NodeID, "passwd")
	if errno != 0 {
		t.Fatalf("LOOKUP /etc/passwd: %v", errno)
	}
	var open fuse.OpenOut
	if errno := fs.Open(guestCtx(passwd.NodeID), &fuse.OpenIn{Flags: unix.O_RDONLY}, &open); errno != 0 {
		t.Errorf("OPEN /etc/passwd: %v", errno)
	}
	// The root's listing shows the mount points, with an empty directory's attributes.
	if errno := fs.Opendir(guestCtx(root), &fuse.OpenIn{Flags: unix.O_RDONLY | unix.O_DIRECTORY}, &open); errno != 0 {
		t.Fatalf("OPENDIR /: %v", errno)
	}
	var buf fuse.DirBuffer
	buf.Reset(1<<16, true)
	if errno := fs.Readdir(guestCtx(root), &fuse.ReadIn{Fh: open.Fh, Size: 1 << 16}, true, &buf); errno != 0 {
		t.Fatal(errno)
	}
	found := false
	for _, d := range parseDirBuffer(t, buf.Bytes(), true) {
		if d.name == "proc" {
			found = true
			var attr fuse.AttrOut
			if errno := fs.Getattr(guestCtx(d.node), &fuse.GetattrIn{}, &attr); errno != 0 || attr.Attr.Nlink != 2 {
				t.Errorf("proc from READDIRPLUS: GETATTR %v, nlink %d", errno, attr.Attr.Nlink)
			}
			if _, errno := lookupIn(fs, d.node, "self"); errno != syscall.ENOENT {
				t.Errorf("LOOKUP proc/self after READDIRPLUS: %v, want ENOENT", errno)
			}
		}
	}
	if !found {
		t.Error("READDIRPLUS of / did not list proc")
	}
}

// isMountOf reports whether path is a mount point of a file system of type fstype, from
// /proc/self/mountinfo.
func isMountOf(t *testing.T, path, fstype string) bool {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	is := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if i := slices.Index(fields, "-"); i >= 6 && i+1 < len(fields) && fields[4] == path {
			is = fields[i+1] == fstype // the last mount on path is the one seen
		}
	}
	return is
}

const pseudoChildDir = "UVFSD_PASSFS_PSEUDO_DIR"

// TestPseudoMountsInAShare mounts pseudo file systems (proc, sysfs, devpts, devtmpfs, a bind of
// a directory of /proc, and, where the kernel allows, cgroup2, mqueue and a bind-mounted
// namespace file) inside a share, beside a tmpfs and a plain directory, in a private mount
// namespace of a child process, and checks that the guest sees each pseudo mount as an empty
// directory it cannot reach through, with file handles and without, also after the budget closed
// the nodes' fds, while the tmpfs and the directory are served; and that New refuses a shared
// directory on a pseudo file system.
func TestPseudoMountsInAShare(t *testing.T) {
	if dir := os.Getenv(pseudoChildDir); dir != "" {
		pseudoMountsInAShare(t, dir)
		return
	}
	needRoot(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestPseudoMountsInAShare$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), pseudoChildDir+"="+t.TempDir())
	// Go makes "/" private too. The IPC namespace makes the mqueue mount a private instance.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWIPC}
	out, err := cmd.CombinedOutput()
	t.Logf("child:\n%s", out)
	if err != nil || !strings.Contains(string(out), "--- PASS: TestPseudoMountsInAShare") {
		t.Fatalf("child in a private mount namespace: %v", err)
	}
}

type testMount struct {
	name, source, fstype, data string
	flags                      uintptr
	probes                     []string // names in it
	optional                   bool     // the kernel or the container may refuse it
	// private: an instance of its own, not the host's (see checkEmptyMount's writes)
	private bool
}

func pseudoMountsInAShare(t *testing.T, base string) {
	share := filepath.Join(base, "share")
	pseudo := []testMount{
		{name: "proc", source: "proc", fstype: "proc", probes: []string{"self", "1", "cpuinfo"}},
		{name: "sys", source: "sysfs", fstype: "sysfs", probes: []string{"kernel", "fs"}},
		{name: "pts", source: "devpts", fstype: "devpts", data: "newinstance,ptmxmode=0666", probes: []string{"ptmx"}, private: true},
		{name: "dev", source: "devtmpfs", fstype: "devtmpfs", probes: []string{"null", "zero"}},
		{name: "procsys", source: "/proc/sys", flags: unix.MS_BIND, probes: []string{"kernel", "vm"}},
		{name: "cgroup", source: "cgroup2", fstype: "cgroup2", probes: []string{"cgroup.procs"}, optional: true},
		{name: "mqueue", source: "mqueue", fstype: "mqueue", probes: []string{"q"}, optional: true, private: true},
	}
	for _, dir := range []string{"plain", "tmp"} {
		if err := os.MkdirAll(filepath.Join(share, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var mounted []testMount
	for _, m := range pseudo {
		target := filepath.Join(share, m.name)
		if err := os.Mkdir(target, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount(m.source, target, m.fstype, m.flags, m.data); err != nil {
			if m.optional {
				t.Logf("not checked: mounting %s on %s: %v", m.fstype, m.name, err)
				continue
			}
			t.Fatalf("mount %s %s on %s: %v", m.fstype, m.source, target, err)
		}
		if m.fstype == "mqueue" { // a message queue to look for
			f, err := os.OpenFile(filepath.Join(target, "q"), os.O_CREATE|os.O_RDONLY, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
		mounted = append(mounted, m)
	}
	// A namespace file bind-mounted on a file (as ip netns does): a pseudo file, not a directory.
	nsFile := filepath.Join(share, "netns")
	if err := os.WriteFile(nsFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("/proc/self/ns/net", nsFile, "", unix.MS_BIND, ""); err != nil {
		t.Logf("not checked: bind-mounting a namespace file: %v", err)
		nsFile = ""
	}
	if err := unix.Mount("tmpfs", filepath.Join(share, "tmp"), "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"plain/f", "tmp/f"} {
		if err := os.WriteFile(filepath.Join(share, f), []byte("data"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	for _, mode := range []passfs.FileHandleMode{passfs.FileHandlesNever, passfs.FileHandlesPrefer} {
		t.Run("file-handles="+mode.String(), func(t *testing.T) {
			fs := serveDir(t, share, func(o *passfs.Options) { o.InodeFileHandles = mode })
			t.Logf("file handles in use: %v", fs.UsesFileHandles())
			root := uint64(fuse.RootID)
			nodes := map[string]uint64{}
			for _, m := range mounted {
				nodes[m.name] = checkEmptyMount(t, fs, root, m.name, m.probes, m.private)
			}
			checkServed(t, fs, "plain")
			checkServed(t, fs, "tmp")
			if nsFile != "" {
				ent, errno := lookupIn(fs, root, "netns")
				if errno != 0 || ent.Attr.Mode&unix.S_IFMT != unix.S_IFREG || ent.Attr.Size != 0 {
					t.Errorf("LOOKUP netns: %v, mode %#o size %d", errno, ent.Attr.Mode, ent.Attr.Size)
				}
				var open fuse.OpenOut
				if errno := fs.Open(guestCtx(ent.NodeID), &fuse.OpenIn{Flags: unix.O_RDONLY}, &open); errno != syscall.EACCES {
					t.Errorf("OPEN of a bind-mounted namespace file: %v, want EACCES", errno)
				}
			}
			// Closed by the budget, the nodes reopen by name, still as empty directories.
			if closed := fs.EvictNodeFDs(); closed == 0 {
				t.Errorf("the budget closed no node fds")
			}
			for name, node := range nodes {
				var attr fuse.AttrOut
				if errno := fs.Getattr(guestCtx(node), &fuse.GetattrIn{}, &attr); errno != 0 || attr.Attr.Nlink != 2 {
					t.Errorf("GETATTR %s after its fd was closed: %v, nlink %d", name, errno, attr.Attr.Nlink)
				}
				if _, errno := lookupIn(fs, node, "x"); errno != syscall.ENOENT {
					t.Errorf("LOOKUP %s/x after its fd was closed: %v, want ENOENT", name, errno)
				}
			}
			// Without OPENDIR (FUSE_NO_OPENDIR_SUPPORT) and, for files, without OPEN.
			fs.Init(&fuse.InitInfo{Flags: fuse.CapNoOpendirSupport | fuse.CapNoOpenSupport})
			for name, node := range nodes {
				for _, plus := range []bool{false, true} {
					if got := listDir(t, fs, node, 0, plus); !slices.Equal(got, []string{".", ".."}) {
						t.Errorf("READDIR(plus=%v) of %s without a handle lists %q, want only . and ..", plus, name, got)
					}
				}
				if errno := fs.Fsyncdir(guestCtx(node), &fuse.FsyncIn{}); errno != 0 {
					t.Errorf("FSYNCDIR %s without a handle: %v", name, errno)
				}
			}
		})
	}

	// A shared directory on a pseudo file system is refused.
	for _, m := range mounted {
		fd, err := unix.Open(filepath.Join(share, m.name), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		fs, err := passfs.New(passfs.Options{RootFD: fd, ProcSelfFD: -1})
		if err == nil {
			fs.Close()
			t.Errorf("New serves %s (%s) as the shared directory", m.name, m.fstype)
			continue
		}
		unix.Close(fd)
		if !strings.Contains(err.Error(), "pseudo file system") {
			t.Errorf("New on %s: %v; want it to say why", m.name, err)
		}
	}
}

// checkServed checks that dir in the share root is served with its file f.
func checkServed(t *testing.T, fs *passfs.FS, dir string) {
	t.Helper()
	ent, errno := lookupIn(fs, fuse.RootID, dir)
	if errno != 0 {
		t.Fatalf("LOOKUP %s: %v", dir, errno)
	}
	if got := listOpened(t, fs, ent.NodeID, true); !slices.Contains(got, "f") {
		t.Errorf("%s lists %q, want f in it", dir, got)
	}
	var open fuse.OpenOut
	f, errno := lookupIn(fs, ent.NodeID, "f")
	if errno != 0 {
		t.Fatalf("LOOKUP %s/f: %v", dir, errno)
	}
	if errno := fs.Open(guestCtx(f.NodeID), &fuse.OpenIn{Flags: unix.O_RDONLY}, &open); errno != 0 {
		t.Fatalf("OPEN %s/f: %v", dir, errno)
	}
	buf := make([]byte, 16)
	n, errno := fs.Read(guestCtx(f.NodeID), &fuse.ReadIn{Fh: open.Fh, Size: 16}, [][]byte{buf})
	if errno != 0 || string(buf[:n]) != "data" {
		t.Errorf("READ %s/f: %q, %v", dir, buf[:n], errno)
	}
	fs.Release(guestCtx(f.NodeID), &fuse.ReleaseIn{Fh: open.Fh})
}
