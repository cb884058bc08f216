package e2e

import (
	"path/filepath"
	"strings"
	"testing"
)

// idmapScript makes an idmapped bind mount of the share at /idm (ids 0..65535 on the share appear
// as 100000..165535 there), creates a file as root through /mnt, one as uid 100000 through /idm,
// and as uid 101000 a directory through /idm in a directory of uid 1000, and prints the owners each
// mount shows: "OWNER MOUNT/FILE UID:GID".
const idmapScript = `
mkdir /idm
echo root > /mnt/by-root
$helper idmap /mnt /idm 0 100000 65536 || { echo "FAIL: idmapped mount of the share"; exit 1; }
$helper runas 100000 100000 - -- /bin/sh -c 'echo mapped > /idm/by-mapped-root' || echo "FAIL: create as uid 100000 through /idm"
mkdir /mnt/home1000 && chown 1000:1000 /mnt/home1000
$helper runas 101000 101000 - -- /bin/sh -c 'mkdir /idm/home1000/dir' || echo "FAIL: mkdir as uid 101000 through /idm"
for f in by-root by-mapped-root home1000 home1000/dir; do
	echo "OWNER mnt/$f $(stat -c %u:%g /mnt/$f)"
	echo "OWNER idm/$f $(stat -c %u:%g /idm/$f)"
done
cat /idm/by-root > /dev/null || echo "FAIL: read through /idm"
umount /idm || echo "FAIL: umount /idm"
`

// TestIdmappedMountQEMU10 makes an idmapped mount of the share in a Linux 6.12 guest, which needs
// FUSE_ALLOW_IDMAP from the server (FUSE 7.41): ids show through the mount's mapping, and files
// created through it are stored with the unmapped ids, on the host as the rootless daemon's user
// (guest 0) and its subordinate ids (guest 1000).
func TestIdmappedMountQEMU10(t *testing.T) {
	requireStack(t, stackQEMU10)
	user := e2eUser(t, userWithSubIDs)
	spec := uvfsdSpec(t, user)
	spec.stack = stackQEMU10
	b := bootWithDaemon(t, spec, "helper=/bin/uvfs-helper\n"+idmapScript, nil)
	checkGuestOutput(t, b)
	seen := guestFields(b.res, "OWNER")
	want := map[string]string{
		"mnt/by-root": "0:0", "idm/by-root": "100000:100000",
		"mnt/by-mapped-root": "0:0", "idm/by-mapped-root": "100000:100000",
		"mnt/home1000": "1000:1000", "idm/home1000": "101000:101000",
		"mnt/home1000/dir": "1000:1000", "idm/home1000/dir": "101000:101000",
	}
	for f, w := range want {
		if got := strings.Join(seen[f], " "); got != w {
			t.Errorf("guest: %s owned by %q, want %s", f, got, w)
		}
	}
	if uid, _ := ownerOf(t, filepath.Join(b.shared, "by-mapped-root")); uid != user.UID {
		t.Errorf("host by-mapped-root owned by uid %d, want the daemon's user %d", uid, user.UID)
	}
	// Guest 1000 is the 1000th subordinate id of the daemon's user in its namespace.
	subUID, _ := subIDRange(t, "/etc/subuid", user)
	if uid, _ := ownerOf(t, filepath.Join(b.shared, "home1000", "dir")); uid != subUID+999 {
		t.Errorf("host home1000/dir owned by uid %d, want %d (guest 1000)", uid, subUID+999)
	}
}
