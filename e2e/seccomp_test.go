package e2e

import (
	"os"
	"strings"
	"testing"
)

// envSeccomp gives every uvfsd that uvfsdSpec starts --seccomp=VALUE: UVFSD_E2E_SECCOMP=log runs
// the tests with a filter that names each call outside uvfsd's list instead of killing the
// daemon (README, "seccomp": how to check the list after a Go upgrade).
const envSeccomp = "UVFSD_E2E_SECCOMP"

func seccompArgs() []string {
	if v := os.Getenv(envSeccomp); v != "" {
		return []string{"--seccomp=" + v}
	}
	return nil
}

// seccompDenied is how uvfsd starts the line that reports a call outside its list
// (userns.SuperviseSeccomp).
const seccompDenied = "seccomp: system call outside the list: "

// checkNoSeccompDenials fails the test for each call outside the list that the daemon's output
// reports.
func checkNoSeccompDenials(t *testing.T, output string) {
	t.Helper()
	for line := range strings.Lines(output) {
		if strings.Contains(line, seccompDenied) {
			t.Errorf("uvfsd made a system call outside its seccomp list: %s", strings.TrimSpace(line))
		}
	}
}

// seccompScript makes the calls of the daemon that the workout does not reach: fsync, fdatasync
// and syncfs, fallocate, and xattrs of a symlink (which passfs reads on a thread of its own that
// unshares its working directory). Each line it prints starts with OK or FAILED.
const seccompScript = `
helper=/bin/uvfs-helper
cd /mnt
try() { if "$@" >/dev/null 2>&1; then echo "OK $*"; else echo "FAILED $*"; fi; }
echo data > f
try sync f
try sync -d f
try sync -f f
try fallocate -l 65536 fa
ln -s f link
try $helper listxattr link
$helper getxattr link user.none >/dev/null 2>&1
$helper setxattr link trusted.uvfs x >/dev/null 2>&1
echo done
`

// TestSeccompFilterServesEveryCall runs seccompScript under the default filter as root, and under
// --seccomp=log rootless in a user namespace with the options that change what the daemon calls (a
// thread pool, locks, ACLs): the first daemon must live to the end, the second must report no call
// outside its list, and say that the log filter was on.
func TestSeccompFilterServesEveryCall(t *testing.T) {
	requireGuestTools(t)
	cases := []struct {
		name  string
		user  func(t *testing.T) testUser
		flags []string
		say   string
	}{
		{"root-kill", currentUser, []string{"--seccomp=kill"}, "any other kills the daemon (--seccomp=kill)"},
		{"rootless-log", func(t *testing.T) testUser { return e2eUser(t, userWithSubIDs) },
			[]string{"--seccomp=log", "--thread-pool-size=4", "--posix-lock", "--flock", "--posix-acl"},
			"any other is logged and runs (--seccomp=log)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "root-kill" && os.Geteuid() != 0 {
				missing(t, "running uvfsd as root needs root")
			}
			spec := uvfsdSpec(t, c.user(t), c.flags...)
			b := bootWithDaemon(t, spec, seccompScript, nil)
			out := strings.Join(b.res.Output, "\n")
			if !strings.Contains(out, "done") || strings.Count(out, "OK ") != 5 {
				t.Errorf("the guest script did not make every call:\n%s", out)
			}
			if !strings.Contains(b.daemonOutput, c.say) {
				t.Errorf("the daemon did not say %q:\n%s", c.say, b.daemonOutput)
			}
		})
	}
}
