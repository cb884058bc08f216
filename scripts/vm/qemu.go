package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// FSDevice is one vhost-user-fs device: the daemon's socket and the tag the
// guest mounts.
type FSDevice struct {
	Socket    string
	Tag       string
	QueueSize int // 1024 when zero
	// RequestQueues is the device's num-request-queues: QEMU's default (1)
	// when zero.
	RequestQueues int
}

// VM is one QEMU boot of a kernel and an initramfs built by Initramfs.
type VM struct {
	QEMU     string // qemu-system-x86_64 when empty
	Kernel   string
	Initrd   string
	Append   string // extra kernel command line
	MemoryMB int    // 1024 when zero; the memfd backend has the same size
	CPUs     int    // 2 when zero
	// KVM uses /dev/kvm when it is usable. Off by default: nested KVM
	// hangs at boot on the machines this runs on, and TCG boots in ~3 s.
	KVM       bool
	FS        []FSDevice
	ExtraArgs []string // e.g. -fsdev/-device virtio-9p-pci for a 9p share

	ConsoleLog   string    // file that receives the raw serial console
	Console      io.Writer // receives the raw serial console as it arrives
	ScriptOutput io.Writer // receives the script's output, line by line
	// Stdin, when set, is connected to the console (interactive use: the
	// QEMU monitor is multiplexed on it, Ctrl-A x quits).
	Stdin io.Reader

	// Started, when set, is called with QEMU's process id once it runs (a benchmark reads the
	// process's CPU time).
	Started func(pid int)

	Timeout         time.Duration // whole boot; 5 min when zero, none when negative
	PoweroffTimeout time.Duration // from exit marker to QEMU exit; 30 s when zero
}

// Result is what one boot produced.
type Result struct {
	ExitStatus int      // script exit status from the marker
	Exited     bool     // the exit marker was seen
	Output     []string // script output lines
	Console    []string // every console line
	InitError  string   // why /init gave up, if it did
	Duration   time.Duration
	QEMUStderr string
}

// ErrPoweroffHang means the guest printed its exit marker but QEMU did not
// exit: typically a vhost-user backend that does not answer GET_VRING_BASE.
var ErrPoweroffHang = errors.New("QEMU did not exit after guest poweroff")

// ErrTimeout means the guest did not finish within VM.Timeout.
var ErrTimeout = errors.New("guest timed out")

// ErrQEMUQuit means QEMU exited cleanly before the guest printed its exit marker: the guest
// panicked with -no-reboot, or the user quit QEMU from the console (Ctrl-A x).
var ErrQEMUQuit = errors.New("QEMU exited before the guest finished")

const consoleTailLines = 60

// Args returns the QEMU command line (without the binary).
func (vm *VM) Args() []string {
	mem := vm.MemoryMB
	if mem == 0 {
		mem = 1024
	}
	cpus := vm.CPUs
	if cpus == 0 {
		cpus = 2
	}
	accel := []string{"-accel", "tcg,thread=multi", "-cpu", "max"}
	if vm.KVM && KVMUsable() {
		accel = []string{"-accel", "kvm", "-cpu", "host"}
	}
	cmdline := "console=ttyS0 quiet panic=-1"
	if vm.Append != "" {
		cmdline += " " + vm.Append
	}
	serial := []string{"-serial", "stdio", "-monitor", "none"}
	if vm.Stdin != nil {
		serial = []string{"-serial", "mon:stdio"}
	}
	args := append(accel,
		"-m", fmt.Sprintf("%dM", mem), "-smp", fmt.Sprint(cpus),
		"-nographic", "-nodefaults", "-no-reboot",
		"-kernel", vm.Kernel, "-initrd", vm.Initrd, "-append", cmdline,
		"-object", fmt.Sprintf("memory-backend-memfd,id=mem,size=%dM,share=on", mem),
		"-numa", "node,memdev=mem",
	)
	args = append(args, serial...)
	for i, fs := range vm.FS {
		q := fs.QueueSize
		if q == 0 {
			q = 1024
		}
		id := fmt.Sprintf("vufs%d", i)
		dev := fmt.Sprintf("vhost-user-fs-pci,chardev=%s,tag=%s,queue-size=%d", id, qemuEscape(fs.Tag), q)
		if fs.RequestQueues > 0 {
			dev += fmt.Sprintf(",num-request-queues=%d", fs.RequestQueues)
		}
		args = append(args,
			"-chardev", fmt.Sprintf("socket,id=%s,path=%s", id, qemuEscape(fs.Socket)),
			"-device", dev)
	}
	return append(args, vm.ExtraArgs...)
}

