// Package fuse implements the FUSE wire protocol as a virtio-fs device speaks it: decoding requests
// from the device-readable buffers of a request, dispatching them to a FileSystem, and encoding
// replies into the device-writable buffers. It knows nothing of the transport: buffers arrive as
// [][]byte (guest memory for vhost-user, plain slices in tests).
//
// Struct and constant names follow include/uapi/linux/fuse.h. The structs are encoded by their
// in-memory layout, which matches the wire on little-endian hosts (virtio-fs is little-endian).
package fuse

// Protocol version this server speaks. The kernel sends its own; we answer with the lower minor.
const (
	KernelVersion      = 7
	KernelMinorVersion = 41
	// MinMinorVersion is the oldest minor we accept: 7.31 is the first with virtio-fs.
	MinMinorVersion = 31
)

// Opcode is a FUSE request type.
type Opcode uint32

// Opcodes, in fuse.h order.
const (
	OpLookup        Opcode = 1
	OpForget        Opcode = 2
	OpGetattr       Opcode = 3
	OpSetattr       Opcode = 4
	OpReadlink      Opcode = 5
	OpSymlink       Opcode = 6
	OpMknod         Opcode = 8
	OpMkdir         Opcode = 9
	OpUnlink        Opcode = 10
	OpRmdir         Opcode = 11
	OpRename        Opcode = 12
	OpLink          Opcode = 13
	OpOpen          Opcode = 14
	OpRead          Opcode = 15
	OpWrite         Opcode = 16
	OpStatfs        Opcode = 17
	OpRelease       Opcode = 18
	OpFsync         Opcode = 20
	OpSetxattr      Opcode = 21
	OpGetxattr      Opcode = 22
	OpListxattr     Opcode = 23
	OpRemovexattr   Opcode = 24
	OpFlush         Opcode = 25
	OpInit          Opcode = 26
	OpOpendir       Opcode = 27
	OpReaddir       Opcode = 28
	OpReleasedir    Opcode = 29
	OpFsyncdir      Opcode = 30
	OpGetlk         Opcode = 31
	OpSetlk         Opcode = 32
	OpSetlkw        Opcode = 33
	OpAccess        Opcode = 34
	OpCreate        Opcode = 35
	OpInterrupt     Opcode = 36
	OpBmap          Opcode = 37
	OpDestroy       Opcode = 38
	OpIoctl         Opcode = 39
	OpPoll          Opcode = 40
	OpNotifyReply   Opcode = 41
	OpBatchForget   Opcode = 42
	OpFallocate     Opcode = 43
	OpReaddirplus   Opcode = 44
	OpRename2       Opcode = 45
	OpLseek         Opcode = 46
	OpCopyFileRange Opcode = 47
	OpSetupMapping  Opcode = 48
	OpRemoveMapping Opcode = 49
	OpSyncfs        Opcode = 50
	OpTmpfile       Opcode = 51
	OpStatx         Opcode = 52 // 7.39
)

