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

// guestTools is what every guest boot needs, found once per test binary.
type guestTools struct {
	kernel     vm.Kernel
	bootKernel string // uncompressed copy when possible (faster under TCG)
	helper     string // static guest helper, world-readable
}

var (
	toolsOnce sync.Once
	tools     guestTools
	toolsErr  string // reason the tools are missing, for missing()
	buildErr  error  // a real failure (e.g. the helper does not compile)
)

// requireGuestTools checks for QEMU, a kernel with modules, busybox and
// newuidmap, and builds the guest helper.
func requireGuestTools(t *testing.T) guestTools {
	t.Helper()
	toolsOnce.Do(func() { tools, toolsErr, buildErr = findGuestTools() })
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	if toolsErr != "" {
		missing(t, "%s", toolsErr)
	}
	return tools
}

func findGuestTools() (guestTools, string, error) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return guestTools{}, "qemu-system-x86_64 not found (apt-get install qemu-system-x86)", nil
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		return guestTools{}, "static busybox not found (apt-get install busybox-static)", nil
	}
	if _, err := exec.LookPath("newuidmap"); err != nil {
		return guestTools{}, "newuidmap not found (apt-get install uidmap)", nil
	}
	k, err := vm.FindKernel(os.Getenv("UVFS_E2E_KERNEL"))
	if err != nil {
		return guestTools{}, err.Error(), nil
	}
	if k.ModulesDir == "" {
		return guestTools{}, fmt.Sprintf("no /lib/modules tree for kernel %s (apt-get install linux-image-amd64)", k.Path), nil
	}
	g := guestTools{kernel: k}
	g.bootKernel, err = vm.UncompressedKernel(k.Path, vm.CacheDir())
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: booting the compressed kernel (slower under TCG): %v\n", err)
	}
	g.helper = filepath.Join(binDir, "uvfs-helper")
	if err := vm.BuildHelper(context.Background(), g.helper); err != nil {
		return guestTools{}, "", err
	}
	return g, "", nil
}

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
