package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/scripts/vm"
)

// homeTag is the virtiofs tag of the $HOME share.
const homeTag = "home"

// uvfsdArgs is the uvfsd command line for serving home on socket. It is
// the one place to change how uvfs-vm runs uvfsd.
func uvfsdArgs(socket, home string) []string {
	return []string{
		"--socket-path=" + socket,
		"--shared-dir=" + home,
		"--profile=home",
	}
}

// daemonEnv selects another daemon for testing this launcher: with
// UVFS_VM_DAEMON=c-virtiofsd (as root) QEMU's C virtiofsd serves $HOME.
const daemonEnv = "UVFS_VM_DAEMON"

const cVirtiofsd = "/usr/lib/qemu/virtiofsd"

// launcher owns everything one uvfs-vm run creates.
type launcher struct {
	o       options
	home    string
	runDir  string
	daemon  *vm.Daemon
	termios *unix.Termios // terminal state to restore, interactive only
}

func newLauncher(o options) (*launcher, error) {
	home := os.Getenv("HOME")
	if !filepath.IsAbs(home) {
		return nil, fmt.Errorf("$HOME (%q) must be an absolute path", home)
	}
	if st, err := os.Stat(home); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("$HOME %s is not a directory: %v", home, err)
	}
	if o.helper == "" && os.Getuid() != 0 {
		return nil, errors.New("--helper is required when not root: run scripts/uvfs-vm, which builds it")
	}
	base := os.Getenv("XDG_RUNTIME_DIR")
	if base == "" {
		base = os.TempDir()
	}
	runDir, err := os.MkdirTemp(base, "uvfs-vm-")
	if err != nil {
		return nil, fmt.Errorf("create run directory: %w", err)
	}
	return &launcher{o: o, home: filepath.Clean(home), runDir: runDir}, nil
}

// cleanup stops the daemon, restores the terminal and removes temp files.
// QEMU is already gone: vm.VM.Run kills it on every error path.
func (l *launcher) cleanup() {
	if l.daemon != nil {
		if err := l.daemon.Stop(3 * time.Second); err != nil && l.o.verbose {
			fmt.Fprintf(os.Stderr, "uvfs-vm: daemon: %v\n", err)
		}
	}
	if l.termios != nil {
		unix.IoctlSetTermios(int(os.Stdin.Fd()), unix.TCSETS, l.termios)
	}
	os.RemoveAll(l.runDir)
}

func (l *launcher) interactive() bool { return len(l.o.command) == 0 }

// boot starts the daemon, builds the initramfs, runs the guest and returns
// the guest command's exit status.
func (l *launcher) boot(ctx context.Context) (int, error) {
	k, err := vm.FindKernel(l.o.kernel)
	if err != nil {
		return 0, err
	}
	bootKernel, err := vm.UncompressedKernel(k.Path, vm.CacheDir())
	if err != nil && l.o.verbose {
		fmt.Fprintf(os.Stderr, "uvfs-vm: booting the compressed kernel (slower): %v\n", err)
	}
	socket := filepath.Join(l.runDir, "uvfs.sock")
	if err := l.startDaemon(socket); err != nil {
		return 0, err
	}
	initrd := filepath.Join(l.runDir, "initrd")
	rd := l.initramfs(k)
	if err := rd.BuildFile(initrd); err != nil {
		return 0, err
	}
	if l.o.kvm && !vm.KVMUsable() {
		fmt.Fprintln(os.Stderr, "uvfs-vm: note: /dev/kvm is not usable here; running under TCG (slower)")
	}
	machine := vm.VM{
		Kernel:   bootKernel,
		Initrd:   initrd,
		MemoryMB: l.o.memMB,
		CPUs:     l.o.cpus,
		KVM:      l.o.kvm,
		FS:       []vm.FSDevice{{Socket: socket, Tag: homeTag}},
		Timeout:  -1,
	}
	if l.o.timeout > 0 {
		machine.Timeout = l.o.timeout
	}
	if l.interactive() {
		machine.Stdin, machine.Console = os.Stdin, os.Stdout
		if t, err := unix.IoctlGetTermios(int(os.Stdin.Fd()), unix.TCGETS); err == nil {
			l.termios = t // QEMU makes the terminal raw; a killed QEMU cannot undo it
		}
	} else {
		machine.ScriptOutput = os.Stdout
		if l.o.verbose {
			machine.Console = os.Stderr
		}
	}
	res, err := machine.Run(ctx)
	if err != nil && l.interactive() && errors.Is(err, vm.ErrQEMUQuit) {
		return 0, nil // the user quit QEMU (Ctrl-A x), and saw the console
	}
	if err != nil {
		return 0, fmt.Errorf("%w\n--- daemon output ---\n%s", err, l.daemon.Output())
	}
	return res.ExitStatus, nil
}

func (l *launcher) startDaemon(socket string) error {
	d := &vm.Daemon{Path: l.o.uvfsd, Args: uvfsdArgs(socket, l.home), Socket: socket}
	if os.Getenv(daemonEnv) == "c-virtiofsd" {
		d = &vm.Daemon{
			Path:   cVirtiofsd,
			Args:   []string{"--socket-path=" + socket, "-o", "source=" + l.home, "-o", "cache=auto", "-o", "xattr"},
			Socket: socket,
		}
	}
	if l.o.verbose {
		d.Stderr = os.Stderr
	}
	if err := d.Start(); err != nil {
		return err
	}
	l.daemon = d
	return nil
}

// initramfs describes a guest that mounts $HOME at the same path and runs
// the command there as the calling user.
func (l *launcher) initramfs(k vm.Kernel) *vm.Initramfs {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	env := []string{`PS1=\u@uvfs-vm:\w\$ `}
	if term := os.Getenv("TERM"); term != "" && l.interactive() {
		env = append(env, "TERM="+term)
	}
	script := ""
	if !l.interactive() {
		script = "cd \"$HOME\" || exit 125\nexec " + vm.ShellJoin(l.o.command) + "\n"
	}
	return &vm.Initramfs{
		Kernel: k,
		Helper: l.o.helper,
		Mounts: []vm.Mount{{Tag: homeTag, Dir: l.home}},
		Script: script,
		Dir:    l.home,
		User:   vm.User{Name: name, UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), Home: l.home},
		Env:    env,
	}
}
