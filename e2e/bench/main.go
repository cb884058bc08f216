// Command bench compares uvfsd with QEMU's C virtiofsd and virtio-9p from
// inside a real guest. Each round boots the same busybox guest once per
// system, all at once, and lets the guests take turns step by step (in an
// order that rotates, so slow drift hits every system alike; lockstep.go);
// --sequential boots them one after the other instead. It times
// create/stat/read of small files, ls -lR, find and cp -a of a host-made
// tree, a sequential write and read and rm -rf, in the guest. It prints
// every sample as it arrives and, at the end, the median per workload with
// the ratios uvfsd/C and uvfsd/9p.
//
//	go run ./e2e/bench [--rounds 3] [--quick] [--uvfsd-args "--cache=always"]
//
// uvfsd runs rootless: as the uvfs-e2e user when started as root (created if
// missing), else as the caller. The C virtiofsd needs root and is skipped
// otherwise. Under TCG (no KVM) the absolute numbers are slow; the ratios
// are what to read.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/uvfsd/uvfsd/e2e/guest"
	"github.com/uvfsd/uvfsd/scripts/vm"
)

const shareTag = "uvfs"

// bench is one benchmark run's configuration and built artefacts.
type bench struct {
	sizes     sizes
	rounds    int
	rounds9p  int
	systems   []string
	uvfsdArgs []string
	memoryMB  int
	cpus      int
	// queues is the virtio-fs devices' num-request-queues (the first --queues); systemQueues
	// the count of the systems that run uvfsd with another (uvfsd-qN); qemu the QEMU binary.
	queues       int
	systemQueues map[string]int
	qemu         string
	verbose      bool
	// sequential boots one system at a time and runs all its steps (the guest script has no
	// gates); otherwise every round runs in lockstep.
	sequential bool
	// measureCPU records each step's daemon and QEMU CPU time (lockstep only).
	measureCPU bool

	rootless guest.HostUser
	work     string // binaries and initramfs images
	uvfsd    string
	kernel   string // what QEMU boots
	initrdFS string // mounts virtiofs tag shareTag at /mnt
	initrd9p string // mounts 9p tag p9 at /mnt
	// initrdFloor mounts virtiofs like initrdFS but runs the steps in a tmpfs (sysFloor)
	initrdFloor string
	timeout     time.Duration
	bootCount   int

	// countRequests runs one boot per virtio-fs daemon with request accounting (uvfsd reports on
	// SIGUSR1, the C virtiofsd logs each request with -d) and fills counts.
	countRequests bool
	// uvfsdSystems are the systems that run uvfsd, with their extra flags: "uvfsd" and each
	// --variant.
	uvfsdSystems map[string][]string
	counts       map[string]stepCounts
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	b := &bench{}
	quick := flag.Bool("quick", false, "small run: 300 files, a 1000-file tree, 16 MiB, 1 round (unless set)")
	flag.IntVar(&b.rounds, "rounds", 3, "boots per system; the table shows the median")
	flag.IntVar(&b.rounds9p, "rounds-9p", 1, "boots of 9p (at most --rounds): 9p is 5-10x slower under TCG and would dominate the run time")
	// The sizes (2000 files, a 6000-file tree, 128 MiB) take over 20 minutes per round
	// under TCG, mostly in 9p; the defaults keep a whole run near 10 minutes.
	flag.IntVar(&b.sizes.SmallFiles, "files", 1000, "small files to create, stat, read (the issue's full size: 2000)")
	flag.IntVar(&b.sizes.TreeFiles, "tree-files", 1500, "files in the host-made tree (full size: 6000)")
	flag.IntVar(&b.sizes.BigMiB, "mib", 64, "MiB of the sequential write and read (full size: 128)")
	uvfsdArgs := flag.String("uvfsd-args", "", `extra uvfsd flags, space separated (e.g. "--cache=always --writeback")`)
	systems := flag.String("systems", strings.Join([]string{sysUvfsd, sysC, sys9p}, ","), "systems to run, comma separated ("+sysRust+" too, from "+guest.RustVirtiofsdDir()+"; "+sysFloor+": the steps on a tmpfs in the guest, the floor no daemon can beat)")
	flag.IntVar(&b.memoryMB, "memory", 1024, "guest memory in MiB (same for all systems)")
	flag.IntVar(&b.cpus, "cpus", 2, "guest CPUs (same for all systems)")
	kernelPath := flag.String("kernel", "", "guest kernel (default: the newest /boot/vmlinuz-6.1.*, Debian bookworm's, or $UVFS_E2E_KERNEL)")
	qemu10 := flag.Bool("qemu10", false, "boot QEMU 10 and Linux 6.12 from $UVFS_E2E_QEMU10 (/opt/uvfs-e2e/qemu10, .ci/install-qemu10) instead of the system's QEMU and --kernel")
	queues := flag.String("queues", "1", `num-request-queues of the virtio-fs devices (a Linux 6.11+ guest uses one per vCPU; the C and Rust virtiofsd refuse more than 1); "1,2" also runs uvfsd as system uvfsd-q2 with 2`)
	flag.BoolVar(&b.verbose, "verbose", false, "copy the guest console to stderr")
	flag.BoolVar(&b.verbose, "v", false, "short for --verbose")
	flag.DurationVar(&b.timeout, "boot-timeout", 15*time.Minute, "give up on one boot after this long")
	var variants guest.StringList
	flag.Var(&variants, "variant", `also run uvfsd as system NAME with these flags: "NAME=FLAGS" (repeatable; e.g. "nopoll=--poll-us=0")`)
	flag.BoolVar(&b.sequential, "sequential", false, "boot one system at a time and run all its steps, instead of all systems at once taking turns step by step")
	flag.BoolVar(&b.measureCPU, "cpu", false, "also report the CPU time each daemon and QEMU used per step (not with --sequential)")
	flag.BoolVar(&b.countRequests, "count-requests", false, "instead of timing, count each daemon's FUSE requests per workload (one boot each, no 9p)")
	only := flag.String("workloads", "", "run only these workloads, comma separated (create,stat,read,ls-lR,find,cp-a,write-seq,read-seq,par-files,par-read,rm-rf); stat and read need create, read-seq and par-read need write-seq")
	flag.Parse()
	if err := selectWorkloads(*only); err != nil {
		return err
	}
	given := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if *quick {
		if !given["files"] {
			b.sizes.SmallFiles = 300
		}
		if !given["tree-files"] {
			b.sizes.TreeFiles = 1000
		}
		if !given["mib"] {
			b.sizes.BigMiB = 16
		}
		if !given["rounds"] {
			b.rounds = 1
		}
	}
	if b.rounds < 1 || b.sizes.SmallFiles < 1 || b.sizes.TreeFiles < 1 || b.sizes.BigMiB < 1 {
		return fmt.Errorf("--rounds, --files, --tree-files and --mib must be at least 1")
	}
	b.uvfsdArgs = strings.Fields(*uvfsdArgs)
	b.uvfsdSystems = map[string][]string{sysUvfsd: b.uvfsdArgs}
	vs, err := guest.ParseVariants(variants, sysUvfsd, sysC, sys9p, sysRust, sysFloor)
	if err != nil {
		return err
	}
	for _, v := range vs {
		b.uvfsdSystems[v.Name] = v.Flags
		*systems += "," + v.Name
	}
	b.systemQueues = map[string]int{}
	for i, q := range strings.Split(*queues, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(q))
		if err != nil || n < 1 || n > 1022 {
			return fmt.Errorf("--queues: %q is not a queue count from 1 to 1022", q)
		}
		if i == 0 {
			b.queues = n
			continue
		}
		name := fmt.Sprintf("%s-q%d", sysUvfsd, n)
		b.uvfsdSystems[name], b.systemQueues[name] = b.uvfsdArgs, n
		*systems += "," + name
	}
	if b.countRequests {
		// Counting follows one daemon's log per boot, step by step: one guest at a time.
		b.rounds, b.counts, b.sequential = 1, map[string]stepCounts{}, true
		var keep []string
		for _, sys := range strings.Split(*systems, ",") {
			if sys := strings.TrimSpace(sys); sys != sys9p && sys != sysFloor { // no requests to count
				keep = append(keep, sys)
			}
		}
		*systems = strings.Join(keep, ",")
	}
	for _, s := range strings.Split(*systems, ",") {
		switch s = strings.TrimSpace(s); s {
		case sys9p, sysFloor:
		case sysRust:
			if _, err := os.Stat(filepath.Join(guest.RustVirtiofsdDir(), guest.RustVirtiofsdBinary)); err != nil {
				fmt.Printf("note: skipping the Rust virtiofsd: %v (.ci/install-clients unpacks it)\n", err)
				continue
			}
			if b.queues > 1 {
				fmt.Printf("note: skipping the Rust virtiofsd: it refuses a device with %d request queues (it serves one)\n", b.queues)
				continue
			}
		case sysC:
			if os.Geteuid() != 0 {
				fmt.Println("note: skipping the C virtiofsd: it needs root (run this program as root to include it)")
				continue
			}
			if _, err := os.Stat(cVirtiofsd); err != nil {
				fmt.Printf("note: skipping the C virtiofsd: %v (apt-get install qemu-system-common)\n", err)
				continue
			}
			if b.queues > 1 {
				fmt.Printf("note: skipping the C virtiofsd: it refuses a device with %d request queues (libvhost-user: Invalid queue index)\n", b.queues)
				continue
			}
		default:
			if _, ok := b.uvfsdSystems[s]; ok {
				break
			}
			return fmt.Errorf("--systems: unknown system %q (know %s, %s, %s, %s, %s)", s, sysUvfsd, sysC, sysRust, sys9p, sysFloor)
		}
		b.systems = append(b.systems, s)
	}
	if err := b.prepare(*kernelPath, *qemu10); err != nil {
		return err
	}
	defer os.RemoveAll(b.work)

	fmt.Printf("guest: %d CPUs, %d MiB, TCG, %s on %s, %d request queue(s); %d small files, %d-file tree, %d MiB; uvfsd as %s with flags %q\n",
		b.cpus, b.memoryMB, filepath.Base(b.kernel), b.qemu, b.queues, b.sizes.SmallFiles, b.sizes.TreeFiles, b.sizes.BigMiB, b.rootless.Name, b.uvfsdArgs)
	if b.measureCPU && b.sequential {
		return fmt.Errorf("--cpu measures steps in lockstep: it does not go with --sequential or --count-requests")
	}
	all := samples{}
	allCPU := cpuSamples{}
	byRound := make(roundSamples, b.rounds+1)
	var failures []string
	start := time.Now()
	report := func(round int, system string, steps map[string]time.Duration) {
		all.add(system, steps)
		if byRound[round] == nil {
			byRound[round] = map[string]map[string]time.Duration{}
		}
		byRound[round][system] = steps
		for _, w := range workloads {
			fmt.Printf("RESULT round=%d system=%s workload=%s ns=%d\n", round, system, w.Name, steps[w.Name].Nanoseconds())
		}
	}
	fail := func(round int, system string, err error) {
		failures = append(failures, fmt.Sprintf("round %d %s: %v", round, system, err))
		fmt.Fprintf(os.Stderr, "round %d %s FAILED: %v\n", round, system, err)
	}
	for round := 1; round <= b.rounds; round++ {
		if !b.sequential {
			var systems []string
			for _, s := range b.systems {
				if s != sys9p || round <= b.rounds9p {
					systems = append(systems, s)
				}
			}
			roundStart := time.Now()
			steps, cpu, failed := b.runLockstep(round, systems)
			for _, system := range systems {
				if err := failed[system]; err != nil {
					fail(round, system, err)
				} else {
					report(round, system, steps[system])
					allCPU.add(system, cpu[system])
				}
			}
			fmt.Printf("round %d: %v in lockstep\n", round, time.Since(roundStart).Round(time.Millisecond))
			continue
		}
		for i := range b.systems {
			// Rotate the order so no system always runs first (cold host caches) or last.
			system := b.systems[(i+round-1)%len(b.systems)]
			if system == sys9p && round > b.rounds9p {
				continue
			}
			steps, dur, err := b.runOnce(system)
			if err != nil {
				fail(round, system, err)
				continue
			}
			report(round, system, steps)
			fmt.Printf("round %d %s: boot+script %v\n", round, system, dur.Round(time.Millisecond))
		}
	}
	fmt.Printf("\nmedian of %d round(s) (9p: %d), %v in all; ratios < 1 mean uvfsd is faster\n\n",
		b.rounds, min(b.rounds, b.rounds9p), time.Since(start).Round(time.Second))
	writeTable(os.Stdout, all, b.sizes, b.systems)
	fmt.Println()
	writeSpread(os.Stdout, all, b.sizes, b.systems)
	if slices.Contains(b.systems, sysC) && b.rounds > 1 {
		fmt.Println()
		writePaired(os.Stdout, byRound, b.sizes, b.systems)
	}
	if b.measureCPU {
		fmt.Println()
		writeCPU(os.Stdout, allCPU, b.sizes, b.systems)
	}
	if b.countRequests {
		fmt.Println("\n(times above are not comparable: the C virtiofsd logged every request)")
		writeCounts(os.Stdout, b.counts, b.systems, b.sizes)
	}
	if len(failures) > 0 {
		return fmt.Errorf("%d boot(s) failed:\n%s", len(failures), strings.Join(failures, "\n"))
	}
	return nil
}