// qemuEscape doubles commas, QEMU's escape inside option values.
func qemuEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// KVMUsable reports whether /dev/kvm can be opened and answers the API
// version ioctl. It cannot tell whether nested KVM will actually boot.
func KVMUsable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	const kvmGetAPIVersion = 0xAE00
	v, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), kvmGetAPIVersion, 0)
	return errno == 0 && v == 12
}

// Run boots the guest and waits until it powers off, the timeout expires
// or ctx is cancelled; QEMU is killed on every path that does not end in a
// clean exit. The error says what went wrong and carries the console tail.
// The Result is filled even when an error is returned.
func (vm *VM) Run(ctx context.Context) (*Result, error) {
	timeout := vm.Timeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	poweroffTimeout := vm.PoweroffTimeout
	if poweroffTimeout == 0 {
		poweroffTimeout = 30 * time.Second
	}
	qemu := vm.QEMU
	if qemu == "" {
		qemu = "qemu-system-x86_64"
	}
	con := newConsole(vm.ScriptOutput)
	sinks := []io.Writer{con}
	if vm.Console != nil {
		sinks = append(sinks, vm.Console)
	}
	if vm.ConsoleLog != "" {
		f, err := os.Create(vm.ConsoleLog)
		if err != nil {
			return &Result{}, fmt.Errorf("create console log: %w", err)
		}
		defer f.Close()
		sinks = append(sinks, f)
	}

	cmd := exec.Command(qemu, vm.Args()...)
	cmd.Stdin = vm.Stdin
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return &Result{}, fmt.Errorf("qemu stdout pipe: %w", err)
	}
	var stderr limitedBuffer
	stderr.max = 64 << 10
	cmd.Stderr = &stderr
	// Kill QEMU if this process dies, so a crashed test leaves no VM behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return &Result{}, fmt.Errorf("start %s (install qemu-system-x86): %w", qemu, err)
	}
	if vm.Started != nil {
		vm.Started(cmd.Process.Pid)
	}
	copied := make(chan struct{})
	go func() {
		io.Copy(io.MultiWriter(sinks...), stdout)
		close(copied)
	}()
	exited := make(chan error, 1)
	go func() {
		<-copied // Wait closes the pipe; read everything first.
		exited <- cmd.Wait()
	}()

	var deadline <-chan time.Time
	if timeout > 0 {
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		deadline = timer.C
	}
	var runErr error
	var waitErr error
	exitSeen := con.exitSeen
	var poweroff <-chan time.Time
	for done := false; !done; {
		select {
		case waitErr = <-exited:
			done = true
		case <-exitSeen:
			exitSeen = nil
			poweroff = time.After(poweroffTimeout)
		case <-poweroff:
			runErr = fmt.Errorf("%w within %v", ErrPoweroffHang, poweroffTimeout)
			done = true
		case <-deadline:
			runErr = fmt.Errorf("%w after %v", ErrTimeout, timeout)
			done = true
		case <-ctx.Done():
			runErr = fmt.Errorf("guest boot: %w", ctx.Err())
			done = true
		}
	}
	if runErr != nil {
		cmd.Process.Kill()
		waitErr = <-exited
	}
	con.flush()
	res := &Result{Duration: time.Since(start), QEMUStderr: stderr.String()}
	con.snapshot(res)
	if runErr == nil {
		switch {
		case res.InitError != "":
			runErr = fmt.Errorf("guest init failed: %s", res.InitError)
		case !res.Exited && waitErr == nil:
			runErr = fmt.Errorf("%w: it never printed %s (kernel panic?)", ErrQEMUQuit, ExitMarker)
		case !res.Exited:
			runErr = fmt.Errorf("guest stopped without printing %s (kernel panic or QEMU error; QEMU: %v)", ExitMarker, waitErr)
		case waitErr != nil:
			runErr = fmt.Errorf("QEMU exited with an error after the guest finished: %w", waitErr)
		}
	}
	if runErr != nil {
		return res, fmt.Errorf("%w\n--- console tail ---\n%s\n--- QEMU stderr ---\n%s", runErr, con.tail(consoleTailLines), res.QEMUStderr)
	}
	return res, nil
}

// limitedBuffer keeps the first max bytes written to it: process output is
// for error messages, and a chatty process must not grow memory without end.
// It is safe for concurrent use.
type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
