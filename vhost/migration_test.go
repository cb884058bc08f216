package vhost_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/vhost"
	"github.com/uvfsd/uvfsd/vhost/frontend"
	"golang.org/x/sys/unix"
)

// stateMigrator is a Migrator with a byte string for state.
type stateMigrator struct {
	mu       sync.Mutex
	state    []byte
	loaded   []byte
	saveErr  error
	loadErr  error
	readOnly int           // LoadState reads only this many bytes (0: all)
	block    chan struct{} // SaveState waits for it to close (nil: no wait)
}

func (m *stateMigrator) SaveState(w io.Writer) error {
	if m.block != nil {
		<-m.block
	}
	m.mu.Lock()
	state, err := m.state, m.saveErr
	m.mu.Unlock()
	if err != nil {
		return err
	}
	_, err = w.Write(state)
	return err
}

func (m *stateMigrator) LoadState(r io.Reader) error {
	if m.readOnly > 0 {
		r = io.LimitReader(r, int64(m.readOnly))
	}
	b, err := io.ReadAll(r)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.loaded = b
	if err != nil {
		return err
	}
	return m.loadErr
}

func (m *stateMigrator) loadedState() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.loaded
}

func TestMigrationNotOfferedWithoutMigrator(t *testing.T) {
	for _, mig := range []vhost.Migrator{nil, &stateMigrator{}} {
		hs := start(t, vhost.Config{Migration: mig}, &echo{}, frontend.Options{MemSize: smallMem, QueueSize: 8})
		features, err := hs.f.Request(vhost.ReqGetFeatures, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		proto, err := hs.f.Request(vhost.ReqGetProtocolFeatures, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := mig != nil
		if got := le64(features)&vhost.FeatureLogAll != 0; got != want {
			t.Errorf("Migration %v: LOG_ALL offered = %v", mig, got)
		}
		p := le64(proto)
		if got := p&vhost.ProtocolLogShmfd != 0; got != want {
			t.Errorf("Migration %v: LOG_SHMFD offered = %v", mig, got)
		}
		if got := p&vhost.ProtocolDeviceState != 0; got != want {
			t.Errorf("Migration %v: DEVICE_STATE offered = %v", mig, got)
		}
		if mig == nil {
			if err := hs.f.SetLogging(true); err == nil {
				t.Error("LOG_ALL accepted without a Migrator")
			}
			if _, err := hs.f.Request(vhost.ReqSetFeatures, u64(vhost.FeatureVersion1|vhost.FeatureProtocolFeatures|vhost.FeatureLogAll), nil); err == nil {
				t.Error("SET_FEATURES with LOG_ALL accepted without a Migrator")
			}
			if _, err := hs.f.SaveDeviceState(); err == nil {
				t.Error("device state saved without a Migrator")
			}
			hs.mustEcho(1, "still fine")
		}
	}
}

func le64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// pageAligned allocates n bytes of guest memory starting on a page boundary.
func pageAligned(t *testing.T, f *frontend.Frontend, n int) (uint64, []byte) {
	t.Helper()
	gpa, b, err := f.Alloc(n + vhost.LogPage)
	if err != nil {
		t.Fatal(err)
	}
	skip := (vhost.LogPage - gpa%vhost.LogPage) % vhost.LogPage
	return gpa + skip, b[skip : skip+uint64(n)]
}

// echoChain publishes a chain of one readable buffer holding msg and one writable buffer of
// outPages pages on queue 1 and waits for it; it returns the writable buffer's address.
func echoChain(t *testing.T, f *frontend.Frontend, head int, msg []byte, outPages int) uint64 {
	t.Helper()
	inGPA, in := pageAligned(t, f, len(msg))
	copy(in, msg)
	outGPA, _ := pageAligned(t, f, outPages*vhost.LogPage)
	f.SetDesc(1, head, frontend.Desc{Addr: inGPA, Len: uint32(len(msg)), Flags: frontend.DescNext, Next: uint16(head + 1)})
	f.SetDesc(1, head+1, frontend.Desc{Addr: outGPA, Len: uint32(outPages * vhost.LogPage), Flags: frontend.DescWrite})
	f.Publish(1, uint16(head))
	if err := f.Kick(1); err != nil {
		t.Fatal(err)
	}
	e, err := f.WaitUsed(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if e.ID != uint32(head) || e.Len != uint32(len(msg)) {
		t.Fatalf("used %+v, want id %d with %d bytes", e, head, len(msg))
	}
	return outGPA
}

func pageOf(a uint64) uint64 { return a &^ (vhost.LogPage - 1) }

// TestDirtyLogMarksRepliesAndUsedRing serves requests with logging on, off and on again while
// the rings run: the log holds exactly the pages the reply was written to and the used ring's
// page, and nothing while logging is off.
func TestDirtyLogMarksRepliesAndUsedRing(t *testing.T) {
	for _, eventIdx := range []bool{false, true} {
		t.Run(fmt.Sprintf("eventIdx=%v", eventIdx), func(t *testing.T) { testDirtyLog(t, eventIdx) })
	}
}

func testDirtyLog(t *testing.T, eventIdx bool) {
	hs := start(t, vhost.Config{Migration: &stateMigrator{}}, &echo{}, frontend.Options{MemSize: 1 << 20, QueueSize: 8, EventIdx: eventIdx})
	f := hs.f
	hs.mustEcho(1, "before logging")
	if err := f.SetLogBase(0); err != nil {
		t.Fatal(err)
	}
	if err := f.SetLogging(true); err != nil {
		t.Fatal(err)
	}
	msg := bytes.Repeat([]byte("x"), 2*vhost.LogPage+100) // fills 3 of the 5 reply pages
	out := echoChain(t, f, 0, msg, 5)
	usedGPA, usedSize := f.UsedRing(1)
	want := []uint64{out, out + vhost.LogPage, out + 2*vhost.LogPage}
	for p := pageOf(usedGPA); p < usedGPA+uint64(usedSize); p += vhost.LogPage {
		want = append(want, p)
	}
	slices.Sort(want)
	if got := f.DirtyPages(true); !slices.Equal(got, want) {
		t.Fatalf("dirty pages %#x, want %#x (reply pages %#x.., used ring %#x)", got, want, out, usedGPA)
	}

	// Off: nothing is logged; the ring keeps going where it was.
	if err := f.SetLogging(false); err != nil {
		t.Fatal(err)
	}
	echoChain(t, f, 2, []byte("unlogged"), 1)
	if got := f.DirtyPages(true); len(got) != 0 {
		t.Fatalf("logging off, yet pages %#x are dirty", got)
	}

	// On again, with a fresh log as QEMU's resize sends.
	if err := f.SetLogging(true); err != nil {
		t.Fatal(err)
	}
	if err := f.SetLogBase(0); err != nil {
		t.Fatal(err)
	}
	out = echoChain(t, f, 4, []byte("again"), 2)
	got := f.DirtyPages(false)
	if !slices.Contains(got, out) || slices.Contains(got, out+vhost.LogPage) || !slices.Contains(got, pageOf(usedGPA)) {
		t.Fatalf("dirty pages %#x: want the reply's first page %#x (not its second) and the used ring %#x", got, out, pageOf(usedGPA))
	}
	hs.mustEcho(0, "hiprio still works")
	if hs.logs.contains("dirty") {
		t.Fatalf("unexpected dirty log complaint: %v", hs.logs.lines)
	}
}

// TestDirtyLogTooSmall gives a log that covers less than guest memory: requests go on, the
// error is logged once, and saving the state fails rather than migrating a corrupt guest.
func TestDirtyLogTooSmall(t *testing.T) {
	hs := start(t, vhost.Config{Migration: &stateMigrator{state: []byte("s")}}, &echo{}, frontend.Options{MemSize: smallMem, QueueSize: 8})
	f := hs.f
	if err := f.SetLogBase(8); err != nil { // 64 pages from address 0: below guest memory
		t.Fatal(err)
	}
	if err := f.SetLogging(true); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		hs.mustEcho(1, "unloggable")
	}
	n := 0
	hs.logs.mu.Lock()
	for _, l := range hs.logs.lines {
		if bytes.Contains([]byte(l), []byte("beyond the dirty log")) {
			n++
		}
	}
	hs.logs.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d log lines about the small log, want 1: %v", n, hs.logs.lines)
	}
	if _, err := f.StopQueues(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.SaveDeviceState(); err == nil {
		t.Fatal("state saved although the dirty log missed writes")
	}
}

// TestMigrationMovesTheState runs a migration like QEMU: the source serves with logging on, stops
// its rings and saves (more than a pipe holds, so the save must not block the connection); the
// destination loads before its rings start and then serves from the source's ring bases.
func TestMigrationMovesTheState(t *testing.T) {
	state := bytes.Repeat([]byte("uvfsd state "), 100_000) // 1.2 MB
	src := start(t, vhost.Config{Migration: &stateMigrator{state: state}}, &echo{}, frontend.Options{MemSize: 1 << 20, QueueSize: 8})
	if err := src.f.SetLogBase(0); err != nil {
		t.Fatal(err)
	}
	if err := src.f.SetLogging(true); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		src.mustEcho(1, fmt.Sprintf("request %d", i))
	}
	bases, err := src.f.StopQueues()
	if err != nil {
		t.Fatal(err)
	}
	if bases[1] != 5 {
		t.Fatalf("queue 1 stopped at %d, want 5", bases[1])
	}
	saved, err := src.f.SaveDeviceState()
	if err != nil {
		t.Fatalf("save: %v (logs %v)", err, src.logs.lines)
	}
	if !bytes.Equal(saved, state) {
		t.Fatalf("saved %d bytes, want the %d-byte state", len(saved), len(state))
	}

	dm := &stateMigrator{}
	dst := start(t, vhost.Config{Migration: dm}, &echo{}, frontend.Options{MemSize: 1 << 20, QueueSize: 8, DeferStart: true})
	if err := dst.f.LoadDeviceState(saved); err != nil {
		t.Fatalf("load: %v (logs %v)", err, dst.logs.lines)
	}
	if !bytes.Equal(dm.loadedState(), state) {
		t.Fatalf("loaded %d bytes, want the %d-byte state", len(dm.loadedState()), len(state))
	}
	for i, b := range bases {
		dst.f.ResumeAt(i, uint16(b))
	}
	if err := dst.f.Start(); err != nil {
		t.Fatal(err)
	}
	dst.mustEcho(1, "served on the destination")
	if base, err := dst.f.GetVringBase(1); err != nil || base != bases[1]+1 {
		t.Fatalf("destination queue 1 at %d, %v; want %d", base, err, bases[1]+1)
	}
}

func TestMigrationFailuresAreReported(t *testing.T) {
	boom := errors.New("boom")
	cases := map[string]struct {
		m    *stateMigrator
		load bool
		want string
	}{
		"SaveState fails":        {m: &stateMigrator{state: []byte("partial"), saveErr: boom}, want: "saving the device state: boom"},
		"LoadState fails":        {m: &stateMigrator{loadErr: boom}, load: true, want: "loading the device state: boom"},
		"LoadState reads little": {m: &stateMigrator{readOnly: 3}, load: true, want: "bytes follow the device state"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			hs := start(t, vhost.Config{Migration: c.m}, &echo{}, frontend.Options{MemSize: smallMem, QueueSize: 8, DeferStart: c.load})
			var err error
			if c.load {
				err = hs.f.LoadDeviceState(bytes.Repeat([]byte("state"), 30_000))
			} else {
				if _, err := hs.f.StopQueues(); err != nil {
					t.Fatal(err)
				}
				_, err = hs.f.SaveDeviceState()
			}
			if err == nil {
				t.Fatal("transfer reported success")
			}
			if !hs.logs.contains(c.want) {
				t.Fatalf("no log line with %q: %v", c.want, hs.logs.lines)
			}
			// A second attempt can follow.
			if v, err := hs.f.CheckDeviceState(); err != nil || v == 0 {
				t.Fatalf("CHECK without a transfer = %d, %v; want failure", v, err)
			}
		})
	}
}

