package vhost

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// Listener is a listening unix stream socket. Accept parks the goroutine in the Go runtime's
// poller, as net.UnixListener does, and Close wakes it with an error. vhost does not use package
// net because it links cgo in a default build, and a cgo binary cannot change capabilities on all
// threads (userns.DropCapabilities).
type Listener struct {
	f *os.File // non-blocking, so os registers it with the poller
}

// newListener takes ownership of fd, a non-blocking listening socket.
func newListener(fd int) *Listener {
	return &Listener{f: os.NewFile(uintptr(fd), "vhost-user-listener")}
}

// Accept waits for a connection and returns it as a non-blocking, close-on-exec file for
// Backend.ServeConn.
func (l *Listener) Accept() (*os.File, error) {
	raw, err := l.f.SyscallConn()
	if err != nil {
		return nil, err
	}
	nfd := -1
	var aerr error
	err = raw.Read(func(fd uintptr) bool {
		nfd, _, aerr = unix.Accept4(int(fd), unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
		// ECONNABORTED: the peer gave up before we took it; wait for the next one, as net does.
		return aerr != unix.EAGAIN && aerr != unix.ECONNABORTED
	})
	if err != nil {
		return nil, err
	}
	if aerr != nil {
		return nil, os.NewSyscallError("accept4", aerr)
	}
	return os.NewFile(uintptr(nfd), "vhost-user-connection"), nil
}

// Close stops listening and makes a pending Accept return an error. It does not remove the
// socket's name (SocketFile does).
func (l *Listener) Close() error { return l.f.Close() }

// File returns a duplicate of the listening socket's fd (close-on-exec), e.g. to pass to a child
// process; the Listener stays open.
func (l *Listener) File() (*os.File, error) {
	fd, err := dupSocket(l.f)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), "vhost-user-listener"), nil
}

// dupSocket duplicates f's fd, close-on-exec.
func dupSocket(f *os.File) (int, error) {
	raw, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd := -1
	var derr error
	if err := raw.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, os.NewSyscallError("fcntl F_DUPFD_CLOEXEC", derr)
	}
	return nfd, nil
}

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
func Listen(path, group string) (*Listener, error) {
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
	l, err := listenUnix(bindAt)
	if err != nil {
		return nil, fmt.Errorf("creating vhost-user socket %s: %w (check that the directory exists and is writable)", path, err)
	}
	fail := func(err error) (*Listener, error) {
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

// listenUnix binds a unix stream socket at path and listens on it.
func listenUnix(path string) (*Listener, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("bind", err)
	}
	// The kernel caps the backlog at net.core.somaxconn.
	if err := unix.Listen(fd, unix.SOMAXCONN); err != nil {
		unix.Close(fd)
		os.Remove(path)
		return nil, os.NewSyscallError("listen", err)
	}
	return newListener(fd), nil
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
	switch err := probeSocket(path); {
	case err == nil || errors.Is(err, unix.EAGAIN): // EAGAIN: a live listener's backlog is full
		return fmt.Errorf("socket %s is in use by a running daemon; stop it or choose another --socket-path", path)
	case !errors.Is(err, unix.ECONNREFUSED):
		return fmt.Errorf("socket %s exists and cannot be probed (%w); remove it if no daemon uses it", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("removing stale socket %s: %w", path, err)
	}
	return nil
}

// probeSocket connects to the unix socket at path and hangs up. The connect is non-blocking, which
// for a unix socket never waits: it succeeds, or fails with ECONNREFUSED when nobody listens and
// EAGAIN when the listener's backlog is full.
func probeSocket(path string) error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		return os.NewSyscallError("connect", err)
	}
	return nil
}

func chgrpSocket(path, group string) error {
	gid, err := strconv.Atoi(group)
	if err != nil {
		var lerr error
		if gid, lerr = lookupGroup(groupFile, group); lerr != nil {
			return fmt.Errorf("socket group %q: %w (give an existing group name or numeric gid)", group, lerr)
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
func ListenerFromFD(fd int) (*Listener, error) {
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

// ListenerFromFile makes a listener of a listening unix stream socket's file (which it closes:
// the listener has its own fd).
func ListenerFromFile(f *os.File) (*Listener, error) {
	defer f.Close()
	fd, err := dupSocket(f)
	if err != nil {
		return nil, err
	}
	if err := checkListening(fd); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// The poller needs it non-blocking; an inherited fd may not be.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("fcntl O_NONBLOCK", err)
	}
	return newListener(fd), nil
}

// checkListening says why fd is not a listening unix stream socket, if it is not.
func checkListening(fd int) error {
	domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return fmt.Errorf("not a socket: %w", err)
	}
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return fmt.Errorf("socket type: %w", err)
	}
	if domain != unix.AF_UNIX || typ != unix.SOCK_STREAM {
		return fmt.Errorf("a socket of domain %d and type %d, not a unix stream socket (AF_UNIX, SOCK_STREAM)", domain, typ)
	}
	accepting, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	if err != nil {
		return fmt.Errorf("socket state: %w", err)
	}
	if accepting == 0 {
		return errors.New("a unix socket but not listening; pass a bound unix socket after listen(2)")
	}
	return nil
}

// ServeListener accepts exactly one front-end, stops listening, and serves it until it
// disconnects, like the Rust virtiofsd: the daemon then exits and removes its socket (sock, if
// not nil). A disconnect returns nil.
//
// A connection that closes before sending any message is not a front-end: it is another uvfsd
// (or a user) checking whether the socket is in use, and the daemon keeps listening.
func (b *Backend) ServeListener(l *Listener, sock *SocketFile) error {
	defer sock.Remove()
	var closeOnce sync.Once
	stopListening := func() { closeOnce.Do(func() { l.Close() }) }
	defer stopListening()
	for {
		c, err := l.Accept()
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
