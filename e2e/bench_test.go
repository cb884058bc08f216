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
	const steps = 9
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
