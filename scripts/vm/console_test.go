package vm

import (
	"bytes"
	"strings"
	"testing"
)

func TestConsoleFollowsMarkers(t *testing.T) {
	var script bytes.Buffer
	c := newConsole(&script)
	// Chunks split mid-line, CRLF endings, firmware escapes before the
	// begin marker and an unterminated line before the exit marker.
	for _, chunk := range []string{
		"SeaBIOS\r\n\x1b[2J" + BeginMarker + "\r\nfirst li", "ne\r\nsecond\r\n",
		"partial" + ExitMarker + "3\r\n", "[  4.0] reboot: Power down\r\n",
	} {
		c.Write([]byte(chunk))
	}
	c.flush()
	var r Result
	c.snapshot(&r)
	if want := []string{"first line", "second", "partial"}; strings.Join(r.Output, "|") != strings.Join(want, "|") {
		t.Errorf("script output %q, want %q", r.Output, want)
	}
	if script.String() != "first line\nsecond\npartial\n" {
		t.Errorf("streamed %q", script.String())
	}
	if !r.Exited || r.ExitStatus != 3 {
		t.Errorf("exit %d (seen %v), want 3", r.ExitStatus, r.Exited)
	}
	if len(r.Console) != 6 || !strings.Contains(c.tail(1), "Power down") {
		t.Errorf("console lines %q", r.Console)
	}
	select {
	case <-c.exitSeen:
	default:
		t.Error("exitSeen not closed")
	}
}

func TestConsoleReportsInitErrorAndIgnoresBadMarker(t *testing.T) {
	c := newConsole(nil)
	c.Write([]byte(ExitMarker + "notanumber\n" + InitErrorPrefix + ": mount failed\n" + ExitMarker + "255\n" + ExitMarker + "0\n"))
	var r Result
	c.snapshot(&r)
	if r.InitError != "mount failed" {
		t.Errorf("init error %q", r.InitError)
	}
	if r.ExitStatus != 255 {
		t.Errorf("first valid marker must win: got %d", r.ExitStatus)
	}
	if len(r.Output) != 0 {
		t.Errorf("output before the begin marker: %q", r.Output)
	}
}

func TestParseConsole(t *testing.T) {
	r := ParseConsole([]byte("[ 1.0] boot\r\n" + InitErrorPrefix + ": insmod fuse failed\r\n" + BeginMarker + "\r\nout\r\n" + ExitMarker + "255\r\n"))
	if !r.Exited || r.ExitStatus != 255 || r.InitError != "insmod fuse failed" {
		t.Errorf("exited %v status %d init error %q", r.Exited, r.ExitStatus, r.InitError)
	}
	if strings.Join(r.Output, "|") != "out" || len(r.Console) != 5 {
		t.Errorf("output %q console %q", r.Output, r.Console)
	}
	if r := ParseConsole([]byte(BeginMarker + "\nno exit marker")); r.Exited || strings.Join(r.Output, "|") != "no exit marker" {
		t.Errorf("unfinished boot: exited %v output %q", r.Exited, r.Output)
	}
}
