package userns

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Seccomp actions, as virtiofsd's --seccomp names them: what the filter does with a system call
// that is not on the allow-list (seccomp_list.go).
const (
	SeccompKill = "kill" // the kernel kills the whole process with SIGSYS (the default)
	SeccompLog  = "log"  // the call runs, and the process uvfsd was started as logs its name
	SeccompTrap = "trap" // SIGSYS to the thread: the Go runtime prints the stack and exits 2
	SeccompNone = "none" // no filter
)

// SeccompOptions configure InstallSeccomp.
type SeccompOptions struct {
	Action string // SeccompKill, SeccompLog or SeccompTrap
	// Syslog lets the syslog writer reconnect to the local daemon: socket(AF_UNIX) and connect.
	// Without it no socket can be made once the filter is in force.
	Syslog bool
	// Supervisor is, under SeccompLog, the socket to the process that logs the calls outside the
	// list (SuperviseSeccomp): the filter's notification fd is sent there.
	Supervisor *os.File
}

// ErrSeccompUnavailable says that no filter can be installed here, for a reason the error gives:
// the caller may serve without one, saying so.
var ErrSeccompUnavailable = errors.New("no seccomp filter")

var (
	// errSeccompCgo: the list is made for the Go runtime's own calls.
	errSeccompCgo = fmt.Errorf("%w: this binary links cgo, whose C library makes system calls uvfsd's list "+
		"does not allow (glibc makes threads with clone3); build uvfsd with CGO_ENABLED=0", ErrSeccompUnavailable)
	errSeccompArch = fmt.Errorf("%w: uvfsd has no seccomp allow-list for %s yet (README.md, \"seccomp\", says how to make one)",
		ErrSeccompUnavailable, runtime.GOARCH)
)

// InstallSeccomp sets no_new_privs and puts the allow-list filter on every thread of the process
// (SECCOMP_FILTER_FLAG_TSYNC), for good. Call it after setup, once the process makes only the
// calls a serving daemon makes, and before the first guest request. It returns the number of
// system calls allowed.
func InstallSeccomp(o SeccompOptions) (int, error) {
	if seccompArch == 0 {
		return 0, errSeccompArch
	}
	rules := seccompRules(seccompContext{pid: uint32(os.Getpid()), syslog: o.Syslog})
	var deny, flags uint32
	switch o.Action {
	case SeccompKill:
		deny, flags = unix.SECCOMP_RET_KILL_PROCESS, unix.SECCOMP_FILTER_FLAG_TSYNC
	case SeccompTrap:
		deny, flags = unix.SECCOMP_RET_TRAP, unix.SECCOMP_FILTER_FLAG_TSYNC
	case SeccompLog:
		if o.Supervisor == nil {
			return 0, errors.New("--seccomp=log: internal error: no supervising process")
		}
		// The notification fd comes back from seccomp(2); with TSYNC that needs TSYNC_ESRCH
		// (Linux 5.7), and letting a notified call run needs Linux 5.5.
		deny = unix.SECCOMP_RET_USER_NOTIF
		flags = unix.SECCOMP_FILTER_FLAG_TSYNC | unix.SECCOMP_FILTER_FLAG_TSYNC_ESRCH | unix.SECCOMP_FILTER_FLAG_NEW_LISTENER
	default:
		return 0, fmt.Errorf("unknown seccomp action %q: use %s, %s, %s or %s", o.Action, SeccompKill, SeccompLog, SeccompTrap, SeccompNone)
	}
	prog, err := compileSeccomp(seccompArch, rules, deny)
	if err != nil {
		return 0, err
	}

	// seccomp(2) wants no_new_privs (or CAP_SYS_ADMIN, gone by now). AllThreadsSyscall also
	// tells a binary that links cgo, whose C library makes calls the list does not know (glibc
	// makes threads with clone3, whose flags a filter cannot see).
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); e != 0 {
		if e == syscall.ENOTSUP {
			return 0, errSeccompCgo
		}
		return 0, fmt.Errorf("setting no_new_privs for seccomp: %w", e)
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	r, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uintptr(flags), uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	switch {
	case e == syscall.EINVAL && o.Action == SeccompLog:
		return 0, errors.New("installing the seccomp filter: this kernel cannot report calls to another process " +
			"(--seccomp=log needs Linux 5.7 or newer); use --seccomp=kill or trap")
	case e != 0:
		return 0, fmt.Errorf("installing the seccomp filter: %w", e)
	case o.Action != SeccompLog && r != 0:
		return 0, fmt.Errorf("installing the seccomp filter: thread %d could not take it (it has a filter of its own)", r)
	}
	if o.Action == SeccompLog {
		err := sendSeccompListener(o.Supervisor, int(r))
		unix.Close(int(r))
		if err != nil {
			// The filter is in force and nobody answers: every call outside the list would wait.
			return 0, fmt.Errorf("handing the seccomp notifications to the supervising process: %w", err)
		}
	}
	return len(rules), nil
}
