// Package e2e boots a real Linux guest under QEMU against a virtio-fs
// daemon (uvfsd, or QEMU's C virtiofsd as the reference) and runs a POSIX
// workout in the mounted share. See scripts/vm for the machinery.
//
// Missing tools skip the tests with the reason, except under CI=true,
// where they fail: CI must never pass by skipping.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/uvfsd/uvfsd/scripts/vm"
)

func inCI() bool { return os.Getenv("CI") == "true" }

// missing skips, or fails under CI=true.
func missing(t *testing.T, format string, args ...any) {
	t.Helper()
	if inCI() {
		t.Fatalf("CI=true and a requirement is missing: "+format, args...)
	}
	t.Skipf(format, args...)
}

// guestStack is a QEMU and the guest kernel booted with it. Every test says
// which it boots: the zero value is the baseline, Debian bookworm's own.
type guestStack int

const (
	// stackBaseline is bookworm's QEMU 7.2 (qemu-system-x86_64 on PATH) and
	// Linux 6.1 (vm.BaselineKernel: UVFS_E2E_KERNEL overrides it).
	stackBaseline guestStack = iota
	// stackQEMU10 is QEMU 10 and Linux 6.12 from bookworm-backports,
	// unpacked side by side under $UVFS_E2E_QEMU10 (/opt/uvfs-e2e/qemu10)
	// by .ci/install-qemu10. Since 6.11 the guest's virtio-fs driver spreads
	// requests over several request queues.
	stackQEMU10
)

func (s guestStack) String() string {
	if s == stackQEMU10 {
		return "QEMU 10 + Linux 6.12"
	}
	return "QEMU 7.2 + Linux 6.1"
}

// qemu10Dir is where .ci/install-qemu10 unpacked QEMU 10 and Linux 6.12.
func qemu10Dir() string {
	if d := os.Getenv("UVFS_E2E_QEMU10"); d != "" {
		return d
	}
	return "/opt/uvfs-e2e/qemu10"
}

// guestTools is what every guest boot needs, found once per stack and test
// binary.
type guestTools struct {
	stack      guestStack
	qemu       string // QEMU binary (or wrapper) to run
	kernel     vm.Kernel
	bootKernel string // uncompressed copy when possible (faster under TCG)
	helper     string // static guest helper, world-readable
}

var (
	toolsMu sync.Mutex
	tools   = map[guestStack]*toolsResult{}
)

type toolsResult struct {
	once     sync.Once
	tools    guestTools
	toolsErr string // reason the tools are missing, for missing()
	buildErr error  // a real failure (e.g. the helper does not compile)
}

// requireGuestTools checks for the baseline QEMU, its kernel with modules,
// busybox and newuidmap, and builds the guest helper.
func requireGuestTools(t *testing.T) guestTools {
	t.Helper()
	return requireStack(t, stackBaseline)
}

// requireStack is requireGuestTools for the given QEMU and kernel.
func requireStack(t *testing.T, s guestStack) guestTools {
	t.Helper()
	toolsMu.Lock()
	r := tools[s]
	if r == nil {
		r = &toolsResult{}
		tools[s] = r
	}
	toolsMu.Unlock()
	r.once.Do(func() { r.tools, r.toolsErr, r.buildErr = findGuestTools(s) })
	if r.buildErr != nil {
		t.Fatal(r.buildErr)
	}
	if r.toolsErr != "" {
		missing(t, "%s: %s", s, r.toolsErr)
	}
	return r.tools
}

func findGuestTools(s guestStack) (guestTools, string, error) {
	g := guestTools{stack: s, qemu: "qemu-system-x86_64"}
	var k vm.Kernel
	var err error
	if s == stackQEMU10 {
		dir := qemu10Dir()
		g.qemu = filepath.Join(dir, "qemu-system-x86_64")
		if _, err := os.Stat(g.qemu); err != nil {
			return guestTools{}, fmt.Sprintf("QEMU 10 not unpacked in %s (run .ci/install-qemu10): %v", dir, err), nil
		}
		k, err = vm.FindKernelSeries(filepath.Join(dir, "boot"), "6.12")
	} else {
		if _, err := exec.LookPath(g.qemu); err != nil {
			return guestTools{}, "qemu-system-x86_64 not found (apt-get install qemu-system-x86)", nil
		}
		k, err = vm.BaselineKernel()
	}
	if err != nil {
		return guestTools{}, err.Error(), nil
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		return guestTools{}, "static busybox not found (apt-get install busybox-static)", nil
	}
	if _, err := exec.LookPath("newuidmap"); err != nil {
		return guestTools{}, "newuidmap not found (apt-get install uidmap)", nil
	}
	if k.ModulesDir == "" {
		return guestTools{}, fmt.Sprintf("no module tree for kernel %s (apt-get install linux-image-amd64)", k.Path), nil
	}
	g.kernel = k
	g.bootKernel, err = vm.UncompressedKernel(k.Path, vm.CacheDir())
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: booting the compressed kernel (slower under TCG): %v\n", err)
	}
	g.helper = filepath.Join(binDir, "uvfs-helper")
	helperOnce.Do(func() { helperErr = vm.BuildHelper(context.Background(), g.helper) })
	if helperErr != nil {
		return guestTools{}, "", helperErr
	}
	return g, "", nil
}

var (
	helperOnce sync.Once
	helperErr  error
)

// binDir holds binaries the test users must be able to run: a directory
// under /tmp with mode 0755 (t.TempDir is 0700 and owned by root).
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "uvfs-e2e-bin-")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: create binary dir:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
