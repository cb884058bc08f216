package fuse_test

import (
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/fuse/fusetest"
)

// FuzzServe feeds arbitrary bytes, split at arbitrary points, to the decoder: it must answer or stay
// silent, never panic, and never claim to have written more than the writable area.
func FuzzServe(f *testing.F) {
	h := fuse.InHeader{Len: 42, Opcode: fuse.OpLookup, Unique: 1, NodeID: 1}
	f.Add(append(fusetest.Bytes(&h), 'a', 0), uint8(40), uint16(200))
	w := fuse.InHeader{Len: 90, Opcode: fuse.OpWrite, Unique: 2, NodeID: 2}
	wi := fuse.WriteIn{Size: 10}
	f.Add(append(append(fusetest.Bytes(&w), fusetest.Bytes(&wi)...), make([]byte, 10)...), uint8(50), uint16(16))
	// MKDIR with a security context and a group: seeds for the extension parser.
	ext := append(fusetest.ExtSecctx("security.selinux", []byte("label\x00")), fusetest.ExtSuppGroup(5)...)
	mk := fusetest.Bytes(&fuse.MkdirIn{Mode: 0o755})
	m := fuse.InHeader{Len: uint32(40 + len(mk) + 2 + len(ext)), Opcode: fuse.OpMkdir, Unique: 3, NodeID: 1, TotalExtlen: uint16(len(ext) / 8)}
	f.Add(append(append(append(fusetest.Bytes(&m), mk...), 'd', 0), ext...), uint8(40), uint16(160))
	f.Fuzz(func(t *testing.T, data []byte, split uint8, outSize uint16) {
		s := fuse.NewServer(&fuzzFS{}, fuse.Options{Want: fuse.DefaultWant})
		c := &fusetest.Client{T: fusetest.ServerTransport{S: s}}
		if _, err := c.Init(0); err != nil {
			t.Fatal(err)
		}
		cut := min(int(split), len(data))
		in := [][]byte{data[:cut], data[cut:]}
		out := make([]byte, outSize)
		done := make(chanCompleter, 1)
		s.Serve(in, [][]byte{out[:min(16, len(out))], out[min(16, len(out)):]}, done)
		select {
		case n := <-done:
			if int(n) > len(out) {
				t.Fatalf("wrote %d bytes into %d", n, len(out))
			}
		case <-time.After(5 * time.Second):
			t.Fatal("request never completed")
		}
	})
}

// fuzzFS succeeds at everything without touching anything.
type fuzzFS struct{}

