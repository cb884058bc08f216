package fuse_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"runtime"
	"syscall"
	"testing"
	"unsafe"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/fuse/fusetest"
)

// fakeFS answers every operation with ENOSYS except the ones a test sets up, and records names.
type fakeFS struct {
	fuse.FileSystem // nil: calling an unset method panics, which the tests would notice
	info            fuse.InitInfo
	lookups         []string
	data            []byte
	written         []byte
	ctx             fuse.Context
	destroyed       int
}

func (f *fakeFS) Init(info *fuse.InitInfo) { f.info = *info }
func (f *fakeFS) Destroy()                 { f.destroyed++ }
func (f *fakeFS) Forget(uint64, uint64)    {}

func (f *fakeFS) Lookup(ctx *fuse.Context, name fuse.CString, out *fuse.EntryOut) fuse.Errno {
	f.lookups = append(f.lookups, name.String())
	f.ctx = *ctx
	if name.String() == "missing" {
		return syscall.ENOENT
	}
	out.NodeID = 42
	out.Attr.Ino = 7
	return fuse.OK
}

func (f *fakeFS) Read(ctx *fuse.Context, in *fuse.ReadIn, dst [][]byte) (int, fuse.Errno) {
	src := f.data[min(int(in.Offset), len(f.data)):]
	n := 0
	for _, d := range dst {
		n += copy(d, src[n:])
	}
	return n, fuse.OK
}

func (f *fakeFS) Write(ctx *fuse.Context, in *fuse.WriteIn, src [][]byte) (int, fuse.Errno) {
	f.written = f.written[:0]
	for _, s := range src {
		f.written = append(f.written, s...)
	}
	return len(f.written), fuse.OK
}

func (f *fakeFS) Mkdir(ctx *fuse.Context, in *fuse.MkdirIn, name fuse.CString, out *fuse.EntryOut) fuse.Errno {
	f.ctx = *ctx
	f.lookups = append(f.lookups, name.String())
	out.NodeID = 43
	return fuse.OK
}

func (f *fakeFS) Readdir(ctx *fuse.Context, in *fuse.ReadIn, plus bool, buf *fuse.DirBuffer) fuse.Errno {
	for i := int(in.Offset); i < 100; i++ {
		name := []byte{'f', byte('0' + i/10), byte('0' + i%10)}
		if !buf.Fits(len(name)) {
			break
		}
		var e fuse.EntryOut
		e.NodeID = uint64(1000 + i)
		buf.Add(uint64(i+10), uint64(i+1), 8, name, &e)
	}
	return fuse.OK
}

func (f *fakeFS) Getxattr(ctx *fuse.Context, name fuse.CString, size uint32, dst []byte) (int, fuse.Errno) {
	v := []byte("value")
	if name.String() == "user.big" {
		v = f.written
	}
	if size == 0 {
		return len(v), fuse.OK
	}
	if int(size) < len(v) {
		return 0, syscall.ERANGE
	}
	return copy(dst, v), fuse.OK
}

// Setxattr records the value; user.big's value is then what Getxattr returns.
func (f *fakeFS) Setxattr(ctx *fuse.Context, in *fuse.SetxattrIn, name fuse.CString, value []byte) fuse.Errno {
	f.written = append(f.written[:0], value...)
	return fuse.OK
}

func newClient(t *testing.T, fs *fakeFS) *fusetest.Client {
	t.Helper()
	s := fuse.NewServer(fs, fuse.Options{Want: fuse.DefaultWant})
	c := &fusetest.Client{T: fusetest.ServerTransport{S: s}, UID: 1000, GID: 100}
	if _, err := c.Init(0); err != nil {
		t.Fatalf("INIT: %v", err)
	}
	return c
}

