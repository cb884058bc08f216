package guest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// These tests work on files in t.TempDir(): they never touch /etc or
// create accounts.

func TestNextSubIDStart(t *testing.T) {
	for _, c := range []struct {
		name, file string
		want       uint64
	}{
		{"empty file starts where useradd does", "", 100000},
		{"after the highest range", "a:100000:65536\nb:300000:1000\nc:165536:65536\n", 301000},
		{"ranges below 100000 do not lower it", "a:1000:2000\n", 100000},
		{"malformed lines are skipped", "a:100000\nb:x:5\nc:200000:y\n d:200000:10 \n", 200010},
	} {
		if got := nextSubIDStart(strings.NewReader(c.file)); got != c.want {
			t.Errorf("%s: nextSubIDStart(%q) = %d, want %d", c.name, c.file, got, c.want)
		}
	}
}

func TestAddAndRemoveSubIDs(t *testing.T) {
	file := filepath.Join(t.TempDir(), "subuid")
	alice := HostUser{Name: "alice", UID: 1234}
	bob := HostUser{Name: "bob", UID: 1235}

	if has, err := HasSubIDs(file, alice); err != nil || has {
		t.Fatalf("missing file: HasSubIDs = %v, %v; want false, nil", has, err)
	}
	if err := addSubIDs(file, alice.Name); err != nil {
		t.Fatal(err)
	}
	if err := addSubIDs(file, bob.Name); err != nil {
		t.Fatal(err)
	}
	// A line keyed by uid is alice's too.
	if err := os.WriteFile(file, append(readFile(t, file), "1234:500000:10\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	want := "alice:100000:65536\nbob:165536:65536\n1234:500000:10\n"
	if got := string(readFile(t, file)); got != want {
		t.Fatalf("after adding:\n%s\nwant:\n%s", got, want)
	}
	for _, u := range []HostUser{alice, bob} {
		if has, err := HasSubIDs(file, u); err != nil || !has {
			t.Errorf("HasSubIDs(%s) = %v, %v; want true, nil", u.Name, has, err)
		}
	}

	if err := removeSubIDs(file, alice); err != nil {
		t.Fatal(err)
	}
	if got, want := string(readFile(t, file)), "bob:165536:65536\n"; got != want {
		t.Errorf("after removing alice: %q, want %q", got, want)
	}
	if has, err := HasSubIDs(file, alice); err != nil || has {
		t.Errorf("HasSubIDs(alice) after removal = %v, %v; want false, nil", has, err)
	}
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("rewritten file has mode %v, want 0644 (newuidmap's files are world-readable)", st.Mode().Perm())
	}
	if left, _ := filepath.Glob(file + ".uvfs-e2e-*"); len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

func TestOwnsSubIDLine(t *testing.T) {
	u := HostUser{Name: "uvfs", UID: 1001}
	for line, want := range map[string]bool{
		"uvfs:100000:65536":    true,
		"  uvfs:100000:65536 ": true,
		"1001:100000:65536":    true,
		"uvfs2:100000:65536":   false,
		"10010:100000:65536":   false,
		"":                     false,
	} {
		if got := u.OwnsSubIDLine(line); got != want {
			t.Errorf("OwnsSubIDLine(%q) = %v, want %v", line, got, want)
		}
	}
}

func TestCredential(t *testing.T) {
	if c := (HostUser{Current: true, UID: 5}).Credential(); c != nil {
		t.Errorf("current user: credential %+v, want nil (no switch)", c)
	}
	c := HostUser{UID: 5, GID: 6}.Credential()
	if c == nil || c.Uid != 5 || c.Gid != 6 || len(c.Groups) != 1 || c.Groups[0] != 6 {
		t.Errorf("credential %+v: want uid 5, gid 6 and 6 as the only supplementary group (as after a login)", c)
	}
}

func readFile(t *testing.T, file string) []byte {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestCurrentAndLookupUser(t *testing.T) {
	cur, err := CurrentUser()
	if err != nil {
		t.Logf("no name for the current user: %v", err)
	}
	if !cur.Current || cur.UID != uint32(os.Getuid()) || cur.GID != uint32(os.Getgid()) || cur.Name == "" {
		t.Errorf("CurrentUser() = %+v, want this process's ids, a name and Current", cur)
	}
	root, err := LookupUser("root")
	if err != nil {
		t.Fatal(err)
	}
	if root != (HostUser{Name: "root"}) {
		t.Errorf(`LookupUser("root") = %+v, want uid 0, gid 0, not Current`, root)
	}
	if _, err := LookupUser("uvfs-no-such-user"); err == nil {
		t.Error("LookupUser of a missing account succeeded")
	}
}