func (fuzzFS) Init(*fuse.InitInfo)                                           {}
func (fuzzFS) Destroy()                                                      {}
func (fuzzFS) Lookup(*fuse.Context, fuse.CString, *fuse.EntryOut) fuse.Errno { return 0 }
func (fuzzFS) Forget(uint64, uint64)                                         {}
func (fuzzFS) Statx(*fuse.Context, *fuse.StatxIn, *fuse.StatxOut) fuse.Errno { return 0 }
func (fuzzFS) Getattr(*fuse.Context, *fuse.GetattrIn, *fuse.AttrOut) fuse.Errno {
	return 0
}
func (fuzzFS) Setattr(*fuse.Context, *fuse.SetattrIn, *fuse.AttrOut) fuse.Errno {
	return 0
}
func (fuzzFS) Readlink(_ *fuse.Context, b []byte) (int, fuse.Errno) { return copy(b, "target"), 0 }
func (fuzzFS) Symlink(*fuse.Context, fuse.CString, fuse.CString, *fuse.EntryOut) fuse.Errno {
	return 0
}
func (fuzzFS) Mknod(*fuse.Context, *fuse.MknodIn, fuse.CString, *fuse.EntryOut) fuse.Errno {
	return 0
}
func (fuzzFS) Mkdir(*fuse.Context, *fuse.MkdirIn, fuse.CString, *fuse.EntryOut) fuse.Errno {
	return 0
}
func (fuzzFS) Unlink(*fuse.Context, fuse.CString) fuse.Errno { return 0 }
func (fuzzFS) Rmdir(*fuse.Context, fuse.CString) fuse.Errno  { return 0 }
func (fuzzFS) Rename(*fuse.Context, uint64, uint32, fuse.CString, fuse.CString) fuse.Errno {
	return 0
}
func (fuzzFS) Link(*fuse.Context, *fuse.LinkIn, fuse.CString, *fuse.EntryOut) fuse.Errno {
	return 0
}
func (fuzzFS) Open(*fuse.Context, *fuse.OpenIn, *fuse.OpenOut) fuse.Errno { return 0 }
func (fuzzFS) Create(*fuse.Context, *fuse.CreateIn, fuse.CString, *fuse.EntryOut, *fuse.OpenOut) fuse.Errno {
	return 0
}
func (fuzzFS) Tmpfile(*fuse.Context, *fuse.CreateIn, *fuse.EntryOut, *fuse.OpenOut) fuse.Errno {
	return 0
}
func (fuzzFS) Read(_ *fuse.Context, in *fuse.ReadIn, dst [][]byte) (int, fuse.Errno) {
	n := 0
	for _, d := range dst {
		n += len(d)
	}
	return n, 0
}
func (fuzzFS) Write(_ *fuse.Context, in *fuse.WriteIn, src [][]byte) (int, fuse.Errno) {
	return int(in.Size), 0
}
func (fuzzFS) Statfs(*fuse.Context, *fuse.StatfsOut) fuse.Errno  { return 0 }
func (fuzzFS) Release(*fuse.Context, *fuse.ReleaseIn) fuse.Errno { return 0 }
func (fuzzFS) Flush(*fuse.Context, *fuse.FlushIn) fuse.Errno     { return 0 }
func (fuzzFS) Fsync(*fuse.Context, *fuse.FsyncIn) fuse.Errno     { return 0 }
func (fuzzFS) Opendir(*fuse.Context, *fuse.OpenIn, *fuse.OpenOut) fuse.Errno {
	return 0
}
func (fuzzFS) Readdir(_ *fuse.Context, _ *fuse.ReadIn, _ bool, b *fuse.DirBuffer) fuse.Errno {
	b.Add(1, 1, 4, []byte("x"), nil)
	return 0
}
func (fuzzFS) Releasedir(*fuse.Context, *fuse.ReleaseIn) fuse.Errno          { return 0 }
func (fuzzFS) Fsyncdir(*fuse.Context, *fuse.FsyncIn) fuse.Errno              { return 0 }
func (fuzzFS) Access(*fuse.Context, *fuse.AccessIn) fuse.Errno               { return 0 }
func (fuzzFS) Fallocate(*fuse.Context, *fuse.FallocateIn) fuse.Errno         { return 0 }
func (fuzzFS) Lseek(*fuse.Context, *fuse.LseekIn, *fuse.LseekOut) fuse.Errno { return 0 }
func (fuzzFS) CopyFileRange(*fuse.Context, *fuse.CopyFileRangeIn, *fuse.WriteOut) fuse.Errno {
	return 0
}
func (fuzzFS) Syncfs(*fuse.Context, *fuse.SyncfsIn) fuse.Errno         { return 0 }
func (fuzzFS) Getlk(*fuse.Context, *fuse.LkIn, *fuse.LkOut) fuse.Errno { return 0 }
func (fuzzFS) Setlk(*fuse.Context, *fuse.LkIn, bool) fuse.Errno        { return 0 }
func (fuzzFS) Setxattr(*fuse.Context, *fuse.SetxattrIn, fuse.CString, []byte) fuse.Errno {
	return 0
}
func (fuzzFS) Getxattr(_ *fuse.Context, _ fuse.CString, size uint32, dst []byte) (int, fuse.Errno) {
	return int(size), 0
}
func (fuzzFS) Listxattr(_ *fuse.Context, size uint32, dst []byte) (int, fuse.Errno) {
	return int(size), 0
}
func (fuzzFS) Removexattr(*fuse.Context, fuse.CString) fuse.Errno { return 0 }

type chanCompleter chan uint32

func (c chanCompleter) Complete(n uint32) { c <- n }
