package vm

import (
	"io"
	"strconv"
	"strings"
	"sync"
)

// console splits the guest's serial output into lines and follows /init's
// markers. It is fed raw bytes as they arrive.
type console struct {
	mu      sync.Mutex
	split   LineSplitter // calls line
	lines   []string
	script  []string
	inside  bool // between BeginMarker and ExitMarker
	exit    int
	exited  bool
	initErr string

	scriptOut io.Writer     // receives script lines, newline-terminated
	exitSeen  chan struct{} // closed when the exit marker arrives
}

func newConsole(scriptOut io.Writer) *console {
	c := &console{scriptOut: scriptOut, exitSeen: make(chan struct{})}
	c.split.Line = c.line
	return c
}

// Write implements io.Writer so the console can sit behind an io.MultiWriter.
func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.split.Write(p)
}

// flush handles a last line that had no newline.
func (c *console) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.split.Flush()
}

func (c *console) line(l string) {
	c.lines = append(c.lines, l)
	// A marker may follow unterminated output on the same console line.
	if i := strings.LastIndex(l, ExitMarker); i >= 0 && !c.exited {
		if n, err := strconv.Atoi(strings.TrimSpace(l[i+len(ExitMarker):])); err == nil {
			if i > 0 && c.inside {
				c.scriptLine(l[:i])
			}
			c.exit, c.exited, c.inside = n, true, false
			close(c.exitSeen)
			return
		}
	}
	switch {
	case strings.HasPrefix(l, InitErrorPrefix) && c.initErr == "":
		c.initErr = strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(l, InitErrorPrefix), ":"))
	case strings.HasSuffix(l, BeginMarker) && !c.exited:
		// Suffix, not equality: firmware escape codes can precede it.
		c.inside = true
	case c.inside:
		c.scriptLine(l)
	}
}

func (c *console) scriptLine(l string) {
	c.script = append(c.script, l)
	if c.scriptOut != nil {
		io.WriteString(c.scriptOut, l+"\n")
	}
}

// tail returns the last n console lines joined for an error message.
func (c *console) tail(n int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	lines := c.lines
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	s := strings.Join(lines, "\n")
	if pending := c.split.Pending(); len(pending) > 0 {
		s += "\n" + string(pending)
	}
	return s
}

// snapshot copies what the caller needs into a Result.
func (c *console) snapshot(r *Result) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r.Console = append([]string(nil), c.lines...)
	r.Output = append([]string(nil), c.script...)
	r.ExitStatus, r.Exited = c.exit, c.exited
	r.InitError = c.initErr
}

// ParseConsole reads a whole serial console capture (a boot run by
// something else than VM.Run, such as libvirt) the way VM.Run follows it
// live: the script's output, its exit status, /init's error.
func ParseConsole(data []byte) *Result {
	c := newConsole(nil)
	c.Write(data)
	c.flush()
	r := &Result{}
	c.snapshot(r)
	return r
}
