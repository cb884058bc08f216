package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// submountWrapper runs as the daemon's user inside `unshare -Urm`: it
// mounts two tmpfs file systems inside the share (sub1, sub2; each counts
// its own inode numbers, so their files collide) and execs uvfsd, which
// finds itself already in a user namespace and does not re-exec into
// another. Arguments: UVFSD SOCKET SHARE [FLAGS...].
const submountWrapper = `set -e
uvfsd=$1 socket=$2 share=$3
shift 3
for s in sub1 sub2; do
	mkdir -p "$share/$s"
	mount -t tmpfs -o size=4m,mode=0755 "uvfs-$s" "$share/$s"
	echo "in $s" > "$share/$s/f"
done
echo top > "$share/f"
exec "$uvfsd" --socket-path="$socket" --shared-dir="$share" --xattr --log-level=debug "$@"
`

// submountScript reports what the guest sees of the two submounts: st_dev
// and st_ino of a file on each file system, the virtiofs mounts, the
// helper's walk (loops, d_type, aliases) and syncfs on each submount.
const submountScript = `
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
eq() { [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"; }
eq "top file" "$(cat /mnt/f)" "top"
eq "sub1 file" "$(cat /mnt/sub1/f)" "in sub1"
eq "sub2 file" "$(cat /mnt/sub2/f)" "in sub2"
echo "DEVS $(stat -c %d /mnt/f) $(stat -c %d /mnt/sub1/f) $(stat -c %d /mnt/sub2/f)"
echo "INOS $(stat -c %i /mnt/f) $(stat -c %i /mnt/sub1/f) $(stat -c %i /mnt/sub2/f)"
echo "MOUNTS $(grep -c ' virtiofs ' /proc/mounts)"
/bin/uvfs-helper walk /mnt || fail "walk of the share"
find /mnt > /tmp/find.out 2>&1 || fail "find /mnt: $(cat /tmp/find.out)"
eq "find entries" "$(wc -l < /tmp/find.out)" 6
for s in sub1 sub2; do
	echo "synced in $s" > /mnt/$s/g
	sync -f /mnt/$s/g || fail "syncfs on $s"
	eq "write in $s" "$(cat /mnt/$s/g)" "synced in $s"
done
# Unmount the automounted submounts first: the guest then unmounts /mnt.
for s in sub2 sub1; do grep -q " /mnt/$s " /proc/mounts && umount /mnt/$s; done
exit $((fails > 0))
`

// TestSubmounts serves a share with two tmpfs file systems mounted inside
// it from rootless uvfsd, with and without --announce-submounts.
//
// With the flag the guest automounts each submount as its own virtiofs
// mount with its own st_dev, so no two files look alike, find sees no file
// system loop, and syncfs reaches each submount.
//
// Without it (the documented behaviour) the guest sees one st_dev for the
// whole share: a file on sub1 and one on sub2 with the same host inode
// number have the same (st_dev, st_ino) and look like hard links of each
// other to find, du, tar or cp -a. uvfsd still keeps them apart (its inode
// keys include the mount id: both read their own contents) and logs once
// that the flag is missing.
func TestSubmounts(t *testing.T) {
	requireGuestTools(t)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		missing(t, "unshare not found (apt-get install util-linux): %v", err)
	}
	uvfsd := buildUvfsd(t)
	for _, announce := range []bool{true, false} {
		name := "announced"
		if !announce {
			name = "not-announced"
		}
		t.Run(name, func(t *testing.T) {
			user := e2eUser(t, userWithSubIDs)
			spec := daemonSpec{
				path: unshare,
				args: func(socket, shared string) []string {
					args := []string{"-Urm", "--", "/bin/sh", "-c", submountWrapper, "uvfsd-submounts", uvfsd, socket, shared}
					args = append(args, seccompArgs()...)
					if announce {
						args = append(args, "--announce-submounts")
					}
					return args
				},
				user: user,
			}
			b := bootWithDaemon(t, spec, submountScript, nil)
			checkGuestOutput(t, b)
			devs := fieldsAfter(b.res.Output, "DEVS ")
			inos := fieldsAfter(b.res.Output, "INOS ")
			mounts := fieldsAfter(b.res.Output, "MOUNTS ")
			walk := fieldsAfter(b.res.Output, "walk /mnt: ")
			t.Logf("st_dev %v, st_ino %v, virtiofs mounts %v, walk %v", devs, inos, mounts, walk)
			if len(devs) != 3 || len(inos) != 3 || len(mounts) != 1 || len(walk) == 0 {
				t.Fatalf("guest output incomplete: DEVS %v INOS %v MOUNTS %v walk %v", devs, inos, mounts, walk)
			}
			collide := inos[1] == inos[2] // the two tmpfs files have the same inode number
			aliases := !strings.Contains(strings.Join(walk, " "), " 0 aliases")
			if announce {
				if devs[0] == devs[1] || devs[0] == devs[2] || devs[1] == devs[2] {
					t.Errorf("st_dev of top, sub1, sub2 = %v: want three different devices", devs)
				}
				if mounts[0] != "3" {
					t.Errorf("guest has %s virtiofs mounts, want 3 (the share and two automounted submounts)", mounts[0])
				}
				if aliases {
					t.Errorf("with announced submounts two files look alike: %v", walk)
				}
			} else {
				if devs[0] != devs[1] || devs[1] != devs[2] {
					t.Errorf("st_dev of top, sub1, sub2 = %v: without --announce-submounts the guest should see one device", devs)
				}
				if mounts[0] != "1" {
					t.Errorf("guest has %s virtiofs mounts, want only the share", mounts[0])
				}
				if collide != aliases {
					t.Errorf("sub1/f and sub2/f have inodes %s and %s but the walk found aliases=%v: %v", inos[1], inos[2], aliases, walk)
				}
				if !strings.Contains(b.daemonOutput, "--announce-submounts") {
					t.Errorf("uvfsd did not log that the share has unannounced mount points; its output:\n%s", b.daemonOutput)
				}
			}
			if got, err := os.ReadFile(filepath.Join(b.shared, "f")); err != nil || string(got) != "top\n" {
				t.Errorf("host share/f: %q, %v", got, err)
			}
			if _, err := os.Stat(filepath.Join(b.shared, "sub1", "f")); !os.IsNotExist(err) {
				t.Errorf("sub1/f visible on the host (%v): the tmpfs must live only in the daemon's mount namespace", err)
			}
		})
	}
}

// fieldsAfter returns the fields of the first output line with prefix.
func fieldsAfter(lines []string, prefix string) []string {
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(l, prefix); ok {
			return strings.Fields(rest)
		}
	}
	return nil
}