// prepare finds QEMU and the kernel, builds uvfsd and the guest timer, and writes
// the two initramfs images.
func (b *bench) prepare(kernelPath string, qemu10 bool) error {
	var k vm.Kernel
	var err error
	if qemu10 {
		dir := os.Getenv("UVFS_E2E_QEMU10")
		if dir == "" {
			dir = "/opt/uvfs-e2e/qemu10"
		}
		b.qemu = filepath.Join(dir, "qemu-system-x86_64")
		if _, err := os.Stat(b.qemu); err != nil {
			return fmt.Errorf("QEMU 10 not unpacked (run .ci/install-qemu10): %w", err)
		}
		if k, err = vm.FindKernelSeries(filepath.Join(dir, "boot"), "6.12"); err != nil {
			return err
		}
	} else {
		if b.qemu, err = exec.LookPath("qemu-system-x86_64"); err != nil {
			return fmt.Errorf("qemu-system-x86_64 not found (apt-get install qemu-system-x86): %w", err)
		}
		if kernelPath != "" {
			k, err = vm.FindKernel(kernelPath)
		} else {
			k, err = vm.BaselineKernel()
		}
		if err != nil {
			return err
		}
	}
	if b.rootless, err = rootlessAccount(); err != nil {
		return err
	}
	// 0755 under /tmp: the unprivileged daemon must be able to run uvfsd from here.
	if b.work, err = tempDir("uvfs-bench-", 0o755, currentAccount()); err != nil {
		return err
	}
	b.kernel = k.Path
	if vmlinux, err := vm.UncompressedKernel(k.Path, vm.CacheDir()); err == nil {
		b.kernel = vmlinux
	} else {
		fmt.Fprintf(os.Stderr, "bench: booting the compressed kernel (slower under TCG): %v\n", err)
	}
	ctx := context.Background()
	b.uvfsd = filepath.Join(b.work, "uvfsd")
	if err := vm.GoBuild(ctx, b.uvfsd, "github.com/uvfsd/uvfsd/cmd/uvfsd"); err != nil {
		return err
	}
	step := filepath.Join(b.work, "benchstep")
	if err := vm.GoBuild(ctx, step, "github.com/uvfsd/uvfsd/e2e/bench/benchstep"); err != nil {
		return err
	}
	stepData, err := os.ReadFile(step)
	if err != nil {
		return err
	}
	for _, img := range []struct {
		path   *string
		name   string
		mount  vm.Mount
		script string
	}{
		{&b.initrdFS, "initrd-virtiofs", vm.Mount{Tag: shareTag, Dir: "/mnt"}, guestScript(b.sizes, !b.sequential)},
		{&b.initrd9p, "initrd-9p", vm.Mount{Type: "9p", Tag: "p9", Dir: "/mnt",
			Options: "trans=virtio,version=9p2000.L,cache=loose,msize=512000"}, guestScript(b.sizes, !b.sequential)},
		{&b.initrdFloor, "initrd-floor", vm.Mount{Tag: shareTag, Dir: "/mnt"}, floorPrologue + guestScript(b.sizes, !b.sequential)},
	} {
		rd := vm.Initramfs{
			Kernel:       k,
			ExtraModules: vm.NinePModules, // loaded for every system: same guest
			Mounts:       []vm.Mount{img.mount},
			Script:       img.script,
			Files:        map[string][]byte{"/bin/benchstep": stepData},
		}
		*img.path = filepath.Join(b.work, img.name)
		if err := rd.BuildFile(*img.path); err != nil {
			return err
		}
	}
	return nil
}

