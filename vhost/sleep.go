package vhost

import (
	"runtime"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// How a worker waits for the guest. A blocking system call that the Go runtime sees costs more
// than the wait itself when the guest is slow (TCG, or a guest doing one request at a time, like
// rm -rf): once every P is idle the runtime's sysmon thread sleeps deeply, the worker's next
// system call wakes it, and sysmon then checks every 20 µs until the process is idle again; a
// worker found in a system call at a 10 ms preemption check loses its P, which restarts that. In
// rm -rf under TCG those wake-ups were half of the daemon's context switches.
//
// So a worker that expects the guest back soon waits hot: ppoll(2) as a raw system call, which the
// runtime does not see. The worker keeps its P meanwhile (it adds a P to the process for its
// lifetime, see hotPs), and it yields the P every yieldEvery, before sysmon would preempt it after
// 10 ms (with a signal, which would cut the wait short). When a sleep has lasted Config.HotWait,
// it goes on cold, in poll(2) through the runtime, which frees the P: an idle daemon costs no CPU.
//
// Every sleep starts hot, however long the worker was busy before it: a worker that drained or
// lingered (FORGETs) for longer than HotWait must not go straight to the cold wait, whose wake-up
// is what this avoids (a timestamp of the last wake-up did that, and lost most of rm -rf's gain).
//
// A yield is not free: the runtime puts the worker on its global run queue and wakes an idle
// thread for the spare P, which takes the worker over while the old thread goes to sleep; three
// context switches. sysmon preempts a goroutine whose P has run it for 10 ms since sysmon last saw
// it rescheduled, and sysmon looks every 10 ms when the process is busy, so any yield interval
// below 10 ms avoids that; 8 ms leaves 2 ms for a drain between two waits. (Two boots of a cold
// ls -lR and find under TCG: uvfsd's threads switched 11,529 times with 4 ms, 9,499 with 8 ms.)
const yieldEvery = 8 * time.Millisecond

// DefaultHotWait is uvfsd's Config.HotWait.
const DefaultHotWait = 100 * time.Millisecond

// hotPs gives each running worker that may wait hot a P of its own on top of what the process had
// (at most doubling it), so that hot workers never take the CPUs' Ps from other goroutines. The
// Ps stay for the worker's lifetime: changing GOMAXPROCS stops the world, which a request should
// not wait for.
var hotPs struct {
	sync.Mutex
	workers int // running workers that may wait hot
	base    int // GOMAXPROCS before the first of them started
}

func addHotWorker() {
	hotPs.Lock()
	defer hotPs.Unlock()
	if hotPs.workers == 0 {
		hotPs.base = runtime.GOMAXPROCS(0)
	}
	hotPs.workers++
	runtime.GOMAXPROCS(hotPs.base + min(hotPs.workers, hotPs.base))
}

func removeHotWorker() {
	hotPs.Lock()
	defer hotPs.Unlock()
	hotPs.workers--
	if hotPs.workers > 0 {
		runtime.GOMAXPROCS(hotPs.base + min(hotPs.workers, hotPs.base))
		return
	}
	// A GOMAXPROCS call turns off the runtime's own updates (which follow cgroup CPU limits):
	// hand the choice back to it, unless the process had set its own value.
	runtime.SetDefaultGOMAXPROCS()
	if runtime.GOMAXPROCS(0) != hotPs.base {
		runtime.GOMAXPROCS(hotPs.base)
	}
}

// sleep waits until the kick or the control fd (fds) is readable: hot for up to HotWait, then
// cold.
func (w *worker) sleep(fds []unix.PollFd) error {
	if w.hotWait > 0 {
		readable, err := w.wait(fds, w.hotWait)
		if err != nil || readable {
			return err
		}
	}
	for {
		clearRevents(fds)
		_, err := unix.Poll(fds, -1)
		if err != unix.EINTR {
			return err
		}
	}
}

// wait waits up to d for one of fds to be readable and reports whether one is: in raw ppoll(2)
// calls of at most yieldEvery, yielding the P in between, unless hot waits are off. A signal (the
// runtime's preemption, or a stop-the-world) interrupts a call; the worker then yields at once and
// waits on.
func (w *worker) wait(fds []unix.PollFd, d time.Duration) (readable bool, err error) {
	if w.hotWait <= 0 {
		clearRevents(fds)
		ts := unix.NsecToTimespec(d.Nanoseconds())
		n, err := unix.Ppoll(fds, &ts, nil)
		if err != nil && err != unix.EINTR {
			return false, err
		}
		return n > 0, nil
	}
	deadline := time.Now().Add(d)
	for {
		now := time.Now()
		left := deadline.Sub(now)
		if left <= 0 {
			return false, nil
		}
		if now.Sub(w.yielded) >= yieldEvery {
			runtime.Gosched()
			w.yielded = now
		}
		clearRevents(fds)
		ts := unix.NsecToTimespec(min(left, yieldEvery).Nanoseconds())
		n, _, e := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), uintptr(len(fds)),
			uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
		switch {
		case e == unix.EINTR:
			// The runtime's signal asks for the P (preemption, stop-the-world), and RawSyscall6
			// checks for none: give it up here.
			runtime.Gosched()
			w.yielded = time.Now()
		case e != 0:
			return false, e
		case n > 0:
			return true, nil
		}
	}
}

func clearRevents(fds []unix.PollFd) {
	for i := range fds {
		fds[i].Revents = 0
	}
}
