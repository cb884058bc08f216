package e2e

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/e2e/guest"
	"github.com/uvfsd/uvfsd/scripts/vm"
)

// The real clients (virtme-ng, libvirt) start their virtio-fs daemon
// themselves, with their own command line. These tests put a wrapper in
// the daemon's place that records each command line and execs the daemon
// under test: uvfsd, or the Rust virtiofsd 1.13.2 as the reference that
// proves the harness (if a test fails with it, fix the test, not uvfsd).

// clientsDir is where .ci/install-clients unpacks virtme-ng and the Rust
// virtiofsd; UVFS_E2E_VNG and UVFS_E2E_RUST_VIRTIOFSD override each.
const clientsDir = "/opt/uvfs-e2e"

// unpackedDir returns env's directory, or clientsDir/name, and fails (skips
// outside CI) unless it holds file.
func unpackedDir(t *testing.T, env, name, file string) string {
	t.Helper()
	dir := os.Getenv(env)
	if dir == "" {
		dir = filepath.Join(clientsDir, name)
	}
	if _, err := os.Stat(filepath.Join(dir, file)); err != nil {
		missing(t, "%s is not unpacked in %s (run .ci/install-clients as root, or set %s): %v", name, dir, env, err)
	}
	return dir
}

// clientDaemon is a virtio-fs daemon for a real client to start.
type clientDaemon struct {
	name string
	// exec is the command the wrapper runs, before the client's arguments.
	exec []string
	// served returns patterns that the daemon's log (syslog or stderr) must
	// match, each by at least one line, once it served shared on socket
	// (empty with --fd).
	served func(shared, socket string) []*regexp.Regexp
	// locks: the daemon takes -o flock and -o posix_lock (libvirt's
	// <lock posix='on' flock='on'/>); the Rust virtiofsd refuses them.
	locks bool
	// commas: the daemon reads libvirt's ",," in -o source= as a comma of
	// the path; the Rust virtiofsd refuses it.
	commas bool
}

// uvfsdClient is uvfsd, built by the test suite.
func uvfsdClient(t *testing.T) clientDaemon {
	bin := buildUvfsd(t)
	return clientDaemon{
		name: "uvfsd",
		exec: []string{bin},
		served: func(shared, socket string) []*regexp.Regexp {
			on := regexp.QuoteMeta(socket)
			if socket == "" {
				on = "inherited fd [0-9]+"
			}
			return []*regexp.Regexp{regexp.MustCompile("serving " + regexp.QuoteMeta(shared) + " on " + on + "$")}
		},
		locks:  true,
		commas: true,
	}
}

// rustVirtiofsdClient is the Rust virtiofsd 1.13.2 from Debian trixie,
// unpacked with the trixie libc it needs and run through that libc's
// loader, so the host's libc stays as it is.
func rustVirtiofsdClient(t *testing.T) clientDaemon {
	dir := unpackedDir(t, "UVFS_E2E_RUST_VIRTIOFSD", "virtiofsd", "usr/libexec/virtiofsd")
	lib := filepath.Join(dir, "usr/lib/x86_64-linux-gnu")
	return clientDaemon{
		name: "virtiofsd 1.13.2",
		exec: []string{filepath.Join(lib, "ld-linux-x86-64.so.2"), "--library-path", lib, filepath.Join(dir, "usr/libexec/virtiofsd")},
		served: func(string, string) []*regexp.Regexp {
			return []*regexp.Regexp{regexp.MustCompile(`Client connected, servicing requests$`)}
		},
	}
}

// daemonWrapper is the executable a client runs as its virtio-fs daemon.
type daemonWrapper struct {
	path    string // the script, named virtiofsd
	argvLog string // one line per start: "PID ARG..."
}

