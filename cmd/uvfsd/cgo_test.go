package main

// uvfsd keeps cgo out of its import graph. A binary that links cgo cannot drop capabilities:
// syscall.AllThreadsSyscall refuses to run in it (userns.DropCapabilities), and uvfsd then warns
// and keeps them all. 'go build' and 'go install' on a machine with a C compiler build with
// CGO_ENABLED=1, so that build must link no cgo either (issue 17).

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/userns"
)

// cgoPackages link cgo in a CGO_ENABLED=1 build: runtime/cgo is in the graph whenever a package
// has cgo files, as net and os/user have (their resolvers), and log/syslog imports net.
var cgoPackages = []string{"runtime/cgo", "net", "os/user", "log/syslog"}

// goCommand runs the go command in this package's directory with cgo on, as 'go build' does on a
// machine with a C compiler.
func goCommand(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", args...) // go test puts its own go first on PATH
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("CGO_ENABLED=1 go %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return string(out)
}

func TestImportGraphLinksNoCgo(t *testing.T) {
	out := goCommand(t, "list", "-deps", "-f", "{{.ImportPath}} {{len .CgoFiles}} {{join .Imports \" \"}}", ".")
	deps := map[string]bool{}
	importers := map[string][]string{}
	var withCgo []string
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) < 2 {
			t.Fatalf("go list printed %q", line)
		}
		deps[f[0]] = true
		if f[1] != "0" && f[0] != "runtime/cgo" {
			withCgo = append(withCgo, f[0])
		}
		for _, imp := range f[2:] {
			importers[imp] = append(importers[imp], f[0])
		}
	}
	if !deps["github.com/uvfsd/uvfsd/cmd/uvfsd"] {
		t.Fatalf("go list -deps did not list the daemon itself:\n%s", out)
	}
	if deps["runtime/cgo"] {
		t.Errorf("runtime/cgo is in the daemon's import graph, for the cgo files of %s; a default build links it and cannot drop capabilities", strings.Join(withCgo, ", "))
	}
	for _, p := range cgoPackages[1:] {
		if deps[p] {
			t.Errorf("%s is in the daemon's import graph (imported by %s); with it a default build links cgo and cannot drop capabilities", p, strings.Join(importers[p], ", "))
		}
	}
	for _, p := range withCgo {
		if !slices.Contains(cgoPackages, p) {
			t.Errorf("%s has cgo files (imported by %s); with it a default build cannot drop capabilities", p, strings.Join(importers[p], ", "))
		}
	}
}

// TestCgoBuildDropsCapabilities builds the daemon as 'go build' does on a machine with a C compiler
// and checks that the process serving the share keeps only the capabilities a file server needs,
// on every thread: as root, and as an unprivileged user (nobody, whom every Debian system has), who
// is root with every capability in the user namespace uvfsd makes.
func TestCgoBuildDropsCapabilities(t *testing.T) {
	if os.Geteuid() != 0 {
		skip := t.Skipf
		if os.Getenv("CI") == "true" {
			skip = t.Fatalf // CI runs as root: it must never pass by skipping
		}
		skip("SKIP LOUDLY: needs root, to run the daemon as root and as nobody")
	}
	dir, err := os.MkdirTemp("", "uvfsd-cgo-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil { // the test user runs the binary
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "uvfsd")
	goCommand(t, "build", "-o", bin, ".")
	if info := goCommand(t, "version", "-m", bin); !strings.Contains(info, "CGO_ENABLED=1") {
		t.Fatalf("the daemon was not built with cgo on; go version -m says:\n%s", info)
	}

	// What main keeps: KeptCapabilities, and CAP_DAC_READ_SEARCH for file handles (the default
	// --inode-file-handles=prefer), of what the daemon had.
	keep := uint64(1) << unix.CAP_DAC_READ_SEARCH
	for _, c := range userns.KeptCapabilities {
		keep |= 1 << c
	}
	own, err := readCaps(fmt.Sprintf("/proc/%d/status", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}

	for _, who := range []string{"root", "nobody"} {
		t.Run(who, func(t *testing.T) {
			var cred *syscall.Credential
			uid, gid := 0, 0
			// Root's daemon had this process's bounding set; the test user's is root in a new
			// user namespace, which starts with every capability.
			want := keep & own["CapBnd"]
			if who != "root" {
				want = keep
				u, err := user.Lookup(who)
				if err != nil {
					t.Fatal(err)
				}
				uid, _ = strconv.Atoi(u.Uid)
				gid, _ = strconv.Atoi(u.Gid)
				cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}
			}
			shared := filepath.Join(dir, who+"-share")
			sockDir := filepath.Join(dir, who+"-sock")
			for _, d := range []string{shared, sockDir} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Chown(d, uid, gid); err != nil {
					t.Fatal(err)
				}
			}
			d := startDaemon(t, cred, bin, "--socket-path="+filepath.Join(sockDir, "vhost.sock"), "--shared-dir="+shared)
			pid := d.servingProcess(t)
			tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
			if err != nil || len(tasks) == 0 {
				t.Fatalf("no threads of the daemon (pid %d): %v", pid, err)
			}
			// Threads with the same sets are reported together.
			wrong := map[string][]string{}
			for _, task := range tasks {
				caps, err := readCaps(task)
				if err != nil {
					t.Fatal(err)
				}
				if caps["CapEff"] != want || caps["CapPrm"] != want || caps["CapBnd"] != want || caps["CapAmb"] != 0 {
					sets := fmt.Sprintf("CapEff %016x, CapPrm %016x, CapBnd %016x, CapAmb %016x",
						caps["CapEff"], caps["CapPrm"], caps["CapBnd"], caps["CapAmb"])
					wrong[sets] = append(wrong[sets], filepath.Base(filepath.Dir(task)))
				}
			}
			for sets, tids := range wrong {
				t.Errorf("daemon pid %d, threads %s of %d: %s; want %016x in the first three and 0 in CapAmb",
					pid, strings.Join(tids, " "), len(tasks), sets, want)
			}
			if t.Failed() {
				t.Logf("daemon stderr:\n%s", d.stderr.String())
				if strings.Contains(d.stderr.String(), "built with cgo") {
					t.Errorf("the CGO_ENABLED=1 build links cgo: see TestImportGraphLinksNoCgo for the package that brings it in")
				}
			}
			d.stop(t)
		})
	}
}

