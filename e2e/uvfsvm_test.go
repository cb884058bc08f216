package e2e

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/e2e/guest"
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

// TestLauncherStopsEverything interrupts uvfs-vm while its guest command
// runs, as Ctrl-C does (SIGINT to the terminal's whole process group), and
// kills its QEMU in another run: uvfs-vm must exit with 130 and 125, and
// leave no QEMU and no uvfsd behind.
func TestLauncherStopsEverything(t *testing.T) {
	requireGuestTools(t)
	requireRoot(t, "uvfs-vm runs as the unprivileged test account")
	buildUvfsd(t)
	u := e2eUser(t, userWithSubIDs)
	home, _, env := launcherEnv(t, u)
	script, err := filepath.Abs(filepath.Join("..", "scripts", "uvfs-vm"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		stop     func(t *testing.T, pgid int)
		wantCode int
	}{
		{"ctrl-c", func(t *testing.T, pgid int) { syscall.Kill(-pgid, syscall.SIGINT) }, 130},
		{"qemu-killed", func(t *testing.T, pgid int) {
			qemu := processesInGroup(pgid, "qemu-system")
			if len(qemu) != 1 {
				t.Fatalf("want one QEMU in the group, found %v", qemu)
			}
			syscall.Kill(qemu[0], syscall.SIGKILL)
		}, 125},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, script, "--timeout=5m", "--mem=512", "--kernel="+requireGuestTools(t).kernel.Path,
				"--", "sh", "-c", "echo READY; sleep 600")
			cmd.Dir, cmd.Env = home, env
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.Credential(), Setpgid: true}
			cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pgid := cmd.Process.Pid
			defer syscall.Kill(-pgid, syscall.SIGKILL)
			sc := bufio.NewScanner(out)
			ready := false
			for !ready && sc.Scan() {
				ready = strings.TrimSpace(sc.Text()) == "READY"
			}
			if !ready {
				cmd.Wait()
				t.Fatalf("the guest command never started\nstderr:\n%s", stderr.String())
			}
			if n := len(processesInGroup(pgid, "uvfsd")); n < 2 {
				t.Errorf("want the two uvfsd (root and home) running, found %d", n)
			}
			c.stop(t, pgid)
			go io.Copy(io.Discard, out)
			cmd.Wait()
			if code := cmd.ProcessState.ExitCode(); code != c.wantCode {
				t.Errorf("uvfs-vm exited %d, want %d\nstderr:\n%s", code, c.wantCode, stderr.String())
			}
			var left []int
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				if left = processesInGroup(pgid, ""); len(left) == 0 {
					break
				}
			}
			if len(left) != 0 {
				t.Errorf("processes left in uvfs-vm's group after it exited: %v", left)
			}
		})
	}
}

// processesInGroup lists the live processes of process group pgid whose
// command name starts with comm ("" for all). Zombies do not count: on
// these machines pid 1 may not reap them.
func processesInGroup(pgid int, comm string) []int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var pids []int
	for _, dir := range dirs {
		pid, _ := strconv.Atoi(filepath.Base(dir))
		s, err := guest.ReadProcStat(pid)
		if err != nil || s.State == 'Z' || s.PGRP != pgid || !strings.HasPrefix(s.Comm, comm) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}
