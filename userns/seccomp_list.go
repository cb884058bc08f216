package userns

import "golang.org/x/sys/unix"

// The allow-list: every system call uvfsd makes once it serves (after userns.Enter, Sandbox,
// Confine and DropCapabilities; before the first guest request), in every mode (root, a user
// namespace, none; each sandbox, --thread-pool-size, locks, xattrs, ACLs, file handles), and
// those its Go runtime makes. It was derived by tracing the daemon through the e2e workloads
// and checked against the Go runtime's sources; README.md ("seccomp") says how to regenerate and
// check it. Calls the daemon only makes during setup (mount, pivot_root, chroot, capset, prctl
// other than below, landlock_*, execve, socket, bind, listen, setrlimit) are not on it.

// seccompContext is what the rules depend on.
type seccompContext struct {
	pid    uint32 // the daemon's pid: signals go to itself only
	syslog bool   // --syslog: the writer may reconnect to the local syslog daemon
}

// Argument values the rules allow.
const (
	// cloneThreadFlags are the flags with which the Go runtime makes its threads (newosproc;
	// amd64 adds CLONE_SETTLS: archCloneFlags); nothing else may clone.
	cloneThreadFlags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
		unix.CLONE_SYSVSEM | unix.CLONE_THREAD | archCloneFlags
	// prSetVMA: the Go runtime (1.25 and newer) names its anonymous mappings.
	prSetVMA = 0x53564d41
)

func seccompRules(c seccompContext) []sysRule {
	rules := []sysRule{
		// The Go runtime: memory, threads, scheduling, signals, time, its poller.
		allowIfClear(unix.SYS_MMAP, 2, unix.PROT_EXEC), // nothing executable is ever mapped
		allowIfClear(unix.SYS_MPROTECT, 2, unix.PROT_EXEC),
		allow(unix.SYS_MUNMAP),
		allow(unix.SYS_MADVISE),
		allowIf(unix.SYS_CLONE, 0, cloneThreadFlags),
		allow(unix.SYS_EXIT), // a thread (a goroutine that stayed locked to it ended)
		allow(unix.SYS_EXIT_GROUP),
		allow(unix.SYS_FUTEX),
		allow(unix.SYS_SCHED_YIELD),
		allow(unix.SYS_SCHED_GETAFFINITY), // GOMAXPROCS follows the CPUs allowed (Go 1.25)
		allow(unix.SYS_NANOSLEEP),
		allow(unix.SYS_CLOCK_GETTIME), // where the vDSO cannot answer
		allow(unix.SYS_GETRANDOM),
		allow(unix.SYS_GETPID),
		allow(unix.SYS_GETTID),
		allowIf(unix.SYS_TGKILL, 0, c.pid), // preemption and GC signals to its own threads
		allowIf(unix.SYS_KILL, 0, c.pid),
		allow(unix.SYS_RT_SIGACTION),
		allow(unix.SYS_RT_SIGPROCMASK),
		allow(unix.SYS_RT_SIGRETURN),
		allow(unix.SYS_SIGALTSTACK),
		allow(unix.SYS_RESTART_SYSCALL), // a sleep interrupted by a signal goes on
		allowIf(unix.SYS_PRCTL, 0, prSetVMA),
		allow(unix.SYS_EPOLL_CTL),
		allow(unix.SYS_EPOLL_PWAIT),
		allow(unix.SYS_EPOLL_PWAIT2),

		// fds, reading and writing: the runtime, the vhost-user socket, eventfds, files.
		allow(unix.SYS_READ),
		allow(unix.SYS_WRITE),
		allow(unix.SYS_PREAD64), // the runtime rereads the cgroup CPU limit (Go 1.25)
		allow(unix.SYS_PREADV),
		allow(unix.SYS_PWRITEV),
		allow(unix.SYS_CLOSE),
		allow(unix.SYS_DUP),
		allow(unix.SYS_FCNTL), // flags, close-on-exec, OFD locks
		allow(unix.SYS_PPOLL), // a worker's hot wait
		allow(unix.SYS_EVENTFD2),
		allow(unix.SYS_ACCEPT4), // the front-end's connection
		allow(unix.SYS_RECVMSG), // vhost-user messages with their fds
		allow(unix.SYS_SENDMSG),

		// The passthrough file system.
		allow(unix.SYS_OPENAT),
		allow(unix.SYS_OPENAT2), // a live migration's paths, opened beneath the share (passfs/migrate.go)
		allow(unix.SYS_OPEN_BY_HANDLE_AT),
		allow(unix.SYS_NAME_TO_HANDLE_AT),
		allow(unix.SYS_FSTAT),
		allow(unix.SYS_NEWFSTATAT),
		allow(unix.SYS_STATX),
		allow(unix.SYS_FSTATFS),
		allow(unix.SYS_GETDENTS64),
		allow(unix.SYS_LSEEK),
		allow(unix.SYS_READLINKAT),
		allow(unix.SYS_MKDIRAT),
		allow(unix.SYS_MKNODAT),
		allow(unix.SYS_SYMLINKAT),
		allow(unix.SYS_LINKAT),
		allow(unix.SYS_UNLINKAT),
		allow(unix.SYS_RENAMEAT2),
		allow(unix.SYS_FCHMOD),
		allow(unix.SYS_FCHMODAT),
		allow(unix.SYS_FCHOWNAT),
		allow(unix.SYS_UTIMENSAT),
		allow(unix.SYS_FTRUNCATE),
		allow(unix.SYS_FALLOCATE),
		allow(unix.SYS_FSYNC),
		allow(unix.SYS_FDATASYNC),
		allow(unix.SYS_SYNCFS),
		allow(unix.SYS_COPY_FILE_RANGE),
		allow(unix.SYS_FLOCK),
		allow(unix.SYS_FGETXATTR),
		allow(unix.SYS_FSETXATTR),
		allow(unix.SYS_FLISTXATTR),
		allow(unix.SYS_FREMOVEXATTR),
		// xattrs of symlinks and special files, by /proc/self/fd/N from a thread of its own
		// (passfs/xattr_special.go), which first unshares its working directory.
		allow(unix.SYS_GETXATTR),
		allow(unix.SYS_SETXATTR),
		allow(unix.SYS_LISTXATTR),
		allow(unix.SYS_REMOVEXATTR),
		allowIf(unix.SYS_UNSHARE, 0, unix.CLONE_FS),
		allow(unix.SYS_FCHDIR),
		// Per-request credentials, on one locked thread (passfs/creds.go).
		allow(unix.SYS_SETFSUID),
		allow(unix.SYS_SETFSGID),
		allow(unix.SYS_SETGROUPS),
	}
	if c.syslog {
		// log/syslog's reconnect, to the local daemon only.
		rules = append(rules, allowIf(unix.SYS_SOCKET, 0, unix.AF_UNIX), allow(unix.SYS_CONNECT))
	}
	return rules
}
