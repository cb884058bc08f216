package main

// Full-stack tests: passfs → fuse.Server → vhost.Backend, driven by the Go vhost-user front-end
// (vhost/frontend) over a socketpair, with FUSE requests laid out as Linux's virtio-fs driver
// lays them out (fuse/fusetest). No VM: every reply is checked, and so is its effect on the host.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/fuse/fusetest"
	"github.com/uvfsd/uvfsd/passfs"
	"github.com/uvfsd/uvfsd/vhost"
	"github.com/uvfsd/uvfsd/vhost/frontend"
)

// Queue numbers of a virtio-fs device.
const (
	hiprioQueue  = 0 // FORGET and BATCH_FORGET
	requestQueue = 1
)

// logSink keeps the daemon's log lines; they are shown when a test fails. (t.Logf cannot be
// handed to the daemon: it may log from a goroutine after the test ended.)
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) logf(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, a...))
}

func (l *logSink) contains(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func (l *logSink) dump(t *testing.T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.lines {
		t.Logf("daemon: %s", s)
	}
}

// stack is one daemon (as main wires it) serving a temporary share to a Go front-end.
type stack struct {
	t      *testing.T
	dir    string           // the share on the host
	c      *fusetest.Client // request queue
	hiprio *fusetest.Client // hiprio queue: FORGET, BATCH_FORGET
	f      *frontend.Frontend
	init   *fuse.InitOut
	cfg    *Config
	logs   *logSink
	done   chan error // ServeConn's result
	fs     *passfs.FS
	once   sync.Once
}

type stackSetup struct {
	flags []string
	front frontend.Options
	// guestFlags are the INIT flags the test guest offers.
	guestFlags uint64
}

// linux61Flags is what a Debian 6.1 guest offers at INIT.
const linux61Flags uint64 = 0xb7bfffffb

// withGuestFlags makes the test guest offer these INIT flags instead of the default.
func withGuestFlags(flags uint64) stackOption {
	return func(s *stackSetup) { s.guestFlags = flags }
}

// stackOption changes how newStack builds the stack.
type stackOption func(*stackSetup)

// withFlags passes uvfsd command-line flags (e.g. "--xattr").
func withFlags(flags ...string) stackOption {
	return func(s *stackSetup) { s.flags = append(s.flags, flags...) }
}

// withFrontend adjusts the emulated device (queue size, indirect descriptors, ...).
func withFrontend(change func(o *frontend.Options)) stackOption {
	return func(s *stackSetup) { change(&s.front) }
}

// newStack starts a daemon on a fresh t.TempDir() share, connects the front-end, sends INIT like a
// Linux 6.1 guest and registers the shutdown check as cleanup.
func newStack(t *testing.T, opts ...stackOption) *stack {
	t.Helper()
	dir := t.TempDir()
	// By default the guest offers neither NO_OPENDIR_SUPPORT nor NO_OPEN_SUPPORT, so tests exercise
	// OPENDIR and OPEN handles (what cache=never, locks and older kernels use);
	// TestStackNoOpendir* and TestStackNoOpen* offer them.
	setup := stackSetup{front: frontend.Options{QueueSize: 512, Indirect: true, Timeout: 5 * time.Second},
		guestFlags: linux61Flags &^ (fuse.CapNoOpendirSupport | fuse.CapNoOpenSupport)}
	for _, o := range opts {
		o(&setup)
	}
	args := append([]string{"--shared-dir=" + dir, "--socket-path=" + filepath.Join(t.TempDir(), "unused.sock"),
		"--sandbox=none"}, setup.flags...)
	cfg, err := ParseConfig(args, noEnv)
	if err != nil {
		t.Fatalf("ParseConfig(%q): %v", args, err)
	}
	rootFD, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, dir: dir, cfg: cfg, logs: &logSink{}, done: make(chan error, 1)}
	popts, err := fileSystemOptions(cfg, rootFD, -1, false)
	if err != nil {
		unix.Close(rootFD)
		t.Fatal(err)
	}
	popts.Logf = s.logs.logf
	if s.fs, err = passfs.New(popts); err != nil {
		unix.Close(rootFD)
		t.Fatal(err)
	}
	server := fuse.NewServer(s.fs, fuse.Options{Want: wantedCapabilities(cfg), Logf: s.logs.logf})
	backend := vhost.NewBackend(vhost.Config{Tag: cfg.Tag, RequestQueues: cfg.RequestQueues,
		ThreadPoolSize: cfg.ThreadPoolSize, Logf: s.logs.logf, Migration: migrator(server)}, fuseHandler{server})
	front, back, err := frontend.SocketPair()
	if err != nil {
		s.fs.Close()
		t.Fatal(err)
	}
	go func() { s.done <- backend.ServeConn(back) }()
	s.f, err = frontend.New(front, setup.front)
	if err != nil {
		front.Close()
		<-s.done
		s.fs.Close()
		t.Fatalf("front-end set-up: %v", err)
	}
	t.Cleanup(func() {
		s.shutdown()
		if t.Failed() {
			s.logs.dump(t)
		}
	})
	s.c = &fusetest.Client{T: frontend.Transport{F: s.f, Queue: requestQueue}}
	s.hiprio = &fusetest.Client{T: frontend.Transport{F: s.f, Queue: hiprioQueue, NoReply: true}}
	if os.Geteuid() != 0 {
		s.c.UID, s.c.GID = uint32(os.Getuid()), uint32(os.Getgid())
	}
	s.init, err = s.c.Init(setup.guestFlags)
	if err != nil {
		t.Fatalf("INIT: %v", err)
	}
	return s
}

