package vhost

import (
	"errors"
	"fmt"
	"io"
	"syscall"

	"golang.org/x/sys/unix"
)

// conn frames vhost-user messages on a unix stream socket. File descriptors travel as SCM_RIGHTS
// attached to the message bytes; every recvmsg collects them so none leak even if a message is
// split across reads.
type conn struct {
	raw     syscall.RawConn
	oob     []byte
	hdr     [HeaderSize]byte
	payload [MaxPayload]byte
	reply   [HeaderSize + MaxPayload]byte
}

func newConn(c syscall.Conn) (*conn, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("vhost-user socket: %w", err)
	}
	return &conn{raw: raw, oob: make([]byte, unix.CmsgSpace(MaxFDs*4))}, nil
}

// errFramingFDs reports more file descriptors than a message may carry.
var errFramingFDs = errors.New("message carries more than 8 file descriptors")

// recv reads one message. It returns io.EOF when the peer closed the socket between messages.
// On error every received fd has already been closed.
func (c *conn) recv() (*message, error) {
	m := &message{}
	if err := c.readFull(c.hdr[:], &m.fds, true); err != nil {
		closeFDs(m.fds)
		return nil, err
	}
	m.hdr = DecodeHeader(c.hdr[:])
	if m.hdr.Size > MaxPayload {
		closeFDs(m.fds)
		return nil, fmt.Errorf("%s: payload size %d exceeds %d bytes; stream is out of sync", requestName(m.hdr.Request), m.hdr.Size, MaxPayload)
	}
	m.payload = c.payload[:m.hdr.Size]
	if err := c.readFull(m.payload, &m.fds, false); err != nil {
		closeFDs(m.fds)
		return nil, fmt.Errorf("%s: reading %d-byte payload: %w", requestName(m.hdr.Request), m.hdr.Size, err)
	}
	if len(m.fds) > MaxFDs {
		closeFDs(m.fds)
		return nil, fmt.Errorf("%s: %w", requestName(m.hdr.Request), errFramingFDs)
	}
	return m, nil
}

// readFull fills b, appending any received fds to *fds. atStart makes a clean close before the
// first byte an io.EOF rather than an unexpected EOF.
func (c *conn) readFull(b []byte, fds *[]int, atStart bool) error {
	for n := 0; n < len(b); {
		var rn, oobn, flags int
		var rerr error
		err := c.raw.Read(func(fd uintptr) bool {
			rn, oobn, flags, _, rerr = unix.Recvmsg(int(fd), b[n:], c.oob, unix.MSG_CMSG_CLOEXEC)
			return rerr != unix.EAGAIN
		})
		if err != nil {
			return err
		}
		if oobn > 0 {
			*fds = append(*fds, parseRights(c.oob[:oobn])...)
		}
		if flags&unix.MSG_CTRUNC != 0 {
			return errFramingFDs
		}
		if rerr != nil {
			if rerr == unix.ECONNRESET && atStart && n == 0 {
				return io.EOF
			}
			return rerr
		}
		if rn == 0 {
			if atStart && n == 0 {
				return io.EOF
			}
			return io.ErrUnexpectedEOF
		}
		n += rn
	}
	return nil
}

// parseRights extracts fds from SCM_RIGHTS control messages; malformed ones are ignored.
func parseRights(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for i := range msgs {
		if got, err := unix.ParseUnixRights(&msgs[i]); err == nil {
			fds = append(fds, got...)
		}
	}
	return fds
}

// send writes a reply with the given request type and payload.
func (c *conn) send(request uint32, payload []byte) error {
	n := HeaderSize + len(payload)
	Header{Request: request, Flags: FlagVersion | FlagReply, Size: uint32(len(payload))}.Encode(c.reply[:])
	copy(c.reply[HeaderSize:], payload)
	buf := c.reply[:n]
	for len(buf) > 0 {
		var wn int
		var werr error
		err := c.raw.Write(func(fd uintptr) bool {
			wn, werr = unix.SendmsgN(int(fd), buf, nil, nil, unix.MSG_NOSIGNAL)
			return werr != unix.EAGAIN
		})
		if err != nil {
			return err
		}
		if werr != nil {
			return fmt.Errorf("sending %s reply: %w", requestName(request), werr)
		}
		buf = buf[wn:]
	}
	return nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}
