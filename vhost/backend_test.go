package vhost_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/vhost"
	"github.com/uvfsd/uvfsd/vhost/frontend"
)

func TestEchoOverSocketpair(t *testing.T) {
	hs := start(t, vhost.Config{}, &echo{}, frontend.Options{})
	out, n, err := hs.f.Call(1, [][]byte{[]byte("hello"), []byte(", world")}, []int{3, 64})
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "hello, world" || n != 12 {
		t.Fatalf("echo = %q, %d bytes", out, n)
	}
	hs.mustEcho(0, "hiprio")
}

func TestNegotiationAnswers(t *testing.T) {
	for _, tag := range []string{"", "myfs"} {
		t.Run("tag="+tag, func(t *testing.T) {
			hs := start(t, vhost.Config{Tag: tag, RequestQueues: 3}, &echo{}, frontend.Options{})
			p, err := hs.f.Request(vhost.ReqGetFeatures, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := vhost.FeatureVersion1 | vhost.FeatureIndirectDesc | vhost.FeatureEventIdx | vhost.FeatureProtocolFeatures
			if got := binary.LittleEndian.Uint64(p); got != want {
				t.Errorf("features %#x, want %#x", got, want)
			}
			p, err = hs.f.Request(vhost.ReqGetProtocolFeatures, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			proto := binary.LittleEndian.Uint64(p)
			for _, bit := range []uint64{vhost.ProtocolMQ, vhost.ProtocolReplyAck, vhost.ProtocolConfigureMemSlots, vhost.ProtocolResetDevice} {
				if proto&bit == 0 {
					t.Errorf("protocol features %#x lack %#x", proto, bit)
				}
			}
			if (proto&vhost.ProtocolConfig != 0) != (tag != "") {
				t.Errorf("protocol features %#x: CONFIG must be offered exactly when a tag is set", proto)
			}
			p, err = hs.f.Request(vhost.ReqGetQueueNum, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if n := binary.LittleEndian.Uint64(p); n != 4 {
				t.Errorf("GET_QUEUE_NUM = %d, want hiprio + 3", n)
			}
			cfg, err := hs.f.GetConfig(0, vhost.FSConfigSize)
			if tag == "" {
				if err == nil {
					t.Errorf("GET_CONFIG without a tag succeeded: %q", cfg)
				}
				hs.mustEcho(1, "still usable")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := string(bytes.TrimRight(cfg[:36], "\x00")); got != tag {
				t.Errorf("config tag %q, want %q", got, tag)
			}
			if n := binary.LittleEndian.Uint32(cfg[36:]); n != 3 {
				t.Errorf("config num_request_queues %d, want 3", n)
			}
			if _, err := hs.f.GetConfig(30, 20); err == nil {
				t.Error("GET_CONFIG beyond the 40-byte space succeeded")
			}
		})
	}
}

func TestTagTooLongIsRefused(t *testing.T) {
	hs, front := startBackend(t, vhost.Config{Tag: strings.Repeat("x", 37)}, &echo{})
	defer front.Close()
	if err := hs.wait(5 * time.Second); err == nil || !strings.Contains(err.Error(), "shorter tag") {
		t.Fatalf("ServeConn with a 37-byte tag: %v", err)
	}
}

func TestMultipleQueues(t *testing.T) {
	h := &echo{}
	hs := start(t, vhost.Config{RequestQueues: 3}, h, frontend.Options{Queues: 4})
	for q := 0; q < 4; q++ {
		for i := 0; i <= q; i++ {
			hs.mustEcho(q, fmt.Sprintf("queue %d call %d", q, i))
		}
	}
	for q := 0; q < 4; q++ {
		if got := h.served[q].Load(); got != int64(q+1) {
			t.Errorf("queue %d served %d requests, want %d", q, got, q+1)
		}
	}
}

func TestIndirectDescriptors(t *testing.T) {
	hs := start(t, vhost.Config{}, &echo{}, frontend.Options{Indirect: true, QueueSize: 16})
	// More buffers than a direct chain of this ring could take at once is fine through a table.
	in := [][]byte{[]byte("a"), []byte("bb"), []byte("ccc"), []byte("dddd")}
	out, n, err := hs.f.Call(1, in, []int{2, 2, 2, 2, 2})
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "abbcccdddd" || n != 10 {
		t.Fatalf("indirect echo = %q (%d)", out, n)
	}
}

func TestConcurrentCalls(t *testing.T) {
	for _, pool := range []int{0, 4} {
		t.Run(fmt.Sprintf("pool=%d", pool), func(t *testing.T) {
			hs := start(t, vhost.Config{ThreadPoolSize: pool, RequestQueues: 2}, &echo{}, frontend.Options{Queues: 3, EventIdx: true, QueueSize: 64})
			var wg sync.WaitGroup
			errs := make(chan error, 16)
			for g := 0; g < 8; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 100; i++ {
						msg := fmt.Sprintf("goroutine %d call %d", g, i)
						out, _, err := hs.f.Call(1+g%2, [][]byte{[]byte(msg)}, []int{64})
						if err != nil {
							errs <- err
							return
						}
						if string(out) != msg {
							errs <- fmt.Errorf("got %q, want %q", out, msg)
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// later completes every request from another goroutine after a delay.
type later struct{ delay time.Duration }

func (l later) Serve(queue int, r *vhost.Request) {
	go func() {
		time.Sleep(l.delay)
		r.Complete(uint32(copyChain(r.Out, r.In)))
	}()
}

func TestAsyncComplete(t *testing.T) {
	hs := start(t, vhost.Config{}, later{delay: 20 * time.Millisecond}, frontend.Options{})
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := fmt.Sprintf("async %d", i)
			out, _, err := hs.f.Call(1, [][]byte{[]byte(msg)}, []int{32})
			if err != nil || string(out) != msg {
				t.Errorf("async call %d: %q, %v", i, out, err)
			}
		}()
	}
	wg.Wait()
}

// publishEcho writes a two-descriptor echo chain at heads (a, a+1) without kicking.
func publishEcho(t *testing.T, f *frontend.Frontend, queue int, head uint16, msg string) {
	t.Helper()
	in, b, err := f.Alloc(len(msg))
	if err != nil {
		t.Fatal(err)
	}
	copy(b, msg)
	out, _, err := f.Alloc(64)
	if err != nil {
		t.Fatal(err)
	}
	f.SetDesc(queue, int(head), frontend.Desc{Addr: in, Len: uint32(len(msg)), Flags: frontend.DescNext, Next: head + 1})
	f.SetDesc(queue, int(head)+1, frontend.Desc{Addr: out, Len: 64, Flags: frontend.DescWrite})
	f.Publish(queue, head)
}

func waitUsed(t *testing.T, f *frontend.Frontend, queue, n int) []frontend.UsedElem {
	t.Helper()
	var got []frontend.UsedElem
	for i := 0; i < n; i++ {
		e, err := f.WaitUsed(queue, 5*time.Second)
		if err != nil {
			t.Fatalf("used entry %d of %d: %v", i+1, n, err)
		}
		got = append(got, e)
	}
	return got
}

func TestBatchedNotificationAndEventIdxSuppression(t *testing.T) {
	hs := start(t, vhost.Config{}, &echo{}, frontend.Options{EventIdx: true})
	f := hs.f
	f.SetUsedEvent(1, 0) // interrupt me once used idx passes 0
	for i := 0; i < 4; i++ {
		publishEcho(t, f, 1, uint16(2*i), "batch")
	}
	if err := f.Kick(1); err != nil {
		t.Fatal(err)
	}
	waitUsed(t, f, 1, 4)
	time.Sleep(50 * time.Millisecond) // let a (wrong) second notification arrive
	if n := f.Notifications(1); n != 1 {
		t.Fatalf("4 requests drained in one go raised %d notifications, want 1", n)
	}
	if ev := f.AvailEvent(1); ev != 4 {
		t.Errorf("avail_event = %d, want 4 (next entry to be published)", ev)
	}

	f.SetUsedEvent(1, 100) // not interested until used idx passes 100
	publishEcho(t, f, 1, 0, "quiet")
	f.Kick(1)
	waitUsed(t, f, 1, 1)
	time.Sleep(50 * time.Millisecond)
	if n := f.Notifications(1); n != 1 {
		t.Fatalf("used_event far ahead: notifications = %d, want still 1", n)
	}

	f.SetUsedEvent(1, 5) // used idx is 5 now: the next completion (5 -> 6) must notify
	publishEcho(t, f, 1, 0, "loud")
	f.Kick(1)
	waitUsed(t, f, 1, 1)
	time.Sleep(50 * time.Millisecond)
	if n := f.Notifications(1); n != 2 {
		t.Fatalf("used_event reached: notifications = %d, want 2", n)
	}
}

func TestNoInterruptFlagWithoutEventIdx(t *testing.T) {
	hs := start(t, vhost.Config{}, &echo{}, frontend.Options{})
	f := hs.f
	hs.mustEcho(1, "first")
	before := f.Notifications(1)
	if before == 0 {
		t.Fatal("no notification for a completed request")
	}
	f.SetAvailFlags(1, frontend.AvailNoInterrupt)
	publishEcho(t, f, 1, 0, "silent")
	f.Kick(1)
	waitUsed(t, f, 1, 1)
	time.Sleep(50 * time.Millisecond)
	if n := f.Notifications(1); n != before {
		t.Fatalf("NO_INTERRUPT set: notifications went from %d to %d", before, n)
	}
}

func TestGetVringBaseStopsTheRing(t *testing.T) {
	h := &echo{}
	hs := start(t, vhost.Config{}, h, frontend.Options{Timeout: 300 * time.Millisecond})
	for i := 0; i < 5; i++ {
		hs.mustEcho(1, "before stop")
	}
	base, err := hs.f.GetVringBase(1)
	if err != nil {
		t.Fatal(err)
	}
	if base != 5 {
		t.Fatalf("GET_VRING_BASE = %d, want 5", base)
	}
	if _, _, err := hs.f.Call(1, [][]byte{[]byte("x")}, []int{8}); err == nil {
		t.Fatal("a stopped ring still served a request")
	}
	if got := h.served[1].Load(); got != 5 {
		t.Fatalf("served %d requests after stop, want 5", got)
	}
	// Restart like QEMU does; the request queued while stopped is served now.
	if err := hs.f.StartQueue(1); err != nil {
		t.Fatal(err)
	}
	if _, err := hs.f.WaitUsed(1, 5*time.Second); err != nil {
		t.Fatalf("request queued while stopped: %v", err)
	}
	hs.mustEcho(1, "after restart")
	if base, err := hs.f.GetVringBase(1); err != nil || base != 7 {
		t.Fatalf("second GET_VRING_BASE = %d, %v; want 7", base, err)
	}
}

// stuck never completes requests until released.
type stuck struct{ release chan struct{} }

func (s stuck) Serve(queue int, r *vhost.Request) {
	go func() {
		<-s.release
		r.Complete(0)
	}()
}

func TestGetVringBaseDoesNotWaitForeverForInflight(t *testing.T) {
	h := stuck{release: make(chan struct{})}
	hs := start(t, vhost.Config{StopTimeout: 200 * time.Millisecond}, h, frontend.Options{Timeout: 100 * time.Millisecond})
	if _, _, err := hs.f.Call(1, [][]byte{[]byte("x")}, []int{8}); err == nil {
		t.Fatal("stuck handler answered")
	}
	t0 := time.Now()
	base, err := hs.f.GetVringBase(1)
	if err != nil || base != 1 {
		t.Fatalf("GET_VRING_BASE = %d, %v; want 1", base, err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Fatalf("GET_VRING_BASE took %v", d)
	}
	close(h.release) // the late completion must be dropped, not written to a stopped ring
	time.Sleep(50 * time.Millisecond)
	if idx := hs.f.UsedIdx(1); idx != 0 {
		t.Fatalf("late completion after GET_VRING_BASE reached the used ring (idx %d)", idx)
	}
}

// stuckWhileHeld completes asynchronously: never while held is set (a request blocked for good),
// at once otherwise.
type stuckWhileHeld struct {
	held    atomic.Bool
	stuck   atomic.Int32
	release chan struct{}
}

func (s *stuckWhileHeld) Serve(queue int, r *vhost.Request) {
	if !s.held.Load() {
		r.Complete(0)
		return
	}
	s.stuck.Add(1)
	go func() {
		<-s.release
		r.Complete(0)
	}()
}

// Requests abandoned at GET_VRING_BASE (their handler never returned) belong to the old ring: a
// full ring of them must not throttle the restarted ring, nor make the next GET_VRING_BASE wait.
func TestAbandonedRequestsDoNotCountOnTheNextRing(t *testing.T) {
	h := &stuckWhileHeld{release: make(chan struct{})}
	h.held.Store(true)
	defer close(h.release)
	const size = 8
	hs := start(t, vhost.Config{StopTimeout: 200 * time.Millisecond}, h, frontend.Options{QueueSize: size, Timeout: 2 * time.Second})
	f := hs.f
	gpa, _, err := f.Alloc(64)
	if err != nil {
		t.Fatal(err)
	}
	f.SetDesc(1, 0, frontend.Desc{Addr: gpa, Len: 64, Flags: frontend.DescWrite})
	for range size {
		f.Publish(1, 0)
	}
	f.Kick(1)
	for deadline := time.Now().Add(5 * time.Second); h.stuck.Load() < size; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d requests reached the handler after 5 s", h.stuck.Load(), size)
		}
	}
	if base, err := f.GetVringBase(1); err != nil || base != size {
		t.Fatalf("GET_VRING_BASE = %d, %v; want %d", base, err, size)
	}
	h.held.Store(false)
	if err := f.StartQueue(1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Call(1, [][]byte{[]byte("x")}, []int{8}); err != nil {
		t.Fatalf("a request on the restarted ring: %v", err)
	}
	t0 := time.Now()
	if _, err := f.GetVringBase(1); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d >= 200*time.Millisecond {
		t.Errorf("the second GET_VRING_BASE took %v: it waited for the first ring's requests", d)
	}
}

// blocking blocks inside Serve (inline) until released.
type blocking struct{ release chan struct{} }

func (b blocking) Serve(queue int, r *vhost.Request) {
	<-b.release
	r.Complete(0)
}

func TestGetVringBaseWithHandlerBlockedInline(t *testing.T) {
	h := blocking{release: make(chan struct{})}
	defer close(h.release)
	hs := start(t, vhost.Config{StopTimeout: 200 * time.Millisecond}, h, frontend.Options{Timeout: 100 * time.Millisecond})
	hs.f.Call(1, [][]byte{[]byte("x")}, []int{8})
	done := make(chan error, 1)
	go func() { _, err := hs.f.GetVringBase(1); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("GET_VRING_BASE hangs while a handler blocks")
	}
}

func TestDisconnectEndsServeConn(t *testing.T) {
	hs := start(t, vhost.Config{}, &echo{}, frontend.Options{})
	hs.mustEcho(1, "x")
	hs.f.Close()
	if err := hs.wait(5 * time.Second); err != nil {
		t.Fatalf("ServeConn = %v, want nil after disconnect", err)
	}
}

func TestRemoveAndAddMemoryRegion(t *testing.T) {
	hs := start(t, vhost.Config{}, &echo{}, frontend.Options{Timeout: 300 * time.Millisecond})
	f := hs.f
	hs.mustEcho(1, "before")
	if err := f.SendMemReg(vhost.ReqRemMemReg, f.Region(), f.MemFD()); err != nil {
		t.Fatalf("REM_MEM_REG: %v", err)
	}
	if _, _, err := f.Call(1, [][]byte{[]byte("x")}, []int{8}); err == nil {
		t.Fatal("request served without guest memory")
	}
	if err := f.SendMemReg(vhost.ReqRemMemReg, f.Region(), -1); err == nil {
		t.Fatal("removing a region twice succeeded")
	}
	if err := f.SendMemReg(vhost.ReqAddMemReg, f.Region(), f.MemFD()); err != nil {
		t.Fatalf("ADD_MEM_REG: %v", err)
	}
	if err := f.SendMemReg(vhost.ReqAddMemReg, f.Region(), f.MemFD()); err == nil {
		t.Fatal("adding an overlapping region succeeded")
	}
	// The request queued while memory was gone is served once it is back.
	if _, err := f.WaitUsed(1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	hs.mustEcho(1, "after")
}

func TestResetDeviceStopsRings(t *testing.T) {
	h := &echo{}
	hs := start(t, vhost.Config{}, h, frontend.Options{Timeout: 300 * time.Millisecond})
	hs.mustEcho(1, "x")
	if _, err := hs.f.Request(vhost.ReqResetDevice, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := hs.f.Call(1, [][]byte{[]byte("x")}, []int{8}); err == nil {
		t.Fatal("ring still running after RESET_DEVICE")
	}
}

// TestQueuesFollowTheFrontEnd sets up four request queues against a back-end that was not told how
// many to serve: it serves each on its own, counts them apart, and answers GET_QUEUE_NUM with the
// most it can serve.
func TestQueuesFollowTheFrontEnd(t *testing.T) {
	h := &echo{}
	hs := start(t, vhost.Config{}, h, frontend.Options{Queues: 5})
	p, err := hs.f.Request(vhost.ReqGetQueueNum, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := binary.LittleEndian.Uint64(p); n != 1+vhost.MaxRequestQueues {
		t.Errorf("GET_QUEUE_NUM = %d, want %d", n, 1+vhost.MaxRequestQueues)
	}
	for q := 0; q < 5; q++ {
		for i := 0; i <= q; i++ {
			hs.mustEcho(q, fmt.Sprintf("queue %d call %d", q, i))
		}
	}
	counts := hs.b.QueueCounts()
	if len(counts) != 5 {
		t.Fatalf("QueueCounts = %v, want 5 queues", counts)
	}
	for q, n := range counts {
		if n != uint64(q+1) || h.served[q].Load() != int64(q+1) {
			t.Errorf("queue %d: counted %d, served %d, want %d", q, n, h.served[q].Load(), q+1)
		}
	}
}

// TestTooManyQueuesFailsAtOnce sets up three request queues, as QEMU does with
// num-request-queues=3 whatever GET_QUEUE_NUM said, against a back-end told to serve two: the
// connection must end at once with an error that names the numbers, not leave a queue unserved.
func TestTooManyQueuesFailsAtOnce(t *testing.T) {
	hs, front := startBackend(t, vhost.Config{RequestQueues: 2}, &echo{})
	defer front.Close()
	f, err := frontend.New(front, frontend.Options{Queues: 4, IgnoreQueueNum: true, Timeout: 5 * time.Second})
	if err == nil {
		f.Close()
		t.Fatal("the front-end set up a queue the back-end does not serve")
	}
	err = hs.wait(5 * time.Second)
	var limit *vhost.QueueLimitError
	if !errors.As(err, &limit) || limit.Index != 3 || limit.Served != 2 {
		t.Fatalf("ServeConn: %v, want a QueueLimitError for queue 3 of 2", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "request queue 3") || !strings.Contains(msg, "only 2 request queues") {
		t.Errorf("error %q does not name the queue and the limit", msg)
	}
}
