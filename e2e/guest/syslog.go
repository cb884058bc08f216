package guest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// SyslogMessage is one datagram a process sent to syslog.
type SyslogMessage struct {
	Tag  string // the program name before "[pid]:"
	PID  int    // 0 when the message had none
	Text string // the message after "tag[pid]: "
	Raw  string // the datagram as received
}

func (m SyslogMessage) String() string { return fmt.Sprintf("%s[%d]: %s", m.Tag, m.PID, m.Text) }

// Syslog stands in for a syslog daemon: it receives what processes log
// with syslog(3) or Go's log/syslog on a unix datagram socket, such as
// /dev/log on a machine that runs no syslog daemon. The tests read it to
// see what a daemon started with --syslog said.
type Syslog struct {
	path string
	conn *net.UnixConn
	done chan struct{}

	mu   sync.Mutex
	msgs []SyslogMessage
}

// ListenSyslog creates the datagram socket path, writable by every user
// (daemons run as unprivileged test users), and collects messages until
// Close. path must not exist.
func ListenSyslog(path string) (*Syslog, error) {
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("listen for syslog messages on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		conn.Close()
		os.Remove(path)
		return nil, fmt.Errorf("listen for syslog messages: %w", err)
	}
	s := &Syslog{path: path, conn: conn, done: make(chan struct{})}
	go s.receive()
	return s, nil
}

func (s *Syslog) receive() {
	defer close(s.done)
	buf := make([]byte, 64<<10)
	for {
		n, _, err := s.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		m := ParseSyslog(string(buf[:n]))
		s.mu.Lock()
		s.msgs = append(s.msgs, m)
		s.mu.Unlock()
	}
}

// Messages returns what was received so far.
func (s *Syslog) Messages() []SyslogMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SyslogMessage(nil), s.msgs...)
}

// Close stops receiving and removes the socket.
func (s *Syslog) Close() error {
	err := s.conn.Close()
	<-s.done
	if rmErr := os.Remove(s.path); err == nil && !os.IsNotExist(rmErr) {
		err = rmErr
	}
	return err
}

// syslogHeader finds "tag[pid]: " after the priority, the timestamp and,
// in RFC 3164 messages, the host name.
var syslogHeader = regexp.MustCompile(`^<\d+>.*?(\S+)\[(\d+)\]: ?`)

// ParseSyslog splits a datagram in the formats of glibc's syslog(3), Go's
// log/syslog and Rust's syslog crate ("<pri>timestamp [host] tag[pid]:
// text"). A datagram without "tag[pid]:" keeps all of it in Text.
func ParseSyslog(raw string) SyslogMessage {
	raw = strings.TrimRight(raw, "\n\x00")
	m := SyslogMessage{Raw: raw, Text: raw}
	if loc := syslogHeader.FindStringSubmatchIndex(raw); loc != nil {
		m.Tag = raw[loc[2]:loc[3]]
		m.PID, _ = strconv.Atoi(raw[loc[4]:loc[5]])
		m.Text = raw[loc[1]:]
	}
	return m
}
