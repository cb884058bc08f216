package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// pidFile is SOCKET.pid, the file beside the socket that holds the daemon's pid, as the Rust
// virtiofsd writes it: clients wait for it to appear (virtme-ng falls back to 9p without it) and
// kill the pid it names. The daemon holds an exclusive flock(2) on it while it runs, so a second
// daemon on the same socket path fails instead of taking the socket over; an exited daemon's
// lock is gone with it, so a file left by a killed one counts as stale.
//
// Two things differ from virtiofsd, which creates the file before the socket and leaves it
// behind: the file appears only once the socket listens and with the pid written (it is made
// under a temporary name and renamed into place), so that whoever sees it can connect at once;
// and the daemon removes it when it exits.
//
// The process that made the socket owns the file: the one the client started, whose pid is the
// one to wait for and to signal, also when the daemon serves from a re-exec'ed child.
type pidFile struct {
	mu       sync.Mutex
	f        *os.File // holds the lock; nil once removed
	dirFD    int      // the directory, so that Remove works after a chroot too
	name     string
	dev, ino uint64
}

// pidFilePath is where the pid file of the socket at socketPath lives.
func pidFilePath(socketPath string) string { return socketPath + ".pid" }

// checkPidFile fails when a running daemon holds the pid file at path (its socket is in use).
// A missing file, or one nobody holds, is no obstacle.
func checkPidFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	defer f.Close()
	err = unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
	switch {
	case errors.Is(err, unix.EWOULDBLOCK):
		return inUseError(path, f)
	case err != nil:
		return fmt.Errorf("pid file %s: checking its lock: %w", path, err)
	}
	return nil // closing f drops the lock
}

// inUseError says which daemon holds the pid file at path (open as f).
func inUseError(path string, f *os.File) error {
	socket := strings.TrimSuffix(path, ".pid")
	var b [32]byte
	n, _ := f.ReadAt(b[:], 0)
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n]))); err == nil && pid > 0 {
		return fmt.Errorf("socket %s is in use: the daemon with pid %d holds %s; stop it or choose another --socket-path", socket, pid, path)
	}
	return fmt.Errorf("socket %s is in use: a running daemon holds %s; stop it or choose another --socket-path", socket, path)
}

// createPidFile writes pid to the file at path and locks it, replacing a stale file. It fails if a
// running daemon holds the file.
func createPidFile(path string, pid int) (*pidFile, error) {
	dir, name := filepath.Dir(path), filepath.Base(path)
	tmp, err := os.CreateTemp(dir, "."+name+".*") // mode 0600, as virtiofsd's
	if err != nil {
		return nil, fmt.Errorf("creating pid file %s: %w", path, err)
	}
	fail := func(err error) (*pidFile, error) {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, err
	}
	// Nobody else knows the new file yet, so this lock is granted at once; it moves with the file.
	if err := unix.Flock(int(tmp.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return fail(fmt.Errorf("locking pid file %s: %w", tmp.Name(), err))
	}
	if _, err := tmp.WriteString(strconv.Itoa(pid) + "\n"); err != nil {
		return fail(fmt.Errorf("writing pid file %s: %w", tmp.Name(), err))
	}
	// Checked again just before the rename: another daemon may have started since checkPidFile.
	if err := checkPidFile(path); err != nil {
		return fail(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(tmp.Fd()), &st); err != nil {
		return fail(fmt.Errorf("pid file %s: %w", tmp.Name(), err))
	}
	dirFD, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail(fmt.Errorf("opening the pid file's directory: %w", err))
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		unix.Close(dirFD)
		return fail(fmt.Errorf("creating pid file %s: %w", path, err))
	}
	return &pidFile{f: tmp, dirFD: dirFD, name: name, dev: st.Dev, ino: st.Ino}, nil
}

// Remove deletes the pid file if its name still holds this daemon's file, and drops the lock. It
// is safe to call more than once, concurrently, and on nil.
func (p *pidFile) Remove() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.f == nil {
		return
	}
	// Unlinked before the lock goes: a daemon starting now either finds no file or ours still
	// locked, never ours unlocked.
	var st unix.Stat_t
	if unix.Fstatat(p.dirFD, p.name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Dev == p.dev && st.Ino == p.ino {
		unix.Unlinkat(p.dirFD, p.name, 0)
	}
	p.f.Close()
	p.f = nil
	unix.Close(p.dirFD)
}
