package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/scripts/vm"
)

// requireRoot skips (fails under CI=true) tests that need root to create
// the test accounts, device nodes or to switch users.
func requireRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "needs root: %s", why)
	}
}

// servedShare is one uvfsd serving a prepared host directory in a boot
// with several shares.
type servedShare struct {
	tag   string   // virtiofs tag; the guest mounts it at /mnt/TAG
	dir   string   // host directory, populated before the boot
	user  testUser // runs uvfsd
	flags []string // uvfsd flags besides --socket-path and --shared-dir
	// launcher, if set, runs uvfsd: "launcher uvfsd ARGS..." (e.g. the
	// nouserns launcher of a container-like profile).
	launcher string
}

// bootUvfsdShares starts one uvfsd per share, boots one guest that mounts
// them all and runs script as guest root in /, and checks that the guest
// powered off and every daemon exited with status 0. One boot for several
// daemon configurations keeps the tests fast under TCG.
func bootUvfsdShares(t *testing.T, shares []servedShare, script string, env []string) *vm.Result {
	t.Helper()
	return bootUvfsdSharesOn(t, stackBaseline, shares, script, env)
}

// bootUvfsdSharesOn is bootUvfsdShares on the given QEMU and guest kernel.
func bootUvfsdSharesOn(t *testing.T, stack guestStack, shares []servedShare, script string, env []string) *vm.Result {
	t.Helper()
	return bootUvfsdSharesWith(t, shares, script, env, guestExtras{stack: stack})
}

// guestExtras are what some boots need beyond the script.
type guestExtras struct {
	stack   guestStack        // QEMU and guest kernel; the zero value is stackBaseline
	files   map[string][]byte // extra files in the initramfs (guest path -> contents)
	timeout time.Duration     // for the whole run; 5 minutes when zero
}

// bootUvfsdSharesWith is bootUvfsdShares with extras.
func bootUvfsdSharesWith(t *testing.T, shares []servedShare, script string, env []string, extra guestExtras) *vm.Result {
	t.Helper()
	g := requireStack(t, extra.stack)
	bin := buildUvfsd(t)
	work := t.TempDir()
	var devs []vm.FSDevice
	var mounts []vm.Mount
	daemons := make([]*vm.Daemon, len(shares))
	for i, s := range shares {
		socket := filepath.Join(makeDir(t, "uvfs-e2e-sock-", 0o700, s.user), "vhost.sock")
		d := &vm.Daemon{
			Path:       bin,
			Args:       append(append([]string{"--socket-path=" + socket, "--shared-dir=" + s.dir}, seccompArgs()...), s.flags...),
			Socket:     socket,
			Credential: s.user.Credential(),
		}
		if s.launcher != "" {
			d.Path, d.Args = s.launcher, append([]string{bin}, d.Args...)
		}
		if err := d.Start(); err != nil {
			t.Fatalf("share %s: %v", s.tag, err)
		}
		t.Cleanup(func() { d.Stop(5 * time.Second) })
		daemons[i] = d
		devs = append(devs, vm.FSDevice{Socket: socket, Tag: s.tag})
		mounts = append(mounts, vm.Mount{Tag: s.tag, Dir: "/mnt/" + s.tag})
	}
	rd := vm.Initramfs{Kernel: g.kernel, Helper: g.helper, Mounts: mounts, Dir: "/", Script: script, Env: env, Files: extra.files}
	initrd := filepath.Join(work, "initrd")
	if err := rd.BuildFile(initrd); err != nil {
		t.Fatal(err)
	}
	if extra.timeout == 0 {
		extra.timeout = 5 * time.Minute
	}
	machine := vm.VM{QEMU: g.qemu, Kernel: g.bootKernel, Initrd: initrd, FS: devs,
		ConsoleLog: filepath.Join(work, "console.log"), Timeout: extra.timeout}
	res, err := machine.Run(context.Background())
	logDaemons := func() {
		for i, d := range daemons {
			t.Logf("daemon for share %s (%v):\n%s", shares[i].tag, shares[i].flags, d.Output())
		}
	}
	if err != nil {
		logDaemons()
		t.Fatalf("guest run failed: %v", err)
	}
	t.Logf("guest boot + script took %v with %d shares on %s", res.Duration.Round(time.Millisecond), len(shares), g.stack)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("guest script output:\n%s", strings.Join(res.Output, "\n"))
			logDaemons()
		}
	})
	for i, d := range daemons {
		if err := d.Wait(20 * time.Second); err != nil {
			t.Errorf("daemon for share %s did not exit cleanly after the guest powered off: %v", shares[i].tag, err)
		}
		checkNoSeccompDenials(t, d.Output())
	}
	for _, l := range res.Output {
		if strings.HasPrefix(l, "FAIL:") {
			t.Errorf("guest: %s", l)
		}
	}
	if res.ExitStatus != 0 {
		t.Errorf("guest script exited with status %d", res.ExitStatus)
	}
	return res
}

