// Package frontend is a vhost-user front-end (the role QEMU plays) written for tests: it owns a
// memfd of "guest memory", lays out split virtqueues in it, negotiates with a back-end over a unix
// socket and turns FUSE requests into descriptor chains. Other packages use it to exercise every
// FUSE operation through the real vhost back-end without booting a VM; the low-level helpers build
// malformed chains and messages for robustness tests.
package frontend

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/uvfsd/uvfsd/vhost"
	"golang.org/x/sys/unix"
)

// Options shapes the emulated device. Zero values pick the defaults.
type Options struct {
	MemSize   int // bytes of guest memory; default 64 MiB
	QueueSize int // entries per ring, a power of two; default 256
	Queues    int // rings to set up including hiprio; default 2
	// IgnoreQueueNum sets up Queues rings whatever GET_QUEUE_NUM answers, as QEMU's
	// vhost-user-fs does with its num-request-queues=.
	IgnoreQueueNum bool
	EventIdx       bool
	Indirect       bool
	// Timeout bounds each Call (default 5 s). Control replies wait at least 10 s.
	Timeout time.Duration
	// DeferStart stops New after the protocol features, as QEMU's incoming side of a migration
	// does: it loads the device state (LoadDeviceState) before it sends SET_FEATURES, the memory
	// table and the rings, which Start sends.
	DeferStart bool
}

func (o *Options) defaults() {
	if o.MemSize == 0 {
		o.MemSize = 64 << 20
	}
	if o.QueueSize == 0 {
		o.QueueSize = 256
	}
	if o.Queues == 0 {
		o.Queues = 2
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
}

// Frontend is a connected, negotiated vhost-user front-end with started rings.
type Frontend struct {
	o        Options
	conn     *net.UnixConn
	raw      syscall.RawConn
	ctlMu    sync.Mutex
	mem      *guestMemory
	alloc    *allocator
	queues   []*vq
	protocol uint64 // acked protocol features
	features uint64 // acked device features
	offered  uint64 // device features the back-end offered
	log      *dirtyLog
	started  bool

	stopFD    int
	notifiers sync.WaitGroup
	closeOnce sync.Once
}

// Dial connects to a back-end listening at path and sets the device up.
func Dial(path string, o Options) (*Frontend, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("connecting to vhost-user socket %s: %w", path, err)
	}
	f, err := New(c, o)
	if err != nil {
		c.Close()
		return nil, err
	}
	return f, nil
}

