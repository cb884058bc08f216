package vhost

import (
	"encoding/binary"
	"fmt"
)

// Request types of the vhost-user protocol (QEMU docs/interop/vhost-user.rst), front-end to back-end.
const (
	ReqGetFeatures         uint32 = 1
	ReqSetFeatures         uint32 = 2
	ReqSetOwner            uint32 = 3
	ReqResetOwner          uint32 = 4
	ReqSetMemTable         uint32 = 5
	ReqSetLogBase          uint32 = 6
	ReqSetLogFd            uint32 = 7
	ReqSetVringNum         uint32 = 8
	ReqSetVringAddr        uint32 = 9
	ReqSetVringBase        uint32 = 10
	ReqGetVringBase        uint32 = 11
	ReqSetVringKick        uint32 = 12
	ReqSetVringCall        uint32 = 13
	ReqSetVringErr         uint32 = 14
	ReqGetProtocolFeatures uint32 = 15
	ReqSetProtocolFeatures uint32 = 16
	ReqGetQueueNum         uint32 = 17
	ReqSetVringEnable      uint32 = 18
	ReqSetBackendReqFd     uint32 = 21
	ReqGetConfig           uint32 = 24
	ReqSetConfig           uint32 = 25
	ReqResetDevice         uint32 = 34
	ReqGetMaxMemSlots      uint32 = 36
	ReqAddMemReg           uint32 = 37
	ReqRemMemReg           uint32 = 38
	ReqSetDeviceStateFd    uint32 = 42
	ReqCheckDeviceState    uint32 = 43
)

// Header flags.
const (
	FlagVersion     uint32 = 0x1 // the only protocol version
	FlagVersionMask uint32 = 0x3
	FlagReply       uint32 = 1 << 2 // set on back-end replies
	FlagNeedReply   uint32 = 1 << 3 // front-end asks for a REPLY_ACK u64
)

// Virtio device feature bits offered by GET_FEATURES.
const (
	FeatureLogAll           uint64 = 1 << 26 // VHOST_F_LOG_ALL: log every write into guest memory
	FeatureIndirectDesc     uint64 = 1 << 28 // VIRTIO_RING_F_INDIRECT_DESC
	FeatureEventIdx         uint64 = 1 << 29 // VIRTIO_RING_F_EVENT_IDX
	FeatureProtocolFeatures uint64 = 1 << 30 // VHOST_USER_F_PROTOCOL_FEATURES
	FeatureVersion1         uint64 = 1 << 32 // VIRTIO_F_VERSION_1
)

// Protocol feature bits (GET/SET_PROTOCOL_FEATURES).
const (
	ProtocolMQ                uint64 = 1 << 0
	ProtocolLogShmfd          uint64 = 1 << 1 // SET_LOG_BASE carries a memfd (needed for migration)
	ProtocolReplyAck          uint64 = 1 << 3
	ProtocolConfig            uint64 = 1 << 9
	ProtocolResetDevice       uint64 = 1 << 13
	ProtocolConfigureMemSlots uint64 = 1 << 15
	ProtocolDeviceState       uint64 = 1 << 19 // SET_DEVICE_STATE_FD, CHECK_DEVICE_STATE
)

// Layout limits.
const (
	HeaderSize        = 12    // u32 request, u32 flags, u32 size
	MaxFDs            = 8     // file descriptors per message (SCM_RIGHTS)
	MaxMemRegions     = 8     // regions in one SET_MEM_TABLE
	MaxMemSlots       = 32    // regions via ADD_MEM_REG, answered to GET_MAX_MEM_SLOTS
	MaxQueueSize      = 32768 // largest split ring (virtio 1.2)
	MaxPayload        = 4096  // anything bigger is a framing error
	MemRegionSize     = 32    // guest_phys_addr, memory_size, userspace_addr, mmap_offset
	VringAddrSize     = 40    // index, flags, desc, used, avail, log
	ConfigHeaderSize  = 12    // offset, size, flags
	MaxConfigSize     = 256
	VringFdNoFD       = 1 << 8 // SET_VRING_KICK/CALL/ERR: no fd attached (polling mode)
	VringFdIndexMask  = 0xff
	FSConfigSize      = 40 // struct virtio_fs_config: tag[36], le32 num_request_queues
	FSConfigTagLength = 36
	LogSize           = 16     // SET_LOG_BASE: u64 mmap_size, u64 mmap_offset
	LogPage           = 0x1000 // VHOST_LOG_PAGE: one bit of the dirty log per page
	VringFlagLog      = 1 << 0 // VHOST_VRING_F_LOG in SET_VRING_ADDR: log used ring writes at Log
	DeviceStateSize   = 8      // SET_DEVICE_STATE_FD: u32 direction, u32 phase
	MaxLogSize        = 1 << 30
)

