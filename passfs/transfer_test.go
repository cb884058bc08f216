package passfs

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
)

// A 1 MiB WRITE arrives as one guest buffer per page (plus a partial one): it must go to the
// host in one pwritev, not one per few pages (each call re-walks the page-cache folio's blocks).
func TestGuestPagesMoveInOneCall(t *testing.T) {
	page := make([]byte, 4096)
	bufs := make([][]byte, 257)
	for i := range bufs {
		bufs[i] = page
	}
	var iov [maxIovecs]unix.Iovec
	n, size, used := fillIovecs(iov[:], bufs, 1<<20)
	if n != 256 || size != 1<<20 || used != 256 {
		t.Fatalf("fillIovecs took %d buffers (%d used) of %d bytes for a 1 MiB request of 4 KiB pages; want all 256 in one call", n, used, size)
	}
}

// Requests with more buffers than one call takes are split, empty buffers skipped, and the limit
// honoured, both ways.
func TestTransferSplitsManyBuffers(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	count := maxIovecs*2 + 7
	var want []byte
	src := make([][]byte, count)
	for i := range src {
		if i%5 == 3 {
			src[i] = nil // empty buffers take no iovec
			continue
		}
		src[i] = []byte{byte(i), byte(i >> 8)}
		want = append(want, src[i]...)
	}
	limit := len(want) - 3
	n, e := transfer(int(f.Fd()), src, limit, 10, unix.SYS_PWRITEV)
	if e != 0 || n != limit {
		t.Fatalf("pwritev transfer: %d bytes, errno %v; want %d", n, e, limit)
	}
	got, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[10:], want[:limit]) || len(got) != 10+limit {
		t.Fatalf("file holds %d bytes, not the %d written in order", len(got)-10, limit)
	}

	dst := make([][]byte, count)
	for i := range dst {
		dst[i] = make([]byte, 2)
	}
	n, e = transfer(int(f.Fd()), dst, 2*count, 10, unix.SYS_PREADV)
	if e != 0 || n != limit {
		t.Fatalf("preadv transfer: %d bytes, errno %v; want %d (end of file)", n, e, limit)
	}
	if read := bytes.Join(dst, nil)[:n]; !bytes.Equal(read, want[:limit]) {
		t.Fatal("preadv transfer read the bytes out of order")
	}
}

// A request with few buffers (a 4 KiB READ: one page, or two when unaligned) moves through the
// small iovec array, the rest through the full one; both ways move the same bytes, in one call
// each, and allocate nothing.
func TestTransferFewAndManyBuffers(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data := make([]byte, 128<<10)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	for _, nbufs := range []int{1, 2, smallIovecs, smallIovecs + 1, 16} {
		dst := make([][]byte, nbufs)
		for i := range dst {
			dst[i] = make([]byte, 4096)
		}
		read := func() (int, fuse.Errno) { return transfer(int(f.Fd()), dst, nbufs*4096-5, 100, unix.SYS_PREADV) }
		n, e := read()
		if e != 0 || n != nbufs*4096-5 {
			t.Fatalf("%d buffers: %d bytes, errno %v", nbufs, n, e)
		}
		if got := bytes.Join(dst, nil)[:n]; !bytes.Equal(got, data[100:100+n]) {
			t.Fatalf("%d buffers: read the wrong bytes", nbufs)
		}
		if allocs := testing.AllocsPerRun(20, func() { read() }); allocs != 0 {
			t.Errorf("%d buffers: %.1f allocations per transfer", nbufs, allocs)
		}
	}
}

// BenchmarkTransfer4KiB is a 4 KiB READ's host side: one preadv into one guest page.
func BenchmarkTransfer4KiB(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "f"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(make([]byte, 8192), 0); err != nil {
		b.Fatal(err)
	}
	dst := [][]byte{make([]byte, 4096)}
	for b.Loop() {
		if n, e := transfer(int(f.Fd()), dst, 4096, 0, unix.SYS_PREADV); n != 4096 || e != 0 {
			b.Fatal(n, e)
		}
	}
}
