package main

import (
	"strings"
	"testing"
	"time"
)

func TestAwaitFindsLinesTheGuestPrintedBeforeItEnded(t *testing.T) {
	g := &gatedGuest{lines: make(lineSink, 8), done: make(chan struct{})}
	g.lines.Write([]byte("BENCH-WAIT create\n\nBENCH create 42\n"))
	close(g.done)
	isTime := func(l string) bool { return strings.Contains(l, "BENCH create ") }
	if err := g.await("the time of create", isTime, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := g.await("the time of create", isTime, time.Minute); err == nil || !strings.Contains(err.Error(), "ended") {
		t.Fatalf("a guest that ended without another time: %v", err)
	}
}

func TestAwaitGivesUp(t *testing.T) {
	g := &gatedGuest{lines: make(lineSink, 8), done: make(chan struct{})}
	g.lines.Write([]byte("BENCH-WAIT stat\n"))
	err := g.await("BENCH-WAIT create", func(l string) bool { return l == "BENCH-WAIT create" }, 20*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "within") {
		t.Fatalf("await of a line that never comes: %v", err)
	}
}

func TestGatedScriptDropsCachesAfterTheGate(t *testing.T) {
	script := guestScript(sizes{SmallFiles: 1, TreeFiles: 1, BigMiB: 1}, true)
	gate, drop := strings.Index(script, "\tgate \"$name\""), strings.Index(script, "&& drop")
	if !strings.Contains(script, "GATED=true\n") || gate < 0 || drop < gate {
		t.Fatalf("the gated script must wait at the gate before it drops the caches:\n%s", script)
	}
	if last, end := strings.Index(script, "step rm-rf"), strings.Index(script, "\ngate end\n"); end < last {
		t.Fatalf("the gated script must wait at a final gate after its last step:\n%s", script)
	}
	if !strings.Contains(guestScript(sizes{SmallFiles: 1, TreeFiles: 1, BigMiB: 1}, false), "GATED=false\n") {
		t.Fatal("the sequential script waits at gates")
	}
}
