package vm_test

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/scripts/vm"
)

// The test binary doubles as a fake daemon when this variable names a mode.
const fakeDaemonEnv = "GUEST_TEST_FAKE_DAEMON"

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeDaemonEnv); mode != "" {
		os.Exit(fakeDaemon(mode, os.Args[len(os.Args)-1]))
	}
	os.Exit(m.Run())
}

// fakeDaemon behaves like a vhost-user back-end as far as Daemon can see.
func fakeDaemon(mode, socket string) int {
	fmt.Fprintf(os.Stderr, "fake daemon uid=%d mode=%s\n", os.Getuid(), mode)
	switch mode {
	case "fail":
		fmt.Fprintln(os.Stderr, "cannot serve: bad flag")
		return 3
	case "silent":
		time.Sleep(time.Minute)
		return 0
	}
	l, err := net.Listen("unix", socket)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if mode == "hang" {
		time.Sleep(time.Minute)
		return 0
	}
	conn, err := l.Accept()
	if err != nil {
		return 1
	}
	io.Copy(io.Discard, conn) // serve until the front-end hangs up
	fmt.Fprintln(os.Stderr, "front-end disconnected")
	return 0
}

func startFake(t *testing.T, mode string, cred *syscall.Credential, dir, exe string) (*vm.Daemon, error) {
	t.Helper()
	socket := filepath.Join(dir, "d.sock")
	d := &vm.Daemon{
		Path:         exe,
		Args:         []string{socket},
		Env:          []string{fakeDaemonEnv + "=" + mode},
		Socket:       socket,
		Credential:   cred,
		StartTimeout: 2 * time.Second,
	}
	t.Cleanup(func() { d.Stop(time.Second) })
	return d, d.Start()
}

func self(t *testing.T) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func TestDaemonExitsZeroWhenFrontEndLeaves(t *testing.T) {
	dir := t.TempDir()
	d, err := startFake(t, "serve", nil, dir, self(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Wait(100 * time.Millisecond); err == nil {
		t.Fatal("daemon exited before any front-end connected")
	}
	conn, err := net.Dial("unix", filepath.Join(dir, "d.sock"))
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if err := d.Wait(10 * time.Second); err != nil {
		t.Fatalf("want exit status 0, got %v; output:\n%s", err, d.Output())
	}
	if !strings.Contains(d.Output(), "front-end disconnected") {
		t.Errorf("output not captured: %q", d.Output())
	}
}

func TestDaemonStartReportsEarlyExitWithOutput(t *testing.T) {
	_, err := startFake(t, "fail", nil, t.TempDir(), self(t))
	if err == nil || !strings.Contains(err.Error(), "bad flag") || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("want the exit status and output in the error, got %v", err)
	}
}

func TestDaemonStartTimesOutWithoutSocket(t *testing.T) {
	start := time.Now()
	d, err := startFake(t, "silent", nil, t.TempDir(), self(t))
	if err == nil || !strings.Contains(err.Error(), "did not create socket") {
		t.Fatalf("want a socket timeout, got %v", err)
	}
	if time.Since(start) > 8*time.Second {
		t.Errorf("Start took %v with a 2s timeout", time.Since(start))
	}
	if err := d.Wait(time.Second); err == nil {
		t.Error("the silent daemon was not stopped")
	}
}

func TestDaemonStopKillsAHangingDaemon(t *testing.T) {
	d, err := startFake(t, "hang", nil, t.TempDir(), self(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Stop(2 * time.Second); err == nil {
		t.Error("a daemon stopped by a signal must report an error")
	}
	if err := d.Wait(time.Second); err == nil {
		t.Error("daemon still running after Stop")
	}
}

func TestDaemonRunsWithCredential(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching credentials needs root")
	}
	// The test binary and socket directory must be usable by nobody.
	dir, err := os.MkdirTemp("", "guest-daemon-cred-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	exe := filepath.Join(dir, "fake")
	data, err := os.ReadFile(self(t))
	if err == nil {
		err = os.WriteFile(exe, data, 0o755)
	}
	if err == nil {
		err = os.Chmod(dir, 0o777)
	}
	if err != nil {
		t.Fatal(err)
	}
	d, err := startFake(t, "hang", &syscall.Credential{Uid: 65534, Gid: 65534}, dir, exe)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(d.Output(), "uid=65534") {
		t.Errorf("daemon did not run as uid 65534: %q", d.Output())
	}
	st, err := os.Stat(filepath.Join(dir, "d.sock"))
	if err != nil || st.Sys().(*syscall.Stat_t).Uid != 65534 {
		t.Errorf("socket not created by uid 65534 (err %v)", err)
	}
}
