package main

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// POSIX ACLs as the kernel stores them in system.posix_acl_access/default
// (uapi/linux/posix_acl_xattr.h). Busybox has no setfacl/getfacl; these
// write and print the xattr directly, in a short text form:
//
//	u::rw-,u:1000:r--,g::r--,g:2000:rw-,m::rw-,o::---
//
// Entries are written in the order given, so give them in the order setfacl
// would (u::, u:ID..., g::, g:ID..., m::, o::); getacl prints them as stored.

const aclVersion = 2

var aclTags = []struct {
	short string
	tag   uint16
	hasID bool
}{{"u", 0x01, false}, {"u", 0x02, true}, {"g", 0x04, false}, {"g", 0x08, true}, {"m", 0x10, false}, {"o", 0x20, false}}

const aclNoID = 0xffffffff

func aclXattrName(kind string) (string, error) {
	switch kind {
	case "access", "default":
		return "system.posix_acl_" + kind, nil
	}
	return "", fmt.Errorf("ACL kind %q: use access or default", kind)
}

func setACL(path, kind, text string) error {
	name, err := aclXattrName(kind)
	if err != nil {
		return err
	}
	value := binary.LittleEndian.AppendUint32(nil, aclVersion)
	for _, ent := range strings.Split(text, ",") {
		parts := strings.Split(ent, ":")
		if len(parts) != 3 || len(parts[2]) != 3 {
			return fmt.Errorf("ACL entry %q: want TAG:[ID]:rwx", ent)
		}
		tag, id, ok := uint16(0), uint32(aclNoID), false
		for _, t := range aclTags {
			if t.short == parts[0] && t.hasID == (parts[1] != "") {
				tag, ok = t.tag, true
			}
		}
		if !ok {
			return fmt.Errorf("ACL entry %q: unknown tag", ent)
		}
		if parts[1] != "" {
			n, err := strconv.ParseUint(parts[1], 10, 32)
			if err != nil {
				return fmt.Errorf("ACL entry %q: bad id", ent)
			}
			id = uint32(n)
		}
		var perm uint16
		for i, c := range parts[2] {
			if c != '-' {
				if byte(c) != "rwx"[i] {
					return fmt.Errorf("ACL entry %q: bad permissions", ent)
				}
				perm |= 4 >> i
			}
		}
		value = binary.LittleEndian.AppendUint16(value, tag)
		value = binary.LittleEndian.AppendUint16(value, perm)
		value = binary.LittleEndian.AppendUint32(value, id)
	}
	return wrap("setxattr "+name, path, unix.Lsetxattr(path, name, value, 0))
}

func getACL(path, kind string) error {
	name, err := aclXattrName(kind)
	if err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	n, err := unix.Lgetxattr(path, name, buf)
	if err != nil {
		return wrap("getxattr "+name, path, err)
	}
	buf = buf[:n]
	if len(buf) < 4 || (len(buf)-4)%8 != 0 || binary.LittleEndian.Uint32(buf) != aclVersion {
		return fmt.Errorf("getxattr %s %s: not an ACL: %x", name, path, buf)
	}
	var out []string
	for b := buf[4:]; len(b) > 0; b = b[8:] {
		tag, perm, id := binary.LittleEndian.Uint16(b), binary.LittleEndian.Uint16(b[2:]), binary.LittleEndian.Uint32(b[4:])
		short, idText := "?", ""
		for _, t := range aclTags {
			if t.tag == tag {
				short = t.short
				if t.hasID {
					idText = strconv.FormatUint(uint64(id), 10)
				}
			}
		}
		rwx := []byte("---")
		for i := range rwx {
			if perm&(4>>i) != 0 {
				rwx[i] = "rwx"[i]
			}
		}
		out = append(out, short+":"+idText+":"+string(rwx))
	}
	fmt.Println(strings.Join(out, ","))
	return nil
}
