package e2e

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// verifyWorkoutOnHost checks, after the guest powered off, that what the
// workout did in the guest is what the host sees in work (the share's
// work/ directory): the daemon really wrote through to the host files.
func verifyWorkoutOnHost(t *testing.T, work string, guestOutput []string, owner testUser) {
	t.Helper()
	p := func(name string) string { return filepath.Join(work, name) }
	wantContent := map[string]string{
		"hello.txt":        "hello\nworld\n",
		"trunc.txt":        "abcd\x00\x00\x00\x00\x00\x00",
		"overwrite.txt":    "012AB56789",
		"sub/deeper/moved": "one",
		"d2/inside":        "",
		"d3/keep":          "",
	}
	for name, want := range wantContent {
		got, err := os.ReadFile(p(name))
		if err != nil || string(got) != want {
			t.Errorf("host %s: %q (err %v), want %q", name, got, err, want)
		}
	}
	for _, gone := range []string{"r1", "d1", "open.txt", "gone-while-writing.txt", "tree", "many/file1", "many/file150"} {
		if _, err := os.Lstat(p(gone)); !os.IsNotExist(err) {
			t.Errorf("host %s should not exist (err %v)", gone, err)
		}
	}

	hello, err1 := os.Stat(p("hello.txt"))
	hard, err2 := os.Stat(p("hard.txt"))
	if err1 != nil || err2 != nil || !os.SameFile(hello, hard) {
		t.Errorf("hard.txt is not a hard link of hello.txt (%v, %v)", err1, err2)
	} else if n := hello.Sys().(*syscall.Stat_t).Nlink; n != 2 {
		t.Errorf("hello.txt has %d links, want 2", n)
	}
	for link, target := range map[string]string{"sym": "hello.txt", "dangling": "nowhere", "linkdir/up": "../hello.txt"} {
		if got, err := os.Readlink(p(link)); err != nil || got != target {
			t.Errorf("host symlink %s -> %q (err %v), want %q", link, got, err, target)
		}
	}
	for name, want := range map[string]fs.FileMode{"modes": 0o640, "modedir": fs.ModeDir | 0o750, "fifo": fs.ModeNamedPipe | 0o644} {
		st, err := os.Lstat(p(name))
		if err != nil {
			t.Errorf("host %s: %v", name, err)
			continue
		}
		// The fifo's permission bits depend on the guest umask; only its type matters.
		got := st.Mode()
		if name == "fifo" {
			got, want = got.Type(), want.Type()
		}
		if got != want {
			t.Errorf("host %s mode %v, want %v", name, got, want)
		}
	}
	if st, err := os.Stat(p("dated")); err != nil || st.ModTime().Unix() != 981173106 {
		t.Errorf("host dated mtime %v (err %v), want 2001-02-03 04:05:06 UTC", st.ModTime(), err)
	}
	sizes := map[string]int64{"sparse": 17 << 20, "hole": 1 << 30, "random.bin": 8 << 20, "big1": 2 << 20}
	for name, want := range sizes {
		if st, err := os.Stat(p(name)); err != nil || st.Size() != want {
			t.Errorf("host %s size (err %v), want %d", name, err, want)
		}
	}
	if st, err := os.Stat(p("hole")); err == nil {
		if blocks := st.Sys().(*syscall.Stat_t).Blocks; blocks > 128 {
			t.Errorf("host hole uses %d blocks: the 1 GiB truncate was not sparse", blocks)
		}
	}
	if a, b := fileMD5(t, p("random.bin")), fileMD5(t, p("random.copy")); a != b {
		t.Errorf("random.copy (md5 %s) differs from random.bin (%s)", b, a)
	}
	if entries, err := os.ReadDir(p("many")); err != nil || len(entries) != 389 {
		t.Errorf("host many/ has %d entries (err %v), want 389", len(entries), err)
	}
	if data, err := os.ReadFile(p("shared.log")); err != nil || bytes.Count(data, []byte("\n")) != 800 {
		t.Errorf("host shared.log has %d lines (err %v), want 800", bytes.Count(data, []byte("\n")), err)
	}
	if data, err := os.ReadFile(p("tmplinked")); err == nil && string(data) != "written through O_TMPFILE\n" {
		t.Errorf("host tmplinked: %q", data)
	}

	sawMD5 := false
	for _, line := range guestOutput {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "CHECK" {
			continue
		}
		switch {
		case f[1] == "md5" && len(f) == 4:
			sawMD5 = sawMD5 || f[2] == "random.bin"
			if got := fileMD5(t, p(f[2])); got != f[3] {
				t.Errorf("host md5 of %s is %s, the guest wrote %s", f[2], got, f[3])
			}
		case f[1] == "xattr" && len(f) == 5:
			buf := make([]byte, 256)
			n, err := unix.Lgetxattr(p(f[2]), f[3], buf)
			if err != nil || string(buf[:max(n, 0)]) != f[4] {
				t.Errorf("host xattr %s on %s: %q (err %v), want %q", f[3], f[2], buf[:max(n, 0)], err, f[4])
			}
		case f[1] == "btime" && len(f) == 5 && f[3] == "BTIME":
			var st unix.Statx_t
			err := unix.Statx(unix.AT_FDCWD, p(f[2]), unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BTIME, &st)
			if want := fmt.Sprintf("%d.%09d", st.Btime.Sec, st.Btime.Nsec); err != nil || st.Mask&unix.STATX_BTIME == 0 || f[4] != want {
				t.Errorf("guest birth time of %s is %s, the host's %s (mask %#x, %v)", f[2], f[4], want, st.Mask, err)
			}
		case f[1] == "longname" && len(f) == 3:
			if _, err := os.Stat(p(strings.Repeat("n", 255))); err != nil {
				t.Errorf("host 255-byte name: %v", err)
			}
		default:
			t.Errorf("unknown CHECK line from the guest: %q", line)
		}
	}
	if !sawMD5 {
		t.Errorf("the guest printed no md5 of random.bin: the workout did not get that far")
	}

	// Guest root's files belong to the daemon's user: the host user when
	// it is unprivileged (directly or through its namespace), root if root.
	filepath.WalkDir(work, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Errorf("walk %s: %v", path, err)
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if uid := info.Sys().(*syscall.Stat_t).Uid; uid != owner.UID {
			t.Errorf("host %s is owned by uid %d, want the daemon's user %d", path, uid, owner.UID)
			return filepath.SkipAll
		}
		return nil
	})
}

func fileMD5(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("host read %s: %v", path, err)
		return ""
	}
	sum := md5.Sum(data)
	return hex.EncodeToString(sum[:])
}
