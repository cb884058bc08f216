package fuse

import "syscall"

// init answers FUSE_INIT: it agrees on the protocol version and on the capabilities that both the
// kernel offers and the server wants, and tells the file system what was agreed.
func (s *Server) init(r *request) Errno {
	// Kernels before 7.36 send only the first 16 bytes of fuse_init_in; the rest reads as zero.
	var a InitIn
	copy(asBytes(&a), r.args)
	if a.Major < KernelVersion {
		s.logf("guest speaks FUSE %d.%d; uvfsd needs 7.%d or newer", a.Major, a.Minor, MinMinorVersion)
		return syscall.EPROTO
	}
	o := out[InitOut](r)
	o.Major, o.Minor = KernelVersion, KernelMinorVersion
	if a.Major > KernelVersion {
		// The kernel will ask again with our major version.
		return OK
	}
	if a.Minor < MinMinorVersion {
		s.logf("guest speaks FUSE 7.%d; uvfsd needs 7.%d or newer (a Linux 5.4+ guest)", a.Minor, MinMinorVersion)
		return syscall.EPROTO
	}
	o.Minor = min(a.Minor, KernelMinorVersion)
	offered := uint64(a.Flags)
	if offered&CapInitExt != 0 {
		offered |= uint64(a.Flags2) << 32
	}
	agreed := offered & s.opts.Want
	if agreed&CapNoOpenSupport != 0 {
		// Without OPEN nobody would truncate on open(O_TRUNC): the guest must send SETATTR.
		agreed &^= CapAtomicOTrunc
	}
	if agreed&CapInitExt != 0 {
		o.Flags2 = uint32(agreed >> 32)
	} else {
		agreed &= 1<<32 - 1 // no flags2 to tell the kernel the high ones
	}
	o.MaxReadahead = a.MaxReadahead
	o.Flags = uint32(agreed)
	o.MaxBackground = s.opts.MaxBackground
	o.CongestionThreshold = s.opts.MaxBackground * 3 / 4
	o.MaxWrite = s.maxWrite
	o.TimeGran = 1
	if agreed&CapMaxPages != 0 {
		o.MaxPages = uint16((s.maxWrite + 4095) / 4096)
	}
	if s.inited.Load() {
		// An INIT without a DESTROY: the guest was reset (a hard reboot) and mounts afresh, so
		// what the old mount looked up and opened is forgotten first, as DESTROY would have.
		// The C virtiofsd does the same.
		s.logf("guest sent INIT again without DESTROY (a reset guest?): forgetting the old mount's nodes and handles")
		s.fs.Destroy()
	}
	if s.opts.Debugf != nil {
		s.opts.Debugf("INIT: the guest speaks FUSE 7.%d and offers %#x; agreed on 7.%d and %#x", a.Minor, offered, o.Minor, agreed)
	}
	info := InitInfo{Minor: o.Minor, Flags: agreed, MaxWrite: s.maxWrite}
	s.setxattrExt.Store(agreed&CapSetxattrExt != 0)
	s.fs.Init(&info)
	s.agreed.Store(&info)
	s.inited.Store(true)
	return OK
}
