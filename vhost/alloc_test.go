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
