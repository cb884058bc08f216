package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// Unprivileged accounts the tests run daemons as, created when the tests
// run as root.
const (
	userWithSubIDs    = "uvfs-e2e"       // has /etc/subuid and /etc/subgid ranges
	userWithoutSubIDs = "uvfs-e2e-nosub" // has none: namespace setup must explain
)

// testUser is an account a daemon runs as.
type testUser struct {
	Name     string
	UID, GID uint32
	current  bool // the user running the tests; no credential switch needed
}

// credential returns what exec needs to run a process as u, or nil for
// the current user.
func (u testUser) credential() *syscall.Credential {
	if u.current {
		return nil
	}
	return &syscall.Credential{Uid: u.UID, Gid: u.GID, NoSetGroups: false, Groups: []uint32{}}
}

// chown gives path to u (no-op for the current user).
func (u testUser) chown(t *testing.T, path string) {
	t.Helper()
	if u.current {
		return
	}
	if err := os.Chown(path, int(u.UID), int(u.GID)); err != nil {
		t.Fatal(err)
	}
}

var usersMu sync.Mutex // useradd and the subid rewrites are not reentrant

// e2eUser returns the named test account, creating it when running as
// root. When not root it returns the current user, whatever its sub-ids.
func e2eUser(t *testing.T, name string) testUser {
	t.Helper()
	if os.Geteuid() != 0 {
		return currentUser(t)
	}
	usersMu.Lock()
	defer usersMu.Unlock()
	withSubIDs := name == userWithSubIDs
	u, err := user.Lookup(name)
	if err != nil {
		args := []string{"-M", "-s", "/usr/sbin/nologin", "-c", "uvfsd e2e tests"}
		if !withSubIDs {
			args = append(args, "-r") // system users get no sub-id ranges
		}
		out, addErr := exec.Command("useradd", append(args, name)...).CombinedOutput()
		// Another test process may have created it meanwhile: look again.
		if u, err = user.Lookup(name); err != nil {
			t.Fatalf("create test user %s: useradd: %v: %s", name, addErr, out)
		}
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	tu := testUser{Name: name, UID: uint32(uid), GID: uint32(gid)}
	for _, file := range []string{"/etc/subuid", "/etc/subgid"} {
		has, err := hasSubIDs(file, tu)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case withSubIDs && !has:
			if err := addSubIDs(file, name); err != nil {
				t.Fatal(err)
			}
		case !withSubIDs && has:
			if err := removeSubIDs(file, tu); err != nil {
				t.Fatal(err)
			}
		}
	}
	return tu
}

func currentUser(t *testing.T) testUser {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return testUser{Name: u.Username, UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), current: true}
}

// subIDLineOwner returns the owner field of an /etc/subuid line.
func subIDLineOwner(line string) string {
	owner, _, _ := strings.Cut(strings.TrimSpace(line), ":")
	return owner
}

func ownsLine(line string, u testUser) bool {
	owner := subIDLineOwner(line)
	return owner == u.Name || owner == strconv.FormatUint(uint64(u.UID), 10)
}

func hasSubIDs(file string, u testUser) (bool, error) {
	data, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", file, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if ownsLine(line, u) {
			return true, nil
		}
	}
	return false, nil
}

// addSubIDs appends a 65536-id range after every existing one, as useradd
// would have, for systems whose login.defs gives new users none.
func addSubIDs(file, name string) error {
	f, err := os.Open(file)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("read %s: %w", file, err)
	}
	next := uint64(100000)
	if f != nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			parts := strings.Split(strings.TrimSpace(sc.Text()), ":")
			if len(parts) != 3 {
				continue
			}
			start, err1 := strconv.ParseUint(parts[1], 10, 32)
			count, err2 := strconv.ParseUint(parts[2], 10, 32)
			if err1 == nil && err2 == nil && start+count > next {
				next = start + count
			}
		}
		f.Close()
	}
	out, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("add sub-ids for %s: %w", name, err)
	}
	_, err = fmt.Fprintf(out, "%s:%d:65536\n", name, next)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("add sub-ids for %s to %s: %w", name, file, err)
	}
	return nil
}

// removeSubIDs rewrites file without u's lines, atomically.
func removeSubIDs(file string, u testUser) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read %s: %w", file, err)
	}
	var kept []string
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if line != "" && !ownsLine(line, u) {
			kept = append(kept, line)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), filepath.Base(file)+".uvfs-e2e-*")
	if err != nil {
		return fmt.Errorf("rewrite %s: %w", file, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(strings.Join(kept, ""))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), file)
	}
	if err != nil {
		return fmt.Errorf("rewrite %s without %s: %w", file, u.Name, err)
	}
	return nil
}

// TestE2EUsers checks the accounts other tests rely on: one with sub-id
// ranges, one without, both unprivileged.
func TestE2EUsers(t *testing.T) {
	if os.Geteuid() != 0 {
		u := e2eUser(t, userWithSubIDs)
		if !u.current || u.UID != uint32(os.Getuid()) {
			t.Fatalf("not root: want the current user, got %+v", u)
		}
		return
	}
	with := e2eUser(t, userWithSubIDs)
	without := e2eUser(t, userWithoutSubIDs)
	again := e2eUser(t, userWithSubIDs) // idempotent
	if again != with {
		t.Errorf("second lookup gave %+v, first %+v", again, with)
	}
	for _, u := range []testUser{with, without} {
		if u.UID == 0 || u.GID == 0 || u.current {
			t.Errorf("test user %+v must be unprivileged and not the current user", u)
		}
	}
	for _, file := range []string{"/etc/subuid", "/etc/subgid"} {
		if has, err := hasSubIDs(file, with); err != nil || !has {
			t.Errorf("%s has no range for %s (err %v)", file, with.Name, err)
		}
		if has, err := hasSubIDs(file, without); err != nil || has {
			t.Errorf("%s has a range for %s (err %v)", file, without.Name, err)
		}
	}
}
