package e2e

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/scripts/vm"
)

// migrationScript holds a file open for reading (10 bytes read) and one for appending, lists a
// directory, says MIG READY, and waits for the host's /mnt/go, which it can only see once it runs
// on whichever side the migration left it. Then it reads the rest through the same fd, appends
// through the other, and lists again.
const migrationScript = `
exec 3< /mnt/data/read.bin
dd bs=10 count=1 of=/dev/null <&3 2>/dev/null
exec 4>> /mnt/data/append.txt
echo before >&4
ls -l /mnt/data > /dev/null
echo "MIG READY"
# Until the host says go, read one of eight files after another into a page cache emptied each
# time: uvfsd writes those pages into guest memory while the migration copies it, with other data
# each round, and only its dirty log gets a round that ran after QEMU copied those pages to the
# destination. Each round first checks that the previous file's cached pages still hold what was
# read: after the switch-over that is the check of the dirty log (which catches a missing log
# when a round ran after the first copy of memory, most of the time with the bandwidth limit).
i=0
while [ ! -e /mnt/go ]; do
	if [ -e /tmp/lastfile ]; then
		now=$(md5sum < $(cat /tmp/lastfile) | cut -d' ' -f1)
		[ "$now" = "$(cat /tmp/lastsum)" ] || echo "MIG MISMATCH $(cat /tmp/lastfile) $now $(cat /tmp/lastsum)"
	fi
	echo 3 > /proc/sys/vm/drop_caches
	f=/mnt/data/c$((i % 8))
	md5sum < $f | cut -d' ' -f1 > /tmp/lastsum
	echo $f > /tmp/lastfile
	sleep 0.1
	i=$((i+1))
	[ $i -gt 3000 ] && { echo "FAIL: /mnt/go never appeared"; break; }
done
echo "MIG RESUMED after $i rounds"
cat <&3 > /tmp/rest || echo "MIG READ FAILED"
echo "MIG REST $(md5sum < /tmp/rest | cut -d' ' -f1)"
echo after >&4 || echo "MIG APPEND FAILED"
exec 4>&- 3<&-
echo "MIG LS $(ls /mnt/data | tr '\n' ' ')"
`

// watchWriter closes found when its input contains want.
type watchWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	want  string
	found chan struct{}
	done  bool
}

func newWatchWriter(want string) *watchWriter {
	return &watchWriter{want: want, found: make(chan struct{})}
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.buf.Write(p)
		if bytes.Contains(w.buf.Bytes(), []byte(w.want)) {
			w.done = true
			close(w.found)
		}
	}
	return len(p), nil
}

type migrationCase struct {
	name     string
	flags    []string
	fallback bool   // both daemons without a user namespace (the nouserns launcher)
	root     bool   // both daemons run as root (file handles need CAP_DAC_READ_SEARCH)
	rename   bool   // a host process renames the open file while the guest is stopped for switch-over
	want     string // "completed", or "failed" (the guest runs on at the source)
	readable bool   // the open file can still be read after the migration
}

// TestLiveMigration migrates a running Linux 6.12 guest between two QEMU 10s on this machine, each
// with its own rootless uvfsd on one shared directory, while the guest holds a file open for
// reading, one for appending and has listed a directory: afterwards it keeps reading, appending
// and listing, the data on the host is complete, and the source uvfsd exits 0. With a rename by
// the host during the switch-over, the default aborts the migration (the guest runs on at the
// source), --migration-confirm-paths finds the file, and --migration-on-error=guest-error
// finishes with errors for that file only.
func TestLiveMigration(t *testing.T) {
	requireRoot(t, "the daemons run as the unprivileged test account")
	requireStack(t, stackQEMU10)
	for _, tc := range []migrationCase{
		{name: "namespace", want: "completed", readable: true},
		{name: "no-user-namespace", fallback: true, want: "completed", readable: true},
		// OPEN and OPENDIR handles instead of the default no-open mode's per-node data fds.
		{name: "open-handles", flags: []string{"--no-open=false", "--no-opendir=false"}, want: "completed", readable: true},
		{name: "rename-default-aborts", rename: true, want: "failed", readable: true},
		{name: "rename-confirm-paths", flags: []string{"--migration-confirm-paths"}, rename: true, want: "completed", readable: true},
		{name: "rename-guest-error", flags: []string{"--migration-on-error=guest-error"}, rename: true, want: "completed", readable: false},
		// Root's file handles find the renamed file without any path.
		{name: "root-file-handles", flags: []string{"--migration-mode=file-handles"}, root: true, rename: true, want: "completed", readable: true},
	} {
		t.Run(tc.name, func(t *testing.T) { runMigration(t, tc) })
	}
}

