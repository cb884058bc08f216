package e2e

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// pjdfstest, the POSIX conformance suite virtio-fs developers run, in the guest against uvfsd with
// --ownership=mapped run as an unprivileged user, once without subordinate ids and once with them.
// A failure counts only when the guest's own tmpfs passes the same test: the reference, which runs
// the failing files again on the guest's /tmp. docs/pjdfstest.md has the counts.
//
// The whole suite takes about ten minutes under TCG, so CI runs the directories the mapped model
// touches (pjdfstestCIDirs); UVFS_PJDFSTEST_DIRS=all (or a comma-separated list) picks others, and
// UVFS_PJDFSTEST_REFERENCE=1 runs the reference over all of them (for the counts in the docs):
//
//	CI=true UVFS_PJDFSTEST_DIRS=all UVFS_PJDFSTEST_REFERENCE=1 go test ./e2e -run TestPjdfstestMapped -v -timeout 60m

// pjdfstestCIDirs are the suite's directories whose calls the mapped model changes.
var pjdfstestCIDirs = []string{"chown", "chmod", "mknod", "link", "rename", "unlink", "open", "mkfifo"}

// pjdfstestDir finds the suite: $UVFS_PJDFSTEST, else testdata/pjdfstest (a copy of the static
// build in ../shared/pjdfstest, kept in the repository so that a clone anywhere runs it; see its
// README.md and COPYING).
func pjdfstestDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("UVFS_PJDFSTEST")
	if dir == "" {
		dir = filepath.Join("testdata", "pjdfstest")
	}
	if _, err := os.Stat(filepath.Join(dir, "pjdfstest")); err != nil {
		missing(t, "pjdfstest not found (set UVFS_PJDFSTEST to a folder with the static pjdfstest binary, its tests/ and bin/openssl): %v", err)
	}
	return dir
}

// pjdfstestFiles returns the suite's files (bin/openssl, pjdfstest, tests/...) as initramfs files
// under /extra/pjdfstest, and the .t files of each tests/ directory.
func pjdfstestFiles(t *testing.T, dir string) (map[string][]byte, map[string][]string) {
	t.Helper()
	files := map[string][]byte{}
	tests := map[string][]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files["/extra/pjdfstest/"+filepath.ToSlash(rel)] = data
		if parts := strings.Split(filepath.ToSlash(rel), "/"); len(parts) == 3 && parts[0] == "tests" && strings.HasSuffix(parts[2], ".t") {
			tests[parts[1]] = append(tests[parts[1]], parts[1]+"/"+parts[2])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, tests
}

// pjdfstestGuestScript runs pjdfstest.sh on every share at once, then on the guest's tmpfs: the
// files that failed on a share, or with PJD_REFERENCE every one.
const pjdfstestGuestScript = `
grep -q '^nobody:' /etc/passwd || echo 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >>/etc/passwd
grep -q '^nogroup:' /etc/group || echo 'nogroup:x:65534:' >>/etc/group
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
[ -e /dev/stdin ] || ln -s /proc/self/fd/0 /dev/stdin
[ -e /dev/stdout ] || ln -s /proc/self/fd/1 /dev/stdout
[ -e /dev/stderr ] || ln -s /proc/self/fd/2 /dev/stderr
for tag in $SHARES; do
	sh /etc/uvfs/pjdfstest.sh $tag /mnt/$tag $PJD_DIRS >/tmp/pjd.$tag 2>&1 &
done
wait
for tag in $SHARES; do cat /tmp/pjd.$tag; done
if [ -n "$PJD_REFERENCE" ]; then
	ref=$PJD_DIRS
else
	ref=$(for tag in $SHARES; do grep '^NOK ' /tmp/pjd.$tag; done | awk '{print $3}' | grep '\.t$' | sort -u)
fi
[ -z "$ref" ] || sh /etc/uvfs/pjdfstest.sh tmpfs /tmp $ref
`

// pjdCounts is one PJDTOTAL line.
type pjdCounts struct{ pass, fail, todo, skip, missing, secs int }

// pjdRun is what the guest reported for one label (a share's tag, or tmpfs).
type pjdRun struct {
	total *pjdCounts
	files map[string]bool       // .t files that ran
	dirs  map[string]*pjdCounts // per tests/ directory: pass, fail and todo
	// failures maps "dir/NN.t #N" (a failed test's number) and "dir/NN.t incomplete" to the
	// guest's line (test names are random, so only the number is compared).
	failures map[string]string
}

// parsePjdfstest reads the guest's PJDT, NOK and PJDTOTAL lines.
func parsePjdfstest(t *testing.T, lines []string) map[string]*pjdRun {
	t.Helper()
	runs := map[string]*pjdRun{}
	run := func(label string) *pjdRun {
		if runs[label] == nil {
			runs[label] = &pjdRun{files: map[string]bool{}, dirs: map[string]*pjdCounts{}, failures: map[string]string{}}
		}
		return runs[label]
	}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 3 {
			continue
		}
		switch f[0] {
		case "PJDT":
			r := run(f[1])
			r.files[f[2]] = true
			var c pjdCounts
			if _, err := fmt.Sscan(strings.Join(f[3:], " "), &c.pass, &c.fail, &c.todo); err != nil {
				t.Errorf("bad file line %q: %v", l, err)
			}
			dir, _, _ := strings.Cut(f[2], "/")
			if r.dirs[dir] == nil {
				r.dirs[dir] = &pjdCounts{}
			}
			d := r.dirs[dir]
			d.pass, d.fail, d.todo = d.pass+c.pass, d.fail+c.fail, d.todo+c.todo
		case "NOK":
			key := f[2] + " " + strings.Join(f[3:], " ")
			switch {
			case len(f) >= 6 && f[3] == "not" && f[4] == "ok":
				key = f[2] + " #" + f[5]
			case len(f) >= 4 && f[3] == "incomplete":
				key = f[2] + " incomplete"
			}
			run(f[1]).failures[key] = strings.Join(f[2:], " ")
		case "PJDTOTAL":
			var c pjdCounts
			if _, err := fmt.Sscan(strings.Join(f[2:], " "), &c.pass, &c.fail, &c.todo, &c.skip, &c.missing, &c.secs); err != nil {
				t.Errorf("bad total line %q: %v", l, err)
			}
			run(f[1]).total = &c
		}
	}
	return runs
}

