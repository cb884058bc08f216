package vhost_test

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/uvfsd/uvfsd/vhost"
	"github.com/uvfsd/uvfsd/vhost/frontend"
	"golang.org/x/sys/unix"
)

func TestListenRefusesSocketOfLiveDaemon(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vfs.sock")
	l, err := vhost.Listen(path, "")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = vhost.Listen(path, "")
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Listen on a live socket: %v; want an 'in use' error", err)
	}
	// The live daemon's socket must survive the attempt.
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("live socket broken by the refused Listen: %v", err)
	}
	c.Close()
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vfs.sock")
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false)
	old.Close() // leaves the file behind, like a crashed daemon
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket file missing: %v", err)
	}
	l, err := vhost.Listen(path, "")
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer l.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("new socket not reachable: %v", err)
	}
	c.Close()
}

func TestListenRefusesToDeleteNonSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "precious")
	if err := os.WriteFile(path, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := vhost.Listen(path, ""); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen on a regular file: %v", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "data" {
		t.Fatalf("regular file damaged: %q, %v", b, err)
	}
}

func TestListenSetsGroupAndMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vfs.sock")
	gid := os.Getgid()
	l, err := vhost.Listen(path, strconv.Itoa(gid))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want 0660", st.Mode().Perm())
	}
	if got := st.Sys().(*syscall.Stat_t).Gid; int(got) != gid {
		t.Errorf("socket gid %d, want %d", got, gid)
	}
	if _, err := vhost.Listen(filepath.Join(t.TempDir(), "x.sock"), "no-such-group-uvfsd"); err == nil || !strings.Contains(err.Error(), "numeric gid") {
		t.Errorf("Listen with an unknown group: %v, want an error that suggests a numeric gid", err)
	}
	// By name, when /etc/group has one for our gid (a container may run with a bare gid).
	name := groupName(gid)
	if name == "" {
		t.Logf("no name for gid %d in /etc/group; group names not tested here (TestLookupGroup covers the parser)", gid)
		return
	}
	path = filepath.Join(t.TempDir(), "named.sock")
	l2, err := vhost.Listen(path, name)
	if err != nil {
		t.Fatalf("Listen with group %q: %v", name, err)
	}
	defer l2.Close()
	if st, err := os.Stat(path); err != nil || int(st.Sys().(*syscall.Stat_t).Gid) != gid {
		t.Errorf("socket made with group %q: %v, %v; want gid %d", name, st, err, gid)
	}
}

// groupName returns the name /etc/group gives gid, or "".
func groupName(gid int) string {
	b, err := os.ReadFile("/etc/group")
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Split(strings.TrimSpace(line), ":")
		if len(f) >= 3 && f[2] == strconv.Itoa(gid) {
			return f[0]
		}
	}
	return ""
}

// The socket is bound under a temporary name and renamed into place once it listens: the name
// appears by a rename, never by a create (inotify tells which), only the socket is left in the
// directory, and it takes connections. A directory too long for the temporary name gets the
// socket bound in place.
func TestListenPutsTheSocketInPlaceOnlyWhenItListens(t *testing.T) {
	long := t.TempDir()
	long = filepath.Join(long, strings.Repeat("d", 100-len(long)))
	if err := os.Mkdir(long, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		dir     string
		renamed bool
	}{{t.TempDir(), true}, {long, false}} {
		path := filepath.Join(c.dir, "s")
		events := watchDir(t, c.dir)
		l, err := vhost.Listen(path, "")
		if err != nil {
			t.Fatalf("%d-byte path: %v", len(path), err)
		}
		if got := events(); got["s"] != map[bool]uint32{true: unix.IN_MOVED_TO, false: unix.IN_CREATE}[c.renamed] {
			t.Errorf("%d-byte path: the socket's name appeared by inotify event %#x (renamed into place: %v)", len(path), got["s"], c.renamed)
		}
		entries, err := os.ReadDir(c.dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 || entries[0].Name() != "s" {
			t.Errorf("%d-byte path: directory holds %v, want just the socket", len(path), entries)
		}
		conn, err := net.Dial("unix", path)
		if err != nil {
			t.Fatalf("%d-byte path: connect: %v", len(path), err)
		}
		conn.Close()
		l.Close()
	}
}

// watchDir watches dir for names that appear; the returned function reports, per name, the first
// event that made it appear (IN_CREATE or IN_MOVED_TO).
func watchDir(t *testing.T, dir string) func() map[string]uint32 {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_MOVED_TO); err != nil {
		t.Fatal(err)
	}
	return func() map[string]uint32 {
		first := map[string]uint32{}
		buf := make([]byte, 64<<10)
		n, _ := unix.Read(fd, buf)
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
			if _, seen := first[name]; !seen {
				first[name] = ev.Mask &^ unix.IN_ISDIR
			}
			off += unix.SizeofInotifyEvent + int(ev.Len)
		}
		return first
	}
}

func TestListenerFromFD(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vfs.sock")
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if _, err := vhost.ListenerFromFD(fd); err == nil || !strings.Contains(err.Error(), "not listening") {
		t.Fatalf("ListenerFromFD on a non-listening socket: %v", err)
	}
	if err := unix.Listen(fd, 1); err != nil {
		t.Fatal(err)
	}
	l, err := vhost.ListenerFromFD(fd)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := vhost.ListenerFromFD(-1); err == nil {
		t.Fatal("ListenerFromFD(-1) succeeded")
	}
	a, err := l.Accept()
	if err != nil {
		t.Fatalf("accepting the dialled connection: %v", err)
	}
	a.Close()
	// The inherited fd was blocking; Close must still wake an Accept.
	acceptUnblocksOnClose(t, l)
}