// SET_DEVICE_STATE_FD parameters and reply bits.
const (
	StateSave          uint32 = 0      // source: the back-end writes its state into the fd
	StateLoad          uint32 = 1      // destination: the back-end reads its state from the fd
	StatePhaseStopped  uint32 = 0      // every ring is stopped (the only phase defined)
	StateReplyNoFD     uint64 = 1 << 8 // no fd returned: the front-end's channel is used
	StateReplyErrorMsk uint64 = 0xff   // non-zero: the transfer was refused
)

// Header is the fixed part of every vhost-user message.
type Header struct {
	Request uint32
	Flags   uint32
	Size    uint32
}

// Encode writes h into b, which must hold HeaderSize bytes.
func (h Header) Encode(b []byte) {
	binary.LittleEndian.PutUint32(b[0:], h.Request)
	binary.LittleEndian.PutUint32(b[4:], h.Flags)
	binary.LittleEndian.PutUint32(b[8:], h.Size)
}

// DecodeHeader reads a header from the first HeaderSize bytes of b.
func DecodeHeader(b []byte) Header {
	return Header{
		Request: binary.LittleEndian.Uint32(b[0:]),
		Flags:   binary.LittleEndian.Uint32(b[4:]),
		Size:    binary.LittleEndian.Uint32(b[8:]),
	}
}

// MemRegion describes one region of guest memory as sent in SET_MEM_TABLE and ADD/REM_MEM_REG.
type MemRegion struct {
	GuestAddr  uint64 // guest physical address, used by descriptors
	Size       uint64
	UserAddr   uint64 // front-end virtual address, used by SET_VRING_ADDR
	MmapOffset uint64 // offset of the region inside the fd
}

// Encode writes r into b, which must hold MemRegionSize bytes.
func (r MemRegion) Encode(b []byte) {
	binary.LittleEndian.PutUint64(b[0:], r.GuestAddr)
	binary.LittleEndian.PutUint64(b[8:], r.Size)
	binary.LittleEndian.PutUint64(b[16:], r.UserAddr)
	binary.LittleEndian.PutUint64(b[24:], r.MmapOffset)
}

func decodeMemRegion(b []byte) MemRegion {
	return MemRegion{
		GuestAddr:  binary.LittleEndian.Uint64(b[0:]),
		Size:       binary.LittleEndian.Uint64(b[8:]),
		UserAddr:   binary.LittleEndian.Uint64(b[16:]),
		MmapOffset: binary.LittleEndian.Uint64(b[24:]),
	}
}

// VringAddr is the payload of SET_VRING_ADDR; the addresses are front-end virtual addresses.
type VringAddr struct {
	Index, Flags           uint32
	Desc, Used, Avail, Log uint64
}

// Encode writes a into b, which must hold VringAddrSize bytes.
func (a VringAddr) Encode(b []byte) {
	binary.LittleEndian.PutUint32(b[0:], a.Index)
	binary.LittleEndian.PutUint32(b[4:], a.Flags)
	binary.LittleEndian.PutUint64(b[8:], a.Desc)
	binary.LittleEndian.PutUint64(b[16:], a.Used)
	binary.LittleEndian.PutUint64(b[24:], a.Avail)
	binary.LittleEndian.PutUint64(b[32:], a.Log)
}

