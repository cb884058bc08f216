package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/e2e/guest"
	"github.com/uvfsd/uvfsd/scripts/vm"
)

// TestVngUvfsd boots the host's kernel with the real virtme-ng 1.35 (vng)
// as an unprivileged user, with uvfsd as the first virtiofsd on PATH: vng
// shares the host's / through it, the guest reads a host file and writes
// one in the user's home.
func TestVngUvfsd(t *testing.T) { runVng(t, uvfsdClient(t)) }

// TestVngRustVirtiofsd runs the same with the Rust virtiofsd 1.13.2, the
// daemon vng was written for: it proves the harness.
func TestVngRustVirtiofsd(t *testing.T) { runVng(t, rustVirtiofsdClient(t)) }

// TestVngStartUvfsdWithoutSyslog starts uvfsd as vng does on a machine
// that runs no syslog daemon (CI, most containers): vng passes --syslog and
// gives the daemon about 3 s to write SOCKET.pid, else it falls back to 9p.
func TestVngStartUvfsdWithoutSyslog(t *testing.T) { runVngStartWithoutSyslog(t, uvfsdClient(t)) }

// TestVngStartRustVirtiofsdWithoutSyslog: the Rust virtiofsd starts and
// logs nothing.
func TestVngStartRustVirtiofsdWithoutSyslog(t *testing.T) {
	runVngStartWithoutSyslog(t, rustVirtiofsdClient(t))
}

// TestVngShareIDsUvfsd serves / with vng's command line (without
// --syslog) as the test user and checks that the guest sees host ids
// unchanged, as from the Rust virtiofsd: vng's guest boots from the host's
// own /, whose set-user-id root programs (mount, su) must stay so.
func TestVngShareIDsUvfsd(t *testing.T) { runVngShareIDs(t, uvfsdClient(t)) }

// TestVngShareIDsRustVirtiofsd: the same with the Rust virtiofsd.
func TestVngShareIDsRustVirtiofsd(t *testing.T) { runVngShareIDs(t, rustVirtiofsdClient(t)) }

// vngGuestScript runs in the guest as root (vng's default for a command),
// from the host's file system: $1 is the user's home, $2 a file only host
// root can read.
const vngGuestScript = `echo "VNG-ROOTFS $(awk '$2 == "/" {print $1, $3; exit}' /proc/mounts)"
cat "$1/in.txt" > "$1/out.txt" && echo VNG-WROTE
if cat "$2" > /dev/null 2>&1; then echo VNG-SECRET-READ; else echo VNG-SECRET-DENIED; fi
`

// vngInteractiveShell is what bash prints when virtme-init, unable to run
// the command, starts a shell on the console.
const vngInteractiveShell = "bash: no job control in this shell"

// vngDaemonArgs is how vng 1.35 starts virtiofsd (virtme/commands/run.py,
// VirtioFS.start), the socket path left out.
var vngDaemonArgs = []string{"--syslog", "--no-announce-submounts", "--socket-path", "", "--shared-dir", "/", "--sandbox", "none"}

