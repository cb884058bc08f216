package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Tree the rlimit test walks: many more files than the daemon may open.
const (
	rlimitDirs        = 50
	rlimitFilesPerDir = 100
	rlimitFiles       = rlimitDirs * rlimitFilesPerDir
	rlimitNofile      = 256
)

// rlimitScript walks /mnt/tree twice the way users do (find, ls -lR) and
// reads every file once, printing counts and exit codes for the host.
const rlimitScript = `
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
for pass in 1 2; do
	find /mnt/tree -type f > /tmp/find.out 2> /tmp/find.err || fail "pass $pass: find exited $?: $(head -5 /tmp/find.err)"
	echo "PASS$pass find $(wc -l < /tmp/find.out)"
	ls -lR /mnt/tree > /tmp/ls.out 2> /tmp/ls.err || fail "pass $pass: ls -lR exited $?: $(head -5 /tmp/ls.err)"
	[ -s /tmp/ls.err ] && fail "pass $pass: ls -lR complained: $(head -5 /tmp/ls.err)"
	echo "PASS$pass ls $(grep -c '^-' /tmp/ls.out)"
done
# Open and read every file: each needs its inode's fd and one more for the open file.
xargs cat < /tmp/find.out > /tmp/cat.out 2> /tmp/cat.err || fail "reading every file: $(head -5 /tmp/cat.err)"
echo "READ $(wc -l < /tmp/cat.out) $(sort -u /tmp/cat.out | wc -l)"
exit $((fails > 0))
`

// TestRlimitNofileWalk runs rootless uvfsd with RLIMIT_NOFILE 256 (and
// --rlimit-nofile=0 so it keeps it) on a share of 5,000 files: the guest
// keeps every inode it has seen, so passfs must serve it within its fd
// budget, closing and reopening inode fds, without the guest seeing an
// error.
func TestRlimitNofileWalk(t *testing.T) {
	requireGuestTools(t)
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		missing(t, "prlimit not found (apt-get install util-linux): %v", err)
	}
	uvfsd := buildUvfsd(t)
	user := e2eUser(t, userWithSubIDs)
	spec := daemonSpec{
		path: prlimit,
		args: func(socket, shared string) []string {
			// The shell reports the limit uvfsd inherits, then becomes uvfsd.
			return append([]string{fmt.Sprintf("--nofile=%d:%d", rlimitNofile, rlimitNofile), "--",
				"/bin/sh", "-c", `echo "nofile limit $(ulimit -n)"; exec "$@"`, "sh",
				uvfsd, "--socket-path=" + socket, "--shared-dir=" + shared, "--xattr", "--rlimit-nofile=0"}, seccompArgs()...)
		},
		user:  user,
		setup: func(t *testing.T, shared string) { makeTree(t, filepath.Join(shared, "tree"), user) },
	}
	b := bootWithDaemon(t, spec, rlimitScript, nil)
	checkGuestOutput(t, b)
	if want := fmt.Sprintf("nofile limit %d", rlimitNofile); !strings.Contains(b.daemonOutput, want) {
		t.Errorf("the daemon did not start with RLIMIT_NOFILE %d; its output:\n%s", rlimitNofile, b.daemonOutput)
	}
	for _, key := range []string{"PASS1 find", "PASS1 ls", "PASS2 find", "PASS2 ls"} {
		if got := fieldsAfter(b.res.Output, key+" "); len(got) != 1 || got[0] != fmt.Sprint(rlimitFiles) {
			t.Errorf("%s counted %v files, want %d", key, got, rlimitFiles)
		}
	}
	// Every file holds its own name: all lines read, all different.
	if got := fieldsAfter(b.res.Output, "READ "); len(got) != 2 || got[0] != fmt.Sprint(rlimitFiles) || got[1] != fmt.Sprint(rlimitFiles) {
		t.Errorf("reading every file gave %v lines (total, distinct), want %d of each", got, rlimitFiles)
	}
	if strings.Contains(b.daemonOutput, "out of file descriptors") {
		t.Logf("passfs hit the fd limit and recovered (see its log); the budget should have prevented it:\n%s", b.daemonOutput)
	}
}

// makeTree creates rlimitDirs directories of rlimitFilesPerDir files, each
// holding its own path, owned by owner.
func makeTree(t *testing.T, root string, owner testUser) {
	t.Helper()
	for d := range rlimitDirs {
		dir := filepath.Join(root, fmt.Sprintf("d%02d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := range rlimitFilesPerDir {
			rel := fmt.Sprintf("d%02d/f%03d", d, f)
			p := filepath.Join(root, rel)
			if err := os.WriteFile(p, []byte(rel+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			owner.chown(t, p)
		}
		owner.chown(t, dir)
	}
	owner.chown(t, root)
}