// TestDeviceStateNeedsStoppedRings refuses a save while a ring runs, and one while a request of
// a stopped ring is still being served (its writes could miss the front-end's last log sync).
func TestDeviceStateNeedsStoppedRings(t *testing.T) {
	h := &blockOnce{release: make(chan struct{}), entered: make(chan struct{})}
	hs := start(t, vhost.Config{Migration: &stateMigrator{state: []byte("s")}, StopTimeout: 100 * time.Millisecond}, h, frontend.Options{MemSize: smallMem, QueueSize: 8})
	f := hs.f
	if v, err := f.SetDeviceStateFD(vhost.StateSave, vhost.StatePhaseStopped, eventfd(t)); err != nil || v&0xff == 0 || v&vhost.StateReplyNoFD == 0 {
		t.Fatalf("save while rings run: reply %#x, %v; want an error with no fd", v, err)
	}
	// A request that blocks past the stop timeout.
	gpa := buf(t, f, 8)
	f.SetDesc(1, 0, frontend.Desc{Addr: gpa, Len: 8, Flags: frontend.DescWrite})
	f.Publish(1, 0)
	f.Kick(1)
	<-h.entered
	if _, err := f.StopQueues(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.SaveDeviceState(); err == nil {
		t.Fatal("state saved while a request was still being served")
	}
	if !hs.logs.contains("still being served") {
		t.Fatalf("refusal not logged: %v", hs.logs.lines)
	}
	close(h.release)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := f.SaveDeviceState()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("save after the request ended: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// blockOnce blocks the first request until release closes.
type blockOnce struct {
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (b *blockOnce) Serve(queue int, r *vhost.Request) {
	first := false
	b.once.Do(func() { first = true })
	if first {
		close(b.entered)
		<-b.release
	}
	r.Complete(0)
}

// TestStalledTransferEnds saves a state larger than a pipe holds to a front-end that never
// reads it: CHECK_DEVICE_STATE reports failure once the transfer stalls, instead of hanging.
func TestStalledTransferEnds(t *testing.T) {
	defer vhost.SetTransferIdleForTest(200 * time.Millisecond)()
	state := bytes.Repeat([]byte("z"), 1<<20)
	hs := start(t, vhost.Config{Migration: &stateMigrator{state: state}}, &echo{}, frontend.Options{MemSize: smallMem, QueueSize: 8})
	if _, err := hs.f.StopQueues(); err != nil {
		t.Fatal(err)
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	v, err := hs.f.SetDeviceStateFD(vhost.StateSave, vhost.StatePhaseStopped, p[1])
	unix.Close(p[1])
	if err != nil || v != vhost.StateReplyNoFD {
		t.Fatalf("SET_DEVICE_STATE_FD = %#x, %v", v, err)
	}
	start := time.Now()
	if v, err := hs.f.CheckDeviceState(); err != nil || v == 0 {
		t.Fatalf("CHECK of a stalled transfer = %d, %v; want failure", v, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("CHECK took %v", d)
	}
	// The fd was closed: the reader sees end of file after what fit into the pipe.
	n, _ := io.Copy(io.Discard, fdReader(p[0]))
	if n >= int64(len(state)) {
		t.Fatalf("read %d bytes of a stalled %d-byte transfer", n, len(state))
	}
}

type fdReader int

func (r fdReader) Read(b []byte) (int, error) {
	n, err := unix.Read(int(r), b)
	if n == 0 && err == nil {
		return 0, io.EOF
	}
	return max(n, 0), err
}

// TestMalformedMigrationMessages sends broken SET_LOG_BASE, SET_LOG_FD, SET_DEVICE_STATE_FD and
// CHECK_DEVICE_STATE messages: each gets a failure reply and the device keeps working.
func TestMalformedMigrationMessages(t *testing.T) {
	memfd := func(t *testing.T, size int) int {
		fd, err := unix.MemfdCreate("log", unix.MFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		if err := unix.Ftruncate(fd, int64(size)); err != nil {
			t.Fatal(err)
		}
		return fd
	}
	logBase := func(size, offset uint64) []byte { return append(u64(size), u64(offset)...) }
	stateParams := func(dir, phase uint32) []byte { return vringState(dir, phase) }
	type msg struct {
		req     uint32
		payload []byte
		fds     func(t *testing.T) []int
	}
	memfd4k := func(t *testing.T) []int { return []int{memfd(t, 4096)} }
	pipeEnd := func(t *testing.T) []int {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
		return []int{p[1]}
	}
	cases := map[string]msg{
		"SET_LOG_BASE short payload":       {req: vhost.ReqSetLogBase, payload: u64(4096), fds: memfd4k},
		"SET_LOG_BASE long payload":        {req: vhost.ReqSetLogBase, payload: append(logBase(4096, 0), 0), fds: memfd4k},
		"SET_LOG_BASE missing fd":          {req: vhost.ReqSetLogBase, payload: logBase(4096, 0)},
		"SET_LOG_BASE two fds":             {req: vhost.ReqSetLogBase, payload: logBase(4096, 0), fds: func(t *testing.T) []int { return []int{memfd(t, 4096), memfd(t, 4096)} }},
		"SET_LOG_BASE huge mmap_size":      {req: vhost.ReqSetLogBase, payload: logBase(1<<40, 0), fds: memfd4k},
		"SET_LOG_BASE zero mmap_size":      {req: vhost.ReqSetLogBase, payload: logBase(0, 0), fds: memfd4k},
		"SET_LOG_BASE larger than file":    {req: vhost.ReqSetLogBase, payload: logBase(8192, 0), fds: memfd4k},
		"SET_LOG_BASE offset past file":    {req: vhost.ReqSetLogBase, payload: logBase(8, 1<<20), fds: memfd4k},
		"SET_LOG_BASE offset overflows":    {req: vhost.ReqSetLogBase, payload: logBase(4096, 1<<64-8), fds: memfd4k},
		"SET_LOG_BASE misaligned offset":   {req: vhost.ReqSetLogBase, payload: logBase(8, 3), fds: memfd4k},
		"SET_LOG_BASE not mappable":        {req: vhost.ReqSetLogBase, payload: logBase(8, 0), fds: func(t *testing.T) []int { return []int{eventfd(t)} }},
		"SET_LOG_FD missing fd":            {req: vhost.ReqSetLogFd, payload: nil},
		"SET_DEVICE_STATE_FD bad dir":      {req: vhost.ReqSetDeviceStateFd, payload: stateParams(2, 0), fds: pipeEnd},
		"SET_DEVICE_STATE_FD bad phase":    {req: vhost.ReqSetDeviceStateFd, payload: stateParams(vhost.StateLoad, 1), fds: pipeEnd},
		"SET_DEVICE_STATE_FD missing fd":   {req: vhost.ReqSetDeviceStateFd, payload: stateParams(vhost.StateLoad, 0)},
		"SET_DEVICE_STATE_FD short":        {req: vhost.ReqSetDeviceStateFd, payload: []byte{1, 0, 0, 0}, fds: pipeEnd},
		"SET_DEVICE_STATE_FD save running": {req: vhost.ReqSetDeviceStateFd, payload: stateParams(vhost.StateSave, 0), fds: pipeEnd},
		"CHECK_DEVICE_STATE no transfer":   {req: vhost.ReqCheckDeviceState},
		"CHECK_DEVICE_STATE with payload":  {req: vhost.ReqCheckDeviceState, payload: u64(0)},
		"CHECK_DEVICE_STATE with fd":       {req: vhost.ReqCheckDeviceState, fds: pipeEnd},
	}
	for name, m := range cases {
		t.Run(name, func(t *testing.T) {
			hs := start(t, vhost.Config{Migration: &stateMigrator{}}, &echo{}, frontend.Options{MemSize: smallMem, QueueSize: 8})
			var fds []int
			if m.fds != nil {
				fds = m.fds(t)
			}
			reply, err := hs.f.Request(m.req, m.payload, fds)
			if err == nil {
				switch v := le64(reply); {
				case m.req == vhost.ReqSetLogFd:
					t.Fatal("back-end accepted the request")
				case len(reply) != 8:
					t.Fatalf("reply %x is no u64 status", reply)
				case m.req == vhost.ReqSetDeviceStateFd && (v&0xff == 0 || v&vhost.StateReplyNoFD == 0):
					t.Fatalf("reply %#x: want an error with the no-fd flag", v)
				case m.req != vhost.ReqSetDeviceStateFd && v == 0:
					t.Fatal("back-end reported success")
				}
			}
			hs.mustEcho(0, "queue 0 works")
			hs.mustEcho(1, "queue 1 works")
		})
	}
}

// TestSetLogFDIsAccepted takes the log eventfd and closes it.
func TestSetLogFDIsAccepted(t *testing.T) {
	hs := start(t, vhost.Config{Migration: &stateMigrator{}}, &echo{}, frontend.Options{MemSize: smallMem, QueueSize: 8})
	if _, err := hs.f.Request(vhost.ReqSetLogFd, nil, []int{eventfd(t)}); err != nil {
		t.Fatal(err)
	}
	hs.mustEcho(1, "fine")
}

// TestSetLogBaseWithoutShmfd: a front-end that did not ack LOG_SHMFD gets no explicit reply (it
// expects none), only a failed REPLY_ACK.
func TestSetLogBaseWithoutShmfd(t *testing.T) {
	hs := start(t, vhost.Config{}, &echo{}, frontend.Options{MemSize: smallMem, QueueSize: 8})
	if err := hs.f.Send(vhost.ReqSetLogBase, vhost.FlagVersion|vhost.FlagNeedReply, append(u64(4096), u64(0)...), nil); err != nil {
		t.Fatal(err)
	}
	h, p, err := hs.f.ReadReply(5 * time.Second)
	if err != nil || h.Request != vhost.ReqSetLogBase || le64(p) == 0 {
		t.Fatalf("reply %+v %x, %v; want a failed ack", h, p, err)
	}
	hs.mustEcho(1, "fine")
}
