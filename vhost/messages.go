package vhost

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Features this back-end offers; Config.Migration adds LOG_ALL, LOG_SHMFD and DEVICE_STATE.
const (
	offeredFeatures = FeatureVersion1 | FeatureIndirectDesc | FeatureEventIdx | FeatureProtocolFeatures
	offeredProtocol = ProtocolMQ | ProtocolReplyAck | ProtocolResetDevice | ProtocolConfigureMemSlots
)

func (b *Backend) offeredFeatures() uint64 {
	if b.cfg.Migration != nil {
		return offeredFeatures | FeatureLogAll
	}
	return offeredFeatures
}

// dispatch routes a validated message to its handler, one method per request type. For requests
// with an explicit reply it returns the reply payload.
func (b *Backend) dispatch(m *message) ([]byte, error) {
	switch m.hdr.Request {
	case ReqGetFeatures:
		return u64Payload(b.offeredFeatures()), nil
	case ReqSetFeatures:
		return nil, b.setFeatures(m.u64())
	case ReqSetOwner:
		return nil, nil
	case ReqResetOwner, ReqResetDevice:
		return nil, b.resetDevice()
	case ReqGetProtocolFeatures:
		return u64Payload(b.offeredProtocol()), nil
	case ReqSetProtocolFeatures:
		return nil, b.setProtocolFeatures(m.u64())
	case ReqGetQueueNum:
		return u64Payload(uint64(b.maxQueues())), nil
	case ReqGetMaxMemSlots:
		return u64Payload(MaxMemSlots), nil
	case ReqSetMemTable:
		return nil, b.setMemTable(m)
	case ReqAddMemReg:
		return nil, b.addMemReg(m)
	case ReqRemMemReg:
		return nil, b.remMemReg(m)
	case ReqSetVringNum:
		return nil, b.setVringNum(m)
	case ReqSetVringAddr:
		return nil, b.setVringAddr(m)
	case ReqSetVringBase:
		return nil, b.setVringBase(m)
	case ReqGetVringBase:
		return b.getVringBase(m)
	case ReqSetVringKick, ReqSetVringCall, ReqSetVringErr:
		return nil, b.setVringFD(m)
	case ReqSetVringEnable:
		return nil, b.setVringEnable(m)
	case ReqGetConfig:
		return b.getConfig(m), nil
	case ReqSetConfig:
		return nil, errors.New("the virtio-fs configuration space is read-only")
	case ReqSetLogBase:
		return u64Payload(0), b.setLogBase(m)
	case ReqSetLogFd:
		return nil, b.setLogFD(m)
	case ReqSetDeviceStateFd:
		return b.setDeviceStateFD(m)
	case ReqCheckDeviceState:
		return b.checkDeviceState()
	}
	return nil, errUnsupported // unreachable: checkMessage only lets known requests through
}

func (b *Backend) offeredProtocol() uint64 {
	p := offeredProtocol
	if b.cfg.Tag != "" {
		p |= ProtocolConfig
	}
	if b.cfg.Migration != nil {
		p |= ProtocolLogShmfd | ProtocolDeviceState
	}
	return p
}

func (b *Backend) setFeatures(f uint64) error {
	if extra := f &^ b.offeredFeatures(); extra != 0 {
		return fmt.Errorf("front-end acked features %#x that were not offered", extra)
	}
	b.features = f
	for _, q := range b.queues {
		q.setFeatures(f&FeatureEventIdx != 0, f&FeatureIndirectDesc != 0)
	}
	// Logging goes on and off while the rings run; the reply (QEMU asks for one when LOG_ALL
	// is set) goes out only once every queue logs.
	b.setLogAll(f&FeatureLogAll != 0)
	return nil
}

func (b *Backend) setProtocolFeatures(f uint64) error {
	if extra := f &^ b.offeredProtocol(); extra != 0 {
		return fmt.Errorf("front-end acked protocol features %#x that were not offered", extra)
	}
	b.protocolFeatures = f
	return nil
}

func (b *Backend) resetDevice() error {
	for _, q := range b.queues {
		q.reset()
	}
	b.features = 0
	b.dropLog()
	b.cancelTransfer()
	return nil
}

// setMemTable replaces all of guest memory.
func (b *Backend) setMemTable(m *message) error {
	n := int(binary.LittleEndian.Uint32(m.payload))
	descs := make([]MemRegion, n)
	for i := range descs {
		descs[i] = decodeMemRegion(m.payload[8+i*MemRegionSize:])
	}
	regions, err := mapRegions(descs, m.fds)
	if err != nil {
		return err
	}
	b.swapMemory(newMemTable(regions))
	return nil
}

// addMemReg adds one region (CONFIGURE_MEM_SLOTS).
func (b *Backend) addMemReg(m *message) error {
	d := decodeMemRegion(m.payload[8:])
	var old []region
	if b.mem != nil {
		old = b.mem.regions
	}
	if len(old) >= MaxMemSlots {
		return fmt.Errorf("all %d memory slots are in use", MaxMemSlots)
	}
	if overlaps(old, d) {
		return fmt.Errorf("memory region %#x+%#x overlaps an existing region", d.GuestAddr, d.Size)
	}
	r, err := mapRegion(d, m.fds[0])
	if err != nil {
		return err
	}
	regions := make([]region, 0, len(old)+1)
	for _, o := range old {
		o.m.acquire()
		regions = append(regions, o)
	}
	b.swapMemory(newMemTable(append(regions, r)))
	return nil
}

