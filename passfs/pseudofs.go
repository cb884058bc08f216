package passfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
)

// Kernel pseudo file systems. A share that holds the host's root (virtme-ng runs the daemon with
// --shared-dir /) also holds the host's /proc, /sys, /dev, /dev/pts, /sys/fs/cgroup, debugfs and
// the like. Their files are the host kernel's interfaces, not data, and the guest must never reach
// them through the share. So a mount of one shows as an empty directory: LOOKUP of the mount point
// works (the guest can mount its own /proc there), every name under it is ENOENT, a listing has
// only "." and "..", and no request opens it, reads its xattrs or changes it. Mounts inside it
// (/dev/shm, /sys/fs/cgroup/*) are out of reach with it.
//
// The rule, applied once per node when the node is made (addNode), never per request:
//   - A node on the same mount as its parent directory is on the same file system, so it is pseudo
//     exactly when its parent is. No node is ever made under a pseudo directory (lookupIn and
//     parentForCreate refuse), so in practice such a node is not pseudo.
//   - A node on another mount than its parent (a mount point, or the share's root) is pseudo when
//     fstatfs says that its file system's f_type is one of pseudoFSTypes, or when it is tmpfs by
//     f_type and its device is devtmpfs's (/dev): devtmpfs reports TMPFS_MAGIC, so its device
//     number comes from /proc/self/mountinfo. Every devtmpfs mount shares the one superblock the
//     kernel makes at boot and never frees, so that number, once found, stays right, and no other
//     tmpfs needs a reading of mountinfo after that.
//
// Deciding per node rather than caching a decision per device number avoids a trap: anonymous
// device numbers and mount ids are reused once a file system is gone, so a cached "0:45 is tmpfs"
// could later describe a procfs. A node's fd keeps its mount alive; when the budget closed it, the
// reopened fd of a mount root is checked again (sameNode), and a mount point whose file system
// changed kind meanwhile is ESTALE.
//
// A pseudo node never gets a file handle (it would open its mount for open_by_handle_at,
// filehandles.go); it reopens by name.

// pseudoFSTypes are the statfs f_type values of kernel pseudo file systems that can be mounted,
// with their names in mountinfo: systemd's API file systems (@basic-api, @auxiliary-api,
// @privileged-api, and the security modules' file systems) and the other kernel interfaces one
// finds mounted (nsfs for bind-mounted namespace files, binderfs, resctrl, xenfs, openpromfs).
// devtmpfs is recognised by its device instead (see above).
var pseudoFSTypes = map[int64]string{
	unix.PROC_SUPER_MAGIC:      "proc",
	unix.SYSFS_MAGIC:           "sysfs",
	unix.DEVPTS_SUPER_MAGIC:    "devpts",
	unix.CGROUP_SUPER_MAGIC:    "cgroup",
	unix.CGROUP2_SUPER_MAGIC:   "cgroup2",
	mqueueMagic:                "mqueue",
	unix.BINFMTFS_MAGIC:        "binfmt_misc",
	configfsMagic:              "configfs",
	unix.EFIVARFS_MAGIC:        "efivarfs",
	fusectlMagic:               "fusectl",
	unix.HUGETLBFS_MAGIC:       "hugetlbfs",
	rpcPipefsMagic:             "rpc_pipefs",
	unix.SECURITYFS_MAGIC:      "securityfs",
	unix.BPF_FS_MAGIC:          "bpf",
	unix.DEBUGFS_MAGIC:         "debugfs",
	unix.PSTOREFS_MAGIC:        "pstore",
	unix.TRACEFS_MAGIC:         "tracefs",
	unix.SELINUX_MAGIC:         "selinuxfs",
	unix.SMACK_MAGIC:           "smackfs",
	unix.AAFS_MAGIC:            "apparmorfs",
	unix.NSFS_MAGIC:            "nsfs",
	unix.BINDERFS_SUPER_MAGIC:  "binder",
	unix.RDTGROUP_SUPER_MAGIC:  "resctrl",
	unix.XENFS_SUPER_MAGIC:     "xenfs",
	unix.OPENPROM_SUPER_MAGIC:  "openpromfs",
	unix.USBDEVICE_SUPER_MAGIC: "usbfs",
}

// Magic numbers that x/sys/unix does not export: the kernel defines them in the file systems'
// sources, not in linux/magic.h.
const (
	mqueueMagic    = 0x19800202 // ipc/mqueue.c
	configfsMagic  = 0x62656570 // fs/configfs/mount.c
	fusectlMagic   = 0x65735543 // fs/fuse/control.c, FUSE_CTL_SUPER_MAGIC
	rpcPipefsMagic = 0x67596969 // net/sunrpc/rpc_pipe.c, RPCAUTH_GSSMAGIC
)

// pseudoMounts recognises mounts of pseudo file systems (see above).
type pseudoMounts struct {
	// mountInfo is /proc/self/mountinfo of the daemon's mount namespace and root, nil when it
	// could not be opened (why is in mountInfoErr); owned says that Close closes it.
	mountInfo    *os.File
	mountInfoErr error
	owned        bool

	mu       sync.Mutex    // serialises readings of mountInfo
	devtmpfs atomic.Uint64 // devtmpfs's device number plus one once found; 0 before

	noDevtmpfs sync.Once // the warning that devtmpfs cannot be recognised
	hidden     sync.Once // the log line about the first pseudo mount the guest meets
}

