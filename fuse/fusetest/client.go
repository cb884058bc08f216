// Package fusetest is a FUSE client for tests: it encodes requests the way the Linux virtio-fs
// driver lays them out (header and each argument in its own buffer) and decodes replies. It runs
// over any Transport, e.g. a fuse.Server directly or a vhost-user front-end.
package fusetest

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/uvfsd/uvfsd/fuse"
)

// Transport carries one request: in are its device-readable buffers; the reply goes into a
// device-writable buffer of outSize bytes, of which it returns what was written.
type Transport interface {
	Call(in [][]byte, outSize int) ([]byte, error)
}

// Client sends requests with the given guest credentials.
type Client struct {
	T        Transport
	UID, GID uint32
	PID      uint32
	unique   atomic.Uint64
}

// Bytes returns the wire encoding of a fuse struct.
func Bytes[T any](v *T) []byte {
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v))...)
}

// Decode reads a fuse struct from the front of b.
func Decode[T any](b []byte) (*T, error) {
	var v T
	if len(b) < int(unsafe.Sizeof(v)) {
		return nil, fmt.Errorf("reply payload is %d bytes, want at least %d", len(b), unsafe.Sizeof(v))
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&v)), unsafe.Sizeof(v)), b)
	return &v, nil
}

// Name returns a NUL-terminated name argument.
func Name(s string) []byte { return append([]byte(s), 0) }

// Raw sends a request with the given arguments (each its own buffer) and returns the reply header
// and payload. ext, if not nil, is appended as request extensions (TotalExtlen).
func (c *Client) Raw(op fuse.Opcode, node uint64, outSize int, ext []byte, args ...[]byte) (fuse.OutHeader, []byte, error) {
	h, in := c.frame(op, node, ext, args)
	reply, err := c.T.Call(in, 16+outSize)
	if err != nil {
		return fuse.OutHeader{}, nil, err
	}
	if len(reply) == 0 {
		return fuse.OutHeader{}, nil, nil // no reply (FORGET and friends)
	}
	oh, err := Decode[fuse.OutHeader](reply)
	if err != nil {
		return fuse.OutHeader{}, nil, err
	}
	if oh.Unique != h.Unique {
		return *oh, nil, fmt.Errorf("reply unique %d, want %d", oh.Unique, h.Unique)
	}
	if int(oh.Len) != len(reply) {
		return *oh, nil, fmt.Errorf("reply header says %d bytes, %d were written", oh.Len, len(reply))
	}
	return *oh, reply[16:], nil
}

// Frame returns a request's device-readable buffers (the header, then each argument) without
// sending it, for a front-end that submits the same request many times.
func (c *Client) Frame(op fuse.Opcode, node uint64, args ...[]byte) [][]byte {
	_, in := c.frame(op, node, nil, args)
	return in
}

func (c *Client) frame(op fuse.Opcode, node uint64, ext []byte, args [][]byte) (fuse.InHeader, [][]byte) {
	n := 40
	for _, a := range args {
		n += len(a)
	}
	n += len(ext)
	h := fuse.InHeader{Len: uint32(n), Opcode: op, Unique: c.unique.Add(1), NodeID: node,
		UID: c.UID, GID: c.GID, PID: c.PID, TotalExtlen: uint16(len(ext) / 8)}
	in := append([][]byte{Bytes(&h)}, args...)
	if len(ext) > 0 {
		in = append(in, ext)
	}
	return h, in
}

// Do sends a request and returns its payload, or the errno the server answered.
func (c *Client) Do(op fuse.Opcode, node uint64, outSize int, args ...[]byte) ([]byte, error) {
	oh, payload, err := c.Raw(op, node, outSize, nil, args...)
	if err != nil {
		return nil, err
	}
	if oh.Error != 0 {
		return nil, syscall.Errno(-oh.Error)
	}
	return payload, nil
}

