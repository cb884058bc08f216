package main

// Full-stack tests of the directory operations: OPENDIR, READDIR, READDIRPLUS, RELEASEDIR,
// FSYNCDIR.

import (
	"fmt"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/fuse/fusetest"
)

// Directory entry types (d_type).
const (
	dtFifo = 1
	dtDir  = 4
	dtReg  = 8
	dtLnk  = 10
)

// populate makes n entries of mixed types in the host directory rel and returns name → d_type,
// including "." and "..".
func (s *stack) populate(rel string, n int) map[string]uint32 {
	s.t.Helper()
	want := map[string]uint32{".": dtDir, "..": dtDir}
	for i := 0; i < n; i++ {
		// Names of varying length exercise the 8-byte padding of entries.
		name := fmt.Sprintf("e%d-%s", i, "xxxxxxxxxxxxxxxxxxxxxxxxx"[:i%23])
		path := s.host(rel + "/" + name)
		var err error
		switch i % 4 {
		case 0:
			err = os.WriteFile(path, []byte(name), 0o644)
			want[name] = dtReg
		case 1:
			err = os.Mkdir(path, 0o755)
			want[name] = dtDir
		case 2:
			err = os.Symlink("target-"+name, path)
			want[name] = dtLnk
		case 3:
			err = unix.Mkfifo(path, 0o644)
			want[name] = dtFifo
		}
		if err != nil {
			s.t.Fatal(err)
		}
	}
	return want
}

func (s *stack) opendir(node uint64) uint64 {
	s.t.Helper()
	o, err := fusetest.Call[fuse.OpenOut](s.c, fuse.OpOpendir, node, fusetest.Bytes(&fuse.OpenIn{Flags: unix.O_RDONLY}))
	if err != nil {
		s.t.Fatalf("OPENDIR %d: %v", node, err)
	}
	return o.Fh
}

// readdirAll reads a directory handle from offset in replies of size bytes until an empty reply.
func (s *stack) readdirAll(node, fh, offset uint64, size int, plus bool) []fusetest.Dirent {
	s.t.Helper()
	op := fuse.OpReaddir
	if plus {
		op = fuse.OpReaddirplus
	}
	var all []fusetest.Dirent
	for calls := 0; ; calls++ {
		if calls > 10000 {
			s.t.Fatal("READDIR never returned an empty reply")
		}
		in := fuse.ReadIn{Fh: fh, Offset: offset, Size: uint32(size)}
		b, err := s.c.Do(op, node, size, fusetest.Bytes(&in))
		if err != nil {
			s.t.Fatalf("%s at offset %d: %v", fuse.OpName(op), offset, err)
		}
		if len(b) > size {
			s.t.Fatalf("%s reply of %d bytes for a %d-byte request", fuse.OpName(op), len(b), size)
		}
		ents, err := fusetest.ParseDirents(b, plus)
		if err != nil {
			s.t.Fatalf("%s reply: %v", fuse.OpName(op), err)
		}
		if len(ents) == 0 {
			return all
		}
		all = append(all, ents...)
		offset = ents[len(ents)-1].Off
	}
}

// checkListing compares a listing with the expected names and types: each name exactly once.
func (s *stack) checkListing(what string, got []fusetest.Dirent, want map[string]uint32) {
	s.t.Helper()
	seen := map[string]bool{}
	for _, d := range got {
		typ, ok := want[d.Name]
		switch {
		case !ok:
			s.t.Fatalf("%s: unexpected entry %q", what, d.Name)
		case seen[d.Name]:
			s.t.Fatalf("%s: %q listed twice", what, d.Name)
		case d.Type != typ:
			s.t.Fatalf("%s: %q has d_type %d, want %d", what, d.Name, d.Type, typ)
		}
		seen[d.Name] = true
	}
	if len(seen) != len(want) {
		s.t.Fatalf("%s: %d of %d entries listed", what, len(seen), len(want))
	}
}

