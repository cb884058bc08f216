package userns

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// --seccomp=log. The filter hands every call outside the list to a supervisor
// (SECCOMP_RET_USER_NOTIF), which logs it and lets it run (SECCOMP_USER_NOTIF_FLAG_CONTINUE).
// The supervisor is the process uvfsd was started as, which the filter does not cover and which
// waits outside for the daemon anyway: a supervisor inside the filtered process could itself make
// a call the list lacks (the Go runtime's calls move between releases) and wait for its own
// answer, or wait for a thread that the runtime needs and that holds a lock while it waits.
// SECCOMP_RET_LOG would need no supervisor but only reaches the kernel's audit log, which an
// unprivileged user cannot read; SECCOMP_RET_TRAP raises SIGSYS, which the Go runtime treats as a
// crash (signal.Notify cannot take it) and whose siginfo, which names the call, Go code never sees.

// NewSeccompSupervisor makes the socket pair over which the filtered daemon hands its
// notification fd to the process that logs: pass child to the daemon (Options.Files) and run
// SuperviseSeccomp on parent.
func NewSeccompSupervisor() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socket pair for --seccomp=log: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "seccomp-supervisor"), os.NewFile(uintptr(fds[1]), "seccomp-daemon"), nil
}

// sendSeccompListener passes the notification fd over sock and closes sock.
func sendSeccompListener(sock *os.File, fd int) error {
	defer sock.Close()
	return unix.Sendmsg(int(sock.Fd()), []byte("seccomp"), unix.UnixRights(fd), nil, 0)
}

// receiveSeccompListener waits for the notification fd; EOF means the daemon installed none.
func receiveSeccompListener(sock *os.File) (int, error) {
	defer sock.Close()
	buf, oob := make([]byte, 16), make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return -1, err
	}
	if n == 0 {
		return -1, errors.New("the daemon installed no filter")
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return -1, fmt.Errorf("no notification fd in the message (%v)", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return -1, fmt.Errorf("no notification fd in the message (%v)", err)
	}
	return fds[0], nil
}

// seccompNotif and seccompNotifResp are struct seccomp_notif and struct seccomp_notif_resp
// (linux/seccomp.h), whose sizes SECCOMP_IOCTL_NOTIF_RECV and _SEND encode.
type seccompNotif struct {
	ID    uint64
	Pid   uint32
	Flags uint32
	Nr    int32
	Arch  uint32
	IP    uint64
	Args  [6]uint64
}

type seccompNotifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

// maxReported bounds what SuperviseSeccomp remembers having reported.
const maxReported = 4096

// SuperviseSeccomp runs in the process uvfsd was started as, until that process exits: it
// receives the daemon's notification fd over sock, then logs each system call outside the list
// once (per call, and per value of the argument its rule checks) and lets every call run.
func SuperviseSeccomp(sock *os.File, logf func(format string, a ...any)) {
	fd, err := receiveSeccompListener(sock)
	if err != nil {
		logf("--seccomp=log: no notifications from the daemon: %v", err)
		return
	}
	ctx := seccompContext{} // only for which argument a rule checks
	checked := map[uint32]int{}
	for _, r := range seccompRules(ctx) {
		checked[r.nr] = r.arg
	}
	reported := map[[2]uint64]bool{}
	for {
		var req seccompNotif // the kernel wants it zeroed
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SECCOMP_IOCTL_NOTIF_RECV, uintptr(unsafe.Pointer(&req)))
		switch e {
		case 0:
		case syscall.EINTR, syscall.ENOENT: // interrupted; the caller died or was interrupted meanwhile
			continue
		default:
			logf("--seccomp=log: reading notifications: %v; calls outside the list now fail with ENOSYS", e)
			return
		}
		resp := seccompNotifResp{ID: req.ID, Flags: unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE}
		unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SECCOMP_IOCTL_NOTIF_SEND, uintptr(unsafe.Pointer(&resp)))
		key := [2]uint64{uint64(req.Arch)<<32 | uint64(uint32(req.Nr))}
		arg, ok := checked[uint32(req.Nr)]
		if ok && arg >= 0 {
			key[1] = 1<<32 | uint64(uint32(req.Args[arg]))
		}
		if reported[key] || len(reported) >= maxReported {
			continue
		}
		reported[key] = true
		logf("%s", describeDenied(req, arg, ok))
	}
}

// seccompDeniedPrefix starts the line that reports a call outside the list: tests look for it.
const seccompDeniedPrefix = "seccomp: system call outside the list: "

func describeDenied(req seccompNotif, arg int, listed bool) string {
	if req.Arch != seccompArch {
		return fmt.Sprintf("%scall %d of architecture %#x (thread %d); --seccomp=log lets it run",
			seccompDeniedPrefix, req.Nr, req.Arch, req.Pid)
	}
	what := "not on the list"
	if listed && arg >= 0 {
		what = fmt.Sprintf("argument %d is %#x, which its rule does not allow", arg, uint32(req.Args[arg]))
	}
	return fmt.Sprintf("%s%s (%d, arguments %#x %#x %#x %#x) by thread %d: %s; --seccomp=log lets it run",
		seccompDeniedPrefix, syscallName(uint32(req.Nr)), req.Nr, req.Args[0], req.Args[1], req.Args[2], req.Args[3], req.Pid, what)
}

// syscallName is the name of system call nr on this architecture, as x/sys/unix spells it
// without SYS_ and in lower case.
func syscallName(nr uint32) string {
	if int(nr) < len(syscallNames) && syscallNames[nr] != "" {
		return syscallNames[nr]
	}
	return "syscall_" + strconv.FormatUint(uint64(nr), 10)
}
