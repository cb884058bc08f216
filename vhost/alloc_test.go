package vhost_test

import (
	"testing"

	"github.com/uvfsd/uvfsd/vhost"
)

// TestRequestPathDoesNotAllocate drives pop, walk, Serve, Complete and notification in steady
// state and requires zero heap allocations per request.
func TestRequestPathDoesNotAllocate(t *testing.T) {
	for _, eventIdx := range []bool{false, true} {
		d, err := vhost.NewDrainHarness(&echo{}, eventIdx)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if n := d.Step(); n != 1 {
			t.Fatalf("eventIdx=%v: first request raised %d notifications, want 1", eventIdx, n)
		}
		out, n := d.Out()
		if n != 4 || string(out[:4]) != "ping" {
			t.Fatalf("echo wrote %q (%d bytes)", out[:4], n)
		}
		if raceEnabled {
			continue
		}
		for range 10 {
			d.Step() // warm up the request pool
		}
		if allocs := testing.AllocsPerRun(1000, func() { d.Step() }); allocs != 0 {
			t.Errorf("eventIdx=%v: %.1f allocations per request, want 0", eventIdx, allocs)
		}
	}
}

// TestLoggedRequestPathDoesNotAllocate is TestRequestPathDoesNotAllocate with dirty logging on:
// marking the reply and the used ring allocates nothing either.
func TestLoggedRequestPathDoesNotAllocate(t *testing.T) {
	d, err := vhost.NewDrainHarness(&echo{}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	words := d.LogForTest()
	d.Step()
	// Guest memory starts at 0x10000 (page 16); the reply is at 0x15000, the used ring at 0x12000.
	if got, want := words[0], uint64(1)<<0x15|1<<0x12; got != want {
		t.Fatalf("log word %#x, want %#x", got, want)
	}
	if raceEnabled {
		return
	}
	for range 10 {
		d.Step()
	}
	if allocs := testing.AllocsPerRun(1000, func() { d.Step() }); allocs != 0 {
		t.Errorf("%.1f allocations per logged request, want 0", allocs)
	}
}
