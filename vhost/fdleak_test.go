package vhost_test

import (
	"os"
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