// shutdown disconnects the front-end and checks that the back-end treats it as a normal end:
// ServeConn returns nil, promptly.
func (s *stack) shutdown() {
	s.once.Do(func() {
		if err := s.f.Close(); err != nil {
			s.t.Errorf("closing the front-end: %v", err)
		}
		select {
		case err := <-s.done:
			if err != nil {
				s.t.Errorf("ServeConn after the front-end disconnected: %v, want nil", err)
			}
		case <-time.After(10 * time.Second):
			s.t.Errorf("ServeConn did not return within 10 s of the front-end disconnecting")
		}
		s.fs.Close()
	})
}

// host returns the host path of a name in the share.
func (s *stack) host(rel string) string { return filepath.Join(s.dir, rel) }

func (s *stack) writeHost(rel string, data []byte) {
	s.t.Helper()
	if err := os.WriteFile(s.host(rel), data, 0o644); err != nil {
		s.t.Fatal(err)
	}
}

func (s *stack) lstat(rel string) *unix.Stat_t {
	s.t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(s.host(rel), &st); err != nil {
		s.t.Fatalf("host lstat %s: %v", rel, err)
	}
	return &st
}

// notExist fails the test if rel exists on the host.
func (s *stack) notExist(rel string) {
	s.t.Helper()
	if _, err := os.Lstat(s.host(rel)); !errors.Is(err, os.ErrNotExist) {
		s.t.Fatalf("host %s: %v, want it not to exist", rel, err)
	}
}

func (s *stack) lookup(dir uint64, name string) *fuse.EntryOut {
	s.t.Helper()
	e, err := s.c.Lookup(dir, name)
	if err != nil {
		s.t.Fatalf("LOOKUP %q in %d: %v", name, dir, err)
	}
	if e.NodeID == 0 && name != "." && name != ".." {
		s.t.Fatalf("LOOKUP %q in %d: not found (negative entry)", name, dir)
	}
	return e
}

func (s *stack) open(node uint64, flags uint32) uint64 {
	s.t.Helper()
	o, err := fusetest.Call[fuse.OpenOut](s.c, fuse.OpOpen, node, fusetest.Bytes(&fuse.OpenIn{Flags: flags}))
	if err != nil {
		s.t.Fatalf("OPEN node %d flags %#x: %v", node, flags, err)
	}
	return o.Fh
}

func (s *stack) release(node, fh uint64) {
	s.t.Helper()
	if _, err := s.c.Do(fuse.OpRelease, node, 0, fusetest.Bytes(&fuse.ReleaseIn{Fh: fh})); err != nil {
		s.t.Fatalf("RELEASE fh %d: %v", fh, err)
	}
}

func (s *stack) getattr(node uint64) (*fuse.AttrOut, error) {
	return fusetest.Call[fuse.AttrOut](s.c, fuse.OpGetattr, node, fusetest.Bytes(&fuse.GetattrIn{}))
}

