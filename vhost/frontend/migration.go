package frontend

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"sync/atomic"
	"unsafe"

	"github.com/uvfsd/uvfsd/vhost"
	"golang.org/x/sys/unix"
)

// Live migration, the way QEMU drives it: a dirty log shared with SET_LOG_BASE, logging switched
// on with SET_FEATURES(VHOST_F_LOG_ALL) and SET_VRING_ADDR(VHOST_VRING_F_LOG) while the rings run,
// the rings stopped with GET_VRING_BASE, and the device state moved through a pipe with
// SET_DEVICE_STATE_FD and CHECK_DEVICE_STATE.

// dirtyLog is the front-end's end of the log: a memfd mapped here too.
type dirtyLog struct {
	fd    int
	bytes []byte
}

func (l *dirtyLog) close() {
	if l != nil {
		unix.Munmap(l.bytes)
		unix.Close(l.fd)
	}
}

// LogSizeFor is the log size (bytes, a multiple of 8 as QEMU sends) that covers guest physical
// addresses below end.
func LogSizeFor(end uint64) int {
	pages := (end + vhost.LogPage - 1) / vhost.LogPage
	return int((pages + 63) / 64 * 8)
}

// SetLogBase shares a new zeroed log of size bytes (SET_LOG_BASE with a memfd, offset 0) and
// drops the previous one, as QEMU does when it resizes the log. size 0 covers all of guest
// memory.
func (f *Frontend) SetLogBase(size int) error {
	if size == 0 {
		size = LogSizeFor(GuestBase + uint64(len(f.mem.bytes)))
	}
	fd, err := unix.MemfdCreate("uvfsd-test-log", unix.MFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("memfd_create: %w", err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return err
	}
	b, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return err
	}
	l := &dirtyLog{fd: fd, bytes: b}
	if err := f.SendLogBase(uint64(size), 0, fd); err != nil {
		l.close()
		return err
	}
	old := f.log
	f.log = l
	old.close()
	return nil
}

// SendLogBase sends SET_LOG_BASE with the given size and offset (fd < 0: none attached) and
// checks the u64 status reply.
func (f *Frontend) SendLogBase(size, offset uint64, fd int) error {
	p := make([]byte, vhost.LogSize)
	binary.LittleEndian.PutUint64(p[0:], size)
	binary.LittleEndian.PutUint64(p[8:], offset)
	var fds []int
	if fd >= 0 {
		fds = []int{fd}
	}
	r, err := f.Request(vhost.ReqSetLogBase, p, fds)
	if err != nil {
		return err
	}
	if len(r) != 8 || binary.LittleEndian.Uint64(r) != 0 {
		return fmt.Errorf("SET_LOG_BASE failed (reply %x)", r)
	}
	return nil
}

// SetLogging switches dirty logging on or off as QEMU does while the rings run: SET_FEATURES with
// or without VHOST_F_LOG_ALL, then SET_VRING_ADDR of every ring with or without
// VHOST_VRING_F_LOG (log address: the used ring's guest address).
func (f *Frontend) SetLogging(on bool) error {
	if on && f.offered&vhost.FeatureLogAll == 0 {
		return errors.New("the back-end does not offer VHOST_F_LOG_ALL")
	}
	features := f.features &^ vhost.FeatureLogAll
	if on {
		features |= vhost.FeatureLogAll
	}
	if err := f.requestU64(vhost.ReqSetFeatures, features, nil); err != nil {
		return err
	}
	f.features = features
	for i := range f.queues {
		if err := f.setVringAddr(i, on); err != nil {
			return err
		}
	}
	return nil
}

// setVringAddr sends SET_VRING_ADDR for queue, with VHOST_VRING_F_LOG if log.
func (f *Frontend) setVringAddr(queue int, log bool) error {
	q := f.queues[queue]
	a := vhost.VringAddr{
		Index: uint32(queue),
		Desc:  f.userAddr(q.descGPA),
		Used:  f.userAddr(q.usedGPA),
		Avail: f.userAddr(q.availGPA),
		Log:   q.usedGPA,
	}
	if log {
		a.Flags = vhost.VringFlagLog
	}
	p := make([]byte, vhost.VringAddrSize)
	a.Encode(p)
	_, err := f.Request(vhost.ReqSetVringAddr, p, nil)
	return err
}

// DirtyPages returns the guest physical addresses of the pages marked in the log, and clears
// the log if clear is set (atomically per word, as QEMU's sync does).
func (f *Frontend) DirtyPages(clear bool) []uint64 {
	if f.log == nil {
		return nil
	}
	var pages []uint64
	b := f.log.bytes
	for i := 0; i+8 <= len(b); i += 8 {
		p := (*uint64)(unsafe.Pointer(&b[i]))
		var w uint64
		if clear {
			w = atomic.SwapUint64(p, 0)
		} else {
			w = atomic.LoadUint64(p)
		}
		le := binary.LittleEndian.Uint64(binary.NativeEndian.AppendUint64(nil, w))
		for le != 0 {
			bit := uint64(bits.TrailingZeros64(le))
			le &^= 1 << bit
			pages = append(pages, (uint64(i)*8+bit)*vhost.LogPage)
		}
	}
	return pages
}