func TestWireSizesMatchKernel(t *testing.T) {
	sizes := map[string][2]uintptr{
		"InHeader":        {unsafe.Sizeof(fuse.InHeader{}), 40},
		"OutHeader":       {unsafe.Sizeof(fuse.OutHeader{}), 16},
		"Attr":            {unsafe.Sizeof(fuse.Attr{}), 88},
		"EntryOut":        {unsafe.Sizeof(fuse.EntryOut{}), 128},
		"AttrOut":         {unsafe.Sizeof(fuse.AttrOut{}), 104},
		"SetattrIn":       {unsafe.Sizeof(fuse.SetattrIn{}), 88},
		"InitIn":          {unsafe.Sizeof(fuse.InitIn{}), 64},
		"InitOut":         {unsafe.Sizeof(fuse.InitOut{}), 64},
		"ReadIn":          {unsafe.Sizeof(fuse.ReadIn{}), 40},
		"WriteIn":         {unsafe.Sizeof(fuse.WriteIn{}), 40},
		"LkIn":            {unsafe.Sizeof(fuse.LkIn{}), 48},
		"StatfsOut":       {unsafe.Sizeof(fuse.StatfsOut{}), 80},
		"CopyFileRangeIn": {unsafe.Sizeof(fuse.CopyFileRangeIn{}), 56},
		"ReleaseIn":       {unsafe.Sizeof(fuse.ReleaseIn{}), 24},
		"FallocateIn":     {unsafe.Sizeof(fuse.FallocateIn{}), 32},
		"LseekIn":         {unsafe.Sizeof(fuse.LseekIn{}), 24},
		"Dirent":          {unsafe.Sizeof(fuse.Dirent{}), 24},
		"CreateIn":        {unsafe.Sizeof(fuse.CreateIn{}), 16},
		"OpenOut":         {unsafe.Sizeof(fuse.OpenOut{}), 16},
		"SetxattrIn":      {unsafe.Sizeof(fuse.SetxattrIn{}), 16},
		"StatxIn":         {unsafe.Sizeof(fuse.StatxIn{}), 24},
		"Statx":           {unsafe.Sizeof(fuse.Statx{}), 256},
		"StatxOut":        {unsafe.Sizeof(fuse.StatxOut{}), 288},
	}
	for name, s := range sizes {
		if s[0] != s[1] {
			t.Errorf("%s is %d bytes, the kernel's is %d", name, s[0], s[1])
		}
	}
}

func TestInitNegotiatesWithLinux61(t *testing.T) {
	fs := &fakeFS{}
	s := fuse.NewServer(fs, fuse.Options{Want: fuse.DefaultWant | fuse.CapWritebackCache})
	c := &fusetest.Client{T: fusetest.ServerTransport{S: s}}
	out, err := c.Init(0)
	if err != nil {
		t.Fatal(err)
	}
	if out.Major != 7 || out.Minor != 38 {
		t.Errorf("version %d.%d, want 7.38", out.Major, out.Minor)
	}
	if out.MaxWrite != 1<<20 || out.MaxPages != 256 {
		t.Errorf("max_write %d max_pages %d, want 1 MiB and 256", out.MaxWrite, out.MaxPages)
	}
	got := uint64(out.Flags) | uint64(out.Flags2)<<32
	for _, f := range []uint64{fuse.CapAsyncRead, fuse.CapParallelDirops, fuse.CapBigWrites, fuse.CapReaddirplus,
		fuse.CapWritebackCache, fuse.CapInitExt, fuse.CapMaxPages} {
		if got&f == 0 {
			t.Errorf("flag %#x not agreed (got %#x)", f, got)
		}
	}
	// The 6.1 guest does not offer CREATE_SUPP_GROUP (bit 34), so it must not be agreed.
	if got&fuse.CapCreateSuppGroup != 0 {
		t.Errorf("agreed CREATE_SUPP_GROUP that the guest did not offer")
	}
	if fs.info.Flags != got {
		t.Errorf("file system told %#x, guest told %#x", fs.info.Flags, got)
	}
	// An old kernel is refused with EPROTO.
	old := fuse.InitIn{Major: 7, Minor: 27}
	if _, err := fusetest.Call[fuse.InitOut](c, fuse.OpInit, 0, fusetest.Bytes(&old)); !errors.Is(err, syscall.EPROTO) {
		t.Errorf("INIT 7.27: %v, want EPROTO", err)
	}
}

