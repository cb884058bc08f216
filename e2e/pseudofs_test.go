package e2e

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// hostRootScript looks at the host's root file system, served at /mnt: the host's /proc, /sys
// and /dev are empty directories (the guest mounts its own there), nothing under them can be
// found, /etc/shadow stays unreadable, and the rest is served.
const hostRootScript = `
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
for d in proc sys dev; do
	[ -d /mnt/$d ] || fail "/mnt/$d is not a directory"
	out=$(ls -A /mnt/$d 2>&1) || fail "ls -A /mnt/$d: $out"
	[ -z "$out" ] || fail "/mnt/$d lists: $(echo $out | head -c 300)"
	links=$(stat -c %h /mnt/$d)
	[ "$links" = 2 ] || fail "/mnt/$d has $links links, want an empty directory's 2"
done
for p in /mnt/proc/self/status /mnt/proc/self /mnt/proc/1/environ /mnt/proc/sys/kernel /mnt/sys/kernel \
	/mnt/sys/fs/cgroup /mnt/dev/pts /mnt/dev/pts/ptmx /mnt/dev/null /mnt/dev/shm; do
	[ -e $p ] && fail "$p exists"
	cat $p > /dev/null 2>&1 && fail "$p can be read"
done
# The host's /etc/shadow (0640 root:shadow) stays out of reach of the daemon's user.
if cat /mnt/etc/shadow > /tmp/shadow 2> /tmp/shadow.err; then
	fail "/mnt/etc/shadow can be read: $(wc -c < /tmp/shadow) bytes"
fi
grep -q "Permission denied" /tmp/shadow.err || fail "reading /mnt/etc/shadow: '$(cat /tmp/shadow.err)', want Permission denied"
grep -q '^root:' /mnt/etc/passwd || fail "/mnt/etc/passwd has no root entry"
[ -f /mnt/usr/bin/env ] && [ -x /mnt/usr/bin/env ] || fail "/mnt/usr/bin/env is no executable file"
echo "ENV $(stat -c %s /mnt/usr/bin/env)"
# The guest puts its own /proc on the empty directory.
if mount -t proc proc /mnt/proc; then
	grep -q '^Name:' /mnt/proc/self/status || fail "the guest's own proc on /mnt/proc has no self/status"
	umount /mnt/proc
else
	fail "mount -t proc on /mnt/proc"
fi
exit $((fails > 0))
`

// TestHostRootAsVirtmeNG serves the host's root file system the way virtme-ng runs virtiofsd
// (--no-announce-submounts --socket-path S --shared-dir / --sandbox none, and --readonly as vng
// adds it when --help lists it; --syslog left out, so that the log comes back) as the
// unprivileged test user. The guest must find the host's /proc, /sys and /dev empty, must not be
// able to read /etc/shadow, and must see /etc/passwd and /usr/bin/env. The same holds in a user
// namespace with --sandbox chroot. (--sandbox namespace cannot serve "/" yet: pivot_root into /
// fails with EINVAL.)
func TestHostRootAsVirtmeNG(t *testing.T) {
	requireGuestTools(t)
	u := e2eUser(t, userWithSubIDs)
	var st syscall.Stat_t
	if err := syscall.Stat("/etc/shadow", &st); err != nil {
		missing(t, "the host has no /etc/shadow to keep out of the guest's reach: %v", err)
	}
	if st.Mode&0o004 != 0 || st.Uid == u.UID || st.Mode&0o040 != 0 && st.Gid == u.GID {
		t.Fatalf("/etc/shadow (mode %#o, owner %d) is readable by %s: nothing to check", st.Mode&0o7777, st.Uid, u.Name)
	}
	env, err := os.Stat("/usr/bin/env")
	if err != nil {
		t.Fatal(err)
	}
	for _, sandbox := range []string{"none", "chroot"} {
		t.Run("sandbox="+sandbox, func(t *testing.T) {
			spec := daemonSpec{
				path: buildUvfsd(t),
				args: func(socket, _ string) []string {
					return []string{"--no-announce-submounts", "--socket-path", socket, "--shared-dir", "/", "--sandbox", sandbox, "--readonly"}
				},
				user: u,
			}
			b := bootWithDaemon(t, spec, hostRootScript, nil)
			checkGuestOutput(t, b)
			if got := fieldsAfter(b.res.Output, "ENV "); len(got) != 1 || got[0] != strconv.FormatInt(env.Size(), 10) {
				t.Errorf("the guest sees /usr/bin/env with size %v, the host %d", got, env.Size())
			}
			if !strings.Contains(b.daemonOutput, "kernel pseudo file system") {
				t.Errorf("uvfsd did not log that it hides the pseudo file systems; its output:\n%s", b.daemonOutput)
			}
		})
	}
}
