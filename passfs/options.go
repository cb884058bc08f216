package passfs

import (
	"fmt"
	"os"

	"github.com/uvfsd/uvfsd/fuse"
)

// CachePolicy selects how long the guest may cache entries, attributes and data (--cache).
type CachePolicy int

// Cache policies, as in the Rust virtiofsd.
const (
	CacheAuto     CachePolicy = iota // 1 s timeouts, page cache used normally
	CacheAlways                      // 86400 s timeouts, KEEP_CACHE (and CACHE_DIR for directories)
	CacheMetadata                    // 86400 s timeouts, DIRECT_IO for file data
	CacheNever                       // 0 s timeouts, DIRECT_IO for file data
)

// ParseCachePolicy parses the --cache flag value.
func ParseCachePolicy(s string) (CachePolicy, error) {
	switch s {
	case "auto":
		return CacheAuto, nil
	case "always":
		return CacheAlways, nil
	case "metadata":
		return CacheMetadata, nil
	case "never", "none": // "none" is the C virtiofsd's spelling
		return CacheNever, nil
	}
	return 0, fmt.Errorf("unknown cache policy %q: use auto, always, metadata or never", s)
}

func (c CachePolicy) String() string {
	switch c {
	case CacheAuto:
		return "auto"
	case CacheAlways:
		return "always"
	case CacheMetadata:
		return "metadata"
	case CacheNever:
		return "never"
	}
	return fmt.Sprintf("CachePolicy(%d)", int(c))
}

// timeout is the entry and attribute timeout in seconds for the policy.
func (c CachePolicy) timeout() uint64 {
	switch c {
	case CacheNever:
		return 0
	case CacheMetadata, CacheAlways:
		return 86400
	}
	return 1
}

// CachesFileData reports whether the guest may keep file data in its page cache. Files opened
// without OPEN (Options.NoOpen) are always cached (FOPEN_KEEP_CACHE), so no-open mode needs it.
func (c CachePolicy) CachesFileData() bool { return c.openFlags(false)&fuse.FopenDirectIO == 0 }

// openFlags are the FOPEN_* flags a new file (dir false) or directory (dir true) handle gets.
func (c CachePolicy) openFlags(dir bool) uint32 {
	switch c {
	case CacheNever:
		if !dir {
			return fuse.FopenDirectIO
		}
	case CacheMetadata:
		if !dir {
			return fuse.FopenDirectIO
		}
		return fuse.FopenCacheDir
	case CacheAlways:
		if dir {
			return fuse.FopenKeepCache | fuse.FopenCacheDir
		}
		return fuse.FopenKeepCache
	}
	return 0
}

// FileHandleMode selects whether nodes are also kept as file handles (--inode-file-handles), so
// that a node whose fd the fd budget closed reopens with open_by_handle_at instead of by name.
type FileHandleMode int

// File handle modes, as in the Rust virtiofsd. The zero value is the default, prefer.
const (
	FileHandlesPrefer    FileHandleMode = iota // use them if the probe in New succeeds, else reopen by name
	FileHandlesNever                           // always reopen by (parent, name)
	FileHandlesMandatory                       // New fails when they cannot be used
)

// ParseInodeFileHandles parses the --inode-file-handles flag value.
func ParseInodeFileHandles(s string) (FileHandleMode, error) {
	switch s {
	case "prefer", "":
		return FileHandlesPrefer, nil
	case "never":
		return FileHandlesNever, nil
	case "mandatory":
		return FileHandlesMandatory, nil
	}
	return 0, fmt.Errorf("unknown --inode-file-handles mode %q: use never, prefer or mandatory", s)
}

func (m FileHandleMode) String() string {
	switch m {
	case FileHandlesPrefer:
		return "prefer"
	case FileHandlesNever:
		return "never"
	case FileHandlesMandatory:
		return "mandatory"
	}
	return fmt.Sprintf("FileHandleMode(%d)", int(m))
}

// IDMapper translates ids between the guest and the ids the daemon's syscalls see (its namespace).
type IDMapper interface {
	GuestToNS(id uint32) (uint32, error) // an error means the id is forbidden: the guest gets EPERM
	NSToGuest(id uint32) uint32
}

