// Command benchstep times one benchmark step inside the test guest, where
// busybox's date has no nanoseconds. It is built static (CGO_ENABLED=0) and
// installed as /bin/benchstep by e2e/bench.
//
// Usage:
//
//	benchstep NAME PROG [ARGS...]   run PROG, print "BENCH NAME NANOSECONDS"
//	benchstep NAME @create DIR N    create DIR/f0..f(N-1), 100 bytes each
//	benchstep NAME @stat DIR N      lstat DIR/f0..f(N-1)
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
