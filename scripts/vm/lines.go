package vm

import "bytes"

// LineSplitter cuts a byte stream into lines for Line, without the newline or a carriage return
// before it. It does no locking: the writer that embeds it serializes Write and Flush.
type LineSplitter struct {
	Line    func(string)
	partial []byte
}

// Write passes every complete line in p, with what earlier writes left, to Line.
func (s *LineSplitter) Write(p []byte) (int, error) {
	s.partial = append(s.partial, p...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		s.Line(string(bytes.TrimRight(s.partial[:i], "\r")))
		s.partial = s.partial[i+1:]
	}
}

// Flush passes a last line that had no newline.
func (s *LineSplitter) Flush() {
	if len(s.partial) > 0 {
		s.Line(string(bytes.TrimRight(s.partial, "\r")))
		s.partial = nil
	}
}

// Pending returns what has not been passed on yet (an unterminated last line).
func (s *LineSplitter) Pending() []byte { return s.partial }
