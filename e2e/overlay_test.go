package e2e

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// overlayScript runs in the guest as root with the share at /mnt. For each
// variant (lower layer on a guest tmpfs, lower layer on the share) it mounts
// overlayfs with upper and work directories on the share, changes the merged
// view in every way that needs a feature of the upper file system (copy-up
// through O_TMPFILE, whiteouts, an opaque directory, a directory rename
// with redirect_dir=on), remounts and checks that the merged view survived.
// It prints "VIEW variant: line" for the host to compare, and every
// overlayfs line of the kernel log as "DMESG: line". OVL_ACL=1 adds POSIX
// ACL checks (the daemon must run with --posix-acl): the guest writes ACLs
// naming guest uid 1000 and gid 2000 and must read back OVL_ACL_WANT.
const overlayScript = `
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
eq() { [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"; }
helper=/bin/uvfs-helper
dmesg -c >/dev/null
echo "uvfs-e2e: overlay checks start" > /dev/kmsg

populate() {
	mkdir -p "$1/dir/sub" "$1/gone-dir" "$1/opq" "$1/ren"
	echo keep > "$1/keep"; echo modify > "$1/modify"; echo delete > "$1/delete"
	echo x > "$1/dir/a"; echo y > "$1/dir/sub/b"; echo z > "$1/gone-dir/f"
	echo old > "$1/opq/old"; echo moved > "$1/ren/file"; echo mvfile > "$1/mvfile"
}
# view prints every entry under $1, one line each, sorted.
view() {
	(cd "$1" && find . | sort | while read -r p; do
		if [ -L "$p" ]; then echo "$p -> $(readlink "$p")"
		elif [ -d "$p" ]; then echo "$p/"
		else echo "$p = $(tr '\n' '|' < "$p") $(stat -c %a "$p")"; fi
	done)
}

variant() {
	name=$1 lower=$2
	up=/mnt/$name/upper wk=/mnt/$name/work m=/tmp/$name-merged
	mkdir -p "$up" "$wk" "$m"
	view "$lower" > /tmp/$name.lower-before
	opts=lowerdir=$lower,upperdir=$up,workdir=$wk,redirect_dir=on
	if ! mount -t overlay overlay -o "$opts" "$m"; then
		fail "$name: mount -t overlay -o $opts"
		return
	fi
	cd "$m"
	echo new > new.txt || fail "$name: create"
	echo more >> modify || fail "$name: modify (copy-up)"
	chmod 600 keep || fail "$name: chmod (metadata copy-up)"
	rm delete || fail "$name: delete a lower file (whiteout)"
	rm -r gone-dir || fail "$name: delete a lower directory (whiteout)"
	rm -r opq && mkdir opq && echo fresh > opq/new || fail "$name: recreate a lower directory (opaque)"
	$helper rename ren renamed || fail "$name: rename(2) of a lower directory (redirect_dir)"
	$helper rename mvfile mvfile2 || fail "$name: rename(2) of a lower file"
	ln -s keep sym || fail "$name: symlink"
	mkdir newdir && echo n > newdir/f || fail "$name: new directory"
	cd /
	view "$m" > /tmp/$name.view1
	sed "s/^/VIEW $name: /" /tmp/$name.view1
	umount "$m" || fail "$name: umount"
	if ! mount -t overlay overlay -o "$opts" "$m"; then
		fail "$name: second mount"
		return
	fi
	view "$m" > /tmp/$name.view2
	cmp -s /tmp/$name.view1 /tmp/$name.view2 || { fail "$name: merged view changed across a remount"; diff /tmp/$name.view1 /tmp/$name.view2; }
	umount "$m" || fail "$name: second umount"
	view "$lower" > /tmp/$name.lower-after
	cmp -s /tmp/$name.lower-before /tmp/$name.lower-after || fail "$name: the lower layer changed"
}

mkdir -p /tmp/tlower && populate /tmp/tlower
variant tmpfs-lower /tmp/tlower
mkdir -p /mnt/lower-on-share && populate /mnt/lower-on-share
variant share-lower /mnt/lower-on-share

# Rootless, the host allows 0:0 character devices (whiteouts) but no other device node, unless
# the ownership is mapped (OVL_MAPPED=1).
mknod /mnt/whiteout-node c 0 0 || fail "mknod of a 0:0 character device (a whiteout)"
if [ "$OVL_MAPPED" = 1 ]; then
	mknod /mnt/null-node c 1 3 || fail "mknod c 1 3 failed with mapped ownership"
	eq "mapped device node" "$(stat -c '%F %t %T' /mnt/null-node)" "character special file 1 3"
elif out=$(mknod /mnt/null-node c 1 3 2>&1); then
	fail "mknod c 1 3 succeeded on a rootless share"
else
	case $out in *"Operation not permitted"*) ;; *) fail "mknod c 1 3: $out, want EPERM" ;; esac
fi

# O_TMPFILE and its linkat through /proc/self/fd, on the share itself.
$helper tmpfile /mnt tmplinked || fail "O_TMPFILE on the share (exit $?)"
eq "O_TMPFILE linked" "$(cat /mnt/tmplinked)" "written through O_TMPFILE"
# d_type in every entry of READDIR and READDIRPLUS (the helper compares it with lstat).
$helper walk /mnt || fail "walk of the share"

if [ "$OVL_ACL" = 1 ]; then
	acl=u::rw-,u:1000:r--,g::r--,g:2000:rw-,m::rw-,o::---
	: > /mnt/acl-file
	$helper setacl /mnt/acl-file access $acl || fail "setacl on the share"
	eq "ACL read back" "$($helper getacl /mnt/acl-file access)" "$OVL_ACL_WANT"
	mkdir /mnt/acl-dir && $helper setacl /mnt/acl-dir default $acl || fail "default ACL on the share"
	: > /mnt/acl-dir/child
	eq "ACL inherited from the default ACL" "$($helper getacl /mnt/acl-dir/child access)" "$OVL_ACL_WANT"
	# Copy-up copies a lower file's ACL to the upper layer through SETXATTR.
	mkdir -p /tmp/acl-lower /mnt/acl-ovl/upper /mnt/acl-ovl/work /tmp/acl-merged
	echo lower > /tmp/acl-lower/f && $helper setacl /tmp/acl-lower/f access $acl || fail "setacl on tmpfs"
	if mount -t overlay overlay -o lowerdir=/tmp/acl-lower,upperdir=/mnt/acl-ovl/upper,workdir=/mnt/acl-ovl/work /tmp/acl-merged; then
		echo more >> /tmp/acl-merged/f || fail "copy-up of a file with an ACL"
		umount /tmp/acl-merged
		eq "ACL after copy-up" "$($helper getacl /mnt/acl-ovl/upper/f access)" "$OVL_ACL_WANT"
	else
		fail "overlay mount for the ACL copy-up"
	fi
fi

dmesg | grep -q "uvfs-e2e: overlay checks start" || fail "cannot read the kernel log with dmesg"
dmesg | grep -i overlay | sed 's/^/DMESG: /'
exit $((fails > 0))
`

