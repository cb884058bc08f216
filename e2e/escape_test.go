package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/scripts/vm"
)

// escapeScript tries, in every share, to reach the host through "..",
// symlinks, a FIFO and device nodes. Lines:
//
//	DOTDOT TAG PWD ENTRIES...   $m/.. (the guest's /mnt)
//	ROOT2 TAG PWD ENTRIES...    $m/../.. (the guest's /)
//	ROOT3 TAG PWD ENTRIES...    $m/../../.. (still the guest's /)
//	PASSWD TAG LINE             each line of $m/out/passwd (out -> /etc)
//	FIFO TAG DATA               what a guest reader got from a guest writer
//	NULLDEV TAG char MAJ:MIN    the share's null node, seen by the guest
//	KMSG TAG N                  times the guest's own log shows the marker
const escapeScript = `
for tag in $SHARES; do
	m=/mnt/$tag
	echo "DOTDOT $tag $(cd $m/.. && pwd) $(ls $m/.. | tr '\n' ' ')"
	echo "ROOT2 $tag $(cd $m/../.. && pwd) $(ls $m/../.. | tr '\n' ' ')"
	echo "ROOT3 $tag $(cd $m/../../.. && pwd) $(ls $m/../../.. | tr '\n' ' ')"
done
for tag in $SHARES; do
	m=/mnt/$tag
	# out -> /etc is resolved by the guest: its own /etc.
	sed "s/^/PASSWD $tag /" $m/out/passwd
	echo "probe $tag" > $m/out/escape-$MARK-$tag || echo "FAIL: $tag: cannot write through out (guest /etc)"
	[ "$(cat /etc/escape-$MARK-$tag)" = "probe $tag" ] || echo "FAIL: $tag: the write through out did not land in the guest /etc"
	# abs -> the host sentinel's absolute path, which the guest lacks.
	cat $m/abs && echo "FAIL: $tag: read through abs"
	echo overwritten > $m/abs && echo "FAIL: $tag: wrote through abs"
	# rel -> ../SENTINEL: the guest's /mnt/SENTINEL, absent, then
	# created in the guest's root file system by the write.
	cat $m/rel && echo "FAIL: $tag: read through rel"
	echo overwritten > $m/rel || echo "FAIL: $tag: cannot write through rel (guest /mnt)"
	rm -f /mnt/$SENTINEL
	# A FIFO is guest-local: alone, a reader blocks (the host's writer
	# probe must keep getting ENXIO); with a guest writer it gets data.
	timeout 2 cat $m/fifo
	echo "guest-pipe-$tag" > $m/fifo &
	echo "FIFO $tag $(timeout 5 cat $m/fifo)"
	wait
	# Device nodes are guest devices: null is the guest's, and a write
	# to kmsg lands in the guest's kernel log, not the host's.
	echo "NULLDEV $tag $([ -c $m/null ] && echo char) $(stat -c %t:%T $m/null)"
	echo data > $m/null || echo "FAIL: $tag: cannot write the null device"
	[ -z "$(cat $m/null)" ] || echo "FAIL: $tag: the null device returned data"
	echo "uvfs-kmsg-$MARK-$tag" > $m/kmsg || echo "FAIL: $tag: cannot write the kmsg device"
	echo "KMSG $tag $(dmesg | grep -c uvfs-kmsg-$MARK-$tag)"
done
`

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// escapeShare is a share prepared with escape routes, inside a parent
// directory that also holds a sentinel file the guest must never touch.
type escapeShare struct {
	servedShare
	parent, sentinel string
	sentinelData     []byte
	sentinelStat     unix.Stat_t
}

func newEscapeShare(t *testing.T, tag string, u testUser, sentinelName string, flags ...string) escapeShare {
	t.Helper()
	parent := makeDir(t, "uvfs-e2e-esc-", 0o755, u)
	dir := filepath.Join(parent, "share")
	s := escapeShare{servedShare: servedShare{tag: tag, dir: dir, user: u, flags: flags}, parent: parent,
		sentinel: filepath.Join(parent, sentinelName), sentinelData: []byte("host sentinel " + randomHex(t, 16) + "\n")}
	// The sentinel belongs to the daemon's user: only confinement, not
	// permissions, keeps the daemon from changing it.
	if err := os.WriteFile(s.sentinel, s.sentinelData, 0o644); err != nil {
		t.Fatal(err)
	}
	u.chown(t, s.sentinel)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	u.chown(t, dir)
	for name, target := range map[string]string{"out": "/etc", "abs": s.sentinel, "rel": "../" + sentinelName} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o666); err != nil {
		t.Fatal(err)
	}
	for name, dev := range map[string]uint64{"null": unix.Mkdev(1, 3), "kmsg": unix.Mkdev(1, 11)} {
		if err := unix.Mknod(filepath.Join(dir, name), unix.S_IFCHR|0o666, int(dev)); err != nil {
			t.Fatalf("mknod %s: %v", name, err)
		}
	}
	if err := unix.Lstat(s.sentinel, &s.sentinelStat); err != nil {
		t.Fatal(err)
	}
	return s
}

