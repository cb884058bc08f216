package userns_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/idmap"
	"github.com/uvfsd/uvfsd/userns"
)

func TestEnterWithSubordinateRanges(t *testing.T) {
	u := unprivilegedUser(t, true)
	rep, stderr := runRoleAs(t, u, "state", 7, exitEnv+"=7")
	st := rep.State
	if rep.UID != 0 || rep.GID != 0 {
		t.Errorf("child runs as %d:%d, want 0:0", rep.UID, rep.GID)
	}
	if !st.InNamespace || st.HostUID != u.uid || st.HostGID != u.gid || !st.SubordinateRanges || !st.CanSetgroups || !st.MountNamespace {
		t.Errorf("state = %+v", st)
	}
	for _, k := range []struct {
		file, got string
		own       uint32
	}{{"/etc/subuid", rep.UIDMap, u.uid}, {"/etc/subgid", rep.GIDMap, u.gid}} {
		ranges, err := idmap.ReadSubIDs(k.file, passwdName(u.uid), u.uid)
		if err != nil || len(ranges) == 0 {
			t.Fatalf("%s: %v, %v", k.file, ranges, err)
		}
		lines := strings.Split(strings.TrimSpace(k.got), "\n")
		if lines[0] != fmt.Sprintf("0 %d 1", k.own) {
			t.Errorf("%s map starts with %q, want the own id at 0", k.file, lines[0])
		}
		want := fmt.Sprintf("1 %d %d", ranges[0].Start, ranges[0].Count)
		if len(lines) < 2 || lines[1] != want {
			t.Errorf("%s map = %q, want second line %q", k.file, k.got, want)
		}
	}
	if rep.CapEff == "" || rep.CapEff == "0000000000000000" {
		t.Errorf("stage 2 has no capabilities (CapEff %q); the second exec is missing", rep.CapEff)
	}
	if strings.Contains(stderr, "no subordinate ids") {
		t.Errorf("note printed although ranges exist: %s", stderr)
	}
}

func TestEnterWithoutSubordinateRanges(t *testing.T) {
	u := unprivilegedUser(t, false)
	rep, stderr := runRoleAs(t, u, "state", 0)
	st := rep.State
	if rep.UID != 0 || rep.UIDMap != fmt.Sprintf("0 %d 1\n", u.uid) || rep.GIDMap != fmt.Sprintf("0 %d 1\n", u.gid) {
		t.Errorf("uid %d, maps %q %q; want the own ids at 0", rep.UID, rep.UIDMap, rep.GIDMap)
	}
	if st.SubordinateRanges || st.CanSetgroups || !st.InNamespace || st.HostUID != u.uid {
		t.Errorf("state = %+v", st)
	}
	if n := strings.Count(stderr, "usermod --add-subuids"); n != 1 {
		t.Errorf("the note appears %d times, want once:\n%s", n, stderr)
	}
}

func TestEnterExplicitUIDMap(t *testing.T) {
	u := unprivilegedUser(t, true)
	ranges, _ := idmap.ReadSubIDs("/etc/subuid", passwdName(u.uid), u.uid)
	// Only part of the range, at an offset: not what /etc/subuid gives.
	flags := fmt.Sprintf(":0:%d:1:,/100/%d/10/", u.uid, ranges[0].Start+5)
	rep, _ := runRoleAs(t, u, "state", 0, uidMapEnv+"="+flags)
	want := fmt.Sprintf("0 %d 1\n100 %d 10\n", u.uid, ranges[0].Start+5)
	if rep.UIDMap != want || rep.UID != 0 || rep.State.HostUID != u.uid {
		t.Errorf("uid %d, uid_map %q; want uid 0 and %q", rep.UID, rep.UIDMap, want)
	}
}

// startWaiter runs the wait role and returns it with the child's pid.
func startWaiter(t *testing.T, u *testUser) (*role, int) {
	t.Helper()
	pidFile := fmt.Sprintf("%s/pid-%d", testBinaryDir(t), time.Now().UnixNano())
	r := startRole(t, u, "wait", pidFileEnv+"="+pidFile)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(pidFile); err == nil && len(b) > 0 {
			pid, _ := strconv.Atoi(string(b))
			if pid == r.cmd.Process.Pid {
				t.Fatalf("the role did not re-exec: pid %d is the parent", pid)
			}
			return r, pid
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the child never wrote its pid; stderr: %s", r.stderr.String())
	return nil, 0
}

func testBinaryDir(t *testing.T) string {
	testBinary(t)
	os.Chmod(binDir, 0o777) // the test user writes pid files here
	return binDir
}

func TestEnterForwardsSignals(t *testing.T) {
	u := unprivilegedUser(t, true)
	for _, tt := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGHUP, 33}, {syscall.SIGTERM, 128 + int(syscall.SIGTERM)}, {syscall.SIGINT, 128 + int(syscall.SIGINT)}} {
		r, _ := startWaiter(t, u)
		if err := r.cmd.Process.Signal(tt.sig); err != nil {
			t.Fatal(err)
		}
		if code := r.wait(t); code != tt.code {
			t.Errorf("after %v the parent exited %d, want %d; stderr: %s", tt.sig, code, tt.code, r.stderr.String())
		}
	}
}