// INIT flags (fuse_init_in.flags | flags2<<32).
const (
	CapAsyncRead         uint64 = 1 << 0
	CapPosixLocks        uint64 = 1 << 1
	CapFileOps           uint64 = 1 << 2
	CapAtomicOTrunc      uint64 = 1 << 3
	CapExportSupport     uint64 = 1 << 4
	CapBigWrites         uint64 = 1 << 5
	CapDontMask          uint64 = 1 << 6
	CapSpliceWrite       uint64 = 1 << 7
	CapSpliceMove        uint64 = 1 << 8
	CapSpliceRead        uint64 = 1 << 9
	CapFlockLocks        uint64 = 1 << 10
	CapHasIoctlDir       uint64 = 1 << 11
	CapAutoInvalData     uint64 = 1 << 12
	CapReaddirplus       uint64 = 1 << 13
	CapReaddirplusAuto   uint64 = 1 << 14
	CapAsyncDio          uint64 = 1 << 15
	CapWritebackCache    uint64 = 1 << 16
	CapNoOpenSupport     uint64 = 1 << 17
	CapParallelDirops    uint64 = 1 << 18
	CapHandleKillpriv    uint64 = 1 << 19
	CapPosixACL          uint64 = 1 << 20
	CapAbortError        uint64 = 1 << 21
	CapMaxPages          uint64 = 1 << 22
	CapCacheSymlinks     uint64 = 1 << 23
	CapNoOpendirSupport  uint64 = 1 << 24
	CapExplicitInvalData uint64 = 1 << 25
	CapMapAlignment      uint64 = 1 << 26
	CapSubmounts         uint64 = 1 << 27
	CapHandleKillprivV2  uint64 = 1 << 28
	CapSetxattrExt       uint64 = 1 << 29
	CapInitExt           uint64 = 1 << 30
	CapInitReserved      uint64 = 1 << 31
	CapSecurityCtx       uint64 = 1 << 32
	CapHasInodeDax       uint64 = 1 << 33
	CapCreateSuppGroup   uint64 = 1 << 34
	// 7.38-7.41. Not offered, with the reason: EXPIRE_ONLY is for NOTIFY_INVAL_ENTRY, and
	// virtio-fs has no notification queue; PASSTHROUGH hands the guest a backing file of the
	// guest's own kernel; NO_EXPORT_SUPPORT would switch off what EXPORT_SUPPORT gives; RESEND is
	// NOTIFY_RESEND, a notification too. ALLOW_IDMAP is offered: the guest may then make idmapped
	// mounts of the share, and sends the ids through the mount's mapping in the requests that
	// create files (the only ones whose ids passfs uses); the others carry uid and gid -1.
	CapHasExpireOnly     uint64 = 1 << 35
	CapDirectIOAllowMmap uint64 = 1 << 36 // 7.39: shared mmap of FOPEN_DIRECT_IO files
	CapPassthrough       uint64 = 1 << 37
	CapNoExportSupport   uint64 = 1 << 38
	CapHasResend         uint64 = 1 << 39
	CapAllowIdmap        uint64 = 1 << 40
)

// fuse_attr.flags
const (
	AttrSubmount uint32 = 1 << 0
)

// fuse_setattr_in.valid bits.
const (
	FattrMode        uint32 = 1 << 0
	FattrUID         uint32 = 1 << 1
	FattrGID         uint32 = 1 << 2
	FattrSize        uint32 = 1 << 3
	FattrAtime       uint32 = 1 << 4
	FattrMtime       uint32 = 1 << 5
	FattrFh          uint32 = 1 << 6
	FattrAtimeNow    uint32 = 1 << 7
	FattrMtimeNow    uint32 = 1 << 8
	FattrLockOwner   uint32 = 1 << 9
	FattrCtime       uint32 = 1 << 10
	FattrKillSuidgid uint32 = 1 << 11
)

// fuse_open_out.open_flags
const (
	FopenDirectIO             uint32 = 1 << 0
	FopenKeepCache            uint32 = 1 << 1
	FopenNonseekable          uint32 = 1 << 2
	FopenCacheDir             uint32 = 1 << 3
	FopenStream               uint32 = 1 << 4
	FopenNoFlush              uint32 = 1 << 5
	FopenParallelDirectWrites uint32 = 1 << 6
)

// fuse_open_in.open_flags / fuse_create_in.open_flags
const OpenKillSuidgid uint32 = 1 << 0

// fuse_write_in.write_flags
const (
	WriteCache       uint32 = 1 << 0
	WriteLockOwner   uint32 = 1 << 1
	WriteKillSuidgid uint32 = 1 << 2
)

// fuse_release_in.release_flags
const (
	ReleaseFlush       uint32 = 1 << 0
	ReleaseFlockUnlock uint32 = 1 << 1
)

// fuse_getattr_in.getattr_flags
const GetattrFh uint32 = 1 << 0

// fuse_lk_in.lk_flags
const LkFlock uint32 = 1 << 0

// fuse_setxattr_in.setxattr_flags
const SetxattrACLKillSgid uint32 = 1 << 0

// fuse_fsync_in.fsync_flags
const FsyncFdatasync uint32 = 1 << 0

// Request extension types (fuse_ext_header.type). Types 0..31 are security contexts.
const (
	ExtMaxNrSecctx uint32 = 31
	ExtGroups      uint32 = 32
)

// RootID is the node id of the shared directory's root.
const RootID uint64 = 1

// Attr is struct fuse_attr.
type Attr struct {
	Ino       uint64
	Size      uint64
	Blocks    uint64
	Atime     uint64
	Mtime     uint64
	Ctime     uint64
	Atimensec uint32
	Mtimensec uint32
	Ctimensec uint32
	Mode      uint32
	Nlink     uint32
	UID       uint32
	GID       uint32
	Rdev      uint32
	Blksize   uint32
	Flags     uint32
}

