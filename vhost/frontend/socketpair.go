package frontend

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// SocketPair returns the two ends of a connected unix stream socket: one
// for New, the other for the back-end's ServeConn. Tests need no socket
// path or listener this way.
func SocketPair() (front, back *net.UnixConn, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	front, err = unixConn(fds[0])
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	back, err = unixConn(fds[1])
	if err != nil {
		front.Close()
		return nil, nil, err
	}
	return front, back, nil
}

// unixConn wraps a socket fd, taking ownership of it.
func unixConn(fd int) (*net.UnixConn, error) {
	f := os.NewFile(uintptr(fd), "socketpair")
	defer f.Close() // FileConn works on a duplicate
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("socketpair: got a %T, not a unix socket", c)
	}
	return uc, nil
}
