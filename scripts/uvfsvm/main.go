// Command uvfsvm boots a throwaway Linux guest with the caller's $HOME
// mounted read-write at the same path, served by uvfsd, and runs a command
// in it (or an interactive busybox shell on the console). It is started by
// scripts/uvfs-vm, which builds it, uvfsd and the guest helper first.
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
	command []string
}

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
			"Boot a Linux guest with $HOME mounted read-write at the same path (served by\n"+
			"uvfsd) and run CMD there as you, in $HOME; without CMD, start a shell on the\n"+
			"console (Ctrl-A x quits QEMU). The exit status is CMD's (125: the VM failed).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&o.kernel, "kernel", "", "guest kernel (default: /boot/vmlinuz-$(uname -r), else the newest /boot/vmlinuz-*)")
	fs.IntVar(&o.memMB, "mem", 1024, "guest memory in MiB")
	fs.IntVar(&o.cpus, "cpus", 2, "guest CPUs")
	fs.BoolVar(&o.kvm, "kvm", false, "use KVM if /dev/kvm is usable (default TCG: nested KVM hangs on some hosts)")
	fs.StringVar(&o.uvfsd, "uvfsd", "uvfsd", "uvfsd binary")
	fs.StringVar(&o.helper, "helper", "", "static guest helper binary (e2e/guest/cmd/guesthelper; uvfs-vm builds it)")
	fs.DurationVar(&o.timeout, "timeout", 0, "stop the VM after this long (0: no limit)")
	fs.BoolVar(&o.verbose, "verbose", false, "show the guest console and daemon messages on stderr")
	fs.BoolVar(&o.verbose, "v", false, "short for --verbose")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		os.Exit(2)
	}
	o.command = fs.Args()
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
		if ctx.Err() != nil {
			return exitInterrupted
		}
		return exitVMFailed
	}
	return status
}