// XattrMapper translates extended attribute names (--xattrmap); *XattrMap (xattrmap.go) is the
// implementation. Names carry no trailing NUL. Results are appended to dst, so callers with a
// buffer of their own do not allocate.
type XattrMapper interface {
	// ToHost maps a name the guest uses to the name stored on the host; an errno other than 0
	// refuses the request with it (e.g. EPERM for a "bad" rule).
	ToHost(dst, guestName []byte) (hostName []byte, errno fuse.Errno)
	// FromHost maps a host name back for LISTXATTR; ok false hides the name from the guest.
	FromHost(dst, hostName []byte) (guestName []byte, ok bool)
}

// Options configure New.
type Options struct {
	RootFD     int // O_PATH|O_DIRECTORY fd of the shared directory; the FS owns it from New on
	ProcSelfFD int // O_PATH fd of /proc/self/fd opened before the sandbox; -1: open it in New
	Cache      CachePolicy

	// MountInfo is /proc/self/mountinfo of the daemon's mount namespace, opened before a sandbox
	// forbids it and so that it lists the mounts in the shared directory (userns.Jail); the
	// caller keeps it open while the FS lives. nil: New opens it beside ProcSelfFD. passfs reads
	// it to tell devtmpfs (/dev) from tmpfs (pseudofs.go).
	MountInfo *os.File

	// Writeback: O_WRONLY opens become O_RDWR and O_APPEND is dropped (once INIT agreed on it).
	// AllowDirectIO keeps the guest's O_DIRECT; PreserveNoatime keeps O_NOATIME. AllowMmap is
	// for the server's INIT (DIRECT_IO_ALLOW_MMAP): passfs keeps FOPEN_DIRECT_IO for the
	// metadata and never policies either way, as virtiofsd does. Readonly: EROFS for every
	// modifying request and writing open.
	Writeback, AllowDirectIO, AllowMmap, PreserveNoatime, Readonly bool
	// Xattr enables the xattr requests (else ENOSYS). PosixACL: with DONT_MASK the umask is not
	// applied under a default ACL. SecurityLabel: creating requests set the security context the
	// guest sends. KillprivV2: KILL_SUIDGID flags on OPEN/WRITE are honoured. AnnounceSubmounts:
	// mount points get fuse.AttrSubmount.
	Xattr, PosixACL, SecurityLabel, KillprivV2, AnnounceSubmounts bool
	// NoOpen: when the guest offers FUSE_NO_OPEN_SUPPORT (and the cache policy and locks allow),
	// OPEN of a regular file answers ENOSYS and files are read and written through per-node data
	// fds (nodedata.go). The server must then not agree to ATOMIC_O_TRUNC.
	NoOpen bool

	XattrMap   XattrMapper // nil: names are passed through unchanged
	UIDs, GIDs IDMapper    // nil: identity

	// Ownership: where owners and modes live; OwnershipMapped keeps them in OverrideXattr
	// (mapped.go) and cannot be combined with PosixACL.
	Ownership Ownership

	// SetCreds: the daemon may switch per-thread fsuid/fsgid (CAP_SETUID/CAP_SETGID, as root or root
	// in its user namespace). false: files are created as the daemon and chown is left to the kernel.
	SetCreds bool

	// InodeFileHandles: see FileHandleMode. FDBudget is how many inode O_PATH fds stay open at
	// most (doc.go); 0 derives it from RLIMIT_NOFILE at New.
	InodeFileHandles FileHandleMode
	FDBudget         int

	// Migration: how nodes travel in a live migration (migrate.go).
	Migration MigrationOptions

	Logf func(format string, a ...any) // nil: no logging
}

type identityMapper struct{}

func (identityMapper) GuestToNS(id uint32) (uint32, error) { return id, nil }
func (identityMapper) NSToGuest(id uint32) uint32          { return id }

// The rule-language implementation must stay usable as Options.XattrMap.
var _ XattrMapper = (*XattrMap)(nil)
