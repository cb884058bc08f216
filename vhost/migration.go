package vhost

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Migrator saves and loads the device's internal state for live migration.
type Migrator interface {
	// SaveState writes the state; called on the source once every ring is stopped.
	SaveState(w io.Writer) error
	// LoadState reads what the source's SaveState wrote; called on the destination before rings start.
	LoadState(r io.Reader) error
}

// Device state transfer (vhost-user.rst, "Migrating back-end state"). QEMU stops every ring,
// sends SET_DEVICE_STATE_FD with one end of a pipe and reads (source) or writes (destination) the
// other end only after the reply, so the transfer runs on its own goroutine: a state larger than
// the pipe would otherwise deadlock. CHECK_DEVICE_STATE, sent once QEMU's side reached end of
// file, waits for that goroutine and reports its result.
//
// A transfer that makes no progress for transferIdle (a front-end that stopped reading or
// writing, a Migrator that hangs) is ended: its fd is closed, which also unblocks I/O, and the
// check reports failure. A transfer nobody checks ends when the front-end closes its end.

// transferIdle bounds how long a transfer may go without reading or writing a byte (a
// time.Duration; tests shorten it).
var transferIdle atomic.Int64

func init() { transferIdle.Store(int64(30 * time.Second)) }

func transferIdleTime() time.Duration { return time.Duration(transferIdle.Load()) }

// transferGrace is how long a check waits, after closing a stuck transfer's fd, for its
// goroutine to return.
const transferGrace = time.Second

// transfer is one SET_DEVICE_STATE_FD's state transfer.
type transfer struct {
	dir      uint32
	f        *os.File
	done     chan struct{} // closed when the goroutine returns; err is set then
	err      error
	progress atomic.Int64 // time of the last byte moved (or of the start), UnixNano
	closed   atomic.Bool
}

// progressFile refreshes the fd's deadline and the transfer's progress with every read or write.
type progressFile struct{ t *transfer }

