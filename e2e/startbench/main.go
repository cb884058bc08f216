// Command startbench compares how fast uvfs-vm and virtme-ng (vng, with the
// Rust virtiofsd) start a command in a guest whose root is the host's file
// system: for each launcher, in alternating rounds, it runs
//
//	uvfs-vm -- echo MARK          (scripts/uvfs-vm's binaries, built here)
//	vng --run KERNEL --disable-kvm -- echo MARK
//
// and reports the median time from the host command's start to MARK on its
// output (the command started in the guest) and to its exit (the guest
// powered off). Run it as the user who will use the launchers, from the
// repository:
//
//	go run ./e2e/startbench --vng /opt/uvfs-e2e/virtme-ng --rust-virtiofsd /opt/uvfs-e2e/virtiofsd
//
// (.ci/install-clients unpacks both there.) Both use TCG unless --kvm.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/uvfsd/uvfsd/scripts/vm"
)

const mark = "UVFS-STARTBENCH-MARK"

type options struct {
	rounds  int
	kernel  string
	vng     string // unpacked virtme-ng package
	rust    string // unpacked Rust virtiofsd package (with its libc)
	kvm     bool
	timeout time.Duration
	bin     string // prebuilt uvfs-vm, uvfs-helper and uvfsd
}

// sample is one launcher run.
type sample struct {
	started, total time.Duration
}

func main() {
	var o options
	flag.IntVar(&o.rounds, "rounds", 5, "runs of each launcher, alternating")
	flag.StringVar(&o.kernel, "kernel", "", "guest kernel (default: as uvfs-vm picks it)")
	flag.StringVar(&o.vng, "vng", "/opt/uvfs-e2e/virtme-ng", "directory the virtme-ng .deb is unpacked in")
	flag.StringVar(&o.rust, "rust-virtiofsd", "/opt/uvfs-e2e/virtiofsd", "directory the Rust virtiofsd .deb and its libc are unpacked in")
	flag.BoolVar(&o.kvm, "kvm", false, "use KVM for both")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Minute, "longest a run may take")
	flag.StringVar(&o.bin, "bin", "", "directory with prebuilt uvfs-vm, uvfs-helper and uvfsd (default: build them)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "startbench:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	k, err := vm.FindKernel(o.kernel)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "startbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	uvfsVM, err := buildUvfsVM(o.bin, work)
	if err != nil {
		return err
	}
	vng, err := vngCommand(o, k.Path, work)
	if err != nil {
		return err
	}
	kvm := []string{}
	if o.kvm {
		kvm = []string{"--kvm"}
		vng.args = slices.DeleteFunc(vng.args, func(a string) bool { return strings.Contains(a, "--disable-kvm") })
	}
	launchers := []launcher{
		{name: "uvfs-vm (uvfsd)", args: append(append(append([]string{}, uvfsVM...), kvm...), "--kernel", k.Path, "--", "echo", mark)},
		vng,
	}
	results := make([][]sample, len(launchers))
	for round := 1; round <= o.rounds; round++ {
		for i, l := range launchers {
			s, err := l.measure(o.timeout)
			if err != nil {
				return fmt.Errorf("%s, round %d: %w", l.name, round, err)
			}
			fmt.Fprintf(os.Stderr, "round %d %-26s command started after %6.2fs, done after %6.2fs\n", round, l.name, s.started.Seconds(), s.total.Seconds())
			results[i] = append(results[i], s)
		}
	}
	fmt.Printf("kernel %s, %s, %d rounds, medians in seconds\n\n", k.Path, map[bool]string{false: "TCG", true: "KVM"}[o.kvm], o.rounds)
	fmt.Println("| launcher | command started | guest powered off |")
	fmt.Println("|---|---|---|")
	for i, l := range launchers {
		fmt.Printf("| %s | %.2f | %.2f |\n", l.name, median(results[i], func(s sample) time.Duration { return s.started }).Seconds(),
			median(results[i], func(s sample) time.Duration { return s.total }).Seconds())
	}
	u := median(results[0], func(s sample) time.Duration { return s.started })
	v := median(results[1], func(s sample) time.Duration { return s.started })
	fmt.Printf("\nuvfs-vm / vng, command started: %.2fx\n", u.Seconds()/v.Seconds())
	return nil
}

