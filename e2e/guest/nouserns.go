package guest

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// NoUserNamespacePackage is the import path of the launcher that runs a
// command the way a container's default profile does: no_new_privs set,
// and a seccomp filter that refuses user namespaces (see
// ForbidUserNamespaces).
const NoUserNamespacePackage = "github.com/uvfsd/uvfsd/e2e/guest/cmd/nouserns"

// userNamespaceFilter is the part of Docker's and podman's default
// seccomp profile that matters to uvfsd: unshare and clone with
// CLONE_NEWUSER fail with EPERM, and clone3, whose flags a filter cannot
// read, with ENOSYS, so that callers (Go's os/exec) fall back to clone.
func userNamespaceFilter() []unix.SockFilter {
	const (
		offNr   = 0  // seccomp_data.nr
		offArch = 4  // seccomp_data.arch
		offArg0 = 16 // the low half of seccomp_data.args[0] (little endian): clone's and unshare's flags
	)
	stmt := func(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }
	jump := func(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
		return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
	}
	const ld, jeq, jset, ret = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K,
		unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, unix.BPF_RET | unix.BPF_K
	return []unix.SockFilter{
		/* 0 */ stmt(ld, offArch),
		/* 1 */ jump(jeq, unix.AUDIT_ARCH_X86_64, 0, 7), // another ABI: allow (9)
		/* 2 */ stmt(ld, offNr),
		/* 3 */ jump(jeq, unix.SYS_CLONE3, 6, 0), // -> 10
		/* 4 */ jump(jeq, unix.SYS_UNSHARE, 1, 0), // -> 6
		/* 5 */ jump(jeq, unix.SYS_CLONE, 0, 3), // -> 6, else 9
		/* 6 */ stmt(ld, offArg0),
		/* 7 */ jump(jset, unix.CLONE_NEWUSER, 0, 1), // -> 8, else 9
		/* 8 */ stmt(ret, unix.SECCOMP_RET_ERRNO|uint32(unix.EPERM)),
		/* 9 */ stmt(ret, unix.SECCOMP_RET_ALLOW),
		/* 10 */ stmt(ret, unix.SECCOMP_RET_ERRNO|uint32(unix.ENOSYS)),
	}
}

// ForbidUserNamespaces sets no_new_privs and installs the filter on every
// thread of this process; what it execs keeps both.
func ForbidUserNamespaces() error {
	if runtime.GOARCH != "amd64" {
		return fmt.Errorf("the user namespace filter is written for amd64, not %s", runtime.GOARCH)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("setting no_new_privs: %w", err)
	}
	filter := userNamespaceFilter()
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	_, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(filter)
	if e != 0 {
		return fmt.Errorf("installing the seccomp filter: %w", e)
	}
	return nil
}
