// Command uvfs-vm boots a throwaway Linux guest whose root file system is
// the host's, read-only, with the caller's $HOME mounted read-write at the
// same path, each served by a rootless uvfsd, and runs a command in it as
// the caller, in the caller's working directory (or an interactive shell
// on the console). --rootfs=busybox boots a minimal busybox guest instead.
// It is started by scripts/uvfs-vm, which builds it, uvfsd and the guest
// helper first.
//
//	uvfs-vm [flags] [-- CMD ARGS...]
//
// The exit status is the command's; 125 means the VM itself failed.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// options are the command-line flags.
type options struct {
	kernel  string
	memMB   int
	cpus    int
	kvm     bool
	uvfsd   string
	helper  string
	timeout time.Duration
	verbose bool
	rootfs  string   // host or busybox
	rw      []string // more host directories, writable at the same path
	shares  []string // HOST:GUEST
	root    bool     // run the command as guest root
	command []string
}

// listFlag collects a repeatable flag's values.
type listFlag struct{ values *[]string }

func (l listFlag) String() string {
	if l.values == nil {
		return ""
	}
	return strings.Join(*l.values, ",")
}
func (l listFlag) Set(v string) error { *l.values = append(*l.values, v); return nil }

// Exit statuses of uvfs-vm itself; any other status is the guest command's.
const (
	exitVMFailed    = 125 // the VM could not run the command
	exitInterrupted = 130 // a signal stopped the VM
)

func main() {
	var o options
	fs := flag.NewFlagSet("uvfs-vm", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: uvfs-vm [flags] [-- CMD ARGS...]\n\n"+
			"Boot a Linux guest whose root is your host's / (read-only) with $HOME mounted\n"+
			"read-write at the same path (each served by uvfsd, no root needed) and run CMD\n"+
			"there as you, in your working directory; without CMD, start a shell on the\n"+
			"console (Ctrl-A x quits QEMU). The exit status is CMD's (125: the VM failed).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&o.kernel, "kernel", "", "guest kernel (default: /boot/vmlinuz-$(uname -r), else the newest /boot/vmlinuz-*)")
	fs.IntVar(&o.memMB, "mem", 1024, "guest memory in MiB")
	fs.IntVar(&o.cpus, "cpus", 2, "guest CPUs")
	fs.BoolVar(&o.kvm, "kvm", false, "use KVM if /dev/kvm is usable (default TCG: nested KVM hangs on some hosts)")
	fs.StringVar(&o.uvfsd, "uvfsd", "uvfsd", "uvfsd binary")
	fs.StringVar(&o.helper, "helper", "", "static guest helper binary (cmd/uvfs-helper; uvfs-vm builds it)")
	fs.DurationVar(&o.timeout, "timeout", 0, "stop the VM after this long (0: no limit)")
	fs.BoolVar(&o.verbose, "verbose", false, "show the guest console and daemon messages on stderr")
	fs.BoolVar(&o.verbose, "v", false, "short for --verbose")
	fs.StringVar(&o.rootfs, "rootfs", "host", "guest root file system: host (your / read-only, with tmpfs /tmp, /run, /var/tmp and a guest-only /etc) or busybox (a minimal initramfs)")
	fs.Var(listFlag{&o.rw}, "rw", "make host `DIR` writable in the guest at the same path (repeatable)")
	fs.Var(listFlag{&o.shares}, "share", "mount host directory `HOST:GUEST` in the guest (repeatable)")
	fs.BoolVar(&o.root, "root", false, "run CMD as guest root (files it creates on the shares still belong to you)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		os.Exit(2)
	}
	o.command = fs.Args()
	if o.rootfs != "host" && o.rootfs != "busybox" {
		fmt.Fprintf(os.Stderr, "uvfs-vm: --rootfs=%s: want host or busybox\n", o.rootfs)
		os.Exit(2)
	}
	os.Exit(run(o))
}

// run boots the VM and returns the process exit status. Every resource it
// creates is released before it returns, also on SIGINT/SIGTERM/SIGHUP.
func run(o options) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	l, err := newLauncher(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "uvfs-vm:", err)
		return exitVMFailed
	}
	defer l.cleanup()
	status, err := l.boot(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "uvfs-vm:", err)
		if interrupted(ctx) {
			return exitInterrupted
		}
		return exitVMFailed
	}
	return status
}

// interrupted reports whether a signal stopped the VM. Ctrl-C signals QEMU and uvfs-vm at once,
// and QEMU may exit and be reaped before the signal reaches ctx through the runtime's signal
// goroutine: a failure is only taken for the VM's own after a moment without a signal.
func interrupted(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	case <-time.After(200 * time.Millisecond):
		return false
	}
}
