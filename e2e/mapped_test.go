package e2e

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// archiveEntry is one file of the archive the guest unpacks, and what the guest must see of it.
type archiveEntry struct {
	name         string
	typ          byte // tar type flag
	mode         int64
	uid, gid     int
	major, minor int64
	target       string // symlink target or hard link source
}

// statMode is the st_mode the guest must show.
func (a archiveEntry) statMode() uint32 {
	m := uint32(a.mode)
	switch a.typ {
	case tar.TypeDir:
		m |= syscall.S_IFDIR
	case tar.TypeSymlink:
		m |= syscall.S_IFLNK
	case tar.TypeChar:
		m |= syscall.S_IFCHR
	case tar.TypeBlock:
		m |= syscall.S_IFBLK
	case tar.TypeFifo:
		m |= syscall.S_IFIFO
	default:
		m |= syscall.S_IFREG
	}
	return m
}

// mappedArchive is a container image in small: files of 20 owners, set-id files, a sticky
// directory, device nodes, a FIFO, a symlink and a hard link.
func mappedArchive() []archiveEntry {
	e := []archiveEntry{
		{name: "tree/", typ: tar.TypeDir, mode: 0o755},
		{name: "tree/sticky/", typ: tar.TypeDir, mode: 0o1777},
		{name: "tree/dev/", typ: tar.TypeDir, mode: 0o755},
		{name: "tree/home/", typ: tar.TypeDir, mode: 0o2750, uid: 2000, gid: 2001},
		{name: "tree/setuid-root", typ: tar.TypeReg, mode: 0o4755},
		{name: "tree/setgid-games", typ: tar.TypeReg, mode: 0o2711, uid: 5, gid: 60},
		{name: "tree/dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
		{name: "tree/dev/tty5", typ: tar.TypeChar, mode: 0o620, gid: 5, major: 4, minor: 5},
		{name: "tree/dev/sda1", typ: tar.TypeBlock, mode: 0o660, gid: 6, major: 8, minor: 1},
		{name: "tree/dev/initctl", typ: tar.TypeFifo, mode: 0o600, uid: 33, gid: 33},
		{name: "tree/link", typ: tar.TypeSymlink, mode: 0o777, uid: 42, gid: 43, target: "owner-03"},
		{name: "tree/hardlink", typ: tar.TypeLink, target: "tree/setuid-root"},
	}
	for i := range 20 {
		e = append(e, archiveEntry{name: fmt.Sprintf("tree/owner-%02d", i), typ: tar.TypeReg,
			mode: 0o640 | int64(i%2)*0o111, uid: 1000 + 7*i, gid: 100 + i})
	}
	return e
}

func buildArchive(t *testing.T, entries []archiveEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := tar.NewWriter(&buf)
	for _, a := range entries {
		h := &tar.Header{Name: a.name, Typeflag: a.typ, Mode: a.mode, Uid: a.uid, Gid: a.gid,
			Devmajor: a.major, Devminor: a.minor, Linkname: a.target, ModTime: time.Unix(1700000000, 0), Format: tar.FormatUSTAR}
		var data []byte
		if a.typ == tar.TypeReg {
			data = []byte(a.name + "\n")
			h.Size = int64(len(data))
		}
		if err := w.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// mappedUntarScript unpacks the archive into each share (PHASE=unpack) and lists what the guest
// sees, then again after a remount; PHASE=restart only lists. Lines: "STAT PHASE TAG name uid gid
// rawmode(hex) major(hex) minor(hex) nlink" and "LS PHASE TAG <ls -lnR line>".
const mappedUntarScript = `
list() {
	(cd /mnt/$2 && find tree | sort | while read f; do
		echo "STAT $1 $2 $(stat -c '%n %u %g %f %t %T %h' "$f")"
	done
	ls -lnR tree | sed "s/^/LS $1 $2 /")
}
for tag in $SHARES; do
	if [ "$PHASE" = unpack ]; then
		tar -x -f /extra/archive.tar -C /mnt/$tag || echo "FAIL: $tag: tar -x"
		# busybox tar leaves a symlink's owner alone
		chown -h 42:43 /mnt/$tag/tree/link || echo "FAIL: $tag: chown -h"
		# Device nodes are the guest's: its null driver takes the write, and a block device
		# with no driver (sd) gives ENXIO.
		echo discard >/mnt/$tag/tree/dev/null || echo "FAIL: $tag: write to the guest's null device"
		if out=$(head -c 1 /mnt/$tag/tree/dev/sda1 2>&1); then
			echo "FAIL: $tag: read from a block device without a driver worked"
		else
			case $out in *"No such device or address"*) ;; *) echo "FAIL: $tag: read from sda1: $out, want ENXIO" ;; esac
		fi
		list unpacked $tag
		umount /mnt/$tag && mount -t virtiofs $tag /mnt/$tag || echo "FAIL: $tag: remount"
		list remounted $tag
	else
		list restarted $tag
	fi
done
`

// TestMappedUntarKeepsOwners: a guest unpacks an archive with device nodes, a FIFO, set-id files
// and files of 20 owners onto shares served by unprivileged uvfsd --ownership=mapped (without and
// with subordinate ids); after a remount and after a daemon restart (a second boot) the guest
// sees the same owners, modes and device numbers, and on the host every file is a plain file or
// directory of the user.
func TestMappedUntarKeepsOwners(t *testing.T) {
	requireGuestTools(t)
	requireRoot(t, "the daemons run as the test accounts")
	entries := mappedArchive()
	files := map[string][]byte{"/extra/archive.tar": buildArchive(t, entries)}
	share := func(tag string, u testUser) servedShare {
		return servedShare{tag: tag, dir: makeDir(t, "uvfs-e2e-untar-", 0o755, u), user: u, flags: []string{"--ownership=mapped"}}
	}
	shares := []servedShare{share("nosub", e2eUser(t, userWithoutSubIDs)), share("sub", e2eUser(t, userWithSubIDs))}
	env := []string{"SHARES=nosub sub"}
	first := bootUvfsdSharesWith(t, shares, mappedUntarScript, append(env, "PHASE=unpack"), guestExtras{files: files})
	second := bootUvfsdSharesWith(t, shares, mappedUntarScript, append(env, "PHASE=restart"), guestExtras{files: files})
	lines := append(append([]string{}, first.Output...), second.Output...)

	// What the guest must see: the archive's owners, modes and device numbers; a hard link shares
	// its source's. A directory's link count depends on its subdirectories and is not compared.
	type wantStat struct {
		fields string // uid gid rawmode major minor, as stat prints them
		nlink  string // "" for any
	}
	want := map[string]wantStat{}
	byName := map[string]archiveEntry{}
	for _, a := range entries {
		byName[strings.TrimSuffix(a.name, "/")] = a
	}
	for _, a := range entries {
		name, src, nlink := strings.TrimSuffix(a.name, "/"), a, "1"
		switch {
		case a.typ == tar.TypeLink:
			src, nlink = byName[a.target], "2"
		case byName["tree/hardlink"].target == name:
			nlink = "2"
		case a.typ == tar.TypeDir:
			nlink = ""
		}
		want[name] = wantStat{fmt.Sprintf("%d %d %x %x %x", src.uid, src.gid, src.statMode(), src.major, src.minor), nlink}
	}
	for _, s := range shares {
		ls := map[string][]string{}
		for _, phase := range []string{"unpacked", "remounted", "restarted"} {
			seen := map[string]bool{}
			for _, l := range lines {
				f := strings.Fields(l)
				if len(f) < 3 || f[1] != phase || f[2] != s.tag {
					continue
				}
				switch f[0] {
				case "LS":
					ls[phase] = append(ls[phase], strings.Join(f[3:], " "))
				case "STAT":
					if len(f) != 10 {
						t.Errorf("%s %s: bad line %q", s.tag, phase, l)
						continue
					}
					name, got := f[3], strings.Join(f[4:9], " ")
					seen[name] = true
					w, ok := want[name]
					if !ok || got != w.fields || w.nlink != "" && f[9] != w.nlink {
						t.Errorf("%s %s: guest stat of %s: uid gid mode major minor = %q nlink %s, want %q nlink %q",
							s.tag, phase, name, got, f[9], w.fields, w.nlink)
					}
				}
			}
			for name := range want {
				if !seen[name] {
					t.Errorf("%s %s: the guest did not list %s", s.tag, phase, name)
				}
			}
		}
		if len(ls["unpacked"]) == 0 {
			t.Errorf("%s: no ls -lnR output", s.tag)
		}
		for _, phase := range []string{"remounted", "restarted"} {
			if strings.Join(ls[phase], "\n") != strings.Join(ls["unpacked"], "\n") {
				t.Errorf("%s: ls -lnR %s differs from after unpacking:\n%s\n--- unpacked ---\n%s", s.tag, phase,
					strings.Join(ls[phase], "\n"), strings.Join(ls["unpacked"], "\n"))
			}
		}
		checkHostFilesPlain(t, s)
	}
}

// checkHostFilesPlain checks that every file of the share is a regular file or directory owned by
// the daemon's user, with the mapped attribute in containers/storage's format.
func checkHostFilesPlain(t *testing.T, s servedShare) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(s.dir, "tree"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		n++
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		typ := st.Mode & unix.S_IFMT
		if st.Uid != s.user.UID || st.Gid != s.user.GID || typ != unix.S_IFREG && typ != unix.S_IFDIR {
			t.Errorf("%s: host %s: mode %#o owner %d:%d, want a regular file or directory of %s (%d:%d)",
				s.tag, p, st.Mode, st.Uid, st.Gid, s.user.Name, s.user.UID, s.user.GID)
		}
		if st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 && typ == unix.S_IFREG {
			t.Errorf("%s: host %s has set-id bits (%#o)", s.tag, p, st.Mode)
		}
		if strings.Contains(p, "/tree/dev/") && st.Size != 0 {
			t.Errorf("%s: host %s has %d bytes: what the guest wrote to a device reached the host", s.tag, p, st.Size)
		}
		buf := make([]byte, 128)
		if l, err := unix.Lgetxattr(p, "user.containers.override_stat", buf); err != nil {
			t.Errorf("%s: host %s has no user.containers.override_stat: %v", s.tag, p, err)
		} else if rel, _ := filepath.Rel(s.dir, p); rel == "tree/dev/tty5" && string(buf[:l]) != "0:5:0620:char-4-5" {
			t.Errorf("%s: host %s: user.containers.override_stat = %q, want 0:5:0620:char-4-5", s.tag, p, buf[:l])
		}
		return nil
	})
	if err != nil {
		t.Errorf("%s: walking the host share: %v", s.tag, err)
	}
	if want := len(mappedArchive()); n != want {
		t.Errorf("%s: the host share holds %d files, want %d", s.tag, n, want)
	}
}
