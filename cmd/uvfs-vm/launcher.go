package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/scripts/vm"
)

// share is one host directory the guest mounts, served by a uvfsd of its own.
type share struct {
	tag   string
	host  string // host directory
	guest string // guest mount point (for the root: where it is entered)
	root  bool   // the host's /, read-only: the guest's root file system
}

// uvfsdArgs is the uvfsd command line for serving s on socket. It is the one
// place to change how uvfs-vm runs uvfsd.
func uvfsdArgs(socket string, s share) []string {
	args := []string{"--socket-path=" + socket, "--shared-dir=" + s.host}
	if s.root {
		// Read-only and cached for as long as the guest likes: the guest's
		// programs and libraries are read again and again. Without a
		// namespace the guest sees the host's owners as they are (root's
		// files as root's), and uvfsd reads only what you can read.
		return append(args, "--readonly", "--sandbox=none", "--cache=always")
	}
	return append(args, "--profile=home")
}

// daemonEnv selects another daemon for testing this launcher: with
// UVFS_VM_DAEMON=c-virtiofsd (as root) QEMU's C virtiofsd serves $HOME.
const daemonEnv = "UVFS_VM_DAEMON"

const cVirtiofsd = "/usr/lib/qemu/virtiofsd"

// launcher owns everything one uvfs-vm run creates.
type launcher struct {
	o       options
	home    string
	workDir string // the command's working directory in the guest
	shares  []share
	runDir  string
	daemons []*vm.Daemon
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
	if o.helper == "" {
		return nil, errors.New("--helper is required: run scripts/uvfs-vm, which builds it")
	}
	l := &launcher{o: o, home: filepath.Clean(home)}
	if err := l.planShares(); err != nil {
		return nil, err
	}
	l.workDir = l.pickWorkDir()
	base := os.Getenv("XDG_RUNTIME_DIR")
	if base == "" {
		base = os.TempDir()
	}
	runDir, err := os.MkdirTemp(base, "uvfs-vm-")
	if err != nil {
		return nil, fmt.Errorf("create run directory: %w", err)
	}
	l.runDir = runDir
	return l, nil
}

func (l *launcher) hostRoot() bool { return l.o.rootfs == "host" }

// planShares lists the shares: the host's root (--rootfs=host), $HOME, every
// --rw directory and every --share.
func (l *launcher) planShares() error {
	if l.hostRoot() {
		l.shares = append(l.shares, share{tag: "root", host: "/", guest: "/", root: true})
	}
	l.shares = append(l.shares, share{tag: "home", host: l.home, guest: l.home})
	add := func(flag, host, guest string) error {
		if !filepath.IsAbs(host) {
			abs, err := filepath.Abs(host)
			if err != nil {
				return fmt.Errorf("%s %s: %w", flag, host, err)
			}
			host = abs
		}
		if !filepath.IsAbs(guest) {
			return fmt.Errorf("%s: the guest path %q must be absolute", flag, guest)
		}
		if st, err := os.Stat(host); err != nil || !st.IsDir() {
			return fmt.Errorf("%s: %s is not a directory you can reach: %v", flag, host, err)
		}
		l.shares = append(l.shares, share{tag: fmt.Sprintf("share%d", len(l.shares)), host: filepath.Clean(host), guest: filepath.Clean(guest)})
		return nil
	}
	for _, dir := range l.o.rw {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return fmt.Errorf("--rw %s: %w", dir, err)
		}
		if err := add("--rw", abs, abs); err != nil {
			return err
		}
	}
	for _, s := range l.o.shares {
		host, guest, ok := strings.Cut(s, ":")
		if !ok || host == "" || guest == "" {
			return fmt.Errorf("--share %q: want HOST:GUEST, e.g. --share ~/data:/data", s)
		}
		if err := add("--share", host, guest); err != nil {
			return err
		}
	}
	return nil
}

// pickWorkDir runs the command where the user is, when the guest has that
// directory: inside a share, or anywhere in the host's root but the places
// the guest has its own of.
func (l *launcher) pickWorkDir() string {
	cwd, err := os.Getwd()
	if err != nil {
		return l.home
	}
	for _, s := range l.shares {
		if s.root {
			continue
		}
		if rel, err := filepath.Rel(s.host, cwd); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return filepath.Join(s.guest, rel)
		}
	}
	if l.hostRoot() {
		for _, own := range []string{"/proc", "/sys", "/dev", "/run", "/tmp", "/var/tmp"} {
			if cwd == own || strings.HasPrefix(cwd, own+"/") {
				return l.home
			}
		}
		return cwd
	}
	return l.home
}