// checkUntouched verifies the sentinel and the parent directory.
func (s escapeShare) checkUntouched(t *testing.T) {
	t.Helper()
	data, err := os.ReadFile(s.sentinel)
	if err != nil || !bytes.Equal(data, s.sentinelData) {
		t.Errorf("%s: sentinel %s next to the share changed: %q (err %v)", s.tag, s.sentinel, data, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(s.sentinel, &st); err != nil || st.Mtim != s.sentinelStat.Mtim || st.Ctim != s.sentinelStat.Ctim || st.Ino != s.sentinelStat.Ino {
		t.Errorf("%s: sentinel %s was modified (mtime/ctime/inode changed, err %v)", s.tag, s.sentinel, err)
	}
	entries, err := os.ReadDir(s.parent)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{filepath.Base(s.sentinel), "share"}; err != nil || !sameSet(names, want) {
		t.Errorf("%s: the share's parent holds %v (err %v), want %v", s.tag, names, err, want)
	}
	for name, dev := range map[string]uint64{"null": unix.Mkdev(1, 3), "kmsg": unix.Mkdev(1, 11)} {
		if err := unix.Lstat(filepath.Join(s.dir, name), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != dev {
			t.Errorf("%s: host device node %s changed (mode %o rdev %x, err %v)", s.tag, name, st.Mode, st.Rdev, err)
		}
	}
}

// fifoProbe keeps opening host FIFOs for writing without blocking: ENXIO
// means nobody has them open for reading. Any success means the daemon
// opened the host FIFO for the guest.
type fifoProbe struct {
	stop     chan struct{}
	done     sync.WaitGroup
	mu       sync.Mutex
	attempts int
	problems []string
}

func startFIFOProbe(paths []string) *fifoProbe {
	p := &fifoProbe{stop: make(chan struct{})}
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		for {
			for _, path := range paths {
				fd, err := unix.Open(path, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
				p.mu.Lock()
				p.attempts++
				switch {
				case err == nil:
					unix.Write(fd, []byte("host-fifo-data\n"))
					unix.Close(fd)
					p.problems = append(p.problems, path+": a host writer found a reader")
				case !errors.Is(err, unix.ENXIO):
					p.problems = append(p.problems, path+": "+err.Error())
				}
				p.mu.Unlock()
			}
			select {
			case <-p.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return p
}

func (p *fifoProbe) finish() (attempts int, problems []string) {
	close(p.stop)
	p.done.Wait()
	return p.attempts, p.problems
}

// hostKernelLog returns the host's kernel log buffer.
func hostKernelLog(t *testing.T) string {
	t.Helper()
	size, err := unix.Klogctl(unix.SYSLOG_ACTION_SIZE_BUFFER, nil)
	if err != nil {
		t.Fatalf("klogctl: %v", err)
	}
	buf := make([]byte, size)
	n, err := unix.Klogctl(unix.SYSLOG_ACTION_READ_ALL, buf)
	if err != nil {
		t.Fatalf("klogctl: %v", err)
	}
	return string(buf[:n])
}

// TestEscapesStayInGuest serves shares holding escape routes to a guest,
// with the namespace sandbox (default) and with none, as the unprivileged
// user: every route must end in the guest, and nothing outside the share
// on the host may change.
func TestEscapesStayInGuest(t *testing.T) {
	requireGuestTools(t)
	requireRoot(t, "mknod of the device nodes in the share")
	u := e2eUser(t, userWithSubIDs)
	mark := randomHex(t, 8)
	sentinelName := "uvfs-sentinel-" + randomHex(t, 8)
	shares := []escapeShare{
		newEscapeShare(t, "ns", u, sentinelName),
		newEscapeShare(t, "none", u, sentinelName, "--sandbox=none"),
	}
	var served []servedShare
	var tags, fifos []string
	for _, s := range shares {
		served = append(served, s.servedShare)
		tags = append(tags, s.tag)
		fifos = append(fifos, filepath.Join(s.dir, "fifo"))
	}
	probe := startFIFOProbe(fifos)
	res := bootUvfsdShares(t, served, escapeScript,
		[]string{"SHARES=" + strings.Join(tags, " "), "MARK=" + mark, "SENTINEL=" + sentinelName})
	attempts, problems := probe.finish()
	for _, p := range problems {
		t.Errorf("host FIFO: %s", p)
	}
	if attempts < 100 {
		t.Errorf("the host FIFO probe ran only %d times", attempts)
	}

	hostRoot, err := os.ReadDir("/")
	if err != nil {
		t.Fatal(err)
	}
	checkGuestRoot := func(what string, fields []string) {
		t.Helper()
		if len(fields) == 0 || fields[0] != "/" || !slices.Contains(fields, "init") || !slices.Contains(fields, "mnt") {
			t.Errorf("%s: %v, want the guest's / (with init and mnt)", what, fields)
			return
		}
		for _, e := range hostRoot {
			if slices.Contains(fields[1:], e.Name()) && !slices.Contains(guestRootNames, e.Name()) {
				t.Errorf("%s lists the host's /%s: %v", what, e.Name(), fields)
			}
		}
	}
	dotdot, root2, root3 := guestFields(res, "DOTDOT"), guestFields(res, "ROOT2"), guestFields(res, "ROOT3")
	fifo, nulldev, kmsg := guestFields(res, "FIFO"), guestFields(res, "NULLDEV"), guestFields(res, "KMSG")
	for _, s := range shares {
		if got := dotdot[s.tag]; len(got) == 0 || got[0] != "/mnt" || !sameSet(got[1:], tags) {
			t.Errorf("%s: guest /mnt/%s/.. is %v, want the guest's /mnt holding %v", s.tag, s.tag, got, tags)
		}
		checkGuestRoot(s.tag+": guest /mnt/"+s.tag+"/../..", root2[s.tag])
		checkGuestRoot(s.tag+": guest /mnt/"+s.tag+"/../../..", root3[s.tag])
		if got := guestPasswd(res, s.tag); !slices.Equal(got, []string{"root:x:0:0:root:/root:/bin/sh"}) {
			t.Errorf("%s: guest read %v through out -> /etc, want the guest's own /etc/passwd", s.tag, got)
		}
		if _, err := os.Lstat("/etc/escape-" + mark + "-" + s.tag); !errors.Is(err, os.ErrNotExist) {
			os.Remove("/etc/escape-" + mark + "-" + s.tag)
			t.Errorf("%s: the guest's write through out -> /etc reached the host's /etc (err %v)", s.tag, err)
		}
		if got := strings.Join(fifo[s.tag], " "); got != "guest-pipe-"+s.tag {
			t.Errorf("%s: guest FIFO reader got %q, want the guest writer's %q", s.tag, got, "guest-pipe-"+s.tag)
		}
		if got := strings.Join(nulldev[s.tag], " "); got != "char 1:3" {
			t.Errorf("%s: guest stat of null: %q, want a character device 1:3", s.tag, got)
		}
		if got := strings.Join(kmsg[s.tag], " "); got != "1" {
			t.Errorf("%s: the guest's kernel log shows its kmsg write %q times, want 1", s.tag, got)
		}
		s.checkUntouched(t)
	}
	for _, l := range res.Console {
		for _, s := range shares {
			if strings.Contains(l, strings.TrimSpace(string(s.sentinelData))) {
				t.Errorf("the guest printed the host sentinel's content: %q", l)
			}
		}
		if strings.Contains(l, "host-fifo-data") {
			t.Errorf("the guest read the host FIFO writer's data: %q", l)
		}
	}
	if _, err := os.Lstat("/" + sentinelName); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the guest's write through rel created /%s on the host (err %v)", sentinelName, err)
	}
	if strings.Contains(hostKernelLog(t), "uvfs-kmsg-"+mark) {
		t.Errorf("the guest's write to the kmsg node in the share reached the host's kernel log")
	}
}

// guestRootNames are the top-level entries of the test guest's initramfs.
var guestRootNames = []string{"bin", "dev", "etc", "init", "lib", "mnt", "proc", "root", "run", "sbin", "sys", "tmp"}

// guestPasswd returns the lines the guest printed as "PASSWD TAG LINE".
func guestPasswd(res *vm.Result, tag string) []string {
	var lines []string
	for _, l := range res.Output {
		if rest, ok := strings.CutPrefix(l, "PASSWD "+tag+" "); ok {
			lines = append(lines, rest)
		}
	}
	return lines
}

// sameSet reports whether a and b hold the same strings in any order.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
