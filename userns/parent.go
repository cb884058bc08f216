package userns

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// forwardedSignals reach the child through the parent: the child runs
// in its own process group, so a terminal's ^C arrives once, not twice.
var forwardedSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1}

// childSpec is what stage 0 starts: which namespaces the child gets,
// the maps to write for its user namespace, and what to tell it and the
// user.
type childSpec struct {
	userNS  bool      // CLONE_NEWUSER; plans then holds the uid and gid maps
	mountNS bool      // CLONE_NEWNS
	plans   []mapPlan // written by stage 0 once stage 1 says hello
	// fallback, when set, is why the child runs without the user
	// namespace it was asked for; it reaches the daemon as State.Fallback.
	fallback string
	notes    string    // said on stderr once the child runs
	stderr   io.Writer // where the notes go
}

// runParent is stage 0: it starts the child in the namespaces spec
// asks for (or none: a plain child, which the sandbox may confine while
// this process stays free to clean up), writes the maps, forwards
// signals, and returns the child's exit code. An error means the child
// never got to run the daemon; an *unusableError says the namespace
// was the reason, and files are then still open for another try.
func runParent(p Paths, spec childSpec, files []*os.File) (int, error) {
	toChildR, toChildW, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("handshake pipe: %w", err)
	}
	defer toChildW.Close()
	fromChildR, fromChildW, err := os.Pipe()
	if err != nil {
		toChildR.Close()
		return 0, fmt.Errorf("handshake pipe: %w", err)
	}
	defer fromChildR.Close()

	cmd := childCommand(spec, files, toChildR, fromChildW)
	sigc := make(chan os.Signal, 4)
	signal.Notify(sigc, forwardedSignals...)
	defer signal.Stop(sigc)

	startc, donec := make(chan error, 1), make(chan struct{})
	go func() {
		// PR_SET_PDEATHSIG fires when the thread that forked the child
		// exits, so this goroutine stays on its thread and outlives
		// the child. The thread is never unlocked (and so discarded).
		runtime.LockOSThread()
		err := cmd.Start()
		startc <- err
		if err == nil {
			cmd.Wait()
			close(donec)
		}
	}()
	err = <-startc
	toChildR.Close()
	fromChildW.Close()
	if err != nil {
		switch {
		case spec.userNS:
			return 0, cloneUnusable(p, err)
		case spec.mountNS:
			return 0, fmt.Errorf("creating the mount namespace: %w; run uvfsd as root or choose --sandbox=chroot", err)
		}
		return 0, fmt.Errorf("starting the serving process: %w", err)
	}
	go func() {
		for sig := range sigc {
			cmd.Process.Signal(sig)
		}
	}()

	if err := handshake(p, cmd.Process.Pid, spec.plans, json.NewDecoder(fromChildR), toChildW); err != nil {
		if !errors.Is(err, errPeerDied) || isUnusable(err) {
			cmd.Process.Kill()
			<-donec
			return 0, err
		}
		// The child died and said why on its own stderr; pass its
		// exit code on like any other.
	} else {
		say(spec.stderr, spec.notes)
	}
	for _, f := range files {
		f.Close() // the child has its own: this process must not keep a socket listening
	}
	toChildW.Close()
	<-donec
	return exitCode(cmd.ProcessState), nil
}

// childCommand re-execs this program as stage 1 (user namespace) or
// directly as stage 2 (nothing to wait for). The child gets files at
// fds 3, 4, ... and the handshake pipes after them; every other fd of
// this process is close-on-exec (Go opens them so), so an inherited fd
// the user passed (--fd) must be among files.
func childCommand(spec childSpec, files []*os.File, toChild, fromChild *os.File) *exec.Cmd {
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = append(append([]*os.File(nil), files...), toChild, fromChild)
	fds := make([]string, len(files))
	for i := range files {
		fds[i] = strconv.Itoa(3 + i)
	}
	pipes := fmt.Sprintf("%d,%d", 3+len(files), 4+len(files))
	stage, flags := "2", uintptr(0)
	env := append(withoutMarkers(os.Environ()),
		envPipes+"="+pipes, envFiles+"="+strings.Join(fds, ","), envParent+"="+strconv.Itoa(os.Getpid()))
	if spec.mountNS {
		flags |= syscall.CLONE_NEWNS
		env = append(env, envMountNS+"=1")
	}
	if spec.userNS {
		stage, flags = "1", flags|syscall.CLONE_NEWUSER
		env = append(env, envUserNS+"=1")
	}
	if spec.fallback != "" {
		env = append(env, envFallbackOf+"="+spec.fallback)
	}
	cmd.Env = append(env, envStage+"="+stage)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Pdeathsig: syscall.SIGKILL, Setpgid: true}
	return cmd
}

func withoutMarkers(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if name, _, ok := strings.Cut(kv, "="); !ok || !slices.Contains(markers, name) {
			out = append(out, kv)
		}
	}
	return out
}

// handshake runs the parent's side: hello, maps, ready.
func handshake(p Paths, pid int, plans []mapPlan, d *json.Decoder, w *os.File) error {
	if plans != nil {
		if _, err := waitFor(d, stepChildHello); err != nil {
			return err
		}
		for _, pl := range plans {
			if err := pl.apply(p, pid); err != nil { // an *unusableError if refused
				return err
			}
		}
		if err := send(w, message{Step: stepMapsWritten}); err != nil {
			return err
		}
	}
	m, err := waitFor(d, stepChildReady, stepChildFailed)
	if err == nil && m.Step == stepChildFailed {
		if m.Unusable {
			// The child stays quiet: this process falls back or says why.
			return &unusableError{reason: m.Reason, err: fmt.Errorf("%s: %w", m.Error, errPeerDied)}
		}
		// The child reports the error itself and exits non-zero.
		return fmt.Errorf("%s: %w", m.Error, errPeerDied)
	}
	return err
}

// exitCode is the child's exit status, or 128+signal like a shell.
func exitCode(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}
