package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/scripts/vm"
)

// staleScript runs as root in a guest that mounts one host directory twice, through two uvfsd
// daemons: /mnt/a with --cache=always, so a/'s negative dentries last, and /mnt/b. Files made
// through b/ are unknown to a/'s dentry cache, so opening them through a/ with O_CREAT sends a
// CREATE for a name that exists.
// pub/ is world-writable, so that uid 1000 may create there and the guest does send the CREATE.
const staleScript = `cd /mnt
for f in secret open; do ls a/pub/$f 2>/dev/null && exit 10; done
echo root-only > b/pub/secret && chmod 600 b/pub/secret || exit 11
echo old > b/pub/open && chmod 666 b/pub/open || exit 12
# uid 1000 may not write root's 0600 file, stale negative dentry or not.
/bin/uvfs-helper runas 1000 1000 - -- /bin/sh -c 'echo pwned > /mnt/a/pub/secret' && exit 13
# It may write the 0666 one: the guest looks the name up again and opens the file.
/bin/uvfs-helper runas 1000 1000 - -- /bin/sh -c 'echo new > /mnt/a/pub/open' || exit 14
exit 0
`

// TestCreateThroughStaleNegativeDentry: a guest whose cache says a name is absent sends CREATE
// without O_EXCL for it. uvfsd must not open the file that exists on the host for it (as root,
// with O_TRUNC, past the guest's permission checks, which a CREATE reply skips); it answers
// ESTALE, and the guest looks the name up again and opens it the usual way.
func TestCreateThroughStaleNegativeDentry(t *testing.T) {
	if os.Geteuid() != 0 {
		missing(t, "the test runs uvfsd as root, so that a permission bypass would show")
	}
	g := requireGuestTools(t)
	uvfsd := buildUvfsd(t)
	root := currentUser(t)
	shared := makeDir(t, "uvfs-e2e-share-", 0o755, root)
	pub := filepath.Join(shared, "pub")
	if err := os.Mkdir(pub, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(pub, 0o777); err != nil { // past the umask
		t.Fatal(err)
	}
	var fsDevs []vm.FSDevice
	var mounts []vm.Mount
	var daemons []*vm.Daemon
	for _, m := range []struct{ tag, cache string }{{"a", "always"}, {"b", "auto"}} {
		socket := filepath.Join(makeDir(t, "uvfs-e2e-sock-", 0o700, root), "vhost.sock")
		d := &vm.Daemon{Path: uvfsd, Socket: socket,
			Args: append([]string{"--socket-path=" + socket, "--shared-dir=" + shared, "--cache=" + m.cache}, seccompArgs()...)}
		if err := d.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Stop(5 * time.Second) })
		daemons = append(daemons, d)
		fsDevs = append(fsDevs, vm.FSDevice{Socket: socket, Tag: m.tag})
		mounts = append(mounts, vm.Mount{Tag: m.tag, Dir: "/mnt/" + m.tag})
	}
	rd := vm.Initramfs{Kernel: g.kernel, Helper: g.helper, Mounts: mounts, Dir: "/mnt", Script: staleScript}
	initrd := filepath.Join(t.TempDir(), "initrd")
	if err := rd.BuildFile(initrd); err != nil {
		t.Fatal(err)
	}
	machine := vm.VM{QEMU: g.qemu, Kernel: g.bootKernel, Initrd: initrd, FS: fsDevs, Timeout: 5 * time.Minute}
	res, err := machine.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitStatus != 0 {
		t.Errorf("guest script failed with status %d:\n%s", res.ExitStatus, strings.Join(res.Output, "\n"))
		for i, d := range daemons {
			t.Logf("daemon %d output:\n%s", i, d.Output())
		}
	}
	for _, d := range daemons {
		d.Wait(20 * time.Second)
		checkNoSeccompDenials(t, d.Output())
	}
	for name, want := range map[string]string{"secret": "root-only\n", "open": "new\n"} {
		if got, err := os.ReadFile(filepath.Join(pub, name)); err != nil || string(got) != want {
			t.Errorf("host %s: %q (err %v), want %q", name, got, err, want)
		}
	}
}
