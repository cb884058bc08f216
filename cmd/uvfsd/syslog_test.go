package main

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// syslogd is a stand-in syslog daemon on a unixgram socket at path.
func syslogd(t *testing.T, path string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readDatagram(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("the syslog daemon got no message: %v", err)
	}
	return string(buf[:n])
}

func TestSyslogWriterSendsOneDatagramPerMessage(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "log")
	d := syslogd(t, path)
	// The first path has no daemon: the writer goes on to the next, as log/syslog does.
	w, err := newSyslogWriter([]string{filepath.Join(dir, "none"), path}, syslogDaemon|syslogInfo, "uvfsd")
	if err != nil {
		t.Fatal(err)
	}
	w.now = func() time.Time { return time.Date(2026, 12, 7, 7, 5, 9, 0, time.Local) }
	prefix := "<30>Dec  7 07:05:09 uvfsd[" + strconv.Itoa(os.Getpid()) + "]: "
	for _, c := range []struct{ write, want string }{
		{"serving /srv", prefix + "serving /srv\n"},
		{"ends in a newline\n", prefix + "ends in a newline\n"},
	} {
		if n, err := w.Write([]byte(c.write)); err != nil || n != len(c.write) {
			t.Fatalf("Write(%q) = %d, %v", c.write, n, err)
		}
		if got := readDatagram(t, d); got != c.want {
			t.Errorf("Write(%q) sent %q, want %q", c.write, got, c.want)
		}
	}

	// The daemon restarts: its socket is made anew, and the next message reaches the new one.
	d.Close()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	d2 := syslogd(t, path)
	if _, err := w.Write([]byte("after a restart")); err != nil {
		t.Fatalf("Write after the daemon restarted: %v", err)
	}
	if got := readDatagram(t, d2); got != prefix+"after a restart\n" {
		t.Errorf("after a restart the daemon got %q", got)
	}
}

// A daemon that listens on a stream socket only gets newline-terminated messages over it.
func TestSyslogWriterFallsBackToAStreamSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	w, err := newSyslogWriter([]string{path}, syslogDaemon|syslogInfo, "uvfsd")
	if err != nil {
		t.Fatal(err)
	}
	l.SetDeadline(time.Now().Add(5 * time.Second))
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, m := range []string{"one", "two"} {
		if _, err := w.Write([]byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	for _, m := range []string{"one", "two"} {
		line, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "<30>") || !strings.HasSuffix(line, "]: "+m+"\n") {
			t.Errorf("stream message %q, %v; want <30>... uvfsd[pid]: %s", line, err, m)
		}
	}
}

func TestSyslogWriterWithoutDaemonSaysWhatToDo(t *testing.T) {
	_, err := newSyslogWriter([]string{filepath.Join(t.TempDir(), "log")}, syslogDaemon|syslogInfo, "uvfsd")
	if err == nil || !strings.Contains(err.Error(), "for --syslog to reach it") {
		t.Fatalf("newSyslogWriter with no daemon: %v, want an error that names the fix", err)
	}
}
