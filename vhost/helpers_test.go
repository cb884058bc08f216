package vhost_test

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/vhost"
	"github.com/uvfsd/uvfsd/vhost/frontend"
)

// echo copies the device-readable bytes into the device-writable buffers and records which queues
// it saw. It does not allocate, so it can sit in allocation tests.
type echo struct {
	served [8]atomic.Int64 // per queue
}

func (e *echo) Serve(queue int, r *vhost.Request) {
	if queue < len(e.served) {
		e.served[queue].Add(1)
	}
	r.Complete(uint32(copyChain(r.Out, r.In)))
}

// copyChain copies the concatenation of src into the concatenation of dst.
func copyChain(dst, src [][]byte) int {
	n, di, doff := 0, 0, 0
	for _, s := range src {
		for len(s) > 0 && di < len(dst) {
			c := copy(dst[di][doff:], s)
			s, doff, n = s[c:], doff+c, n+c
			if doff == len(dst[di]) {
				di, doff = di+1, 0
			}
		}
	}
	return n
}

// harness is a back-end serving one end of a socketpair and a front-end on the other.
type harness struct {
	t    *testing.T
	b    *vhost.Backend
	f    *frontend.Frontend
	done chan error
	logs *logSink

	closedOK bool // the test expects the back-end to drop the connection with an error
}

type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logSink) contains(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, sub) {
			return true
		}
	}
	return false
}

func (l *logSink) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines)
}

// startBackend runs ServeConn on one end and returns the other end, not yet negotiated.
func startBackend(t *testing.T, cfg vhost.Config, h vhost.Handler) (*harness, *net.UnixConn) {
	t.Helper()
	logs := &logSink{}
	if cfg.Logf == nil {
		cfg.Logf = logs.logf
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = time.Second
	}
	if cfg.HotWait == 0 { // uvfsd's default; a test that wants every wait through the runtime sets -1
		cfg.HotWait = 100 * time.Millisecond
	}
	front, back, err := frontend.SocketPair()
	if err != nil {
		t.Fatal(err)
	}
	hs := &harness{t: t, b: vhost.NewBackend(cfg, h), done: make(chan error, 1), logs: logs}
	go func() {
		defer back.Close()
		hs.done <- hs.b.ServeConn(back)
	}()
	return hs, front
}

// start returns a negotiated front-end; cleanup closes it and checks ServeConn returned nil.
func start(t *testing.T, cfg vhost.Config, h vhost.Handler, o frontend.Options) *harness {
	t.Helper()
	hs, front := startBackend(t, cfg, h)
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	f, err := frontend.New(front, o)
	if err != nil {
		front.Close()
		t.Fatalf("front-end setup: %v", err)
	}
	hs.f = f
	t.Cleanup(func() {
		f.Close()
		if err := hs.wait(10 * time.Second); err != nil && !hs.closedOK {
			t.Errorf("ServeConn after disconnect: %v", err)
		}
	})
	return hs
}

// wait returns ServeConn's result, failing the test if it does not return in time.
func (hs *harness) wait(d time.Duration) error {
	select {
	case err := <-hs.done:
		hs.done <- err // let later callers see it too
		return err
	case <-time.After(d):
		hs.t.Fatalf("ServeConn did not return within %v", d)
		return nil
	}
}

// mustEcho performs one echo call and checks the result.
func (hs *harness) mustEcho(queue int, msg string) {
	hs.t.Helper()
	out, n, err := hs.f.Call(queue, [][]byte{[]byte(msg)}, []int{len(msg) + 8})
	if err != nil {
		hs.t.Fatalf("queue %d call: %v", queue, err)
	}
	if string(out) != msg || int(n) != len(msg) {
		hs.t.Fatalf("queue %d echo = %q (%d bytes), want %q", queue, out, n, msg)
	}
}
