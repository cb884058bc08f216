package e2e

// uvfsd where user namespaces cannot be made: a container's default seccomp
// profile (unshare and clone with CLONE_NEWUSER fail with EPERM) with
// no_new_privs set, which also stops newuidmap. The nouserns launcher
// (e2e/guest/cmd/nouserns) puts a command in exactly that state.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/e2e/guest"
	"github.com/uvfsd/uvfsd/scripts/vm"
)

var (
	noUserNSOnce sync.Once
	noUserNSPath string
	noUserNSErr  error
)

// buildNoUserNS compiles the nouserns launcher into the shared binary
// directory.
func buildNoUserNS(t *testing.T) string {
	t.Helper()
	noUserNSOnce.Do(func() {
		noUserNSPath = filepath.Join(binDir, "nouserns")
		noUserNSErr = vm.GoBuild(context.Background(), noUserNSPath, guest.NoUserNamespacePackage)
	})
	if noUserNSErr != nil {
		t.Fatal(noUserNSErr)
	}
	return noUserNSPath
}

// withoutUserNamespaces runs spec's daemon under the nouserns launcher.
func withoutUserNamespaces(t *testing.T, spec daemonSpec) daemonSpec {
	launcher := buildNoUserNS(t)
	inner, args := spec.path, spec.args
	spec.path = launcher
	spec.args = func(socket, shared string) []string {
		return append([]string{inner}, args(socket, shared)...)
	}
	return spec
}

// fallbackWarning starts the one line uvfsd prints when it serves without
// the user namespace it was asked for.
const fallbackWarning = "serving without a user namespace:"

// TestNoUserNamespaceLauncher checks the launcher the other tests rely on:
// as an unprivileged user, unshare -U works without it and fails under it,
// while an ordinary command still runs and no_new_privs is set.
func TestNoUserNamespaceLauncher(t *testing.T) {
	requireRoot(t, "the launcher is checked as the unprivileged test account")
	u := e2eUser(t, userWithSubIDs)
	launcher := buildNoUserNS(t)
	run := func(argv ...string) (string, error) {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.Credential()}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("unshare", "-U", "true"); err != nil {
		t.Fatalf("without the launcher, unshare -U as %s failed (this host must allow user namespaces for the comparison): %v\n%s", u.Name, err, out)
	}
	out, err := run(launcher, "unshare", "-U", "true")
	if err == nil || !strings.Contains(out, "Operation not permitted") {
		t.Errorf("under the launcher, unshare -U: %v %q, want it to fail with EPERM", err, out)
	}
	out, err = run(launcher, "grep", "NoNewPrivs", "/proc/self/status")
	if err != nil || strings.Join(strings.Fields(out), " ") != "NoNewPrivs: 1" {
		t.Errorf("under the launcher: %v %q, want NoNewPrivs: 1", err, out)
	}
}