// writeWrapper creates a directory, owned by owner, holding a script named
// virtiofsd that appends its pid and arguments to argv.log and execs d,
// which keeps that pid and the client's stdio. Put the directory first on
// PATH, or name the script as the daemon's binary.
func writeWrapper(t *testing.T, d clientDaemon, owner testUser) daemonWrapper {
	t.Helper()
	dir := makeDir(t, "uvfs-e2e-wrapper-", 0o755, owner)
	w := daemonWrapper{path: filepath.Join(dir, "virtiofsd"), argvLog: filepath.Join(dir, "argv.log")}
	if err := os.WriteFile(w.argvLog, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	owner.chown(t, w.argvLog)
	script := fmt.Sprintf(`#!/bin/sh
# uvfsd e2e: stands in for virtiofsd (%s)
{ printf '%%s' "$$"; for a in "$@"; do printf ' %%s' "$a"; done; echo; } >> %s
exec %s "$@"
`, d.name, vm.ShellJoin([]string{w.argvLog}), vm.ShellJoin(d.exec))
	if err := os.WriteFile(w.path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return w
}

// daemonStart is one command line the wrapper ran.
type daemonStart struct {
	pid  int
	args []string
}

// starts returns the command lines the wrapper ran, leaving out the
// "--version" probes clients make before they pick a daemon.
func (w daemonWrapper) starts(t *testing.T) []daemonStart {
	t.Helper()
	data, err := os.ReadFile(w.argvLog)
	if err != nil {
		t.Fatal(err)
	}
	var out []daemonStart
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		pid, err := strconv.Atoi(f[0])
		if err != nil {
			t.Fatalf("%s: bad line %q", w.argvLog, l)
		}
		if len(f) == 2 && f[1] == "--version" {
			continue
		}
		out = append(out, daemonStart{pid: pid, args: f[1:]})
	}
	return out
}

// argValue returns the value of a "--name value" or "--name=value" option.
func argValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
		if a == name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// checkServedLog checks that lines (a daemon's log) match each of d's
// served patterns.
func checkServedLog(t *testing.T, d clientDaemon, lines []string, shared, socket string) {
	t.Helper()
	for _, re := range d.served(shared, socket) {
		found := false
		for _, l := range lines {
			if re.MatchString(l) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("%s's log has no line matching %q; it logged:\n%s", d.name, re, strings.Join(lines, "\n"))
		}
	}
}

// processState returns the state letter of /proc/PID/stat ('R', 'S', 'Z',
// ...), or 0 when there is no such process. A zombie has exited: on these
// machines pid 1 may never reap the daemons that clients orphan.
func processState(pid int) byte {
	s, err := guest.ReadProcStat(pid)
	if err != nil {
		return 0
	}
	return s.State
}

// waitExited waits until pid has exited (gone or a zombie).
func waitExited(pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		st := processState(pid)
		if st == 0 || st == 'Z' || st == 'X' {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d still running (state %c) after %v", pid, st, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sessionOf returns the session id of pid, or 0.
func sessionOf(pid int) int {
	s, err := guest.ReadProcStat(pid)
	if err != nil {
		return 0
	}
	return s.Session
}

// childOf returns a child process of pid, or 0.
func childOf(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0
	}
	c, _ := strconv.Atoi(f[0])
	return c
}

// sessionPids returns the live processes (not zombies) of session sid.
func sessionPids(sid int) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || sessionOf(pid) != sid {
			continue
		}
		if st := processState(pid); st != 'Z' && st != 'X' && st != 0 {
			pids = append(pids, pid)
		}
	}
	return pids
}

// sessionWatch follows the session that a child of script(1) leads (it
// calls setsid): every process a client starts there, including daemons
// it leaves running in the background. It records their pids while they
// run, since a daemon may log from a child it re-executed into, and kills
// by pid what is left.
type sessionWatch struct {
	mu   sync.Mutex
	sid  int
	pids map[int]bool
	quit chan struct{}
	done chan struct{}
	once sync.Once
}

// watchSession follows the session of parent's first child.
func watchSession(parent int) *sessionWatch {
	w := &sessionWatch{pids: map[int]bool{}, quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			w.mu.Lock()
			if w.sid == 0 {
				w.sid = childOf(parent)
			}
			if w.sid != 0 {
				for _, pid := range sessionPids(w.sid) {
					w.pids[pid] = true
				}
			}
			w.mu.Unlock()
			select {
			case <-w.quit:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// stop ends the watch; seen and kill still work.
func (w *sessionWatch) stop() {
	w.once.Do(func() { close(w.quit) })
	<-w.done
}

// seen returns every pid the session had while watched.
func (w *sessionWatch) seen() map[int]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.pids)
}

// kill kills, by pid, every live process of the session and returns them.
func (w *sessionWatch) kill() []int {
	w.mu.Lock()
	sid := w.sid
	w.mu.Unlock()
	if sid <= 1 {
		return nil
	}
	var killed []int
	for _, pid := range sessionPids(sid) {
		if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
			killed = append(killed, pid)
		}
	}
	return killed
}

// syncBuffer collects a process's output; safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
