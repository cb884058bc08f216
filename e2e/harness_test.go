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

// daemonSpec says how to start one virtio-fs daemon for a test.
type daemonSpec struct {
	path string
	// args builds the command line for a socket and a shared directory.
	args func(socket, shared string) []string
	// user runs the daemon; the share and socket directory belong to it.
	user testUser
	// xattrs makes xattr support mandatory in the workout.
	xattrs bool
	// setup, if set, prepares the share before the daemon starts (e.g. a
	// tree for the daemon to serve).
	setup func(t *testing.T, shared string)
	// env is added to the daemon's environment.
	env []string
	// inShare runs the daemon in the shared directory (podman machine's
	// "--shared-dir .").
	inShare bool
	// stack is the QEMU and guest kernel booted against the daemon.
	stack guestStack
	// requestQueues is the device's num-request-queues (1 when zero); cpus
	// the guest's vCPUs (2 when zero).
	requestQueues, cpus int
}

// makeDir creates a directory the daemon's user can reach: under /tmp
// (t.TempDir is 0700 and owned by root), owned by owner, removed at the end
// of the test.
func makeDir(t *testing.T, pattern string, mode os.FileMode, owner testUser) string {
	t.Helper()
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	owner.chown(t, dir)
	return dir
}

// bootResult is one guest run against one daemon.
type bootResult struct {
	shared string
	res    *vm.Result
	// daemonOutput is what the daemon printed (its first 256 KiB).
	daemonOutput string
}

const shareTag = "uvfs"

// bootWithDaemon starts the daemon on a fresh share, boots a guest that
// mounts it at /mnt and runs script there as root, then checks that the
// guest powered off without hanging and that the daemon exited with status
// 0. Everything the guest printed is logged when the test fails.
func bootWithDaemon(t *testing.T, spec daemonSpec, script string, env []string) bootResult {
	t.Helper()
	g := requireStack(t, spec.stack)
	shared := makeDir(t, "uvfs-e2e-share-", 0o755, spec.user)
	sockDir := makeDir(t, "uvfs-e2e-sock-", 0o700, spec.user)
	socket := filepath.Join(sockDir, "vhost.sock")
	work := t.TempDir()
	if spec.setup != nil {
		spec.setup(t, shared)
	}

	d := &vm.Daemon{
		Path:       spec.path,
		Args:       spec.args(socket, shared),
		Env:        spec.env,
		Socket:     socket,
		Credential: spec.user.Credential(),
	}
	if spec.inShare {
		d.Dir = shared
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop(5 * time.Second) })

	rd := vm.Initramfs{
		Kernel: g.kernel,
		Helper: g.helper,
		Mounts: []vm.Mount{{Tag: shareTag, Dir: "/mnt"}},
		Script: script,
		Env:    env,
	}
	initrd := filepath.Join(work, "initrd")
	if err := rd.BuildFile(initrd); err != nil {
		t.Fatal(err)
	}
	machine := vm.VM{
		QEMU:       g.qemu,
		Kernel:     g.bootKernel,
		Initrd:     initrd,
		CPUs:       spec.cpus,
		FS:         []vm.FSDevice{{Socket: socket, Tag: shareTag, RequestQueues: spec.requestQueues}},
		ConsoleLog: filepath.Join(work, "console.log"),
		Timeout:    10 * time.Minute,
	}
	res, err := machine.Run(context.Background())
	if err != nil {
		t.Fatalf("guest run against %s failed: %v\n--- daemon output ---\n%s", spec.path, err, d.Output())
	}
	t.Logf("guest boot + script took %v against %s on %s", res.Duration.Round(time.Millisecond), filepath.Base(spec.path), g.stack)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("guest script output:\n%s", strings.Join(res.Output, "\n"))
			t.Logf("daemon output:\n%s", d.Output())
		}
	})
	if err := d.Wait(20 * time.Second); err != nil {
		t.Errorf("daemon did not exit cleanly after the guest powered off: %v", err)
	}
	checkNoSeccompDenials(t, d.Output())
	return bootResult{shared: shared, res: res, daemonOutput: d.Output()}
}

// readWorkout returns the guest workout script.
func readWorkout(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "workout.sh"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// runWorkout runs testdata/workout.sh against the daemon and verifies the
// results from the host side.
func runWorkout(t *testing.T, spec daemonSpec) bootResult {
	t.Helper()
	env := []string{}
	if spec.xattrs {
		env = append(env, "WORKOUT_XATTR=1")
	}
	if spec.stack == stackQEMU10 && spec.path != cVirtiofsd {
		env = append(env, "WORKOUT_BTIME=1") // a 6.12 guest asks with FUSE_STATX
	}
	b := bootWithDaemon(t, spec, readWorkout(t), env)
	for _, l := range b.res.Output {
		switch {
		case strings.HasPrefix(l, "FAIL:"):
			t.Errorf("guest: %s", l)
		case strings.HasPrefix(l, "NOTE:"):
			t.Logf("guest: %s", l)
		}
	}
	if b.res.ExitStatus != 0 {
		t.Errorf("workout exited with status %d", b.res.ExitStatus)
	}
	verifyWorkoutOnHost(t, filepath.Join(b.shared, "work"), b.res.Output, spec.user)
	return b
}