func TestShortInitIsAnswered(t *testing.T) {
	s := fuse.NewServer(&fakeFS{}, fuse.Options{Want: fuse.DefaultWant})
	c := &fusetest.Client{T: fusetest.ServerTransport{S: s}}
	// A 7.31 kernel sends the 16-byte fuse_init_in of old.
	short := fusetest.Bytes(&fuse.InitIn{Major: 7, Minor: 31, Flags: uint32(fuse.CapAsyncRead)})[:16]
	out, err := fusetest.Call[fuse.InitOut](c, fuse.OpInit, 0, short)
	if err != nil || out.Minor != 31 || out.Flags != uint32(fuse.CapAsyncRead) {
		t.Fatalf("INIT 7.31: %v %+v", err, out)
	}
}

func TestRequestBeforeInitIsEIO(t *testing.T) {
	s := fuse.NewServer(&fakeFS{}, fuse.Options{})
	c := &fusetest.Client{T: fusetest.ServerTransport{S: s}}
	if _, err := c.Lookup(1, "x"); !errors.Is(err, syscall.EIO) {
		t.Fatalf("LOOKUP before INIT: %v, want EIO", err)
	}
}

func TestLookupPassesContextAndName(t *testing.T) {
	fs := &fakeFS{}
	c := newClient(t, fs)
	e, err := c.Lookup(1, "hello")
	if err != nil || e.NodeID != 42 {
		t.Fatalf("LOOKUP: %v %+v", err, e)
	}
	if fs.ctx.UID != 1000 || fs.ctx.GID != 100 || fs.ctx.NodeID != 1 {
		t.Errorf("context %+v", fs.ctx)
	}
	if _, err := c.Lookup(1, "missing"); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("LOOKUP missing: %v", err)
	}
}

func TestHostileNamesAreRefused(t *testing.T) {
	fs := &fakeFS{}
	c := newClient(t, fs)
	long := bytes.Repeat([]byte("a"), 256)
	cases := []struct {
		name string
		arg  []byte
		want syscall.Errno
	}{
		{"slash", []byte("a/b\x00"), syscall.EINVAL},
		{"empty", []byte("\x00"), syscall.EINVAL},
		{"no NUL", []byte("abc"), syscall.EINVAL},
		{"too long", append(long, 0), syscall.ENAMETOOLONG},
		{"too long, no NUL", long, syscall.ENAMETOOLONG},
	}
	for _, tc := range cases {
		if _, err := c.Do(fuse.OpLookup, 1, 128, tc.arg); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	mk := fuse.MkdirIn{Mode: 0o755}
	for _, n := range []string{".", ".."} {
		if _, err := c.Do(fuse.OpMkdir, 1, 128, fusetest.Bytes(&mk), fusetest.Name(n)); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("MKDIR %q: %v, want EINVAL", n, err)
		}
	}
	if len(fs.lookups) != 0 {
		t.Errorf("file system saw hostile names: %q", fs.lookups)
	}
	// 255 bytes is fine.
	if _, err := c.Lookup(1, string(long[:255])); err != nil {
		t.Errorf("255-byte name: %v", err)
	}
}

