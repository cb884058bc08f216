package vhost_test

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/vhost"
	"github.com/uvfsd/uvfsd/vhost/frontend"
)

// A worker must serve every request whether it waits hot or not: back to back, spaced within the
// hot period (it waits in its raw ppoll), and spaced beyond it (it sleeps cold and must be kicked
// awake), on the request queue and on the lingering hiprio queue.
func TestHotAndColdWorkersMissNoRequest(t *testing.T) {
	for _, hot := range []time.Duration{-1, 20 * time.Millisecond} { // -1: never hot
		for _, eventIdx := range []bool{true, false} {
			hs := start(t, vhost.Config{HotWait: hot, HiprioLinger: time.Millisecond}, &echo{},
				frontend.Options{EventIdx: eventIdx, Indirect: true, QueueSize: 64})
			p, err := hs.f.NewPipeline(1, 4, [][]byte{make([]byte, 16)}, []int{16})
			if err != nil {
				t.Fatal(err)
			}
			if ops, _, err := p.Run(200*time.Millisecond, 0, nil); err != nil || ops < 4 {
				t.Fatalf("hot wait %v, event idx %v: pipeline: %d requests, %v", hot, eventIdx, ops, err)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			for _, gap := range []time.Duration{0, 2 * time.Millisecond, 7 * time.Millisecond, 50 * time.Millisecond} {
				for _, queue := range []int{0, 1} {
					time.Sleep(gap)
					hs.mustEcho(queue, "after a gap")
				}
			}
		}
	}
}

// GET_VRING_BASE must not wait for the hot waits to end: the control eventfd is in the raw ppoll
// too. (A worker that missed it would stop only when it turns cold, after 10 s here.)
func TestHotWorkerStopsAtOnce(t *testing.T) {
	hs := start(t, vhost.Config{HotWait: 10 * time.Second, StopTimeout: 30 * time.Second}, &echo{}, frontend.Options{EventIdx: true, QueueSize: 64})
	hs.mustEcho(1, "now wait hot")
	time.Sleep(time.Millisecond)
	begin := time.Now()
	if _, err := hs.f.GetVringBase(1); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Fatalf("GET_VRING_BASE took %v with the worker waiting hot", d)
	}
}

