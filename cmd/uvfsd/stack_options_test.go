package main

// Full-stack tests of flags that change how requests are served: several request queues, a
// thread pool, --readonly and --cache.

import (
	"bytes"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/fuse/fusetest"
	"github.com/uvfsd/uvfsd/vhost/frontend"
)

func TestStackTwoRequestQueues(t *testing.T) {
	s := newStack(t, withFlags("--num-request-queues=2"), withFrontend(func(o *frontend.Options) { o.Queues = 3 }))
	second := &fusetest.Client{T: frontend.Transport{F: s.f, Queue: 2}, UID: s.c.UID, GID: s.c.GID}
	o, err := fusetest.Call[createOut](second, fuse.OpCreate, fuse.RootID,
		fusetest.Bytes(&fuse.CreateIn{Flags: unix.O_RDWR | unix.O_CREAT, Mode: 0o644}), fusetest.Name("q2"))
	if err != nil {
		t.Fatalf("CREATE on the second request queue: %v", err)
	}
	// Nodes and handles are per device, not per queue.
	if n, err := s.write(o.Entry.NodeID, o.Open.Fh, 0, []byte("from queue 1")); err != nil || n != 12 {
		t.Fatalf("WRITE on queue 1 through a handle from queue 2: %d, %v", n, err)
	}
	if b, _ := os.ReadFile(s.host("q2")); string(b) != "from queue 1" {
		t.Errorf("host file holds %q", b)
	}
	s.release(o.Entry.NodeID, o.Open.Fh)
}

// TestStackConcurrentRequests runs many clients at once on one queue served by a thread pool
// (run it with -race): every reply must match its own request.
func TestStackConcurrentRequests(t *testing.T) {
	s := newStack(t, withFlags("--thread-pool-size=4"))
	const workers, rounds = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &fusetest.Client{T: s.c.T, UID: s.c.UID, GID: s.c.GID}
			name := fmt.Sprintf("w%d", w)
			o, err := fusetest.Call[createOut](c, fuse.OpCreate, fuse.RootID,
				fusetest.Bytes(&fuse.CreateIn{Flags: unix.O_RDWR | unix.O_CREAT, Mode: 0o644}), fusetest.Name(name))
			if err != nil {
				errs <- fmt.Errorf("%s: CREATE: %w", name, err)
				return
			}
			data := randomBytes(10000+w, uint64(w))
			for r := 0; r < rounds; r++ {
				in := fuse.WriteIn{Fh: o.Open.Fh, Offset: uint64(r), Size: uint32(len(data))}
				if _, err := c.Do(fuse.OpWrite, o.Entry.NodeID, 8, fusetest.Bytes(&in), data); err != nil {
					errs <- fmt.Errorf("%s: WRITE: %w", name, err)
					return
				}
				got, err := c.Do(fuse.OpRead, o.Entry.NodeID, len(data), fusetest.Bytes(&fuse.ReadIn{Fh: o.Open.Fh, Offset: uint64(r), Size: uint32(len(data))}))
				if err != nil || !bytes.Equal(got, data) {
					errs <- fmt.Errorf("%s: READ back round %d: %d bytes, %v", name, r, len(got), err)
					return
				}
				e, err := c.Lookup(fuse.RootID, name)
				if err != nil || e.NodeID != o.Entry.NodeID {
					errs <- fmt.Errorf("%s: LOOKUP: %v, %v", name, e, err)
					return
				}
				c.Do(fuse.OpForget, e.NodeID, 0, fusetest.Bytes(&fuse.ForgetIn{Nlookup: 1}))
			}
			if _, err := c.Do(fuse.OpRelease, o.Entry.NodeID, 0, fusetest.Bytes(&fuse.ReleaseIn{Fh: o.Open.Fh})); err != nil {
				errs <- fmt.Errorf("%s: RELEASE: %w", name, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for w := 0; w < workers; w++ {
		name := fmt.Sprintf("w%d", w)
		want := randomBytes(10000+w, uint64(w))
		got, err := os.ReadFile(s.host(name))
		if err != nil || len(got) != rounds-1+len(want) || !bytes.Equal(got[rounds-1:], want) {
			t.Errorf("%s on the host: %d bytes, %v", name, len(got), err)
		}
	}
}

func TestStackReadonly(t *testing.T) {
	s := newStack(t, withFlags("--readonly"))
	s.writeHost("file", []byte("original"))
	node := s.lookup(fuse.RootID, "file").NodeID
	_, err := fusetest.Call[fuse.OpenOut](s.c, fuse.OpOpen, node, fusetest.Bytes(&fuse.OpenIn{Flags: unix.O_RDWR}))
	wantErrno(t, "OPEN O_RDWR on a read-only share", err, syscall.EROFS)
	_, err = fusetest.Call[fuse.EntryOut](s.c, fuse.OpMkdir, fuse.RootID, fusetest.Bytes(&fuse.MkdirIn{Mode: 0o755}), fusetest.Name("dir"))
	wantErrno(t, "MKDIR on a read-only share", err, syscall.EROFS)
	_, err = fusetest.Call[fuse.AttrOut](s.c, fuse.OpSetattr, node, fusetest.Bytes(&fuse.SetattrIn{Valid: fuse.FattrSize}))
	wantErrno(t, "SETATTR size on a read-only share", err, syscall.EROFS)
	_, err = s.c.Do(fuse.OpUnlink, fuse.RootID, 0, fusetest.Name("file"))
	wantErrno(t, "UNLINK on a read-only share", err, syscall.EROFS)
	s.notExist("dir")
	if b, _ := os.ReadFile(s.host("file")); string(b) != "original" {
		t.Errorf("host file holds %q", b)
	}
	fh := s.open(node, unix.O_RDONLY)
	if got, err := s.read(node, fh, 0, 100); err != nil || string(got) != "original" {
		t.Errorf("READ on a read-only share: %q, %v", got, err)
	}
	s.release(node, fh)
}

func TestStackCacheNever(t *testing.T) {
	s := newStack(t, withFlags("--cache=never"))
	o := s.create(fuse.RootID, "f", unix.O_RDWR|unix.O_CREAT, 0o644)
	if o.Entry.EntryValid != 0 || o.Entry.AttrValid != 0 || o.Open.OpenFlags&fuse.FopenDirectIO == 0 {
		t.Errorf("cache=never: timeouts %d/%d, open flags %#x; want 0/0 and DIRECT_IO",
			o.Entry.EntryValid, o.Entry.AttrValid, o.Open.OpenFlags)
	}
	s.release(o.Entry.NodeID, o.Open.Fh)
}
