package vhost

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"
)

// Handler serves requests. Queue 0 is the hiprio queue, 1.. are request queues. Serve must call
// r.Complete exactly once, now or later from another goroutine.
type Handler interface {
	Serve(queue int, r *Request)
}

// Config configures a Backend.
type Config struct {
	// Tag, when non-empty, advertises VHOST_USER_PROTOCOL_F_CONFIG and GET_CONFIG returns
	// virtio_fs_config{tag[36], num_request_queues}. Leave it empty for QEMU 7.1-8.0, which only
	// logs a warning and then crashes when a vhost-user-fs back-end offers CONFIG.
	Tag string
	// RequestQueues is the most request queues served (the hiprio queue comes on top), which
	// GET_QUEUE_NUM and GET_CONFIG report. 0, the default, serves as many as the front-end sets
	// up, up to MaxRequestQueues: QEMU sets up its num-request-queues= whatever GET_QUEUE_NUM
	// answered, so the back-end follows it (GET_CONFIG then reports 1). A front-end that sets up
	// a queue beyond a non-zero RequestQueues is refused at once: ServeConn returns a
	// *QueueLimitError instead of leaving that queue unserved and the guest waiting on it.
	RequestQueues int
	// ThreadPoolSize N > 1 lets up to N goroutines drain a request queue at once: the worker
	// wakes a helper whenever it pops a request and more are waiting, so a backlog (readahead,
	// parallel guest processes) is served on several cores, while a lone request is still served
	// inline without a hand-off. Only the worker watches the kick eventfd, so a request that
	// blocks in the handler while no backlog woke a helper still holds up the requests after it,
	// as without helpers. 0 and 1 serve each queue on its worker goroutine only.
	ThreadPoolSize int
	// PollMax lets a request queue's worker watch its ring for up to this long after it runs out
	// of work before it sleeps; the window adapts to the guest and shrinks to 0 when the guest is
	// slower than that. 0 never polls. The hiprio queue (FORGET) never polls. DefaultPollMax is
	// uvfsd's choice.
	PollMax time.Duration
	// HiprioGather is how long the hiprio queue's worker waits after a kick before it serves what
	// is queued. Linux sends one FORGET per evicted inode there, and no task waits for them; when
	// it evicts thousands at once (drop_caches, rm -rf, memory pressure), serving each FORGET as
	// it comes costs the guest a kick and an interrupt per inode. Gathering them costs one of each
	// per batch. 0 serves at once.
	HiprioGather time.Duration
	// HiprioLinger keeps the hiprio queue's worker serving on a timer instead of on kicks while
	// FORGETs keep coming: after a drain it leaves avail_event behind (the guest does not kick
	// for the next ones) and looks at the ring again after this long, and it holds back the
	// interrupt for what it completed until a quarter of the ring is used or the ring stayed
	// empty for a whole period. A flood of FORGETs then costs the guest one kick and an
	// interrupt per quarter ring instead of one of each per inode, and no FORGET waits longer
	// than this to be served. 0 serves on kicks and interrupts at the end of each drain.
	HiprioLinger time.Duration
	// HotWait is how long after the guest's last request a queue's worker keeps waiting hot: in
	// ppoll(2) as a raw system call, keeping its P, so that the Go runtime's sysmon thread is not
	// woken for each request (see sleep.go). Each worker then adds a P to GOMAXPROCS while it
	// runs. 0 always waits through the runtime; DefaultHotWait is uvfsd's choice.
	HotWait time.Duration
	// Logf receives diagnostics about misbehaving guests and front-ends. May be nil.
	Logf func(format string, args ...any)
	// StopTimeout bounds how long stopping a ring (GET_VRING_BASE, disconnect) waits for workers
	// and in-flight requests. 0 means 3 s. QEMU blocks on GET_VRING_BASE, so this must stay short.
	StopTimeout time.Duration
	// Migration, when set, offers live migration: dirty logging (LOG_SHMFD) and the device's
	// internal state (DEVICE_STATE). nil refuses migration as before.
	Migration Migrator
}

// Backend is a vhost-user back-end for one virtio-fs device. It serves one connection at a time.
type Backend struct {
	cfg Config
	h   Handler

	// Per-connection state, touched only by the ServeConn goroutine (queues have their own lock).
	// queues grows as the front-end sets queues up; queuesMu guards the slice for readers on
	// other goroutines (QueueCounts), the ServeConn goroutine reads it without.
	queues           []*queue
	queuesMu         sync.Mutex
	features         uint64 // acked virtio features
	protocolFeatures uint64 // acked protocol features
	mem              *memTable

	// Migration (dirtylog.go, migration.go).
	log      *dirtyLog // mapped by SET_LOG_BASE; nil without
	logAll   bool      // VHOST_F_LOG_ALL acked
	transfer *transfer // the device state transfer of the last SET_DEVICE_STATE_FD, until checked
	taintMu  sync.Mutex
	taint    error // why a state saved now would be inconsistent (workers set it too)
}