func runMigration(t *testing.T, tc migrationCase) {
	g := requireStack(t, stackQEMU10)
	user := e2eUser(t, userWithSubIDs)
	if tc.root {
		user = currentUser(t)
	}
	shared := makeDir(t, "uvfs-e2e-share-", 0o755, user)
	sockDir := makeDir(t, "uvfs-e2e-sock-", 0o700, user)
	work := t.TempDir()
	data := filepath.Join(shared, "data")
	readBin := make([]byte, 4<<20)
	rand.New(rand.NewSource(7)).Read(readBin)
	files := map[string][]byte{"read.bin": readBin, "append.txt": nil, "e1": nil, "e2": nil}
	for i := range 8 {
		files[fmt.Sprintf("c%d", i)] = readBin[i<<18 : (i+1)<<18]
	}
	for name, content := range files {
		if err := os.MkdirAll(data, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(data, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(data)
	if err != nil {
		t.Fatal(err)
	}
	user.chown(t, data)
	for _, e := range entries {
		user.chown(t, filepath.Join(data, e.Name()))
	}

	spec := uvfsdSpec(t, user, tc.flags...)
	if tc.fallback {
		spec = withoutUserNamespaces(t, spec)
	}
	startDaemon := func(name string) (*vm.Daemon, string) {
		socket := filepath.Join(sockDir, name+".sock")
		d := &vm.Daemon{Path: spec.path, Args: spec.args(socket, shared), Socket: socket, Credential: user.Credential()}
		if err := d.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Stop(5 * time.Second) })
		return d, socket
	}
	srcDaemon, srcSocket := startDaemon("src")
	dstDaemon, dstSocket := startDaemon("dst")
	defer func() {
		if t.Failed() {
			t.Logf("source uvfsd:\n%s\ndestination uvfsd:\n%s", srcDaemon.Output(), dstDaemon.Output())
		}
	}()

	rd := vm.Initramfs{Kernel: g.kernel, Helper: g.helper, Mounts: []vm.Mount{{Tag: shareTag, Dir: "/mnt"}}, Script: migrationScript}
	initrd := filepath.Join(work, "initrd")
	if err := rd.BuildFile(initrd); err != nil {
		t.Fatal(err)
	}
	machine := func(socket, qmpPath string, extra ...string) vm.VM {
		// init_on_alloc=0: Debian's kernels zero each page they allocate, which dirties a page
		// cache page in QEMU's own log before uvfsd fills it and so would hide a page missing
		// from uvfsd's dirty log.
		return vm.VM{QEMU: g.qemu, Kernel: g.bootKernel, Initrd: initrd, MemoryMB: 512, Timeout: 6 * time.Minute, Append: "init_on_alloc=0",
			FS:        []vm.FSDevice{{Socket: socket, Tag: shareTag}},
			ExtraArgs: append([]string{"-qmp", "unix:" + qmpPath + ",server=on,wait=off"}, extra...)}
	}
	type run struct {
		res *vm.Result
		err error
	}
	boot := func(m vm.VM) chan run {
		ch := make(chan run, 1)
		go func() {
			res, err := m.Run(context.Background())
			ch <- run{res, err}
		}()
		return ch
	}

	srcQMPPath, dstQMPPath := filepath.Join(work, "src.qmp"), filepath.Join(work, "dst.qmp")
	ready := newWatchWriter("MIG READY")
	src := machine(srcSocket, srcQMPPath)
	src.Console = ready
	srcDone := boot(src)
	select {
	case <-ready.found:
	case r := <-srcDone:
		t.Fatalf("the source guest ended before it was ready: %v\n%s", r.err, strings.Join(r.res.Console, "\n"))
	case <-time.After(4 * time.Minute):
		t.Fatal("the source guest never said MIG READY")
	}
	dstDone := boot(machine(dstSocket, dstQMPPath, "-incoming", "defer"))

	dstQMP, err := dialQMP(dstQMPPath, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer dstQMP.close()
	srcQMP, err := dialQMP(srcQMPPath, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer srcQMP.close()
	migSocket := filepath.Join(work, "migration.sock")
	// return-path: without it a destination that fails to load the daemon's state is reported as
	// completed and the guest is lost (../shared/NOTES.md). pause-before-switchover stops the
	// source with the guest and the device stopped, before the device state is saved: the moment
	// to rename.
	caps := func(names ...string) map[string]any {
		var c []map[string]any
		for _, n := range names {
			c = append(c, map[string]any{"capability": n, "state": true})
		}
		return map[string]any{"capabilities": c}
	}
	if _, err := dstQMP.run("migrate-set-capabilities", caps("return-path")); err != nil {
		t.Fatal(err)
	}
	if _, err := dstQMP.run("migrate-incoming", map[string]any{"uri": "unix:" + migSocket}); err != nil {
		t.Fatal(err)
	}
	if _, err := srcQMP.run("migrate-set-capabilities", caps("return-path", "pause-before-switchover")); err != nil {
		t.Fatal(err)
	}
	// 8 MB/s makes the first copy of the guest's memory take some 10 s, during which the guest
	// reads files into its page cache round after round.
	if _, err := srcQMP.run("migrate-set-parameters", map[string]any{"max-bandwidth": 8 << 20}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := srcQMP.run("migrate", map[string]any{"uri": "unix:" + migSocket}); err != nil {
		t.Fatal(err)
	}
	status, desc, err := srcQMP.waitMigration(3*time.Minute, "pre-switchover")
	if err != nil || status != "pre-switchover" {
		t.Fatalf("migration did not reach pre-switchover: %s %s %v", status, desc, err)
	}
	if tc.rename {
		if err := os.Rename(filepath.Join(data, "read.bin"), filepath.Join(data, "renamed.bin")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := srcQMP.run("migrate-continue", map[string]any{"state": "pre-switchover"}); err != nil {
		t.Fatal(err)
	}
	status, desc, err = srcQMP.waitMigration(3*time.Minute, "completed")
	if err != nil {
		t.Fatal(err)
	}
	ret, _ := srcQMP.run("query-migrate", nil)
	t.Logf("migration %s after %v %s; query-migrate: %s", status, time.Since(start).Round(time.Millisecond), desc, ret)
	if status != tc.want {
		t.Fatalf("migration %s (%s), want %s", status, desc, tc.want)
	}

	var guest run
	if status == "completed" {
		// The source is paused for good: quit it; its uvfsd then exits by itself, with 0.
		if _, err := srcQMP.run("quit", nil); err != nil {
			t.Fatal(err)
		}
		<-srcDone
		if err := srcDaemon.Wait(20 * time.Second); err != nil {
			t.Errorf("the source uvfsd did not exit 0 after the migration: %v", err)
		}
		touchGo(t, shared, user)
		guest = <-dstDone
	} else {
		// The destination gave up; the guest runs on at the source.
		dstQMP.run("quit", nil)
		<-dstDone
		touchGo(t, shared, user)
		guest = <-srcDone
	}
	if guest.err != nil {
		t.Fatalf("the guest after the migration: %v", guest.err)
	}
	checkMigratedGuest(t, tc, guest.res, readBin, data)
	checkNoSeccompDenials(t, srcDaemon.Output())
	checkNoSeccompDenials(t, dstDaemon.Output())
}

func touchGo(t *testing.T, shared string, user testUser) {
	t.Helper()
	p := filepath.Join(shared, "go")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	user.chown(t, p)
}

// checkMigratedGuest reads the guest's MIG lines (from the console: after a migration the
// destination's console starts in the middle of the script) and the files on the host.
func checkMigratedGuest(t *testing.T, tc migrationCase, res *vm.Result, readBin []byte, data string) {
	t.Helper()
	lines := map[string]string{}
	for _, l := range res.Console {
		if i := strings.Index(l, "MIG "); i >= 0 {
			f := strings.SplitN(strings.TrimSpace(l[i+4:]), " ", 2)
			if len(f) == 1 {
				f = append(f, "")
			}
			lines[f[0]] = f[1]
		}
		if strings.Contains(l, "FAIL:") {
			t.Errorf("guest: %s", l)
		}
	}
	defer func() {
		if t.Failed() {
			for _, l := range res.Console {
				if strings.Contains(l, "MIG ") {
					t.Logf("guest: %s", strings.TrimSpace(l))
				}
			}
		}
	}()
	if _, ok := lines["RESUMED"]; !ok {
		t.Fatalf("the guest never resumed its script:\n%s", strings.Join(res.Console, "\n"))
	}
	sum := md5.Sum(readBin[10:])
	want := hex.EncodeToString(sum[:])
	_, readFailed := lines["READ"]
	if tc.readable {
		if lines["REST"] != want || readFailed {
			t.Errorf("guest read the rest of the open file with md5 %q (failed: %v), want %s", lines["REST"], readFailed, want)
		}
	} else if !readFailed {
		t.Errorf("the lost file could still be read (md5 %q), want an error", lines["REST"])
	}
	if m, ok := lines["MISMATCH"]; ok {
		t.Errorf("the guest's page cache of a file uvfsd read during the migration changed (file, md5 now, md5 read): %s (pages missing from the dirty log?)", m)
	}
	if _, failed := lines["APPEND"]; failed {
		t.Error("appending through the open file failed after the migration")
	}
	appended, err := os.ReadFile(filepath.Join(data, "append.txt"))
	if err != nil || string(appended) != "before\nafter\n" {
		t.Errorf("host append.txt = %q (%v), want before and after", appended, err)
	}
	wantLS := "append.txt c0 c1 c2 c3 c4 c5 c6 c7 e1 e2 read.bin"
	if tc.rename {
		wantLS = "append.txt c0 c1 c2 c3 c4 c5 c6 c7 e1 e2 renamed.bin"
	}
	if got := strings.TrimSpace(lines["LS"]); got != wantLS {
		t.Errorf("guest lists %q after the migration, want %q", got, wantLS)
	}
}