// readCaps returns the capability sets (CapInh, CapPrm, CapEff, CapBnd, CapAmb) of a
// /proc/PID/status or /proc/PID/task/TID/status file.
func readCaps(status string) (map[string]uint64, error) {
	b, err := os.ReadFile(status)
	if err != nil {
		return nil, err
	}
	caps := map[string]uint64{}
	for line := range strings.Lines(string(b)) {
		name, val, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(name, "Cap") {
			continue
		}
		if caps[name], err = strconv.ParseUint(strings.TrimSpace(val), 16, 64); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", status, name, err)
		}
	}
	if len(caps) != 5 {
		return nil, fmt.Errorf("%s has capability sets %v, want five", status, caps)
	}
	return caps, nil
}

// daemon is a uvfsd started by startDaemon.
type daemon struct {
	cmd     *exec.Cmd
	stderr  *lineWatcher
	exited  chan struct{} // closed when cmd.Wait returned
	waitErr error
}

// startDaemon runs the daemon as cred (nil: as root) and waits until it serves, which it says
// once it has dropped its capabilities.
func startDaemon(t *testing.T, cred *syscall.Credential, bin string, args ...string) *daemon {
	t.Helper()
	d := launchDaemon(t, cred, nil, bin, args...)
	select {
	case <-d.stderr.found:
	case <-d.exited:
		t.Fatalf("uvfsd %s exited before serving: %v\nstderr:\n%s", strings.Join(args, " "), d.waitErr, d.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("uvfsd %s did not say it serves within 30s\nstderr:\n%s", strings.Join(args, " "), d.stderr.String())
	}
	return d
}

// launchDaemon runs the daemon as cred (nil: as root) with env added to its environment, and
// ends it with the test.
func launchDaemon(t *testing.T, cred *syscall.Credential, env []string, bin string, args ...string) *daemon {
	t.Helper()
	d := &daemon{cmd: exec.Command(bin, args...), stderr: newLineWatcher("uvfsd: serving "), exited: make(chan struct{})}
	d.cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, env...) // newuidmap, newgidmap
	d.cmd.Stderr = d.stderr
	// A test that fails midway must not leave it running.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	d.cmd.WaitDelay = 5 * time.Second // its children hold stderr too
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.waitErr = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		for _, pid := range descendants(d.cmd.Process.Pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		d.cmd.Process.Kill()
		<-d.exited
	})
	return d
}

// servingProcess returns the pid of the process that serves: the daemon re-execs itself into
// namespaces (userns.Enter), and the first process only waits for its child.
func (d *daemon) servingProcess(t *testing.T) int {
	t.Helper()
	pid := d.cmd.Process.Pid
	for {
		children := childrenOf(pid)
		switch len(children) {
		case 0:
			return pid
		case 1:
			pid = children[0]
		default:
			t.Fatalf("uvfsd process %d has several children %v; which one serves?", pid, children)
		}
	}
}

// stop ends the daemon as a service manager would, and checks it exits cleanly.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		if d.waitErr != nil {
			t.Errorf("uvfsd after SIGTERM: %v\nstderr:\n%s", d.waitErr, d.stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Errorf("uvfsd did not exit within 10s of SIGTERM\nstderr:\n%s", d.stderr.String())
	}
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var children []int
	for _, stat := range stats {
		b, err := os.ReadFile(stat)
		if err != nil {
			continue // it exited
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			child, _ := strconv.Atoi(filepath.Base(filepath.Dir(stat)))
			children = append(children, child)
		}
	}
	return children
}

// descendants lists pid's children, their children and so on.
func descendants(pid int) []int {
	var all []int
	for _, c := range childrenOf(pid) {
		all = append(all, c)
		all = append(all, descendants(c)...)
	}
	return all
}

// lineWatcher keeps what is written to it and closes found once it holds want.
type lineWatcher struct {
	want  string
	found chan struct{}

	mu   sync.Mutex
	buf  strings.Builder
	seen bool
}

func newLineWatcher(want string) *lineWatcher {
	return &lineWatcher{want: want, found: make(chan struct{})}
}

func (w *lineWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.seen && strings.Contains(w.buf.String(), w.want) {
		w.seen = true
		close(w.found)
	}
	return len(p), nil
}

func (w *lineWatcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
