package passfs_test

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/passfs"
)

// TestSubmountInodeCollision serves two tmpfs mounts whose files have the same inode numbers
// (each tmpfs counts its own). passfs must keep them apart (its keys include the mount id) even
// when submounts are not announced and the guest sees equal (st_dev, st_ino); without the
// announcement it says so, once, in its log.
func TestSubmountInodeCollision(t *testing.T) {
	needRoot(t)
	for _, announce := range []bool{false, true} {
		t.Run(fmt.Sprintf("announce=%v", announce), func(t *testing.T) {
			var mu sync.Mutex
			var logs []string
			e := newEnv(t, func(o *passfs.Options) {
				o.AnnounceSubmounts = announce
				o.Logf = func(format string, a ...any) {
					mu.Lock()
					defer mu.Unlock()
					logs = append(logs, fmt.Sprintf(format, a...))
				}
			})
			var ids []fuse.EntryOut
			for _, sub := range []string{"sub1", "sub2"} {
				if err := os.Mkdir(e.host(sub), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := unix.Mount("tmpfs", e.host(sub), "tmpfs", 0, "size=1m"); err != nil {
					t.Skipf("cannot mount a tmpfs: %v", err)
				}
				t.Cleanup(func() { unix.Unmount(e.host(sub), unix.MNT_DETACH) })
				e.writeHost(sub+"/f", "in "+sub)
				dir := e.lookup(fuse.RootID, sub)
				ids = append(ids, e.lookup(dir.NodeID, "f"))
			}
			if ids[0].Attr.Ino != ids[1].Attr.Ino {
				t.Skipf("the two tmpfs files have inode numbers %d and %d: no collision to test", ids[0].Attr.Ino, ids[1].Attr.Ino)
			}
			if ids[0].NodeID == ids[1].NodeID {
				t.Fatalf("files on two mounts with inode %d got the same node id %d", ids[0].Attr.Ino, ids[0].NodeID)
			}
			for i, sub := range []string{"sub1", "sub2"} {
				fh := e.open(ids[i].NodeID, unix.O_RDONLY)
				if got := e.read(fh, 0, 64); got != "in "+sub {
					t.Errorf("%s/f reads %q", sub, got)
				}
				e.release(fh)
			}
			mu.Lock()
			defer mu.Unlock()
			warnings := 0
			for _, l := range logs {
				if strings.Contains(l, "--announce-submounts") {
					warnings++
				}
			}
			if want := map[bool]int{false: 1, true: 0}[announce]; warnings != want {
				t.Errorf("%d submount warnings, want %d; log: %q", warnings, want, logs)
			}
		})
	}
}