func TestEnterChildDiesWithParent(t *testing.T) {
	u := unprivilegedUser(t, true)
	r, child := startWaiter(t, u)
	if err := r.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// Process.Wait, not Cmd.Wait: the latter also waits for the
	// child to close stdout, which would hide a surviving child.
	r.cmd.Process.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if !alive(child) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	syscall.Kill(child, syscall.SIGKILL)
	t.Fatalf("child %d still runs after its parent was killed", child)
}

// alive: the process exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+1:])
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

func TestEnterAsRoot(t *testing.T) {
	rootUser(t)
	// No re-exec without a mount namespace: this very process.
	st, err := userns.Enter(userns.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if st.InNamespace || st.HostUID != 0 || !st.SubordinateRanges || !st.CanSetgroups || st.MountNamespace || !st.UIDs.IsIdentity() {
		t.Errorf("root state = %+v", st)
	}
}

func TestEnterAsRootWithMountNamespace(t *testing.T) {
	u := rootUser(t)
	rep, _ := runRoleAs(t, u, "state", 5, mountNSEnv+"=1", exitEnv+"=5")
	own, _ := os.Readlink("/proc/self/ns/mnt")
	if rep.MountNS == own || rep.MountNS == "" {
		t.Errorf("child mount namespace %q, parent's %q: want a new one", rep.MountNS, own)
	}
	if rep.State.InNamespace || !rep.State.MountNamespace || rep.UID != 0 {
		t.Errorf("state = %+v", rep.State)
	}
}

// TestEnterFallsBackWithoutUserNamespaces: where user namespaces are
// disabled, Enter serves from a plain child as the invoking user and
// says why in State.Fallback; with NoFallback it fails and names the cause.
func TestEnterFallsBackWithoutUserNamespaces(t *testing.T) {
	u := unprivilegedUser(t, true)
	disabled := fmt.Sprintf("%s/max_user_namespaces-%d", testBinaryDir(t), time.Now().UnixNano())
	if err := os.WriteFile(disabled, []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, stderr := runRoleAs(t, u, "state", 6, maxUserNSEv+"="+disabled, mountNSEnv+"=1", exitEnv+"=6")
	st := rep.State
	if rep.UID != int(u.uid) || st.InNamespace || st.MountNamespace || !st.Reexeced || st.SubordinateRanges {
		t.Errorf("uid %d, state %+v: want the invoking user's uid %d in a plain re-exec'ed child", rep.UID, st, u.uid)
	}
	if !strings.Contains(st.Fallback, "max_user_namespaces") {
		t.Errorf("State.Fallback = %q, want the disabled sysctl named", st.Fallback)
	}
	if strings.Contains(stderr, "usermod") || strings.Contains(stderr, "note") {
		t.Errorf("notes about namespace maps printed although no namespace was made: %s", stderr)
	}

	r := startRole(t, u, "state", maxUserNSEv+"="+disabled, noFallbackE+"=1")
	if code := r.wait(t); code == 0 || !strings.Contains(r.stderr.String(), "max_user_namespaces") || !strings.Contains(r.stderr.String(), "--no-fallback") {
		t.Errorf("with NoFallback: exit %d, stderr %q; want a failure naming the sysctl and --no-fallback", code, r.stderr.String())
	}
}

// TestEnterNoUserNamespace: --sandbox=none serves as the invoking user,
// from a child (Reexec) so that the parent can clean up after it.
func TestEnterNoUserNamespace(t *testing.T) {
	u := unprivilegedUser(t, true)
	rep, _ := runRoleAs(t, u, "state", 0, noUserNSEnv+"=1")
	st := rep.State
	if rep.UID != int(u.uid) || st.InNamespace || st.MountNamespace || !st.Reexeced || st.Fallback != "" {
		t.Errorf("uid %d, state %+v: want the invoking user, no namespace, no fallback", rep.UID, st)
	}
}