func TestMalformedRequests(t *testing.T) {
	fs := &fakeFS{}
	s := fuse.NewServer(fs, fuse.Options{Want: fuse.DefaultWant})
	tr := fusetest.ServerTransport{S: s}
	c := &fusetest.Client{T: tr}
	if _, err := c.Init(0); err != nil {
		t.Fatal(err)
	}
	hdr := func(h fuse.InHeader) []byte { return fusetest.Bytes(&h) }
	cases := []struct {
		name    string
		in      [][]byte
		wantErr int32 // 0: no reply expected
	}{
		{"empty", nil, 0},
		{"truncated header", [][]byte{make([]byte, 39)}, 0},
		{"len beyond buffers", [][]byte{hdr(fuse.InHeader{Len: 1000, Opcode: fuse.OpLookup, Unique: 9})}, -int32(syscall.EINVAL)},
		{"len below header", [][]byte{hdr(fuse.InHeader{Len: 3, Opcode: fuse.OpLookup, Unique: 9})}, -int32(syscall.EINVAL)},
		{"unknown opcode", [][]byte{hdr(fuse.InHeader{Len: 40, Opcode: 9999, Unique: 9})}, -int32(syscall.ENOSYS)},
		{"unsupported opcode", [][]byte{hdr(fuse.InHeader{Len: 40, Opcode: fuse.OpIoctl, Unique: 9})}, -int32(syscall.ENOSYS)},
		{"short struct", [][]byte{hdr(fuse.InHeader{Len: 44, Opcode: fuse.OpGetattr, Unique: 9}), make([]byte, 4)}, -int32(syscall.EINVAL)},
		{"huge ext", [][]byte{hdr(fuse.InHeader{Len: 48, Opcode: fuse.OpLookup, Unique: 9, TotalExtlen: 100}), make([]byte, 8)}, -int32(syscall.EINVAL)},
		{"bad ext", [][]byte{hdr(fuse.InHeader{Len: 56, Opcode: fuse.OpMkdir, Unique: 9, TotalExtlen: 1}), make([]byte, 8), make([]byte, 8)}, -int32(syscall.EINVAL)},
		{"write past payload", [][]byte{hdr(fuse.InHeader{Len: 80, Opcode: fuse.OpWrite, Unique: 9}), fusetest.Bytes(&fuse.WriteIn{Size: 4096})}, -int32(syscall.EINVAL)},
		{"read too big", [][]byte{hdr(fuse.InHeader{Len: 80, Opcode: fuse.OpRead, Unique: 9}), fusetest.Bytes(&fuse.ReadIn{Size: 1 << 30})}, -int32(syscall.EINVAL)},
		{"oversized request", [][]byte{hdr(fuse.InHeader{Len: 200 << 10, Opcode: fuse.OpSetxattr, Unique: 9}), make([]byte, 200<<10)}, -int32(syscall.E2BIG)},
		// FORGET and friends get no reply at all, even when they are malformed.
		{"forget with len beyond buffers", [][]byte{hdr(fuse.InHeader{Len: 1000, Opcode: fuse.OpForget, Unique: 9})}, 0},
		{"batch forget with len below header", [][]byte{hdr(fuse.InHeader{Len: 3, Opcode: fuse.OpBatchForget, Unique: 9})}, 0},
		{"interrupt with bad ext", [][]byte{hdr(fuse.InHeader{Len: 64, Opcode: fuse.OpInterrupt, Unique: 9, TotalExtlen: 1}), make([]byte, 16), make([]byte, 8)}, 0},
		// Security-context extensions (types 0..31) that lie about their sizes.
		{"secctx shorter than its entry", extReq(fuse.OpIoctl, ext32(8, 1)), -int32(syscall.EINVAL)},
		{"secctx entry longer than the rest", extReq(fuse.OpIoctl, ext32(24, 1, 9, 0, 0x0061, 0)), -int32(syscall.EINVAL)},
		{"secctx name without NUL", extReq(fuse.OpIoctl, ext32(24, 1, 0, 0, 0x61616161, 0x61616161)), -int32(syscall.EINVAL)},
		{"secctx of nr 31 with inner size 0", extReq(fuse.OpIoctl, ext32(24, 31, 0, 1, 0, 0)), -int32(syscall.ENOSYS)},
		{"ext size not a multiple of 8", extReq(fuse.OpIoctl, ext32(12, 1, 0, 0)), -int32(syscall.EINVAL)},
		{"ext size below its header", extReq(fuse.OpIoctl, ext32(4, 1)), -int32(syscall.EINVAL)},
		{"ext size beyond the area", extReq(fuse.OpIoctl, ext32(32, 1, 0, 0)), -int32(syscall.EINVAL)},
	}
	for _, tc := range cases {
		reply, err := tr.Call(tc.in, 256)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if tc.wantErr == 0 {
			if len(reply) != 0 {
				t.Errorf("%s: got a %d-byte reply, want none", tc.name, len(reply))
			}
			continue
		}
		oh, err := fusetest.Decode[fuse.OutHeader](reply)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if oh.Error != tc.wantErr || oh.Unique != 9 || int(oh.Len) != len(reply) {
			t.Errorf("%s: reply %+v (%d bytes), want error %d", tc.name, *oh, len(reply), tc.wantErr)
		}
	}
	// A reply that does not fit the writable area is ERANGE, not a short struct.
	reply, _ := tr.Call([][]byte{hdr(fuse.InHeader{Len: 42, Opcode: fuse.OpLookup, Unique: 5}), []byte("a\x00")}, 20)
	if oh, _ := fusetest.Decode[fuse.OutHeader](reply); oh == nil || oh.Error != -int32(syscall.ERANGE) {
		t.Errorf("reply into a small buffer: %+v", oh)
	}
}

