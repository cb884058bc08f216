package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestLauncherHostRoot runs scripts/uvfs-vm as the unprivileged user with
// its default guest, the host's root file system read-only: the host's Go,
// Python and make run in the guest as the user, in the project directory
// the user was in; /usr cannot be written; $HOME and a --rw directory
// can, with the user's ownership on the host.
func TestLauncherHostRoot(t *testing.T) {
	requireGuestTools(t)
	requireRoot(t, "uvfs-vm runs as the unprivileged test account")
	buildUvfsd(t)
	u := e2eUser(t, userWithSubIDs)
	home, _, run := uvfsVMRunner(t, u)
	proj := filepath.Join(home, "proj")
	rw := makeDir(t, "uvfs-e2e-rw-", 0o755, u)
	if err := os.Mkdir(proj, 0o755); err != nil {
		t.Fatal(err)
	}
	makefile := "out.txt:\n\techo made by make > out.txt\n\t@echo make ran in $(CURDIR)\n"
	if err := os.WriteFile(filepath.Join(proj, "Makefile"), []byte(makefile), 0o644); err != nil {
		t.Fatal(err)
	}
	u.chown(t, proj)
	u.chown(t, filepath.Join(proj, "Makefile"))
	const usrProbe = "/usr/uvfs-e2e-must-not-exist"

	stdout, stderr, code := run("--rw", rw, "--", "sh", "-c", `id -un; go version; python3 --version; python3 -c "print(1)"
cd ~/proj && make
echo x > `+usrProbe+` || echo "usr write failed"
echo rw > `+rw+`/from-guest`)
	t.Logf("stdout:\n%s", stdout)
	if code != 0 {
		t.Fatalf("uvfs-vm exited %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	hostOut := func(name string, args ...string) string {
		cmd := exec.Command(name, args...)
		cmd.Env = []string{"PATH=/usr/local/go/bin:/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("host %s: %v\n%s", name, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	for _, want := range []string{
		u.Name + "\n",
		hostOut("go", "version") + "\n",
		hostOut("/usr/bin/python3", "--version") + "\n",
		"1\n",
		"echo made by make > out.txt\n",
		"make ran in " + proj + "\n",
		"Read-only file system",
		"usr write failed\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("guest output lacks %q", want)
		}
	}
	if _, err := os.Lstat(usrProbe); !os.IsNotExist(err) {
		t.Errorf("host %s exists after the guest wrote it (err %v)", usrProbe, err)
		os.Remove(usrProbe)
	}
	for file, content := range map[string]string{filepath.Join(proj, "out.txt"): "made by make\n", filepath.Join(rw, "from-guest"): "rw\n"} {
		data, err := os.ReadFile(file)
		if err != nil || string(data) != content {
			t.Errorf("host %s: %q (err %v), want %q", file, data, err, content)
			continue
		}
		if uid, gid := ownerOf(t, file); uid != u.UID || gid != u.GID {
			t.Errorf("host %s owned by %d:%d, want %s %d:%d", file, uid, gid, u.Name, u.UID, u.GID)
		}
	}
}
