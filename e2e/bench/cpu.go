package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// With --cpu a lockstep round also records the CPU time that each system's daemon and QEMU used
// during each of its steps. On this 2-core host the guest's vCPU threads and the daemon share
// the cores, so a daemon that needs more CPU (or makes the guest need more) slows the step; CPU
// time says which side did the work and varies less from round to round than the wall time.

// stepCPU is the CPU time one system used during one step.
type stepCPU struct {
	daemon, qemu time.Duration
}

// cpuSamples holds every round's CPU time: system -> workload -> one per round.
type cpuSamples map[string]map[string][]stepCPU

func (s cpuSamples) add(system string, steps map[string]stepCPU) {
	if s[system] == nil {
		s[system] = map[string][]stepCPU{}
	}
	for name, c := range steps {
		s[system][name] = append(s[system][name], c)
	}
}

// medians returns the median daemon and QEMU CPU time of one system's workload.
func (s cpuSamples) medians(system, workload string) (daemon, qemu time.Duration) {
	var ds, qs []time.Duration
	for _, c := range s[system][workload] {
		ds, qs = append(ds, c.daemon), append(qs, c.qemu)
	}
	return median(ds), median(qs)
}

// writeCPU prints each workload's median daemon and QEMU CPU time per system, and uvfsd's
// ratios to the C virtiofsd. 9p has no daemon: QEMU serves it.
func writeCPU(w io.Writer, s cpuSamples, sz sizes, systems []string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := "CPU time per step (median)\t"
	for _, sys := range systems {
		header += sys + " daemon\t" + sys + " QEMU\t"
	}
	fmt.Fprintln(tw, header+"daemon uvfsd/C\tQEMU uvfsd/C\t")
	ms := func(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }
	for _, wl := range workloads {
		row := wl.Label(sz) + "\t"
		for _, sys := range systems {
			if len(s[sys][wl.Name]) == 0 {
				row += "-\t-\t"
				continue
			}
			d, q := s.medians(sys, wl.Name)
			if sys == sys9p {
				row += "-\t" + ms(q) + "\t"
				continue
			}
			row += ms(d) + "\t" + ms(q) + "\t"
		}
		ud, uq := s.medians(sysUvfsd, wl.Name)
		cd, cq := s.medians(sysC, wl.Name)
		row += ratio(ud, cd) + "\t" + ratio(uq, cq) + "\t"
		fmt.Fprintln(tw, row)
	}
	tw.Flush()
}
