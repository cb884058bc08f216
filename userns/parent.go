package userns

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// forwardedSignals reach the child through the parent: the child runs
// in its own process group, so a terminal's ^C arrives once, not twice.
var forwardedSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1}

// runParent is stage 0: it starts the child in new namespaces (a user
// namespace when plans are given, else only a mount namespace), writes
// the maps, forwards signals, and returns the child's exit code. An
// error means the child never got to run the daemon.
func runParent(p Paths, plans []mapPlan) (int, error) {
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

	cmd := childCommand(plans != nil, toChildR, fromChildW)
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
		if plans != nil {
			return 0, explainCloneError(p, err)
		}
		return 0, fmt.Errorf("creating the mount namespace: %w; run uvfsd as root or choose --sandbox=chroot", err)
	}
	go func() {
		for sig := range sigc {
			cmd.Process.Signal(sig)
		}
	}()

	if err := handshake(p, cmd.Process.Pid, plans, json.NewDecoder(fromChildR), toChildW); err != nil {
		if !errors.Is(err, errPeerDied) {
			cmd.Process.Kill()
			<-donec
			return 0, err
		}
		// The child died and said why on its own stderr; pass its
		// exit code on like any other.
	}
	toChildW.Close()
	<-donec
	return exitCode(cmd.ProcessState), nil
}

// childCommand re-execs this program as stage 1 (user namespace) or
// directly as stage 2 (mount namespace only: nothing to wait for).
func childCommand(userNS bool, toChild, fromChild *os.File) *exec.Cmd {
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{toChild, fromChild} // fds 3 and 4
	stage, flags := "2", uintptr(syscall.CLONE_NEWNS)
	if userNS {
		stage, flags = "1", flags|syscall.CLONE_NEWUSER
	}
	cmd.Env = append(withoutMarkers(os.Environ()),
		envStage+"="+stage, envPipes+"=3,4", envParent+"="+strconv.Itoa(os.Getpid()))
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Pdeathsig: syscall.SIGKILL, Setpgid: true}
	return cmd
}

func withoutMarkers(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, envStage+"=") && !strings.HasPrefix(kv, envPipes+"=") && !strings.HasPrefix(kv, envParent+"=") {
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
			if err := pl.apply(p, pid); err != nil {
				return err
			}
		}
		if err := send(w, message{Step: stepMapsWritten}); err != nil {
			return err
		}
	}
	m, err := waitFor(d, stepChildReady, stepChildFailed)
	if err == nil && m.Step == stepChildFailed {
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
