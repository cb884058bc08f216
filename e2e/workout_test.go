package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/uvfsd/uvfsd/scripts/vm"
)

// cVirtiofsd is QEMU's C virtiofsd (package qemu-system-common).
const cVirtiofsd = "/usr/lib/qemu/virtiofsd"

// TestWorkoutCVirtiofsd runs the workout against QEMU's C virtiofsd. It
// proves the harness and documents that the workout is a valid reference:
// if it fails here, fix the workout or the harness, not uvfsd.
func TestWorkoutCVirtiofsd(t *testing.T) {
	if _, err := os.Stat(cVirtiofsd); err != nil {
		missing(t, "C virtiofsd not installed (apt-get install qemu-system-common): %v", err)
	}
	if os.Geteuid() != 0 {
		missing(t, "the C virtiofsd needs root")
	}
	runWorkout(t, daemonSpec{
		path: cVirtiofsd,
		args: func(socket, shared string) []string {
			return []string{"--socket-path=" + socket, "-o", "source=" + shared, "-o", "cache=auto", "-o", "xattr"}
		},
		user:   currentUser(t),
		xattrs: true,
	})
}

// uvfsdPackage is the daemon under test.
const uvfsdPackage = "github.com/uvfsd/uvfsd/cmd/uvfsd"

var (
	uvfsdOnce sync.Once
	uvfsdPath string
	uvfsdSkip string // why the tests skip (outside CI)
	uvfsdErr  error
)

// buildUvfsd compiles ./cmd/uvfsd into the shared binary directory, which
// the test users can read. Until cmd/uvfsd has a main package the uvfsd
// tests skip, except under CI=true.
func buildUvfsd(t *testing.T) string {
	t.Helper()
	uvfsdOnce.Do(func() {
		out, err := exec.Command("go", "list", "-f", "{{.Name}}", uvfsdPackage).CombinedOutput()
		if name := strings.TrimSpace(string(out)); err != nil || name != "main" {
			uvfsdSkip = "cmd/uvfsd has no main package yet: " + strings.TrimSpace(string(out))
			return
		}
		uvfsdPath = filepath.Join(binDir, "uvfsd")
		uvfsdErr = vm.GoBuild(context.Background(), uvfsdPath, uvfsdPackage)
	})
	if uvfsdSkip != "" {
		missing(t, "%s", uvfsdSkip)
	}
	if uvfsdErr != nil {
		t.Fatal(uvfsdErr)
	}
	return uvfsdPath
}

// uvfsdSpec runs uvfsd on the share with extra flags as user.
func uvfsdSpec(t *testing.T, user testUser, extra ...string) daemonSpec {
	return daemonSpec{
		path: buildUvfsd(t),
		args: func(socket, shared string) []string {
			return append(append([]string{"--socket-path=" + socket, "--shared-dir=" + shared, "--xattr"}, seccompArgs()...), extra...)
		},
		user:   user,
		xattrs: true,
	}
}

// TestWorkoutUvfsdRoot runs the workout against uvfsd started by root.
func TestWorkoutUvfsdRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		missing(t, "running uvfsd as root needs root")
	}
	runWorkout(t, uvfsdSpec(t, currentUser(t)))
}

// TestWorkoutUvfsdUnprivilegedNoSandbox runs uvfsd as an unprivileged user
// without a namespace: files are created as that user.
func TestWorkoutUvfsdUnprivilegedNoSandbox(t *testing.T) {
	requireGuestTools(t)
	runWorkout(t, uvfsdSpec(t, e2eUser(t, userWithSubIDs), "--sandbox", "none"))
}

// TestWorkoutUvfsdUnprivileged runs uvfsd as an unprivileged user with
// default flags: it enters a user namespace through newuidmap.
func TestWorkoutUvfsdUnprivileged(t *testing.T) {
	requireGuestTools(t)
	runWorkout(t, uvfsdSpec(t, e2eUser(t, userWithSubIDs)))
}

// TestWorkoutUvfsdUnprivilegedQEMU10 runs the workout against rootless uvfsd
// (default flags: a user namespace through newuidmap) on QEMU 10 with a
// Linux 6.12 guest, which offers FUSE 7.41 and a newer vhost-user front-end.
func TestWorkoutUvfsdUnprivilegedQEMU10(t *testing.T) {
	requireStack(t, stackQEMU10)
	spec := uvfsdSpec(t, e2eUser(t, userWithSubIDs))
	spec.stack = stackQEMU10
	runWorkout(t, spec)
}