func runVng(t *testing.T, d clientDaemon) {
	requireRoot(t, "vng runs as the test account, and the test reads the daemon's syslog on /dev/log")
	vng := unpackedDir(t, "UVFS_E2E_VNG", "virtme-ng", "usr/bin/vng")
	for _, tool := range []string{"qemu-system-x86_64", "script", "setpriv", "unshare", "busybox"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing(t, "vng needs %s: %v", tool, err)
		}
	}
	// vng runs with /usr/bin/python3 (its #! line).
	if out, err := exec.Command("/usr/bin/python3", "-c", "import argcomplete, requests, pkg_resources").CombinedOutput(); err != nil {
		missing(t, "vng's Python modules are missing (apt-get install python3-argcomplete python3-requests python3-pkg-resources): %v\n%s", err, out)
	}
	k, err := vm.FindKernel(os.Getenv("UVFS_E2E_KERNEL"))
	if err != nil {
		missing(t, "%v", err)
	}
	if k.ModulesDir == "" {
		missing(t, "no /lib/modules tree for kernel %s (apt-get install linux-image-amd64)", k.Path)
	}
	u := e2eUser(t, userWithSubIDs)

	token := make([]byte, 8)
	rand.Read(token)
	want := "from the host " + hex.EncodeToString(token) + "\n"
	home := makeDir(t, "uvfs-e2e-vng-home-", 0o755, u)
	for name, data := range map[string]string{"in.txt": want, "guest.sh": vngGuestScript} {
		p := filepath.Join(home, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		u.chown(t, p)
	}
	// Files the user cannot read stay unreadable to guest root.
	secret := filepath.Join(makeDir(t, "uvfs-e2e-vng-secret-", 0o755, currentUser(t)), "secret")
	if err := os.WriteFile(secret, []byte("host root only\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	w := writeWrapper(t, d, u)
	logs := captureSyslog(t)
	guestCmd := vm.ShellJoin([]string{"sh", filepath.Join(home, "guest.sh"), home, secret})
	vngLine := vm.ShellJoin([]string{"vng", "--run", k.Path, "--disable-kvm", "--rw", "--verbose", "--", guestCmd})
	// vng wants a terminal: script(1) gives it a pseudo-terminal.
	argv, cred := logs.command(u, "script", "-qec", vngLine, "/dev/null")

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = home
	cmd.Env = []string{
		"HOME=" + home, "USER=" + u.Name, "LOGNAME=" + u.Name, "SHELL=/bin/sh", "TERM=dumb",
		"PATH=" + filepath.Dir(w.path) + ":" + filepath.Join(vng, "usr/bin") + ":/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
		"PYTHONPATH=" + filepath.Join(vng, "usr/lib/python3/dist-packages"),
	}
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 10 * time.Second // an orphan may hold the output pipe
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// script runs vng in a session of its own, where QEMU and the daemon
	// that vng starts in the background stay.
	session := watchSession(cmd.Process.Pid)
	t.Cleanup(func() { session.kill() })
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	// vng normally takes under two minutes here. A guest whose init
	// fails does not run the command but starts an interactive shell that
	// waits for input forever: stop then.
	const vngTimeout = 6 * time.Minute
	timeout := time.After(vngTimeout)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var stopped string
	for done := false; !done; {
		select {
		case err = <-waited:
			done = true
		case <-tick.C:
			if strings.Contains(out.String(), vngInteractiveShell) {
				stopped = "vng's guest started an interactive shell instead of running the command (its init failed)"
			}
		case <-timeout:
			stopped = fmt.Sprintf("vng did not finish within %v", vngTimeout)
		}
		if stopped != "" && !done {
			session.kill()
			cmd.Process.Kill()
			err = <-waited
			done = true
		}
	}
	session.stop()
	output := strings.ReplaceAll(out.String(), "\r", "")
	t.Logf("vng with %s: %v in %v", d.name, err, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("vng output:\n%s", output)
			t.Logf("syslog:\n%s", joinMessages(logs.Messages()))
		}
	})
	if stopped != "" {
		t.Fatal(stopped)
	}
	if err != nil {
		t.Errorf("vng exited with %v, want status 0", err)
	}

	lines := strings.Split(output, "\n")
	if strings.Contains(output, "fallback to 9p") {
		t.Errorf("vng fell back to 9p: %s did not start as vng wants", d.name)
	}
	// "ROOTFS virtiofs" is vng's virtio-fs share; it mounts 9p as /dev/root.
	if !slices.Contains(lines, "VNG-ROOTFS ROOTFS virtiofs") {
		t.Errorf("the guest's / is not vng's virtio-fs share (want a line %q)", "VNG-ROOTFS ROOTFS virtiofs")
	}
	if !slices.Contains(lines, "VNG-SECRET-DENIED") {
		t.Errorf("guest root read %s, a file only host root can read (want %q)", secret, "VNG-SECRET-DENIED")
	}
	got, err := os.ReadFile(filepath.Join(home, "out.txt"))
	if err != nil || string(got) != want {
		t.Errorf("the file the guest wrote: %q, %v; want %q", got, err, want)
	} else if uid, gid := ownerOf(t, filepath.Join(home, "out.txt")); uid != u.UID || gid != u.GID {
		t.Errorf("the file the guest wrote belongs to %d:%d on the host, want %s %d:%d", uid, gid, u.Name, u.UID, u.GID)
	}

	starts := w.starts(t)
	if len(starts) != 1 {
		t.Fatalf("vng started the daemon %d times, want once: %v", len(starts), starts)
	}
	socket, _ := argValue(starts[0].args, "--socket-path")
	wantArgs := slices.Clone(vngDaemonArgs)
	wantArgs[3] = socket
	if !slices.Equal(starts[0].args, wantArgs) {
		t.Errorf("vng ran the daemon as %q, want %q", starts[0].args, wantArgs)
	}
	if err := waitExited(starts[0].pid, 30*time.Second); err != nil {
		t.Errorf("%s (pid %d) did not exit after vng: %v", d.name, starts[0].pid, err)
	}
	// The daemon's messages: from its pid, or from a process it
	// started (uvfsd re-executes itself into a user namespace).
	pids := session.seen()
	var daemonLog []string
	for _, m := range logs.Messages() {
		if m.PID == starts[0].pid || pids[m.PID] {
			daemonLog = append(daemonLog, m.Text)
		}
	}
	t.Logf("%s's syslog:\n%s", d.name, strings.Join(daemonLog, "\n"))
	checkServedLog(t, d, daemonLog, "/", socket)
	if left := session.kill(); len(left) > 0 {
		t.Errorf("processes of vng's session still ran after it exited: %v", left)
	}
}