// InHeader is struct fuse_in_header.
type InHeader struct {
	Len         uint32
	Opcode      Opcode
	Unique      uint64
	NodeID      uint64
	UID         uint32
	GID         uint32
	PID         uint32
	TotalExtlen uint16 // length of extensions, in 8-byte units
	Padding     uint16
}

// OutHeader is struct fuse_out_header.
type OutHeader struct {
	Len    uint32
	Error  int32
	Unique uint64
}

// EntryOut is struct fuse_entry_out.
type EntryOut struct {
	NodeID         uint64
	Generation     uint64
	EntryValid     uint64
	AttrValid      uint64
	EntryValidNsec uint32
	AttrValidNsec  uint32
	Attr           Attr
}

// ForgetIn is struct fuse_forget_in.
type ForgetIn struct{ Nlookup uint64 }

// ForgetOne is struct fuse_forget_one.
type ForgetOne struct {
	NodeID  uint64
	Nlookup uint64
}

// BatchForgetIn is struct fuse_batch_forget_in.
type BatchForgetIn struct {
	Count uint32
	Dummy uint32
}

// StatxIn is struct fuse_statx_in (7.39).
type StatxIn struct {
	GetattrFlags uint32
	Reserved     uint32
	Fh           uint64
	SxFlags      uint32 // AT_STATX_* sync flags of the guest's statx
	SxMask       uint32 // STATX_* fields the guest asked for
}

// SxTime is struct fuse_sx_time.
type SxTime struct {
	Sec      int64
	Nsec     uint32
	Reserved int32
}

// Statx is struct fuse_statx.
type Statx struct {
	Mask           uint32
	Blksize        uint32
	Attributes     uint64
	Nlink          uint32
	UID            uint32
	GID            uint32
	Mode           uint16
	Spare0         uint16
	Ino            uint64
	Size           uint64
	Blocks         uint64
	AttributesMask uint64
	Atime          SxTime
	Btime          SxTime
	Ctime          SxTime
	Mtime          SxTime
	RdevMajor      uint32
	RdevMinor      uint32
	DevMajor       uint32
	DevMinor       uint32
	Spare2         [14]uint64
}

// StatxOut is struct fuse_statx_out.
type StatxOut struct {
	AttrValid     uint64
	AttrValidNsec uint32
	Flags         uint32
	Spare         [2]uint64
	Stat          Statx
}

// GetattrIn is struct fuse_getattr_in.
type GetattrIn struct {
	GetattrFlags uint32
	Dummy        uint32
	Fh           uint64
}

// AttrOut is struct fuse_attr_out.
type AttrOut struct {
	AttrValid     uint64
	AttrValidNsec uint32
	Dummy         uint32
	Attr          Attr
}

// MknodIn is struct fuse_mknod_in.
type MknodIn struct {
	Mode    uint32
	Rdev    uint32
	Umask   uint32
	Padding uint32
}

// MkdirIn is struct fuse_mkdir_in.
type MkdirIn struct {
	Mode  uint32
	Umask uint32
}

// RenameIn is struct fuse_rename_in.
type RenameIn struct{ Newdir uint64 }

// Rename2In is struct fuse_rename2_in.
type Rename2In struct {
	Newdir  uint64
	Flags   uint32
	Padding uint32
}

// LinkIn is struct fuse_link_in.
type LinkIn struct{ OldNodeID uint64 }

// SetattrIn is struct fuse_setattr_in.
type SetattrIn struct {
	Valid     uint32
	Padding   uint32
	Fh        uint64
	Size      uint64
	LockOwner uint64
	Atime     uint64
	Mtime     uint64
	Ctime     uint64
	Atimensec uint32
	Mtimensec uint32
	Ctimensec uint32
	Mode      uint32
	Unused4   uint32
	UID       uint32
	GID       uint32
	Unused5   uint32
}

// OpenIn is struct fuse_open_in.
type OpenIn struct {
	Flags     uint32
	OpenFlags uint32
}

// CreateIn is struct fuse_create_in.
type CreateIn struct {
	Flags     uint32
	Mode      uint32
	Umask     uint32
	OpenFlags uint32
}

// OpenOut is struct fuse_open_out.
type OpenOut struct {
	Fh        uint64
	OpenFlags uint32
	Padding   uint32
}

// ReleaseIn is struct fuse_release_in.
type ReleaseIn struct {
	Fh           uint64
	Flags        uint32
	ReleaseFlags uint32
	LockOwner    uint64
}

// FlushIn is struct fuse_flush_in.
type FlushIn struct {
	Fh        uint64
	Unused    uint32
	Padding   uint32
	LockOwner uint64
}