// ext32 lays out uint32 words as a request extension area.
func ext32(words ...uint32) []byte {
	b := make([]byte, 4*len(words))
	for i, w := range words {
		binary.LittleEndian.PutUint32(b[4*i:], w)
	}
	return b
}

// extReq frames a request with no arguments and ext as its extension area, unique 9.
func extReq(op fuse.Opcode, ext []byte) [][]byte {
	h := fuse.InHeader{Len: uint32(40 + len(ext)), Opcode: op, Unique: 9, TotalExtlen: uint16(len(ext) / 8)}
	return [][]byte{fusetest.Bytes(&h), ext}
}

func TestReadWriteAcrossBuffers(t *testing.T) {
	fs := &fakeFS{data: bytes.Repeat([]byte("0123456789"), 1000)}
	c := newClient(t, fs)
	in := fuse.ReadIn{Offset: 5, Size: 4000}
	got, err := c.Do(fuse.OpRead, 2, 4000, fusetest.Bytes(&in))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, fs.data[5:4005]) {
		t.Errorf("READ returned %d bytes, not the file's", len(got))
	}
	payload := bytes.Repeat([]byte("abc"), 2000)
	w := fuse.WriteIn{Size: uint32(len(payload))}
	// The payload arrives split over three buffers, as guest pages would be.
	out, err := fusetest.Call[fuse.WriteOut](c, fuse.OpWrite, 2, fusetest.Bytes(&w), payload[:100], payload[100:5000], payload[5000:])
	if err != nil || out.Size != uint32(len(payload)) {
		t.Fatalf("WRITE: %v %+v", err, out)
	}
	if !bytes.Equal(fs.written, payload) {
		t.Errorf("file system got %d bytes, not the payload", len(fs.written))
	}
}

func TestReaddirFillsUpToSize(t *testing.T) {
	c := newClient(t, &fakeFS{})
	for _, plus := range []bool{false, true} {
		op := fuse.OpReaddir
		if plus {
			op = fuse.OpReaddirplus
		}
		in := fuse.ReadIn{Size: 1024}
		b, err := c.Do(op, 1, 1024, fusetest.Bytes(&in))
		if err != nil {
			t.Fatal(err)
		}
		ents, err := fusetest.ParseDirents(b, plus)
		if err != nil {
			t.Fatal(err)
		}
		per := 32
		if plus {
			per = 160
		}
		if len(ents) != 1024/per {
			t.Errorf("plus=%v: %d entries in 1024 bytes, want %d", plus, len(ents), 1024/per)
		}
		if ents[3].Name != "f03" || ents[3].Off != 4 || ents[3].Type != 8 || (plus && ents[3].Entry.NodeID != 1003) {
			t.Errorf("plus=%v: entry 3 is %+v", plus, ents[3])
		}
	}
}

func TestGetxattrSizeProbe(t *testing.T) {
	c := newClient(t, &fakeFS{})
	probe := fuse.GetxattrIn{}
	out, err := fusetest.Call[fuse.GetxattrOut](c, fuse.OpGetxattr, 1, fusetest.Bytes(&probe), fusetest.Name("user.x"))
	if err != nil || out.Size != 5 {
		t.Fatalf("size probe: %v %+v", err, out)
	}
	get := fuse.GetxattrIn{Size: 64}
	v, err := c.Do(fuse.OpGetxattr, 1, 64, fusetest.Bytes(&get), fusetest.Name("user.x"))
	if err != nil || string(v) != "value" {
		t.Fatalf("value: %v %q", err, v)
	}
}

// keptScratch is a Completer that keeps the server's scratch between requests, as a vhost request
// slot does.
type keptScratch struct {
	written uint32
	slot    any
}

func (k *keptScratch) Complete(w uint32) { k.written = w }
func (k *keptScratch) ScratchSlot() *any { return &k.slot }

