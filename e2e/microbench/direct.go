package main

// The same work as each FUSE request, done with direct syscalls on the host:
// the limit a passthrough daemon can approach. Names are NUL-terminated byte
// slices passed to raw syscalls so the loop itself neither allocates nor
// copies paths.

import (
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// directFixture holds O_PATH fds of the fixture's directories.
type directFixture struct {
	base, newdir int
	root         string

	mu   sync.Mutex
	kept []int // fds the workers' operations opened, closed with the fixture
}

// open opens name under the fixture for a worker's operation; close closes it.
func (d *directFixture) open(name string, flags int) (int, error) {
	fd, err := openat(d.base, cstr(name), flags|unix.O_CLOEXEC, 0)
	if err == nil {
		d.mu.Lock()
		d.kept = append(d.kept, fd)
		d.mu.Unlock()
	}
	return fd, err
}

func openDirectFixture(share string) (*directFixture, error) {
	d := &directFixture{root: filepath.Join(share, fixtureDir)}
	var err error
	if d.base, err = unix.Open(d.root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
		return nil, fmt.Errorf("open fixture: %w", err)
	}
	if d.newdir, err = unix.Open(filepath.Join(d.root, createDir), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
		return nil, fmt.Errorf("open fixture: %w", err)
	}
	return d, nil
}

func (d *directFixture) close() {
	unix.Close(d.base)
	unix.Close(d.newdir)
	for _, fd := range d.kept {
		unix.Close(fd)
	}
}

func cstr(s string) []byte { return append([]byte(s), 0) }

func openat(dirfd int, name []byte, flags int, mode uint32) (int, error) {
	fd, _, errno := unix.Syscall6(unix.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(&name[0])), uintptr(flags), uintptr(mode), 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

func fstatat(dirfd int, name *byte, st *unix.Stat_t, flags int) error {
	_, _, errno := unix.Syscall6(unix.SYS_NEWFSTATAT, uintptr(dirfd), uintptr(unsafe.Pointer(name)), uintptr(unsafe.Pointer(st)), uintptr(flags), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

var empty = []byte{0}

// openStatClose opens name under dirfd, stats the new fd into st and closes
// it: the host work of a LOOKUP or a CREATE.
func openStatClose(dirfd int, name []byte, flags int, mode uint32, st *unix.Stat_t) error {
	fd, err := openat(dirfd, name, flags, mode)
	if err != nil {
		return err
	}
	err = fstatat(fd, &empty[0], st, unix.AT_EMPTY_PATH)
	unix.Close(fd)
	return err
}

// directLookup: what a daemon's LOOKUP must do at least: open an O_PATH fd
// for the inode and stat it (the fd is closed here, kept by a daemon).
func directLookup(d *directFixture, _ int) (opFunc, error) {
	name := cstr(readFile)
	var st unix.Stat_t
	return func() error {
		return openStatClose(d.base, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0, &st)
	}, nil
}

// directGetattr: statx of the inode's O_PATH fd, as uvfsd's GETATTR does it (passfs fstatx:
// AT_EMPTY_PATH, the basic fields and the mount id). The C and Rust daemons make the same call as
// fstatat(fd, "", AT_EMPTY_PATH), which costs the kernel the same.
func directGetattr(d *directFixture, _ int) (opFunc, error) {
	fd, err := d.open(readFile, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return nil, err
	}
	var st unix.Statx_t
	return func() error { return statx(fd, &empty[0], &st) }, nil
}

func statx(dirfd int, name *byte, st *unix.Statx_t) error {
	_, _, errno := unix.Syscall6(unix.SYS_STATX, uintptr(dirfd), uintptr(unsafe.Pointer(name)),
		unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS|unix.STATX_MNT_ID, uintptr(unsafe.Pointer(st)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// directReaddirplus: rewind, read the entries a page at a time, stat each one.
func directReaddirplus(d *directFixture, _ int) (opFunc, error) {
	fd, err := d.open(listDir, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	list := newLister(func(dirfd int, name []byte) error { return fstatat(dirfd, &name[0], &st, unix.AT_SYMLINK_NOFOLLOW) })
	return func() error { return list.run(fd, false) }, nil
}

// directOpendir: open a directory for reading and close it, the host work of OPENDIR and
// RELEASEDIR.
func directOpendir(d *directFixture, _ int) (opFunc, error) {
	name := cstr(listDir)
	return func() error {
		fd, err := openat(d.base, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		return unix.Close(fd)
	}, nil
}

// directReaddirplusCold: list a directory and open and stat each entry, the host work of a
// READDIRPLUS whose entries are new to the daemon (which keeps the O_PATH fds until FORGET).
func directReaddirplusCold(d *directFixture, _ int) (opFunc, error) {
	var fds []int
	for i := range coldDirs {
		fd, err := d.open(coldDir+"/"+coldName(i), unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			return nil, err
		}
		fds = append(fds, fd)
	}
	var st unix.Stat_t
	list := newLister(func(dirfd int, name []byte) error {
		return openStatClose(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0, &st)
	})
	return func() error { return list.run(fds[coldSeq.Add(1)%coldDirs], true) }, nil
}

// lister reads a whole directory a page at a time and calls entry for each name (NUL-terminated
// in place). Made once per worker, so a listing allocates nothing.
type lister struct {
	buf   []byte
	entry func(dirfd int, name []byte) error
}

func newLister(entry func(dirfd int, name []byte) error) *lister {
	return &lister{buf: make([]byte, readdirSize), entry: entry}
}

// run rewinds fd and lists it; skipDots leaves out "." and "..".
func (l *lister) run(fd int, skipDots bool) error {
	if _, err := unix.Seek(fd, 0, 0); err != nil {
		return err
	}
	seen := 0
	// getdents64 may return fewer entries than fit (ext4 hashed directories do): read to the end.
	for {
		n, err := unix.Getdents(fd, l.buf)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		// struct linux_dirent64: ino 8, off 8, reclen 2, type 1, NUL-terminated name.
		for off := 0; off < n; {
			reclen := int(*(*uint16)(unsafe.Pointer(&l.buf[off+16])))
			name := l.buf[off+19 : off+reclen]
			off += reclen
			if skipDots && name[0] == '.' && (name[1] == 0 || name[1] == '.' && name[2] == 0) {
				continue
			}
			if err := l.entry(fd, name); err != nil {
				return err
			}
			seen++
		}
	}
	if seen < dirEntries {
		return fmt.Errorf("getdents64 returned %d entries, want %d", seen, dirEntries)
	}
	return nil
}

// directCreate: create, stat (CREATE replies with attributes), close.
func directCreate(d *directFixture, worker int) (opFunc, error) {
	name := make([]byte, 0, 32)
	prefix := "d" + strconv.Itoa(worker) + "-"
	var st unix.Stat_t
	return func() error {
		name = append(strconv.AppendUint(append(name[:0], prefix...), createSeq.Add(1), 10), 0)
		return openStatClose(d.newdir, name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644, &st)
	}, nil
}

// directIO opens file once, then per call moves size bytes at offset 0 with
// transfer (unix.Pread or unix.Pwrite): the work of a READ or WRITE. short
// formats the error for a partial transfer from size and the count moved.
func directIO(file string, flags int, transfer func(fd int, p []byte, off int64) (int, error), short string, size int) func(d *directFixture, _ int) (opFunc, error) {
	return func(d *directFixture, _ int) (opFunc, error) {
		fd, err := d.open(file, flags)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, size)
		return func() error {
			n, err := transfer(fd, buf, 0)
			if err == nil && n != size {
				err = fmt.Errorf(short, size, n)
			}
			return err
		}, nil
	}
}

func directRead(size int) func(d *directFixture, _ int) (opFunc, error) {
	return directIO(readFile, unix.O_RDONLY, unix.Pread, "pread of %d bytes returned %d", size)
}

func directWrite(size int) func(d *directFixture, _ int) (opFunc, error) {
	return directIO(writeFile, unix.O_WRONLY, unix.Pwrite, "pwrite of %d bytes wrote %d", size)
}
