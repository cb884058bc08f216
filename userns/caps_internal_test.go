package userns

import (
	"bytes"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestDropCapabilitiesCgoWarning(t *testing.T) {
	var stderr bytes.Buffer
	cgo := func(trap, a1, a2, a3 uintptr) (uintptr, uintptr, syscall.Errno) { return 0, 0, syscall.ENOTSUP }
	if err := dropCapabilitiesOrWarn(&stderr, 40, cgo, KeptCapabilities); err != nil {
		t.Fatalf("cgo build: %v, want only a warning", err)
	}
	if !strings.Contains(stderr.String(), "CGO_ENABLED=0") {
		t.Errorf("warning %q does not say how to build", stderr.String())
	}
}

func TestDropCapabilitiesCalls(t *testing.T) {
	var dropped []uintptr
	var capsetEff, capsetPrm uint64
	fake := func(trap, a1, a2, a3 uintptr) (uintptr, uintptr, syscall.Errno) {
		switch {
		case trap == unix.SYS_PRCTL && a1 == unix.PR_CAPBSET_DROP:
			dropped = append(dropped, a2)
		case trap == unix.SYS_CAPSET:
			// a2 is &data[0] of dropCapabilities, still alive during the call.
			data := *(**[2]unix.CapUserData)(unsafe.Pointer(&a2))
			capsetEff = uint64(data[1].Effective)<<32 | uint64(data[0].Effective)
			capsetPrm = uint64(data[1].Permitted)<<32 | uint64(data[0].Permitted)
		}
		return 0, 0, 0
	}
	if err := dropCapabilities(40, fake, KeptCapabilities); err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 41-len(KeptCapabilities) {
		t.Errorf("dropped %d capabilities from the bounding set, want %d", len(dropped), 41-len(KeptCapabilities))
	}
	for _, c := range dropped {
		if capMask(KeptCapabilities)&(1<<c) != 0 {
			t.Errorf("dropped kept capability %d", c)
		}
	}
	var hdr = unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var cur [2]unix.CapUserData
	if err := unix.Capget(&hdr, &cur[0]); err != nil {
		t.Fatal(err)
	}
	want := (uint64(cur[1].Permitted)<<32 | uint64(cur[0].Permitted)) & capMask(KeptCapabilities)
	if capsetEff != want || capsetPrm != want {
		t.Errorf("capset effective %#x permitted %#x, want %#x", capsetEff, capsetPrm, want)
	}
	failing := func(trap, a1, a2, a3 uintptr) (uintptr, uintptr, syscall.Errno) { return 0, 0, syscall.EIO }
	if err := dropCapabilities(40, failing, KeptCapabilities); err == nil || !strings.Contains(err.Error(), "bounding set") {
		t.Errorf("failing prctl: %v", err)
	}
}
