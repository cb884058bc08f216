package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/scripts/vm"
)

// runUvfsdFailing runs the uvfsd binary as u, expects it to fail within
// 20 s, and returns its stderr.
func runUvfsdFailing(t *testing.T, bin string, u testUser, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.Credential()}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() <= 0 {
		t.Fatalf("uvfsd %s as %s: want a failure exit status, got %v\nstderr:\n%s", strings.Join(args, " "), u.Name, err, stderr.String())
	}
	return stderr.String()
}

// startUvfsdAs starts the uvfsd binary as u on a fresh share and socket
// directory, and returns once its socket exists.
func startUvfsdAs(t *testing.T, bin string, u testUser) (d *vm.Daemon, socket, shared string) {
	t.Helper()
	shared = makeDir(t, "uvfs-e2e-share-", 0o755, u)
	socket = filepath.Join(makeDir(t, "uvfs-e2e-sock-", 0o700, u), "vhost.sock")
	d = &vm.Daemon{Path: bin, Args: []string{"--socket-path=" + socket, "--shared-dir=" + shared},
		Socket: socket, Credential: u.Credential()}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	return d, socket, shared
}

// TestUvfsdErrorMessages runs the uvfsd binary as the unprivileged user
// into each mistake a user can make and checks that stderr says what is
// wrong and what to do. (Disabled user namespaces, a missing or
// non-setuid newuidmap and AppArmor's restriction cannot be injected into
// the binary; userns/checks_test.go covers their messages.)
func TestUvfsdErrorMessages(t *testing.T) {
	bin := buildUvfsd(t)
	u := e2eUser(t, userWithSubIDs)
	sockDir := makeDir(t, "uvfs-e2e-sock-", 0o700, u)
	shared := makeDir(t, "uvfs-e2e-share-", 0o755, u)
	plainFile := filepath.Join(sockDir, "plain")
	if err := os.WriteFile(plainFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	u.chown(t, plainFile)
	socket := filepath.Join(sockDir, "vhost.sock")
	// A directory of root's that the user cannot read, and one below it that
	// the user cannot reach.
	unreadable := makeDir(t, "uvfs-e2e-noread-", 0o700, currentUser(t))
	unreachable := filepath.Join(unreadable, "below")
	if err := os.Mkdir(unreachable, 0o755); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		args []string
		want []string // substrings of stderr
	}{
		{"shared dir missing", []string{"--socket-path=" + socket, "--shared-dir=" + shared + "/nonexistent"},
			[]string{fmt.Sprintf("shared directory %q does not exist", shared+"/nonexistent"), "create it or fix --shared-dir"}},
		{"shared dir not a directory", []string{"--socket-path=" + socket, "--shared-dir=" + plainFile},
			[]string{fmt.Sprintf("shared directory %q is not a directory", plainFile), "--shared-dir takes a directory"}},
		{"socket path is a file", []string{"--socket-path=" + plainFile, "--shared-dir=" + shared},
			[]string{"socket path " + plainFile + " exists and is not a socket", "remove it or choose another --socket-path"}},
		{"socket directory missing", []string{"--socket-path=" + sockDir + "/missing/vhost.sock", "--shared-dir=" + shared},
			[]string{"creating vhost-user socket " + sockDir + "/missing/vhost.sock", "check that the directory exists and is writable"}},
		{"shared dir unreadable", []string{"--socket-path=" + socket, "--shared-dir=" + unreadable},
			[]string{fmt.Sprintf("shared directory %q cannot be read by uid %d", unreadable, u.UID), "chmod u+rx " + unreadable}},
		{"shared dir unreadable, no namespace", []string{"--socket-path=" + socket, "--shared-dir=" + unreadable, "--sandbox=none"},
			[]string{fmt.Sprintf("shared directory %q cannot be read by uid %d", unreadable, u.UID), "chmod u+rx " + unreadable}},
		{"shared dir unreachable", []string{"--socket-path=" + socket, "--shared-dir=" + unreachable},
			[]string{fmt.Sprintf("shared directory %q: a directory on its path cannot be searched by uid %d", unreachable, u.UID), "chmod u+x"}},
		{"uid map without own id", []string{"--socket-path=" + socket, "--shared-dir=" + shared, "--uid-map=:0:100000:65536:"},
			[]string{fmt.Sprintf("--uid-map must map your own uid %d to 0", u.UID), "--uid-map=:0:"}},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			stderr := runUvfsdFailing(t, bin, u, c.args...)
			t.Logf("stderr: %s", stderr)
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine ") {
				t.Errorf("uvfsd crashed instead of explaining:\n%s", stderr)
			}
			if _, err := os.Lstat(socket); err == nil {
				t.Errorf("uvfsd left %s behind", socket)
			}
		})
	}
}

