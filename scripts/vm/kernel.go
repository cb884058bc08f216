package vm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Kernel is a guest kernel image and the module tree built for it.
type Kernel struct {
	Path       string // bzImage passed to QEMU -kernel
	Version    string // release, e.g. "6.1.0-56-amd64"; empty if unknown
	ModulesDir string // /lib/modules/<Version>; empty if not found
}

// FindKernel picks the guest kernel: explicit if not empty, else
// /boot/vmlinuz-$(uname -r) if readable, else the newest readable
// /boot/vmlinuz-*. The module tree is looked up from the file name: beside
// the image (DIR/boot/vmlinuz-R and DIR/lib/modules/R, a kernel package
// unpacked into DIR), else in /lib/modules.
func FindKernel(explicit string) (Kernel, error) {
	var uts unix.Utsname
	release := ""
	if err := unix.Uname(&uts); err == nil {
		release = unix.ByteSliceToString(uts.Release[:])
	}
	return findKernel("/boot", "/lib/modules", release, explicit)
}

func findKernel(bootDir, modulesRoot, release, explicit string) (Kernel, error) {
	path := explicit
	if path == "" {
		candidates := []string{}
		if release != "" {
			candidates = append(candidates, filepath.Join(bootDir, "vmlinuz-"+release))
		}
		matches, _ := filepath.Glob(filepath.Join(bootDir, "vmlinuz-*"))
		sort.Slice(matches, func(i, j int) bool {
			return versionLess(kernelVersionOf(matches[j]), kernelVersionOf(matches[i]))
		})
		candidates = append(candidates, matches...)
		for _, c := range candidates {
			if readable(c) {
				path = c
				break
			}
		}
		if path == "" {
			return Kernel{}, fmt.Errorf("no readable guest kernel in %s/vmlinuz-*: install one (apt-get install linux-image-amd64) or pass an explicit kernel path", bootDir)
		}
	} else if !readable(path) {
		return Kernel{}, fmt.Errorf("guest kernel %s is not readable: fix its permissions or pick another", path)
	}
	return kernelAt(path, modulesRoot), nil
}

// kernelAt describes the image at path, with its module tree beside it or
// under modulesRoot.
func kernelAt(path, modulesRoot string) Kernel {
	k := Kernel{Path: path, Version: kernelVersionOf(path)}
	if k.Version == "" {
		return k
	}
	beside := filepath.Join(filepath.Dir(filepath.Dir(path)), "lib", "modules", k.Version)
	for _, dir := range []string{beside, filepath.Join(modulesRoot, k.Version)} {
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			k.ModulesDir = dir
			break
		}
	}
	return k
}

// BaselineKernelSeries is the guest kernel series the tests boot unless they
// name another: Debian bookworm's linux-image-amd64. A newer kernel
// installed beside it (bookworm-backports' 6.12) must not change what every
// test exercises.
const BaselineKernelSeries = "6.1"

// BaselineKernel is the kernel the tests boot: the image $UVFS_E2E_KERNEL
// names when it is set, else the newest readable /boot/vmlinuz-6.1.*.
func BaselineKernel() (Kernel, error) {
	if p := os.Getenv("UVFS_E2E_KERNEL"); p != "" {
		return FindKernel(p)
	}
	return FindKernelSeries("/boot", BaselineKernelSeries)
}

// FindKernelSeries picks the newest readable bootDir/vmlinuz-SERIES.* or
// vmlinuz-SERIES-* (series "6.1" takes 6.1.0-57-amd64, not 6.12.9-amd64),
// with its module tree beside it or in /lib/modules.
func FindKernelSeries(bootDir, series string) (Kernel, error) {
	return findKernelSeries(bootDir, "/lib/modules", series)
}

func findKernelSeries(bootDir, modulesRoot, series string) (Kernel, error) {
	matches, _ := filepath.Glob(filepath.Join(bootDir, "vmlinuz-"+series+"*"))
	best := ""
	for _, m := range matches {
		rest := strings.TrimPrefix(kernelVersionOf(m), series)
		if rest != "" && rest[0] != '.' && rest[0] != '-' && rest[0] != '+' || !readable(m) {
			continue
		}
		if best == "" || versionLess(kernelVersionOf(best), kernelVersionOf(m)) {
			best = m
		}
	}
	if best == "" {
		return Kernel{}, fmt.Errorf("no readable Linux %s kernel in %s/vmlinuz-%s*: install it or name an image in UVFS_E2E_KERNEL", series, bootDir, series)
	}
	return kernelAt(best, modulesRoot), nil
}

// ErrNoModules is returned when a kernel's module tree is unknown.
var ErrNoModules = errors.New("kernel module tree not found")

// kernelVersionOf derives the release from a file named vmlinuz-<release>.
func kernelVersionOf(path string) string {
	base := filepath.Base(path)
	if v, ok := strings.CutPrefix(base, "vmlinuz-"); ok {
		return v
	}
	return ""
}

func readable(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	st, err := f.Stat()
	return err == nil && st.Mode().IsRegular()
}

// versionLess compares release strings so that numeric parts compare as
// numbers ("6.10" is newer than "6.9").
func versionLess(a, b string) bool {
	for a != "" && b != "" {
		na, restA := leadingRun(a)
		nb, restB := leadingRun(b)
		if na != nb {
			da, db := isDigit(na[0]), isDigit(nb[0])
			switch {
			case da && db:
				x, y := strings.TrimLeft(na, "0"), strings.TrimLeft(nb, "0")
				if len(x) != len(y) {
					return len(x) < len(y)
				}
				return x < y
			case da != db:
				return db // a digit run sorts after a non-digit run
			default:
				return na < nb
			}
		}
		a, b = restA, restB
	}
	return len(a) < len(b)
}

// leadingRun splits s after its first run of digits or of non-digits.
func leadingRun(s string) (run, rest string) {
	digit := isDigit(s[0])
	i := 1
	for i < len(s) && isDigit(s[i]) == digit {
		i++
	}
	return s[:i], s[i:]
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
