package passfs_test

import (
	"bytes"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/passfs"
)

func getxattr(t *testing.T, e *env, node uint64, name string) (string, fuse.Errno) {
	t.Helper()
	n, errno := e.fs.Getxattr(e.ctx(node), cs(name), 0, nil)
	if errno != 0 {
		return "", errno
	}
	buf := make([]byte, n)
	n, errno = e.fs.Getxattr(e.ctx(node), cs(name), uint32(n), buf)
	return string(buf[:n]), errno
}

func listxattr(t *testing.T, e *env, node uint64) []string {
	t.Helper()
	n, errno := e.fs.Listxattr(e.ctx(node), 0, nil)
	if errno != 0 {
		t.Fatal(errno)
	}
	buf := make([]byte, n)
	n, errno = e.fs.Listxattr(e.ctx(node), uint32(n), buf)
	if errno != 0 {
		t.Fatal(errno)
	}
	var names []string
	for _, s := range strings.Split(string(buf[:n]), "\x00") {
		if s != "" {
			names = append(names, s)
		}
	}
	return names
}

func TestXattr(t *testing.T) {
	e := newEnv(t, nil)
	e.writeHost("f", "x")
	f := e.lookup(fuse.RootID, "f")
	ctx := e.ctx(f.NodeID)
	if errno := e.fs.Setxattr(ctx, &fuse.SetxattrIn{Size: 5}, cs("user.color"), []byte("green")); errno != 0 {
		t.Fatal(errno)
	}
	host := make([]byte, 64)
	if n, err := unix.Getxattr(e.host("f"), "user.color", host); err != nil || string(host[:n]) != "green" {
		t.Fatalf("host xattr %q, %v", host[:n], err)
	}
	if v, errno := getxattr(t, e, f.NodeID, "user.color"); errno != 0 || v != "green" {
		t.Fatalf("getxattr %q, %v", v, errno)
	}
	_, errno := e.fs.Getxattr(ctx, cs("user.color"), 2, make([]byte, 2))
	wantErrno(t, "getxattr into a small buffer", errno, syscall.ERANGE)
	wantErrno(t, "XATTR_CREATE of an existing name", e.fs.Setxattr(ctx, &fuse.SetxattrIn{Flags: unix.XATTR_CREATE}, cs("user.color"), []byte("red")), syscall.EEXIST)
	if names := listxattr(t, e, f.NodeID); !contains(names, "user.color") {
		t.Fatalf("listxattr %v", names)
	}
	if errno := e.fs.Removexattr(ctx, cs("user.color")); errno != 0 {
		t.Fatal(errno)
	}
	if _, err := unix.Getxattr(e.host("f"), "user.color", host); err != unix.ENODATA {
		t.Fatalf("xattr still on the host: %v", err)
	}
	_, errno = getxattr(t, e, f.NodeID, "user.color")
	wantErrno(t, "getxattr of a removed name", errno, syscall.ENODATA)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestXattrOnSymlinkAndFIFO(t *testing.T) {
	needRoot(t) // trusted.* needs CAP_SYS_ADMIN; user.* is not allowed on symlinks
	e := newEnv(t, nil)
	if err := os.Symlink("/etc/passwd", e.host("ln")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(e.host("fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ln", "fifo"} {
		node := e.lookup(fuse.RootID, name).NodeID
		errno := openWithTimeout(t, "setxattr on "+name, func() fuse.Errno {
			return e.fs.Setxattr(e.ctx(node), &fuse.SetxattrIn{}, cs("trusted.tag"), []byte(name))
		})
		if errno != 0 {
			t.Fatalf("setxattr on %s: %v", name, errno)
		}
		host := make([]byte, 64)
		n, err := unix.Lgetxattr(e.host(name), "trusted.tag", host)
		if err != nil || string(host[:n]) != name {
			t.Fatalf("%s: host xattr %q, %v", name, host[:n], err)
		}
		if v, errno := getxattr(t, e, node, "trusted.tag"); errno != 0 || v != name {
			t.Fatalf("%s: getxattr %q %v", name, v, errno)
		}
		if names := listxattr(t, e, node); !contains(names, "trusted.tag") {
			t.Fatalf("%s: listxattr %v", name, names)
		}
		if errno := e.fs.Removexattr(e.ctx(node), cs("trusted.tag")); errno != 0 {
			t.Fatal(errno)
		}
	}
	// The symlink's target was never touched.
	if _, err := unix.Getxattr("/etc/passwd", "trusted.tag", nil); err != unix.ENODATA {
		t.Fatalf("the symlink target got the xattr: %v", err)
	}
}

func TestXattrDisabled(t *testing.T) {
	e := newEnv(t, func(o *passfs.Options) { o.Xattr = false })
	ctx := e.ctx(fuse.RootID)
	wantErrno(t, "setxattr", e.fs.Setxattr(ctx, &fuse.SetxattrIn{}, cs("user.a"), []byte("b")), syscall.ENOSYS)
	_, errno := e.fs.Getxattr(ctx, cs("user.a"), 0, nil)
	wantErrno(t, "getxattr", errno, syscall.ENOSYS)
	_, errno = e.fs.Listxattr(ctx, 0, nil)
	wantErrno(t, "listxattr", errno, syscall.ENOSYS)
	wantErrno(t, "removexattr", e.fs.Removexattr(ctx, cs("user.a")), syscall.ENOSYS)
}

// prefixMapper stores every guest name under "user.guest." and hides other host names; names
// starting with "user.bad" are refused.
type prefixMapper struct{}

func (prefixMapper) ToHost(dst, guest []byte) ([]byte, fuse.Errno) {
	if bytes.HasPrefix(guest, []byte("user.bad")) {
		return dst, syscall.EPERM
	}
	return append(append(dst, "user.guest."...), guest...), 0
}

func (prefixMapper) FromHost(dst, host []byte) ([]byte, bool) {
	rest, ok := bytes.CutPrefix(host, []byte("user.guest."))
	return append(dst, rest...), ok
}

func TestXattrMapping(t *testing.T) {
	e := newEnv(t, func(o *passfs.Options) { o.XattrMap = prefixMapper{} })
	e.writeHost("f", "x")
	if err := unix.Setxattr(e.host("f"), "user.hostonly", []byte("h"), 0); err != nil {
		t.Fatal(err)
	}
	f := e.lookup(fuse.RootID, "f")
	if errno := e.fs.Setxattr(e.ctx(f.NodeID), &fuse.SetxattrIn{}, cs("user.a"), []byte("1")); errno != 0 {
		t.Fatal(errno)
	}
	if errno := e.fs.Setxattr(e.ctx(f.NodeID), &fuse.SetxattrIn{}, cs("security.capability"), []byte("cap")); errno != 0 {
		t.Fatal(errno)
	}
	host := make([]byte, 16)
	if n, err := unix.Getxattr(e.host("f"), "user.guest.user.a", host); err != nil || string(host[:n]) != "1" {
		t.Fatalf("mapped host name: %q %v", host[:n], err)
	}
	names := listxattr(t, e, f.NodeID)
	if len(names) != 2 || !contains(names, "user.a") || !contains(names, "security.capability") {
		t.Fatalf("listxattr %v, want user.a and security.capability only", names)
	}
	_, errno := e.fs.Listxattr(e.ctx(f.NodeID), 3, make([]byte, 3))
	wantErrno(t, "listxattr into a small buffer", errno, syscall.ERANGE)
	wantErrno(t, "refused name", e.fs.Setxattr(e.ctx(f.NodeID), &fuse.SetxattrIn{}, cs("user.bad"), []byte("1")), syscall.EPERM)
	_, errno = e.fs.Getxattr(e.ctx(f.NodeID), cs("user.bad"), 0, nil)
	wantErrno(t, "getxattr of a refused name", errno, syscall.ENODATA)
	// CVE-2021-20263: a write drops the remapped security.capability.
	fh := e.open(f.NodeID, syscall.O_RDWR)
	e.write(fh, 0, "y")
	e.release(fh)
	if _, err := unix.Getxattr(e.host("f"), "user.guest.security.capability", host); err != unix.ENODATA {
		t.Fatalf("remapped security.capability survived a write: %v", err)
	}
	// So do the other changes of the data: truncate, fallocate, copy_file_range into the file.
	setCap := func() {
		t.Helper()
		if errno := e.fs.Setxattr(e.ctx(f.NodeID), &fuse.SetxattrIn{}, cs("security.capability"), []byte("cap")); errno != 0 {
			t.Fatal(errno)
		}
	}
	capGone := func(what string) {
		t.Helper()
		if _, err := unix.Getxattr(e.host("f"), "user.guest.security.capability", host); err != unix.ENODATA {
			t.Errorf("remapped security.capability survived %s: %v", what, err)
		}
	}
	setCap()
	var attr fuse.AttrOut
	if errno := e.fs.Setattr(e.ctx(f.NodeID), &fuse.SetattrIn{Valid: fuse.FattrSize, Size: 1}, &attr); errno != 0 {
		t.Fatal(errno)
	}
	capGone("a truncate")
	fh = e.open(f.NodeID, syscall.O_RDWR)
	setCap()
	if errno := e.fs.Fallocate(e.ctx(f.NodeID), &fuse.FallocateIn{Fh: fh, Length: 10}); errno != 0 {
		t.Fatal(errno)
	}
	capGone("fallocate")
	setCap()
	var wo fuse.WriteOut
	if errno := e.fs.CopyFileRange(e.ctx(f.NodeID), &fuse.CopyFileRangeIn{FhIn: fh, NodeIDOut: f.NodeID, FhOut: fh, OffOut: 20, Len: 1}, &wo); errno != 0 {
		t.Fatal(errno)
	}
	capGone("copy_file_range")
	e.release(fh)
}

func TestSecurityContextOnCreate(t *testing.T) {
	e := newEnv(t, func(o *passfs.Options) { o.SecurityLabel = true; o.XattrMap = prefixMapper{} })
	ctx := e.ctx(fuse.RootID)
	ctx.SecCtxName = cs("security.selinux")
	ctx.SecCtx = []byte("system_u:object_r:tmp_t:s0\x00")
	var ent fuse.EntryOut
	if errno := e.fs.Mkdir(ctx, &fuse.MkdirIn{Mode: 0o755}, cs("d"), &ent); errno != 0 {
		t.Fatal(errno)
	}
	host := make([]byte, 64)
	n, err := unix.Getxattr(e.host("d"), "user.guest.security.selinux", host)
	if err != nil || string(host[:n]) != string(ctx.SecCtx) {
		t.Fatalf("security context %q, %v", host[:n], err)
	}
	// A context the mapping refuses fails the request and leaves nothing behind.
	ctx.SecCtxName = cs("user.bad")
	wantErrno(t, "refused context", e.fs.Mkdir(ctx, &fuse.MkdirIn{Mode: 0o755}, cs("d2"), &ent), syscall.EPERM)
	if _, err := os.Lstat(e.host("d2")); !os.IsNotExist(err) {
		t.Fatalf("failed mkdir left d2 behind: %v", err)
	}
	var o fuse.OpenOut
	wantErrno(t, "refused context on create", e.fs.Create(ctx, &fuse.CreateIn{Flags: syscall.O_RDWR, Mode: 0o644}, cs("f"), &ent, &o), syscall.EPERM)
	if _, err := os.Lstat(e.host("f")); !os.IsNotExist(err) {
		t.Fatalf("failed create left f behind: %v", err)
	}
}

// The rule language's own type plugs in: the rootless default stores trusted.* under user.uvfsd.,
// which an unprivileged daemon may write.
func TestXattrMapRootlessDefault(t *testing.T) {
	e := newEnv(t, func(o *passfs.Options) { o.XattrMap = passfs.RootlessDefault() })
	if err := os.Mkdir(e.host("upper"), 0o755); err != nil {
		t.Fatal(err)
	}
	d := e.lookup(fuse.RootID, "upper")
	if errno := e.fs.Setxattr(e.ctx(d.NodeID), &fuse.SetxattrIn{}, cs("trusted.overlay.opaque"), []byte("y")); errno != 0 {
		t.Fatal(errno)
	}
	host := make([]byte, 8)
	if n, err := unix.Getxattr(e.host("upper"), "user.uvfsd.trusted.overlay.opaque", host); err != nil || string(host[:n]) != "y" {
		t.Fatalf("host name: %q %v", host[:n], err)
	}
	if v, errno := getxattr(t, e, d.NodeID, "trusted.overlay.opaque"); errno != 0 || v != "y" {
		t.Fatalf("getxattr %q %v", v, errno)
	}
	if names := listxattr(t, e, d.NodeID); len(names) != 1 || names[0] != "trusted.overlay.opaque" {
		t.Fatalf("listxattr %v", names)
	}
	wantErrno(t, "forged stored name", e.fs.Setxattr(e.ctx(d.NodeID), &fuse.SetxattrIn{}, cs("user.uvfsd.x"), []byte("1")), syscall.EPERM)
}