// buildUvfsVM builds what scripts/uvfs-vm builds into dir, unless prebuilt
// names a directory that has them, and returns its command line up to the
// flags.
func buildUvfsVM(prebuilt, dir string) ([]string, error) {
	ctx := context.Background()
	bins := map[string]string{}
	for _, name := range []string{"uvfs-vm", "uvfs-helper", "uvfsd"} {
		if prebuilt != "" {
			bins[name] = filepath.Join(prebuilt, name)
			continue
		}
		bins[name] = filepath.Join(dir, name)
		if err := vm.GoBuild(ctx, bins[name], "github.com/uvfsd/uvfsd/cmd/"+name); err != nil {
			return nil, err
		}
	}
	return []string{bins["uvfs-vm"], "--helper", bins["uvfs-helper"], "--uvfsd", bins["uvfsd"]}, nil
}

// vngCommand runs the unpacked vng, in a pseudo-terminal as it wants, with
// a virtiofsd on PATH that runs the unpacked Rust virtiofsd through its own
// libc's loader.
func vngCommand(o options, kernel, dir string) (launcher, error) {
	bin := filepath.Join(o.vng, "usr/bin/vng")
	lib := filepath.Join(o.rust, "usr/lib/x86_64-linux-gnu")
	daemon := filepath.Join(o.rust, "usr/libexec/virtiofsd")
	for _, p := range []string{bin, daemon, filepath.Join(lib, "ld-linux-x86-64.so.2")} {
		if _, err := os.Stat(p); err != nil {
			return launcher{}, fmt.Errorf("%w (run .ci/install-clients as root, or pass --vng and --rust-virtiofsd)", err)
		}
	}
	wrapDir := filepath.Join(dir, "path")
	if err := os.Mkdir(wrapDir, 0o755); err != nil {
		return launcher{}, err
	}
	wrapper := fmt.Sprintf("#!/bin/sh\nexec %s --library-path %s %s \"$@\"\n", filepath.Join(lib, "ld-linux-x86-64.so.2"), lib, daemon)
	if err := os.WriteFile(filepath.Join(wrapDir, "virtiofsd"), []byte(wrapper), 0o755); err != nil {
		return launcher{}, err
	}
	line := vm.ShellJoin([]string{"vng", "--run", kernel, "--disable-kvm", "--", "echo", mark})
	return launcher{
		name: "vng 1.35 (virtiofsd 1.13.2)",
		args: []string{"script", "-qec", line, "/dev/null"},
		env: []string{
			"PATH=" + wrapDir + ":" + filepath.Join(o.vng, "usr/bin") + ":" + os.Getenv("PATH"),
			"PYTHONPATH=" + filepath.Join(o.vng, "usr/lib/python3/dist-packages"),
		},
	}, nil
}

type launcher struct {
	name string
	args []string
	env  []string
}

// measure runs the launcher once, in a process group of its own that is
// killed afterwards, and times MARK and the exit.
func (l launcher) measure(timeout time.Duration) (sample, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, l.args[0], l.args[1:]...)
	cmd.Env = append(os.Environ(), l.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.StdoutPipe()
	if err != nil {
		return sample{}, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return sample{}, err
	}
	defer syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	var s sample
	var output strings.Builder
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		output.WriteString(line + "\n")
		// The guest's echo prints MARK alone; a launcher that echoes
		// its command line prints it with more around it.
		if s.started == 0 && line == mark {
			s.started = time.Since(start)
		}
	}
	io.Copy(io.Discard, out)
	err = cmd.Wait()
	s.total = time.Since(start)
	if err != nil && !errors.Is(ctx.Err(), context.Canceled) {
		return s, fmt.Errorf("%v\noutput:\n%s\nstderr:\n%s", err, output.String(), stderr.String())
	}
	if s.started == 0 {
		return s, fmt.Errorf("the command did not run in the guest (no %s line)\noutput:\n%s\nstderr:\n%s", mark, output.String(), stderr.String())
	}
	return s, nil
}

func median(ss []sample, f func(sample) time.Duration) time.Duration {
	d := make([]time.Duration, len(ss))
	for i, s := range ss {
		d[i] = f(s)
	}
	slices.Sort(d)
	if len(d)%2 == 1 {
		return d[len(d)/2]
	}
	return (d[len(d)/2-1] + d[len(d)/2]) / 2
}