// overlayView is the merged view the script must produce in every variant.
var overlayView = []string{
	"./",
	"./dir/",
	"./dir/a = x| 644",
	"./dir/sub/",
	"./dir/sub/b = y| 644",
	"./keep = keep| 600",
	"./modify = modify|more| 644",
	"./mvfile2 = mvfile| 644",
	"./new.txt = new| 644",
	"./newdir/",
	"./newdir/f = n| 644",
	"./opq/",
	"./opq/new = fresh| 644",
	"./renamed/",
	"./renamed/file = moved| 644",
	"./sym -> keep",
}

// overlayWarnings are kernel messages that mean overlayfs turned a feature
// off because the upper file system (the share) lacks something.
var overlayWarnings = []string{"not support", "falling back", "missing", "fail", "error", "warn", "d_type"}

// TestOverlayOnShareRootless mounts overlayfs in the guest with its upper
// layer on a share served by rootless uvfsd, with only --xattr, with
// --profile=home, with --ownership=mapped (whiteouts stay real ones), and
// with --posix-acl --profile=home, which adds the ACL checks. The home profile makes every guest id the daemon's user, so the
// ids inside ACLs change on the way: guest 1000 is stored as the user's
// host uid and read back as it (without translation the namespace would
// store guest 1000 as namespace id 1000, a subordinate id).
func TestOverlayOnShareRootless(t *testing.T) { testOverlayOnShareRootless(t, stackBaseline) }