// acceptUnblocksOnClose checks that Close makes a pending Accept return an error: Accept waits in
// the runtime's poller rather than in a blocking accept(2), which Close could not interrupt.
func acceptUnblocksOnClose(t *testing.T, l *vhost.Listener) {
	t.Helper()
	accepted := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	time.Sleep(50 * time.Millisecond) // let Accept wait
	l.Close()
	select {
	case err := <-accepted:
		if err == nil {
			t.Error("Accept on a closed listener returned a connection")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
}

func TestListenerAcceptsAndCloseUnblocksAccept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vfs.sock")
	l, err := vhost.Listen(path, "")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	d, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if flags, err := unix.FcntlInt(c.Fd(), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("accepted fd flags %#x, %v: want close-on-exec", flags, err)
	}
	if _, err := d.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read from the accepted connection: %q, %v", buf, err)
	}
	acceptUnblocksOnClose(t, l)
}

// The daemon passes its listener to a re-exec'ed child as a file (Listener.File) and the child
// makes it a listener again (ListenerFromFile).
func TestListenerFileMakesAListenerAgain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vfs.sock")
	l, err := vhost.Listen(path, "")
	if err != nil {
		t.Fatal(err)
	}
	f, err := l.File()
	l.Close() // the file is a duplicate
	if err != nil {
		t.Fatal(err)
	}
	l2, err := vhost.ListenerFromFile(f)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	d, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	c, err := l2.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestListenerFromFileRefusesOtherFiles(t *testing.T) {
	dgram, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	regular, err := os.CreateTemp(t.TempDir(), "f")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		f    *os.File
		want string
	}{
		{os.NewFile(uintptr(dgram), "dgram"), "not a unix stream socket"},
		{regular, "not a socket"},
	} {
		if l, err := vhost.ListenerFromFile(c.f); err == nil || !strings.Contains(err.Error(), c.want) {
			if l != nil {
				l.Close()
			}
			t.Errorf("ListenerFromFile(%s): %v, want an error containing %q", c.f.Name(), err, c.want)
		}
	}
}

// serveEchoOnSocket listens on a fresh socket path and serves it with echo in
// the background; done receives ServeListener's result.
func serveEchoOnSocket(t *testing.T) (path string, done <-chan error) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "vfs.sock")
	l, err := vhost.Listen(path, "")
	if err != nil {
		t.Fatal(err)
	}
	sock, err := vhost.OpenSocketFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b := vhost.NewBackend(vhost.Config{}, &echo{})
	served := make(chan error, 1)
	go func() { served <- b.ServeListener(l, sock) }()
	return path, served
}

// The socket is removed through its directory's fd, so a chroot cannot redirect the removal to
// another file; a file made at the name since is not the daemon's and stays.
func TestSocketFileRemovesOnlyItsSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "vfs.sock")
	l, err := vhost.Listen(path, "")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	sock, err := vhost.OpenSocketFile(path)
	if err != nil {
		t.Fatal(err)
	}
	moved := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.Rename(dir, moved); err != nil { // the path now names nothing, as after a chroot
		t.Fatal(err)
	}
	sock.Remove()
	if _, err := os.Lstat(filepath.Join(moved, "vfs.sock")); !os.IsNotExist(err) {
		t.Errorf("the socket survived Remove: %v", err)
	}
	sock.Remove() // again: nothing happens

	path2 := filepath.Join(t.TempDir(), "vfs.sock")
	l2, err := vhost.Listen(path2, "")
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	sock2, err := vhost.OpenSocketFile(path2)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path2); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path2, []byte("someone else's"), 0o600); err != nil {
		t.Fatal(err)
	}
	sock2.Remove()
	if b, err := os.ReadFile(path2); err != nil || string(b) != "someone else's" {
		t.Errorf("Remove deleted a file made at the name since: %q, %v", b, err)
	}
}

func TestServeListenerServesOneFrontendThenRemovesSocket(t *testing.T) {
	path, done := serveEchoOnSocket(t)
	f, err := frontend.Dial(path, frontend.Options{MemSize: 1 << 20, QueueSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := f.Call(1, [][]byte{[]byte("over a real socket")}, []int{32})
	if err != nil || string(out) != "over a real socket" {
		t.Fatalf("call: %q, %v", out, err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		t.Error("a second front-end could connect while the first is served")
	}
	f.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ServeListener after disconnect: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeListener did not return after the front-end disconnected")
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("socket still present after exit: %v", err)
	}
}

// A second uvfsd started on the same path probes the socket to tell a live daemon from a stale
// file; the probe must not be taken for the front-end and end the live daemon.
func TestServeListenerOutlivesInUseProbe(t *testing.T) {
	path, done := serveEchoOnSocket(t)
	if _, err := vhost.Listen(path, ""); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Listen on a live socket: %v, want an in-use error", err)
	}
	select {
	case err := <-done:
		t.Fatalf("the live daemon stopped after a probe: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	f, err := frontend.Dial(path, frontend.Options{MemSize: 1 << 20, QueueSize: 8})
	if err != nil {
		t.Fatalf("the real front-end could not connect after the probe: %v", err)
	}
	if out, _, err := f.Call(1, [][]byte{[]byte("still here")}, []int{16}); err != nil || string(out) != "still here" {
		t.Fatalf("call after probe: %q, %v", out, err)
	}
	f.Close()
	if err := <-done; err != nil {
		t.Fatalf("ServeListener: %v", err)
	}
}

func TestListenExplainsATooLongPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), strings.Repeat("s", 120)+".sock")
	if _, err := vhost.Listen(path, ""); err == nil || !strings.Contains(err.Error(), "holds at most 107") {
		t.Fatalf("Listen(%d-byte path): %v, want an error naming the limit", len(path), err)
	}
}