// TestPjdfstestMapped runs pjdfstest against uvfsd --ownership=mapped as a user without
// subordinate ids and as one with them, in one guest, and fails on any failure the guest's tmpfs
// does not have too.
func TestPjdfstestMapped(t *testing.T) {
	requireGuestTools(t)
	requireRoot(t, "the daemons run as the test accounts")
	suite := pjdfstestDir(t)
	files, tests := pjdfstestFiles(t, suite)
	script, err := os.ReadFile(filepath.Join("testdata", "pjdfstest.sh"))
	if err != nil {
		t.Fatal(err)
	}
	files["/etc/uvfs/pjdfstest.sh"] = script

	dirs := pjdfstestCIDirs
	switch v := os.Getenv("UVFS_PJDFSTEST_DIRS"); v {
	case "":
	case "all":
		dirs = nil
		for d := range tests {
			dirs = append(dirs, d)
		}
		sort.Strings(dirs)
	default:
		dirs = strings.Split(v, ",")
	}
	var want []string
	for _, d := range dirs {
		if len(tests[d]) == 0 {
			t.Fatalf("pjdfstest has no tests in %q (%s)", d, suite)
		}
		want = append(want, tests[d]...)
	}
	reference := os.Getenv("UVFS_PJDFSTEST_REFERENCE") != ""

	share := func(tag string, u testUser) servedShare {
		return servedShare{tag: tag, dir: makeDir(t, "uvfs-e2e-pjd-", 0o755, u), user: u,
			flags: []string{"--ownership=mapped", "--xattr"}}
	}
	shares := []servedShare{share("nosub", e2eUser(t, userWithoutSubIDs)), share("sub", e2eUser(t, userWithSubIDs))}
	env := []string{"SHARES=nosub sub", "PJD_DIRS=" + strings.Join(dirs, " ")}
	if reference {
		env = append(env, "PJD_REFERENCE=1")
	}
	timeout := 20 * time.Minute
	if len(dirs) > len(pjdfstestCIDirs) || reference {
		timeout = time.Hour
	}
	res := bootUvfsdSharesWith(t, shares, pjdfstestGuestScript, env, guestExtras{files: files, timeout: timeout})
	runs := parsePjdfstest(t, res.Output)
	ref := runs["tmpfs"]
	if ref == nil {
		ref = &pjdRun{failures: map[string]string{}}
	}
	for _, s := range shares {
		r := runs[s.tag]
		if r == nil || r.total == nil {
			t.Errorf("%s (uvfsd as %s): no pjdfstest total in the guest's output", s.tag, s.user.Name)
			continue
		}
		t.Logf("%s (uvfsd as %s, %v): %d ok, %d failed, %d TODO (%d skipped, %d not run) in %d s over %s",
			s.tag, s.user.Name, s.flags, r.total.pass, r.total.fail, r.total.todo, r.total.skip, r.total.missing, r.total.secs,
			strings.Join(dirs, ","))
		t.Logf("%s per directory (ok/failed/TODO): %s", s.tag, r.perDir())
		for _, f := range want {
			if !r.files[f] {
				t.Errorf("%s: %s did not run", s.tag, f)
			}
		}
		var beyond []string
		for key, line := range r.failures {
			if _, alsoOnTmpfs := ref.failures[key]; !alsoOnTmpfs {
				beyond = append(beyond, line)
			}
		}
		sort.Strings(beyond)
		for _, line := range beyond {
			t.Errorf("%s (uvfsd as %s): %s (passes on the guest's tmpfs)", s.tag, s.user.Name, line)
		}
	}
	if ref.total != nil {
		t.Logf("tmpfs reference: %d ok, %d failed, %d TODO (%d skipped, %d not run) in %d s; per directory: %s", ref.total.pass,
			ref.total.fail, ref.total.todo, ref.total.skip, ref.total.missing, ref.total.secs, ref.perDir())
	}
}

