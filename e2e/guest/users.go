package guest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// SubIDFiles are the files newuidmap and newgidmap read sub-id ranges from.
var SubIDFiles = []string{"/etc/subuid", "/etc/subgid"}

// HostUser is a host account (User is the guest's) that runs a daemon and
// owns its share.
type HostUser struct {
	Name     string
	UID, GID uint32
	Current  bool // the user running this process: no credential switch, no chown
}

// Credential returns what exec needs to run a process as u, or nil for the
// current user.
func (u HostUser) Credential() *syscall.Credential {
	if u.Current {
		return nil
	}
	// The primary group among the supplementary ones too, as a login's initgroups(3) leaves it:
	// a daemon with supplementary groups must work (setgroups may be denied in its namespace).
	return &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: []uint32{u.GID}}
}

// OwnsSubIDLine reports whether an /etc/subuid-style line is u's: its
// owner field is u's name or uid, as newuidmap accepts either.
func (u HostUser) OwnsSubIDLine(line string) bool {
	owner, _, _ := strings.Cut(strings.TrimSpace(line), ":")
	return owner == u.Name || owner == strconv.FormatUint(uint64(u.UID), 10)
}

// CurrentUser returns the user running this process. If the user database
// has no name for it, the error says so and Name is the numeric uid; the
// rest of the HostUser is valid either way.
func CurrentUser() (HostUser, error) {
	u := HostUser{Name: strconv.Itoa(os.Getuid()), UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), Current: true}
	pw, err := user.Current()
	if err != nil {
		return u, fmt.Errorf("look up the current user: %w", err)
	}
	u.Name = pw.Username
	return u, nil
}

// LookupUser returns the existing account name.
func LookupUser(name string) (HostUser, error) {
	pw, err := user.Lookup(name)
	if err != nil {
		return HostUser{}, err
	}
	uid, err1 := strconv.ParseUint(pw.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(pw.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return HostUser{}, fmt.Errorf("user %s has a non-numeric uid %q or gid %q", name, pw.Uid, pw.Gid)
	}
	return HostUser{Name: name, UID: uint32(uid), GID: uint32(gid)}, nil
}

var usersMu sync.Mutex // useradd and the sub-id rewrites are not reentrant

// EnsureUser returns the account name, creating it (no home, nologin shell)
// when missing; it needs root. With subIDs the account gets a 65536-id range
// in each of SubIDFiles where it has none (useradd gives none on some
// systems). Without, it is made a system user and any ranges it has are
// removed, so that uvfsd's namespace setup has to cope without them.
func EnsureUser(name string, subIDs bool) (HostUser, error) {
	usersMu.Lock()
	defer usersMu.Unlock()
	u, err := LookupUser(name)
	if err != nil {
		args := []string{"-M", "-s", "/usr/sbin/nologin", "-c", "uvfsd e2e tests"}
		if !subIDs {
			args = append(args, "-r") // system users get no sub-id ranges
		}
		out, addErr := exec.Command("useradd", append(args, name)...).CombinedOutput()
		// Another process may have created it meanwhile: look again.
		if u, err = LookupUser(name); err != nil {
			return HostUser{}, fmt.Errorf("create user %s (run as root): useradd: %v: %s", name, addErr, out)
		}
	}
	for _, file := range SubIDFiles {
		has, err := HasSubIDs(file, u)
		if err != nil {
			return HostUser{}, err
		}
		switch {
		case subIDs && !has:
			err = addSubIDs(file, name)
		case !subIDs && has:
			err = removeSubIDs(file, u)
		}
		if err != nil {
			return HostUser{}, err
		}
	}
	return u, nil
}

// HasSubIDs reports whether an /etc/subuid-style file has a line for u.
// A missing file has none.
func HasSubIDs(file string, u HostUser) (bool, error) {
	data, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", file, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if u.OwnsSubIDLine(line) {
			return true, nil
		}
	}
	return false, nil
}

// nextSubIDStart returns the first id after every well-formed range in an
// /etc/subuid-style file, and at least 100000 as useradd starts there.
func nextSubIDStart(r io.Reader) uint64 {
	next := uint64(100000)
	sc := bufio.NewScanner(r)
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
	return next
}

// addSubIDs appends a 65536-id range for name after every existing one, as
// useradd would have, creating file if needed.
func addSubIDs(file, name string) error {
	data, err := os.ReadFile(file)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("read %s: %w", file, err)
	}
	next := nextSubIDStart(strings.NewReader(string(data)))
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
func removeSubIDs(file string, u HostUser) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read %s: %w", file, err)
	}
	var kept []string
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if line != "" && !u.OwnsSubIDLine(line) {
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