// The request scratch starts small (a few KiB) and grows to the protocol's maxima on the first
// request that needs more: the largest SETXATTR and GETXATTR still work, before and after, through
// one kept scratch, and the next small request reuses the grown one without allocating.
func TestScratchGrowsForLargeXattrs(t *testing.T) {
	fs := &fakeFS{}
	s := fuse.NewServer(fs, fuse.Options{Want: fuse.DefaultWant})
	k := &keptScratch{}
	c := &fusetest.Client{T: fusetest.ServerTransport{S: s}}
	if _, err := c.Init(0); err != nil {
		t.Fatal(err)
	}
	serve := func(op fuse.Opcode, outSize int, args ...[]byte) ([]byte, int32) {
		t.Helper()
		in := c.Frame(op, 1, args...)
		out := [][]byte{make([]byte, 16+outSize)}
		s.Serve(in, out, k)
		oh := (*fuse.OutHeader)(unsafe.Pointer(&out[0][0]))
		if k.written < 16 || oh.Len != k.written {
			t.Fatalf("%s: wrote %d, header %+v", fuse.OpName(op), k.written, oh)
		}
		return out[0][16:k.written], oh.Error
	}
	for _, size := range []int{100, 4000, 5000, 65536, 200} {
		value := bytes.Repeat([]byte{byte(size)}, size)
		// Without SETXATTR_EXT (not offered by Init(0)) the kernel sends size and flags only.
		if _, e := serve(fuse.OpSetxattr, 0, binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, uint32(size)), 0), fusetest.Name("user.big"), value); e != 0 {
			t.Fatalf("SETXATTR of %d bytes: error %d", size, e)
		}
		if !bytes.Equal(fs.written, value) {
			t.Fatalf("SETXATTR of %d bytes passed %d bytes", size, len(fs.written))
		}
		got, e := serve(fuse.OpGetxattr, size, fusetest.Bytes(&fuse.GetxattrIn{Size: uint32(size)}), fusetest.Name("user.big"))
		if e != 0 || !bytes.Equal(got, value) {
			t.Fatalf("GETXATTR of %d bytes: error %d, %d bytes", size, e, len(got))
		}
	}
	// Beyond XATTR_SIZE_MAX: refused, as before the scratch grew.
	big := make([]byte, 65537)
	if _, e := serve(fuse.OpSetxattr, 0, binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, uint32(len(big))), 0), fusetest.Name("user.big"), big); e != -int32(syscall.E2BIG) {
		t.Fatalf("SETXATTR of %d bytes: error %d, want E2BIG", len(big), e)
	}
	in := c.Frame(fuse.OpGetxattr, 1, fusetest.Bytes(&fuse.GetxattrIn{Size: 64}), fusetest.Name("user.x"))
	out := [][]byte{make([]byte, 16+64)}
	if allocs := testing.AllocsPerRun(100, func() { s.Serve(in, out, k) }); allocs != 0 {
		t.Errorf("GETXATTR with a grown kept scratch allocates %.1f times", allocs)
	}
}

func TestSuppGroupExtension(t *testing.T) {
	fs := &fakeFS{}
	c := newClient(t, fs)
	mk := fuse.MkdirIn{Mode: 0o755}
	oh, _, err := c.Raw(fuse.OpMkdir, 1, 128, fusetest.ExtSuppGroup(777), fusetest.Bytes(&mk), fusetest.Name("d"))
	if err != nil || oh.Error != 0 {
		t.Fatalf("MKDIR: %v %+v", err, oh)
	}
	if !fs.ctx.HasSuppGID || fs.ctx.SuppGID != 777 {
		t.Errorf("context %+v, want supplementary group 777", fs.ctx)
	}
}