func decodeVringAddr(b []byte) VringAddr {
	return VringAddr{
		Index: binary.LittleEndian.Uint32(b[0:]),
		Flags: binary.LittleEndian.Uint32(b[4:]),
		Desc:  binary.LittleEndian.Uint64(b[8:]),
		Used:  binary.LittleEndian.Uint64(b[16:]),
		Avail: binary.LittleEndian.Uint64(b[24:]),
		Log:   binary.LittleEndian.Uint64(b[32:]),
	}
}

// message is one received request: header, payload and the fds that came with it. The fds are
// owned by the message until a handler takes one (takeFD), and closed by closeFDs otherwise.
type message struct {
	hdr     Header
	payload []byte
	fds     []int
}

func (m *message) u64() uint64 { return binary.LittleEndian.Uint64(m.payload) }

// vringState decodes struct vhost_vring_state (u32 index, u32 num).
func (m *message) vringState() (index, num uint32) {
	return binary.LittleEndian.Uint32(m.payload[0:]), binary.LittleEndian.Uint32(m.payload[4:])
}

// needsAck reports whether the front-end wants a REPLY_ACK for this message.
func (m *message) needsAck() bool { return m.hdr.Flags&FlagNeedReply != 0 }

// rule says how one request type is framed: its payload size (fixed or computed), how many fds it
// may carry and whether it has an explicit reply. One table, checked once in checkMessage.
type rule struct {
	name     string
	size     int                 // exact payload size; -1: sizeOK decides
	sizeOK   func(p []byte) bool // for variable-size payloads
	fds      func(p []byte) (min, max int)
	hasReply bool // explicit reply; need_reply is then ignored
	// status: the explicit reply is a u64 status (0 success), so a failure, framing included, is
	// answered with a non-zero status instead of closing the connection. statusIf, when set,
	// makes that reply depend on a negotiated protocol feature (SET_LOG_BASE answers only with
	// LOG_SHMFD); without it the message is acked like one without a reply.
	status   bool
	statusIf uint64
}

func noFDs([]byte) (int, int)     { return 0, 0 }
func anySize([]byte) bool         { return true }
func oneFD([]byte) (int, int)     { return 1, 1 }
func upToOneFD([]byte) (int, int) { return 0, 1 }

// vringFDs: SET_VRING_KICK/CALL/ERR carry one fd unless bit 8 (no fd) is set in the u64.
func vringFDs(p []byte) (int, int) {
	if binary.LittleEndian.Uint64(p)&VringFdNoFD != 0 {
		return 0, 0
	}
	return 1, 1
}

// memTableFDs: one fd per region.
func memTableFDs(p []byte) (int, int) {
	n := int(binary.LittleEndian.Uint32(p))
	return n, n
}

func memTableSizeOK(p []byte) bool {
	if len(p) < 8 {
		return false
	}
	n := binary.LittleEndian.Uint32(p)
	return n >= 1 && n <= MaxMemRegions && len(p) == 8+int(n)*MemRegionSize
}

func configSizeOK(p []byte) bool {
	if len(p) < ConfigHeaderSize {
		return false
	}
	size := binary.LittleEndian.Uint32(p[4:])
	return size <= MaxConfigSize && len(p) == ConfigHeaderSize+int(size)
}

