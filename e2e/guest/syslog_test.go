package guest

import (
	"log/syslog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestParseSyslog(t *testing.T) {
	for _, c := range []struct {
		raw, tag string
		pid      int
		text     string
	}{
		// glibc syslog(3)
		{"<30>Dec  7 11:20:01 virtiofsd[123]: Waiting for vhost-user socket connection...", "virtiofsd", 123, "Waiting for vhost-user socket connection..."},
		// RFC 3164 with a host name, as Rust's syslog crate sends it
		{"<14>Dec 07 11:20:01 host virtiofsd[7]: Client connected: x[1]: y\n", "virtiofsd", 7, "Client connected: x[1]: y"},
		// Go's log/syslog
		{"<30>2026-12-07T11:20:01Z uvfsd[42]: serving / on /tmp/s\n", "uvfsd", 42, "serving / on /tmp/s"},
		{"<13>no header at all", "", 0, "<13>no header at all"},
	} {
		m := ParseSyslog(c.raw)
		if m.Tag != c.tag || m.PID != c.pid || m.Text != c.text {
			t.Errorf("ParseSyslog(%q) = %q %d %q, want %q %d %q", c.raw, m.Tag, m.PID, m.Text, c.tag, c.pid, c.text)
		}
	}
}

// TestSyslogReceives sends through Go's own syslog client, which speaks to
// /dev/log the same way.
func TestSyslogReceives(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	s, err := ListenSyslog(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := syslog.Dial("unixgram", path, syslog.LOG_DAEMON|syslog.LOG_INFO, "e2etest")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Info("hello there"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	deadline := time.Now().Add(5 * time.Second)
	for len(s.Messages()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	msgs := s.Messages()
	if len(msgs) != 1 || msgs[0].Tag != "e2etest" || msgs[0].PID != os.Getpid() || msgs[0].Text != "hello there" {
		t.Errorf("received %q", msgs)
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket left behind after Close: %v", err)
	}
}