// guestFields returns, for each output line starting with key, its
// remaining whitespace-separated fields, indexed by the first of them.
func guestFields(res *vm.Result, key string) map[string][]string {
	out := map[string][]string{}
	for _, l := range res.Output {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == key {
			out[f[1]] = f[2:]
		}
	}
	return out
}

// subIDRange returns u's first range in an /etc/subuid-style file.
func subIDRange(t *testing.T, file string, u testUser) (start, count uint32) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(parts) != 3 || !u.OwnsSubIDLine(sc.Text()) {
			continue
		}
		s, err1 := strconv.ParseUint(parts[1], 10, 32)
		c, err2 := strconv.ParseUint(parts[2], 10, 32)
		if err1 == nil && err2 == nil && c >= 1000 {
			return uint32(s), uint32(c)
		}
	}
	t.Fatalf("%s has no range of at least 1000 ids for %s", file, u.Name)
	return 0, 0
}

func ownerOf(t *testing.T, path string) (uid, gid uint32) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		t.Errorf("host %s: %v", path, err)
		return ^uint32(0), ^uint32(0)
	}
	return st.Uid, st.Gid
}

// TestWorkoutUvfsdUnprivilegedNoSubIDs runs the workout as a user with no
// /etc/subuid range and default flags: uvfsd maps only the user's own id
// and must still pass (files of every guest user belong to that user).
func TestWorkoutUvfsdUnprivilegedNoSubIDs(t *testing.T) {
	requireGuestTools(t)
	requireRoot(t, "the test account without sub-ids is created by root")
	runWorkout(t, uvfsdSpec(t, e2eUser(t, userWithoutSubIDs)))
}

// ownershipScript creates files as guest root and as guest uid/gid 1000 in
// every share's pub/ (mode 0777) and prints the owners the guest sees:
// "OWNER TAG/FILE UID:GID".
const ownershipScript = `
for tag in $SHARES; do
	d=/mnt/$tag
	echo root > $d/pub/by-root || echo "FAIL: $tag: guest root cannot create a file"
	mkdir $d/pub/dir-root || echo "FAIL: $tag: guest root cannot create a directory"
	/bin/uvfs-helper runas 1000 1000 - -- /bin/sh -c "echo u1000 > $d/pub/by-1000 && mkdir $d/pub/dir-1000" ||
		echo "FAIL: $tag: guest uid 1000 cannot create a file and a directory"
	for f in hostfile pub/by-root pub/dir-root pub/by-1000 pub/dir-1000; do
		echo "OWNER $tag/$f $(stat -c %u:%g $d/$f)"
	done
done
`