// A worker waiting hot keeps its P, so each adds one to GOMAXPROCS while it runs, up to doubling
// what the process had: even a process with a single P keeps serving (the front-end here needs a
// P too). The value goes back when the workers stop.
func TestHotWorkersAddPs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, c := range []struct{ before, want int }{{2, 4}, {1, 2}} { // two workers: hiprio and queue 1
		runtime.GOMAXPROCS(c.before)
		hs, front := startBackend(t, vhost.Config{HotWait: time.Second}, &echo{})
		f, err := frontend.New(front, frontend.Options{EventIdx: true, QueueSize: 64, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		hs.f = f
		for range 20 {
			hs.mustEcho(1, "a P of our own")
		}
		if n := runtime.GOMAXPROCS(0); n != c.want {
			t.Errorf("GOMAXPROCS is %d with two hot workers in a process that had %d, want %d", n, c.before, c.want)
		}
		f.Close()
		if err := hs.wait(10 * time.Second); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for runtime.GOMAXPROCS(0) != c.before { // the workers give their Ps back after they stop
			if time.Now().After(deadline) {
				t.Fatalf("GOMAXPROCS is %d 5 s after the workers stopped, want %d again", runtime.GOMAXPROCS(0), c.before)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// A hot wait must see the guest's kick at once, not when it turns cold (after 10 s here).
func TestHotWorkerWakesOnAKick(t *testing.T) {
	hs := start(t, vhost.Config{HotWait: 10 * time.Second}, &echo{}, frontend.Options{EventIdx: true, QueueSize: 64})
	for range 5 {
		time.Sleep(10 * time.Millisecond) // the worker waits hot
		begin := time.Now()
		hs.mustEcho(1, "kick")
		if d := time.Since(begin); d > 4*time.Second {
			t.Fatalf("a request took %v to serve while the worker waited hot", d)
		}
	}
}

// Hot workers keep their Ps in system calls the runtime does not see; a garbage collection (which
// stops the world) must still finish, and the workers must serve on afterwards. Each hot worker's
// thread has to run to give its P up (a signal ends its ppoll), so on a loaded machine a
// collection waits for the kernel to schedule those threads: quiet, it takes milliseconds; under
// the full test suite next to running guests it once took 2.7 s.
func TestGarbageCollectionWhileWorkersWaitHot(t *testing.T) {
	hs := start(t, vhost.Config{HotWait: 10 * time.Second}, &echo{}, frontend.Options{EventIdx: true, QueueSize: 64})
	hs.mustEcho(0, "hiprio waits hot too")
	hs.mustEcho(1, "now wait hot")
	time.Sleep(10 * time.Millisecond)
	for range 5 {
		begin := time.Now()
		runtime.GC()
		if d := time.Since(begin); d > 20*time.Second {
			t.Fatalf("runtime.GC took %v with two workers waiting hot", d)
		}
		hs.mustEcho(1, "after GC")
	}
}

// A kick fd that is no eventfd must stop its queue with a log line, not spin the worker: a pipe
// whose writer closed polls as hung up, an empty regular file as readable at end of file.
func TestKickFDThatIsNoEventfdStopsTheQueue(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) (fd int, after func()){
		"pipe whose writer closed": func(t *testing.T) (int, func()) {
			var p [2]int
			if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
				t.Fatal(err)
			}
			return p[0], func() { unix.Close(p[1]) }
		},
		"empty regular file": func(t *testing.T) (int, func()) {
			fd, err := unix.Open(t.TempDir(), unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			return fd, func() {}
		},
	} {
		hs := start(t, vhost.Config{}, &echo{}, frontend.Options{EventIdx: true, QueueSize: 64})
		hs.mustEcho(1, "with the real kick fd")
		fd, after := open(t)
		if _, err := hs.f.Request(vhost.ReqSetVringKick, u64(1), []int{fd}); err != nil {
			t.Fatalf("%s: SET_VRING_KICK: %v", name, err)
		}
		unix.Close(fd)
		after()
		deadline := time.Now().Add(5 * time.Second)
		for !hs.logs.contains("kick fd") {
			if time.Now().After(deadline) {
				t.Fatalf("%s as the kick fd: no log line about it after 5 s", name)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// After HotWait without a request a worker waits through the runtime again, which frees its P:
// its goroutine then shows in a system call the runtime knows about, not as running. Both workers
// (hiprio and the request queue) must get there.
func TestHotWorkerGoesColdWhenTheGuestIsIdle(t *testing.T) {
	hs := start(t, vhost.Config{HotWait: 20 * time.Millisecond}, &echo{}, frontend.Options{EventIdx: true, QueueSize: 64})
	for round := range 2 {
		hs.mustEcho(0, "then nothing")
		hs.mustEcho(1, "then nothing")
		deadline := time.Now().Add(20 * time.Second)
		for coldWorkers() < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %d of 2 workers sleep cold 20 s after the last request (HotWait 20 ms)", round, coldWorkers())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// slowEcho is echo, but a request that says "slow" is served in a second: the worker is busy that
// long.
type slowEcho struct{ echo }

func (s *slowEcho) Serve(queue int, r *vhost.Request) {
	if len(r.In) > 0 && string(r.In[0]) == "slow" {
		time.Sleep(time.Second)
	}
	s.echo.Serve(queue, r)
}

// A worker that was busy for longer than HotWait still starts its next sleep hot: HotWait counts
// from the start of the sleep, not from the last wake-up (a long drain, or a hiprio worker
// lingering through a flood of FORGETs, would otherwise go cold at once and pay the wake-up hot
// waits avoid).
func TestEverySleepStartsHot(t *testing.T) {
	hs := start(t, vhost.Config{HotWait: 500 * time.Millisecond}, &slowEcho{}, frontend.Options{EventIdx: true, QueueSize: 64})
	// The hiprio worker, idle from the start, goes cold after HotWait: one cold worker.
	deadline := time.Now().Add(20 * time.Second)
	for coldWorkers() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the idle hiprio worker is not cold 20 s after the start (HotWait 500 ms)")
		}
		time.Sleep(10 * time.Millisecond)
	}
	hs.mustEcho(1, "slow") // the request worker is busy for 1 s, twice HotWait
	for end := time.Now().Add(200 * time.Millisecond); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if n := coldWorkers(); n > 1 {
			t.Fatalf("%d workers sleep cold right after a request that kept its worker busy past HotWait; want only the idle hiprio one", n)
		}
	}
}

// coldWorkers counts the worker goroutines blocked in the runtime-visible poll.
func coldWorkers() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "[syscall") && strings.Contains(g, "vhost.(*worker).sleep") && strings.Contains(g, "unix.Poll") {
			n++
		}
	}
	return n
}

// A call fd that is a pipe nobody reads fills after some 8,000 notifications. The back-end must not
// block on it (a write with the queue's lock held would stop every request and GET_VRING_BASE):
// requests keep completing, and the ring is still handed back.
func TestCallFDThatIsAFullPipeBlocksNothing(t *testing.T) {
	hs := start(t, vhost.Config{}, &echo{}, frontend.Options{QueueSize: 64, Timeout: 5 * time.Second})
	f := hs.f
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	if _, err := f.Request(vhost.ReqSetVringCall, u64(1), []int{p[1]}); err != nil {
		t.Fatal(err)
	}
	unix.Close(p[1])
	gpa, _, err := f.Alloc(64)
	if err != nil {
		t.Fatal(err)
	}
	f.SetDesc(1, 0, frontend.Desc{Addr: gpa, Len: 64, Flags: frontend.DescWrite})
	used := f.UsedIdx(1)
	const requests = 10000 // the pipe holds 65536 bytes: 8192 notifications
	for i := range requests {
		f.Publish(1, 0)
		f.Kick(1)
		used++
		deadline := time.Now().Add(5 * time.Second)
		for f.UsedIdx(1) != used {
			if time.Now().After(deadline) {
				t.Fatalf("request %d of %d not completed after 5 s", i+1, requests)
			}
			runtime.Gosched()
		}
	}
	if _, err := f.GetVringBase(1); err != nil {
		t.Fatalf("GET_VRING_BASE after the pipe filled: %v", err)
	}
}
