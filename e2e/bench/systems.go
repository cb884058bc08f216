package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/uvfsd/uvfsd/e2e/guest"
)

// The systems compared, as the table names them.
const (
	sysUvfsd = "uvfsd"
	sysC     = "C-virtiofsd"
	sys9p    = "9p"
)

// cVirtiofsd is QEMU's C virtiofsd (package qemu-system-common).
const cVirtiofsd = "/usr/lib/qemu/virtiofsd"

// benchUser is the unprivileged account uvfsd runs as when this program
// runs as root; the e2e tests create and use the same one.
const benchUser = "uvfs-e2e"

// account is who owns a share and runs its daemon.
type account struct {
	name     string
	uid, gid int
	current  bool // no credential switch, no chown
}

func (a account) credential() *syscall.Credential {
	if a.current {
		return nil
	}
	return &syscall.Credential{Uid: uint32(a.uid), Gid: uint32(a.gid), Groups: []uint32{}}
}

func currentAccount() account {
	name := strconv.Itoa(os.Getuid())
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return account{name: name, uid: os.Getuid(), gid: os.Getgid(), current: true}
}

// rootlessAccount returns the account uvfsd runs as: the current user when
// not root, else benchUser, created (with sub-id ranges, so uvfsd can map a
// namespace) if missing.
func rootlessAccount() (account, error) {
	if os.Geteuid() != 0 {
		return currentAccount(), nil
	}
	u, err := user.Lookup(benchUser)
	if err != nil {
		out, addErr := exec.Command("useradd", "-M", "-s", "/usr/sbin/nologin", "-c", "uvfsd e2e tests", benchUser).CombinedOutput()
		if u, err = user.Lookup(benchUser); err != nil {
			return account{}, fmt.Errorf("create user %s for the rootless daemon: useradd: %v: %s", benchUser, addErr, out)
		}
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for _, file := range []string{"/etc/subuid", "/etc/subgid"} {
		if err := ensureSubIDs(file, benchUser); err != nil {
			return account{}, err
		}
	}
	return account{name: benchUser, uid: uid, gid: gid}, nil
}

// ensureSubIDs appends a 65536-id range for name after every existing range
// when file has none for it (useradd gives none on some systems).
func ensureSubIDs(file, name string) error {
	data, err := os.ReadFile(file)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("read %s: %w", file, err)
	}
	next := uint64(100000)
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		f := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(f) != 3 {
			continue
		}
		if f[0] == name {
			return nil
		}
		start, err1 := strconv.ParseUint(f[1], 10, 32)
		count, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 == nil && err2 == nil && start+count > next {
			next = start + count
		}
	}
	out, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("add sub-ids for %s: %w", name, err)
	}
	_, err = fmt.Fprintf(out, "%s:%d:65536\n", name, next)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("add sub-ids for %s to %s: %w", name, file, err)
	}
	return nil
}

// boot is one system's share, daemon and device for one guest run.
type boot struct {
	share  string // host directory the guest mounts at /mnt
	daemon *guest.Daemon
	fs     []guest.FSDevice
	extra  []string // QEMU arguments (9p)
	initrd string   // virtiofs or 9p initramfs
}

// tempDir makes a directory under /tmp that owner can use (mode applies).
func tempDir(pattern string, mode os.FileMode, owner account) (string, error) {
	dir, err := os.MkdirTemp("", pattern)
	if err == nil {
		err = os.Chmod(dir, mode)
	}
	if err == nil && !owner.current {
		err = os.Chown(dir, owner.uid, owner.gid)
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
	if system == sysUvfsd {
		owner = b.rootless
	}
	share, err := tempDir("uvfs-bench-share-", 0o755, owner)
	if err != nil {
		return nil, err
	}
	bt := &boot{share: share, initrd: b.initrdFS}
	if err := makeTree(filepath.Join(share, "tree"), b.sizes.TreeFiles, !owner.current, owner.uid, owner.gid); err != nil {
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
	d := &guest.Daemon{Socket: socket, Credential: owner.credential()}
	if system == sysUvfsd {
		d.Path = b.uvfsd
		d.Args = append([]string{"--socket-path=" + socket, "--shared-dir=" + share}, b.uvfsdArgs...)
	} else {
		d.Path = cVirtiofsd
		d.Args = []string{"--socket-path=" + socket, "-o", "source=" + share, "-o", "cache=auto"}
	}
	bt.daemon = d
	bt.fs = []guest.FSDevice{{Socket: socket, Tag: shareTag}}
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