// Linux sends the security context of a new node (SECURITY_CTX, --security-label) as an extension
// whose header is the fuse_secctx_header: its type is the number of contexts.
func TestSecurityContextExtension(t *testing.T) {
	fs := &fakeFS{}
	c := newClient(t, fs)
	mk := fuse.MkdirIn{Mode: 0o755}
	label := []byte("system_u:object_r:tmp_t:s0\x00")
	ext := append(fusetest.ExtSecctx("security.selinux", label), fusetest.ExtSuppGroup(777)...)
	oh, _, err := c.Raw(fuse.OpMkdir, 1, 128, ext, fusetest.Bytes(&mk), fusetest.Name("d"))
	if err != nil || oh.Error != 0 {
		t.Fatalf("MKDIR: %v %+v", err, oh)
	}
	if fs.ctx.SecCtxName.String() != "security.selinux" || !bytes.Equal(fs.ctx.SecCtx, label) {
		t.Errorf("context %q = %q, want security.selinux = %q", fs.ctx.SecCtxName, fs.ctx.SecCtx, label)
	}
	if !fs.ctx.HasSuppGID || fs.ctx.SuppGID != 777 {
		t.Errorf("the group after the context: %+v", fs.ctx)
	}
	// A guest without a security module sends a header with no context.
	oh, _, err = c.Raw(fuse.OpMkdir, 1, 128, ext32(8, 0), fusetest.Bytes(&mk), fusetest.Name("e"))
	if err != nil || oh.Error != 0 || fs.ctx.SecCtx != nil || fs.ctx.SecCtxName != nil {
		t.Errorf("MKDIR with no context: %v %+v, context %+v", err, oh, fs.ctx)
	}
}

// A guest that is reset mounts again with INIT and no DESTROY: the old mount's nodes are dropped as
// DESTROY would drop them.
func TestInitAgainForgetsTheOldMount(t *testing.T) {
	fs := &fakeFS{}
	c := newClient(t, fs)
	if _, err := c.Init(0); err != nil {
		t.Fatal(err)
	}
	if fs.destroyed != 1 {
		t.Errorf("INIT again: Destroy called %d times, want 1", fs.destroyed)
	}
	if _, err := c.Do(fuse.OpDestroy, 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Init(0); err != nil {
		t.Fatal(err)
	}
	if fs.destroyed != 2 {
		t.Errorf("INIT after DESTROY: Destroy called %d times in all, want 2", fs.destroyed)
	}
}

// Capabilities above bit 31 travel in flags2, which exists only with INIT_EXT: a server that does
// not want INIT_EXT cannot agree on them, whatever the kernel offers.
func TestHighCapabilitiesNeedInitExt(t *testing.T) {
	fs := &fakeFS{}
	s := fuse.NewServer(fs, fuse.Options{Want: fuse.CapAsyncRead | fuse.CapCreateSuppGroup})
	c := &fusetest.Client{T: fusetest.ServerTransport{S: s}}
	out, err := c.Init(fuse.CapAsyncRead | fuse.CapInitExt | fuse.CapCreateSuppGroup)
	if err != nil {
		t.Fatal(err)
	}
	if fs.info.Flags != fuse.CapAsyncRead || out.Flags != uint32(fuse.CapAsyncRead) || out.Flags2 != 0 {
		t.Errorf("agreed %#x, told the kernel %#x/%#x; want only ASYNC_READ", fs.info.Flags, out.Flags, out.Flags2)
	}
}

func TestServeAllocatesNothing(t *testing.T) {
	fs := &fakeFS{data: make([]byte, 8192)}
	s := fuse.NewServer(fs, fuse.Options{Want: fuse.DefaultWant})
	c := &fusetest.Client{T: fusetest.ServerTransport{S: s}}
	if _, err := c.Init(0); err != nil {
		t.Fatal(err)
	}
	h := fuse.InHeader{Len: 80, Opcode: fuse.OpRead, Unique: 1, NodeID: 2}
	rd := fuse.ReadIn{Size: 4096}
	in := [][]byte{fusetest.Bytes(&h), fusetest.Bytes(&rd)}
	out := [][]byte{make([]byte, 16), make([]byte, 4096)}
	var done nopCompleter
	allocs := testing.AllocsPerRun(1000, func() { s.Serve(in, out, &done) })
	if allocs != 0 {
		t.Errorf("READ allocates %.1f times per request", allocs)
	}
	if done != 16+4096 {
		t.Errorf("READ wrote %d bytes", done)
	}
}

// A 1 MiB READ spans 257 guest buffers; serving it must not allocate either, even after a garbage
// collection (request scratch is kept on a free list, not in a sync.Pool).
func TestServeLargeReadAllocatesNothing(t *testing.T) {
	fs := &fakeFS{data: make([]byte, 1<<20)}
	s := fuse.NewServer(fs, fuse.Options{Want: fuse.DefaultWant})
	c := &fusetest.Client{T: fusetest.ServerTransport{S: s}}
	if _, err := c.Init(0); err != nil {
		t.Fatal(err)
	}
	h := fuse.InHeader{Len: 80, Opcode: fuse.OpRead, Unique: 1, NodeID: 2}
	rd := fuse.ReadIn{Size: 1 << 20}
	in := [][]byte{fusetest.Bytes(&h), fusetest.Bytes(&rd)}
	out := [][]byte{make([]byte, 16)}
	for i := 0; i < 256; i++ {
		out = append(out, make([]byte, 4096))
	}
	var done nopCompleter
	s.Serve(in, out, &done)
	allocs := testing.AllocsPerRun(100, func() {
		runtime.GC()
		s.Serve(in, out, &done)
	})
	if allocs != 0 {
		t.Errorf("1 MiB READ allocates %.1f times per request", allocs)
	}
	if done != 16+1<<20 {
		t.Errorf("READ wrote %d bytes", done)
	}
}

type nopCompleter uint32

func (n *nopCompleter) Complete(w uint32) { *n = nopCompleter(w) }

func TestRequestCountsCountDispatchedOpcodes(t *testing.T) {
	fs := &fakeFS{}
	s := fuse.NewServer(fs, fuse.Options{Want: fuse.DefaultWant})
	c := &fusetest.Client{T: fusetest.ServerTransport{S: s}, UID: 1000, GID: 100}
	if _, err := c.Init(0); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		c.Do(fuse.OpLookup, fuse.RootID, 128, fusetest.Name("x"))
	}
	c.Do(fuse.Opcode(4000), fuse.RootID, 0) // unknown: ENOSYS, not counted and no panic
	got := s.RequestCounts()
	if got["INIT"] != 1 || got["LOOKUP"] != 3 || len(got) != 2 {
		t.Fatalf("RequestCounts() = %v, want INIT=1 LOOKUP=3", got)
	}
}

