package userns_test

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/uvfsd/uvfsd/userns"
	"golang.org/x/sys/unix"
)

func TestSandboxErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	tests := []struct{ mode, dir, want string }{
		{userns.SandboxChroot, filepath.Join(dir, "missing"), "does not exist: create it (mkdir -p " + filepath.Join(dir, "missing")},
		{userns.SandboxChroot, file, file + " is not a directory"},
		{userns.SandboxChroot, "", "--shared-dir"},
		{"jail", dir, `unknown sandbox mode "jail"`},
		// This process never called Enter with MountNamespace.
		{userns.SandboxNamespace, dir, "needs a private mount namespace"},
	}
	for _, tt := range tests {
		_, err := userns.Sandbox(tt.mode, tt.dir)
		t.Logf("%s %q: %v", tt.mode, tt.dir, err)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Sandbox(%q, %q) error = %v, want containing %q", tt.mode, tt.dir, err, tt.want)
		}
	}
}

func TestSandboxNone(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "marker"), []byte("none"), 0o644)
	jail, err := userns.Sandbox(userns.SandboxNone, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer jail.Close()
	fd, err := unix.Openat(jail.RootFD, "marker", unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	rfd, err := unix.Openat(jail.ProcSelfFD, strconv.Itoa(fd), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("reopening through ProcSelfFD: %v", err)
	}
	defer unix.Close(rfd)
	buf := make([]byte, 8)
	n, _ := unix.Read(rfd, buf)
	if string(buf[:n]) != "none" {
		t.Errorf("read %q through the reopened fd", buf[:n])
	}
	if jail.MountInfo == nil {
		t.Fatal("Jail.MountInfo is nil")
	}
	info, err := io.ReadAll(jail.MountInfo)
	if err != nil || !strings.Contains(string(info), " /proc ") {
		t.Errorf("Jail.MountInfo: %v; it does not list /proc:\n%s", err, info)
	}
}

// checkJailed checks the sandbox report of a daemon in the shared directory whose marker file
// holds content; pivoted says that it made the shared directory its root with pivot_root.
func checkJailed(t *testing.T, rep report, content string, pivoted bool) {
	t.Helper()
	s := rep.Sandbox
	if s == nil {
		t.Fatal("no sandbox report")
	}
	if s.MarkerByPath != content || s.MarkerByReopen != content || s.MarkerByRootFD != "opened" {
		t.Errorf("marker by path %q, by reopen %q, by RootFD %q; want %q", s.MarkerByPath, s.MarkerByReopen, s.MarkerByRootFD, content)
	}
	if s.ProcVisible {
		t.Errorf("/proc is visible inside the sandbox: the root is not the shared dir")
	}
	if !s.DotDotIsRoot {
		t.Errorf("/../.. is not / inside the sandbox")
	}
	// After pivot_root it lists the shared directory as "/" and nothing outside; under a chroot
	// it is the list of the root before.
	if !slices.Contains(s.MountPoints, "/") || pivoted && slices.Contains(s.MountPoints, "/proc") {
		t.Errorf("Jail.MountInfo lists the mount points %q, want / and (after pivot_root) no /proc", s.MountPoints)
	}
}

func TestSandboxNamespaceUnprivileged(t *testing.T) {
	u := unprivilegedUser(t, true)
	dir := sharedDir(t, "ns-unpriv")
	rep, _ := runRoleAs(t, u, "sandbox", 0, mountNSEnv+"=1", sandboxEnv+"=namespace", sharedDirEv+"="+dir)
	checkJailed(t, rep, "ns-unpriv", true)
}

func TestSandboxNamespaceWithoutRanges(t *testing.T) {
	u := unprivilegedUser(t, false)
	dir := sharedDir(t, "ns-nosub")
	rep, _ := runRoleAs(t, u, "sandbox", 0, mountNSEnv+"=1", sandboxEnv+"=namespace", sharedDirEv+"="+dir)
	checkJailed(t, rep, "ns-nosub", true)
}

// Sharing / in the namespace sandbox (pivot_root cannot pivot into the root itself) serves the
// whole tree.
func TestSandboxNamespaceSharingRoot(t *testing.T) {
	u := unprivilegedUser(t, true)
	rep, _ := runRoleAs(t, u, "sandbox", 0, mountNSEnv+"=1", sandboxEnv+"=namespace", sharedDirEv+"=/")
	if rep.Sandbox == nil || !strings.HasPrefix(rep.Sandbox.MarkerByReopen, "root:") || !rep.Sandbox.ProcVisible {
		t.Errorf("sharing /: %+v, want /etc/passwd readable through the root fd and /proc visible", rep.Sandbox)
	}
}

func TestSandboxNamespaceRoot(t *testing.T) {
	u := rootUser(t)
	dir := sharedDir(t, "ns-root")
	before, _ := os.ReadFile("/proc/self/mountinfo")
	rep, _ := runRoleAs(t, u, "sandbox", 0, mountNSEnv+"=1", sandboxEnv+"=namespace", sharedDirEv+"="+dir)
	checkJailed(t, rep, "ns-root", true)
	// The bind mount must not have propagated to our namespace.
	after, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Count(string(after), dir) != strings.Count(string(before), dir) {
		t.Errorf("the sandbox's mount of %s leaked into the parent namespace", dir)
	}
}

func TestSandboxChroot(t *testing.T) {
	for _, who := range []string{"root", "unprivileged"} {
		t.Run(who, func(t *testing.T) {
			var u *testUser
			if who == "root" {
				u = rootUser(t)
			} else {
				u = unprivilegedUser(t, true)
			}
			dir := sharedDir(t, "chroot-"+who)
			rep, _ := runRoleAs(t, u, "sandbox", 0, sandboxEnv+"=chroot", sharedDirEv+"="+dir)
			checkJailed(t, rep, "chroot-"+who, false)
		})
	}
}

// TestConfineUnprivileged confines a process as an unprivileged user and
// has it try, as a bug would, to read, reopen, create and list files
// outside the share and to run a program: every attempt must fail, and
// the share must stay usable.
func TestConfineUnprivileged(t *testing.T) {
	u := unprivilegedUser(t, false)
	dir := sharedDir(t, "confine")
	outside := filepath.Join(binDir, "beside-the-share")
	if err := os.WriteFile(outside, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777) // the test user creates a file in it
	os.Chmod(binDir, 0o777)
	rep, _ := runRoleAs(t, u, "confine", 0, sharedDirEv+"="+dir, outsideEnv+"="+outside)
	c := rep.Confine
	if c == nil {
		t.Fatal("no confine report")
	}
	t.Logf("%+v", *c)
	if !c.Confinement.NoNewPrivs {
		t.Errorf("no_new_privs not in force")
	}
	if c.ReadInside != "ok" || c.CreateInside != "ok" {
		t.Errorf("inside the share: read %q, create %q; want both ok", c.ReadInside, c.CreateInside)
	}
	if c.Confinement.LandlockABI == 0 {
		if inCI() {
			t.Fatalf("CI=true and this kernel has no Landlock")
		}
		t.Skip("this kernel has no Landlock: only no_new_privs is checked")
	}
	for what, got := range map[string]string{"read": c.ReadOutside, "reopen through /proc/self/fd": c.ReopenOutside,
		"create": c.CreateOutside, "list ..": c.ListParent, "exec /bin/true": c.ExecShell} {
		if !strings.Contains(got, "permission denied") {
			t.Errorf("%s outside the share: %q, want permission denied", what, got)
		}
	}
}

func inCI() bool { return os.Getenv("CI") == "true" }
