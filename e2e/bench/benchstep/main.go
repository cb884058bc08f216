// Command benchstep times one benchmark step inside the test guest, where
// busybox's date has no nanoseconds. It is built static (CGO_ENABLED=0) and
// installed as /bin/benchstep by e2e/bench.
//
// Usage:
//
//	benchstep NAME PROG [ARGS...]   run PROG, print "BENCH NAME NANOSECONDS"
//	benchstep NAME @create DIR N    create DIR/f0..f(N-1), 100 bytes each
//	benchstep NAME @stat DIR N      lstat DIR/f0..f(N-1)
//	benchstep NAME @par-files DIR N one process per CPU, pinned to it, each creating, lstat-ing
//	                                and reading back N files of its own in DIR/pCPU
//	benchstep NAME @par-read FILE   one process per CPU, pinned to it, each reading its share of
//	                                FILE in 1 MiB reads
//
// Since Linux 6.11 the virtio-fs driver sends each CPU's requests on its own request queue, so the
// two parallel steps show what several request queues give.
//
// PROG's standard output goes to /dev/null (the steps are "ls -lR > /dev/null"
// and the like); its standard error stays on the console. A failed step
// prints "BENCH-FAIL NAME reason" and exits 1.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: benchstep NAME PROG [ARGS...] | NAME @create DIR N | NAME @stat DIR N")
		os.Exit(2)
	}
	name, args := os.Args[1], os.Args[2:]
	if args[0] == "@par-worker" { // one of parallel's workers: its parent times and reports
		if err := parWorker(args[1:]); err != nil {
			fmt.Fprintf(os.Stderr, "benchstep worker: %v\n", err)
			os.Exit(1)
		}
		return
	}
	start := time.Now()
	err := step(args)
	elapsed := time.Since(start)
	if err != nil {
		fmt.Printf("BENCH-FAIL %s %v\n", name, err)
		os.Exit(1)
	}
	fmt.Printf("BENCH %s %d\n", name, elapsed.Nanoseconds())
}

func step(args []string) error {
	switch args[0] {
	case "@par-files", "@par-read":
		return parallel(args)
	case "@create", "@stat":
		if len(args) != 3 {
			return fmt.Errorf("%s takes DIR N", args[0])
		}
		n, err := strconv.Atoi(args[2])
		if err != nil || n < 0 {
			return fmt.Errorf("%s: bad count %q", args[0], args[2])
		}
		if args[0] == "@create" {
			return createFiles(args[1], n)
		}
		return statFiles(args[1], n)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = os.Stderr // stdout stays nil: /dev/null
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	return nil
}

// parallel runs one worker per CPU of this guest, each pinned to its CPU with busybox taskset, and
// waits for all of them.
func parallel(args []string) error {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return fmt.Errorf("sched_getaffinity: %w", err)
	}
	cpus := set.Count()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var extra []string
	switch args[0] {
	case "@par-files":
		if len(args) != 3 {
			return fmt.Errorf("@par-files takes DIR N")
		}
		if err := os.Mkdir(args[1], 0o755); err != nil {
			return err
		}
		extra = []string{"files", args[1], args[2]}
	default:
		if len(args) != 2 {
			return fmt.Errorf("@par-read takes FILE")
		}
		extra = []string{"read", args[1]}
	}
	cmds := make([]*exec.Cmd, cpus)
	for i := range cmds {
		a := append([]string{"-c", strconv.Itoa(i), self, "worker", "@par-worker", strconv.Itoa(i), strconv.Itoa(cpus)}, extra...)
		cmds[i] = exec.Command("taskset", a...)
		cmds[i].Stdout, cmds[i].Stderr = os.Stdout, os.Stderr
		if err := cmds[i].Start(); err != nil {
			return fmt.Errorf("start worker %d: %w", i, err)
		}
	}
	var first error
	for i, c := range cmds {
		if err := c.Wait(); err != nil && first == nil {
			first = fmt.Errorf("worker %d: %w", i, err)
		}
	}
	return first
}

// parWorker is one CPU's share: "I CPUS files DIR N" or "I CPUS read FILE".
func parWorker(args []string) error {
	if len(args) < 4 {
		return fmt.Errorf("@par-worker: short arguments %q", args)
	}
	i, err1 := strconv.Atoi(args[0])
	cpus, err2 := strconv.Atoi(args[1])
	if err1 != nil || err2 != nil || cpus < 1 {
		return fmt.Errorf("@par-worker: bad arguments %q", args)
	}
	if args[2] == "read" {
		return readShare(args[3], i, cpus)
	}
	if len(args) != 5 {
		return fmt.Errorf("@par-worker files takes DIR N")
	}
	n, err := strconv.Atoi(args[4])
	if err != nil || n < 0 {
		return fmt.Errorf("@par-worker: bad count %q", args[4])
	}
	dir := args[3] + "/p" + strconv.Itoa(i)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	if err := createFiles(dir, n); err != nil {
		return err
	}
	if err := statFiles(dir, n); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	for j := range n {
		p := dir + "/f" + strconv.Itoa(j)
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", p, err)
		}
		m, err := unix.Read(fd, buf)
		unix.Close(fd)
		if err != nil || m != 100 {
			return fmt.Errorf("read %s: %d bytes, %v", p, m, err)
		}
	}
	return nil
}

// readShare reads share i of cpus of file, in 1 MiB preads.
func readShare(file string, i, cpus int) error {
	fd, err := unix.Open(file, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", file, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	const chunk = 1 << 20
	chunks := (st.Size + chunk - 1) / chunk
	from, to := chunks*int64(i)/int64(cpus)*chunk, chunks*int64(i+1)/int64(cpus)*chunk
	buf := make([]byte, chunk)
	for off := from; off < min(to, st.Size); off += chunk {
		if _, err := unix.Pread(fd, buf, off); err != nil {
			return fmt.Errorf("read %s at %d: %w", file, off, err)
		}
	}
	return nil
}

var payload = []byte("0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456\n\n\n")

// createFiles makes n small files the way "echo > f" does: open, write, close.
func createFiles(dir string, n int) error {
	for i := range n {
		p := dir + "/f" + strconv.Itoa(i)
		fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return fmt.Errorf("create %s: %w", p, err)
		}
		_, err = unix.Write(fd, payload[:100])
		if cerr := unix.Close(fd); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	return nil
}

// statFiles lstats n files by name, without listing the directory.
func statFiles(dir string, n int) error {
	var st unix.Stat_t
	for i := range n {
		p := dir + "/f" + strconv.Itoa(i)
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("lstat %s: %w", p, err)
		}
		if st.Size != 100 {
			return fmt.Errorf("lstat %s: size %d, want 100", p, st.Size)
		}
	}
	return nil
}
