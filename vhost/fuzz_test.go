package vhost_test

import (
	"encoding/binary"
	"testing"
	"time"
	"unsafe"

	"github.com/uvfsd/uvfsd/vhost"
)

const fuzzBase = 0x1000

// desc encodes one descriptor for seeds.
func desc(addr uint64, n uint32, flags, next uint16) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint64(b[0:], addr)
	binary.LittleEndian.PutUint32(b[8:], n)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
	return b
}

func concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// inside reports whether b lies within mem.
func inside(b, mem []byte) bool {
	if len(b) == 0 {
		return true
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(mem)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return p >= lo && p+uintptr(len(b)) <= lo+uintptr(len(mem)) && cap(b) == len(b)
}

// FuzzDescriptorWalk feeds random descriptor tables and guest memory (which may hold indirect
// tables) to the walker: it must never panic or loop, and anything it returns must lie inside
// guest memory, bounded in count, readable buffers first.
func FuzzDescriptorWalk(f *testing.F) {
	f.Add(concat(desc(fuzzBase, 16, 1, 1), desc(fuzzBase+16, 32, 2, 0)), []byte{}, uint16(0), uint8(2), false)
	f.Add(desc(fuzzBase, 32, 4, 0), concat(desc(fuzzBase+64, 8, 1, 1), desc(fuzzBase+72, 8, 2, 0)), uint16(0), uint8(3), true)
	f.Add(concat(desc(fuzzBase, 16, 1, 1), desc(fuzzBase, 16, 1, 0)), []byte{}, uint16(0), uint8(1), false)
	f.Add(desc(fuzzBase, 16, 4, 0), desc(fuzzBase, 16, 4, 0), uint16(0), uint8(0), true)
	f.Add(desc(0xffff_ffff_ffff_fff0, 0x100, 2, 0), []byte{}, uint16(0), uint8(0), false)
	f.Fuzz(func(t *testing.T, table, memSeed []byte, head uint16, sizeLog uint8, indirect bool) {
		size := 1 << (sizeLog % 7)
		descs := make([]byte, size*16)
		copy(descs, table)
		mem := make([]byte, 4096)
		copy(mem, memSeed)
		in, out, err := vhost.WalkForTest(fuzzBase, mem, descs, size, head, indirect)
		if err != nil {
			return
		}
		if int(head) >= size {
			t.Fatalf("head %d accepted in a ring of %d", head, size)
		}
		if len(in)+len(out) > 2*size {
			t.Fatalf("%d buffers from a ring of %d", len(in)+len(out), size)
		}
		for _, b := range append(in, out...) {
			if !inside(b, mem) {
				t.Fatalf("buffer of %d bytes outside guest memory", len(b))
			}
		}
	})
}

// FuzzMessageFraming checks the message validation table against random headers, payloads and
// fd counts: no panics, and anything accepted is consistent with its header.
func FuzzMessageFraming(f *testing.F) {
	hdr := func(req, flags, size uint32) []byte {
		b := make([]byte, vhost.HeaderSize)
		vhost.Header{Request: req, Flags: flags, Size: size}.Encode(b)
		return b
	}
	f.Add(hdr(vhost.ReqSetMemTable, 1, 40), concat(u64(1), make([]byte, 32)), uint8(1))
	f.Add(hdr(vhost.ReqSetVringKick, 1, 8), u64(1|vhost.VringFdNoFD), uint8(0))
	f.Add(hdr(vhost.ReqGetConfig, 1, 52), concat(make([]byte, 4), []byte{40, 0, 0, 0}, make([]byte, 44)), uint8(0))
	f.Add(hdr(vhost.ReqGetFeatures, 1, 0), []byte{}, uint8(0))
	f.Fuzz(func(t *testing.T, h, payload []byte, nfds uint8) {
		if len(h) < vhost.HeaderSize {
			return
		}
		header := vhost.DecodeHeader(h)
		_, err := vhost.CheckMessageForTest(header, payload, int(nfds))
		if err != nil {
			return
		}
		if int(header.Size) != len(payload) || header.Flags&3 != 1 {
			t.Fatalf("accepted header %+v with %d payload bytes", header, len(payload))
		}
		if nfds > vhost.MaxMemRegions {
			t.Fatalf("accepted %d fds", nfds)
		}
		if header.Request == vhost.ReqSetMemTable && int(binary.LittleEndian.Uint32(payload)) != int(nfds) {
			t.Fatalf("SET_MEM_TABLE accepted with %d fds for %d regions", nfds, binary.LittleEndian.Uint32(payload))
		}
	})
}

// FuzzServeConn streams random bytes at a live back-end: it must end the session (nil or error)
// when the front-end hangs up, without panicking or hanging.
func FuzzServeConn(f *testing.F) {
	f.Add(concat(hdrBytes(vhost.ReqSetOwner, 1, 0), hdrBytes(vhost.ReqGetFeatures, 1, 0)))
	f.Add(concat(hdrBytes(vhost.ReqSetVringNum, 9, 8), vringState(1, 8), hdrBytes(vhost.ReqGetVringBase, 1, 8), vringState(1, 0)))
	f.Add(concat(hdrBytes(vhost.ReqSetProtocolFeatures, 1, 8), u64(vhost.ProtocolReplyAck), hdrBytes(99, 9, 0)))
	f.Fuzz(func(t *testing.T, stream []byte) {
		hs, front := startBackend(t, vhost.Config{StopTimeout: 100 * time.Millisecond}, &echo{})
		go func() {
			// Drain replies so the back-end never blocks writing.
			var b [4096]byte
			for {
				if _, err := front.Read(b[:]); err != nil {
					return
				}
			}
		}()
		front.Write(stream)
		front.CloseWrite()
		select {
		case <-hs.done:
		case <-time.After(10 * time.Second):
			t.Fatal("ServeConn did not end after the front-end hung up")
		}
		front.Close()
	})
}

func hdrBytes(req, flags, size uint32) []byte {
	b := make([]byte, vhost.HeaderSize)
	vhost.Header{Request: req, Flags: flags, Size: size}.Encode(b)
	return b
}
