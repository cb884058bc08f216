package userns

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
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

// allThreadsFunc is syscall.AllThreadsSyscall; tests replace it.
type allThreadsFunc func(trap, a1, a2, a3 uintptr) (r1, r2 uintptr, err syscall.Errno)

// errCgo: AllThreadsSyscall refuses to run in a binary linked with cgo.
var errCgo = errors.New("capabilities are per thread and this binary was built with cgo, which cannot change them on all threads")

// DropCapabilities reduces the bounding, ambient, permitted, effective
// and inheritable sets of every thread to KeptCapabilities plus extra
// (intersected with what the process has); extra is e.g.
// CAP_DAC_READ_SEARCH for file handles. Call it after Sandbox. In a cgo
// build it only warns on stderr: build uvfsd with CGO_ENABLED=0.
func DropCapabilities(extra ...int) error {
	return dropCapabilitiesOrWarn(os.Stderr, lastCap(), syscall.AllThreadsSyscall, extra...)
}

func dropCapabilitiesOrWarn(w io.Writer, last int, allThreads allThreadsFunc, extra ...int) error {
	err := dropCapabilities(last, allThreads, extra...)
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

func keptMask(extra ...int) uint64 {
	var m uint64
	for _, c := range append(KeptCapabilities[:len(KeptCapabilities):len(KeptCapabilities)], extra...) {
		m |= 1 << c
	}
	return m
}

func dropCapabilities(last int, allThreads allThreadsFunc, extra ...int) error {
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
	keep := keptMask(extra...)
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