// cleanup stops the daemons, restores the terminal and removes temp files.
// QEMU is already gone: vm.VM.Run kills it on every error path.
func (l *launcher) cleanup() {
	for _, d := range l.daemons {
		if err := d.Stop(3 * time.Second); err != nil && l.o.verbose {
			fmt.Fprintf(os.Stderr, "uvfs-vm: daemon: %v\n", err)
		}
	}
	if l.termios != nil {
		unix.IoctlSetTermios(int(os.Stdin.Fd()), unix.TCSETS, l.termios)
	}
	os.RemoveAll(l.runDir)
}

func (l *launcher) interactive() bool { return len(l.o.command) == 0 }

// boot starts the daemons, builds the initramfs, runs the guest and returns
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
	var devs []vm.FSDevice
	for _, s := range l.shares {
		socket := filepath.Join(l.runDir, s.tag+".sock")
		if err := l.startDaemon(socket, s); err != nil {
			return 0, err
		}
		devs = append(devs, vm.FSDevice{Socket: socket, Tag: s.tag})
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
		FS:       devs,
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
		var out strings.Builder
		for i, d := range l.daemons {
			fmt.Fprintf(&out, "\n--- daemon output (%s) ---\n%s", l.shares[i].host, d.Output())
		}
		return 0, fmt.Errorf("%w%s", err, out.String())
	}
	return res.ExitStatus, nil
}

func (l *launcher) startDaemon(socket string, s share) error {
	d := &vm.Daemon{Path: l.o.uvfsd, Args: uvfsdArgs(socket, s), Socket: socket}
	if os.Getenv(daemonEnv) == "c-virtiofsd" {
		if s.root {
			return fmt.Errorf("%s=c-virtiofsd serves shares as root, never the host's root: add --rootfs=busybox", daemonEnv)
		}
		d = &vm.Daemon{Path: cVirtiofsd, Socket: socket,
			Args: []string{"--socket-path=" + socket, "-o", "source=" + s.host, "-o", "cache=auto", "-o", "xattr"}}
	}
	if l.o.verbose {
		d.Stderr = os.Stderr
	}
	if err := d.Start(); err != nil {
		return err
	}
	l.daemons = append(l.daemons, d)
	return nil
}

// initramfs describes a guest that mounts the shares (in the host's root,
// with --rootfs=host) and runs the command there as the calling user.
func (l *launcher) initramfs(k vm.Kernel) *vm.Initramfs {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	env := []string{`PS1=\u@uvfs-vm:\w\$ `}
	pass := []string{"TERM", "LANG", "LC_ALL"}
	if l.hostRoot() {
		pass = append(pass, "PATH") // the host's programs are there
	}
	for _, v := range pass {
		if val, ok := os.LookupEnv(v); ok {
			env = append(env, v+"="+val)
		}
	}
	script := ""
	if !l.interactive() {
		script = "exec " + vm.ShellJoin(l.o.command) + "\n"
		if !l.hostRoot() {
			script = "cd " + vm.ShellJoin([]string{l.workDir}) + " || exit 125\n" + script
		}
	}
	var mounts []vm.Mount
	for _, s := range l.shares {
		if !s.root {
			mounts = append(mounts, vm.Mount{Tag: s.tag, Dir: s.guest})
		}
	}
	guestUser := vm.User{Name: name, UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), Home: l.home, Shell: os.Getenv("SHELL")}
	if groups, err := os.Getgroups(); err == nil {
		for _, g := range groups {
			if uint32(g) != guestUser.GID {
				guestUser.Groups = append(guestUser.Groups, uint32(g))
			}
		}
	}
	if l.o.root {
		guestUser = vm.User{Home: "/root"}
	}
	rd := &vm.Initramfs{
		Kernel: k,
		Helper: l.o.helper,
		Mounts: mounts,
		Script: script,
		Dir:    l.workDir,
		User:   guestUser,
		Env:    env,
	}
	if l.hostRoot() {
		rd.Root = &vm.Root{Tag: "root", Scratch: []string{"/var/tmp"}, Overlays: []string{"/etc"}}
	}
	return rd
}