// runOnce boots the guest against one system and returns its step times.
func (b *bench) runOnce(system string) (map[string]time.Duration, time.Duration, error) {
	bt, err := b.setUp(system)
	if err != nil {
		return nil, 0, err
	}
	machine := b.vm(bt, system)
	if b.verbose {
		machine.Console = os.Stderr
	}
	if b.countRequests {
		var signal func() error
		if _, ok := b.uvfsdSystems[system]; ok {
			signal = signalProcess(bt.daemon.Pid())
		}
		watcher, counts := countSteps(bt.counter, signal)
		if machine.Console != nil {
			watcher = io.MultiWriter(machine.Console, watcher)
		}
		machine.Console = watcher
		defer func() { b.counts[system] = counts }()
	}
	// Write back what setUp and the previous round left dirty (the new tree, the last round's
	// deletions) now, so that the host's writeback does not run in the middle of this round.
	syscall.Sync()
	res, err := machine.Run(context.Background())
	steps, err := bt.stepsOf(res, err)
	return steps, res.Duration, err // Run fills res even when it fails
}

// vm is the guest that boots against bt for system, with its own console log.
func (b *bench) vm(bt *boot, system string) vm.VM {
	b.bootCount++
	return vm.VM{
		QEMU:       b.qemu,
		Kernel:     b.kernel,
		Initrd:     bt.initrd,
		MemoryMB:   b.memoryMB,
		CPUs:       b.cpus,
		FS:         bt.fs,
		ExtraArgs:  bt.extra,
		ConsoleLog: filepath.Join(b.work, fmt.Sprintf("console-%d-%s.log", b.bootCount, system)),
		Timeout:    b.timeout,
	}
}

// stepsOf turns a finished boot (machine.Run's result) into its step times, or says why there are
// none with the daemon's or the guest's output, and stops the daemon.
func (bt *boot) stepsOf(res *vm.Result, runErr error) (map[string]time.Duration, error) {
	if runErr != nil {
		bt.close()
		if bt.daemon != nil {
			runErr = fmt.Errorf("%w\n--- daemon output ---\n%s", runErr, bt.daemon.Output())
		}
		return nil, runErr
	}
	steps, err := parseSteps(res.Output)
	if err == nil && res.ExitStatus != 0 {
		err = fmt.Errorf("guest script exited with %d", res.ExitStatus)
	}
	if err != nil {
		err = fmt.Errorf("%w\n--- guest output ---\n%s", err, strings.Join(res.Output, "\n"))
	}
	if ferr := bt.finish(); err == nil {
		err = ferr
	}
	return steps, err
}