func TestStackReaddirplus500(t *testing.T) {
	s := newStack(t)
	if err := os.Mkdir(s.host("big"), 0o755); err != nil {
		t.Fatal(err)
	}
	want := s.populate("big", 500)
	dir := s.lookup(fuse.RootID, "big").NodeID
	fh := s.opendir(dir)
	all := s.readdirAll(dir, fh, 0, 4096, true)
	s.checkListing("READDIRPLUS", all, want)
	for _, d := range all {
		if d.Name == "." || d.Name == ".." {
			if d.Entry.NodeID != 0 {
				t.Errorf("READDIRPLUS gave %q node id %d; the kernel expects none", d.Name, d.Entry.NodeID)
			}
			continue
		}
		st := s.lstat("big/" + d.Name)
		if d.Entry.NodeID == 0 || d.Entry.Attr.Ino != st.Ino || d.Ino != st.Ino || d.Entry.Attr.Mode != st.Mode {
			t.Fatalf("READDIRPLUS entry %q: node %d ino %d/%d mode %o; host ino %d mode %o",
				d.Name, d.Entry.NodeID, d.Ino, d.Entry.Attr.Ino, d.Entry.Attr.Mode, st.Ino, st.Mode)
		}
	}
	// The entries count as lookups: their node ids work, and agree with LOOKUP.
	pick := all[len(all)/2]
	if pick.Name == "." || pick.Name == ".." {
		pick = all[len(all)/2+1]
	}
	if e := s.lookup(dir, pick.Name); e.NodeID != pick.Entry.NodeID {
		t.Errorf("LOOKUP %q gave node %d, READDIRPLUS gave %d", pick.Name, e.NodeID, pick.Entry.NodeID)
	}
	if a, err := s.getattr(pick.Entry.NodeID); err != nil || a.Attr.Ino != pick.Ino {
		t.Errorf("GETATTR of a READDIRPLUS node: %v, %v", a, err)
	}

	// Offsets resume: a new handle started at the offset of entry 250 lists exactly the rest.
	fh2 := s.opendir(dir)
	rest := s.readdirAll(dir, fh2, all[249].Off, 4096, true)
	if len(rest) != len(all)-250 {
		t.Fatalf("resuming at entry 250's offset gave %d entries, want %d", len(rest), len(all)-250)
	}
	for i, d := range rest {
		if d.Name != all[250+i].Name || d.Off != all[250+i].Off {
			t.Fatalf("resumed entry %d is %q (off %d), first pass had %q (off %d)", i, d.Name, d.Off, all[250+i].Name, all[250+i].Off)
		}
	}
	// Seeking back to the start on the same handle lists everything again, in small replies.
	s.checkListing("READDIRPLUS rewound", s.readdirAll(dir, fh2, 0, 1024, true), want)

	for _, h := range []uint64{fh, fh2} {
		if _, err := s.c.Do(fuse.OpReleasedir, dir, 0, fusetest.Bytes(&fuse.ReleaseIn{Fh: h})); err != nil {
			t.Fatalf("RELEASEDIR: %v", err)
		}
	}
	_, err := s.c.Do(fuse.OpReaddirplus, dir, 4096, fusetest.Bytes(&fuse.ReadIn{Fh: fh, Size: 4096}))
	wantErrno(t, "READDIRPLUS on a released handle", err, syscall.EBADF)
}

func TestStackReaddir(t *testing.T) {
	s := newStack(t)
	want := s.populate(".", 500)
	// The daemon may keep the share open for itself (a mount fd for file handles): count on top.
	base := daemonFDs(t, s.dir).opens
	fh := s.opendir(fuse.RootID)
	if n := daemonFDs(t, s.dir); n.opens != base+1 {
		t.Errorf("daemon holds %d open fds to the share directory, want %d (one more for the handle)", n.opens, base+1)
	}
	all := s.readdirAll(fuse.RootID, fh, 0, 4096, false)
	s.checkListing("READDIR", all, want)
	// The listing follows the host: a new name appears on a new handle.
	s.writeHost("late", nil)
	want["late"] = dtReg
	fh2 := s.opendir(fuse.RootID)
	s.checkListing("READDIR after a host change", s.readdirAll(fuse.RootID, fh2, 0, 8192, false), want)
	if _, err := s.c.Do(fuse.OpFsyncdir, fuse.RootID, 0, fusetest.Bytes(&fuse.FsyncIn{Fh: fh})); err != nil {
		t.Fatalf("FSYNCDIR: %v", err)
	}
	_, err := s.c.Do(fuse.OpFsyncdir, fuse.RootID, 0, fusetest.Bytes(&fuse.FsyncIn{Fh: 4242}))
	wantErrno(t, "FSYNCDIR of an unknown handle", err, syscall.EBADF)
	for _, h := range []uint64{fh, fh2} {
		if _, err := s.c.Do(fuse.OpReleasedir, fuse.RootID, 0, fusetest.Bytes(&fuse.ReleaseIn{Fh: h})); err != nil {
			t.Fatalf("RELEASEDIR: %v", err)
		}
	}
	if n := daemonFDs(t, s.dir); n.opens != base {
		t.Errorf("daemon holds %d open fds to the share after RELEASEDIR, want %d as before OPENDIR", n.opens, base)
	}
	_, err = s.c.Do(fuse.OpReleasedir, fuse.RootID, 0, fusetest.Bytes(&fuse.ReleaseIn{Fh: fh}))
	wantErrno(t, "second RELEASEDIR", err, syscall.EBADF)

	// A directory handle is no file handle, and a file is no directory.
	s.writeHost("plain", nil)
	_, err = fusetest.Call[fuse.OpenOut](s.c, fuse.OpOpendir, s.lookup(fuse.RootID, "plain").NodeID, fusetest.Bytes(&fuse.OpenIn{}))
	wantErrno(t, "OPENDIR of a file", err, syscall.ENOTDIR)
}