// remMemReg removes the region with the given guest address and size.
func (b *Backend) remMemReg(m *message) error {
	d := decodeMemRegion(m.payload[8:])
	if b.mem == nil {
		return errors.New("no guest memory to remove a region from")
	}
	found := false
	var regions []region
	for _, o := range b.mem.regions {
		if !found && o.GuestAddr == d.GuestAddr && o.Size == d.Size {
			found = true
			continue
		}
		o.m.acquire()
		regions = append(regions, o)
	}
	if !found {
		for _, o := range regions {
			o.m.release()
		}
		return fmt.Errorf("no memory region at %#x with size %#x", d.GuestAddr, d.Size)
	}
	b.swapMemory(newMemTable(regions))
	return nil
}

// swapMemory installs t with every worker paused, so no worker reads a ring through the old
// mapping while it changes. Requests in flight keep the old table mapped until they complete.
func (b *Backend) swapMemory(t *memTable) {
	for _, q := range b.queues {
		q.pause()
	}
	for _, q := range b.queues {
		q.setMem(t)
	}
	if b.mem != nil {
		b.mem.release()
	}
	b.mem = t
	for _, q := range b.queues {
		q.maybeStart()
	}
}

func (b *Backend) setVringNum(m *message) error {
	index, num := m.vringState()
	q, err := b.queue(index)
	if err != nil {
		return err
	}
	return q.setSize(num)
}

func (b *Backend) setVringAddr(m *message) error {
	a := decodeVringAddr(m.payload)
	q, err := b.queue(a.Index)
	if err != nil {
		return err
	}
	return q.setAddr(a)
}

func (b *Backend) setVringBase(m *message) error {
	index, num := m.vringState()
	q, err := b.queue(index)
	if err != nil {
		return err
	}
	return q.setBase(num)
}

// getVringBase stops the ring and reports where the front-end should resume. It never blocks
// longer than the stop timeout, since QEMU waits for this reply at guest shutdown.
func (b *Backend) getVringBase(m *message) ([]byte, error) {
	index, _ := m.vringState()
	q, err := b.queue(index)
	if err != nil {
		return nil, err
	}
	base := q.stopRing()
	p := make([]byte, 8)
	binary.LittleEndian.PutUint32(p[0:], index)
	binary.LittleEndian.PutUint32(p[4:], uint32(base))
	return p, nil
}

// setVringFD handles SET_VRING_KICK, SET_VRING_CALL and SET_VRING_ERR.
func (b *Backend) setVringFD(m *message) error {
	v := m.u64()
	q, err := b.queue(uint32(v & VringFdIndexMask))
	if err != nil {
		return err
	}
	if v&^uint64(VringFdIndexMask|VringFdNoFD) != 0 {
		return fmt.Errorf("unknown bits in %#x", v)
	}
	fd := -1
	if v&VringFdNoFD == 0 {
		fd = m.takeFD(0)
		// QEMU's eventfds are non-blocking already. Anything else (a pipe nobody reads, a
		// socket) must not block a worker: a call write would block with the queue's lock held,
		// a kick read that lost a race would never return.
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			return fmt.Errorf("queue %d: fd %d: %w", q.index, fd, err)
		}
	}
	switch m.hdr.Request {
	case ReqSetVringKick:
		q.setKick(fd)
	case ReqSetVringCall:
		q.setCall(fd)
	default:
		q.setErr(fd)
	}
	return nil
}

func (b *Backend) setVringEnable(m *message) error {
	index, num := m.vringState()
	q, err := b.queue(index)
	if err != nil {
		return err
	}
	if num > 1 {
		return fmt.Errorf("queue %d: enable value %d is neither 0 nor 1", index, num)
	}
	q.setEnable(num == 1)
	return nil
}

// getConfig answers GET_CONFIG from virtio_fs_config. A request outside the 40-byte space gets
// only the config header back, which front-ends treat as failure.
func (b *Backend) getConfig(m *message) []byte {
	offset := binary.LittleEndian.Uint32(m.payload[0:])
	size := binary.LittleEndian.Uint32(m.payload[4:])
	hdr := m.payload[:ConfigHeaderSize]
	if b.cfg.Tag == "" || uint64(offset)+uint64(size) > FSConfigSize {
		b.logf("vhost-user: GET_CONFIG offset %d size %d refused (tag set: %v)", offset, size, b.cfg.Tag != "")
		return append([]byte(nil), hdr...)
	}
	var space [FSConfigSize]byte
	copy(space[:FSConfigTagLength], b.cfg.Tag)
	binary.LittleEndian.PutUint32(space[FSConfigTagLength:], uint32(max(b.cfg.RequestQueues, 1)))
	reply := append([]byte(nil), hdr...)
	return append(reply, space[offset:offset+size]...)
}