// UsedRing returns the guest physical address and size of queue's used ring (what the back-end
// logs with VHOST_VRING_F_LOG).
func (f *Frontend) UsedRing(queue int) (gpa uint64, size int) {
	q := f.queues[queue]
	return q.usedGPA, 6 + 8*q.size
}

// StopQueues stops every ring as QEMU's vhost_dev_stop does (SET_VRING_ENABLE 0, then
// GET_VRING_BASE) and returns the bases.
func (f *Frontend) StopQueues() ([]uint32, error) {
	for i := range f.queues {
		if _, err := f.vringState(vhost.ReqSetVringEnable, uint32(i), 0); err != nil {
			return nil, err
		}
	}
	bases := make([]uint32, len(f.queues))
	for i := range f.queues {
		b, err := f.GetVringBase(i)
		if err != nil {
			return nil, err
		}
		bases[i] = b
	}
	return bases, nil
}

// SetResumeBase sets the base StartQueue sends for queue (the source's GET_VRING_BASE).
func (f *Frontend) SetResumeBase(queue int, base uint16) {
	q := f.queues[queue]
	q.mu.Lock()
	q.resumeBase = base
	q.mu.Unlock()
}

// ResumeAt makes queue's ring look as a migrated, drained ring of the source does: avail->idx
// and used->idx at idx in guest memory (what migrating RAM brings along), and StartQueue's base
// idx. Call it before Start.
func (f *Frontend) ResumeAt(queue int, idx uint16) {
	q := f.queues[queue]
	q.mu.Lock()
	defer q.mu.Unlock()
	q.resumeBase, q.availIdx, q.lastUsed = idx, idx, idx
	store16(q.avail, 2, idx)
	store16(q.used, 2, idx)
}

// SetDeviceStateFD sends SET_DEVICE_STATE_FD (fd < 0: none attached) and returns the reply u64.
func (f *Frontend) SetDeviceStateFD(direction, phase uint32, fd int) (uint64, error) {
	p := make([]byte, vhost.DeviceStateSize)
	binary.LittleEndian.PutUint32(p[0:], direction)
	binary.LittleEndian.PutUint32(p[4:], phase)
	var fds []int
	if fd >= 0 {
		fds = []int{fd}
	}
	r, err := f.Request(vhost.ReqSetDeviceStateFd, p, fds)
	if err != nil {
		return 0, err
	}
	if len(r) != 8 {
		return 0, fmt.Errorf("SET_DEVICE_STATE_FD reply has %d bytes", len(r))
	}
	return binary.LittleEndian.Uint64(r), nil
}

// CheckDeviceState sends CHECK_DEVICE_STATE and returns the reply u64 (0: success).
func (f *Frontend) CheckDeviceState() (uint64, error) { return f.getU64(vhost.ReqCheckDeviceState) }

// SaveDeviceState runs the source side of the transfer as QEMU does: a pipe whose write end goes
// to the back-end, read to end of file, then CHECK_DEVICE_STATE. The rings must be stopped.
func (f *Frontend) SaveDeviceState() ([]byte, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	reply, err := f.SetDeviceStateFD(vhost.StateSave, vhost.StatePhaseStopped, int(w.Fd()))
	w.Close() // the back-end has its own copy now
	if err != nil {
		return nil, err
	}
	if err := stateReplyErr(reply); err != nil {
		return nil, err
	}
	state, rerr := io.ReadAll(r)
	r.Close()
	if err := f.checkState(); err != nil {
		return state, err
	}
	return state, rerr
}

// LoadDeviceState runs the destination side: a pipe whose read end goes to the back-end, the
// state written and the write end closed, then CHECK_DEVICE_STATE.
func (f *Frontend) LoadDeviceState(state []byte) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer w.Close()
	reply, err := f.SetDeviceStateFD(vhost.StateLoad, vhost.StatePhaseStopped, int(r.Fd()))
	r.Close()
	if err != nil {
		return err
	}
	if err := stateReplyErr(reply); err != nil {
		return err
	}
	_, werr := w.Write(state)
	w.Close()
	if err := f.checkState(); err != nil {
		return err
	}
	return werr
}

func stateReplyErr(reply uint64) error {
	if reply&vhost.StateReplyErrorMsk != 0 {
		return fmt.Errorf("back-end refused the state transfer (reply %#x)", reply)
	}
	if reply&vhost.StateReplyNoFD == 0 {
		return fmt.Errorf("back-end wants to return its own channel (reply %#x), which this front-end does not take", reply)
	}
	return nil
}

func (f *Frontend) checkState() error {
	v, err := f.CheckDeviceState()
	if err != nil {
		return err
	}
	if v != 0 {
		return fmt.Errorf("CHECK_DEVICE_STATE reports failure %d", v)
	}
	return nil
}