// MaxRequestQueues is the most request queues a virtio-fs device can have: QEMU's limit,
// VIRTIO_QUEUE_MAX (1024) less the hiprio queue and the notification queue.
const MaxRequestQueues = 1022

// NewBackend returns a back-end that passes requests to h.
func NewBackend(cfg Config, h Handler) *Backend {
	if cfg.RequestQueues < 0 {
		cfg.RequestQueues = 0
	}
	return &Backend{cfg: cfg, h: h}
}

// maxQueues is how many queues, hiprio included, the back-end serves.
func (b *Backend) maxQueues() int {
	if b.cfg.RequestQueues > 0 {
		return 1 + min(b.cfg.RequestQueues, MaxRequestQueues)
	}
	return 1 + MaxRequestQueues
}

// QueueLimitError is a front-end that set up more request queues than the back-end serves.
type QueueLimitError struct {
	Index  int // the queue it set up (0 is hiprio, 1.. request queues)
	Served int // request queues served
}

func (e *QueueLimitError) Error() string {
	return fmt.Sprintf("the front-end set up request queue %d (num-request-queues=%d or more), but only %d request queues are served",
		e.Index, e.Index, e.Served)
}

// QueueCounts returns how many requests each queue has taken from its ring on this connection
// (index 0 is the hiprio queue), for logs and tests: with several request queues it shows
// whether the guest spread its requests.
func (b *Backend) QueueCounts() []uint64 {
	b.queuesMu.Lock()
	defer b.queuesMu.Unlock()
	counts := make([]uint64, len(b.queues))
	for i, q := range b.queues {
		counts[i] = q.served.Load()
	}
	return counts
}

func (b *Backend) logf(format string, args ...any) {
	if b.cfg.Logf != nil {
		b.cfg.Logf(format, args...)
	}
}

func (b *Backend) stopTimeout() time.Duration {
	if b.cfg.StopTimeout > 0 {
		return b.cfg.StopTimeout
	}
	return 3 * time.Second
}

func (b *Backend) protocolNegotiated() bool { return b.features&FeatureProtocolFeatures != 0 }

func (b *Backend) replyAck() bool { return b.protocolFeatures&ProtocolReplyAck != 0 }

// ServeConn runs the vhost-user protocol on one connected unix stream socket until the front-end
// disconnects (returns nil) or breaks the protocol (returns an error). It stops all queue workers
// and releases guest memory before returning. c is what Listener.Accept returns or a
// *net.UnixConn (tests).
func (b *Backend) ServeConn(c syscall.Conn) error {
	_, err := b.serveConn(c, nil)
	return err
}

// serveConn is ServeConn that also reports whether the front-end sent any message, calling
// onFirst (if not nil) when the first one arrives.
func (b *Backend) serveConn(c syscall.Conn, onFirst func()) (spoke bool, err error) {
	if len(b.cfg.Tag) > FSConfigTagLength {
		return false, fmt.Errorf("virtio-fs tag %q is %d bytes; the limit is %d: choose a shorter tag", b.cfg.Tag, len(b.cfg.Tag), FSConfigTagLength)
	}
	cn, err := newConn(c)
	if err != nil {
		return false, err
	}
	b.features, b.protocolFeatures, b.mem = 0, 0, nil
	b.log, b.logAll, b.transfer = nil, false, nil
	b.clearTaint()
	b.queuesMu.Lock()
	b.queues = nil
	b.queuesMu.Unlock()
	// The hiprio queue and one request queue always; more as the front-end sets them up.
	b.growQueues(2)
	defer b.teardown()
	for {
		m, err := cn.recv()
		if errors.Is(err, io.EOF) {
			return spoke, nil
		}
		if err != nil {
			return spoke, fmt.Errorf("vhost-user connection: %w", err)
		}
		if !spoke && onFirst != nil {
			onFirst()
		}
		spoke = true
		if err := b.handle(cn, m); err != nil {
			return spoke, fmt.Errorf("vhost-user connection: %w", err)
		}
	}
}

// teardown stops every ring and drops guest memory (mappings live on until in-flight requests
// complete).
func (b *Backend) teardown() {
	for _, q := range b.queues {
		q.reset()
		q.close()
	}
	if b.mem != nil {
		b.mem.release()
		b.mem = nil
	}
	b.dropLog()
	b.cancelTransfer()
}

