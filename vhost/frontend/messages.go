package frontend

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/uvfsd/uvfsd/vhost"
	"golang.org/x/sys/unix"
)

// hasExplicitReply lists requests the back-end always answers with a payload.
var hasExplicitReply = map[uint32]bool{
	vhost.ReqGetFeatures:         true,
	vhost.ReqGetProtocolFeatures: true,
	vhost.ReqGetQueueNum:         true,
	vhost.ReqGetVringBase:        true,
	vhost.ReqGetConfig:           true,
	vhost.ReqGetMaxMemSlots:      true,
	vhost.ReqSetDeviceStateFd:    true,
	vhost.ReqCheckDeviceState:    true,
}

// SendBytes writes raw bytes (with optional fds as SCM_RIGHTS) to the back-end: the tool for
// truncated or otherwise malformed messages.
func (f *Frontend) SendBytes(b []byte, fds []int) error {
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	var n int
	var serr error
	err := f.raw.Write(func(fd uintptr) bool {
		n, serr = unix.SendmsgN(int(fd), b, oob, nil, unix.MSG_NOSIGNAL)
		return serr != unix.EAGAIN
	})
	if err != nil {
		return err
	}
	if serr != nil {
		return serr
	}
	if n != len(b) {
		// fds went with the first part; push the rest without them.
		_, err := f.conn.Write(b[n:])
		return err
	}
	return nil
}

// Send writes one framed message with the given header flags (version bit not added).
func (f *Frontend) Send(request, flags uint32, payload []byte, fds []int) error {
	b := make([]byte, vhost.HeaderSize+len(payload))
	vhost.Header{Request: request, Flags: flags, Size: uint32(len(payload))}.Encode(b)
	copy(b[vhost.HeaderSize:], payload)
	return f.SendBytes(b, fds)
}

// ReadReply reads one reply message, waiting at most timeout.
func (f *Frontend) ReadReply(timeout time.Duration) (vhost.Header, []byte, error) {
	f.conn.SetReadDeadline(time.Now().Add(timeout))
	defer f.conn.SetReadDeadline(time.Time{})
	var hb [vhost.HeaderSize]byte
	if _, err := io.ReadFull(f.conn, hb[:]); err != nil {
		return vhost.Header{}, nil, fmt.Errorf("reading reply header: %w", err)
	}
	h := vhost.DecodeHeader(hb[:])
	if h.Size > vhost.MaxPayload {
		return h, nil, fmt.Errorf("reply to request %d claims %d payload bytes", h.Request, h.Size)
	}
	p := make([]byte, h.Size)
	if _, err := io.ReadFull(f.conn, p); err != nil {
		return h, nil, fmt.Errorf("reading reply payload: %w", err)
	}
	return h, p, nil
}

