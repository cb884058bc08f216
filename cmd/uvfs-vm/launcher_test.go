package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uvfsd/uvfsd/scripts/vm"
)

// TestLauncherRunsCommandInHome runs the real launcher binary against QEMU's
// C virtiofsd (uvfsd is swapped in by the flag the wrapper passes) and checks
// the command ran in $HOME as the caller, wrote through to the host, and
// that its exit status and output came back and the run dir was removed.
func TestLauncherRunsCommandInHome(t *testing.T) {
	skip := t.Skipf
	if os.Getenv("CI") == "true" {
		skip = t.Fatalf
	}
	if os.Geteuid() != 0 {
		skip("the C virtiofsd used to test the launcher needs root")
	}
	for _, need := range []string{cVirtiofsd, "/bin/busybox"} {
		if _, err := os.Stat(need); err != nil {
			skip("%s missing: %v", need, err)
		}
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		skip("qemu-system-x86_64 missing: %v", err)
	}
	k, err := vm.BaselineKernel()
	if err != nil {
		skip("%v", err)
	}
	bin := t.TempDir()
	launcher := filepath.Join(bin, "uvfs-vm")
	helper := filepath.Join(bin, "uvfs-helper")
	if err := vm.GoBuild(context.Background(), launcher, "github.com/uvfsd/uvfsd/cmd/uvfs-vm"); err != nil {
		t.Fatal(err)
	}
	if err := vm.BuildHelper(context.Background(), helper); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	runBase := t.TempDir()
	cmd := exec.Command(launcher, "--helper", helper, "--mem", "512", "--rootfs=busybox", "--kernel", k.Path, "--",
		"sh", "-c", `echo "in $(pwd) as $(id -u)"; echo from-guest > "$HOME/probe"; exit 7`)
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_RUNTIME_DIR="+runBase, daemonEnv+"=c-virtiofsd", "XDG_CACHE_HOME="+filepath.Join(runBase, "cache"))
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 {
		t.Fatalf("want exit status 7, got %v\nstdout:\n%s\nstderr:\n%s", err, out, stderrOf(err))
	}
	if want := "in " + home + " as 0\n"; string(out) != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
	if data, err := os.ReadFile(filepath.Join(home, "probe")); err != nil || string(data) != "from-guest\n" {
		t.Errorf("host $HOME/probe: %q (err %v)", data, err)
	}
	left, _ := filepath.Glob(filepath.Join(runBase, "uvfs-vm-*"))
	if len(left) != 0 {
		t.Errorf("run directories left behind: %v", left)
	}
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return strings.TrimSpace(string(ee.Stderr))
	}
	return ""
}

// TestUvfsdArgs pins the uvfsd command lines the launcher uses.
func TestUvfsdArgs(t *testing.T) {
	for _, c := range []struct {
		s    share
		want string
	}{
		{share{tag: "home", host: "/home/dev", guest: "/home/dev"}, "--socket-path=/run/x/uvfs.sock --shared-dir=/home/dev --profile=home"},
		{share{tag: "root", host: "/", guest: "/", root: true}, "--socket-path=/run/x/uvfs.sock --shared-dir=/ --readonly --sandbox=none --cache=always"},
	} {
		if got := strings.Join(uvfsdArgs("/run/x/uvfs.sock", c.s), " "); got != c.want {
			t.Errorf("uvfsd args for %s: %q, want %q", c.s.host, got, c.want)
		}
	}
}