// With --no-opendir and the 6.1 guest's real flags the daemon agrees to NO_OPENDIR_SUPPORT:
// OPENDIR answers ENOSYS (so the guest stops sending OPENDIR and RELEASEDIR) and READDIR,
// READDIRPLUS and FSYNCDIR work with fh 0, resuming at any offset.
func TestStackNoOpendir(t *testing.T) {
	s := newStack(t, withGuestFlags(linux61Flags), withFlags("--no-opendir"))
	if uint64(s.init.Flags)&fuse.CapNoOpendirSupport == 0 {
		t.Fatalf("INIT flags %#x: NO_OPENDIR_SUPPORT not agreed", s.init.Flags)
	}
	if err := os.Mkdir(s.host("big"), 0o755); err != nil {
		t.Fatal(err)
	}
	want := s.populate("big", 500)
	dir := s.lookup(fuse.RootID, "big").NodeID
	_, err := fusetest.Call[fuse.OpenOut](s.c, fuse.OpOpendir, dir, fusetest.Bytes(&fuse.OpenIn{Flags: unix.O_RDONLY}))
	wantErrno(t, "OPENDIR in no-opendir mode", err, syscall.ENOSYS)
	for _, plus := range []bool{false, true} {
		all := s.readdirAll(dir, 0, 0, 4096, plus)
		s.checkListing(fmt.Sprintf("READDIR plus=%v without a handle", plus), all, want)
		// Resume from the middle: the rest plus what was read before is the whole listing.
		mid := all[len(all)/2-1].Off
		rest := s.readdirAll(dir, 0, mid, 4096, plus)
		s.checkListing("READDIR resumed without a handle", append(all[:len(all)/2:len(all)/2], rest...), want)
	}
	if _, err := s.c.Do(fuse.OpFsyncdir, dir, 0, fusetest.Bytes(&fuse.FsyncIn{})); err != nil {
		t.Errorf("FSYNCDIR without a handle: %v", err)
	}
	file := s.lookup(dir, "e0-").NodeID // populate's first entry, a regular file
	_, err = s.c.Do(fuse.OpReaddir, file, 4096, fusetest.Bytes(&fuse.ReadIn{Size: 4096}))
	wantErrno(t, "READDIR of a regular file without a handle", err, syscall.ENOTDIR)
	// Handles are still honoured, and an unknown one is still refused.
	_, err = s.c.Do(fuse.OpReaddir, dir, 4096, fusetest.Bytes(&fuse.ReadIn{Fh: 777, Size: 4096}))
	wantErrno(t, "READDIR with an unknown handle", err, syscall.EBADF)
}

// OPENDIR handles by default; cache=never promises the guest caches nothing, so it keeps them even
// with --no-opendir (no-opendir mode would make the guest cache listings).
func TestStackOpendirHandles(t *testing.T) {
	for _, flags := range [][]string{nil, {"--cache=never", "--no-opendir"}, {"--no-opendir=false"}} {
		s := newStack(t, withGuestFlags(linux61Flags), withFlags(flags...))
		if uint64(s.init.Flags)&fuse.CapNoOpendirSupport != 0 {
			t.Errorf("flags %q: INIT flags %#x: NO_OPENDIR_SUPPORT agreed", flags, s.init.Flags)
		}
		if fh := s.opendir(fuse.RootID); fh == 0 {
			t.Errorf("OPENDIR with flags %q gave no handle", flags)
		}
	}
}
