package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func allSteps(ns string) []string {
	var lines []string
	for _, w := range workloads {
		lines = append(lines, "BENCH "+w.Name+" "+ns)
	}
	return lines
}

func TestParseStepsReadsEveryWorkload(t *testing.T) {
	lines := append([]string{"64+0 records in", "\x1b[0mnoise"}, allSteps("1500000")...)
	lines[3] = "junk before the marker BENCH stat 2500000000"
	got, err := parseSteps(lines)
	if err != nil {
		t.Fatal(err)
	}
	if got["create"] != 1500*time.Microsecond || got["stat"] != 2500*time.Millisecond {
		t.Fatalf("parsed %v", got)
	}
	if len(got) != len(workloads) {
		t.Fatalf("parsed %d workloads, want %d", len(got), len(workloads))
	}
}

func TestParseStepsRejectsPartialRuns(t *testing.T) {
	cases := map[string][]string{
		"a failed step":    append(allSteps("1"), "BENCH-FAIL cp-a cp: exit status 1"),
		"a missing step":   allSteps("1")[1:],
		"a malformed time": append(allSteps("1")[1:], "BENCH create 12x"),
		"a negative time":  append(allSteps("1")[1:], "BENCH create -5"),
		"a truncated line": append(allSteps("1")[1:], "BENCH create"),
	}
	for name, lines := range cases {
		if _, err := parseSteps(lines); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestMedian(t *testing.T) {
	d := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x))
		}
		return out
	}
	for _, c := range []struct {
		in   []time.Duration
		want time.Duration
	}{{nil, 0}, {d(7), 7}, {d(9, 1, 5), 5}, {d(4, 1, 3, 100), 3}} {
		in := append([]time.Duration(nil), c.in...)
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
		for i := range in {
			if in[i] != c.in[i] {
				t.Fatalf("median reordered its input")
			}
		}
	}
}

func TestTableShowsMediansRatiosAndTotals(t *testing.T) {
	s := samples{}
	steps := func(v time.Duration) map[string]time.Duration {
		m := map[string]time.Duration{}
		for _, w := range workloads {
			m[w.Name] = v
		}
		return m
	}
	for _, v := range []time.Duration{time.Second, 3 * time.Second, 2 * time.Second} {
		s.add(sysUvfsd, steps(v))
		s.add(sysC, steps(2*v))
	}
	s.add(sys9p, steps(8*time.Second))
	var buf bytes.Buffer
	writeTable(&buf, s, sizes{SmallFiles: 10, TreeFiles: 20, BigMiB: 1}, []string{sysUvfsd, sysC, sys9p})
	out := buf.String()
	create := lineWith(t, out, "create 10 files")
	for _, want := range []string{"2.000 s", "4.000 s", "8.000 s", "0.50x", "0.25x"} {
		if !strings.Contains(create, want) {
			t.Errorf("create row %q lacks %q", create, want)
		}
	}
	total := lineWith(t, out, "total")
	n := float64(len(workloads))
	for _, want := range []string{seconds(time.Duration(2 * n * float64(time.Second))), "0.50x", "0.25x"} {
		if !strings.Contains(total, want) {
			t.Errorf("total row %q lacks %q", total, want)
		}
	}
}

func TestTableMarksMissingSystems(t *testing.T) {
	s := samples{}
	s.add(sysUvfsd, map[string]time.Duration{"create": time.Second}) // others missing
	var buf bytes.Buffer
	writeTable(&buf, s, sizes{SmallFiles: 1, TreeFiles: 1, BigMiB: 1}, []string{sysUvfsd, sys9p})
	total := lineWith(t, buf.String(), "total")
	if strings.Contains(total, "1.000 s") {
		t.Errorf("an incomplete system got a total: %q", total)
	}
}

func lineWith(t *testing.T, text, sub string) string {
	t.Helper()
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	t.Fatalf("no line with %q in:\n%s", sub, text)
	return ""
}

func TestMakeTreeCreatesTheRequestedFiles(t *testing.T) {
	root := filepath.Join(t.TempDir(), "tree")
	if err := makeTree(root, 250, false, 0, 0); err != nil {
		t.Fatal(err)
	}
	files, dirs := 0, 0
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if d.IsDir() {
			dirs++
		} else {
			files++
		}
		return nil
	})
	if files != 250 || dirs != 1+10+100 {
		t.Fatalf("tree has %d files and %d directories, want 250 and 111", files, dirs)
	}
}

func TestGuestScriptTimesEveryWorkload(t *testing.T) {
	script := guestScript(sizes{SmallFiles: 7, TreeFiles: 1, BigMiB: 3}, false)
	for _, w := range workloads {
		if !strings.Contains(script, "step "+w.Name+" ") {
			t.Errorf("script does not time %q", w.Name)
		}
	}
	if !strings.Contains(script, "N=7\n") || !strings.Contains(script, "MIB=3\n") {
		t.Errorf("script ignores the sizes:\n%s", script)
	}
}

func TestWriteSpreadShowsFastestAndSlowestRound(t *testing.T) {
	s := samples{}
	s.add(sysUvfsd, map[string]time.Duration{"create": 3 * time.Second})
	s.add(sysUvfsd, map[string]time.Duration{"create": time.Second})
	s.add(sysUvfsd, map[string]time.Duration{"create": 2 * time.Second})
	var buf bytes.Buffer
	writeSpread(&buf, s, sizes{SmallFiles: 5}, []string{sysUvfsd, sysC})
	if !strings.Contains(buf.String(), "1.00-3.00 s") {
		t.Fatalf("spread table:\n%s", buf.String())
	}
}

func TestSelectWorkloadsKeepsTheGuestOrder(t *testing.T) {
	all := workloads
	t.Cleanup(func() { workloads = all })
	if err := selectWorkloads("rm-rf,create,rm-rf"); err != nil {
		t.Fatal(err)
	}
	if len(workloads) != 2 || workloads[0].Name != "create" || workloads[1].Name != "rm-rf" {
		t.Fatalf("selected %v, want create then rm-rf", workloads)
	}
	if script := guestScript(sizes{SmallFiles: 1, TreeFiles: 1, BigMiB: 1}, true); !strings.Contains(script, `W=" create rm-rf "`) {
		t.Fatalf("script does not limit the steps to the selection:\n%s", script)
	}
	if err := selectWorkloads("tar"); err == nil {
		t.Fatal("an unknown workload was accepted")
	}
}

func TestWritePairedTakesRatiosWithinRounds(t *testing.T) {
	// Round 2 is slow for both systems: the medians of the times say 1.50x, the rounds say that
	// uvfsd was 0.80x and 0.90x of the C virtiofsd's time each time.
	rs := roundSamples{
		nil,
		{sysUvfsd: {"find": 800 * time.Millisecond}, sysC: {"find": 1000 * time.Millisecond}},
		{sysUvfsd: {"find": 2700 * time.Millisecond}, sysC: {"find": 3000 * time.Millisecond}},
		{sysUvfsd: {"find": 900 * time.Millisecond}}, // the C virtiofsd failed this round
	}
	var out strings.Builder
	writePaired(&out, rs, sizes{TreeFiles: 6000}, []string{sysUvfsd, sysC})
	row := ""
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.Contains(l, "find 6000") {
			row = l
		}
	}
	if !strings.Contains(row, "0.85x") || !strings.Contains(row, "2 of 2") {
		t.Errorf("find row %q, want the median ratio 0.85x faster in 2 of 2\n%s", row, out.String())
	}
}
