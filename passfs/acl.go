package passfs

import (
	"bytes"
	"encoding/binary"
	"syscall"

	"github.com/uvfsd/uvfsd/fuse"
)

// POSIX ACLs travel as the xattrs system.posix_acl_access and system.posix_acl_default, whose
// values name users and groups by number (struct posix_acl_xattr_header + posix_acl_xattr_entry in
// the kernel's uapi/linux/posix_acl_xattr.h). The guest writes guest ids there; the host kernel
// reads them as ids of the daemon's namespace. So the ids are translated like the owner of a file:
// guest → ns on SETXATTR, ns → guest on GETXATTR. (The Rust virtiofsd forbids --posix-acl with
// --translate-uid instead, because it cannot.)

const (
	aclXattrVersion = 2 // POSIX_ACL_XATTR_VERSION
	aclHeaderSize   = 4 // __le32 a_version
	aclEntrySize    = 8 // __le16 e_tag, __le16 e_perm, __le32 e_id
	aclTagUser      = 0x02
	aclTagGroup     = 0x08
)

var (
	aclAccessName  = []byte("system.posix_acl_access")
	aclDefaultName = []byte("system.posix_acl_default")
)

// isACLName reports whether a guest xattr name holds a POSIX ACL.
func isACLName(name []byte) bool {
	return bytes.Equal(name, aclAccessName) || bytes.Equal(name, aclDefaultName)
}

// checkACL returns the entries of an ACL xattr value, or EINVAL if it is not one the kernel could
// have written.
func checkACL(value []byte) ([]byte, fuse.Errno) {
	if len(value) < aclHeaderSize || (len(value)-aclHeaderSize)%aclEntrySize != 0 ||
		binary.LittleEndian.Uint32(value) != aclXattrVersion {
		return nil, syscall.EINVAL
	}
	return value[aclHeaderSize:], 0
}

// aclToNS rewrites, in place, the guest ids of an ACL value into namespace ids. An id the mapping
// forbids gets EPERM, as chown of it would.
func aclToNS(value []byte, uids, gids IDMapper) fuse.Errno {
	entries, e := checkACL(value)
	if e != 0 {
		return e
	}
	for ; len(entries) > 0; entries = entries[aclEntrySize:] {
		var m IDMapper
		switch binary.LittleEndian.Uint16(entries) {
		case aclTagUser:
			m = uids
		case aclTagGroup:
			m = gids
		default:
			continue // the owner, owning group, mask and other entries carry no id
		}
		id, err := m.GuestToNS(binary.LittleEndian.Uint32(entries[4:]))
		if err != nil {
			return syscall.EPERM
		}
		binary.LittleEndian.PutUint32(entries[4:], id)
	}
	return 0
}

// aclToGuest rewrites, in place, the namespace ids of an ACL value read from the host into guest
// ids. A value the host kernel did not format as an ACL gets EIO.
func aclToGuest(value []byte, uids, gids IDMapper) fuse.Errno {
	entries, e := checkACL(value)
	if e != 0 {
		return syscall.EIO
	}
	for ; len(entries) > 0; entries = entries[aclEntrySize:] {
		switch binary.LittleEndian.Uint16(entries) {
		case aclTagUser:
			binary.LittleEndian.PutUint32(entries[4:], uids.NSToGuest(binary.LittleEndian.Uint32(entries[4:])))
		case aclTagGroup:
			binary.LittleEndian.PutUint32(entries[4:], gids.NSToGuest(binary.LittleEndian.Uint32(entries[4:])))
		}
	}
	return 0
}

// translatesACLs is false when both id mappers are the identity: ACL values then pass unchanged.
func (fs *FS) translatesACLs() bool {
	return !isIdentity(fs.uids) || !isIdentity(fs.gids)
}

func isIdentity(m IDMapper) bool {
	switch m := m.(type) {
	case identityMapper:
		return true
	case interface{ IsIdentity() bool }: // *idmap.Mapper
		return m.IsIdentity()
	}
	return false
}

// aclValueBuf holds a translated ACL for SETXATTR without allocating: 4 + 8*63 bytes covers ACLs
// of up to 63 entries; larger ones get a heap buffer.
type aclValueBuf [512]byte

// aclValueToNS returns a translated copy of a guest ACL value. The guest's own buffer is never
// changed: it may be guest memory, which the guest could rewrite while we read it.
func (fs *FS) aclValueToNS(buf *aclValueBuf, value []byte) ([]byte, fuse.Errno) {
	var out []byte
	if len(value) <= len(buf) {
		out = buf[:len(value)]
	} else {
		out = make([]byte, len(value))
	}
	copy(out, value)
	if e := aclToNS(out, fs.uids, fs.gids); e != 0 {
		return nil, e
	}
	return out, 0
}