// New sets the device up over an existing connection: features, SET_OWNER, memory table
// (SCM_RIGHTS memfd), and every ring (NUM, BASE, ADDR, KICK, CALL, ENABLE). The Frontend owns c.
func New(c *net.UnixConn, o Options) (*Frontend, error) {
	o.defaults()
	if o.QueueSize&(o.QueueSize-1) != 0 || o.QueueSize > vhost.MaxQueueSize {
		return nil, fmt.Errorf("queue size %d is not a power of two <= %d", o.QueueSize, vhost.MaxQueueSize)
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	mem, err := newGuestMemory(o.MemSize)
	if err != nil {
		return nil, err
	}
	stop, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		mem.close()
		return nil, err
	}
	f := &Frontend{o: o, conn: c, raw: raw, mem: mem, stopFD: stop}
	next := GuestBase
	for i := 0; i < o.Queues; i++ {
		q, end, err := f.layoutQueue(i, next)
		if err != nil {
			f.Close()
			return nil, err
		}
		f.queues = append(f.queues, q)
		next = end
	}
	f.alloc = newAllocator(next, GuestBase+uint64(o.MemSize))
	for _, q := range f.queues {
		f.notifiers.Add(1)
		go q.notifier(stop, &f.notifiers)
	}
	if err := f.negotiate(); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// negotiate runs the start-up sequence QEMU uses for vhost-user-fs.
func (f *Frontend) negotiate() error {
	if _, err := f.Request(vhost.ReqSetOwner, nil, nil); err != nil {
		return err
	}
	offered, err := f.getU64(vhost.ReqGetFeatures)
	if err != nil {
		return err
	}
	want := vhost.FeatureVersion1 | vhost.FeatureProtocolFeatures
	if f.o.EventIdx {
		want |= vhost.FeatureEventIdx
	}
	if f.o.Indirect {
		want |= vhost.FeatureIndirectDesc
	}
	if offered&want != want {
		return fmt.Errorf("back-end offers features %#x, front-end needs %#x", offered, want)
	}
	proto, err := f.getU64(vhost.ReqGetProtocolFeatures)
	if err != nil {
		return err
	}
	ackProto := proto & (vhost.ProtocolMQ | vhost.ProtocolReplyAck | vhost.ProtocolConfigureMemSlots | vhost.ProtocolResetDevice | vhost.ProtocolConfig |
		vhost.ProtocolLogShmfd | vhost.ProtocolDeviceState)
	if err := f.requestU64(vhost.ReqSetProtocolFeatures, ackProto, nil); err != nil {
		return err
	}
	f.protocol = ackProto
	if ackProto&vhost.ProtocolMQ != 0 {
		n, err := f.getU64(vhost.ReqGetQueueNum)
		if err != nil {
			return err
		}
		if n < uint64(f.o.Queues) && !f.o.IgnoreQueueNum {
			return fmt.Errorf("back-end supports %d queues, front-end wants %d", n, f.o.Queues)
		}
	}
	f.offered, f.features = offered, want
	if f.o.DeferStart {
		return nil
	}
	return f.Start()
}

// Start sends what New leaves out with Options.DeferStart: SET_FEATURES, the memory table and
// every ring, at the bases SetResumeBase gave (QEMU's destination resumes the source's rings).
func (f *Frontend) Start() error {
	if f.started {
		return errors.New("the device is started already")
	}
	f.started = true
	if err := f.requestU64(vhost.ReqSetFeatures, f.features, nil); err != nil {
		return err
	}
	if err := f.setMemTable(); err != nil {
		return err
	}
	for i := range f.queues {
		if err := f.StartQueue(i); err != nil {
			return err
		}
	}
	return nil
}

// StartQueue (re)sends a ring's whole setup. The base is 0 at first and afterwards what the last
// GetVringBase returned, as QEMU does when it restarts a ring.
func (f *Frontend) StartQueue(queue int) error {
	q, err := f.q(queue)
	if err != nil {
		return err
	}
	idx := uint32(queue)
	if _, err := f.vringState(vhost.ReqSetVringNum, idx, uint32(q.size)); err != nil {
		return err
	}
	q.mu.Lock()
	base := q.resumeBase
	q.mu.Unlock()
	if _, err := f.vringState(vhost.ReqSetVringBase, idx, uint32(base)); err != nil {
		return err
	}
	if err := f.setVringAddr(queue, f.features&vhost.FeatureLogAll != 0); err != nil {
		return err
	}
	if err := f.requestU64(vhost.ReqSetVringKick, uint64(idx), []int{q.kickFD}); err != nil {
		return err
	}
	if err := f.requestU64(vhost.ReqSetVringCall, uint64(idx), []int{q.callFD}); err != nil {
		return err
	}
	_, err = f.vringState(vhost.ReqSetVringEnable, idx, 1)
	return err
}

// userAddr converts a guest physical address to the front-end virtual address used in
// SET_VRING_ADDR.
func (f *Frontend) userAddr(gpa uint64) uint64 { return gpa - GuestBase + UserBase }

// UserAddr is userAddr for tests that build SET_VRING_ADDR by hand.
func (f *Frontend) UserAddr(gpa uint64) uint64 { return f.userAddr(gpa) }

// Close disconnects from the back-end and releases guest memory and eventfds. Call it only after
// every Call has returned: guest memory is unmapped.
func (f *Frontend) Close() error {
	var err error
	f.closeOnce.Do(func() {
		err = f.conn.Close()
		var one [8]byte
		one[0] = 1
		unix.Write(f.stopFD, one[:])
		f.notifiers.Wait()
		for _, q := range f.queues {
			unix.Close(q.kickFD)
			unix.Close(q.callFD)
		}
		unix.Close(f.stopFD)
		f.mem.close()
		f.log.close()
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
	})
	return err
}
