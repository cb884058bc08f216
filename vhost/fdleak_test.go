package vhost_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/vhost"
	"github.com/uvfsd/uvfsd/vhost/frontend"
	"golang.org/x/sys/unix"
)

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestSessionLeaksNoFDs runs a session full of fd-carrying messages (accepted, replaced, refused)
// and checks that every fd the back-end received is closed once the session ends.
func TestSessionLeaksNoFDs(t *testing.T) {
	before := openFDs(t)
	func() {
		hs, front := startBackend(t, vhost.Config{}, &echo{})
		f, err := frontend.New(front, frontend.Options{MemSize: 1 << 20, QueueSize: 8})
		if err != nil {
			t.Fatal(err)
		}
		efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(efd)
		f.Request(vhost.ReqSetOwner, nil, []int{efd})                                       // refused: no fd expected
		f.Request(vhost.ReqSetVringKick, u64(7), []int{efd})                                // refused: bad queue
		f.Request(vhost.ReqSetVringErr, u64(1), []int{efd})                                 // accepted, kept until reset
		f.Request(vhost.ReqSetMemTable, memTable(f.Region(), f.Region()), []int{f.MemFD()}) // refused
		f.SendMemReg(vhost.ReqRemMemReg, f.Region(), f.MemFD())
		f.SendMemReg(vhost.ReqAddMemReg, f.Region(), f.MemFD())
		if err := f.StartQueue(1); err != nil { // replaces kick and call fds
			t.Fatal(err)
		}
		out, _, err := f.Call(1, [][]byte{[]byte("x")}, []int{8})
		if err != nil || string(out) != "x" {
			t.Fatalf("call: %q, %v", out, err)
		}
		f.GetVringBase(0)
		f.Close()
		if err := hs.wait(5 * time.Second); err != nil {
			t.Fatal(err)
		}
	}()
	// Fewer is not this session's doing: an earlier test's worker may close its fd late on a
	// loaded machine.
	if after := openFDs(t); after > before {
		t.Fatalf("%d fds open before the session, %d after", before, after)
	}
}

// logMappings counts mappings of the front-end's dirty log memfds in this process.
func logMappings(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "uvfsd-test-log")
}

// TestMigrationSessionLeaksNothing runs logging, a replaced log, SET_LOG_FD, a checked save and
// an unchecked one, then disconnects: every fd is closed and every log unmapped.
func TestMigrationSessionLeaksNothing(t *testing.T) {
	before, maps := openFDs(t), logMappings(t)
	func() {
		hs, front := startBackend(t, vhost.Config{Migration: &stateMigrator{state: make([]byte, 1<<20)}}, &echo{})
		f, err := frontend.New(front, frontend.Options{MemSize: 1 << 20, QueueSize: 8})
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := f.SetLogBase(0); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.SetLogging(true); err != nil {
			t.Fatal(err)
		}
		efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(efd)
		f.Request(vhost.ReqSetLogFd, nil, []int{efd})
		if out, _, err := f.Call(1, [][]byte{[]byte("x")}, []int{8}); err != nil || string(out) != "x" {
			t.Fatalf("call: %q, %v", out, err)
		}
		if _, err := f.StopQueues(); err != nil {
			t.Fatal(err)
		}
		if _, err := f.SaveDeviceState(); err != nil {
			t.Fatal(err)
		}
		// A save nobody reads or checks: the disconnect must end it.
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		f.SetDeviceStateFD(vhost.StateSave, vhost.StatePhaseStopped, p[1])
		unix.Close(p[1])
		defer unix.Close(p[0])
		f.Close()
		if err := hs.wait(5 * time.Second); err != nil {
			t.Fatal(err)
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for openFDs(t) > before || logMappings(t) > maps {
		if time.Now().After(deadline) {
			t.Fatalf("%d fds and %d log mappings before the session, %d and %d after", before, maps, openFDs(t), logMappings(t))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
