package main

import (
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

func TestParseProcStatCountsFieldsFromTheLastParenthesis(t *testing.T) {
	// A command name may hold spaces and parentheses; utime stime cutime cstime are 7 4 2 1.
	line := []byte("4242 (a) (b c) S 17 4242 4242 0 -1 4194560 100 0 0 0 7 4 2 1 20 0 1 0 5 0 0\n")
	got, err := parseProcStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if got.ppid != 17 || got.cpu != 140*time.Millisecond {
		t.Errorf("got ppid %d cpu %v, want 17 and 140ms", got.ppid, got.cpu)
	}
	if _, err := parseProcStat([]byte("4242 (a) S 17")); err == nil {
		t.Error("a short line parsed")
	}
}

func TestTreeCPUCountsChildren(t *testing.T) {
	// A child that burns CPU and then waits: its time must count in this process's tree.
	child := exec.Command("sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; echo; exec sleep 30")
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Skip("no sh:", err)
	}
	defer func() { child.Process.Kill(); child.Wait() }()
	if _, err := out.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	line, err := os.ReadFile("/proc/" + strconv.Itoa(child.Process.Pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseProcStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if c.cpu < 50*time.Millisecond {
		t.Fatalf("the child used only %v; the loop is too short to tell", c.cpu)
	}
	self, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	own, err := parseProcStat(self)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := treeCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if tree < own.cpu+c.cpu {
		t.Errorf("tree CPU %v < own %v + child %v", tree, own.cpu, c.cpu)
	}
	if got, err := treeCPU(0); got != 0 || err != nil {
		t.Errorf("treeCPU(0) = %v, %v; want 0, nil", got, err)
	}
}
