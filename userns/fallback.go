package userns

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// unusableError marks a failure that means this host gives uvfsd no
// usable user namespace: creating it is forbidden (a container's seccomp
// profile, a sysctl, the namespace limit) or it comes without the
// capabilities it should grant (AppArmor). Enter then serves without one.
type unusableError struct {
	reason string // short, for the one warning line of the fallback
	err    error  // the whole story, for --no-fallback's error
}

func (e *unusableError) Error() string { return e.err.Error() }
func (e *unusableError) Unwrap() error { return e.err }

func isUnusable(err error) bool {
	var u *unusableError
	return errors.As(err, &u)
}

// unusableReason is what the fallback warning says was given up.
func unusableReason(err error) string {
	var u *unusableError
	if errors.As(err, &u) {
		return u.reason
	}
	return err.Error()
}

// cloneUnusable classifies an error from starting the child with
// CLONE_NEWUSER: the errnos with which kernels, seccomp profiles and
// limits refuse a user namespace. Anything else (no /proc/self/exe, no
// memory) is a plain error.
func cloneUnusable(p Paths, err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err
	}
	switch errno {
	case syscall.EPERM, syscall.EACCES, syscall.ENOSPC, syscall.EUSERS, syscall.EINVAL, syscall.ENOSYS:
		return &unusableError{reason: "creating a user namespace failed (" + errno.Error() + ": " + cloneCause(p, errno) + ")",
			err: explainCloneError(p, err)}
	}
	return err
}

// cloneCause names the likely culprit of a refused CLONE_NEWUSER.
func cloneCause(p Paths, errno syscall.Errno) string {
	switch {
	case errno == syscall.ENOSPC || errno == syscall.EUSERS:
		return "the limit in " + p.MaxUserNamespaces + " is reached"
	case noNewPrivs(p):
		return "a container's seccomp profile forbids it"
	}
	return "a container's seccomp profile or a security module forbids it"
}

// mapWriteUnusable classifies a failure to write the child's uid_map or
// gid_map: EPERM there means the namespace is not ours to set up (AppArmor,
// or newuidmap losing its setuid bit to no_new_privs).
func mapWriteUnusable(kind string, err error) error {
	msg := err.Error()
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) ||
		strings.Contains(msg, "Operation not permitted") || strings.Contains(msg, "Permission denied") {
		return &unusableError{reason: "writing the user namespace's " + kind + "_map was refused", err: err}
	}
	return err
}

// noNewPrivs reports whether no_new_privs is set on this process (a
// container runtime or service manager set it): setuid newuidmap and
// newgidmap then run without privilege and cannot map subordinate ids.
func noNewPrivs(p Paths) bool {
	b, err := os.ReadFile(filepath.Join(p.Proc, "self/status"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "NoNewPrivs:"); ok {
			return strings.TrimSpace(v) == "1"
		}
	}
	return false
}
