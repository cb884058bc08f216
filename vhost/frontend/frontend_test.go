package frontend_test

import (
	"testing"

	"github.com/uvfsd/uvfsd/vhost"
	"github.com/uvfsd/uvfsd/vhost/frontend"
)

type nop struct{}

func (nop) Serve(queue int, r *vhost.Request) { r.Complete(0) }

func connected(t *testing.T, o frontend.Options) *frontend.Frontend {
	t.Helper()
	return connectedTo(t, o, nop{})
}

// connectedTo returns a negotiated front-end whose back-end serves h.
func connectedTo(t *testing.T, o frontend.Options, h vhost.Handler) *frontend.Frontend {
	t.Helper()
	front, back, err := frontend.SocketPair()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- vhost.NewBackend(vhost.Config{}, h).ServeConn(back) }()
	f, err := frontend.New(front, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		if err := <-done; err != nil {
			t.Errorf("ServeConn: %v", err)
		}
	})
	return f
}

// TestAllocatorReusesFreedMemory fills guest memory, frees it in a scattered order and checks
// that one allocation as large as everything freed fits again (frees coalesce).
func TestAllocatorReusesFreedMemory(t *testing.T) {
	f := connected(t, frontend.Options{MemSize: 1 << 20, QueueSize: 8})
	var addrs []uint64
	for {
		gpa, b, err := f.Alloc(1000)
		if err != nil {
			break
		}
		if len(b) != 1000 || gpa%16 != 0 {
			t.Fatalf("Alloc(1000) = %#x with %d bytes", gpa, len(b))
		}
		addrs = append(addrs, gpa)
	}
	if len(addrs) < 900 {
		t.Fatalf("only %d allocations of 1000 bytes fit in 1 MiB", len(addrs))
	}
	for i := 0; i < len(addrs); i += 2 {
		f.Free(addrs[i])
	}
	for i := 1; i < len(addrs); i += 2 {
		f.Free(addrs[i])
	}
	if _, _, err := f.Alloc(len(addrs) * 1000); err != nil {
		t.Fatalf("freed memory did not coalesce: %v", err)
	}
}

func TestCallRejectsBadQueueAndOversizedChain(t *testing.T) {
	f := connected(t, frontend.Options{MemSize: 1 << 20, QueueSize: 4})
	if _, _, err := f.Call(5, [][]byte{[]byte("x")}, nil); err == nil {
		t.Error("Call on a queue that does not exist succeeded")
	}
	if _, _, err := f.Call(1, [][]byte{{1}, {2}, {3}}, []int{1, 1}); err == nil {
		t.Error("a 5-buffer chain in a 4-entry ring succeeded")
	}
	if _, n, err := f.Call(1, [][]byte{{1}}, []int{1}); err != nil || n != 0 {
		t.Errorf("Call = %d, %v", n, err)
	}
}

// TestSocketPairConnectsBothEnds checks that bytes written on one end
// arrive on the other, both ways.
func TestSocketPairConnectsBothEnds(t *testing.T) {
	front, back, err := frontend.SocketPair()
	if err != nil {
		t.Fatal(err)
	}
	defer front.Close()
	defer back.Close()
	for _, c := range []struct {
		name     string
		from, to interface {
			Write([]byte) (int, error)
			Read([]byte) (int, error)
		}
	}{{"front to back", front, back}, {"back to front", back, front}} {
		msg := []byte(c.name)
		if _, err := c.from.Write(msg); err != nil {
			t.Fatalf("%s: write: %v", c.name, err)
		}
		got := make([]byte, len(msg)+8)
		n, err := c.to.Read(got)
		if err != nil || string(got[:n]) != c.name {
			t.Errorf("%s: read %q, %v; want %q", c.name, got[:n], err, c.name)
		}
	}
}
