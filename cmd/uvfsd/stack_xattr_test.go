package main

// Full-stack tests of SETXATTR, GETXATTR, LISTXATTR and REMOVEXATTR, and of the requests that
// concern the session: INTERRUPT, DESTROY and unknown opcodes.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/fuse/fusetest"
)

// setxattrArgs is SETXATTR's argument struct as a kernel without SETXATTR_EXT sends it: only size
// and flags.
func setxattrArgs(size, flags uint32) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint32(b, size)
	binary.LittleEndian.PutUint32(b[4:], flags)
	return b
}

func (s *stack) setxattr(node uint64, name string, value []byte, flags uint32) error {
	_, err := s.c.Do(fuse.OpSetxattr, node, 0, setxattrArgs(uint32(len(value)), flags), fusetest.Name(name), value)
	return err
}

func (s *stack) getxattr(node uint64, name string, size uint32) ([]byte, error) {
	out := max(int(size), 8)
	return s.c.Do(fuse.OpGetxattr, node, out, fusetest.Bytes(&fuse.GetxattrIn{Size: size}), fusetest.Name(name))
}

func (s *stack) listxattr(node uint64, size uint32) ([]byte, error) {
	return s.c.Do(fuse.OpListxattr, node, max(int(size), 8), fusetest.Bytes(&fuse.GetxattrIn{Size: size}))
}

func TestStackXattr(t *testing.T) {
	s := newStack(t, withFlags("--xattr"))
	s.writeHost("file", nil)
	node := s.lookup(fuse.RootID, "file").NodeID
	value := []byte("some value\x00with a NUL")
	if err := s.setxattr(node, "user.test", value, 0); err != nil {
		t.Fatalf("SETXATTR: %v", err)
	}
	buf := make([]byte, 100)
	n, err := unix.Lgetxattr(s.host("file"), "user.test", buf)
	if err != nil || !bytes.Equal(buf[:n], value) {
		t.Fatalf("host xattr: %q, %v", buf[:n], err)
	}
	wantErrno(t, "SETXATTR XATTR_CREATE of an existing name", s.setxattr(node, "user.test", []byte("x"), unix.XATTR_CREATE), syscall.EEXIST)
	wantErrno(t, "SETXATTR XATTR_REPLACE of a missing name", s.setxattr(node, "user.other", []byte("x"), unix.XATTR_REPLACE), syscall.ENODATA)
	if err := unix.Lsetxattr(s.host("file"), "user.host", []byte("from the host"), 0); err != nil {
		t.Fatal(err)
	}

	// GETXATTR with size 0 answers the length; with room, the value; with too little, ERANGE.
	p, err := s.getxattr(node, "user.test", 0)
	if err != nil {
		t.Fatalf("GETXATTR size 0: %v", err)
	}
	if o, err := fusetest.Decode[fuse.GetxattrOut](p); err != nil || o.Size != uint32(len(value)) {
		t.Fatalf("GETXATTR size 0 answered %v, %v; want %d", o, err, len(value))
	}
	if got, err := s.getxattr(node, "user.test", 100); err != nil || !bytes.Equal(got, value) {
		t.Fatalf("GETXATTR: %q, %v", got, err)
	}
	if got, err := s.getxattr(node, "user.host", 100); err != nil || string(got) != "from the host" {
		t.Fatalf("GETXATTR of a host-set attribute: %q, %v", got, err)
	}
	_, err = s.getxattr(node, "user.test", 3)
	wantErrno(t, "GETXATTR into 3 bytes", err, syscall.ERANGE)
	_, err = s.getxattr(node, "user.missing", 100)
	wantErrno(t, "GETXATTR of a missing name", err, syscall.ENODATA)

	// LISTXATTR: both names, NUL-separated, compared with the host's own list.
	hostList := make([]byte, 1000)
	hn, err := unix.Llistxattr(s.host("file"), hostList)
	if err != nil {
		t.Fatal(err)
	}
	p, err = s.listxattr(node, 0)
	if err != nil {
		t.Fatalf("LISTXATTR size 0: %v", err)
	}
	if o, _ := fusetest.Decode[fuse.GetxattrOut](p); o == nil || o.Size != uint32(hn) {
		t.Fatalf("LISTXATTR size 0 answered %v; the host list has %d bytes", o, hn)
	}
	list, err := s.listxattr(node, uint32(hn)) // exactly the room needed
	if err != nil || !bytes.Equal(list, hostList[:hn]) {
		t.Fatalf("LISTXATTR: %q, %v; host list %q", list, err, hostList[:hn])
	}
	if !bytes.Contains(list, []byte("user.test\x00")) || !bytes.Contains(list, []byte("user.host\x00")) {
		t.Errorf("LISTXATTR %q lacks user.test or user.host", list)
	}
	_, err = s.listxattr(node, 4)
	wantErrno(t, "LISTXATTR into 4 bytes", err, syscall.ERANGE)

	if _, err := s.c.Do(fuse.OpRemovexattr, node, 0, fusetest.Name("user.test")); err != nil {
		t.Fatalf("REMOVEXATTR: %v", err)
	}
	if _, err := unix.Lgetxattr(s.host("file"), "user.test", buf); err != unix.ENODATA {
		t.Fatalf("host still has user.test after REMOVEXATTR: %v", err)
	}
	_, err = s.c.Do(fuse.OpRemovexattr, node, 0, fusetest.Name("user.test"))
	wantErrno(t, "second REMOVEXATTR", err, syscall.ENODATA)

	// A value longer than what the request carries is refused, and nothing is set.
	_, err = s.c.Do(fuse.OpSetxattr, node, 0, setxattrArgs(1000, 0), fusetest.Name("user.short"), []byte("abc"))
	wantErrno(t, "SETXATTR whose size exceeds the request", err, syscall.E2BIG)
	if _, err := unix.Lgetxattr(s.host("file"), "user.short", buf); err != unix.ENODATA {
		t.Errorf("a refused SETXATTR set user.short: %v", err)
	}
}

