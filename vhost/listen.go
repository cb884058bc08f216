package vhost

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Listen creates a unix listening socket at path (OpenSocketFile then records it for removal). It
// refuses to touch a socket a live daemon is listening on, replaces a stale socket file left by a
// crashed one, and refuses to delete anything that is not a socket. With a non-empty group the
// socket is chgrp'ed to it and made mode 0660 so members of the group (e.g. the user running
// QEMU) can connect.
//
// path appears only once the socket listens and has its group: it is bound under a temporary name
// in the same directory and renamed into place, so whoever waits for path to appear (a launcher
// script, a test) can connect at once instead of meeting ECONNREFUSED between bind(2) and
// listen(2), or EACCES before the chgrp.
func Listen(path, group string) (*net.UnixListener, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("socket path %s is %d bytes long; a unix socket's path holds at most %d: choose a shorter --socket-path", path, len(path), maxSocketPath)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	bindAt := filepath.Join(filepath.Dir(path), fmt.Sprintf(".uvfsd-%d-%08x.sock", os.Getpid(), rand.Uint32()))
	if len(bindAt) > maxSocketPath {
		bindAt = path // no room for a temporary name: bind in place
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: bindAt, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("creating vhost-user socket %s: %w (check that the directory exists and is writable)", path, err)
	}
	// The daemon removes the path itself (ServeListener), also when the listener was inherited.
	l.SetUnlinkOnClose(false)
	fail := func(err error) (*net.UnixListener, error) {
		l.Close()
		os.Remove(bindAt)
		return nil, err
	}
	if group != "" {
		if err := chgrpSocket(bindAt, group); err != nil {
			return fail(err)
		}
	}
	if bindAt != path {
		err := unix.Renameat2(unix.AT_FDCWD, bindAt, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE)
		if errors.Is(err, unix.EINVAL) { // a file system without RENAME_NOREPLACE
			err = os.Rename(bindAt, path)
		}
		if errors.Is(err, unix.EEXIST) {
			return fail(fmt.Errorf("socket %s appeared while this daemon started; another daemon may use it: stop it or choose another --socket-path", path))
		}
		if err != nil {
			return fail(fmt.Errorf("creating vhost-user socket %s: %w", path, err))
		}
	}
	return l, nil
}

// maxSocketPath is the longest path a unix socket address holds (sun_path without its NUL).
const maxSocketPath = 107

// removeStaleSocket deletes path if it is a socket nobody listens on.
func removeStaleSocket(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking socket path %s: %w", path, err)
	}
	if st.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("socket path %s exists and is not a socket; remove it or choose another --socket-path", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("socket %s is in use by a running daemon; stop it or choose another --socket-path", path)
	}
	if !errors.Is(err, unix.ECONNREFUSED) {
		return fmt.Errorf("socket %s exists and cannot be probed (%w); remove it if no daemon uses it", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("removing stale socket %s: %w", path, err)
	}
	return nil
}

func chgrpSocket(path, group string) error {
	gid, err := strconv.Atoi(group)
	if err != nil {
		g, lerr := user.LookupGroup(group)
		if lerr != nil {
			return fmt.Errorf("socket group %q: %w (give an existing group name or numeric gid)", group, lerr)
		}
		gid, err = strconv.Atoi(g.Gid)
		if err != nil {
			return fmt.Errorf("socket group %q has non-numeric gid %q", group, g.Gid)
		}
	}
	if err := os.Chown(path, -1, gid); err != nil {
		return fmt.Errorf("chgrp %d %s: %w (you must be a member of the group)", gid, path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		return fmt.Errorf("chmod 0660 %s: %w", path, err)
	}
	return nil
}

// SocketFile is a socket's name held through an fd of its directory, so that the daemon removes
// the socket it made, and only that, even after a chroot or pivot_root has given its path another
// meaning (a path inside the share).
type SocketFile struct {
	mu       sync.Mutex
	dirFD    int // -1 once removed
	name     string
	dev, ino uint64
}

// OpenSocketFile records the socket now at path (which must be one) for a later Remove.
func OpenSocketFile(path string) (*SocketFile, error) {
	dirFD, err := unix.Open(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening the socket's directory: %w", err)
	}
	s := &SocketFile{dirFD: dirFD, name: filepath.Base(path)}
	var st unix.Stat_t
	if err := unix.Fstatat(dirFD, s.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		unix.Close(dirFD)
		return nil, fmt.Errorf("socket %s: not found after creating it (%v)", path, err)
	}
	s.dev, s.ino = st.Dev, st.Ino
	return s, nil
}

// Remove unlinks the socket if its name still holds it (not a socket made there since). It is
// safe to call more than once, concurrently, and on nil.
func (s *SocketFile) Remove() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dirFD < 0 {
		return
	}
	var st unix.Stat_t
	if unix.Fstatat(s.dirFD, s.name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Dev == s.dev && st.Ino == s.ino {
		unix.Unlinkat(s.dirFD, s.name, 0)
	}
	unix.Close(s.dirFD)
	s.dirFD = -1
}

// ListenerFromFD wraps an inherited listening unix socket (--fd). The fd is owned by the
// returned listener afterwards.
func ListenerFromFD(fd int) (*net.UnixListener, error) {
	accepting, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	if err != nil {
		return nil, fmt.Errorf("--fd %d is not a socket: %w", fd, err)
	}
	if accepting == 0 {
		return nil, fmt.Errorf("--fd %d is a socket but not listening; pass a bound unix socket after listen(2)", fd)
	}
	l, err := ListenerFromFile(os.NewFile(uintptr(fd), "vhost-user-listener"))
	if err != nil {
		return nil, fmt.Errorf("--fd %d: %w", fd, err)
	}
	return l, nil
}

// ListenerFromFile makes a listener of a listening unix socket's file (which it closes: the
// listener has its own fd).
func ListenerFromFile(f *os.File) (*net.UnixListener, error) {
	defer f.Close()
	l, err := net.FileListener(f)
	if err != nil {
		return nil, err
	}
	ul, ok := l.(*net.UnixListener)
	if !ok {
		l.Close()
		return nil, fmt.Errorf("a %T, not a unix socket", l)
	}
	ul.SetUnlinkOnClose(false)
	return ul, nil
}

// ServeListener accepts exactly one front-end, stops listening, and serves it until it
// disconnects, like the Rust virtiofsd: the daemon then exits and removes its socket (sock, if
// not nil). A disconnect returns nil.
//
// A connection that closes before sending any message is not a front-end: it is another uvfsd
// (or a user) checking whether the socket is in use, and the daemon keeps listening.
func (b *Backend) ServeListener(l *net.UnixListener, sock *SocketFile) error {
	defer sock.Remove()
	var closeOnce sync.Once
	stopListening := func() { closeOnce.Do(func() { l.Close() }) }
	defer stopListening()
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return fmt.Errorf("accepting vhost-user connection: %w", err)
		}
		spoke, err := b.serveConn(c, stopListening)
		c.Close()
		if spoke || err != nil {
			return err
		}
	}
}