// Request sends a well-formed message and waits for its answer: the payload for requests with an
// explicit reply, otherwise the REPLY_ACK (when negotiated), turned into an error if non-zero.
func (f *Frontend) Request(request uint32, payload []byte, fds []int) ([]byte, error) {
	f.ctlMu.Lock()
	defer f.ctlMu.Unlock()
	flags := vhost.FlagVersion
	// SET_LOG_BASE is answered when LOG_SHMFD was negotiated.
	explicit := hasExplicitReply[request] || request == vhost.ReqSetLogBase && f.protocol&vhost.ProtocolLogShmfd != 0
	wantAck := !explicit && f.protocol&vhost.ProtocolReplyAck != 0
	if wantAck {
		flags |= vhost.FlagNeedReply
	}
	if err := f.Send(request, flags, payload, fds); err != nil {
		return nil, fmt.Errorf("sending request %d: %w", request, err)
	}
	if !explicit && !wantAck {
		return nil, nil
	}
	h, p, err := f.ReadReply(max(f.o.Timeout, 10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("request %d: %w", request, err)
	}
	if h.Request != request || h.Flags&vhost.FlagReply == 0 {
		return nil, fmt.Errorf("request %d answered with request %d flags %#x", request, h.Request, h.Flags)
	}
	if wantAck {
		if len(p) != 8 {
			return nil, fmt.Errorf("request %d: REPLY_ACK of %d bytes", request, len(p))
		}
		if v := binary.LittleEndian.Uint64(p); v != 0 {
			return nil, fmt.Errorf("request %d: back-end replied failure %d", request, v)
		}
		return nil, nil
	}
	return p, nil
}

// requestU64 sends a u64 payload.
func (f *Frontend) requestU64(request uint32, v uint64, fds []int) error {
	p := make([]byte, 8)
	binary.LittleEndian.PutUint64(p, v)
	_, err := f.Request(request, p, fds)
	return err
}

// getU64 asks for a u64 reply.
func (f *Frontend) getU64(request uint32) (uint64, error) {
	p, err := f.Request(request, nil, nil)
	if err != nil {
		return 0, err
	}
	if len(p) != 8 {
		return 0, fmt.Errorf("request %d: reply has %d bytes, want 8", request, len(p))
	}
	return binary.LittleEndian.Uint64(p), nil
}

// vringState sends struct vhost_vring_state.
func (f *Frontend) vringState(request uint32, index, num uint32) ([]byte, error) {
	p := make([]byte, 8)
	binary.LittleEndian.PutUint32(p[0:], index)
	binary.LittleEndian.PutUint32(p[4:], num)
	return f.Request(request, p, nil)
}

// GetVringBase stops a ring in the back-end and returns its next available index.
func (f *Frontend) GetVringBase(queue int) (uint32, error) {
	if _, err := f.q(queue); err != nil {
		return 0, err
	}
	p, err := f.vringState(vhost.ReqGetVringBase, uint32(queue), 0)
	if err != nil {
		return 0, err
	}
	if len(p) != 8 || binary.LittleEndian.Uint32(p) != uint32(queue) {
		return 0, fmt.Errorf("GET_VRING_BASE reply %x does not match queue %d", p, queue)
	}
	base := binary.LittleEndian.Uint32(p[4:])
	q := f.queues[queue]
	q.mu.Lock()
	q.resumeBase = uint16(base)
	q.mu.Unlock()
	return base, nil
}

// GetConfig reads size bytes of the device configuration space at offset.
func (f *Frontend) GetConfig(offset, size uint32) ([]byte, error) {
	p := make([]byte, vhost.ConfigHeaderSize+int(size))
	binary.LittleEndian.PutUint32(p[0:], offset)
	binary.LittleEndian.PutUint32(p[4:], size)
	r, err := f.Request(vhost.ReqGetConfig, p, nil)
	if err != nil {
		return nil, err
	}
	if len(r) != len(p) {
		return nil, fmt.Errorf("GET_CONFIG failed: reply has %d bytes, want %d", len(r), len(p))
	}
	return r[vhost.ConfigHeaderSize:], nil
}

// Region describes the front-end's guest memory as sent in SET_MEM_TABLE.
func (f *Frontend) Region() vhost.MemRegion {
	return vhost.MemRegion{GuestAddr: GuestBase, Size: uint64(len(f.mem.bytes)), UserAddr: UserBase}
}

// MemFD is the memfd backing guest memory (owned by the Frontend).
func (f *Frontend) MemFD() int { return f.mem.fd }

// SendMemReg sends ADD_MEM_REG or REM_MEM_REG for r, with fd attached if fd >= 0.
func (f *Frontend) SendMemReg(request uint32, r vhost.MemRegion, fd int) error {
	p := make([]byte, 8+vhost.MemRegionSize)
	r.Encode(p[8:])
	var fds []int
	if fd >= 0 {
		fds = []int{fd}
	}
	_, err := f.Request(request, p, fds)
	return err
}

func (f *Frontend) setMemTable() error {
	p := make([]byte, 8+vhost.MemRegionSize)
	binary.LittleEndian.PutUint32(p, 1)
	f.Region().Encode(p[8:])
	_, err := f.Request(vhost.ReqSetMemTable, p, []int{f.mem.fd})
	return err
}

// BackendClosed reports whether the back-end closed the connection within timeout. Use it only
// while no reply is outstanding; stray bytes count as "not closed".
func (f *Frontend) BackendClosed(timeout time.Duration) bool {
	f.conn.SetReadDeadline(time.Now().Add(timeout))
	defer f.conn.SetReadDeadline(time.Time{})
	var b [64]byte
	_, err := f.conn.Read(b[:])
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	return true
}
