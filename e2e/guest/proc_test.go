package guest

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseProcStatCountsFieldsFromTheLastParenthesis(t *testing.T) {
	// A command name may hold spaces and parentheses, even ") " and what looks like the fields
	// after it; utime stime cutime cstime are 7 4 2 1.
	line := []byte("4242 (a) (b c) R 1 2 3) S 17 4200 4100 0 -1 4194560 100 0 0 0 7 4 2 1 20 0 1 0 5 0 0\n")
	got, err := ParseProcStat(line)
	if err != nil {
		t.Fatal(err)
	}
	want := ProcStat{PID: 4242, Comm: "a) (b c) R 1 2 3", State: 'S', PPID: 17, PGRP: 4200, Session: 4100, CPU: 140 * time.Millisecond}
	if got != want {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	// An empty command name.
	if got, err := ParseProcStat([]byte("7 () Z 1 7 7 0 -1 4194560 0 0 0 0 0 0 0 0 20")); err != nil || got.Comm != "" || got.State != 'Z' || got.PGRP != 7 {
		t.Errorf("empty command name: %+v, %v", got, err)
	}
	for _, bad := range []string{
		"4242 (a) S 17",
		"4242 a S 17 4242 4242 0 -1 4194560 100 0 0 0 7 4 2 1 20",
		"4242 a) S 17 4242 4242 0 -1 4194560 100 0 0 0 7 4 2 1 20",
		"x (a) S 17 4242 4242 0 -1 4194560 100 0 0 0 7 4 2 1 20",
		"(a) S 17 4242 4242 0 -1 4194560 100 0 0 0 7 4 2 1 20",
		"4242 (a) SS 17 4242 4242 0 -1 4194560 100 0 0 0 7 4 2 1 20",
		"4242 (a) S x 4242 4242 0 -1 4194560 100 0 0 0 7 4 2 1 20",
		"4242 (a) S 17 x 4242 0 -1 4194560 100 0 0 0 7 4 2 1 20",
		"4242 (a) S 17 4242 x 0 -1 4194560 100 0 0 0 7 4 2 1 20",
		"4242 (a) S 17 4242 4242 0 -1 4194560 100 0 0 0 7 -- 2 1 20",
	} {
		if _, err := ParseProcStat([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestReadProcStat(t *testing.T) {
	// A child whose command name is made to look like the fields after it: sleep run through a
	// symlink, whose name the kernel takes as the command name.
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep:", err)
	}
	const comm = "a) R 1 2 (b c"
	link := filepath.Join(t.TempDir(), comm)
	if err := os.Symlink(sleep, link); err != nil {
		t.Fatal(err)
	}
	child := exec.Command(link, "30")
	child.Args[0] = "sleep" // for a multi-call binary
	child.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	pid := child.Process.Pid
	// Until the child has called execve it has this process's command name; sleep then sleeps.
	var got ProcStat
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if got, err = ReadProcStat(pid); err != nil {
			t.Fatal(err)
		}
		if got.Comm == comm && got.State == 'S' || time.Now().After(deadline) {
			break
		}
	}
	sid, err := unix.Getsid(0)
	if err != nil {
		t.Fatal(err)
	}
	want := ProcStat{PID: pid, Comm: comm, State: 'S', PPID: os.Getpid(), PGRP: pid, Session: sid, CPU: got.CPU}
	if got != want {
		t.Errorf("got %+v\nwant %+v", got, want)
	}

	// A process that is gone.
	child.Process.Kill()
	child.Wait()
	if _, err := ReadProcStat(pid); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadProcStat of a reaped child: %v, want ENOENT", err)
	}
}

func TestParseRSS(t *testing.T) {
	status := "Name:\tuvfsd\nVmPeak:\t  1250000 kB\nVmHWM:\t   9000 kB\nVmRSS:\t    7428 kB\nRssAnon:\t 3000 kB\nRssFile:\t 4000 kB\nRssShmem:\t 428 kB\n"
	if got, err := ParseRSS([]byte(status)); err != nil || got != (RSS{7428 << 10, 428 << 10}) || got.Own() != 7000<<10 {
		t.Errorf("ParseRSS = %+v, %v; want 7428 kB with 428 kB shared", got, err)
	}
	// A zombie has no VmRSS line.
	if got, err := ParseRSS([]byte("Name:\tx\nState:\tZ (zombie)\n")); err != nil || got != (RSS{}) {
		t.Errorf("zombie: ParseRSS = %+v, %v; want 0, nil", got, err)
	}
	for _, bad := range []string{"VmRSS:\t7428 MB\n", "VmRSS:\tx kB\n", "VmRSS:\n", "RssShmem: 1 2 kB\n"} {
		if _, err := ParseRSS([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	own, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ParseRSS(own); err != nil || got.Total < 1<<20 {
		t.Errorf("this process: ParseRSS = %+v, %v; want at least 1 MiB", got, err)
	}
}

// startBusyChild starts a child that burns CPU, then sleeps; it returns once the burning is done.
func startBusyChild(t *testing.T) *exec.Cmd {
	t.Helper()
	child := exec.Command("sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; echo; exec sleep 30")
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Skip("no sh:", err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	if _, err := out.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	return child
}

func readStat(t *testing.T, pid int) ProcStat {
	t.Helper()
	s, err := ReadProcStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTreeCPUCountsChildren(t *testing.T) {
	// A child that burns CPU and then waits: its time must count in this process's tree.
	child := startBusyChild(t)
	c := readStat(t, child.Process.Pid)
	if c.CPU < 50*time.Millisecond {
		t.Fatalf("the child used only %v; the loop is too short to tell", c.CPU)
	}
	own := readStat(t, os.Getpid())
	tree, err := TreeCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if tree < own.CPU+c.CPU {
		t.Errorf("tree CPU %v < own %v + child %v", tree, own.CPU, c.CPU)
	}
	if got, err := TreeCPU(0); got != 0 || err != nil {
		t.Errorf("TreeCPU(0) = %v, %v; want 0, nil", got, err)
	}
}

func TestTreeRSSSumsChildren(t *testing.T) {
	child := startBusyChild(t)
	rss := func(pid int) int64 {
		t.Helper()
		status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
		if err != nil {
			t.Fatal(err)
		}
		n, err := ParseRSS(status)
		if err != nil || n.Total == 0 {
			t.Fatalf("VmRSS of %d: %+v, %v", pid, n, err)
		}
		return n.Total
	}
	childRSS := rss(child.Process.Pid)
	tree, err := TreeRSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// This process's RSS moves as the test runs; the child's is only added if the tree has it.
	if own := rss(os.Getpid()); tree.Total < childRSS+own/2 {
		t.Errorf("tree RSS %d < about own %d + child %d", tree, own, childRSS)
	}
	if _, err := TreeRSS(1 << 30); err == nil {
		t.Error("TreeRSS of a missing process succeeded")
	}
}