// perDir lists the counts of each directory, "chown 1/0/0 chmod ...".
func (r *pjdRun) perDir() string {
	var dirs []string
	for d := range r.dirs {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	var b strings.Builder
	for _, d := range dirs {
		c := r.dirs[d]
		fmt.Fprintf(&b, " %s %d/%d/%d", d, c.pass, c.fail, c.todo)
	}
	return strings.TrimSpace(b.String())
}

// TestParsePjdfstest: failures are keyed by file and test number, since the names in a test's line
// are random and differ between the share's run and the reference's.
func TestParsePjdfstest(t *testing.T) {
	runs := parsePjdfstest(t, []string{
		"PJDT sub chown/00.t 170 1 0 0 171 0 12",
		"NOK sub chown/00.t not ok 17 - tried 'lchown pjdfstest_3b1a 123 456', expected 0, got EPERM",
		"NOK sub open/05.t incomplete rc=124 missing=3",
		"PJDTOTAL sub 170 1 0 0 3 30",
		"PJDT tmpfs chown/00.t 170 1 0 0 171 0 2",
		"NOK tmpfs chown/00.t not ok 17 - tried 'lchown pjdfstest_77c0 123 456', expected 0, got EPERM",
		"PJDTOTAL tmpfs 170 1 0 0 0 2",
	})
	sub, ref := runs["sub"], runs["tmpfs"]
	if sub == nil || ref == nil || sub.total == nil || *sub.total != (pjdCounts{170, 1, 0, 0, 3, 30}) {
		t.Fatalf("parsed %+v", runs)
	}
	if !sub.files["chown/00.t"] || len(sub.failures) != 2 || sub.perDir() != "chown 170/1/0" {
		t.Errorf("sub: files %v failures %v", sub.files, sub.failures)
	}
	if _, ok := ref.failures["chown/00.t #17"]; !ok {
		t.Errorf("reference failures %v lack chown/00.t #17", ref.failures)
	}
	if _, ok := sub.failures["open/05.t incomplete"]; !ok {
		t.Errorf("sub failures %v lack open/05.t incomplete", sub.failures)
	}
}
