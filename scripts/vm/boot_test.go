package vm_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/scripts/vm"
)

// requireBootTools returns the kernel to boot, or skips (fails under CI=true)
// when QEMU, a kernel or busybox is missing.
func requireBootTools(t *testing.T) vm.Kernel {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and "+format, args...)
		}
		t.Skipf(format, args...)
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		missing("qemu-system-x86_64 not found (apt-get install qemu-system-x86): %v", err)
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		missing("static busybox not found (apt-get install busybox-static): %v", err)
	}
	k, err := vm.BaselineKernel()
	if err != nil {
		missing("%v", err)
	}
	if k.ModulesDir == "" {
		missing("no module tree for kernel %s", k.Path)
	}
	fast, err := vm.UncompressedKernel(k.Path, vm.CacheDir())
	if err != nil {
		t.Logf("booting the compressed kernel (slower under TCG): %v", err)
	}
	bootKernel = fast
	return k
}

// bootKernel is the image to pass to QEMU, set by requireBootTools.
var bootKernel string

// TestBootReportsScriptOutputAndStatus boots a guest with no shares and
// checks that output lines and a non-zero status come back, and that a
// non-root user is really switched to by the helper.
func TestBootReportsScriptOutputAndStatus(t *testing.T) {
	k := requireBootTools(t)
	dir := t.TempDir()
	helper := filepath.Join(dir, "guesthelper")
	if err := vm.BuildHelper(context.Background(), helper); err != nil {
		t.Fatal(err)
	}
	rd := vm.Initramfs{
		Kernel: k,
		Helper: helper,
		User:   vm.User{Name: "tester", UID: 1234, GID: 2345, Groups: []uint32{7, 8}, Home: "/tmp"},
		Env:    []string{"GREETING=hello from the guest"},
		Script: "echo \"$GREETING\"\nid -u; id -g; id -G\necho \"HOME=$HOME USER=$USER PWD=$(pwd)\"\nexit 42\n",
	}
	initrd := filepath.Join(dir, "initrd")
	if err := rd.BuildFile(initrd); err != nil {
		t.Fatal(err)
	}
	var streamed bytes.Buffer
	machine := vm.VM{
		Kernel: bootKernel, Initrd: initrd, MemoryMB: 256, CPUs: 1,
		ScriptOutput: &streamed, ConsoleLog: filepath.Join(dir, "console.log"),
		Timeout: 3 * time.Minute,
	}
	res, err := machine.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("boot took %v", res.Duration)
	want := []string{"hello from the guest", "1234", "2345", "2345 7 8", "HOME=/tmp USER=tester PWD=/"}
	if strings.Join(res.Output, "\n") != strings.Join(want, "\n") {
		t.Errorf("script output:\n%s\nwant:\n%s\nconsole:\n%s", strings.Join(res.Output, "\n"), strings.Join(want, "\n"), strings.Join(res.Console, "\n"))
	}
	if streamed.String() != strings.Join(want, "\n")+"\n" {
		t.Errorf("streamed output %q does not match the result", streamed.String())
	}
	if !res.Exited || res.ExitStatus != 42 {
		t.Errorf("exit status %d (seen %v), want 42", res.ExitStatus, res.Exited)
	}
	log, err := os.ReadFile(machine.ConsoleLog)
	if err != nil || !bytes.Contains(log, []byte(vm.ExitMarker+"42")) {
		t.Errorf("console log lacks the exit marker (err %v):\n%s", err, log)
	}
}

// TestBootReportsInitFailure checks that a mount that cannot work (no
// device with that tag) is reported as an init error, not a timeout.
func TestBootReportsInitFailure(t *testing.T) {
	k := requireBootTools(t)
	dir := t.TempDir()
	rd := vm.Initramfs{
		Kernel: k,
		Mounts: []vm.Mount{{Tag: "nosuchtag", Dir: "/mnt/x"}},
		Script: "echo should not run\n",
	}
	initrd := filepath.Join(dir, "initrd")
	if err := rd.BuildFile(initrd); err != nil {
		t.Fatal(err)
	}
	machine := vm.VM{Kernel: bootKernel, Initrd: initrd, MemoryMB: 256, CPUs: 1, Timeout: 3 * time.Minute}
	res, err := machine.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "nosuchtag") {
		t.Fatalf("want an init error naming the tag, got %v", err)
	}
	if len(res.Output) != 0 || res.ExitStatus != 255 {
		t.Errorf("script must not run: output %q status %d", res.Output, res.ExitStatus)
	}
}