func (p progressFile) Write(b []byte) (int, error) {
	total := 0
	for len(b) > 0 {
		p.t.f.SetWriteDeadline(time.Now().Add(transferIdleTime()))
		n, err := p.t.f.Write(b)
		total += n
		b = b[n:]
		if n > 0 {
			p.t.touch()
		}
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (p progressFile) Read(b []byte) (int, error) {
	p.t.f.SetReadDeadline(time.Now().Add(transferIdleTime()))
	n, err := p.t.f.Read(b)
	if n > 0 {
		p.t.touch()
	}
	return n, err
}

func (t *transfer) touch() { t.progress.Store(time.Now().UnixNano()) }

// idle is how long the transfer has gone without progress.
func (t *transfer) idle() time.Duration { return time.Since(time.Unix(0, t.progress.Load())) }

// finished reports whether the goroutine returned.
func (t *transfer) finished() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// close closes the fd once (ending the transfer's I/O).
func (t *transfer) close() {
	if t.closed.CompareAndSwap(false, true) {
		t.f.Close()
	}
}

// run moves the state and closes the fd: on the source that is QEMU's end of file.
func (t *transfer) run(m Migrator) {
	defer close(t.done)
	defer t.close()
	pf := progressFile{t}
	if t.dir == StateSave {
		if err := m.SaveState(pf); err != nil {
			t.err = fmt.Errorf("saving the device state: %w", err)
		}
		return
	}
	if err := m.LoadState(pf); err != nil {
		t.err = fmt.Errorf("loading the device state: %w", err)
		// Read on to end of file, so that the front-end is not stopped by a broken pipe
		// before it asks how the load went.
		io.Copy(io.Discard, pf)
		return
	}
	// The channel ends at end of file; state left over means source and destination disagree.
	if n, err := io.Copy(io.Discard, pf); err != nil {
		t.err = fmt.Errorf("reading to the end of the device state: %w", err)
	} else if n > 0 {
		t.err = fmt.Errorf("%d bytes follow the device state that LoadState did not read", n)
	}
}

// setDeviceStateFD handles SET_DEVICE_STATE_FD: check the parameters and start the transfer
// over the front-end's fd. The reply says "no fd returned": the front-end's channel is used.
func (b *Backend) setDeviceStateFD(m *message) ([]byte, error) {
	dir := binary.LittleEndian.Uint32(m.payload[0:])
	phase := binary.LittleEndian.Uint32(m.payload[4:])
	mig := b.cfg.Migration
	switch {
	case mig == nil || b.protocolFeatures&ProtocolDeviceState == 0:
		return nil, errors.New("VHOST_USER_PROTOCOL_F_DEVICE_STATE was not negotiated")
	case dir != StateSave && dir != StateLoad:
		return nil, fmt.Errorf("unknown transfer direction %d", dir)
	case phase != StatePhaseStopped:
		return nil, fmt.Errorf("migration phase %d is not supported (only 0, stopped)", phase)
	}
	if err := b.endTransfer(); err != nil {
		return nil, err
	}
	for _, q := range b.queues {
		if q.isRunning() {
			return nil, fmt.Errorf("queue %d is running: the device state moves only while every ring is stopped", q.index)
		}
	}
	if dir == StateSave {
		strays := 0
		for _, q := range b.queues {
			strays += q.strayCount()
		}
		if strays > 0 {
			// They could write guest memory after the front-end's last look at the dirty log.
			return nil, fmt.Errorf("%d requests of stopped rings are still being served (a handler is blocked)", strays)
		}
		if err := b.taintErr(); err != nil {
			return nil, fmt.Errorf("the state would not match the guest's memory on the destination: %w", err)
		}
	}
	fd := m.takeFD(0)
	// Non-blocking, so that os.File uses the poller: deadlines and Close then end blocked I/O.
	// (A regular file stays blocking, which never blocks for long.)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("device state fd: %w", err)
	}
	t := &transfer{dir: dir, f: os.NewFile(uintptr(fd), "vhost-user-device-state"), done: make(chan struct{})}
	t.touch()
	b.transfer = t
	go t.run(mig)
	return u64Payload(StateReplyNoFD), nil
}

// checkDeviceState handles CHECK_DEVICE_STATE: wait for the transfer and report its result.
func (b *Backend) checkDeviceState() ([]byte, error) {
	t := b.transfer
	if t == nil {
		return nil, errors.New("no device state transfer to check (SET_DEVICE_STATE_FD first)")
	}
	if err := t.wait(); err != nil {
		return nil, err
	}
	b.transfer = nil
	if t.err != nil {
		return nil, t.err
	}
	return u64Payload(0), nil
}

// wait waits for the goroutine, ending the transfer if it makes no progress for transferIdle.
func (t *transfer) wait() error {
	for {
		idle := transferIdleTime()
		left := idle - t.idle()
		if left <= 0 {
			t.close()
			select {
			case <-t.done:
				if t.err == nil { // it finished just now after all
					return nil
				}
				return fmt.Errorf("device state transfer stopped after %v without progress: %w", idle, t.err)
			case <-time.After(transferGrace):
				return fmt.Errorf("device state transfer made no progress for %v and does not end (the Migrator is blocked)", idle)
			}
		}
		timer := time.NewTimer(left)
		select {
		case <-t.done:
			timer.Stop()
			return nil
		case <-timer.C:
		}
	}
}

// endTransfer gets rid of the previous transfer before a new one (or a reset): one that still
// runs is ended by closing its fd. It fails if that transfer's goroutine does not return, since
// two Migrator calls must not overlap.
func (b *Backend) endTransfer() error {
	t := b.transfer
	if t == nil {
		return nil
	}
	if !t.finished() {
		t.close()
		select {
		case <-t.done:
		case <-time.After(transferGrace):
			return errors.New("the previous device state transfer is still running and does not end")
		}
	}
	if t.err != nil {
		b.logf("vhost-user: device state transfer that was never checked failed: %v", t.err)
	}
	b.transfer = nil
	return nil
}

// cancelTransfer ends a running transfer without waiting (disconnect, reset).
func (b *Backend) cancelTransfer() {
	if b.transfer != nil {
		b.transfer.close()
		b.transfer = nil
	}
}

// Taint: reasons why a state saved now could disagree with what the destination gets of guest
// memory. They are collected from LOG_ALL going on (a new migration attempt) and make a save
// fail, so that QEMU fails the migration and the guest runs on at the source.

// loseDirty records a write the dirty log missed, logging the first one.
func (b *Backend) loseDirty(err error) {
	b.taintMu.Lock()
	first := b.taint == nil
	if first {
		b.taint = err
	}
	b.taintMu.Unlock()
	if first {
		b.logf("vhost: dirty logging: %v; migrating now would corrupt the guest, so saving the device state will fail", err)
	}
}

func (b *Backend) taintErr() error {
	b.taintMu.Lock()
	defer b.taintMu.Unlock()
	return b.taint
}

func (b *Backend) clearTaint() {
	b.taintMu.Lock()
	b.taint = nil
	b.taintMu.Unlock()
}
