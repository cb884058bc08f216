package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/scripts/vm"
)

// TestSeveralSharesCVirtiofsd boots one guest with two virtio-fs devices
// (two C virtiofsd daemons) and a virtio-9p share passed as extra QEMU
// arguments, as the 9p benchmark does, and checks each lands on its host
// directory.
func TestSeveralSharesCVirtiofsd(t *testing.T) {
	if _, err := os.Stat(cVirtiofsd); err != nil {
		missing(t, "C virtiofsd not installed (apt-get install qemu-system-common): %v", err)
	}
	if os.Geteuid() != 0 {
		missing(t, "the C virtiofsd needs root")
	}
	g := requireGuestTools(t)
	root := currentUser(t)
	var fsDevs []vm.FSDevice
	var mounts []vm.Mount
	var dirs []string
	for i := range 2 {
		shared := makeDir(t, "uvfs-e2e-share-", 0o755, root)
		socket := filepath.Join(makeDir(t, "uvfs-e2e-sock-", 0o700, root), "vhost.sock")
		d := &vm.Daemon{Path: cVirtiofsd, Socket: socket,
			Args: []string{"--socket-path=" + socket, "-o", "source=" + shared, "-o", "cache=auto"}}
		if err := d.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Stop(5 * time.Second) })
		tag := fmt.Sprintf("share%d", i)
		fsDevs = append(fsDevs, vm.FSDevice{Socket: socket, Tag: tag})
		mounts = append(mounts, vm.Mount{Tag: tag, Dir: "/mnt/" + tag})
		dirs = append(dirs, shared)
	}
	ninep := makeDir(t, "uvfs-e2e-9p-", 0o755, root)
	mounts = append(mounts, vm.Mount{Type: "9p", Tag: "p9", Dir: "/mnt/p9", Options: "trans=virtio,version=9p2000.L"})
	dirs = append(dirs, ninep)

	work := t.TempDir()
	rd := vm.Initramfs{
		Kernel:       g.kernel,
		ExtraModules: vm.NinePModules,
		Mounts:       mounts,
		Dir:          "/mnt",
		Script:       "for m in share0 share1 p9; do echo \"written to $m\" > $m/hello || exit 1; done\n",
	}
	initrd := filepath.Join(work, "initrd")
	if err := rd.BuildFile(initrd); err != nil {
		t.Fatal(err)
	}
	machine := vm.VM{
		QEMU: g.qemu, Kernel: g.bootKernel,
		Initrd: initrd,
		FS:     fsDevs,
		ExtraArgs: []string{
			"-fsdev", "local,id=p9dev,security_model=none,path=" + ninep,
			"-device", "virtio-9p-pci,fsdev=p9dev,mount_tag=p9",
		},
		Timeout: 5 * time.Minute,
	}
	res, err := machine.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitStatus != 0 {
		t.Fatalf("guest script failed (%d):\n%v", res.ExitStatus, res.Output)
	}
	for i, name := range []string{"share0", "share1", "p9"} {
		want := "written to " + name + "\n"
		if got, err := os.ReadFile(filepath.Join(dirs[i], "hello")); err != nil || string(got) != want {
			t.Errorf("host %s/hello: %q (err %v), want %q", name, got, err, want)
		}
	}
}