func joinMessages(msgs []guest.SyslogMessage) string {
	var b strings.Builder
	for _, m := range msgs {
		fmt.Fprintln(&b, m)
	}
	return b.String()
}

// syslogCapture receives what daemons started with --syslog log. They send
// it to /dev/log. On a machine with no syslog daemon (CI) the test listens
// there itself (other processes' messages arrive too: the test picks the
// daemon's by pid); where a syslog daemon owns /dev/log the test listens on
// a socket of its own and runs the client in a private mount namespace with
// that socket bound on /dev/log.
type syslogCapture struct {
	*guest.Syslog
	bindFrom string // the socket to bind on /dev/log, or ""
}

func captureSyslog(t *testing.T) syslogCapture {
	t.Helper()
	path := "/dev/log"
	bind := ""
	if _, err := os.Lstat(path); err == nil && !staleSocket(path) {
		path = filepath.Join(makeDir(t, "uvfs-e2e-syslog-", 0o755, currentUser(t)), "log")
		bind = path
	}
	if bind == "" {
		os.Remove(path) // left by a run that died before its cleanup
	}
	s, err := guest.ListenSyslog(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return syslogCapture{Syslog: s, bindFrom: bind}
}

// command returns the command line that runs args as u, and the
// credential to start it with.
func (c syslogCapture) command(u testUser, args ...string) ([]string, *syscall.Credential) {
	return asUserWithDevLog(u, c.bindFrom, args...)
}

// asUserWithDevLog returns the command line that runs args as u with
// devLog bound on /dev/log in a private mount namespace (none when devLog
// is ""), and the credential to start it with.
func asUserWithDevLog(u testUser, devLog string, args ...string) ([]string, *syscall.Credential) {
	if devLog == "" {
		return args, u.Credential()
	}
	shell := `from=$1 uid=$2 gid=$3; shift 3
mount --bind "$from" /dev/log && exec setpriv --reuid="$uid" --regid="$gid" --groups="$gid" -- "$@"`
	return append([]string{"unshare", "--mount", "--propagation", "private", "--", "sh", "-c", shell, "sh",
		devLog, strconv.Itoa(int(u.UID)), strconv.Itoa(int(u.GID))}, args...), nil
}

// staleSocket reports whether path is a datagram socket that nobody
// receives on.
func staleSocket(path string) bool {
	c, err := net.Dial("unixgram", path)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// runVngStartWithoutSyslog runs d with vng's command line as the test user
// where /dev/log takes no messages (absent, or /dev/null bound on it), and
// waits for SOCKET.pid the way vng 1.35 does: checks 0.1, 0.3, 0.7, 1.5 and
// 3.1 s after the start. Then it stops the daemon as vng does, with
// SIGTERM to the pid in that file.
func runVngStartWithoutSyslog(t *testing.T, d clientDaemon) {
	requireRoot(t, "the daemon runs as the test account, with no syslog in a private mount namespace")
	u := e2eUser(t, userWithSubIDs)
	w := writeWrapper(t, d, u)
	socket := filepath.Join(makeDir(t, "uvfs-e2e-vng-start-", 0o755, u), "virtme-socket")
	args := slices.Clone(vngDaemonArgs)
	args[3] = socket
	devLog := ""
	if _, err := os.Lstat("/dev/log"); err == nil {
		devLog = "/dev/null"
	}
	argv, cred := asUserWithDevLog(u, devLog, append([]string{w.path}, args...)...)
	cmd := exec.Command(argv[0], argv[1:]...)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })

	pidFile := socket + ".pid"
	found := false
	for wait := 100 * time.Millisecond; wait <= 1600*time.Millisecond && !found; wait *= 2 {
		time.Sleep(wait)
		_, err := os.Stat(pidFile)
		found = err == nil
	}
	if !found {
		t.Fatalf("%s wrote no %s within vng's 3.1 s (vng then falls back to 9p); it printed:\n%s", d.name, pidFile, out.String())
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err != nil || pid != cmd.Process.Pid {
		t.Errorf("%s holds %q, want the pid vng started, %d", pidFile, data, cmd.Process.Pid)
	}
	select {
	case <-exited:
		t.Fatalf("%s exited after writing its pid file: %v; it printed:\n%s", d.name, cmd.ProcessState, out.String())
	case <-time.After(time.Second):
	}
	if st, err := os.Stat(socket); err != nil || st.Mode().Type() != os.ModeSocket {
		t.Errorf("no socket at %s: %v", socket, err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Errorf("%s did not exit within 10 s of SIGTERM", d.name)
	}
	t.Logf("%s printed:\n%s", d.name, out.String())
}

func runVngShareIDs(t *testing.T, d clientDaemon) {
	requireGuestTools(t)
	requireRoot(t, "the daemon runs as the test account")
	u := e2eUser(t, userWithSubIDs)
	w := writeWrapper(t, d, u)
	home := makeDir(t, "uvfs-e2e-vng-ids-", 0o755, u)
	mine := filepath.Join(home, "mine")
	if err := os.WriteFile(mine, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	u.chown(t, mine)
	paths := []string{"/usr/bin/mount", "/usr/bin/su", "/etc/shadow", mine}
	script := `for p in ` + vm.ShellJoin(paths) + `; do echo "IDS $p $(stat -c '%u:%g %a' /mnt$p)"; done
if cat /mnt/etc/shadow > /dev/null 2>&1; then echo "FAIL: guest root read the host's /etc/shadow"; fi
`
	b := bootWithDaemon(t, daemonSpec{
		path: w.path,
		args: func(socket, _ string) []string {
			args := slices.Clone(vngDaemonArgs[1:]) // no syslog daemon here
			args[2] = socket
			return args
		},
		user: u,
	}, script, nil)
	for _, l := range b.res.Output {
		if strings.HasPrefix(l, "FAIL:") {
			t.Errorf("guest: %s", l)
		}
	}
	seen := guestFields(b.res, "IDS")
	for _, p := range paths {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("%d:%d %o", st.Uid, st.Gid, st.Mode&0o7777)
		if got := strings.Join(seen[p], " "); got != want {
			t.Errorf("%s: the guest sees %q (uid:gid mode), the host %q", p, got, want)
		}
	}
}