// TestInitNegotiatesWithLinux612 answers the INIT of a Linux 6.12 guest (FUSE 7.41, flags seen
// from the real guest) with 7.41, and TestOpcodesOfLinux612AreNamed checks that every opcode it may
// send is served or answered ENOSYS under its name.
func TestInitNegotiatesWithLinux612(t *testing.T) {
	fs := &fakeFS{}
	want := fuse.DefaultWant | fuse.CapDirectIOAllowMmap
	s := fuse.NewServer(fs, fuse.Options{Want: want})
	c := &fusetest.Client{T: fusetest.ServerTransport{S: s}}
	var offered uint64 = 0x1ff7bfffffb
	in := fuse.InitIn{Major: 7, Minor: 41, MaxReadahead: 128 << 10, Flags: uint32(offered), Flags2: uint32(offered >> 32)}
	out, err := fusetest.Call[fuse.InitOut](c, fuse.OpInit, 0, fusetest.Bytes(&in))
	if err != nil {
		t.Fatal(err)
	}
	if out.Major != 7 || out.Minor != 41 {
		t.Errorf("version %d.%d, want 7.41", out.Major, out.Minor)
	}
	got := uint64(out.Flags) | uint64(out.Flags2)<<32
	if got != offered&want {
		t.Errorf("agreed %#x, want %#x", got, offered&want)
	}
	if got&fuse.CapDirectIOAllowMmap == 0 {
		t.Errorf("DIRECT_IO_ALLOW_MMAP not agreed")
	}
	newer := fuse.InitIn{Major: 7, Minor: 45, Flags: uint32(fuse.CapAsyncRead)}
	if out, err := fusetest.Call[fuse.InitOut](c, fuse.OpInit, 0, fusetest.Bytes(&newer)); err != nil || out.Minor != fuse.KernelMinorVersion {
		t.Errorf("a 7.45 guest: %+v, %v; want 7.%d", out, err, fuse.KernelMinorVersion)
	}
}

func TestOpcodesOfLinux612AreNamed(t *testing.T) {
	for op := fuse.OpLookup; op <= fuse.OpStatx; op++ {
		if op == 7 || op == 19 { // never assigned (FUSE_LINK is 13, 19 was never used)
			continue
		}
		if name := fuse.OpName(op); name == "UNKNOWN" {
			t.Errorf("opcode %d has no name: answer it ENOSYS under its name or serve it", op)
		}
	}
}
