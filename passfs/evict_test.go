package passfs_test

import (
	"os"
	"testing"
	"time"
)

// An rmdir racing with the close that evicts an unlinked child spins in the host kernel
// (inodeTable.evicting): RMDIR waits for closes under way, and closes wait for RMDIR.

func TestRmdirWaitsForNodeFDCloses(t *testing.T) {
	e := newEnv(t, nil)
	if err := os.Mkdir(e.host("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.lookup(1, "d")
	release := e.fs.HoldNodeFDCloses()
	done := make(chan error, 1)
	go func() {
		if errno := e.fs.Rmdir(e.ctx(1), cs("d")); errno != 0 {
			done <- errno
			return
		}
		done <- nil
	}()
	select {
	case err := <-done:
		release()
		t.Fatalf("Rmdir returned (%v) while a node fd close was under way", err)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := os.Stat(e.host("d")); err != nil {
		t.Fatalf("the directory went before the close ended: %v", err)
	}
	release()
	if err := <-done; err != nil {
		t.Fatalf("Rmdir: %v", err)
	}
	if _, err := os.Stat(e.host("d")); !os.IsNotExist(err) {
		t.Fatalf("the directory is still there: %v", err)
	}
}

func TestNodeFDClosesWaitForRmdir(t *testing.T) {
	e := newEnv(t, nil)
	e.writeHost("f", "x")
	f := e.lookup(1, "f")
	before := e.fs.OpenNodeFDs()
	release := e.fs.HoldRmdirs()
	done := make(chan struct{})
	go func() {
		e.fs.Forget(f.NodeID, 1)
		close(done)
	}()
	select {
	case <-done:
		release()
		t.Fatal("FORGET closed the node's fd while an RMDIR was under way")
	case <-time.After(50 * time.Millisecond):
	}
	if got := e.fs.OpenNodeFDs(); got != before {
		t.Fatalf("open node fds during the RMDIR: %d, want %d", got, before)
	}
	release()
	<-done
	if got := e.fs.OpenNodeFDs(); got != before-1 {
		t.Fatalf("open node fds after FORGET: %d, want %d", got, before-1)
	}
}