// alive checks that the device still serves a good request.
func (s *stack) alive() {
	s.t.Helper()
	a, err := s.getattr(fuse.RootID)
	if err != nil {
		s.t.Fatalf("GETATTR of the root after the bad input: %v", err)
	}
	if a.Attr.Ino != s.lstat(".").Ino {
		s.t.Fatalf("root inode %d, host says %d", a.Attr.Ino, s.lstat(".").Ino)
	}
}

// fdCount is how many of this process's fds (the daemon runs in it) refer to one host path:
// O_PATH fds (held for nodes) and others (open handles). FORGET, RELEASE and DESTROY have their
// host-side effect here: the fds go away.
type fdCount struct{ paths, opens, writers int } // writers: opens with write access

func daemonFDs(t *testing.T, path string) fdCount {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var c fdCount
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err != nil || target != path {
			continue
		}
		info, err := os.ReadFile("/proc/self/fdinfo/" + e.Name())
		if err != nil {
			continue // closed meanwhile
		}
		var flags uint64
		for _, line := range strings.Split(string(info), "\n") {
			if rest, ok := strings.CutPrefix(line, "flags:"); ok {
				flags, _ = strconv.ParseUint(strings.TrimSpace(rest), 8, 64)
			}
		}
		if flags&unix.O_PATH != 0 {
			c.paths++
		} else {
			c.opens++
			if flags&unix.O_ACCMODE != unix.O_RDONLY {
				c.writers++
			}
		}
	}
	return c
}

// wantErrno fails unless err is the errno want.
func wantErrno(t *testing.T, what string, err error, want syscall.Errno) {
	t.Helper()
	var got syscall.Errno
	if !errors.As(err, &got) || got != want {
		t.Fatalf("%s: got %v, want %v", what, err, want)
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_CHOWN/CAP_MKNOD): run the tests as root, as CI does")
	}
}

// createOut is the reply of CREATE and TMPFILE: fuse_entry_out then fuse_open_out.
type createOut struct {
	Entry fuse.EntryOut
	Open  fuse.OpenOut
}

func (s *stack) create(dir uint64, name string, flags, mode uint32) *createOut {
	s.t.Helper()
	o, err := fusetest.Call[createOut](s.c, fuse.OpCreate, dir,
		fusetest.Bytes(&fuse.CreateIn{Flags: flags, Mode: mode}), fusetest.Name(name))
	if err != nil {
		s.t.Fatalf("CREATE %q: %v", name, err)
	}
	return o
}

func TestStackInitAndShutdown(t *testing.T) {
	s := newStack(t)
	if s.init.Major != fuse.KernelVersion || s.init.Minor != 38 {
		t.Errorf("INIT answered %d.%d, want 7.38", s.init.Major, s.init.Minor)
	}
	if s.init.MaxWrite != 1<<20 {
		t.Errorf("max_write %d, want 1 MiB", s.init.MaxWrite)
	}
	agreed := uint64(s.init.Flags) | uint64(s.init.Flags2)<<32
	if agreed&^wantedCapabilities(s.cfg) != 0 {
		t.Errorf("INIT flags %#x include capabilities %#x the daemon does not want", agreed, agreed&^wantedCapabilities(s.cfg))
	}
	if agreed&fuse.CapReaddirplus == 0 {
		t.Errorf("READDIRPLUS not agreed although both sides offer it (flags %#x)", agreed)
	}
	s.alive()
	s.shutdown() // the cleanup would too; calling it here shows a failure under this test's name
}

func TestStackNoReaddirplusFlag(t *testing.T) {
	s := newStack(t, withFlags("--no-readdirplus"))
	agreed := uint64(s.init.Flags) | uint64(s.init.Flags2)<<32
	if agreed&(fuse.CapReaddirplus|fuse.CapReaddirplusAuto) != 0 {
		t.Errorf("--no-readdirplus: INIT still agreed READDIRPLUS (flags %#x)", agreed)
	}
}

// wantMiss checks that a LOOKUP found nothing: ENOENT, or a negative entry (node id 0) that the
// guest may cache.
func wantMiss(t *testing.T, what string, e *fuse.EntryOut, err error) {
	t.Helper()
	if err == nil && e != nil && e.NodeID == 0 {
		return
	}
	if err == nil {
		t.Errorf("%s: found node %d, want nothing", what, e.NodeID)
		return
	}
	wantErrno(t, what, err, syscall.ENOENT)
}
