package guest

import (
	"os"
	"path/filepath"
	"syscall"

	"github.com/uvfsd/uvfsd/scripts/vm"
)

// The Rust virtiofsd 1.13.2 (Debian trixie's) as .ci/install-clients unpacks it, with the trixie
// libc it needs, run through that libc's loader.

// RustVirtiofsdBinary is the daemon's path inside RustVirtiofsdDir.
const RustVirtiofsdBinary = "usr/libexec/virtiofsd"

// RustVirtiofsdDir is where .ci/install-clients unpacks the Rust virtiofsd: $UVFS_E2E_CLIENTS/virtiofsd,
// by default /opt/uvfs-e2e/virtiofsd.
func RustVirtiofsdDir() string {
	if d := os.Getenv("UVFS_E2E_CLIENTS"); d != "" {
		return filepath.Join(d, "virtiofsd")
	}
	return "/opt/uvfs-e2e/virtiofsd"
}

// RustVirtiofsd returns the unpacked Rust virtiofsd serving share on socket, rootless as its
// README says: `unshare -r --map-auto -- virtiofsd --sandbox chroot`, as the user of cred (nil:
// this process's, which must not be root; as root, pass an unprivileged user's credential with
// sub-id ranges, which --map-auto maps). Its other options are its defaults (--cache=auto),
// then extra. The share and the socket's directory must belong to that user. unshare and the
// loader exec into the daemon, so the Daemon's pid is the daemon's.
func RustVirtiofsd(socket, share string, cred *syscall.Credential, extra ...string) *vm.Daemon {
	dir := RustVirtiofsdDir()
	lib := filepath.Join(dir, "usr/lib/x86_64-linux-gnu")
	args := []string{"-r", "--map-auto", "--", filepath.Join(lib, "ld-linux-x86-64.so.2"), "--library-path", lib,
		filepath.Join(dir, RustVirtiofsdBinary), "--sandbox", "chroot", "--socket-path=" + socket, "--shared-dir=" + share}
	return &vm.Daemon{Path: "unshare", Args: append(args, extra...), Socket: socket, Credential: cred}
}
