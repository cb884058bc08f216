package frontend_test

import (
	"bytes"
	"slices"
	"sync"
	"testing"

	"github.com/uvfsd/uvfsd/vhost"
	"github.com/uvfsd/uvfsd/vhost/frontend"
)

// chainRecorder records the buffer sizes of each chain it serves and
// answers with the device-readable bytes, truncated to the reply area.
type chainRecorder struct {
	mu       sync.Mutex
	in, outs [][]int
}

func (c *chainRecorder) Serve(_ int, r *vhost.Request) {
	var in []byte
	var inSizes, outSizes []int
	for _, b := range r.In {
		in = append(in, b...)
		inSizes = append(inSizes, len(b))
	}
	written := 0
	for _, b := range r.Out {
		outSizes = append(outSizes, len(b))
		written += copy(b, in[written:])
	}
	c.mu.Lock()
	c.in, c.outs = append(c.in, inSizes), append(c.outs, outSizes)
	c.mu.Unlock()
	r.Complete(uint32(written))
}

// TestTransportLaysOutChainsLikeLinux checks the descriptor layout the
// back-end sees: pages for large requests, a 16-byte header buffer before
// the pages of a large reply, no reply buffers on a no-reply queue.
func TestTransportLaysOutChainsLikeLinux(t *testing.T) {
	rec := &chainRecorder{}
	f := connectedTo(t, frontend.Options{MemSize: 1 << 20, QueueSize: 16}, rec)
	big := bytes.Repeat([]byte("0123456789"), 1000) // 10000 bytes
	cases := []struct {
		name     string
		tr       frontend.Transport
		in       [][]byte
		outSize  int
		wantIn   []int
		wantOuts []int
		wantOut  []byte
	}{
		{"small", frontend.Transport{F: f, Queue: 1}, [][]byte{big[:40], big[40:50]}, 64,
			[]int{40, 10}, []int{64}, big[:50]},
		{"large both ways", frontend.Transport{F: f, Queue: 1}, [][]byte{big[:8], big[8:]}, 9000,
			[]int{8, 4096, 4096, 1800}, []int{16, 4096, 4096, 792}, big[:9000]},
		{"no reply", frontend.Transport{F: f, Queue: 0, NoReply: true}, [][]byte{big[:24]}, 64,
			[]int{24}, nil, nil},
	}
	for i, c := range cases {
		out, err := c.tr.Call(c.in, c.outSize)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !bytes.Equal(out, c.wantOut) {
			t.Errorf("%s: reply of %d bytes, want %d", c.name, len(out), len(c.wantOut))
		}
		rec.mu.Lock()
		gotIn, gotOuts := rec.in[i], rec.outs[i]
		rec.mu.Unlock()
		if !slices.Equal(gotIn, c.wantIn) || !slices.Equal(gotOuts, c.wantOuts) {
			t.Errorf("%s: back-end saw readable %v, writable %v; want %v, %v", c.name, gotIn, gotOuts, c.wantIn, c.wantOuts)
		}
	}
}
