package frontend_test

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/vhost"
	"github.com/uvfsd/uvfsd/vhost/frontend"
)

// echo answers every chain by writing its request's first 8 bytes and a running count into the
// first device-writable buffer.
type echo struct{ served atomic.Int64 }

func (e *echo) Serve(queue int, r *vhost.Request) {
	n := e.served.Add(1)
	out := r.Out[0]
	copy(out[:8], r.In[0])
	binary.LittleEndian.PutUint64(out[8:], uint64(n))
	r.Complete(16)
}

func TestPipelineResubmitsUntilTheDeadline(t *testing.T) {
	for _, o := range []frontend.Options{
		{QueueSize: 64, EventIdx: true, Indirect: true},
		{QueueSize: 64, EventIdx: true},
		{QueueSize: 64, Indirect: true},
	} {
		for _, spin := range []time.Duration{0, 50 * time.Microsecond} {
			t.Run(fmt.Sprintf("eventidx=%v/indirect=%v/spin=%v", o.EventIdx, o.Indirect, spin), func(t *testing.T) {
				h := &echo{}
				f := connectedTo(t, o, h)
				const depth = 8
				p, err := f.NewPipeline(1, depth, [][]byte{[]byte("request!"), make([]byte, 100)}, []int{16, 4096})
				if err != nil {
					t.Fatal(err)
				}
				var last uint64
				ops, elapsed, err := p.Run(50*time.Millisecond, spin, func(header []byte, written uint32) error {
					if written != 16 || string(header[:8]) != "request!" {
						return fmt.Errorf("completion wrote %d bytes %q", written, header[:8])
					}
					last = binary.LittleEndian.Uint64(header[8:])
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if ops < depth || elapsed < 50*time.Millisecond {
					t.Fatalf("%d completions in %v", ops, elapsed)
				}
				// Every chain in flight at the deadline completed too, and nothing more was sent.
				if served := h.served.Load(); served != ops+depth || last == 0 {
					t.Fatalf("back-end served %d chains, pipeline counted %d + %d in flight (last %d)", served, ops, depth, last)
				}
				if _, _, err := f.Call(1, [][]byte{[]byte("during..")}, []int{16}); err == nil {
					t.Fatal("Call on a pipelined queue succeeded")
				}
				if err := p.Close(); err != nil {
					t.Fatal(err)
				}
				out, n, err := f.Call(1, [][]byte{[]byte("after..."), {0}}, []int{16})
				if err != nil || n != 16 || string(out[:8]) != "after..." {
					t.Fatalf("Call after Close: %q, %d, %v", out, n, err)
				}
			})
		}
	}
}

func TestPipelineRefusesMoreChainsThanTheRingHolds(t *testing.T) {
	f := connected(t, frontend.Options{QueueSize: 8})
	if _, err := f.NewPipeline(1, 3, [][]byte{make([]byte, 8)}, []int{16, 16}); err == nil {
		t.Fatal("3 chains of 3 descriptors fit a ring of 8")
	}
	p, err := f.NewPipeline(1, 2, [][]byte{make([]byte, 8)}, []int{16, 16})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}