// TestUvfsdSocketInUse starts uvfsd on a socket that another process
// listens on: uvfsd must refuse with a message and leave the socket to
// its owner.
func TestUvfsdSocketInUse(t *testing.T) {
	bin := buildUvfsd(t)
	u := e2eUser(t, userWithSubIDs)
	shared := makeDir(t, "uvfs-e2e-share-", 0o755, u)
	sockDir := makeDir(t, "uvfs-e2e-sock-", 0o755, u)
	socket := filepath.Join(sockDir, "vhost.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: socket, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := os.Chmod(socket, 0o777); err != nil { // let the test user connect
		t.Fatal(err)
	}
	var before syscall.Stat_t
	if err := syscall.Lstat(socket, &before); err != nil {
		t.Fatal(err)
	}

	stderr := runUvfsdFailing(t, bin, u, "--socket-path="+socket, "--shared-dir="+shared)
	t.Logf("stderr: %s", stderr)
	if want := "socket " + socket + " is in use by a running daemon; stop it or choose another --socket-path"; !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr)
	}
	var after syscall.Stat_t
	if err := syscall.Lstat(socket, &after); err != nil || after.Ino != before.Ino {
		t.Fatalf("uvfsd removed or replaced the live socket (err %v)", err)
	}
	// The owner still gets its connections: uvfsd's probe is queued
	// first, then a new client.
	l.SetDeadline(time.Now().Add(5 * time.Second))
	for i := range 2 {
		if i == 1 {
			c, err := net.Dial("unix", socket)
			if err != nil {
				t.Fatalf("dial the live socket after uvfsd gave up: %v", err)
			}
			defer c.Close()
		}
		c, err := l.Accept()
		if err != nil {
			t.Fatalf("the live listener stopped accepting: %v", err)
		}
		c.Close()
	}
}

// TestUvfsdSecondInstanceLeavesFirstAlone starts uvfsd twice on one
// socket path: the second must refuse, and the first must keep running
// with its socket in place.
func TestUvfsdSecondInstanceLeavesFirstAlone(t *testing.T) {
	bin := buildUvfsd(t)
	u := e2eUser(t, userWithSubIDs)
	first, socket, shared := startUvfsdAs(t, bin, u)
	defer first.Stop(5 * time.Second)

	stderr := runUvfsdFailing(t, bin, u, "--socket-path="+socket, "--shared-dir="+shared)
	// The first daemon's locked pid file stops the second before it touches the socket.
	for _, want := range []string{"socket " + socket + " is in use: the daemon with pid ", "holds " + socket + ".pid; stop it or choose another --socket-path"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("second uvfsd: stderr lacks %q:\n%s", want, stderr)
		}
	}
	if err := first.Wait(time.Second); !errors.Is(err, vm.ErrDaemonRunning) {
		t.Fatalf("the first uvfsd exited when a second one probed its socket (%v); its output:\n%s", err, first.Output())
	}
	for _, f := range []string{socket, socket + ".pid"} {
		if _, err := os.Lstat(f); err != nil {
			t.Errorf("the first uvfsd's %s is gone after the second one tried: %v", f, err)
		}
	}
}

// TestUvfsdNoSubIDsNote starts uvfsd as the user without /etc/subuid
// ranges: it must work, and say once how to get more ids mapped.
func TestUvfsdNoSubIDsNote(t *testing.T) {
	requireRoot(t, "the test account without sub-ids is created by root")
	bin := buildUvfsd(t)
	u := e2eUser(t, userWithoutSubIDs)
	d, _, _ := startUvfsdAs(t, bin, u)
	// The note comes once the namespace works (a fallback would make it
	// moot), which can be after the socket appeared.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(d.Output(), "usermod") && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	d.Stop(5 * time.Second)
	out := d.Output()
	t.Logf("output:\n%s", out)
	note := fmt.Sprintf("no subordinate ids for %s in /etc/subuid and /etc/subgid", u.Name)
	if n := strings.Count(out, note); n != 1 {
		t.Errorf("the note %q appears %d times, want once", note, n)
	}
	if want := "usermod --add-subuids 100000-165535 --add-subgids 100000-165535 " + u.Name; !strings.Contains(out, want) {
		t.Errorf("output lacks the fix %q", want)
	}
}
