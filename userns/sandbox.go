package userns

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Sandbox modes, as in virtiofsd's --sandbox.
const (
	SandboxNamespace = "namespace" // pivot_root into the shared dir (needs Options.MountNamespace)
	SandboxChroot    = "chroot"    // chroot into the shared dir
	SandboxNone      = "none"      // no confinement
)

// Jail holds what the file server needs after the sandbox is up.
type Jail struct {
	// RootFD is an O_PATH directory fd of the shared directory's root.
	RootFD int
	// ProcSelfFD is an O_PATH fd of /proc/self/fd, opened before the
	// root changed: openat(ProcSelfFD, "N", flags) reopens fd N, e.g.
	// an O_PATH inode fd, for reading.
	ProcSelfFD int
	// MountInfo is /proc/self/mountinfo of this mount namespace, opened
	// before Confine would forbid it, and so that it lists the mounts
	// under the shared directory; nil if it could not be opened. The
	// file server reads it to recognise devtmpfs.
	MountInfo *os.File
}

// Close releases the fds.
func (j *Jail) Close() error {
	err := errors.Join(unix.Close(j.RootFD), unix.Close(j.ProcSelfFD))
	if j.MountInfo != nil {
		err = errors.Join(err, j.MountInfo.Close())
	}
	return err
}

const dirPathFlags = unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC

// Sandbox confines the whole process to sharedDir. chroot and
// pivot_root change the root of every thread, since Go's threads share
// one fs_struct (none of them calls unshare(CLONE_FS)). Call it after
// Enter and before DropCapabilities, which removes CAP_SYS_ADMIN and
// CAP_SYS_CHROOT.
func Sandbox(mode, sharedDir string) (*Jail, error) {
	dir, err := checkSharedDir(sharedDir)
	if err != nil {
		return nil, err
	}
	if mode != SandboxNamespace && mode != SandboxChroot && mode != SandboxNone {
		return nil, fmt.Errorf("unknown sandbox mode %q: use %s, %s or %s", mode, SandboxNamespace, SandboxChroot, SandboxNone)
	}
	if mode == SandboxNamespace && !mountNamespaceReady {
		return nil, fmt.Errorf("--sandbox=%s needs a private mount namespace: call userns.Enter with MountNamespace set first, or use --sandbox=%s", mode, SandboxChroot)
	}
	// /proc disappears from view once the root changes.
	procFD, err := unix.Open("/proc/self/fd", dirPathFlags, 0)
	if err != nil {
		return nil, fmt.Errorf("opening /proc/self/fd: %w; uvfsd needs /proc mounted", err)
	}
	// mountinfo lists the mounts that the root it was opened under reaches. Under a chroot the
	// old root's list is the fuller one; after pivot_root (which detaches the old root) only a
	// list opened under the new root has any mounts.
	var mountInfo *os.File
	if mode != SandboxNamespace {
		mountInfo = openMountInfo(procFD)
	}
	switch mode {
	case SandboxNamespace:
		if err = pivotInto(dir); err == nil {
			mountInfo = openMountInfo(procFD)
		}
	case SandboxChroot:
		err = chrootInto(dir)
	}
	if err != nil {
		unix.Close(procFD)
		if mountInfo != nil {
			mountInfo.Close()
		}
		return nil, err
	}
	root := dir
	if mode != SandboxNone {
		root = "/"
	}
	rootFD, err := unix.Open(root, dirPathFlags, 0)
	if err != nil {
		unix.Close(procFD)
		if mountInfo != nil {
			mountInfo.Close()
		}
		return nil, fmt.Errorf("opening the shared directory %s: %w", dir, err)
	}
	return &Jail{RootFD: rootFD, ProcSelfFD: procFD, MountInfo: mountInfo}, nil
}

// openMountInfo opens /proc/self/mountinfo beside procFD (/proc/self/fd/.. is /proc/self, also
// once the root changed), or returns nil.
func openMountInfo(procFD int) *os.File {
	fd, err := unix.Openat(procFD, "../mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	return os.NewFile(uintptr(fd), "/proc/self/mountinfo")
}

// checkSharedDir returns the absolute path of an existing directory.
func checkSharedDir(sharedDir string) (string, error) {
	if sharedDir == "" {
		return "", fmt.Errorf("no shared directory given: pass --shared-dir=DIR")
	}
	dir, err := filepath.Abs(sharedDir)
	if err != nil {
		return "", fmt.Errorf("shared directory %s: %w", sharedDir, err)
	}
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("shared directory %s does not exist: create it (mkdir -p %s) or fix --shared-dir: %w", dir, dir, err)
	}
	if err != nil {
		return "", fmt.Errorf("shared directory %s: %w; check that uvfsd may access it", dir, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("shared directory %s is not a directory: --shared-dir must name a directory", dir)
	}
	return dir, nil
}

// pivotInto makes dir the root of this mount namespace and detaches
// everything else, so no path leads outside it.
func pivotInto(dir string) error {
	p := DefaultPaths()
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("sandbox: making mounts private: %w", explainNamespaceEPERM(p, err))
	}
	if dir == "/" {
		// Sharing / leaves nothing outside to hide, and pivot_root cannot make the root its own
		// new root (EINVAL).
		return nil
	}
	// pivot_root needs a mount point; a recursive bind of the
	// directory onto itself is one, and keeps its submounts.
	if err := unix.Mount(dir, dir, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("sandbox: bind-mounting %s onto itself: %w", dir, explainNamespaceEPERM(p, err))
	}
	if err := unix.Chdir(dir); err != nil {
		return fmt.Errorf("sandbox: chdir %s: %w", dir, err)
	}
	// pivot_root(".", ".") stacks the old root on top of the new one;
	// detaching "." then removes the old root and reveals the new.
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("sandbox: pivot_root into %s: %w; try --sandbox=%s", dir, explainNamespaceEPERM(p, err), SandboxChroot)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("sandbox: detaching the old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("sandbox: chdir /: %w", err)
	}
	return nil
}

func chrootInto(dir string) error {
	if err := unix.Chroot(dir); err != nil {
		return fmt.Errorf("sandbox: chroot %s: %w; chroot needs root or a user namespace, or use --sandbox=%s", dir, explainNamespaceEPERM(DefaultPaths(), err), SandboxNone)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("sandbox: chdir /: %w", err)
	}
	return nil
}
