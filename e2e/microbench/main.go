// Command microbench measures single FUSE requests without a VM: the Go
// vhost-user front-end (vhost/frontend) drives the real uvfsd binary, QEMU's
// C virtiofsd and the Rust virtiofsd 1.13 (rootless: unshare -r --map-auto,
// --sandbox chroot), and the same work is done with direct syscalls on the
// host as the limit. For LOOKUP, GETATTR, READDIRPLUS, CREATE(+RELEASE) and
// 4 KiB / 1 MiB READ and WRITE it prints the mean latency and ops/s at queue
// depth 1 and 64 (64 chains in flight on one ring), the CPU time per request
// (the daemon's processes and threads together, from /proc; for direct, this
// process's around the syscall loop) and its ratio to direct, each daemon's
// idle resident memory, then uvfsd's heap allocations per request, measured
// in-process.
//
//	go run ./e2e/microbench [--duration 2s] [--uvfsd-args "--thread-pool-size=2"]
//
// The front-end's own cost (it copies every buffer and allocates per call)
// is in every daemon's latency alike, not in its CPU time; the direct column
// has none of it.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/uvfsd/uvfsd/e2e/guest"
	"github.com/uvfsd/uvfsd/scripts/vm"
	"github.com/uvfsd/uvfsd/vhost/frontend"
)

const (
	tUvfsd  = "uvfsd"
	tC      = "C-virtiofsd"
	tRust   = "rust-virtiofsd"
	tDirect = "direct"
	// tInProcess is uvfsd's stack in this process (no sandbox, no separate binary), for
	// profiling with --cpuprofile; not in the default set.
	tInProcess = "in-process"
)

const cVirtiofsd = "/usr/lib/qemu/virtiofsd"

// frontOptions is the emulated device, like QEMU's vhost-user-fs-pci with a
// Linux guest: 1024 entries, indirect descriptors and EVENT_IDX.
var frontOptions = frontend.Options{MemSize: 256 << 20, QueueSize: 1024, Indirect: true, EventIdx: true, Timeout: 30 * time.Second}

// results: target -> op -> depth -> one stats per round.
type results map[string]map[string]map[int][]stats

func (r results) put(target, op string, s stats) {
	if r[target] == nil {
		r[target] = map[string]map[int][]stats{}
	}
	if r[target][op] == nil {
		r[target][op] = map[int][]stats{}
	}
	r[target][op][s.depth] = append(r[target][op][s.depth], s)
}

// get returns the round with the median throughput (the lower middle one for an even count).
func (r results) get(target, op string, depth int) stats {
	return medianBy(r[target][op][depth], func(a, b stats) int { return cmp.Compare(a.opsPerSec(), b.opsPerSec()) })
}

// getCPU returns the round with the median CPU time per operation.
func (r results) getCPU(target, op string, depth int) stats {
	return medianBy(r[target][op][depth], func(a, b stats) int { return cmp.Compare(a.cpuPerOp(), b.cpuPerOp()) })
}

// medianBy returns the median of rounds by order (the lower middle one for an even count).
func medianBy(rounds []stats, order func(a, b stats) int) stats {
	if len(rounds) == 0 {
		return stats{}
	}
	rounds = slices.Clone(rounds)
	slices.SortFunc(rounds, order)
	return rounds[(len(rounds)-1)/2]
}

// memory holds each daemon's resident memory (its processes together), one per round: idle
// after the session's setup, and idle again after every operation ran.
type memory map[string][]rssSample

type rssSample struct{ setup, after guest.RSS }

type config struct {
	dur       time.Duration
	depths    []int
	uvfsdArgs []string
	variants  map[string][]string // uvfsd targets: "uvfsd" and each --variant, with their flags
	allocReqs int
	// spin is how long the pipeline polls the used ring before it sleeps on the call eventfd.
	spin time.Duration
	// callFrontEnd measures every op with Frontend.Call (copies and allocations per request)
	// instead of a Pipeline.
	callFrontEnd bool
	work         string
	uvfsd        string
	runAs        guest.HostUser // uvfsd's user
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "microbench:", err)
		os.Exit(1)
	}
}

