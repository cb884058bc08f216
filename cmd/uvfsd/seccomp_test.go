package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/fuse/fusetest"
	"github.com/uvfsd/uvfsd/vhost/frontend"
)

// seccompShare makes a share with one file, f, and a socket directory, for cred (nil: root).
func seccompShare(t *testing.T, cred *syscall.Credential) (share, socket string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "uvfsd-seccomp-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	share, socket = filepath.Join(dir, "share"), filepath.Join(dir, "sock", "vhost.sock")
	for _, d := range []string{dir, filepath.Dir(socket), share} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if cred != nil {
			if err := os.Chown(d, int(cred.Uid), int(cred.Gid)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(share, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	return share, socket
}

// startProbing runs the daemon on a fresh share with the probe hook on.
func startProbing(t *testing.T, bin string, cred *syscall.Credential, args ...string) (d *daemon, socket string) {
	t.Helper()
	share, socket := seccompShare(t, cred)
	args = append([]string{"--socket-path=" + socket, "--shared-dir=" + share}, args...)
	return launchDaemon(t, cred, []string{envSeccompProbe + "=1"}, bin, args...), socket
}

// waitStatus returns the daemon's wait status once it exited.
func (d *daemon) waitStatus(t *testing.T) syscall.WaitStatus {
	t.Helper()
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("uvfsd did not exit within 30s\nstderr:\n%s", d.stderr.String())
	}
	var ee *exec.ExitError
	if d.waitErr != nil && !errors.As(d.waitErr, &ee) {
		t.Fatalf("uvfsd: %v", d.waitErr)
	}
	return d.cmd.ProcessState.Sys().(syscall.WaitStatus)
}

// seccompUsers are who the tests run the daemon as: root and an unprivileged user (nobody, root
// in a user namespace of its own) when this process is root, else this process's user.
func seccompUsers(t *testing.T) map[string]*syscall.Credential {
	if os.Geteuid() != 0 {
		return map[string]*syscall.Credential{"self": nil}
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return map[string]*syscall.Credential{"root": nil, "nobody": {Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}}
}

// buildDaemon builds the uvfsd binary somewhere every user may run it.
func buildDaemon(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "uvfsd-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "uvfsd")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestSeccompKillsOnACallOutsideTheList makes the filtered daemon call personality(2), which is
// not on the list: under the default --seccomp=kill the serving process dies of SIGSYS (its
// parent, when it has one, exits 128+SIGSYS and says why), under trap the Go runtime reports the
// signal and exits 2.
func TestSeccompKillsOnACallOutsideTheList(t *testing.T) {
	bin := buildDaemon(t)
	for who, cred := range seccompUsers(t) {
		cases := []struct {
			name string
			args []string
		}{{"kill", nil}, {"trap", []string{"--seccomp=trap"}}}
		if who == "root" {
			// No re-exec: the process started is the one that serves.
			cases = append(cases, struct {
				name string
				args []string
			}{"kill-chroot", []string{"--sandbox=chroot"}})
		}
		for _, c := range cases {
			t.Run(who+"/"+c.name, func(t *testing.T) {
				d, _ := startProbing(t, bin, cred, c.args...)
				ws := d.waitStatus(t)
				out := d.stderr.String()
				if strings.Contains(out, "seccomp probe:") {
					t.Errorf("the call outside the list returned\n%s", out)
				}
				switch c.name {
				case "kill-chroot":
					if !ws.Signaled() || ws.Signal() != syscall.SIGSYS {
						t.Errorf("uvfsd ended with %v, want death by SIGSYS\n%s", d.waitErr, out)
					}
				case "kill":
					if ws.ExitStatus() != 128+int(syscall.SIGSYS) || !strings.Contains(out, "killed by SIGSYS") {
						t.Errorf("uvfsd ended with %v, want exit status %d and a word on SIGSYS\n%s", d.waitErr, 128+int(syscall.SIGSYS), out)
					}
				case "trap":
					if ws.ExitStatus() != 2 || !strings.Contains(out, "SIGSYS: bad system call") {
						t.Errorf("uvfsd ended with %v, want the Go runtime's SIGSYS report and status 2\n%s", d.waitErr, out)
					}
				}
			})
		}
	}
}

// TestSeccompLogNamesTheCallAndServes makes the daemon under --seccomp=log call personality(2):
// the process uvfsd was started as logs the call by name, the call runs, and the daemon goes on to
// serve a front-end under the filter, with no other call outside the list.
func TestSeccompLogNamesTheCallAndServes(t *testing.T) {
	bin := buildDaemon(t)
	for who, cred := range seccompUsers(t) {
		for _, sandbox := range []string{"namespace", "chroot", "none"} {
			t.Run(who+"/"+sandbox, func(t *testing.T) {
				d, socket := startProbing(t, bin, cred, "--seccomp=log", "--sandbox="+sandbox)
				select {
				case <-d.stderr.found:
				case <-d.exited:
					t.Fatalf("uvfsd exited before serving: %v\n%s", d.waitErr, d.stderr.String())
				case <-time.After(30 * time.Second):
					t.Fatalf("uvfsd did not serve within 30s\n%s", d.stderr.String())
				}
				f, err := frontend.Dial(socket, frontend.Options{MemSize: 16 << 20, QueueSize: 64, Timeout: 10 * time.Second})
				if err != nil {
					t.Fatalf("connecting: %v\n%s", err, d.stderr.String())
				}
				c := &fusetest.Client{T: frontend.Transport{F: f, Queue: requestQueue}}
				if _, err := c.Init(0); err != nil {
					t.Errorf("INIT: %v", err)
				} else if e, err := c.Lookup(fuse.RootID, "f"); err != nil || e.Attr.Size != 1 {
					t.Errorf("LOOKUP f: %+v, %v", e, err)
				}
				f.Close()
				if ws := d.waitStatus(t); ws.ExitStatus() != 0 {
					t.Errorf("uvfsd ended with %v after the front-end left, want status 0", d.waitErr)
				}
				out := d.stderr.String()
				var denied []string
				for line := range strings.Lines(out) {
					if _, call, ok := strings.Cut(line, "uvfsd: seccomp: system call outside the list: "); ok {
						denied = append(denied, strings.Fields(call)[0])
					}
				}
				if fmt.Sprint(denied) != "[personality]" {
					t.Errorf("calls reported outside the list: %v, want [personality]\n%s", denied, out)
				}
				if !strings.Contains(out, "seccomp probe: personality(0xffffffff) returned 0x0, errno 0") {
					t.Errorf("the call outside the list did not run\n%s", out)
				}
			})
		}
	}
}
