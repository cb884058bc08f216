package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/uvfsd/uvfsd/e2e/guest"
	"github.com/uvfsd/uvfsd/scripts/vm"
)

// The systems compared, as the table names them.
const (
	sysUvfsd = "uvfsd"
	sysC     = "C-virtiofsd"
	sys9p    = "9p"
	sysRust  = "rust-virtiofsd"
	// sysFloor runs the same steps on a tmpfs inside the guest: no host file system, no FUSE,
	// no daemon in the path. Nothing that serves files from the host can be faster, so its
	// times are the guest's own share of every other system's (the floor under TCG).
	sysFloor = "guest-tmpfs"
)

// cVirtiofsd is QEMU's C virtiofsd (package qemu-system-common).
const cVirtiofsd = "/usr/lib/qemu/virtiofsd"

// benchUser is the unprivileged account uvfsd runs as when this program
// runs as root; the e2e tests create and use the same one.
const benchUser = "uvfs-e2e"

// currentAccount is the user running this program; it owns the shares of
// the daemons that run without a credential switch.
func currentAccount() guest.HostUser {
	u, _ := guest.CurrentUser() // without a passwd entry, the uid names the user in the report
	return u
}

// rootlessAccount returns the account uvfsd runs as: the current user when
// not root, else benchUser, created (with sub-id ranges, so uvfsd can map a
// namespace) if missing.
func rootlessAccount() (guest.HostUser, error) {
	if os.Geteuid() != 0 {
		return currentAccount(), nil
	}
	u, err := guest.EnsureUser(benchUser, true)
	if err != nil {
		return guest.HostUser{}, fmt.Errorf("the rootless daemon's account: %w", err)
	}
	return u, nil
}

// boot is one system's share, daemon and device for one guest run.
type boot struct {
	share  string // host directory the guest mounts at /mnt
	daemon *vm.Daemon
	fs     []vm.FSDevice
	extra  []string // QEMU arguments (9p)
	initrd string   // virtiofs or 9p initramfs
	// counter follows the daemon's log with --count-requests.
	counter *requestCounter
}

// tempDir makes a directory under /tmp that owner can use (mode applies).
func tempDir(pattern string, mode os.FileMode, owner guest.HostUser) (string, error) {
	dir, err := os.MkdirTemp("", pattern)
	if err == nil {
		err = os.Chmod(dir, mode)
	}
	if err == nil && !owner.Current {
		err = os.Chown(dir, int(owner.UID), int(owner.GID))
	}
	if err != nil {
		return "", fmt.Errorf("benchmark directory: %w", err)
	}
	return dir, nil
}

// setUp prepares a fresh share with the host tree and starts the system's
// daemon. close removes everything and stops the daemon.
func (b *bench) setUp(system string) (*boot, error) {
	owner := currentAccount()
	uvfsdArgs, isUvfsd := b.uvfsdSystems[system]
	if system == sysFloor {
		// The guest copies the tree from a uvfsd share into its tmpfs before the first step.
		uvfsdArgs, isUvfsd = b.uvfsdArgs, true
	}
	if isUvfsd || system == sysRust {
		owner = b.rootless
	}
	share, err := tempDir("uvfs-bench-share-", 0o755, owner)
	if err != nil {
		return nil, err
	}
	bt := &boot{share: share, initrd: b.initrdFS}
	if system == sysFloor {
		bt.initrd = b.initrdFloor
	}
	if err := makeTree(filepath.Join(share, "tree"), b.sizes.TreeFiles, !owner.Current, int(owner.UID), int(owner.GID)); err != nil {
		bt.close()
		return nil, err
	}
	if system == sys9p {
		bt.initrd = b.initrd9p
		bt.extra = []string{
			"-fsdev", "local,id=f9,security_model=none,path=" + share,
			"-device", "virtio-9p-pci,fsdev=f9,mount_tag=p9",
		}
		return bt, nil
	}
	sockDir, err := tempDir("uvfs-bench-sock-", 0o700, owner)
	if err != nil {
		bt.close()
		return nil, err
	}
	socket := filepath.Join(sockDir, "vhost.sock")
	d := &vm.Daemon{Socket: socket, Credential: owner.Credential()}
	switch {
	case isUvfsd:
		d.Path = b.uvfsd
		d.Args = append([]string{"--socket-path=" + socket, "--shared-dir=" + share}, uvfsdArgs...)
	case system == sysRust:
		// Rootless in unshare -r --map-auto with --sandbox chroot, as its README says.
		d = guest.RustVirtiofsd(socket, share, owner.Credential())
	default:
		d.Path = cVirtiofsd
		d.Args = []string{"--socket-path=" + socket, "-o", "source=" + share, "-o", "cache=auto"}
	}
	if b.countRequests {
		bt.counter = newRequestCounter()
		d.Stderr = bt.counter
		switch {
		case isUvfsd:
			d.Args = append(d.Args, "--log-level=debug")
		case system == sysC:
			d.Args = append(d.Args, "-d")
		case system == sysRust:
			d.Args = append(d.Args, "--log-level=debug")
		}
	}
	bt.daemon = d
	queues := b.queues
	if n, ok := b.systemQueues[system]; ok {
		queues = n
	}
	bt.fs = []vm.FSDevice{{Socket: socket, Tag: shareTag, RequestQueues: queues}}
	if err := d.Start(); err != nil {
		os.RemoveAll(sockDir)
		bt.close()
		return nil, err
	}
	return bt, nil
}

// finish waits for the daemon to exit on its own after the guest powered
// off (as it must), then removes the share and the socket directory.
func (bt *boot) finish() error {
	var err error
	if bt.daemon != nil {
		if werr := bt.daemon.Wait(20 * time.Second); werr != nil {
			err = fmt.Errorf("daemon %s did not exit cleanly after the guest powered off: %w\n%s",
				filepath.Base(bt.daemon.Path), werr, bt.daemon.Output())
		}
	}
	bt.close()
	return err
}

func (bt *boot) close() {
	if bt.daemon != nil {
		bt.daemon.Stop(5 * time.Second)
		os.RemoveAll(filepath.Dir(bt.daemon.Socket))
	}
	os.RemoveAll(bt.share)
}