func run() error {
	c := &config{}
	flag.DurationVar(&c.dur, "duration", 2*time.Second, "timed run per operation and depth")
	rounds := flag.Int("rounds", 3, "measure every target this many times, interleaved; the table shows the median")
	var variants guest.StringList
	flag.Var(&variants, "variant", `also measure uvfsd as target NAME with these flags: "NAME=FLAGS" (repeatable)`)
	depths := flag.String("depths", "1,64", "queue depths, comma separated")
	systems := flag.String("systems", strings.Join([]string{tUvfsd, tC, tRust, tDirect}, ","), "targets, comma separated ("+tInProcess+" too: uvfsd's stack in this process)")
	uvfsdArgs := flag.String("uvfsd-args", "", "extra uvfsd flags, space separated")
	flag.IntVar(&c.allocReqs, "alloc-requests", 2000, "requests per operation for the allocation count (1 MiB: a tenth); 0 skips it")
	flag.DurationVar(&c.spin, "spin", 0, "poll the used ring this long before sleeping on the interrupt eventfd (0: sleep at once, as a guest does)")
	flag.BoolVar(&c.callFrontEnd, "call-front-end", false, "measure with Frontend.Call per request (allocates and copies) instead of pre-built pipelined chains")
	flag.DurationVar(&rssSettle, "idle", rssSettle, "leave each daemon idle this long before reading its resident memory, after setup and after the run")
	opsFilter := flag.String("ops", "", "only operations whose name contains this text (e.g. CREATE)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of this process to `FILE` (use with --systems in-process)")
	flag.IntVar(&inProcessVhost.ThreadPoolSize, "in-process-pool", 0, "the in-process stack's --thread-pool-size")
	inPoll := flag.Int("in-process-poll-us", -1, "the in-process stack's --poll-us (-1: uvfsd's default for this CPU count)")
	flag.Parse()
	if *inPoll >= 0 {
		inProcessVhost.PollMax = time.Duration(*inPoll) * time.Microsecond
	}
	c.uvfsdArgs = strings.Fields(*uvfsdArgs)
	c.variants = map[string][]string{tUvfsd: c.uvfsdArgs}
	vs, err := guest.ParseVariants(variants, tUvfsd, tC, tRust, tDirect, tInProcess)
	if err != nil {
		return err
	}
	var variantNames []string
	for _, v := range vs {
		c.variants[v.Name] = v.Flags
		variantNames = append(variantNames, v.Name)
	}
	if *rounds < 1 {
		return fmt.Errorf("--rounds must be at least 1")
	}
	if *opsFilter != "" {
		benchOps = slices.DeleteFunc(benchOps, func(op benchOp) bool { return !strings.Contains(op.name, *opsFilter) })
		if len(benchOps) == 0 {
			return fmt.Errorf("--ops %q matches no operation", *opsFilter)
		}
	}
	for _, s := range strings.Split(*depths, ",") {
		d, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || d < 1 || d > 256 {
			return fmt.Errorf("--depths: %q is not a depth from 1 to 256", s)
		}
		c.depths = append(c.depths, d)
	}
	var targets []string
	for _, s := range strings.Split(*systems, ",") {
		switch s = strings.TrimSpace(s); s {
		case tUvfsd, tDirect, tInProcess:
		case tC:
			if os.Geteuid() != 0 {
				fmt.Println("note: skipping the C virtiofsd: it needs root")
				continue
			}
			if _, err := os.Stat(cVirtiofsd); err != nil {
				fmt.Printf("note: skipping the C virtiofsd: %v (apt-get install qemu-system-common)\n", err)
				continue
			}
		case tRust:
			if _, err := os.Stat(filepath.Join(guest.RustVirtiofsdDir(), guest.RustVirtiofsdBinary)); err != nil {
				fmt.Printf("note: skipping the Rust virtiofsd: %v (.ci/install-clients unpacks it)\n", err)
				continue
			}
		default:
			return fmt.Errorf("--systems: unknown target %q", s)
		}
		targets = append(targets, s)
	}
	targets = append(targets, variantNames...)
	if c.work, err = os.MkdirTemp("", "uvfs-microbench-"); err != nil {
		return err
	}
	defer os.RemoveAll(c.work)
	if err := os.Chmod(c.work, 0o755); err != nil {
		return err
	}
	c.pickUser()
	c.uvfsd = filepath.Join(c.work, "uvfsd")
	if err := vm.GoBuild(context.Background(), c.uvfsd, "github.com/uvfsd/uvfsd/cmd/uvfsd"); err != nil {
		return err
	}
	fmt.Printf("%d CPUs, %v per point, depths %v; uvfsd runs as %s with flags %q\n",
		numCPU(), c.dur, c.depths, c.runAs.Name, c.uvfsdArgs)
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	res, mem := results{}, memory{}
	for round := range *rounds {
		for i := range targets {
			// Rotate the order so that no target always runs first or last.
			t := targets[(i+round)%len(targets)]
			if err := c.runTarget(t, res, mem); err != nil {
				return fmt.Errorf("%s: %w", t, err)
			}
		}
	}
	fmt.Println()
	fmt.Printf("median of %d round(s)\n", *rounds)
	writeTable(os.Stdout, res, targets, c.depths)
	fmt.Println()
	writeCPUTable(os.Stdout, res, targets, c.depths)
	fmt.Println()
	writeMemTable(os.Stdout, mem, targets)
	if c.allocReqs > 0 {
		share, err := c.share(false)
		if err != nil {
			return err
		}
		allocs, err := measureAllocs(share, frontOptions, c.allocReqs)
		if err != nil {
			return fmt.Errorf("allocations: %w", err)
		}
		fmt.Println()
		writeAllocTable(os.Stdout, allocs)
		fmt.Println("\nwhere uvfsd allocates (sites with at least 0.1 per request; innermost uvfsd frame):")
		writeAllocSites(os.Stdout, allocs, 0.1)
	}
	return nil
}

