package vm

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Daemon is a vhost-user-fs back-end process (uvfsd, or QEMU's C virtiofsd
// as a reference) serving one socket.
type Daemon struct {
	Path   string   // binary
	Args   []string // arguments, including the socket path option
	Env    []string // extra "KEY=value"; the rest of the environment is inherited
	Dir    string   // working directory; this process's when empty
	Socket string   // socket the daemon creates; Start waits for it
	// Credential runs the daemon as another user (the caller must be
	// root). The socket's directory must be writable by that user.
	Credential   *syscall.Credential
	Stderr       io.Writer     // also receives the daemon's stderr, if set
	StartTimeout time.Duration // wait for the socket; 10 s when zero

	cmd    *exec.Cmd
	output limitedBuffer // stdout+stderr, for error messages and tests
	done   chan struct{}
	err    error // Wait's result, valid after done is closed
}

// ErrDaemonRunning is returned by Wait when the daemon did not exit in time.
var ErrDaemonRunning = errors.New("daemon still running")

// Start runs the daemon and returns once its socket exists. A daemon that
// exits or does not create the socket in time is stopped and the error
// includes its output.
func (d *Daemon) Start() error {
	if d.cmd != nil {
		return fmt.Errorf("daemon %s already started", d.Path)
	}
	d.output.max = 256 << 10
	d.cmd = exec.Command(d.Path, d.Args...)
	d.cmd.Env = append(os.Environ(), d.Env...)
	d.cmd.Dir = d.Dir
	var out io.Writer = &d.output
	if d.Stderr != nil {
		out = io.MultiWriter(out, d.Stderr)
	}
	d.cmd.Stdout, d.cmd.Stderr = out, out
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: d.Credential, Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		return fmt.Errorf("start daemon %s: %w", d.Path, err)
	}
	d.done = make(chan struct{})
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()

	timeout := d.StartTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	deadline := time.Now().Add(timeout)
	for {
		if st, err := os.Stat(d.Socket); err == nil && st.Mode().Type() == os.ModeSocket {
			return nil
		}
		select {
		case <-d.done:
			return fmt.Errorf("daemon %s exited before creating %s (%v); its output:\n%s", d.Path, d.Socket, d.err, d.Output())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.Stop(2 * time.Second)
			return fmt.Errorf("daemon %s did not create socket %s within %v; its output:\n%s", d.Path, d.Socket, timeout, d.Output())
		}
	}
}

// Wait waits up to timeout for the daemon to exit by itself (it should once
// QEMU disconnects) and returns its exit error: nil means status 0.
func (d *Daemon) Wait(timeout time.Duration) error {
	if d.done == nil {
		return fmt.Errorf("daemon %s not started", d.Path)
	}
	select {
	case <-d.done:
		return d.err
	case <-time.After(timeout):
		return fmt.Errorf("%w %v after it should have exited", ErrDaemonRunning, timeout)
	}
}

// Stop ends the daemon: SIGTERM, then SIGKILL after grace. It returns the
// exit error (a signal death is an error). Stopping twice is harmless.
func (d *Daemon) Stop(grace time.Duration) error {
	if d.done == nil {
		return nil
	}
	select {
	case <-d.done:
		return d.err
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(grace):
		d.cmd.Process.Kill()
		<-d.done
	}
	return d.err
}

// Output returns what the daemon printed so far (the first 256 KiB).
func (d *Daemon) Output() string { return d.output.String() }

// Pid returns the daemon's process id, 0 before Start.
func (d *Daemon) Pid() int {
	if d.cmd == nil || d.cmd.Process == nil {
		return 0
	}
	return d.cmd.Process.Pid
}
