package main

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// lockedByOther reports whether a lock on the file at path conflicts with one taken through a new
// open file description, as another process's flock would.
func lockedByOther(t *testing.T, path string) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if err != nil && !errors.Is(err, unix.EWOULDBLOCK) {
		t.Fatal(err)
	}
	return err != nil
}

// dirNames lists dir, to show that no temporary file is left behind.
func dirNames(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return strings.Join(names, " ")
}

func TestPidFileHoldsThePidLockedUntilRemoved(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.pid")
	p, err := createPidFile(path, 4242)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil || string(data) != "4242\n" {
		t.Fatalf("pid file holds %q (%v), want \"4242\\n\"", data, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("pid file mode %v (%v), want 0600 as virtiofsd's", fi.Mode(), err)
	}
	if !lockedByOther(t, path) {
		t.Error("the pid file is not locked while the daemon runs")
	}
	if got := dirNames(t, dir); got != "s.pid" {
		t.Errorf("directory holds %q, want only s.pid", got)
	}
	p.Remove()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file still there after Remove: %v", err)
	}
	p.Remove() // again: nothing happens
	(*pidFile)(nil).Remove()
}

// A second daemon on the same socket path fails, names the first one's pid, and leaves its file
// alone.
func TestPidFileRefusesASecondDaemon(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.pid")
	first, err := createPidFile(path, 4242)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Remove()
	want := "socket " + filepath.Join(dir, "s") + " is in use: the daemon with pid 4242 holds " + path
	if err := checkPidFile(path); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("checkPidFile: %v, want %q", err, want)
	}
	if second, err := createPidFile(path, 4343); err == nil || !strings.Contains(err.Error(), want) {
		second.Remove()
		t.Errorf("second createPidFile: %v, want %q", err, want)
	}
	if data, _ := os.ReadFile(path); string(data) != "4242\n" || !lockedByOther(t, path) {
		t.Errorf("the first daemon's pid file changed: %q", data)
	}
	if got := dirNames(t, dir); got != "s.pid" {
		t.Errorf("directory holds %q, want only s.pid", got)
	}
}

// The Rust virtiofsd takes the pid file with open(O_CREAT) and flock(LOCK_EX|LOCK_NB): it must
// fail on uvfsd's file too, so that it does not take the socket of a running uvfsd over.
func TestPidFileStopsVirtiofsd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.pid")
	p, err := createPidFile(path, 4242)
	if err != nil {
		t.Fatal(err)
	}
	virtiofsdTakes := func() error {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	}
	if err := virtiofsdTakes(); !errors.Is(err, unix.EWOULDBLOCK) {
		t.Errorf("virtiofsd's flock on uvfsd's pid file: %v, want EWOULDBLOCK", err)
	}
	p.Remove()
	if err := virtiofsdTakes(); err != nil {
		t.Errorf("virtiofsd's flock after uvfsd exited: %v", err)
	}
}

// A file that no daemon holds (left by a killed one, or by virtiofsd, which never removes its
// own) is replaced.
func TestPidFileReplacesAStaleOne(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.pid")
	if err := os.WriteFile(path, []byte("99999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkPidFile(path); err != nil {
		t.Fatalf("checkPidFile of a stale file: %v", err)
	}
	p, err := createPidFile(path, 4242)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Remove()
	if data, _ := os.ReadFile(path); string(data) != "4242\n" {
		t.Errorf("pid file holds %q after replacing a stale one", data)
	}
}

// Remove deletes only the file it made: a file that took its name since (a daemon started after
// someone deleted ours) stays.
func TestPidFileRemoveSparesAnotherFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.pid")
	p, err := createPidFile(path, 4242)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other")
	if err := os.WriteFile(other, []byte("77\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, path); err != nil {
		t.Fatal(err)
	}
	p.Remove()
	if data, err := os.ReadFile(path); err != nil || string(data) != "77\n" {
		t.Errorf("Remove deleted or changed another file: %q, %v", data, err)
	}
}

// listen, as serve calls it: the socket listens before the pid file (holding this process's pid)
// appears; a second daemon on the socket path fails before touching the socket; --fd makes no
// pid file, as in virtiofsd.
func TestListenWritesThePidFile(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "s")
	cfg := &Config{SocketPath: sock, FD: -1}
	f, made, err := listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data, err := os.ReadFile(sock + ".pid")
	if err != nil || string(data) != strconv.Itoa(os.Getpid())+"\n" {
		t.Fatalf("pid file holds %q (%v), want this process's pid", data, err)
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("the socket does not listen once the pid file is there: %v", err)
	}
	c.Close()

	_, _, err = listen(cfg)
	want := "socket " + sock + " is in use: the daemon with pid " + strconv.Itoa(os.Getpid())
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("second listen: %v, want %q", err, want)
	}
	if st, err := os.Stat(sock); err != nil || st.Mode()&os.ModeSocket == 0 {
		t.Errorf("the second daemon touched the first one's socket: %v", err)
	}

	made.Remove()
	if got := dirNames(t, dir); got != "" {
		t.Errorf("left behind: %q", got)
	}
	f.Close()
	f, made, err = listen(cfg)
	if err != nil {
		t.Fatalf("listen after the first daemon ended: %v", err)
	}
	f.Close()
	made.Remove()

	// --fd: a socket the client made; no pid file.
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: sock}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 1); err != nil {
		t.Fatal(err)
	}
	f, made, err = listen(&Config{FD: fd})
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	made.Remove()
	if _, err := os.Stat(sock + ".pid"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("--fd made a pid file: %v", err)
	}
}
