package passfs_test

import (
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/passfs"
)

// migrated is a guest's view of a share before a live migration: a directory, a file open for
// reading, one open for appending, and a directory handle.
type migrated struct {
	dir, rfile, wfile uint64 // node ids
	rfh, wfh, dfh     uint64
}

func setUpMigration(t *testing.T, src *env) migrated {
	t.Helper()
	if err := os.Mkdir(src.host("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	src.writeHost("d/r", "read me")
	src.writeHost("d/w", "start\n")
	var m migrated
	m.dir = src.lookup(fuse.RootID, "d").NodeID
	m.rfile = src.lookup(m.dir, "r").NodeID
	m.wfile = src.lookup(m.dir, "w").NodeID
	m.rfh = src.open(m.rfile, syscall.O_RDONLY)
	m.wfh = src.open(m.wfile, syscall.O_WRONLY|syscall.O_APPEND)
	var out fuse.OpenOut
	if e := src.fs.Opendir(src.ctx(m.dir), &fuse.OpenIn{}, &out); e != 0 {
		t.Fatal(e)
	}
	m.dfh = out.Fh
	return m
}

func migrate(t *testing.T, src, dst *env) error {
	t.Helper()
	state, err := src.fs.SaveState()
	if err != nil {
		t.Fatalf("SaveState: %v", err)
	}
	return dst.fs.LoadState(state)
}

func TestMigrationKeepsNodesAndHandles(t *testing.T) {
	src := newEnv(t, nil)
	m := setUpMigration(t, src)
	dst := newEnvOn(t, src.dir, nil)
	if err := migrate(t, src, dst); err != nil {
		t.Fatalf("LoadState: %v", err)
	}
	if got := dst.read(m.rfh, 0, 100); got != "read me" {
		t.Errorf("read through the migrated handle: %q", got)
	}
	dst.write(m.wfh, 0, "appended\n") // O_APPEND: lands at the end whatever the offset
	if got := readHost(t, dst.host("d/w")); got != "start\nappended\n" {
		t.Errorf("host file after append: %q", got)
	}
	var attr fuse.AttrOut
	if e := dst.fs.Getattr(dst.ctx(m.rfile), &fuse.GetattrIn{}, &attr); e != 0 || attr.Attr.Size != 7 {
		t.Errorf("GETATTR of the migrated node: %v, size %d", e, attr.Attr.Size)
	}
	// A lookup of a known name finds the migrated node id, not a new one.
	if id := dst.lookup(m.dir, "r").NodeID; id != m.rfile {
		t.Errorf("lookup after migration: node %d, want %d", id, m.rfile)
	}
	// New nodes get ids the source never gave.
	dst.writeHost("d/new", "")
	if id := dst.lookup(m.dir, "new").NodeID; id <= m.wfile {
		t.Errorf("a new node got id %d, which the source may have given", id)
	}
	if fh := dst.open(m.rfile, syscall.O_RDONLY); fh <= m.dfh {
		t.Errorf("a new handle got fh %d, which the source may have given", fh)
	}
}

// A listing the guest had half read goes on from its offset after the migration.
func TestMigrationContinuesListing(t *testing.T) {
	src := newEnv(t, nil)
	m := setUpMigration(t, src)
	for i := range 40 {
		src.writeHost("d/f"+strings.Repeat("x", i), "")
	}
	var buf fuse.DirBuffer
	buf.Reset(200, false)
	if e := src.fs.Readdir(src.ctx(m.dir), &fuse.ReadIn{Fh: m.dfh, Size: 200}, false, &buf); e != 0 {
		t.Fatal(e)
	}
	first := parseDirBuffer(t, buf.Bytes(), false)
	if len(first) == 0 || len(first) > 10 {
		t.Fatalf("first reply has %d entries", len(first))
	}
	dst := newEnvOn(t, src.dir, nil)
	if err := migrate(t, src, dst); err != nil {
		t.Fatal(err)
	}
	rest := readAll(t, dst, m.dfh, 4096, false, first[len(first)-1].off)
	seen := map[string]int{}
	for _, d := range append(first, rest...) {
		seen[d.name]++
	}
	if len(seen) != 44 { // . .. r w and 40 files
		t.Errorf("listing across the migration has %d names, want 44: %v", len(seen), seen)
	}
	for name, n := range seen {
		if n != 1 {
			t.Errorf("%q listed %d times", name, n)
		}
	}
}

func TestMigrationHostRename(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      passfs.MigrationOptions
		wantErr   bool
		wantLost  bool // the renamed file's node is unknown on the destination
		wantFound bool // the renamed file is served from its new name
	}{
		{name: "default aborts", wantErr: true},
		{name: "guest-error loses the node", opts: passfs.MigrationOptions{GuestError: true}, wantLost: true},
		{name: "confirm-paths finds it", opts: passfs.MigrationOptions{ConfirmPaths: true}, wantFound: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newEnv(t, func(o *passfs.Options) { o.Migration = tc.opts })
			m := setUpMigration(t, src)
			if err := os.Rename(src.host("d/r"), src.host("moved")); err != nil {
				t.Fatal(err)
			}
			dst := newEnvOn(t, src.dir, func(o *passfs.Options) { o.Migration = tc.opts })
			err := migrate(t, src, dst)
			if (err != nil) != tc.wantErr {
				t.Fatalf("LoadState: %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), "d/r") {
					t.Errorf("the error does not name the path: %v", err)
				}
				// A failed load leaves nothing behind: a later attempt starts afresh.
				if err := migrate(t, src, dst); err == nil {
					t.Error("a second attempt succeeded although the file is still gone")
				}
				return
			}
			var attr fuse.AttrOut
			e := dst.fs.Getattr(dst.ctx(m.rfile), &fuse.GetattrIn{}, &attr)
			if tc.wantLost && e == 0 {
				t.Error("the lost node still answers GETATTR")
			}
			if tc.wantFound {
				if e != 0 {
					t.Fatalf("GETATTR of the renamed node: %v", e)
				}
				if got := dst.read(m.rfh, 0, 100); got != "read me" {
					t.Errorf("read through the renamed file's handle: %q", got)
				}
			}
			// Either way the other files migrated.
			if got := readHost(t, dst.host("d/w")); got != "start\n" {
				t.Errorf("host file: %q", got)
			}
			dst.write(m.wfh, 0, "x")
		})
	}
}