// ReadIn is struct fuse_read_in (also used by READDIR and READDIRPLUS).
type ReadIn struct {
	Fh        uint64
	Offset    uint64
	Size      uint32
	ReadFlags uint32
	LockOwner uint64
	Flags     uint32
	Padding   uint32
}

// WriteIn is struct fuse_write_in.
type WriteIn struct {
	Fh         uint64
	Offset     uint64
	Size       uint32
	WriteFlags uint32
	LockOwner  uint64
	Flags      uint32
	Padding    uint32
}

// WriteOut is struct fuse_write_out.
type WriteOut struct {
	Size    uint32
	Padding uint32
}

// StatfsOut is struct fuse_statfs_out (struct fuse_kstatfs).
type StatfsOut struct {
	Blocks  uint64
	Bfree   uint64
	Bavail  uint64
	Files   uint64
	Ffree   uint64
	Bsize   uint32
	Namelen uint32
	Frsize  uint32
	Padding uint32
	Spare   [6]uint32
}

// FsyncIn is struct fuse_fsync_in.
type FsyncIn struct {
	Fh         uint64
	FsyncFlags uint32
	Padding    uint32
}

// SetxattrIn is struct fuse_setxattr_in. Without SETXATTR_EXT the kernel sends only Size and Flags.
type SetxattrIn struct {
	Size          uint32
	Flags         uint32
	SetxattrFlags uint32
	Padding       uint32
}

// GetxattrIn is struct fuse_getxattr_in (also LISTXATTR).
type GetxattrIn struct {
	Size    uint32
	Padding uint32
}

// GetxattrOut is struct fuse_getxattr_out.
type GetxattrOut struct {
	Size    uint32
	Padding uint32
}

// FileLock is struct fuse_file_lock.
type FileLock struct {
	Start uint64
	End   uint64
	Type  uint32
	PID   uint32
}

// LkIn is struct fuse_lk_in.
type LkIn struct {
	Fh      uint64
	Owner   uint64
	Lk      FileLock
	LkFlags uint32
	Padding uint32
}

// LkOut is struct fuse_lk_out.
type LkOut struct{ Lk FileLock }

// AccessIn is struct fuse_access_in.
type AccessIn struct {
	Mask    uint32
	Padding uint32
}

// InitIn is struct fuse_init_in (7.36+ layout; older kernels send only the first 16 bytes).
type InitIn struct {
	Major        uint32
	Minor        uint32
	MaxReadahead uint32
	Flags        uint32
	Flags2       uint32
	Unused       [11]uint32
}

// InitOut is struct fuse_init_out.
type InitOut struct {
	Major               uint32
	Minor               uint32
	MaxReadahead        uint32
	Flags               uint32
	MaxBackground       uint16
	CongestionThreshold uint16
	MaxWrite            uint32
	TimeGran            uint32
	MaxPages            uint16
	MapAlignment        uint16
	Flags2              uint32
	Unused              [7]uint32
}

// InterruptIn is struct fuse_interrupt_in.
type InterruptIn struct{ Unique uint64 }

// FallocateIn is struct fuse_fallocate_in.
type FallocateIn struct {
	Fh      uint64
	Offset  uint64
	Length  uint64
	Mode    uint32
	Padding uint32
}

// LseekIn is struct fuse_lseek_in.
type LseekIn struct {
	Fh      uint64
	Offset  uint64
	Whence  uint32
	Padding uint32
}

// LseekOut is struct fuse_lseek_out.
type LseekOut struct{ Offset uint64 }

// CopyFileRangeIn is struct fuse_copy_file_range_in.
type CopyFileRangeIn struct {
	FhIn      uint64
	OffIn     uint64
	NodeIDOut uint64
	FhOut     uint64
	OffOut    uint64
	Len       uint64
	Flags     uint64
}

// SyncfsIn is struct fuse_syncfs_in.
type SyncfsIn struct{ Padding uint64 }

// Dirent is the fixed part of struct fuse_dirent; the name follows, padded to 8 bytes.
type Dirent struct {
	Ino     uint64
	Off     uint64
	Namelen uint32
	Type    uint32
}

// SecctxEntry is struct fuse_secctx; a NUL-terminated name and the context bytes follow.
type SecctxEntry struct {
	Size    uint32
	Padding uint32
}

// ExtHeader is struct fuse_ext_header.
type ExtHeader struct {
	Size uint32
	Type uint32
}
