package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// syslogWriter sends each Write as one message to the local syslog daemon, in the format log/syslog
// uses for a local daemon: "<PRI>Mmm dd hh:mm:ss TAG[PID]: MSG\n". uvfsd does not use log/syslog
// because it imports net, which links cgo in a default build, and a cgo binary cannot drop
// capabilities on all threads (userns.DropCapabilities).
type syslogWriter struct {
	paths    []string // tried in order, each as a datagram then as a stream socket
	priority int      // facility | severity
	tag      string
	now      func() time.Time

	mu  sync.Mutex
	f   *os.File // nil while not connected
	buf []byte
}

// syslogPaths are where log/syslog looks for the local daemon.
var syslogPaths = []string{"/dev/log", "/var/run/syslog", "/var/run/log"}

// Facility and severity values of RFC 3164.
const (
	syslogDaemon = 3 << 3
	syslogInfo   = 6
)

// newSyslogWriter connects to the first syslog socket in paths that takes a connection.
func newSyslogWriter(paths []string, priority int, tag string) (*syslogWriter, error) {
	w := &syslogWriter{paths: paths, priority: priority, tag: tag, now: time.Now}
	if err := w.connect(); err != nil {
		return nil, err
	}
	return w, nil
}

// connect (re)connects, like log/syslog: unixgram on every path first, then unix stream.
func (w *syslogWriter) connect() error {
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	var first error
	for _, typ := range []int{unix.SOCK_DGRAM, unix.SOCK_STREAM} {
		for _, path := range w.paths {
			fd, err := unix.Socket(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
			if err != nil {
				return fmt.Errorf("creating a socket for syslog: %w", err)
			}
			// A unix socket's connect does not wait, even non-blocking.
			if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
				unix.Close(fd)
				if first == nil {
					first = fmt.Errorf("%s: %w", path, err)
				}
				continue
			}
			// Non-blocking, so that a stalled daemon parks the writer in the runtime's poller.
			w.f = os.NewFile(uintptr(fd), "syslog")
			return nil
		}
	}
	return fmt.Errorf("no syslog daemon takes messages at %s (%v): start one (systemd-journald, rsyslog) for --syslog to reach it", strings.Join(w.paths, ", "), first)
}

// Write sends p as one message, reconnecting once if the daemon went away (it restarted).
func (w *syslogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = w.buf[:0]
	w.buf = append(w.buf, '<')
	w.buf = strconv.AppendInt(w.buf, int64(w.priority), 10)
	w.buf = append(w.buf, '>')
	w.buf = w.now().AppendFormat(w.buf, time.Stamp)
	w.buf = append(w.buf, ' ')
	w.buf = append(w.buf, w.tag...)
	w.buf = append(w.buf, '[')
	w.buf = strconv.AppendInt(w.buf, int64(os.Getpid()), 10)
	w.buf = append(w.buf, "]: "...)
	w.buf = append(w.buf, p...)
	if len(p) == 0 || p[len(p)-1] != '\n' {
		w.buf = append(w.buf, '\n') // a stream socket's daemon splits messages at newlines
	}
	if w.f != nil {
		if _, err := w.f.Write(w.buf); err == nil {
			return len(p), nil
		}
	}
	if err := w.connect(); err != nil {
		return 0, err
	}
	if _, err := w.f.Write(w.buf); err != nil {
		return 0, fmt.Errorf("writing to syslog: %w", err)
	}
	return len(p), nil
}
