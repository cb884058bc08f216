package userns_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/idmap"
)

// binDir holds a copy of the test binary that other users may run
// (go test builds into a 0700 directory).
var binDir string

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		runRole(role)
		return
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func testBinary(t *testing.T) string {
	t.Helper()
	if binDir == "" {
		dir, err := os.MkdirTemp("", "uvfsd-userns-test-")
		if err != nil {
			t.Fatal(err)
		}
		binDir = dir
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		src, err := os.ReadFile("/proc/self/exe")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "userns.test"), src, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(binDir, "userns.test")
}

// sharedDir makes a directory any test user can read, with a marker.
func sharedDir(t *testing.T, content string) string {
	t.Helper()
	testBinary(t)
	dir, err := os.MkdirTemp(binDir, "share-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, "marker"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// testUser is who a role runs as; nil credential means "as this process".
type testUser struct {
	name     string
	uid, gid uint32
	cred     *syscall.Credential
}

// unprivilegedUser returns a non-root user with (or without) subordinate
// ranges. As root it creates one (useradd); as non-root it can only be
// the current user, if that user fits.
func unprivilegedUser(t *testing.T, withRanges bool) *testUser {
	t.Helper()
	if os.Geteuid() != 0 {
		u := &testUser{uid: uint32(os.Getuid()), gid: uint32(os.Getgid())}
		ranges, _ := idmap.ReadSubIDs("/etc/subuid", passwdName(u.uid), u.uid)
		if (len(ranges) > 0) != withRanges {
			t.Skipf("not root, so cannot create a test user, and the current user %s subordinate ranges", map[bool]string{true: "lacks", false: "has"}[withRanges])
		}
		return u
	}
	name := "uvfs-ut"
	args := []string{"-m", "-s", "/bin/sh", name}
	if !withRanges {
		// System accounts get no /etc/subuid lines.
		name = "uvfs-ut-nosub"
		args = []string{"-r", "-M", "-s", "/usr/sbin/nologin", name}
	}
	if !userExists(name) {
		if out, err := exec.Command("useradd", args...).CombinedOutput(); err != nil {
			t.Skipf("cannot create test user %s: %v: %s", name, err, out)
		}
	}
	u := lookupUser(t, name)
	ranges, err := idmap.ReadSubIDs("/etc/subuid", name, u.uid)
	if err != nil {
		t.Fatal(err)
	}
	if withRanges && len(ranges) == 0 {
		out, err := exec.Command("usermod", "--add-subuids", "300000-365535", "--add-subgids", "300000-365535", name).CombinedOutput()
		if err != nil {
			t.Fatalf("usermod: %v: %s", err, out)
		}
	}
	if !withRanges && len(ranges) > 0 {
		t.Skipf("user %s unexpectedly has subordinate ranges %v", name, ranges)
	}
	return u
}

func rootUser(t *testing.T) *testUser {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	return &testUser{name: "root"}
}

func userExists(name string) bool {
	b, _ := os.ReadFile("/etc/passwd")
	return strings.Contains("\n"+string(b), "\n"+name+":")
}

func passwdName(uid uint32) string {
	b, _ := os.ReadFile("/etc/passwd")
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) > 2 && f[2] == fmt.Sprint(uid) {
			return f[0]
		}
	}
	return ""
}

func lookupUser(t *testing.T, name string) *testUser {
	t.Helper()
	b, _ := os.ReadFile("/etc/passwd")
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) > 3 && f[0] == name {
			u := &testUser{name: name}
			fmt.Sscan(f[2], &u.uid)
			fmt.Sscan(f[3], &u.gid)
			u.cred = &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: []uint32{}}
			return u
		}
	}
	t.Fatalf("user %s not in /etc/passwd", name)
	return nil
}

// role is a running role process.
type role struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	cancel         context.CancelFunc
}

func startRole(t *testing.T, u *testUser, name string, env ...string) *role {
	t.Helper()
	bin := testBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	r := &role{cancel: cancel}
	r.cmd = exec.CommandContext(ctx, bin)
	r.cmd.Dir = binDir
	r.cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", roleEnv + "=" + name}, env...)
	r.cmd.Stdout, r.cmd.Stderr = &r.stdout, &r.stderr
	if u.cred != nil {
		r.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.cred}
	}
	if err := r.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { r.cmd.Process.Kill(); cancel() })
	return r
}

// wait returns the exit code of the role's first process.
func (r *role) wait(t *testing.T) int {
	t.Helper()
	err := r.cmd.Wait()
	r.cancel()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return r.cmd.ProcessState.ExitCode()
}

func (r *role) report(t *testing.T) report {
	t.Helper()
	var rep report
	if err := json.NewDecoder(io.Reader(&r.stdout)).Decode(&rep); err != nil {
		t.Fatalf("no report (%v); stderr: %s", err, r.stderr.String())
	}
	return rep
}

// runRoleAs starts a role, waits for it, and checks its exit code.
func runRoleAs(t *testing.T, u *testUser, name string, wantCode int, env ...string) (report, string) {
	t.Helper()
	r := startRole(t, u, name, env...)
	if code := r.wait(t); code != wantCode {
		t.Fatalf("role %s exited %d, want %d; stderr:\n%s", name, code, wantCode, r.stderr.String())
	}
	return r.report(t), r.stderr.String()
}