// setUp takes the mountinfo file to read (nil: it opens mountinfo beside procSelfFD, an fd of
// /proc/self/fd).
func (p *pseudoMounts) setUp(mountInfo *os.File, procSelfFD int) {
	if mountInfo != nil {
		p.mountInfo = mountInfo
		return
	}
	fd, err := unix.Openat(procSelfFD, "../mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		p.mountInfoErr = err
		return
	}
	p.mountInfo, p.owned = os.NewFile(uintptr(fd), "/proc/self/mountinfo"), true
}

func (p *pseudoMounts) close() {
	if p.owned {
		p.mountInfo.Close()
	}
}

// pseudoKind names the pseudo file system that the mount root fd (with statx results st) is on,
// or returns "" for a file system with data of its own.
func (fs *FS) pseudoKind(fd int, st *unix.Statx_t) (string, fuse.Errno) {
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		return "", errnoOf(err)
	}
	if name, ok := pseudoFSTypes[int64(sfs.Type)]; ok {
		return name, 0
	}
	if sfs.Type == unix.TMPFS_MAGIC && fs.pseudoMounts.isDevtmpfs(unix.Mkdev(st.Dev_major, st.Dev_minor), fs.logf) {
		return "devtmpfs", 0
	}
	return "", 0
}

// isDevtmpfs reports whether dev, a tmpfs's device number, is devtmpfs's. It reads mountinfo
// until it has found devtmpfs there.
func (p *pseudoMounts) isDevtmpfs(dev uint64, logf func(string, ...any)) bool {
	if d := p.devtmpfs.Load(); d != 0 {
		return d-1 == dev
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if d := p.devtmpfs.Load(); d != 0 {
		return d-1 == dev
	}
	err := p.mountInfoErr
	if p.mountInfo != nil {
		var found bool
		var d uint64
		d, found, err = devtmpfsDevice(io.NewSectionReader(p.mountInfo, 0, math.MaxInt64))
		if err == nil && found {
			p.devtmpfs.Store(d + 1)
			return d == dev
		}
	}
	if err != nil {
		p.noDevtmpfs.Do(func() {
			logf("passfs: cannot read /proc/self/mountinfo (%v), so a devtmpfs (the host's /dev) in the shared directory "+
				"cannot be told from a tmpfs and is served with its contents", err)
		})
	}
	return false // no devtmpfs is mounted where this daemon can see: dev is an ordinary tmpfs
}

// devtmpfsDevice finds the device number of a devtmpfs mount in mountinfo (proc(5): "36 35 98:0
// /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue": the third field is the
// device, the field after the "-" that ends the optional fields is the file system type).
func devtmpfsDevice(r io.Reader) (dev uint64, found bool, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		sep := 6
		for sep < len(f) && !bytes.Equal(f[sep], []byte("-")) {
			sep++
		}
		if sep+1 >= len(f) || !bytes.Equal(f[sep+1], []byte("devtmpfs")) {
			continue
		}
		major, minor, ok := bytes.Cut(f[2], []byte(":"))
		if !ok {
			return 0, false, fmt.Errorf("mountinfo: device %q is not MAJOR:MINOR", f[2])
		}
		ma, err1 := strconv.ParseUint(string(major), 10, 32)
		mi, err2 := strconv.ParseUint(string(minor), 10, 32)
		if err := errors.Join(err1, err2); err != nil {
			return 0, false, fmt.Errorf("mountinfo: device %q: %w", f[2], err)
		}
		return unix.Mkdev(uint32(ma), uint32(mi)), true, nil
	}
	return 0, false, sc.Err()
}

// notePseudo says once that the guest met a pseudo file system, and what it sees of it.
func (fs *FS) notePseudo(name fuse.CString, kind string) {
	fs.pseudoMounts.hidden.Do(func() {
		fs.logf("passfs: %q is a mount of %s, a kernel pseudo file system of the host: the guest sees it, and every "+
			"other such mount in the shared directory, as an empty directory", name.Bytes(), kind)
	})
}

// fillEmptyDir lists a pseudo directory: "." and ".." only, at offsets 1 and 2. No fd of it is
// ever opened for reading.
func fillEmptyDir(n *inode, offset uint64, buf *fuse.DirBuffer) fuse.Errno {
	for off := offset; off < uint64(len(dotNames)); off++ {
		ino := n.key.ino
		if off == 1 {
			n.mu.Lock()
			if n.parent != nil {
				ino = n.parent.key.ino
			}
			n.mu.Unlock()
		}
		if !buf.Add(ino, off+1, unix.DT_DIR, dotNames[off], nil) {
			break
		}
	}
	return 0
}

var dotNames = [2][]byte{[]byte("."), []byte("..")}

// pseudoXattr answers an xattr request on a pseudo node: none to read, none may be set.
func pseudoXattr(op xattrOp) (int, fuse.Errno) {
	switch op {
	case xattrGet:
		return 0, syscall.ENODATA
	case xattrList:
		return 0, 0
	}
	return 0, syscall.EPERM
}