// pickUser runs uvfsd rootless: as this user when not root, as uvfs-e2e
// (the e2e tests' account) when root and it exists, else as root with a note.
func (c *config) pickUser() {
	c.runAs, _ = guest.CurrentUser() // without a passwd entry, the uid names the user
	if os.Geteuid() != 0 {
		return
	}
	u, err := guest.LookupUser("uvfs-e2e")
	if err != nil {
		fmt.Println("note: no uvfs-e2e user (go run ./e2e/bench or the e2e tests create it): uvfsd runs as root")
		return
	}
	c.runAs = u
}

// share makes a fresh share with the fixture, owned by uvfsd's user when
// forUvfsd.
func (c *config) share(forUvfsd bool) (string, error) {
	dir, err := os.MkdirTemp(c.work, "share-")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	chown := forUvfsd && !c.runAs.Current
	if err == nil && chown {
		err = os.Chown(dir, int(c.runAs.UID), int(c.runAs.GID))
	}
	if err != nil {
		return "", fmt.Errorf("benchmark share: %w", err)
	}
	return dir, makeFixture(dir, chown, int(c.runAs.UID), int(c.runAs.GID))
}

// rssSettle is how long a daemon is left idle before its resident memory is read (--idle).
var rssSettle = 200 * time.Millisecond

