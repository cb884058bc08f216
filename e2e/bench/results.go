package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// parseSteps reads the guest's "BENCH name ns" lines. Any "BENCH-FAIL" line,
// a malformed BENCH line or a missing workload is an error: a partial run
// must not be averaged with complete ones.
func parseSteps(lines []string) (map[string]time.Duration, error) {
	got := map[string]time.Duration{}
	var fails []string
	for _, l := range lines {
		l = strings.TrimSpace(l)
		// Console lines may carry a prefix (escape codes, unterminated output).
		if i := strings.Index(l, "BENCH-FAIL "); i >= 0 {
			fails = append(fails, l[i+len("BENCH-FAIL "):])
			continue
		}
		i := strings.Index(l, "BENCH ")
		if i < 0 {
			continue
		}
		f := strings.Fields(l[i+len("BENCH "):])
		if len(f) != 2 {
			return nil, fmt.Errorf("malformed guest line %q", l)
		}
		ns, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || ns < 0 {
			return nil, fmt.Errorf("malformed guest line %q", l)
		}
		got[f[0]] = time.Duration(ns)
	}
	if len(fails) > 0 {
		return got, fmt.Errorf("guest steps failed: %s", strings.Join(fails, "; "))
	}
	for _, w := range workloads {
		if _, ok := got[w.Name]; !ok {
			return got, fmt.Errorf("guest printed no time for %q", w.Name)
		}
	}
	return got, nil
}

// median of the samples (the mean of the middle two for an even count); 0
// for none.
func median[T ~int64 | ~float64](samples []T) T {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// samples holds every round's time: system -> workload -> one per round.
type samples map[string]map[string][]time.Duration

func (s samples) add(system string, steps map[string]time.Duration) {
	if s[system] == nil {
		s[system] = map[string][]time.Duration{}
	}
	for name, d := range steps {
		s[system][name] = append(s[system][name], d)
	}
}

// ratio formats a/b, or "-" when either is missing.
func ratio(a, b time.Duration) string {
	if a <= 0 || b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", float64(a)/float64(b))
}

func seconds(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f s", d.Seconds())
}

// writeTable prints the median of each workload per system, the ratios of
// uvfsd to the C virtiofsd and to 9p, and the totals (sums of medians).
// Systems that have no samples show "-".
func writeTable(w io.Writer, s samples, sz sizes, systems []string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := "workload\t"
	for _, sys := range systems {
		header += sys + "\t"
	}
	// Variants (other uvfsd flags) get a ratio to the C virtiofsd each.
	var variants []string
	for _, sys := range systems {
		if sys != sysUvfsd && sys != sysC && sys != sys9p {
			variants = append(variants, sys)
			header += sys + "/C\t"
		}
	}
	fmt.Fprintln(tw, header+"uvfsd/C\tuvfsd/9p\t")
	totals := map[string]time.Duration{}
	complete := map[string]bool{}
	for _, sys := range systems {
		complete[sys] = len(s[sys]) > 0
	}
	for _, wl := range workloads {
		row := wl.Label(sz) + "\t"
		for _, sys := range systems {
			m := median(s[sys][wl.Name])
			if m == 0 {
				complete[sys] = false
			}
			totals[sys] += m
			row += seconds(m) + "\t"
		}
		for _, v := range variants {
			row += ratio(median(s[v][wl.Name]), median(s[sysC][wl.Name])) + "\t"
		}
		row += ratio(median(s[sysUvfsd][wl.Name]), median(s[sysC][wl.Name])) + "\t"
		row += ratio(median(s[sysUvfsd][wl.Name]), median(s[sys9p][wl.Name])) + "\t"
		fmt.Fprintln(tw, row)
	}
	row := "total\t"
	for _, sys := range systems {
		if !complete[sys] {
			totals[sys] = 0
		}
		row += seconds(totals[sys]) + "\t"
	}
	for _, v := range variants {
		row += ratio(totals[v], totals[sysC]) + "\t"
	}
	row += ratio(totals[sysUvfsd], totals[sysC]) + "\t" + ratio(totals[sysUvfsd], totals[sys9p]) + "\t"
	fmt.Fprintln(tw, row)
	tw.Flush()
}

// writeSpread prints each workload's fastest and slowest round per system, so a reader can see
// how far apart the rounds behind a median were.
func writeSpread(w io.Writer, s samples, sz sizes, systems []string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := "workload (min-max of rounds)\t"
	for _, sys := range systems {
		header += sys + "\t"
	}
	fmt.Fprintln(tw, header)
	for _, wl := range workloads {
		row := wl.Label(sz) + "\t"
		for _, sys := range systems {
			xs := slices.Clone(s[sys][wl.Name])
			if len(xs) == 0 {
				row += "-\t"
				continue
			}
			slices.Sort(xs)
			row += fmt.Sprintf("%.2f-%.2f s\t", xs[0].Seconds(), xs[len(xs)-1].Seconds())
		}
		fmt.Fprintln(tw, row)
	}
	tw.Flush()
}

// roundSamples holds each round's times apart (round -> system -> workload), for ratios taken
// within a round: in lockstep the systems ran each step seconds apart, so a slow phase of the
// machine weighs on both sides of such a ratio alike.
type roundSamples []map[string]map[string]time.Duration

// writePaired prints, per workload, the median over rounds of each uvfsd system's time divided
// by the C virtiofsd's in the same round, and in how many of those rounds it was faster.
func writePaired(w io.Writer, rs roundSamples, sz sizes, systems []string) {
	var uvfsds []string
	for _, sys := range systems {
		if sys != sysC && sys != sys9p {
			uvfsds = append(uvfsds, sys)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := "workload (ratio within a round)\t"
	for _, sys := range uvfsds {
		header += sys + "/C median\tfaster in\t"
	}
	fmt.Fprintln(tw, header)
	for _, wl := range workloads {
		row := wl.Label(sz) + "\t"
		for _, sys := range uvfsds {
			var ratios []float64
			faster := 0
			for _, r := range rs {
				u, c := r[sys][wl.Name], r[sysC][wl.Name]
				if u <= 0 || c <= 0 {
					continue
				}
				ratios = append(ratios, float64(u)/float64(c))
				if u < c {
					faster++
				}
			}
			if len(ratios) == 0 {
				row += "-\t-\t"
				continue
			}
			row += fmt.Sprintf("%.2fx\t%d of %d\t", median(ratios), faster, len(ratios))
		}
		fmt.Fprintln(tw, row)
	}
	tw.Flush()
}