// TestWorkoutWithoutUserNamespaces runs the POSIX workout against uvfsd
// started as an unprivileged user under the nouserns launcher: with no
// flags (the default namespace sandbox falls back), with --sandbox none
// and with the home profile. The daemon also tries, once confined, to open
// a file beside the share, which Landlock must refuse.
func TestWorkoutWithoutUserNamespaces(t *testing.T) {
	requireGuestTools(t)
	requireRoot(t, "the daemon runs as the unprivileged test account")
	u := e2eUser(t, userWithSubIDs)
	beside := makeDir(t, "uvfs-e2e-beside-", 0o755, u)
	secret := filepath.Join(beside, "secret")
	if err := os.WriteFile(secret, []byte("not for the daemon\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	u.chown(t, secret)

	for _, c := range []struct {
		name     string
		flags    []string
		fallback bool // uvfsd was asked for a namespace and must say it serves without one
	}{
		{"default", nil, true},
		{"sandbox-none", []string{"--sandbox", "none"}, false},
		{"profile-home", []string{"--profile=home"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec := withoutUserNamespaces(t, uvfsdSpec(t, u, c.flags...))
			spec.env = []string{"_UVFSD_TEST_PROBE_OPEN=" + secret}
			b := runWorkout(t, spec)
			lines := strings.Split(b.daemonOutput, "\n")
			var warnings, notes int
			for _, l := range lines {
				if strings.Contains(l, fallbackWarning) || strings.Contains(l, "Landlock") {
					t.Logf("daemon: %s", l)
				}
				if strings.Contains(l, fallbackWarning) {
					warnings++
				}
				if strings.Contains(l, "note:") {
					notes++
				}
			}
			want := 0
			if c.fallback {
				want = 1
			}
			if warnings != want || notes != 0 {
				t.Errorf("daemon printed %d %q lines (want %d) and %d notes (want 0):\n%s", warnings, fallbackWarning, want, notes, b.daemonOutput)
			}
			if !strings.Contains(b.daemonOutput, "Landlock") {
				t.Errorf("daemon output does not say that Landlock confines it:\n%s", b.daemonOutput)
			}
			if want := "sandbox probe: open " + secret + ": permission denied"; !strings.Contains(b.daemonOutput, want) {
				t.Errorf("daemon output lacks %q: the file beside the share was not refused to the daemon:\n%s", want, b.daemonOutput)
			}
		})
	}
}

// TestOwnershipWithoutUserNamespaces checks who owns what guest root and
// guest uid 1000 create when uvfsd serves without a namespace: the
// invoking user, on the host and as the guest sees it.
func TestOwnershipWithoutUserNamespaces(t *testing.T) {
	requireGuestTools(t)
	requireRoot(t, "the daemons run as the test account")
	u := e2eUser(t, userWithSubIDs)
	launcher := buildNoUserNS(t)
	share := func(tag string, flags ...string) servedShare {
		s := ownershipShare(t, tag, u, flags...)
		s.launcher = launcher
		return s
	}
	shares := []servedShare{share("default"), share("home", "--profile=home")}
	res := bootUvfsdShares(t, shares, ownershipScript, []string{"SHARES=default home"})

	invoking := fmt.Sprintf("%d:%d", u.UID, u.GID)
	seen := guestFields(res, "OWNER")
	for _, s := range shares {
		for _, file := range []string{"hostfile", "pub/by-root", "pub/dir-root", "pub/by-1000", "pub/dir-1000"} {
			uid, gid := ownerOf(t, filepath.Join(s.dir, file))
			if got := fmt.Sprintf("%d:%d", uid, gid); got != invoking {
				t.Errorf("%s (uvfsd %v): host owner of %s is %s, want the invoking user %s", s.tag, s.flags, file, got, invoking)
			}
			if got := strings.Join(seen[s.tag+"/"+file], " "); got != invoking {
				t.Errorf("%s (uvfsd %v): guest sees %s owned by %q, want %s", s.tag, s.flags, file, got, invoking)
			}
		}
	}
}

// TestNoFallbackWithoutUserNamespaces checks that --sandbox=namespace
// --no-fallback refuses to serve without the namespace, naming the cause.
func TestNoFallbackWithoutUserNamespaces(t *testing.T) {
	requireRoot(t, "the daemon runs as the unprivileged test account")
	u := e2eUser(t, userWithSubIDs)
	bin, launcher := buildUvfsd(t), buildNoUserNS(t)
	sockDir := makeDir(t, "uvfs-e2e-sock-", 0o700, u)
	shared := makeDir(t, "uvfs-e2e-share-", 0o755, u)
	socket := filepath.Join(sockDir, "vhost.sock")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, launcher, bin, "--socket-path="+socket, "--shared-dir="+shared,
		"--sandbox=namespace", "--no-fallback")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.Credential()}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("uvfsd --sandbox=namespace --no-fallback served without user namespaces:\n%s", out)
	}
	for _, want := range []string{"operation not permitted", "--no-fallback"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the error does not name %q:\n%s", want, out)
		}
	}
	if _, err := os.Lstat(socket); !os.IsNotExist(err) {
		t.Errorf("socket left behind after the refusal: %v", err)
	}
}

// TestLauncherWithoutUserNamespaces runs scripts/uvfs-vm under the
// nouserns launcher as the unprivileged user, with no flag: it must boot,
// run the command as the user and leave ~/x owned by the user.
func TestLauncherWithoutUserNamespaces(t *testing.T) {
	requireGuestTools(t)
	requireRoot(t, "uvfs-vm runs as the unprivileged test account")
	buildUvfsd(t)
	u := e2eUser(t, userWithSubIDs)
	home, _, run := uvfsVMRunner(t, u, buildNoUserNS(t))
	checkLauncherIDTouch(t, u, home, run)
}