// TestBootReportsQEMUQuit: QEMU exiting cleanly before the guest finished (here the script
// powers off; interactively, the user's Ctrl-A x) is ErrQEMUQuit, which the launcher takes as
// the user's quit.
func TestBootReportsQEMUQuit(t *testing.T) {
	k := requireBootTools(t)
	rd := vm.Initramfs{Kernel: k, Script: "poweroff -f\n"}
	initrd := filepath.Join(t.TempDir(), "initrd")
	if err := rd.BuildFile(initrd); err != nil {
		t.Fatal(err)
	}
	machine := vm.VM{Kernel: bootKernel, Initrd: initrd, MemoryMB: 256, CPUs: 1, Timeout: 3 * time.Minute}
	if _, err := machine.Run(context.Background()); !errors.Is(err, vm.ErrQEMUQuit) {
		t.Fatalf("guest that powers off in its script: %v, want ErrQEMUQuit", err)
	}
}

// TestBootTimeoutKillsQEMU checks that a guest that runs past the timeout
// is killed promptly, and that cancelling the context stops a guest that
// hangs in its script, with the console tail in the error.
func TestBootTimeoutKillsQEMU(t *testing.T) {
	k := requireBootTools(t)
	dir := t.TempDir()
	rd := vm.Initramfs{Kernel: k, Script: "echo sleeping-forever\nsleep 1000\n"}
	initrd := filepath.Join(dir, "initrd")
	if err := rd.BuildFile(initrd); err != nil {
		t.Fatal(err)
	}
	machine := vm.VM{Kernel: bootKernel, Initrd: initrd, MemoryMB: 256, CPUs: 1, Timeout: 2 * time.Second}
	start := time.Now()
	if _, err := machine.Run(context.Background()); !errors.Is(err, vm.ErrTimeout) {
		t.Fatalf("want ErrTimeout, got %v", err)
	}
	if time.Since(start) > 15*time.Second {
		t.Errorf("Run returned %v after start; the timeout was 2s", time.Since(start))
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	machine.Timeout = 5 * time.Minute
	machine.ScriptOutput = cancelOnLine{line: "sleeping-forever", cancel: cancel}
	_, err := machine.Run(ctx)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "sleeping-forever") {
		t.Fatalf("want a cancellation error with the console tail, got %v", err)
	}
}

// cancelOnLine cancels a context when the guest prints a given line.
type cancelOnLine struct {
	line   string
	cancel context.CancelFunc
}

func (c cancelOnLine) Write(p []byte) (int, error) {
	if strings.Contains(string(p), c.line) {
		c.cancel()
	}
	return len(p), nil
}

// TestUncompressedKernelIsCachedAndBootable checks extraction produces an
// ELF file and reuses the cache on the second call.
func TestUncompressedKernelIsCachedAndBootable(t *testing.T) {
	k := requireBootTools(t)
	cache := t.TempDir()
	first, err := vm.UncompressedKernel(k.Path, cache)
	if err != nil {
		t.Skipf("kernel %s cannot be extracted here: %v", k.Path, err)
	}
	if filepath.Dir(first) != cache {
		t.Fatalf("extracted kernel %s is not in the cache %s", first, cache)
	}
	st1, err := os.Stat(first)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 4)
	f, err := os.Open(first)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Read(head); err != nil || string(head) != "\x7fELF" {
		t.Fatalf("extracted kernel does not start with an ELF header: %q %v", head, err)
	}
	second, err := vm.UncompressedKernel(k.Path, cache)
	if err != nil || second != first {
		t.Fatalf("second call: %s %v, want cached %s", second, err, first)
	}
	st2, _ := os.Stat(second)
	if !st2.ModTime().Equal(st1.ModTime()) {
		t.Errorf("cached kernel was rewritten")
	}
}

// TestBootDetectsPoweroffHang fakes a guest that reports its exit status
// but never powers off, as when a back-end does not answer GET_VRING_BASE.
func TestBootDetectsPoweroffHang(t *testing.T) {
	k := requireBootTools(t)
	dir := t.TempDir()
	rd := vm.Initramfs{Kernel: k, Script: "echo " + vm.ExitMarker + "0\nsleep 1000\n"}
	initrd := filepath.Join(dir, "initrd")
	if err := rd.BuildFile(initrd); err != nil {
		t.Fatal(err)
	}
	machine := vm.VM{Kernel: bootKernel, Initrd: initrd, MemoryMB: 256, CPUs: 1, Timeout: 5 * time.Minute, PoweroffTimeout: 3 * time.Second}
	res, err := machine.Run(context.Background())
	if !errors.Is(err, vm.ErrPoweroffHang) {
		t.Fatalf("want ErrPoweroffHang, got %v", err)
	}
	if !res.Exited || res.ExitStatus != 0 {
		t.Errorf("the marker was printed: want Exited with 0, got %v %d", res.Exited, res.ExitStatus)
	}
}
