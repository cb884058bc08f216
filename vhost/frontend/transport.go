package frontend

import "fmt"

// GuestPage is the size FUSE buffers are cut into, as the guest's
// page-sized scatter-gather lists cut them.
const GuestPage = 4096

// replyHeader is the first device-writable buffer of a large reply: Linux
// gives struct fuse_out_header its own buffer before the data pages.
const replyHeader = 16

// Transport carries FUSE requests through one queue of a Frontend, laid out
// as Linux's virtio-fs driver lays them out: device-readable buffers larger
// than a page are split into pages; a reply area larger than a page becomes
// a 16-byte header buffer followed by pages, like a READ reply. It
// implements fuse/fusetest.Transport.
type Transport struct {
	F     *Frontend
	Queue int
	// NoReply sends chains without device-writable buffers, as the kernel
	// does on hiprio (FORGET, BATCH_FORGET).
	NoReply bool
}

// Call sends in and returns what the back-end wrote into outSize bytes of
// reply buffers.
func (t Transport) Call(in [][]byte, outSize int) ([]byte, error) {
	if t.NoReply {
		outSize = 0
	}
	bufs, outs := Layout(in, outSize)
	out, n, err := t.F.Call(t.Queue, bufs, outs)
	if err != nil {
		return nil, err
	}
	if int(n) != len(out) {
		return nil, fmt.Errorf("used entry claims %d bytes written into %d bytes of buffers", n, outSize)
	}
	return out, nil
}

// Layout cuts a request into the buffers Linux's virtio-fs driver would
// use: device-readable buffers larger than a page become pages; a reply
// area larger than a page becomes a 16-byte header buffer and pages. It
// returns the device-readable buffers and the device-writable sizes (none
// for outSize 0).
func Layout(in [][]byte, outSize int) ([][]byte, []int) {
	var bufs [][]byte
	for _, b := range in {
		for len(b) > GuestPage {
			bufs = append(bufs, b[:GuestPage])
			b = b[GuestPage:]
		}
		bufs = append(bufs, b)
	}
	var outs []int
	switch {
	case outSize == 0:
	case outSize > GuestPage:
		outs = append(outs, replyHeader)
		for left := outSize - replyHeader; left > 0; left -= GuestPage {
			outs = append(outs, min(left, GuestPage))
		}
	default:
		outs = []int{outSize}
	}
	return bufs, outs
}
