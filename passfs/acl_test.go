package passfs_test

import (
	"bytes"
	"encoding/binary"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/passfs"
)

// ACL xattr layout (uapi/linux/posix_acl_xattr.h).
const (
	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclGroup    = 0x08
	aclMask     = 0x10
	aclOther    = 0x20
	aclNoID     = 0xffffffff
)

type aclEntry struct {
	tag, perm uint16
	id        uint32
}

func encodeACL(entries []aclEntry) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, e.id)
	}
	return b
}

func decodeACL(t *testing.T, b []byte) []aclEntry {
	t.Helper()
	if len(b) < 4 || (len(b)-4)%8 != 0 || binary.LittleEndian.Uint32(b) != 2 {
		t.Fatalf("not an ACL xattr: %x", b)
	}
	var out []aclEntry
	for b = b[4:]; len(b) > 0; b = b[8:] {
		out = append(out, aclEntry{binary.LittleEndian.Uint16(b), binary.LittleEndian.Uint16(b[2:]), binary.LittleEndian.Uint32(b[4:])})
	}
	return out
}

func guestACL(user, group uint32) []aclEntry {
	return []aclEntry{
		{aclUserObj, 6, aclNoID},
		{aclUser, 4, user},
		{aclGroupObj, 4, aclNoID},
		{aclGroup, 6, group},
		{aclMask, 6, aclNoID},
		{aclOther, 0, aclNoID},
	}
}

func hostACL(t *testing.T, path, name string) []aclEntry {
	t.Helper()
	buf := make([]byte, 1024)
	n, err := unix.Lgetxattr(path, name, buf)
	if err != nil {
		t.Fatalf("host getxattr %s %s: %v", path, name, err)
	}
	return decodeACL(t, buf[:n])
}

func equalACL(a, b []aclEntry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestACLIDsTranslated checks that the uids and gids inside POSIX ACL xattrs go through the id
// mappers: guest → namespace when set, namespace → guest when read, for access and default ACLs.
func TestACLIDsTranslated(t *testing.T) {
	const uidOffset, gidOffset = 5000, 7000
	e := newEnv(t, func(o *passfs.Options) {
		o.PosixACL = true
		o.UIDs = offsetMapper(uidOffset) // attr_test.go; refuses forbiddenID
		o.GIDs = offsetMapper(gidOffset)
	})
	e.writeHost("f", "x")
	if err := unix.Mkdir(e.host("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	f := e.lookup(fuse.RootID, "f")
	d := e.lookup(fuse.RootID, "d")

	for _, c := range []struct {
		node uint64
		path string
		name string
	}{{f.NodeID, "f", "system.posix_acl_access"}, {d.NodeID, "d", "system.posix_acl_default"}} {
		value := encodeACL(guestACL(1000, 2000))
		sent := bytes.Clone(value)
		if errno := e.fs.Setxattr(e.ctx(c.node), &fuse.SetxattrIn{Size: uint32(len(value))}, cs(c.name), value); errno != 0 {
			t.Fatalf("setxattr %s on %s: %v", c.name, c.path, errno)
		}
		if !bytes.Equal(value, sent) {
			t.Errorf("setxattr %s changed the guest's buffer", c.name)
		}
		if got, want := hostACL(t, e.host(c.path), c.name), guestACL(1000+uidOffset, 2000+gidOffset); !equalACL(got, want) {
			t.Errorf("host %s of %s = %v, want %v", c.name, c.path, got, want)
		}
		v, errno := getxattr(t, e, c.node, c.name)
		if errno != 0 {
			t.Fatalf("getxattr %s: %v", c.name, errno)
		}
		if got, want := decodeACL(t, []byte(v)), guestACL(1000, 2000); !equalACL(got, want) {
			t.Errorf("guest %s of %s = %v, want %v", c.name, c.path, got, want)
		}
	}

	ctx := e.ctx(f.NodeID)
	acl := func(user, group uint32) []byte { return encodeACL(guestACL(user, group)) }
	wantErrno(t, "ACL naming a forbidden uid", e.fs.Setxattr(ctx, &fuse.SetxattrIn{}, cs("system.posix_acl_access"), acl(forbiddenID, 2000)), syscall.EPERM)
	wantErrno(t, "ACL naming a forbidden gid", e.fs.Setxattr(ctx, &fuse.SetxattrIn{}, cs("system.posix_acl_access"), acl(1000, forbiddenID)), syscall.EPERM)
	bad := acl(1000, 2000)
	wantErrno(t, "ACL with a torn entry", e.fs.Setxattr(ctx, &fuse.SetxattrIn{}, cs("system.posix_acl_access"), bad[:len(bad)-3]), syscall.EINVAL)
	binary.LittleEndian.PutUint32(bad, 1)
	wantErrno(t, "ACL of version 1", e.fs.Setxattr(ctx, &fuse.SetxattrIn{}, cs("system.posix_acl_access"), bad), syscall.EINVAL)
	if got, want := hostACL(t, e.host("f"), "system.posix_acl_access"), guestACL(1000+uidOffset, 2000+gidOffset); !equalACL(got, want) {
		t.Errorf("refused setxattrs changed the host ACL: %v, want %v", got, want)
	}

	// Other names are not ACLs, whatever their value looks like.
	value := acl(1000, 2000)
	if errno := e.fs.Setxattr(ctx, &fuse.SetxattrIn{}, cs("user.notacl"), value); errno != 0 {
		t.Fatal(errno)
	}
	if got := hostACL(t, e.host("f"), "user.notacl"); !equalACL(got, guestACL(1000, 2000)) {
		t.Errorf("user.notacl was translated: %v", got)
	}

	// The length query (size 0) needs no translation and must not fail.
	if n, errno := e.fs.Getxattr(ctx, cs("system.posix_acl_access"), 0, nil); errno != 0 || n != len(value) {
		t.Errorf("getxattr length: %d, %v; want %d", n, errno, len(value))
	}
}

// TestACLIdentity checks that without id mappers an ACL reaches the host byte for byte.
func TestACLIdentity(t *testing.T) {
	e := newEnv(t, func(o *passfs.Options) { o.PosixACL = true })
	e.writeHost("f", "x")
	f := e.lookup(fuse.RootID, "f")
	value := encodeACL(guestACL(1234, 4321))
	if errno := e.fs.Setxattr(e.ctx(f.NodeID), &fuse.SetxattrIn{}, cs("system.posix_acl_access"), value); errno != 0 {
		t.Fatal(errno)
	}
	if got := hostACL(t, e.host("f"), "system.posix_acl_access"); !equalACL(got, guestACL(1234, 4321)) {
		t.Errorf("host ACL %v", got)
	}
}