// handle validates one message, runs its handler and sends the reply or REPLY_ACK. A returned
// error closes the connection; it is used only when the stream cannot continue sensibly.
func (b *Backend) handle(cn *conn, m *message) error {
	defer closeFDs(m.fds) // whatever a handler did not take
	r, err := checkMessage(m.hdr, m.payload, len(m.fds))
	status := r.status && (r.statusIf == 0 || b.protocolFeatures&r.statusIf != 0)
	if err != nil {
		if m.hdr.Flags&FlagVersionMask != FlagVersion {
			return err
		}
		b.logf("vhost-user: %v", err)
		if status {
			return cn.send(m.hdr.Request, statusFailure(m.hdr.Request))
		}
		if r.hasReply {
			// The front-end waits for a reply we cannot give; continuing would desynchronise.
			return err
		}
		return b.ack(cn, m, err)
	}
	if r.status && !status {
		// SET_LOG_BASE without LOG_SHMFD: a log in the front-end's own memory, which a separate
		// process cannot reach. The front-end expects no reply.
		err := fmt.Errorf("%s: only the LOG_SHMFD form is supported, and it was not negotiated", r.name)
		b.logf("vhost-user: %v", err)
		return b.ack(cn, m, err)
	}
	reply, err := b.dispatch(m)
	var limit *QueueLimitError
	if errors.As(err, &limit) {
		return err // the guest would wait forever on a queue nobody serves
	}
	if r.hasReply {
		if err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
		return cn.send(m.hdr.Request, reply)
	}
	if status {
		if err != nil {
			b.logf("vhost-user: %s: %v", r.name, err)
			reply = statusFailure(m.hdr.Request)
		}
		return cn.send(m.hdr.Request, reply)
	}
	if err != nil {
		b.logf("vhost-user: %s: %v", r.name, err)
	}
	return b.ack(cn, m, err)
}

// statusFailure is the u64 a status reply carries on failure: SET_DEVICE_STATE_FD's error
// bits with "no fd returned", 1 otherwise.
func statusFailure(request uint32) []byte {
	if request == ReqSetDeviceStateFd {
		return u64Payload(1 | StateReplyNoFD)
	}
	return u64Payload(1)
}

// ack sends the REPLY_ACK u64 (0 success, 1 failure) when negotiated and requested.
func (b *Backend) ack(cn *conn, m *message, err error) error {
	if !m.needsAck() || !b.replyAck() {
		return nil
	}
	var p [8]byte
	if err != nil {
		binary.LittleEndian.PutUint64(p[:], 1)
	}
	return cn.send(m.hdr.Request, p[:])
}

// queue returns the queue a message refers to, setting up the queues up to it when the
// front-end uses one for the first time, or a *QueueLimitError beyond what is served.
func (b *Backend) queue(index uint32) (*queue, error) {
	if index < uint32(len(b.queues)) {
		return b.queues[index], nil
	}
	if index >= uint32(b.maxQueues()) {
		return nil, &QueueLimitError{Index: int(index), Served: b.maxQueues() - 1}
	}
	b.growQueues(int(index) + 1)
	return b.queues[index], nil
}

// growQueues sets up queues until there are n, with the features and memory negotiated so far.
func (b *Backend) growQueues(n int) {
	for i := len(b.queues); i < n; i++ {
		q := newQueue(b, i)
		q.eventIdx, q.indirect = b.features&FeatureEventIdx != 0, b.features&FeatureIndirectDesc != 0
		q.mem = b.mem
		q.log = b.queueLog()
		b.queuesMu.Lock()
		b.queues = append(b.queues, q)
		b.queuesMu.Unlock()
	}
}

func u64Payload(v uint64) []byte {
	p := make([]byte, 8)
	binary.LittleEndian.PutUint64(p, v)
	return p
}

// takeFD removes fd i from the message so the deferred close leaves it alone.
func (m *message) takeFD(i int) int {
	fd := m.fds[i]
	m.fds[i] = -1
	return fd
}

// DefaultPollMax is the poll window for a host with cpus CPUs: 50 µs with 4 or more, else none.
// On 2 CPUs, measured with a TCG guest, the spinning worker took a core from the guest's vCPUs and
// QEMU's interrupt thread, and every workload was as fast or faster without it
// (docs/benchmarks.md).
func DefaultPollMax(cpus int) time.Duration {
	if cpus >= 4 {
		return 50 * time.Microsecond
	}
	return 0
}
