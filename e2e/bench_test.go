package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/scripts/vm"
)

// TestBenchmarkRunsInLockstep runs the in-guest benchmark program (docs/benchmarks.md) at a tiny
// size: each round boots every system's guest at once and the guests take turns step by step
// (e2e/bench/lockstep.go). Two rounds, so that the second runs without 9p (--rounds-9p 1) and the
// turns rotate; --cpu adds each step's CPU time. As root the C virtiofsd takes part too.
func TestBenchmarkRunsInLockstep(t *testing.T) {
	requireGuestTools(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "bench")
	if err := vm.GoBuild(ctx, bin, "github.com/uvfsd/uvfsd/e2e/bench"); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, bin, "--files", "3", "--tree-files", "20", "--mib", "1",
		"--rounds", "2", "--rounds-9p", "1", "--cpu").CombinedOutput()
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, out)
	}
	systems := map[string]int{"uvfsd": 2, "9p": 1} // rounds each system must report
	if os.Geteuid() == 0 {
		if _, err := os.Stat("/usr/lib/qemu/virtiofsd"); err == nil || inCI() {
			systems["C-virtiofsd"] = 2
		}
	}
	const steps = 11
	for system, rounds := range systems {
		if n := strings.Count(string(out), "system="+system+" workload="); n != rounds*steps {
			t.Errorf("%s: %d results, want %d rounds of %d steps\n%s", system, n, rounds, steps, out)
		}
	}
	if n := strings.Count(string(out), "in lockstep"); n != 2 {
		t.Errorf("%d lockstep rounds reported, want 2\n%s", n, out)
	}
	if !strings.Contains(string(out), "rm -rf all") || !strings.Contains(string(out), "total") {
		t.Errorf("no results table\n%s", out)
	}
	if !strings.Contains(string(out), "CPU time per step") {
		t.Errorf("no CPU table (--cpu)\n%s", out)
	}
}

// TestBenchmarkQueuesQEMU10 runs the benchmark's parallel steps on QEMU 10 with a Linux 6.12 guest
// against uvfsd with one request queue and, as system uvfsd-q2, with two (--queues 1,2).
func TestBenchmarkQueuesQEMU10(t *testing.T) {
	requireStack(t, stackQEMU10)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "bench")
	if err := vm.GoBuild(ctx, bin, "github.com/uvfsd/uvfsd/e2e/bench"); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, bin, "--qemu10", "--queues", "1,2", "--systems", "uvfsd",
		"--workloads", "write-seq,par-files,par-read", "--files", "20", "--mib", "4", "--rounds", "1").CombinedOutput()
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, out)
	}
	for _, system := range []string{"uvfsd", "uvfsd-q2"} {
		if n := strings.Count(string(out), "system="+system+" workload="); n != 3 {
			t.Errorf("%s: %d results, want 3 steps\n%s", system, n, out)
		}
	}
	if !strings.Contains(string(out), "par read 4 MiB") {
		t.Errorf("no parallel read in the results table\n%s", out)
	}
}