// Call sends a request and decodes a struct reply of type T.
func Call[T any](c *Client, op fuse.Opcode, node uint64, args ...[]byte) (*T, error) {
	var zero T
	p, err := c.Do(op, node, int(unsafe.Sizeof(zero)), args...)
	if err != nil {
		return nil, err
	}
	return Decode[T](p)
}

// Init negotiates like a Linux 6.1 guest (7.38, flags 0xb7bfffffb) unless flags is non-zero.
func (c *Client) Init(flags uint64) (*fuse.InitOut, error) {
	if flags == 0 {
		flags = 0xb7bfffffb
	}
	in := fuse.InitIn{Major: 7, Minor: 38, MaxReadahead: 128 << 10, Flags: uint32(flags), Flags2: uint32(flags >> 32)}
	return Call[fuse.InitOut](c, fuse.OpInit, 0, Bytes(&in))
}

// Lookup looks name up in dir.
func (c *Client) Lookup(dir uint64, name string) (*fuse.EntryOut, error) {
	return Call[fuse.EntryOut](c, fuse.OpLookup, dir, Name(name))
}

// Dirent is one decoded READDIR(PLUS) entry.
type Dirent struct {
	fuse.Dirent
	Name  string
	Entry fuse.EntryOut // READDIRPLUS only
}

// ParseDirents decodes a READDIR or READDIRPLUS reply.
func ParseDirents(b []byte, plus bool) ([]Dirent, error) {
	var out []Dirent
	for len(b) > 0 {
		var d Dirent
		if plus {
			e, err := Decode[fuse.EntryOut](b)
			if err != nil {
				return nil, err
			}
			d.Entry = *e
			b = b[unsafe.Sizeof(fuse.EntryOut{}):]
		}
		h, err := Decode[fuse.Dirent](b)
		if err != nil {
			return nil, err
		}
		d.Dirent = *h
		end := 24 + int(h.Namelen)
		if end > len(b) {
			return nil, fmt.Errorf("dirent name overruns the reply")
		}
		d.Name = string(b[24:end])
		out = append(out, d)
		b = b[min(len(b), (end+7)&^7):]
	}
	return out, nil
}

// ExtSecctx builds a request extension area with one SECURITY_CTX context, laid out as Linux does:
// fuse_secctx_header{size, nr_secctx=1} (which doubles as the extension header), fuse_secctx{size},
// the xattr name with its NUL, the context, padded to 8 bytes.
func ExtSecctx(name string, ctx []byte) []byte {
	n := (8 + len(name) + 1 + len(ctx) + 7) &^ 7
	b := make([]byte, 8+n)
	binary.LittleEndian.PutUint32(b[0:], uint32(len(b)))
	binary.LittleEndian.PutUint32(b[4:], 1)
	binary.LittleEndian.PutUint32(b[8:], uint32(len(ctx)))
	copy(b[16:], name)
	copy(b[16+len(name)+1:], ctx)
	return b
}

// ExtSuppGroup builds a request extension area with a CREATE_SUPP_GROUP group.
func ExtSuppGroup(gid uint32) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint32(b[0:], 16)
	binary.LittleEndian.PutUint32(b[4:], fuse.ExtGroups)
	binary.LittleEndian.PutUint32(b[8:], 1)
	binary.LittleEndian.PutUint32(b[12:], gid)
	return b
}

// ServerTransport calls a fuse.Server directly, splitting the writable area into two buffers so
// that replies are exercised across a buffer boundary (as guest pages are).
type ServerTransport struct{ S *fuse.Server }

type completion chan uint32

func (c completion) Complete(n uint32) { c <- n }

// Call implements Transport.
func (t ServerTransport) Call(in [][]byte, outSize int) ([]byte, error) {
	buf := make([]byte, outSize)
	split := min(16, outSize)
	out := [][]byte{buf[:split], buf[split:]}
	done := make(completion, 1)
	t.S.Serve(in, out, done)
	n := <-done
	if int(n) > outSize {
		return nil, fmt.Errorf("server wrote %d bytes into %d", n, outSize)
	}
	return buf[:n], nil
}