// rules lists every request this back-end understands. Anything else is answered as unsupported.
var rules = map[uint32]rule{
	ReqGetFeatures:         {name: "GET_FEATURES", size: 0, fds: noFDs, hasReply: true},
	ReqSetFeatures:         {name: "SET_FEATURES", size: 8, fds: noFDs},
	ReqSetOwner:            {name: "SET_OWNER", size: 0, fds: noFDs},
	ReqResetOwner:          {name: "RESET_OWNER", size: 0, fds: noFDs},
	ReqSetMemTable:         {name: "SET_MEM_TABLE", size: -1, sizeOK: memTableSizeOK, fds: memTableFDs},
	ReqSetVringNum:         {name: "SET_VRING_NUM", size: 8, fds: noFDs},
	ReqSetVringAddr:        {name: "SET_VRING_ADDR", size: VringAddrSize, fds: noFDs},
	ReqSetVringBase:        {name: "SET_VRING_BASE", size: 8, fds: noFDs},
	ReqGetVringBase:        {name: "GET_VRING_BASE", size: 8, fds: noFDs, hasReply: true},
	ReqSetVringKick:        {name: "SET_VRING_KICK", size: 8, fds: vringFDs},
	ReqSetVringCall:        {name: "SET_VRING_CALL", size: 8, fds: vringFDs},
	ReqSetVringErr:         {name: "SET_VRING_ERR", size: 8, fds: vringFDs},
	ReqGetProtocolFeatures: {name: "GET_PROTOCOL_FEATURES", size: 0, fds: noFDs, hasReply: true},
	ReqSetProtocolFeatures: {name: "SET_PROTOCOL_FEATURES", size: 8, fds: noFDs},
	ReqGetQueueNum:         {name: "GET_QUEUE_NUM", size: 0, fds: noFDs, hasReply: true},
	ReqSetVringEnable:      {name: "SET_VRING_ENABLE", size: 8, fds: noFDs},
	ReqGetConfig:           {name: "GET_CONFIG", size: -1, sizeOK: configSizeOK, fds: noFDs, hasReply: true},
	ReqSetConfig:           {name: "SET_CONFIG", size: -1, sizeOK: configSizeOK, fds: noFDs},
	ReqResetDevice:         {name: "RESET_DEVICE", size: 0, fds: noFDs},
	ReqGetMaxMemSlots:      {name: "GET_MAX_MEM_SLOTS", size: 0, fds: noFDs, hasReply: true},
	ReqAddMemReg:           {name: "ADD_MEM_REG", size: 8 + MemRegionSize, fds: oneFD},
	// QEMU sends the region's fd with REM_MEM_REG too; older front-ends do not.
	ReqRemMemReg: {name: "REM_MEM_REG", size: 8 + MemRegionSize, fds: upToOneFD},
	// Only the LOG_SHMFD form (a memfd with size and offset) is supported.
	ReqSetLogBase: {name: "SET_LOG_BASE", size: LogSize, fds: oneFD, status: true, statusIf: ProtocolLogShmfd},
	// The payload is unused (QEMU never sends it; libvhost-user ignores whatever comes).
	ReqSetLogFd:         {name: "SET_LOG_FD", size: -1, sizeOK: anySize, fds: oneFD},
	ReqSetDeviceStateFd: {name: "SET_DEVICE_STATE_FD", size: DeviceStateSize, fds: oneFD, status: true},
	ReqCheckDeviceState: {name: "CHECK_DEVICE_STATE", size: 0, fds: noFDs, status: true},
}

// requestName names a request type for logs and errors.
func requestName(req uint32) string {
	if r, ok := rules[req]; ok {
		return r.name
	}
	return fmt.Sprintf("request %d", req)
}

// errUnsupported marks a well-framed request this back-end does not implement.
var errUnsupported = fmt.Errorf("unsupported vhost-user request")

// checkMessage validates framing of a received message against the rules table: version, payload
// size and fd count. It returns the rule so callers know whether a reply is mandatory.
func checkMessage(hdr Header, payload []byte, nfds int) (rule, error) {
	if hdr.Flags&FlagVersionMask != FlagVersion {
		return rule{}, fmt.Errorf("%s: unsupported protocol version %d (flags %#x)", requestName(hdr.Request), hdr.Flags&FlagVersionMask, hdr.Flags)
	}
	if int(hdr.Size) != len(payload) {
		return rule{}, fmt.Errorf("%s: header says %d payload bytes, got %d", requestName(hdr.Request), hdr.Size, len(payload))
	}
	r, ok := rules[hdr.Request]
	if !ok {
		return rule{}, fmt.Errorf("%s: %w", requestName(hdr.Request), errUnsupported)
	}
	if r.size >= 0 && len(payload) != r.size {
		return r, fmt.Errorf("%s: payload is %d bytes, want %d", r.name, len(payload), r.size)
	}
	if r.size < 0 && !r.sizeOK(payload) {
		return r, fmt.Errorf("%s: malformed %d-byte payload", r.name, len(payload))
	}
	lo, hi := r.fds(payload)
	if nfds < lo || nfds > hi {
		return r, fmt.Errorf("%s: got %d file descriptors, want %d..%d", r.name, nfds, lo, hi)
	}
	return r, nil
}
