package main

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/e2e/guest"
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
	st, err := measure(4, 50*time.Millisecond, nil, func(int) (opFunc, error) {
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

func TestMeasureCountsCPU(t *testing.T) {
	// Two workers that spin: the process's CPU time over the run is about the wall time of each.
	st, err := measure(2, 100*time.Millisecond, selfCPU, func(int) (opFunc, error) {
		return func() error {
			for t0 := time.Now(); time.Since(t0) < 100*time.Microsecond; {
			}
			return nil
		}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !st.hasCPU || st.cpu < 50*time.Millisecond || st.cpuPerOp() < 50*time.Microsecond || st.cpuPerOp() > 5*time.Millisecond {
		t.Fatalf("CPU %v, %v per op over %d ops", st.cpu, st.cpuPerOp(), st.ops)
	}
	if s, _ := measure(1, time.Millisecond, nil, func(int) (opFunc, error) { return func() error { return nil }, nil }); s.hasCPU || s.cpuPerOp() != 0 {
		t.Fatalf("without a clock: %+v", s)
	}
}

func TestCPUTableRatios(t *testing.T) {
	r := results{}
	r.put(tDirect, "GETATTR", stats{ops: 1000, elapsed: time.Second, depth: 64, cpu: time.Millisecond, hasCPU: true})
	r.put(tUvfsd, "GETATTR", stats{ops: 1000, elapsed: time.Second, depth: 64, cpu: 1500 * time.Microsecond, hasCPU: true})
	r.put(tC, "GETATTR", stats{ops: 1000, elapsed: time.Second, depth: 64, cpu: 3 * time.Millisecond, hasCPU: true})
	var buf bytes.Buffer
	writeCPUTable(&buf, r, []string{tUvfsd, tC, tRust, tDirect}, []int{64})
	var row string
	for _, l := range strings.Split(buf.String(), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "GETATTR ") {
			row = l
		}
	}
	// uvfsd 1.50, C 3.00, rust -, direct 1.00 µs; ratios to direct 1.50 3.00 -; uvfsd/C 0.50, uvfsd/rust -.
	if got, want := strings.Fields(row), []string{"GETATTR", "64", "1.50", "3.00", "-", "1.00", "1.50", "3.00", "-", "0.50", "-"}; !slices.Equal(got, want) {
		t.Errorf("row %q, want fields %q\n%s", row, want, buf.String())
	}
	buf.Reset()
	writeMemTable(&buf, memory{tUvfsd: {{setup: guest.RSS{Total: 8 << 20}, after: guest.RSS{Total: 12 << 20, Shmem: 4 << 20}},
		{setup: guest.RSS{Total: 9 << 20}, after: guest.RSS{Total: 11 << 20, Shmem: 1 << 20}}}}, []string{tUvfsd, tDirect})
	// Medians of the lower middle: setup 8.0 and 8.0 without shmem, after 11.0 and 8.0 without.
	if f := strings.Fields(strings.Split(buf.String(), "\n")[1]); !slices.Equal(f, []string{tUvfsd, "8.0", "8.0", "11.0", "8.0"}) || strings.Contains(buf.String(), tDirect) {
		t.Errorf("memory table:\n%s", buf.String())
	}
}

func TestMeasureStopsOnError(t *testing.T) {
	boom := errors.New("boom")
	var n atomic.Int64
	_, err := measure(2, time.Second, nil, func(int) (opFunc, error) {
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
	// One worker per operation, so that each runs its requests against the in-process daemon.
	st, err := measure(len(benchOps), 20*time.Millisecond, nil, func(w int) (opFunc, error) {
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
		st, err := measurePipe(s.f, 4, 20*time.Millisecond, 0, selfCPU, req)
		if err != nil || st.ops == 0 {
			t.Fatalf("%s: %d ops, %v", op.name, st.ops, err)
		}
		if !st.hasCPU || st.cpu < 0 {
			t.Fatalf("%s: CPU time %v (measured %v)", op.name, st.cpu, st.hasCPU)
		}
	}
	bad := pipeRequest{in: s.c.Frame(fuse.OpGetattr, 1<<40, fusetest.Bytes(&fuse.GetattrIn{})), outSize: 16 + attrOutSize, minReply: uint32(16 + attrOutSize)}
	if st, err := measurePipe(s.f, 2, 20*time.Millisecond, 0, nil, bad); err == nil {
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
