package passfs

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
)

// File handles (--inode-file-handles). With them, each new node also gets name_to_handle_at's
// handle, and a node whose fd the budget closed reopens with open_by_handle_at, which finds the
// inode wherever a host process moved it. open_by_handle_at needs CAP_DAC_READ_SEARCH in the
// initial user namespace, which only real root has: in uvfsd's rootless user namespace it fails
// with EPERM even though the daemon is "root" there, so New probes it once.

// fileHandle is a node's handle and an fd on its mount for open_by_handle_at. The handle is kept
// as the kernel's struct file_handle with room for MAX_HANDLE_SZ bytes, filled and read by raw
// syscalls: x/sys's NameToHandleAt allocates twice (or more) per handle, and this is per new node.
type fileHandle struct {
	mountFD int
	// struct file_handle: handle_bytes, handle_type, f_handle; contiguous, as the kernel wants.
	size  uint32
	typ   int32
	bytes [maxHandleSize]byte
}

// mountFDs holds one fd per mount id for open_by_handle_at, which refuses O_PATH fds there: the
// shared directory opened O_RDONLY for its mount, and for every submount the first node on it
// (normally the mount point) opened O_RDONLY through /proc/self/fd.
type mountFDs struct {
	mu    sync.Mutex
	fds   map[uint64]int
	owned []int // closed by Close
}

// mountFD returns the mount fd for mnt, opening it from node's O_PATH fd nodeFD if there is none yet.
func (fs *FS) mountFD(mnt uint64, nodeFD int, fileType uint32) (int, fuse.Errno) {
	m := &fs.mounts
	m.mu.Lock()
	defer m.mu.Unlock()
	if fd, ok := m.fds[mnt]; ok {
		return fd, 0
	}
	// Only directories and regular files may be opened (CVE-2020-35517), and a submount's first
	// node is its mount point unless a single file is bind-mounted.
	if fileType != unix.S_IFDIR && fileType != unix.S_IFREG {
		return -1, syscall.EOPNOTSUPP
	}
	fd, e := fs.reopenFD(nodeFD, unix.O_RDONLY|unix.O_NONBLOCK)
	if e != 0 {
		return -1, e
	}
	m.fds[mnt] = fd
	m.owned = append(m.owned, fd)
	return fd, 0
}

func (m *mountFDs) closeAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, fd := range m.owned {
		closeFD(fd)
	}
	m.owned, m.fds = nil, nil
}

// probeFileHandles checks that the kernel, the file system and our capabilities allow
// open_by_handle_at, with the shared directory's own handle. A variable so that tests can
// simulate an unprivileged daemon.
var probeFileHandles = func(rootFD, mountFD int) error {
	h, _, err := unix.NameToHandleAt(rootFD, "", unix.AT_EMPTY_PATH)
	if err != nil {
		return fmt.Errorf("name_to_handle_at: %w", err)
	}
	fd, err := unix.OpenByHandleAt(mountFD, h, unix.O_PATH|unix.O_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open_by_handle_at: %w", err)
	}
	closeFD(fd)
	return nil
}

// setUpFileHandles decides at New whether nodes get file handles.
func (fs *FS) setUpFileHandles(mode FileHandleMode, rootFD int, rootMnt uint64) error {
	if mode == FileHandlesNever {
		return nil
	}
	mountFD, err := unix.Openat(rootFD, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		err = fmt.Errorf("open the shared directory for reading: %w", err)
	} else if err = probeFileHandles(rootFD, mountFD); err == nil {
		fs.useHandles = true
		fs.mounts.fds = map[uint64]int{rootMnt: mountFD}
		fs.mounts.owned = []int{mountFD}
		return nil
	} else {
		closeFD(mountFD)
	}
	if mode == FileHandlesPrefer {
		// Rootless uvfsd always gets EPERM here: that is expected, not worth a warning.
		if !errors.Is(err, syscall.EPERM) {
			fs.logf("passfs: not using file handles (%v); inodes whose fd the budget closed reopen by name", err)
		}
		return nil
	}
	if errors.Is(err, syscall.EOPNOTSUPP) {
		return fmt.Errorf("passfs: --inode-file-handles=mandatory, but the shared directory's file system does not support file handles: use --inode-file-handles=prefer or never: %w", err)
	}
	return fmt.Errorf("passfs: --inode-file-handles=mandatory needs CAP_DAC_READ_SEARCH in the initial user namespace (run as root); rootless uvfsd cannot use file handles: use --inode-file-handles=prefer or never: %w", err)
}

// takeHandle gets the file handle of a new node's fd, or nil when handles are off. With
// "prefer" a file system without handles just leaves the node without one; with "mandatory" the
// lookup fails.
func (fs *FS) takeHandle(fd int, fileType uint32) (*fileHandle, fuse.Errno) {
	if !fs.useHandles {
		return nil, 0
	}
	var h fileHandle
	var mnt int32
	h.size = maxHandleSize
	_, _, e := unix.Syscall6(unix.SYS_NAME_TO_HANDLE_AT, uintptr(fd), ptr(&emptyPath[0]),
		uintptr(unsafe.Pointer(&h.size)), uintptr(unsafe.Pointer(&mnt)), unix.AT_EMPTY_PATH, 0)
	if e == 0 {
		h.mountFD, e = fs.mountFD(uint64(mnt), fd, fileType)
	}
	if e != 0 {
		if fs.o.InodeFileHandles == FileHandlesMandatory {
			return nil, e
		}
		return nil, 0
	}
	return &h, 0
}

// openByHandle opens a node's O_PATH fd from its handle (retrying once after EMFILE/ENFILE).
func (fs *FS) openByHandle(h *fileHandle) (int, fuse.Errno) {
	fd, e := openByHandleAt(h)
	if (e == syscall.EMFILE || e == syscall.ENFILE) && fs.inodes.fds.relieve() {
		fd, e = openByHandleAt(h)
	}
	return fd, e
}

func openByHandleAt(h *fileHandle) (int, fuse.Errno) {
	r, _, e := unix.Syscall(unix.SYS_OPEN_BY_HANDLE_AT, uintptr(h.mountFD), uintptr(unsafe.Pointer(&h.size)), unix.O_PATH|unix.O_CLOEXEC)
	if e != 0 {
		return -1, e
	}
	return int(r), 0
}
