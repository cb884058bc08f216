package e2e

import (
	"os"
	"testing"

	"github.com/uvfsd/uvfsd/e2e/guest"
)

// Unprivileged accounts the tests run daemons as, created when the tests
// run as root.
const (
	userWithSubIDs    = "uvfs-e2e"       // has /etc/subuid and /etc/subgid ranges
	userWithoutSubIDs = "uvfs-e2e-nosub" // has none: namespace setup must explain
)

// testUser is an account a daemon runs as.
type testUser struct{ guest.HostUser }

// chown gives path to u (no-op for the current user).
func (u testUser) chown(t *testing.T, path string) {
	t.Helper()
	if u.Current {
		return
	}
	if err := os.Chown(path, int(u.UID), int(u.GID)); err != nil {
		t.Fatal(err)
	}
}

// e2eUser returns the named test account, creating it when running as
// root. When not root it returns the current user, whatever its sub-ids.
func e2eUser(t *testing.T, name string) testUser {
	t.Helper()
	if os.Geteuid() != 0 {
		return currentUser(t)
	}
	u, err := guest.EnsureUser(name, name == userWithSubIDs)
	if err != nil {
		t.Fatalf("test user: %v", err)
	}
	return testUser{u}
}

func currentUser(t *testing.T) testUser {
	t.Helper()
	u, err := guest.CurrentUser()
	if err != nil {
		t.Fatal(err)
	}
	return testUser{u}
}

// TestE2EUsers checks the accounts other tests rely on: one with sub-id
// ranges, one without, both unprivileged.
func TestE2EUsers(t *testing.T) {
	if os.Geteuid() != 0 {
		u := e2eUser(t, userWithSubIDs)
		if !u.Current || u.UID != uint32(os.Getuid()) {
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
		if u.UID == 0 || u.GID == 0 || u.Current {
			t.Errorf("test user %+v must be unprivileged and not the current user", u)
		}
	}
	for _, file := range guest.SubIDFiles {
		if has, err := guest.HasSubIDs(file, with.HostUser); err != nil || !has {
			t.Errorf("%s has no range for %s (err %v)", file, with.Name, err)
		}
		if has, err := guest.HasSubIDs(file, without.HostUser); err != nil || has {
			t.Errorf("%s has a range for %s (err %v)", file, without.Name, err)
		}
	}
}
