package passfs

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// The mapped ownership model (Options.Ownership, --ownership=mapped) keeps what the host cannot hold
// for an unprivileged daemon in one extended attribute of the host file, in the format that
// containers/storage writes (idtools.FormatContainersOverrideXattrDevice) and fuse-overlayfs reads,
// so that rootless podman on the host sees the same owners as the guest:
//
//	user.containers.override_stat = "UID:GID:MODE:TYPE"
//
// UID and GID are the guest's ids in decimal; MODE is the permission, set-id and sticky bits in
// octal (four digits, e.g. 4755); TYPE is one of file, dir, symlink, pipe, socket, block-MAJOR-MINOR
// and char-MAJOR-MINOR (device numbers in decimal). Readers also accept the older three-field form
// "UID:GID:MODE" (fuse-overlayfs writes it; the type is then the host file's) and ignore fields after
// the fourth, as containers/storage does. A type the host file cannot stand for is ignored: a host
// directory is always a directory, and only a regular host file stands for a symlink (its data is
// the target), a FIFO, a socket or a device node (it has no data).

// OverrideXattr is the host attribute of the mapped ownership model.
const OverrideXattr = "user.containers.override_stat"

// overrideName is OverrideXattr NUL-terminated, for raw syscalls.
var overrideName = []byte(OverrideXattr + "\x00")

// overrideMax is the buffer for reading the attribute: the longest value uvfsd writes is 56 bytes
// ("4294967294:4294967294:7777:block-4294967295-4294967295"); longer ones (from other writers) are
// read as absent.
const overrideMax = 128

// overrideStat is the guest's view of a file that the attribute holds.
type overrideStat struct {
	uid, gid     uint32
	mode         uint32 // S_IFMT | the 07777 bits
	major, minor uint32 // device number of a block or character device
}

// fileType is the S_IFMT part of the mode.
func (s *overrideStat) fileType() uint32 { return s.mode & unix.S_IFMT }

func (s overrideStat) String() string {
	var buf [overrideMax]byte
	return string(s.format(&buf))
}

// format writes the attribute value into buf without allocating.
func (s *overrideStat) format(buf *[overrideMax]byte) []byte {
	b := buf[:0]
	b = appendUint(b, uint64(s.uid), 10, 1)
	b = append(b, ':')
	b = appendUint(b, uint64(s.gid), 10, 1)
	b = append(b, ':')
	b = appendUint(b, uint64(s.mode&07777), 8, 4)
	b = append(b, ':')
	switch s.fileType() {
	case unix.S_IFDIR:
		b = append(b, "dir"...)
	case unix.S_IFLNK:
		b = append(b, "symlink"...)
	case unix.S_IFIFO:
		b = append(b, "pipe"...)
	case unix.S_IFSOCK:
		b = append(b, "socket"...)
	case unix.S_IFBLK, unix.S_IFCHR:
		if s.fileType() == unix.S_IFBLK {
			b = append(b, "block-"...)
		} else {
			b = append(b, "char-"...)
		}
		b = appendUint(b, uint64(s.major), 10, 1)
		b = append(b, '-')
		b = appendUint(b, uint64(s.minor), 10, 1)
	default:
		b = append(b, "file"...)
	}
	return b
}

// appendUint appends v in base 8 or 10 with at least width digits.
func appendUint(b []byte, v uint64, base uint64, width int) []byte {
	var tmp [24]byte
	i := len(tmp)
	for v > 0 || len(tmp)-i < width {
		i--
		tmp[i] = byte('0' + v%base)
		v /= base
	}
	return append(b, tmp[i:]...)
}

