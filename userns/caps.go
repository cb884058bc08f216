package userns

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// KeptCapabilities are what a file server acting for many users needs:
// the same set virtiofsd keeps by default. Everything else, including
// CAP_SYS_ADMIN (mounts are done by then), is dropped.
var KeptCapabilities = []int{
	unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FOWNER, unix.CAP_FSETID,
	unix.CAP_SETGID, unix.CAP_SETUID, unix.CAP_MKNOD, unix.CAP_SETFCAP,
}

// capabilityNames are the names --modcaps takes: capabilities(7) without "CAP_", in any case.
var capabilityNames = map[string]int{
	"chown": unix.CAP_CHOWN, "dac_override": unix.CAP_DAC_OVERRIDE, "dac_read_search": unix.CAP_DAC_READ_SEARCH,
	"fowner": unix.CAP_FOWNER, "fsetid": unix.CAP_FSETID, "kill": unix.CAP_KILL, "setgid": unix.CAP_SETGID,
	"setuid": unix.CAP_SETUID, "setpcap": unix.CAP_SETPCAP, "linux_immutable": unix.CAP_LINUX_IMMUTABLE,
	"net_bind_service": unix.CAP_NET_BIND_SERVICE, "net_broadcast": unix.CAP_NET_BROADCAST,
	"net_admin": unix.CAP_NET_ADMIN, "net_raw": unix.CAP_NET_RAW, "ipc_lock": unix.CAP_IPC_LOCK,
	"ipc_owner": unix.CAP_IPC_OWNER, "sys_module": unix.CAP_SYS_MODULE, "sys_rawio": unix.CAP_SYS_RAWIO,
	"sys_chroot": unix.CAP_SYS_CHROOT, "sys_ptrace": unix.CAP_SYS_PTRACE, "sys_pacct": unix.CAP_SYS_PACCT,
	"sys_admin": unix.CAP_SYS_ADMIN, "sys_boot": unix.CAP_SYS_BOOT, "sys_nice": unix.CAP_SYS_NICE,
	"sys_resource": unix.CAP_SYS_RESOURCE, "sys_time": unix.CAP_SYS_TIME, "sys_tty_config": unix.CAP_SYS_TTY_CONFIG,
	"mknod": unix.CAP_MKNOD, "lease": unix.CAP_LEASE, "audit_write": unix.CAP_AUDIT_WRITE,
	"audit_control": unix.CAP_AUDIT_CONTROL, "setfcap": unix.CAP_SETFCAP, "mac_override": unix.CAP_MAC_OVERRIDE,
	"mac_admin": unix.CAP_MAC_ADMIN, "syslog": unix.CAP_SYSLOG, "wake_alarm": unix.CAP_WAKE_ALARM,
	"block_suspend": unix.CAP_BLOCK_SUSPEND, "audit_read": unix.CAP_AUDIT_READ, "perfmon": unix.CAP_PERFMON,
	"bpf": unix.CAP_BPF, "checkpoint_restore": unix.CAP_CHECKPOINT_RESTORE,
}

// ModifiedCapabilities applies a --modcaps list to KeptCapabilities: "+name" adds a capability,
// "-name" removes one, items separated by ':' ("+sys_admin:-chown", as virtiofsd takes it). An
// empty list keeps KeptCapabilities.
func ModifiedCapabilities(modcaps string) ([]int, error) {
	keep := append([]int(nil), KeptCapabilities...)
	if modcaps == "" {
		return keep, nil
	}
	for _, item := range strings.Split(modcaps, ":") {
		if len(item) < 2 || (item[0] != '+' && item[0] != '-') {
			return nil, fmt.Errorf("bad item %q: want +name or -name separated by ':', e.g. +sys_admin:-chown", item)
		}
		c, ok := capabilityNames[strings.TrimPrefix(strings.ToLower(item[1:]), "cap_")]
		if !ok {
			return nil, fmt.Errorf("unknown capability %q (names as in capabilities(7), e.g. sys_admin)", item[1:])
		}
		keep = slices.DeleteFunc(keep, func(k int) bool { return k == c })
		if item[0] == '+' {
			keep = append(keep, c)
		}
	}
	return keep, nil
}

// allThreadsFunc is syscall.AllThreadsSyscall; tests replace it.
type allThreadsFunc func(trap, a1, a2, a3 uintptr) (r1, r2 uintptr, err syscall.Errno)

// errCgo: AllThreadsSyscall refuses to run in a binary linked with cgo.
var errCgo = errors.New("capabilities, no_new_privs and Landlock are per thread, and this binary was built with cgo, which cannot change them on all threads")

// DropCapabilities reduces the bounding, ambient, permitted, effective
// and inheritable sets of every thread to keep (usually KeptCapabilities,
// or ModifiedCapabilities, plus e.g. CAP_DAC_READ_SEARCH for file
// handles), intersected with what the process has. Call it after
// Sandbox. In a binary that links cgo (a package with cgo files crept
// into the import graph, or -race) it only warns on stderr.
func DropCapabilities(keep []int) error {
	return dropCapabilitiesOrWarn(os.Stderr, lastCap(), syscall.AllThreadsSyscall, keep)
}

func dropCapabilitiesOrWarn(w io.Writer, last int, allThreads allThreadsFunc, keep []int) error {
	err := dropCapabilities(last, allThreads, keep)
	if errors.Is(err, errCgo) {
		fmt.Fprintf(w, "uvfsd: warning: %v; all capabilities are kept. Build uvfsd with CGO_ENABLED=0.\n", err)
		return nil
	}
	return err
}

func lastCap() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if n, perr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && perr == nil {
		return n
	}
	return unix.CAP_LAST_CAP
}

func capMask(caps []int) uint64 {
	var m uint64
	for _, c := range caps {
		m |= 1 << c
	}
	return m
}

func dropCapabilities(last int, allThreads allThreadsFunc, keepCaps []int) error {
	run := func(what string, trap, a1, a2, a3 uintptr) error {
		_, _, e := allThreads(trap, a1, a2, a3)
		switch e {
		case 0:
			return nil
		case syscall.ENOTSUP:
			return errCgo
		}
		return fmt.Errorf("%s: %w", what, e)
	}
	keep := capMask(keepCaps)
	// The bounding set first: dropping from it needs CAP_SETPCAP, which
	// the capset below removes. Without CAP_SETPCAP (no namespace, not
	// root) there is nothing to drop from it that matters.
	for c := 0; c <= last; c++ {
		if keep&(1<<c) != 0 {
			continue
		}
		err := run("dropping capability "+strconv.Itoa(c)+" from the bounding set", unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0)
		if errors.Is(err, syscall.EPERM) {
			break
		}
		if err != nil {
			return err
		}
	}
	err := run("clearing ambient capabilities", unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0)
	if err != nil && !errors.Is(err, syscall.EINVAL) { // EINVAL: kernel before 4.3
		return err
	}

	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("reading capabilities: %w", err)
	}
	permitted := (uint64(data[1].Permitted)<<32 | uint64(data[0].Permitted)) & keep
	for i := range data {
		data[i] = unix.CapUserData{
			Effective: uint32(permitted >> (32 * i)),
			Permitted: uint32(permitted >> (32 * i)),
		}
	}
	err = run("setting capabilities", unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	runtime.KeepAlive(&hdr)
	runtime.KeepAlive(&data)
	return err
}
