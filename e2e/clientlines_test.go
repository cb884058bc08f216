package e2e

import (
	"testing"
)

// clientLines are the exact command lines with which the real clients start
// virtiofsd, the socket and the shared directory filled in (NOTES.md, and
// each client's source: virtme-ng's virtme/commands/run.py, Lima's
// pkg/hostagent, podman's pkg/machine/qemu/virtiofsd.go).
var clientLines = []struct {
	name string
	args func(socket, shared string) []string
	// xattrs: the line enables extended attributes (--posix-acl implies them).
	xattrs bool
	// inShare: the client runs the daemon from the shared directory.
	inShare bool
}{
	{name: "vng-1.35", args: func(s, d string) []string {
		return []string{"--syslog", "--no-announce-submounts", "--socket-path", s, "--shared-dir", d, "--sandbox", "none"}
	}},
	{name: "vng-1.35-cache-always", args: func(s, d string) []string {
		return []string{"--syslog", "--no-announce-submounts", "--socket-path", s, "--shared-dir", d, "--sandbox", "none", "--cache", "always"}
	}},
	{name: "vng-1.35-cache-auto-posix-acl", xattrs: true, args: func(s, d string) []string {
		return []string{"--syslog", "--no-announce-submounts", "--posix-acl", "--socket-path", s, "--shared-dir", d, "--sandbox", "none", "--cache", "auto"}
	}},
	{name: "vng-1.41-o-cache-always", args: func(s, d string) []string {
		return []string{"--syslog", "--no-announce-submounts", "--socket-path", s, "--shared-dir", d, "--sandbox", "none", "-o", "cache=always"}
	}},
	{name: "vng-1.41-o-cache-auto-posix-acl", xattrs: true, args: func(s, d string) []string {
		return []string{"--syslog", "--no-announce-submounts", "--posix-acl", "--socket-path", s, "--shared-dir", d, "--sandbox", "none", "-o", "cache=auto"}
	}},
	{name: "lima", args: func(s, d string) []string {
		return []string{"--socket-path", s, "--shared-dir", d}
	}},
	{name: "podman-machine", inShare: true, args: func(s, _ string) []string {
		return []string{"--sandbox", "none", "--socket-path", s, "--shared-dir", ".", "--seccomp=none"}
	}},
}

// TestWorkoutClientCommandLines runs the POSIX workout against uvfsd
// started, as the unprivileged test user, with each real client's exact
// command line.
func TestWorkoutClientCommandLines(t *testing.T) {
	requireGuestTools(t)
	u := e2eUser(t, userWithSubIDs)
	bin := buildUvfsd(t)
	for _, c := range clientLines {
		t.Run(c.name, func(t *testing.T) {
			runWorkout(t, daemonSpec{path: bin, args: c.args, user: u, xattrs: c.xattrs, inShare: c.inShare})
		})
	}
}