// parseOverride reads an attribute value of a host file of type hostType (S_IFMT bits); ok is false
// for a value that is not in the format.
func parseOverride(v []byte, hostType uint32) (s overrideStat, ok bool) {
	var fields [4][]byte
	n := 0
	for start := 0; n < len(fields); n++ {
		end := start
		for end < len(v) && v[end] != ':' {
			end++
		}
		fields[n] = v[start:end]
		if end == len(v) {
			n++
			break
		}
		start = end + 1
	}
	if n < 3 {
		return s, false
	}
	uid, ok1 := parseUint(fields[0], 10, 1<<32-2)
	gid, ok2 := parseUint(fields[1], 10, 1<<32-2)
	mode, ok3 := parseUint(fields[2], 8, 0177777)
	if !ok1 || !ok2 || !ok3 {
		return s, false
	}
	s = overrideStat{uid: uint32(uid), gid: uint32(gid), mode: uint32(mode) & 07777}
	typ := hostType
	if n == 4 {
		var major, minor uint32
		t, ok := parseType(fields[3], &major, &minor)
		if !ok {
			return s, false
		}
		// Only a regular host file stands for another type (never for a directory).
		if hostType == unix.S_IFREG && t != unix.S_IFDIR {
			typ = t
			if t == unix.S_IFBLK || t == unix.S_IFCHR {
				s.major, s.minor = major, minor
			}
		}
	}
	s.mode |= typ
	return s, true
}

// parseType reads the TYPE field.
func parseType(f []byte, major, minor *uint32) (uint32, bool) {
	switch string(f) {
	case "file":
		return unix.S_IFREG, true
	case "dir":
		return unix.S_IFDIR, true
	case "symlink":
		return unix.S_IFLNK, true
	case "pipe":
		return unix.S_IFIFO, true
	case "socket":
		return unix.S_IFSOCK, true
	}
	var typ uint32
	var rest []byte
	switch {
	case hasPrefix(f, "block-"):
		typ, rest = unix.S_IFBLK, f[len("block-"):]
	case hasPrefix(f, "char-"):
		typ, rest = unix.S_IFCHR, f[len("char-"):]
	default:
		return 0, false
	}
	// MAJOR-MINOR, and any further "-..." parts ignored (as containers/storage does).
	dash := 0
	for dash < len(rest) && rest[dash] != '-' {
		dash++
	}
	if dash == len(rest) {
		return 0, false
	}
	end := dash + 1
	for end < len(rest) && rest[end] != '-' {
		end++
	}
	ma, ok1 := parseUint(rest[:dash], 10, 1<<32-1)
	mi, ok2 := parseUint(rest[dash+1:end], 10, 1<<32-1)
	if !ok1 || !ok2 {
		return 0, false
	}
	*major, *minor = uint32(ma), uint32(mi)
	return typ, true
}

func hasPrefix(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == prefix
}

// parseUint parses digits of base (8 or 10) up to max, without allocating.
func parseUint(b []byte, base, max uint64) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		d := uint64(c) - '0'
		if c < '0' || d >= base {
			return 0, false
		}
		v = v*base + d
		if v > max {
			return 0, false
		}
	}
	return v, true
}

// Ownership selects where guest-visible owners and modes live (--ownership).
type Ownership int

// Ownership models.
const (
	// OwnershipPassthrough: a file's owner, group and mode are the host file's (through the id
	// mappers); the default.
	OwnershipPassthrough Ownership = iota
	// OwnershipMapped: they live in OverrideXattr (override.go, mapped.go); host files are plain
	// files and directories of the daemon's user.
	OwnershipMapped
)

// ParseOwnership parses the --ownership flag value.
func ParseOwnership(s string) (Ownership, error) {
	switch s {
	case "passthrough", "":
		return OwnershipPassthrough, nil
	case "mapped":
		return OwnershipMapped, nil
	}
	return 0, fmt.Errorf("unknown --ownership model %q: use passthrough or mapped", s)
}

func (o Ownership) String() string {
	switch o {
	case OwnershipPassthrough:
		return "passthrough"
	case OwnershipMapped:
		return "mapped"
	}
	return fmt.Sprintf("Ownership(%d)", int(o))
}