func TestStackXattrOffWithoutFlag(t *testing.T) {
	s := newStack(t)
	s.writeHost("file", nil)
	if err := unix.Lsetxattr(s.host("file"), "user.host", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	node := s.lookup(fuse.RootID, "file").NodeID
	wantErrno(t, "SETXATTR without --xattr", s.setxattr(node, "user.test", []byte("v"), 0), syscall.ENOSYS)
	_, err := s.getxattr(node, "user.host", 100)
	wantErrno(t, "GETXATTR without --xattr", err, syscall.ENOSYS)
	_, err = s.listxattr(node, 100)
	wantErrno(t, "LISTXATTR without --xattr", err, syscall.ENOSYS)
	_, err = s.c.Do(fuse.OpRemovexattr, node, 0, fusetest.Name("user.host"))
	wantErrno(t, "REMOVEXATTR without --xattr", err, syscall.ENOSYS)
	if _, err := unix.Lgetxattr(s.host("file"), "user.host", make([]byte, 8)); err != nil {
		t.Errorf("host attribute gone after a refused REMOVEXATTR: %v", err)
	}
}

func TestStackInterruptHasNoReply(t *testing.T) {
	s := newStack(t)
	oh, payload, err := s.c.Raw(fuse.OpInterrupt, 0, 0, nil, fusetest.Bytes(&fuse.InterruptIn{Unique: 12345}))
	if err != nil {
		t.Fatalf("INTERRUPT: %v", err)
	}
	if oh != (fuse.OutHeader{}) || payload != nil {
		t.Fatalf("INTERRUPT was answered: %+v %x", oh, payload)
	}
	s.alive()
}

func TestStackDestroy(t *testing.T) {
	s := newStack(t)
	s.writeHost("file", []byte("data"))
	o := s.create(fuse.RootID, "made", unix.O_RDWR|unix.O_CREAT, 0o644)
	node := s.lookup(fuse.RootID, "file").NodeID
	if n := daemonFDs(t, s.host("made")); n.opens != 1 {
		t.Fatalf("daemon holds %d open fds to the created file, want 1", n.opens)
	}
	if _, err := s.c.Do(fuse.OpDestroy, 0, 0); err != nil {
		t.Fatalf("DESTROY: %v", err)
	}
	for _, path := range []string{s.host("made"), s.host("file")} {
		if n := daemonFDs(t, path); n != (fdCount{}) {
			t.Errorf("daemon still holds fds %+v to %s after DESTROY", n, path)
		}
	}
	// Until the next INIT the session is gone.
	_, err := s.getattr(fuse.RootID)
	wantErrno(t, "GETATTR after DESTROY", err, syscall.EIO)
	if _, err := s.c.Init(0); err != nil {
		t.Fatalf("INIT after DESTROY: %v", err)
	}
	s.alive()
	_, err = s.getattr(node)
	wantErrno(t, "GETATTR of a node from before DESTROY", err, syscall.EBADF)
	_, err = s.read(o.Entry.NodeID, o.Open.Fh, 0, 4)
	wantErrno(t, "READ through a handle from before DESTROY", err, syscall.EBADF)
	if e := s.lookup(fuse.RootID, "file"); e.Attr.Ino != s.lstat("file").Ino {
		t.Errorf("LOOKUP after the new INIT: ino %d", e.Attr.Ino)
	}
}

func TestStackUnknownOpcodes(t *testing.T) {
	s := newStack(t)
	for _, op := range []fuse.Opcode{0, 7, 19, fuse.OpBmap, fuse.OpIoctl, fuse.OpPoll, fuse.OpSetupMapping,
		fuse.OpRemoveMapping, 53, 4096, 1<<31 + 5, 0xffffffff} {
		_, err := s.c.Do(op, fuse.RootID, 64, make([]byte, 64))
		wantErrno(t, fmt.Sprintf("opcode %d (%s)", op, fuse.OpName(op)), err, syscall.ENOSYS)
	}
	s.alive()
}