func TestMigrationVerifyHandles(t *testing.T) {
	opts := passfs.MigrationOptions{VerifyHandles: true}
	src := newEnv(t, func(o *passfs.Options) { o.Migration = opts })
	setUpMigration(t, src)
	// Replace d/r by another file under the same name: only the handle tells them apart.
	if err := os.Remove(src.host("d/r")); err != nil {
		t.Fatal(err)
	}
	src.writeHost("d/r", "an impostor")
	state, err := src.fs.SaveState()
	if err != nil {
		t.Fatal(err)
	}
	dst := newEnvOn(t, src.dir, func(o *passfs.Options) { o.Migration = opts })
	if err := dst.fs.LoadState(state); err == nil || !strings.Contains(err.Error(), "file handles differ") {
		t.Fatalf("LoadState with a replaced file: %v, want a file handle mismatch", err)
	}
	plain := newEnvOn(t, src.dir, nil)
	if err := plain.fs.LoadState(state); err != nil {
		t.Errorf("without the flag the destination takes the path: %v", err)
	}
}

func TestMigrationStateIsChecked(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/f", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", dir+"/out"); err != nil {
		t.Fatal(err)
	}
	for _, state := range []string{
		`not json`,
		`{"Version":99}`,
		`{"Version":1,"Nodes":[{"ID":1,"Type":32768,"Path":"f"}]}`,
		`{"Version":1,"Nodes":[{"ID":5,"Type":32768,"Path":"../etc/passwd"}]}`,
		`{"Version":1,"Nodes":[{"ID":5,"Type":32768,"Path":"/etc/passwd"}]}`,
		`{"Version":1,"Nodes":[{"ID":5,"Type":32768,"Path":"out/passwd"}]}`,
		`{"Version":1,"Nodes":[{"ID":5,"Type":16384,"Path":"f"}]}`,
		`{"Version":1,"Nodes":[{"ID":5,"Type":32768,"Path":"f"},{"ID":5,"Type":32768,"Path":"f"}]}`,
		`{"Version":1,"Nodes":[{"ID":5,"Type":32768,"Path":"f"},{"ID":6,"Type":32768,"Path":"f"}]}`,
		`{"Version":1,"Handles":[{"Fh":3,"Node":77}]}`,
		`{"Version":1,"Nodes":[{"ID":5,"Type":32768,"Path":"f"}],"Handles":[{"Fh":3,"Node":5,"Dir":true}]}`,
		`{"Version":1,"Nodes":[{"ID":5,"Type":32768,"Path":"f"}],"Handles":[{"Fh":0,"Node":5}]}`,
	} {
		e := newEnvOn(t, dir, nil)
		if err := e.fs.LoadState([]byte(state)); err == nil {
			t.Errorf("LoadState(%s) accepted it", state)
		}
		// Nothing stays behind from a refused state.
		var out fuse.EntryOut
		if errno := e.fs.Lookup(e.ctx(fuse.RootID), cs("f"), &out); errno != 0 || out.NodeID != 2 {
			t.Errorf("after LoadState(%s): lookup gave node %d (%v), want a fresh table", state, out.NodeID, errno)
		}
	}
}

// In file-handles mode a file renamed on the host is found by its handle (needs root).
func TestMigrationFileHandles(t *testing.T) {
	needRoot(t)
	opts := passfs.MigrationOptions{FileHandles: true}
	src := newEnv(t, func(o *passfs.Options) { o.Migration = opts })
	m := setUpMigration(t, src)
	if err := os.Rename(src.host("d/r"), src.host("moved")); err != nil {
		t.Fatal(err)
	}
	dst := newEnvOn(t, src.dir, func(o *passfs.Options) { o.Migration = opts })
	if err := migrate(t, src, dst); err != nil {
		t.Fatalf("LoadState: %v", err)
	}
	if got := dst.read(m.rfh, 0, 100); got != "read me" {
		t.Errorf("read through the renamed file's handle: %q", got)
	}
}