// runTarget measures every operation at every depth on one target.
func (c *config) runTarget(target string, res results, mem memory) error {
	uvfsdArgs, isUvfsd := c.variants[target]
	// The rootless daemons' share belongs to their user.
	share, err := c.share(isUvfsd || target == tRust)
	if err != nil {
		return err
	}
	var newWorker func(op benchOp) func(int) (opFunc, error)
	var sess *session // nil for the direct target
	var clock cpuClock
	var daemonPid int // 0 for the direct and in-process targets
	switch target {
	case tDirect:
		clock = selfCPU
		d, err := openDirectFixture(share)
		if err != nil {
			return err
		}
		defer d.close()
		newWorker = func(op benchOp) func(int) (opFunc, error) {
			return func(w int) (opFunc, error) { return op.direct(d, w) }
		}
	case tInProcess:
		p, err := startInProcess(share, frontOptions)
		if err != nil {
			return err
		}
		defer p.close()
		s, err := newSession(p.front, uint32(os.Getuid()), uint32(os.Getgid()))
		if err != nil {
			return err
		}
		sess = s
		newWorker = func(op benchOp) func(int) (opFunc, error) {
			return func(w int) (opFunc, error) { return op.fuse(s, w) }
		}
	default:
		// The socket's directory must be writable by the daemon's user.
		sockDir, err := os.MkdirTemp(c.work, "sock-")
		if err == nil && (isUvfsd || target == tRust) && !c.runAs.Current {
			err = os.Chown(sockDir, int(c.runAs.UID), int(c.runAs.GID))
		}
		if err != nil {
			return fmt.Errorf("socket directory: %w", err)
		}
		sock := filepath.Join(sockDir, "vhost.sock")
		d := &vm.Daemon{Socket: sock}
		switch {
		case isUvfsd:
			d.Path, d.Credential = c.uvfsd, c.runAs.Credential()
			d.Args = append([]string{"--socket-path=" + sock, "--shared-dir=" + share}, uvfsdArgs...)
		case target == tRust:
			// Rootless as its README says (unshare -r --map-auto, --sandbox chroot), as uvfsd's user.
			d = guest.RustVirtiofsd(sock, share, c.runAs.Credential())
		default:
			d.Path = cVirtiofsd
			d.Args = []string{"--socket-path=" + sock, "-o", "source=" + share, "-o", "cache=auto"}
		}
		if err := d.Start(); err != nil {
			return err
		}
		daemonPid = d.Pid()
		clock = treeCPU(daemonPid)
		defer d.Stop(5 * time.Second)
		f, err := frontend.Dial(sock, frontOptions)
		if err != nil {
			return fmt.Errorf("%w\n%s", err, d.Output())
		}
		defer func() {
			f.Close()
			if err := d.Wait(10 * time.Second); err != nil {
				fmt.Fprintf(os.Stderr, "%s did not exit after the front-end disconnected: %v\n", target, err)
			}
		}()
		// Guest root, as a mounting kernel usually sends for a root shell.
		s, err := newSession(f, 0, 0)
		if err != nil {
			return fmt.Errorf("%w\n%s", err, d.Output())
		}
		sess = s
		newWorker = func(op benchOp) func(int) (opFunc, error) {
			return func(w int) (opFunc, error) { return op.fuse(s, w) }
		}
	}
	if sess != nil {
		defer sess.forgets.Wait()
	}
	var rss rssSample
	readRSS := func(into *guest.RSS) error {
		if daemonPid == 0 {
			return nil
		}
		time.Sleep(rssSettle)
		n, err := guest.TreeRSS(daemonPid)
		if err != nil {
			return fmt.Errorf("resident memory: %w", err)
		}
		*into = n
		return nil
	}
	if err := readRSS(&rss.setup); err != nil {
		return err
	}
	for _, op := range benchOps {
		for _, depth := range c.depths {
			var st stats
			var err error
			if sess != nil && op.pipe != nil && !c.callFrontEnd {
				var req pipeRequest
				if req, err = op.pipe(sess); err == nil {
					st, err = measurePipe(sess.f, depth, c.dur, c.spin, clock, req)
				}
			} else {
				st, err = measure(depth, c.dur, clock, newWorker(op))
			}
			if errors.Is(err, errNotApplicable) {
				fmt.Printf("SKIP target=%s op=%q: %v\n", target, op.name, err)
				break
			}
			if err != nil {
				return fmt.Errorf("%s at depth %d: %w", op.name, depth, err)
			}
			res.put(target, op.name, st)
			fmt.Printf("RESULT target=%s op=%q depth=%d ops=%d ns=%d ops_per_s=%.0f latency_ns=%d cpu_ns=%d\n",
				target, op.name, depth, st.ops, st.elapsed.Nanoseconds(), st.opsPerSec(), st.latency().Nanoseconds(), st.cpu.Nanoseconds())
		}
	}
	if daemonPid != 0 {
		if err := readRSS(&rss.after); err != nil {
			return err
		}
		mem[target] = append(mem[target], rss)
		fmt.Printf("RSS target=%s setup_bytes=%d setup_shmem_bytes=%d after_bytes=%d after_shmem_bytes=%d\n",
			target, rss.setup.Total, rss.setup.Shmem, rss.after.Total, rss.after.Shmem)
	}
	return nil
}