// TestOverlayOnShareRootlessQEMU10 is TestOverlayOnShareRootless on QEMU 10
// with a Linux 6.12 guest, whose overlayfs keeps the tmpfile it copied up
// through as the upper file.
func TestOverlayOnShareRootlessQEMU10(t *testing.T) { testOverlayOnShareRootless(t, stackQEMU10) }

func testOverlayOnShareRootless(t *testing.T, stack guestStack) {
	requireStack(t, stack)
	for _, c := range []struct {
		name  string
		flags []string
		acl   bool
	}{
		{"xattr", nil, false},
		{"profile-home", []string{"--profile=home"}, false},
		{"mapped", []string{"--ownership=mapped"}, false},
		{"posix-acl-home", []string{"--posix-acl", "--profile=home"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			user := e2eUser(t, userWithSubIDs)
			env := []string{}
			mapped := slices.Contains(c.flags, "--ownership=mapped")
			if mapped {
				env = append(env, "OVL_MAPPED=1")
			}
			if c.acl {
				env = append(env, "OVL_ACL=1",
					fmt.Sprintf("OVL_ACL_WANT=u::rw-,u:%d:r--,g::r--,g:%d:rw-,m::rw-,o::---", user.UID, user.GID))
			}
			spec := uvfsdSpec(t, user, c.flags...)
			spec.stack = stack
			b := bootWithDaemon(t, spec, overlayScript, env)
			checkGuestOutput(t, b)
			if walk := strings.Join(fieldsAfter(b.res.Output, "walk /mnt: "), " "); !strings.Contains(walk, " 0 aliases") {
				t.Errorf("walk of the share: %q, want no aliases (two files with one st_dev and st_ino)", walk)
			}
			views := map[string][]string{}
			for _, l := range b.res.Output {
				if rest, ok := strings.CutPrefix(l, "VIEW "); ok {
					variant, line, _ := strings.Cut(rest, ": ")
					views[variant] = append(views[variant], line)
				}
				if msg, ok := strings.CutPrefix(l, "DMESG: "); ok {
					t.Logf("guest kernel: %s", msg)
					if strings.Contains(msg, "evm: overlay not supported") {
						continue // Linux 6.12's EVM on every overlay mount, whatever the layers
					}
					for _, w := range overlayWarnings {
						if strings.Contains(strings.ToLower(msg), w) {
							t.Errorf("overlayfs warned (%q): %s", w, msg)
						}
					}
				}
			}
			for _, variant := range []string{"tmpfs-lower", "share-lower"} {
				got := views[variant]
				slices.Sort(got)
				if !slices.Equal(got, overlayView) {
					t.Errorf("%s: merged view\n%s\nwant\n%s", variant, strings.Join(got, "\n"), strings.Join(overlayView, "\n"))
				}
				checkUpperOnHost(t, filepath.Join(b.shared, variant, "upper"), user)
			}
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(b.shared, "whiteout-node"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
				t.Errorf("host whiteout-node: mode %#o rdev %#x (%v), want a 0:0 character device", st.Mode, st.Rdev, err)
			}
			if mapped {
				if err := unix.Lstat(filepath.Join(b.shared, "null-node"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Uid != user.UID {
					t.Errorf("host null-node: mode %#o owner %d (%v), want a regular file of %d standing for the device", st.Mode, st.Uid, err, user.UID)
				}
			} else if _, err := os.Lstat(filepath.Join(b.shared, "null-node")); !os.IsNotExist(err) {
				t.Errorf("host null-node exists (%v): a rootless daemon must not create device nodes", err)
			}
			if c.acl {
				checkACLsOnHost(t, b.shared, user.UID, user.GID)
			}
		})
	}
}

// checkGuestOutput fails the test for every FAIL line, every problem the
// guest helper's walk found (aliases excepted: each test judges those from
// the walk's summary line) and a non-zero exit.
func checkGuestOutput(t *testing.T, b bootResult) {
	t.Helper()
	for _, l := range b.res.Output {
		if strings.HasPrefix(l, "FAIL:") || strings.HasPrefix(l, "walk: ") && !strings.HasPrefix(l, "walk: alias:") {
			t.Errorf("guest: %s", l)
		}
	}
	if b.res.ExitStatus != 0 {
		t.Errorf("guest script exited with status %d", b.res.ExitStatus)
	}
}

// checkUpperOnHost checks how the upper layer is stored on the host:
// whiteouts as 0:0 character devices, overlayfs's trusted.overlay.*
// attributes as user.uvfsd.trusted.overlay.*, files owned by the daemon's
// user (the guest's root is namespace root).
func checkUpperOnHost(t *testing.T, upper string, owner testUser) {
	t.Helper()
	for _, name := range []string{"delete", "gone-dir", "mvfile", "ren"} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(upper, name), &st); err != nil {
			t.Errorf("whiteout %s: %v", name, err)
			continue
		}
		if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
			t.Errorf("whiteout %s: mode %#o rdev %#x, want a 0:0 character device", name, st.Mode, st.Rdev)
		}
	}
	wantXattr := map[string]struct{ name, value string }{
		"opq":     {"user.uvfsd.trusted.overlay.opaque", "y"},
		"renamed": {"user.uvfsd.trusted.overlay.redirect", "ren"},
	}
	for file, x := range wantXattr {
		buf := make([]byte, 256)
		n, err := unix.Lgetxattr(filepath.Join(upper, file), x.name, buf)
		if err != nil || string(buf[:n]) != x.value {
			t.Errorf("host %s: %s = %q (%v), want %q", file, x.name, buf[:max(n, 0)], err, x.value)
		}
	}
	filepath.Walk(upper, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			t.Errorf("walk upper layer: %v", err)
			return nil
		}
		for _, name := range listXattrs(t, path) {
			if strings.HasPrefix(name, "trusted.") || strings.HasPrefix(name, "security.") {
				t.Errorf("host %s has %s: privileged names must be stored as user.uvfsd.*", path, name)
			}
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != owner.UID {
			t.Errorf("host %s is owned by uid %d, want the daemon's user %d", path, st.Uid, owner.UID)
		}
		return nil
	})
	for name, want := range map[string]string{"new.txt": "new\n", "modify": "modify\nmore\n", "opq/new": "fresh\n"} {
		if got, err := os.ReadFile(filepath.Join(upper, name)); err != nil || string(got) != want {
			t.Errorf("host upper %s: %q (%v), want %q", name, got, err, want)
		}
	}
}

