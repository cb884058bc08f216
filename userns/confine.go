package userns

import (
	"fmt"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Confinement says what restricts a daemon that serves without chroot
// or pivot_root (--sandbox=none, or no usable user namespace).
type Confinement struct {
	// LandlockABI is the Landlock version in force, 0 when the kernel
	// has none: then only NoNewPrivs holds.
	LandlockABI int
	NoNewPrivs  bool
}

// String says what is in force, for the user.
func (c Confinement) String() string {
	switch {
	case c.LandlockABI > 0 && c.NoNewPrivs:
		return fmt.Sprintf("Landlock (ABI %d) and no_new_privs", c.LandlockABI)
	case c.NoNewPrivs:
		return "no_new_privs only (this kernel has no Landlock: Linux 5.13 or newer with CONFIG_SECURITY_LANDLOCK and lsm=landlock)"
	}
	return "nothing"
}

// Confined reports whether anything is in force.
func (c Confinement) Confined() bool { return c.NoNewPrivs || c.LandlockABI > 0 }

// Confine restricts every thread of this process, for good, to the
// directory tree of rootFD (an O_PATH fd of the shared directory): with
// Landlock where the kernel has it, files outside can be neither
// opened, created, removed nor executed, even by a bug in uvfsd, and
// no TCP socket can be bound or connected; and it sets no_new_privs,
// which Landlock needs and which keeps an exec from gaining privilege.
// Neither needs any privilege. The fds already open stay usable, so
// open the listening socket, /proc/self/fd and the share first.
//
// Reopening a share inode through /proc/self/fd still works: Landlock
// checks the file that is opened, which lies in the share.
func Confine(rootFD int) (Confinement, error) {
	return confine(rootFD, syscall.AllThreadsSyscall)
}

func confine(rootFD int, allThreads allThreadsFunc) (Confinement, error) {
	var c Confinement
	if _, _, e := allThreads(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); e != 0 {
		if e == syscall.ENOTSUP {
			return c, fmt.Errorf("setting no_new_privs: %w", errCgo)
		}
		return c, fmt.Errorf("setting no_new_privs: %w", e)
	}
	c.NoNewPrivs = true
	abi := landlockABI()
	if abi <= 0 {
		return c, nil
	}
	ruleset, err := landlockRuleset(rootFD, abi)
	if err != nil {
		return c, err
	}
	defer unix.Close(ruleset)
	if _, _, e := allThreads(unix.SYS_LANDLOCK_RESTRICT_SELF, uintptr(ruleset), 0, 0); e != 0 {
		return c, fmt.Errorf("landlock_restrict_self: %w", e)
	}
	c.LandlockABI = abi
	return c, nil
}

// landlockABI is the kernel's Landlock version, 0 without Landlock.
func landlockABI() int {
	v, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if e != 0 {
		return 0 // ENOSYS: too old; EOPNOTSUPP: built without it or not enabled
	}
	return int(v)
}

// landlockFSAccess is every file system right a kernel of Landlock ABI
// abi knows: all of them are handled (denied outside the share), and
// all are allowed beneath it.
func landlockFSAccess(abi int) uint64 {
	rights := uint64(unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_READ_FILE |
		unix.LANDLOCK_ACCESS_FS_READ_DIR | unix.LANDLOCK_ACCESS_FS_REMOVE_DIR | unix.LANDLOCK_ACCESS_FS_REMOVE_FILE |
		unix.LANDLOCK_ACCESS_FS_MAKE_CHAR | unix.LANDLOCK_ACCESS_FS_MAKE_DIR | unix.LANDLOCK_ACCESS_FS_MAKE_REG |
		unix.LANDLOCK_ACCESS_FS_MAKE_SOCK | unix.LANDLOCK_ACCESS_FS_MAKE_FIFO | unix.LANDLOCK_ACCESS_FS_MAKE_BLOCK |
		unix.LANDLOCK_ACCESS_FS_MAKE_SYM)
	if abi >= 2 {
		rights |= unix.LANDLOCK_ACCESS_FS_REFER // rename and link across directories
	}
	if abi >= 3 {
		rights |= unix.LANDLOCK_ACCESS_FS_TRUNCATE
	}
	if abi >= 5 {
		rights |= unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	}
	// Later rights (connecting to unix sockets by path) are left
	// unhandled: syslog's /dev/log lies outside the share.
	return rights
}

// landlockRuleset builds a ruleset that allows everything beneath rootFD
// and nothing else, with no TCP (ABI 4) and no signals or abstract unix
// sockets beyond this process's domain (ABI 6).
func landlockRuleset(rootFD, abi int) (int, error) {
	attr := unix.LandlockRulesetAttr{Handled_access_fs: landlockFSAccess(abi)}
	size := unsafe.Offsetof(attr.Handled_access_net) // a kernel refuses fields it does not know
	if abi >= 4 {
		attr.Handled_access_net = unix.LANDLOCK_ACCESS_NET_BIND_TCP | unix.LANDLOCK_ACCESS_NET_CONNECT_TCP
		size = unsafe.Offsetof(attr.Scoped)
	}
	if abi >= 6 {
		attr.Scoped = unix.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | unix.LANDLOCK_SCOPE_SIGNAL
		size = unsafe.Offsetof(attr.Quiet_access_fs)
	}
	fd, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), size, 0)
	runtime.KeepAlive(&attr)
	if e != 0 {
		return -1, fmt.Errorf("landlock_create_ruleset: %w", e)
	}
	beneath := unix.LandlockPathBeneathAttr{Allowed_access: attr.Handled_access_fs, Parent_fd: int32(rootFD)}
	_, _, e = unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, fd, unix.LANDLOCK_RULE_PATH_BENEATH, uintptr(unsafe.Pointer(&beneath)), 0, 0, 0)
	runtime.KeepAlive(&beneath)
	if e != 0 {
		unix.Close(int(fd))
		return -1, fmt.Errorf("landlock_add_rule for the shared directory: %w", e)
	}
	return int(fd), nil
}
