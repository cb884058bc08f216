package main

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/fuse/fusetest"
	"github.com/uvfsd/uvfsd/vhost/frontend"
)

func TestAllocSide(t *testing.T) {
	cases := []struct {
		funcs []string
		want  string
	}{
		{[]string{"runtime.mallocgc", modulePrefix + "passfs.(*FS).Lookup", modulePrefix + "vhost.(*worker).run"}, "server"},
		{[]string{"runtime.makechan", modulePrefix + "vhost/frontend.(*Frontend).Call", "main.fuseGetattr.func1"}, "client"},
		{[]string{modulePrefix + "fuse/fusetest.Bytes[...]"}, "client"},
		{[]string{"runtime.malg", "runtime.newproc1"}, "runtime"},
		// A server allocation below this program's handler is still the server's.
		{[]string{modulePrefix + "passfs.(*FS).Create", "main.fuseHandler.Serve", modulePrefix + "vhost.(*worker).drain"}, "server"},
	}
	for _, c := range cases {
		if got := allocSide(c.funcs); got != c.want {
			t.Errorf("allocSide(%v) = %s, want %s", c.funcs, got, c.want)
		}
	}
}

func TestStatsLatencyIsLittlesLaw(t *testing.T) {
	s := stats{ops: 1000, elapsed: time.Second, depth: 64}
	if s.opsPerSec() != 1000 || s.latency() != 64*time.Millisecond {
		t.Fatalf("ops/s %v latency %v", s.opsPerSec(), s.latency())
	}
	if (stats{}).latency() != 0 || (stats{}).opsPerSec() != 0 {
		t.Fatal("empty stats are not zero")
	}
}

func TestMeasureCountsEveryWorker(t *testing.T) {
	var calls atomic.Int64
	st, err := measure(4, 50*time.Millisecond, func(int) (opFunc, error) {
		return func() error { calls.Add(1); time.Sleep(time.Millisecond); return nil }, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.depth != 4 || st.ops == 0 || st.ops+4*warmupOps != calls.Load() {
		t.Fatalf("stats %+v after %d calls", st, calls.Load())
	}
	// Four workers sleeping 1 ms each for ~50 ms: the mean latency is about 1 ms.
	if st.latency() < time.Millisecond || st.latency() > 20*time.Millisecond {
		t.Fatalf("latency %v", st.latency())
	}
}

func TestMeasureStopsOnError(t *testing.T) {
	boom := errors.New("boom")
	var n atomic.Int64
	_, err := measure(2, time.Second, func(int) (opFunc, error) {
		return func() error {
			if n.Add(1) > warmupOps+5 {
				return boom
			}
			return nil
		}, nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err %v, want boom", err)
	}
}

// TestDirectOpsOnFixture runs every direct-syscall operation on a real
// fixture: they are the limit the table compares against, so they must do
// the work they claim.
func TestDirectOpsOnFixture(t *testing.T) {
	share := t.TempDir()
	if err := makeFixture(share, false, 0, 0); err != nil {
		t.Fatal(err)
	}
	fdsBefore := countFDs(t)
	d, err := openDirectFixture(share)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		// The operations' fds close with the fixture: a run opens them per worker, depth and round.
		d.close()
		if n := countFDs(t); n != fdsBefore {
			t.Errorf("%d fds open after the fixture closed, %d before", n, fdsBefore)
		}
	}()
	for _, op := range benchOps {
		fn, err := op.direct(d, 3)
		if err != nil {
			t.Fatalf("%s: %v", op.name, err)
		}
		for range 3 {
			if err := fn(); err != nil {
				t.Fatalf("%s: %v", op.name, err)
			}
		}
	}
	entries, err := os.ReadDir(d.root + "/" + createDir)
	if err != nil || len(entries) != 3 || !strings.HasPrefix(entries[0].Name(), "d3-") {
		t.Fatalf("CREATE made %v (err %v), want three d3-N files", entries, err)
	}
}

// TestFuseOpsInProcess runs every FUSE operation through the in-process
// stack (front-end, vhost, fuse, passfs) and the allocation count.
func TestFuseOpsInProcess(t *testing.T) {
	share := t.TempDir()
	if err := makeFixture(share, false, 0, 0); err != nil {
		t.Fatal(err)
	}
	small := frontend.Options{MemSize: 16 << 20, QueueSize: 512, Indirect: true, EventIdx: true, Timeout: 10 * time.Second}
	st, err := measure(8, 20*time.Millisecond, func(w int) (opFunc, error) {
		p, err := startInProcess(share, small)
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { p.close() })
		s, err := newSession(p.front, uint32(os.Getuid()), uint32(os.Getgid()))
		if err != nil {
			return nil, err
		}
		return benchOps[w%len(benchOps)].fuse(s, w)
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.ops == 0 {
		t.Fatal("no operation completed")
	}
	allocs, err := measureAllocs(share, small, 20)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range benchOps {
		r, ok := allocs[op.name]
		if !ok || r.client <= 0 {
			// The front-end allocates on every call: zero means the profile saw nothing.
			t.Errorf("%s: %+v, want client allocations counted", op.name, r)
		}
	}
	var buf bytes.Buffer
	writeAllocTable(&buf, allocs)
	if !strings.Contains(buf.String(), "READ 4 KiB") {
		t.Errorf("allocation table:\n%s", buf.String())
	}
}

// TestPipeOpsInProcess runs every pipelined operation against the in-process stack and checks
// that a failing request stops the measurement instead of being counted.
func TestPipeOpsInProcess(t *testing.T) {
	share := t.TempDir()
	if err := makeFixture(share, false, 0, 0); err != nil {
		t.Fatal(err)
	}
	opts := frontend.Options{MemSize: 64 << 20, QueueSize: 1024, Indirect: true, EventIdx: true, Timeout: 10 * time.Second}
	p, err := startInProcess(share, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	s, err := newSession(p.front, uint32(os.Getuid()), uint32(os.Getgid()))
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range benchOps {
		if op.pipe == nil {
			continue
		}
		req, err := op.pipe(s)
		if err != nil {
			t.Fatalf("%s: %v", op.name, err)
		}
		st, err := measurePipe(s.f, 4, 20*time.Millisecond, 0, req)
		if err != nil || st.ops == 0 {
			t.Fatalf("%s: %d ops, %v", op.name, st.ops, err)
		}
	}
	bad := pipeRequest{in: s.c.Frame(fuse.OpGetattr, 1<<40, fusetest.Bytes(&fuse.GetattrIn{})), outSize: 16 + attrOutSize, minReply: uint32(16 + attrOutSize)}
	if st, err := measurePipe(s.f, 2, 20*time.Millisecond, 0, bad); err == nil {
		t.Fatalf("GETATTR of an unknown node: %d ops counted, no error", st.ops)
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}
