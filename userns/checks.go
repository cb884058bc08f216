package userns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// readSysctl returns a /proc/sys value, or "" when the file is missing
// (the knob does not exist on this kernel).
func readSysctl(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// checkUsernsEnabled fails when a sysctl keeps non-root users from
// creating user namespaces.
func checkUsernsEnabled(p Paths) error {
	if readSysctl(p.MaxUserNamespaces) == "0" {
		return fmt.Errorf("user namespaces are disabled (%s is 0): as root run `sysctl -w user.max_user_namespaces=15000` "+
			"(and put it in /etc/sysctl.d/ to keep it), or run uvfsd as root", p.MaxUserNamespaces)
	}
	if readSysctl(p.UnprivilegedUsernsClone) == "0" {
		return fmt.Errorf("unprivileged user namespaces are disabled (%s is 0): as root run `sysctl -w kernel.unprivileged_userns_clone=1` "+
			"(and put it in /etc/sysctl.d/ to keep it), or run uvfsd as root", p.UnprivilegedUsernsClone)
	}
	return nil
}

// explainCloneError says why creating the namespace failed.
func explainCloneError(p Paths, err error) error {
	if cause := checkUsernsEnabled(p); cause != nil {
		return fmt.Errorf("creating the user namespace: %w; %v", err, cause)
	}
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("creating the user namespace: %w: the limit in %s is reached; raise it as root or end other namespaced processes", err, p.MaxUserNamespaces)
	}
	return fmt.Errorf("creating the user namespace: %w; check that this kernel allows unprivileged user namespaces, or run uvfsd as root", err)
}

// explainNamespaceEPERM adds the likely cause to an EPERM from a
// privileged operation inside the namespace (writing uid_map, mount):
// Ubuntu's AppArmor lets the namespace be created but strips the
// capabilities in it.
func explainNamespaceEPERM(p Paths, err error) error {
	if !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.EACCES) {
		return err
	}
	if readSysctl(p.AppArmorRestrict) == "1" {
		return fmt.Errorf("%w: AppArmor restricts unprivileged user namespaces (%s is 1), so uvfsd has no capabilities in its namespace. "+
			"As root, either install an AppArmor profile that allows it, e.g. /etc/apparmor.d/uvfsd containing "+
			"`abi <abi/4.0>, include <tunables/global> profile uvfsd /path/to/uvfsd flags=(unconfined) { userns, }` "+
			"and load it with `apparmor_parser -r /etc/apparmor.d/uvfsd`, or run `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`; "+
			"or run uvfsd as root", err, p.AppArmorRestrict)
	}
	return fmt.Errorf("%w: uvfsd lacks the capability inside its user namespace; a security module (AppArmor, SELinux) or a container may forbid it, "+
		"try running uvfsd as root or with --sandbox=chroot", err)
}

// findHelper resolves newuidmap/newgidmap and checks it can do its job:
// it must be setuid root or carry file capabilities (Fedora).
func findHelper(configured, name string) (string, error) {
	path, where := configured, ""
	if !strings.Contains(configured, "/") {
		where = " in PATH and /usr/bin"
		found, err := exec.LookPath(configured)
		if err != nil {
			found = filepath.Join("/usr/bin", configured)
		}
		path = found
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", fmt.Errorf("%s not found (looked for %q%s): %w; it maps the ranges of /etc/subuid and /etc/subgid, "+
			"install it (`apt install uidmap` on Debian/Ubuntu, `dnf install shadow-utils` on Fedora) "+
			"or remove your /etc/subuid and /etc/subgid lines to map only your own ids", name, configured, where, err)
	}
	setuidRoot := st.Mode&unix.S_ISUID != 0 && st.Uid == 0
	if !setuidRoot && !hasFileCaps(path) {
		return "", fmt.Errorf("%s is neither setuid root nor has file capabilities, so it cannot map the ranges of /etc/subuid and /etc/subgid: "+
			"as root run `chmod u+s %s` (or reinstall the package uidmap)", path, path)
	}
	return path, nil
}

func hasFileCaps(path string) bool {
	n, err := unix.Getxattr(path, "security.capability", nil)
	return err == nil && n > 0
}