// ownershipShare prepares a share for ownershipScript, owned by u: a
// hostfile and a pub/ directory everyone may write.
func ownershipShare(t *testing.T, tag string, u testUser, flags ...string) servedShare {
	t.Helper()
	dir := makeDir(t, "uvfs-e2e-own-", 0o755, u)
	if err := os.WriteFile(filepath.Join(dir, "hostfile"), []byte("host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	u.chown(t, filepath.Join(dir, "hostfile"))
	pub := filepath.Join(dir, "pub")
	if err := os.Mkdir(pub, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(pub, 0o777); err != nil { // past the umask
		t.Fatal(err)
	}
	u.chown(t, pub)
	return servedShare{tag: tag, dir: dir, user: u, flags: flags}
}

// TestOwnershipRootless boots one guest with four shares, each served by
// an unprivileged uvfsd with different id flags, creates files as guest
// root and guest uid 1000, and checks who owns them on the host and what
// the guest sees.
func TestOwnershipRootless(t *testing.T) { testOwnershipRootless(t, stackBaseline) }

// TestOwnershipRootlessQEMU10 is TestOwnershipRootless on QEMU 10 with a
// Linux 6.12 guest.
func TestOwnershipRootlessQEMU10(t *testing.T) { testOwnershipRootless(t, stackQEMU10) }

func testOwnershipRootless(t *testing.T, stack guestStack) {
	requireStack(t, stack)
	requireRoot(t, "the daemons run as the test accounts")
	with := e2eUser(t, userWithSubIDs)
	without := e2eUser(t, userWithoutSubIDs)
	subUID, nUID := subIDRange(t, "/etc/subuid", with)
	subGID, nGID := subIDRange(t, "/etc/subgid", with)

	share := func(tag string, u testUser, flags ...string) servedShare {
		return ownershipShare(t, tag, u, flags...)
	}
	shares := []servedShare{
		share("home", with, "--profile=home"),
		share("home1000", with, "--profile=home", "--home-uid=1000", "--home-gid=1000"),
		share("maps", with,
			fmt.Sprintf("--uid-map=:0:%d:1:", with.UID), fmt.Sprintf("--uid-map=:1:%d:%d:", subUID, nUID),
			fmt.Sprintf("--gid-map=:0:%d:1:", with.GID), fmt.Sprintf("--gid-map=:1:%d:%d:", subGID, nGID)),
		share("nosub", without),
	}
	var tags []string
	for _, s := range shares {
		tags = append(tags, s.tag)
	}
	res := bootUvfsdSharesOn(t, stack, shares, ownershipScript, []string{"SHARES=" + strings.Join(tags, " ")})

	ids := func(u, g uint32) string { return fmt.Sprintf("%d:%d", u, g) }
	invoking := ids(with.UID, with.GID)
	type want struct{ host, guest string }
	expect := map[string]map[string]want{
		// Every guest id creates as the invoking user, who appears
		// with the host numbers in the guest.
		"home": {
			"hostfile": {invoking, invoking}, "pub/by-root": {invoking, invoking}, "pub/dir-root": {invoking, invoking},
			"pub/by-1000": {invoking, invoking}, "pub/dir-1000": {invoking, invoking},
		},
		// Same on the host; the guest sees the invoking user as 1000.
		"home1000": {
			"hostfile": {invoking, "1000:1000"}, "pub/by-root": {invoking, "1000:1000"}, "pub/dir-root": {invoking, "1000:1000"},
			"pub/by-1000": {invoking, "1000:1000"}, "pub/dir-1000": {invoking, "1000:1000"},
		},
		// Podman layout: guest 0 is the invoking user, guest N the
		// Nth subordinate id.
		"maps": {
			"hostfile": {invoking, "0:0"}, "pub/by-root": {invoking, "0:0"}, "pub/dir-root": {invoking, "0:0"},
			"pub/by-1000": {ids(subUID+999, subGID+999), "1000:1000"}, "pub/dir-1000": {ids(subUID+999, subGID+999), "1000:1000"},
		},
		// Only the own id is mapped: guest 1000 falls back to it (no
		// EINVAL), and it is ns 0, so the guest sees 0.
		"nosub": {
			"hostfile": {ids(without.UID, without.GID), "0:0"}, "pub/by-root": {ids(without.UID, without.GID), "0:0"},
			"pub/dir-root": {ids(without.UID, without.GID), "0:0"},
			"pub/by-1000":  {ids(without.UID, without.GID), "0:0"}, "pub/dir-1000": {ids(without.UID, without.GID), "0:0"},
		},
	}
	seen := guestFields(res, "OWNER")
	for _, s := range shares {
		for file, w := range expect[s.tag] {
			if got := ids(ownerOf(t, filepath.Join(s.dir, file))); got != w.host {
				t.Errorf("%s (uvfsd %v): host owner of %s is %s, want %s", s.tag, s.flags, file, got, w.host)
			}
			if got := strings.Join(seen[s.tag+"/"+file], " "); got != w.guest {
				t.Errorf("%s (uvfsd %v): guest sees %s owned by %q, want %s", s.tag, s.flags, file, got, w.guest)
			}
		}
	}
}

// launcherEnv prepares what the unprivileged user needs to run
// scripts/uvfs-vm: a fresh home, a Go module cache (copied offline from
// root's) and a build cache it can write (see userGoCache).
func launcherEnv(t *testing.T, u testUser) (home, runDir string, env []string) {
	t.Helper()
	home = makeDir(t, "uvfs-e2e-home-", 0o755, u)
	tools := makeDir(t, "uvfs-e2e-gotools-", 0o755, u)
	goBin := "/usr/local/go/bin/go"
	if p, err := exec.LookPath("go"); err == nil {
		goBin = p
	}
	goEnv := func(name string) string {
		out, err := exec.Command(goBin, "env", name).Output()
		if err != nil {
			t.Fatalf("go env %s: %v", name, err)
		}
		return strings.TrimSpace(string(out))
	}
	modCache := filepath.Join(tools, "gopath", "pkg", "mod")
	dl := exec.Command(goBin, "mod", "download")
	dl.Dir = ".."
	dl.Env = append(os.Environ(), "GOMODCACHE="+modCache, "GOFLAGS=-modcacherw",
		"GOPROXY=file://"+filepath.Join(goEnv("GOMODCACHE"), "cache", "download")+","+goEnv("GOPROXY"))
	if out, err := dl.CombinedOutput(); err != nil {
		t.Fatalf("fill a module cache for %s: %v\n%s", u.Name, err, out)
	}
	for _, d := range []string{"xdg-cache", "run"} {
		if err := os.Mkdir(filepath.Join(tools, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if !u.Current {
		err := filepath.Walk(tools, func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, int(u.UID), int(u.GID))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	runDir = filepath.Join(tools, "run")
	env = []string{
		"HOME=" + home, "USER=" + u.Name, "LOGNAME=" + u.Name,
		"PATH=" + filepath.Dir(goBin) + ":/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
		"GOPATH=" + filepath.Join(tools, "gopath"), "GOMODCACHE=" + modCache,
		"GOCACHE=" + userGoCache(t, u), "GOPROXY=off", "GOTOOLCHAIN=local",
		"XDG_CACHE_HOME=" + filepath.Join(tools, "xdg-cache"),
		"XDG_RUNTIME_DIR=" + runDir,
	}
	return home, runDir, env
}

// userGoCache returns a Go build cache for u that outlives the test run:
// uvfs-vm compiles uvfsd, the launcher and the helper, which takes minutes
// with an empty cache on a slow machine and seconds with a warm one. Go's
// cache is content-addressed and safe for concurrent use, so reuse is
// safe; a directory not owned by u alone is not trusted, and a fresh one
// is used instead.
func userGoCache(t *testing.T, u testUser) string {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "uvfs-e2e-gocache-"+u.Name)
	if err := os.Mkdir(dir, 0o700); err == nil {
		u.chown(t, dir)
	} else if !errors.Is(err, os.ErrExist) {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(dir, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFDIR || st.Uid != u.UID || st.Mode&0o077 != 0 {
		t.Logf("not reusing Go build cache %s (not a private directory of %s): starting cold", dir, u.Name)
		return makeDir(t, "uvfs-e2e-gocache-", 0o700, u)
	}
	return dir
}

// uvfsVMRunner prepares a fresh home for u and returns a function that
// runs scripts/uvfs-vm there as u with the given arguments (flags, "--",
// the command), through the command prefix wrap (e.g. the nouserns
// launcher) when it is given, and returns what it printed and its exit
// status.
func uvfsVMRunner(t *testing.T, u testUser, wrap ...string) (home, runDir string, run func(args ...string) (stdout, stderr string, code int)) {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("..", "scripts", "uvfs-vm"))
	if err != nil {
		t.Fatal(err)
	}
	home, runDir, env := launcherEnv(t, u)
	kernel := requireGuestTools(t).kernel.Path // the baseline's, not whatever uvfs-vm would pick
	run = func(args ...string) (stdout, stderr string, code int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
		defer cancel()
		argv := append(append(append([]string{}, wrap...), script, "--timeout=5m", "--mem=512", "--kernel="+kernel), args...)
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Dir, cmd.Env = home, env
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.Credential(), Setpgid: true}
		// On timeout kill the whole group: the script, the launcher, QEMU and uvfsd.
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		start := time.Now()
		err := cmd.Run()
		t.Logf("%s uvfs-vm %s: %v in %v", strings.Join(wrap, " "), strings.Join(args, " "), err, time.Since(start).Round(time.Millisecond))
		if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() < 0 {
			t.Fatalf("uvfs-vm did not exit: %v\nstderr:\n%s", err, errOut.String())
		}
		return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
	}
	return home, runDir, run
}

// checkLauncherIDTouch runs "id; touch ~/x" through uvfs-vm and checks that
// it ran as u in the guest and that ~/x belongs to u on the host.
func checkLauncherIDTouch(t *testing.T, u testUser, home string, run func(args ...string) (string, string, int)) (stderr string) {
	t.Helper()
	stdout, stderr, code := run("--", "sh", "-c", "id; touch ~/x")
	if code != 0 {
		t.Fatalf("uvfs-vm -- sh -c 'id; touch ~/x' exited %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	wantID := fmt.Sprintf("uid=%d(%s) gid=%d(", u.UID, u.Name, u.GID)
	if !strings.HasPrefix(stdout, wantID) {
		t.Errorf("guest id printed %q, want it to start with %q", stdout, wantID)
	}
	if uid, gid := ownerOf(t, filepath.Join(home, "x")); uid != u.UID || gid != u.GID {
		t.Errorf("host ~/x owned by %d:%d, want %s %d:%d", uid, gid, u.Name, u.UID, u.GID)
	}
	return stderr
}

// TestLauncherUnprivileged runs scripts/uvfs-vm as the unprivileged user:
// the command runs in the guest as that user, in its home, its file lands
// on the host owned by the user, and the exit status comes back.
func TestLauncherUnprivileged(t *testing.T) {
	requireGuestTools(t)
	buildUvfsd(t) // skips (outside CI) while cmd/uvfsd has no main package
	u := e2eUser(t, userWithSubIDs)
	home, runDir, runLauncher := uvfsVMRunner(t, u)
	checkLauncherIDTouch(t, u, home, runLauncher)

	if _, stderr, code := runLauncher("--", "sh", "-c", "exit 7"); code != 7 {
		t.Errorf("uvfs-vm -- sh -c 'exit 7' exited %d, want 7\nstderr:\n%s", code, stderr)
	}
	if left, _ := filepath.Glob(filepath.Join(runDir, "uvfs-vm-*")); len(left) != 0 {
		t.Errorf("run directories left behind: %v", left)
	}
}