func listXattrs(t *testing.T, path string) []string {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(path, buf)
	if err != nil {
		t.Errorf("listxattr %s: %v", path, err)
		return nil
	}
	return strings.FieldsFunc(string(buf[:n]), func(r rune) bool { return r == 0 })
}

// checkACLsOnHost checks that the ids in the ACLs the guest wrote (guest
// uid 1000, gid 2000) are stored as the host ids uid and gid.
func checkACLsOnHost(t *testing.T, shared string, uid, gid uint32) {
	t.Helper()
	for _, c := range []struct{ path, name string }{
		{"acl-file", "system.posix_acl_access"},
		{"acl-dir", "system.posix_acl_default"},
		{"acl-dir/child", "system.posix_acl_access"},
		{"acl-ovl/upper/f", "system.posix_acl_access"},
	} {
		buf := make([]byte, 1024)
		n, err := unix.Lgetxattr(filepath.Join(shared, c.path), c.name, buf)
		if err != nil {
			t.Errorf("host %s %s: %v", c.path, c.name, err)
			continue
		}
		ids := map[uint16]uint32{}
		for b := buf[4:n]; len(b) >= 8; b = b[8:] {
			ids[binary.LittleEndian.Uint16(b)] = binary.LittleEndian.Uint32(b[4:])
		}
		const aclUser, aclGroup = 0x02, 0x08
		if ids[aclUser] != uid || ids[aclGroup] != gid {
			t.Errorf("host %s %s names uid %d gid %d, want %d and %d (guest 1000 and 2000 through the home profile)",
				c.path, c.name, ids[aclUser], ids[aclGroup], uid, gid)
		}
	}
}
