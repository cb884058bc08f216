package passfs

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
)

// Live migration: the nodes and handles the guest holds move to another uvfsd on the same shared
// directory. A node travels as its path from the shared directory (which uvfsd keeps current as the
// guest looks names up, renames and unlinks: the Rust virtiofsd's find-paths mode without the
// search), optionally with its file handle; a handle travels as its node and open flags. The
// destination opens them all again before the guest runs, keeping every node id and fh the guest
// knows.

// MigrationOptions are virtiofsd's --migration-* flags.
type MigrationOptions struct {
	// FileHandles sends each node's file handle and opens it by handle on the destination, which
	// survives renames by third parties but needs CAP_DAC_READ_SEARCH there
	// (--migration-mode=file-handles); the path is the fallback.
	FileHandles bool
	// GuestError lets a migration finish when some nodes cannot be opened on the destination: the
	// guest gets errors for those only (--migration-on-error=guest-error). Otherwise the migration
	// fails and the guest runs on at the source.
	GuestError bool
	// VerifyHandles sends file handles and has the destination check that what it opened by path
	// has the same handle, so that it never serves another file under a migrated node id.
	VerifyHandles bool
	// ConfirmPaths checks on the source, at switch-over, that each path still leads to its node
	// and otherwise corrects it from /proc/self/fd: a rename by a host process during the
	// migration, which uvfsd did not see.
	ConfirmPaths bool
}

// migrationVersion changes whenever the format below does; a destination refuses other versions.
const migrationVersion = 1

type migState struct {
	Version int
	Nodes   []migNode
	Handles []migHandle
	NextID  uint64
	NextFh  uint64
}

type migNode struct {
	ID      uint64
	Lookups uint64
	Type    uint32         // S_IFMT: the destination checks it finds the same kind of file
	Path    string         // from the shared directory, "/"-separated; parents come before children
	Handle  *migFileHandle `json:",omitempty"`
	Err     string         `json:",omitempty"` // the source could not describe it
}

type migFileHandle struct {
	Type  int32
	Bytes []byte
}

type migHandle struct {
	Fh     uint64
	Node   uint64
	Flags  int    // the open file's status flags (F_GETFL) and access mode
	Dir    bool   // an OPENDIR handle
	Offset uint64 // directories: where the guest's next READDIR continues
}

// SaveState describes every node and handle the guest holds. The front-end calls it with every
// queue stopped, so no request changes the tables meanwhile.
func (fs *FS) SaveState() ([]byte, error) {
	mo := fs.o.Migration
	st := migState{Version: migrationVersion}
	fs.inodes.mu.RLock()
	st.NextID = fs.inodes.nextID
	nodes := slices.Collect(fs.inodes.byID.all())
	fs.inodes.mu.RUnlock()
	for _, n := range nodes {
		if n.id == fuse.RootID {
			continue
		}
		mn := migNode{ID: n.id, Lookups: n.lookups.Load(), Type: n.fileType}
		if err := fs.describeNode(n, &mn, mo); err != nil {
			mn.Err = err.Error()
		}
		st.Nodes = append(st.Nodes, mn)
	}
	// Parents first: a path's prefix is shorter.
	slices.SortFunc(st.Nodes, func(a, b migNode) int {
		return strings.Count(a.Path, "/") - strings.Count(b.Path, "/")
	})
	st.NextFh = fs.handles.next.Load()
	handles := fs.handles.pinnedSnapshot()
	defer func() {
		for _, h := range handles {
			h.unpin()
		}
	}()
	for _, h := range handles {
		mh, err := fs.describeHandle(h.id, h)
		if err != nil {
			return nil, err
		}
		st.Handles = append(st.Handles, mh)
	}
	return json.Marshal(&st)
}

// describeNode fills in where the destination finds n.
func (fs *FS) describeNode(n *inode, mn *migNode, mo MigrationOptions) error {
	n.pins.Add(1)
	defer n.unpin()
	if n.pseudo {
		return fmt.Errorf("node %d is on a kernel pseudo file system", n.id)
	}
	path, err := fs.pathOf(n)
	if mo.ConfirmPaths || err != nil {
		path, err = fs.confirmPath(n, path, err)
	}
	if err != nil {
		return err
	}
	mn.Path = path
	if mo.FileHandles || mo.VerifyHandles {
		if e := fs.openPinned(n); e != 0 {
			return fmt.Errorf("%s: %w", path, e)
		}
		h, _, err := unix.NameToHandleAt(n.fd, "", unix.AT_EMPTY_PATH)
		if err != nil {
			return fmt.Errorf("%s: file handle: %w", path, err)
		}
		mn.Handle = &migFileHandle{Type: h.Type(), Bytes: h.Bytes()}
	}
	return nil
}

// pathOf is n's path from the shared directory as uvfsd last saw it.
func (fs *FS) pathOf(n *inode) (string, error) {
	var names []string
	for depth := 0; n.id != fuse.RootID; depth++ {
		n.mu.Lock()
		parent, name, kept := n.parent, strings.TrimSuffix(n.name, "\x00"), n.keepOpen
		n.mu.Unlock()
		if parent == nil || name == "" || kept || depth >= maxReopenDepth {
			// keepOpen on a named node: our own UNLINK or RENAME took the name away.
			return "", fmt.Errorf("node %d has no name in the shared directory (unlinked or O_TMPFILE)", n.id)
		}
		names = append(names, name)
		n = parent
	}
	slices.Reverse(names)
	return strings.Join(names, "/"), nil
}

// confirmPath checks that path still leads to n and, if a host process renamed it, finds its
// current path through /proc/self/fd.
func (fs *FS) confirmPath(n *inode, path string, pathErr error) (string, error) {
	if pathErr == nil && fs.pathLeadsTo(path, n) {
		return path, nil
	}
	if e := fs.openPinned(n); e != 0 {
		if pathErr != nil {
			return "", pathErr
		}
		return "", fmt.Errorf("%s: renamed or removed on the host, and the node cannot be reopened: %w", path, e)
	}
	cur, err := fs.pathFromProc(n.fd)
	if err != nil {
		return "", fmt.Errorf("node %d (last seen as %q): %w", n.id, path, err)
	}
	if !fs.pathLeadsTo(cur, n) {
		return "", fmt.Errorf("node %d (last seen as %q): %q is another file", n.id, path, cur)
	}
	return cur, nil
}

// pathLeadsTo reports whether path names n's inode.
func (fs *FS) pathLeadsTo(path string, n *inode) bool {
	var st unix.Statx_t
	if unix.Statx(fs.o.RootFD, path, unix.AT_SYMLINK_NOFOLLOW|unix.AT_NO_AUTOMOUNT, statxMask, &st) != nil {
		return false
	}
	k := keyOf(&st)
	return k.dev == n.key.dev && k.ino == n.key.ino
}

// pathFromProc is the path of fd relative to the shared directory, read from /proc/self/fd.
func (fs *FS) pathFromProc(fd int) (string, error) {
	root, err := fs.readFDLink(fs.o.RootFD)
	if err != nil {
		return "", err
	}
	p, err := fs.readFDLink(fd)
	if err != nil {
		return "", err
	}
	if strings.HasSuffix(p, " (deleted)") {
		return "", errors.New("deleted on the host")
	}
	prefix := strings.TrimSuffix(root, "/") + "/"
	if !strings.HasPrefix(p, prefix) {
		return "", fmt.Errorf("now at %q, outside the shared directory", p)
	}
	return p[len(prefix):], nil
}

// readFDLink is what /proc/self/fd says fd's path is (within the sandbox's root).
func (fs *FS) readFDLink(fd int) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(fs.procSelfFD, strconv.Itoa(fd), buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

func (fs *FS) describeHandle(fh uint64, h *handle) (migHandle, error) {
	mh := migHandle{Fh: fh, Dir: h.dir != nil}
	if h.dir != nil {
		if h.dir.node == nil {
			return mh, fmt.Errorf("directory handle %d has no node", fh)
		}
		mh.Node, mh.Offset = h.dir.node.id, h.dir.offset
		return mh, nil
	}
	flags, err := unix.FcntlInt(uintptr(h.fd), unix.F_GETFL, 0)
	if err != nil {
		return mh, fmt.Errorf("file handle %d: %w", fh, err)
	}
	var st unix.Statx_t
	if e := fstatx(h.fd, &st); e != 0 {
		return mh, fmt.Errorf("file handle %d: %w", fh, e)
	}
	n := fs.inodes.getByKey(keyOf(&st))
	if n == nil {
		return mh, fmt.Errorf("file handle %d: its node is gone", fh)
	}
	n.unpin()
	mh.Node, mh.Flags = n.id, flags
	return mh, nil
}

// maxStateSize bounds what LoadState accepts: far more than a million nodes' paths.
const maxStateSize = 1 << 30

// LoadState opens again what the source's SaveState described, before the guest sends a request.
// The table must hold only the root. Every name and number is checked: the state arrives through
// the front-end's migration stream.
func (fs *FS) LoadState(data []byte) error {
	if len(data) > maxStateSize {
		return fmt.Errorf("migration state of %d bytes is too large", len(data))
	}
	var st migState
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("migration state: %w", err)
	}
	if st.Version != migrationVersion {
		return fmt.Errorf("migration state version %d; this uvfsd reads %d: migrate between the same uvfsd versions", st.Version, migrationVersion)
	}
	if fs.inodes.count() != 1 || fs.handles.count() != 0 {
		return errors.New("migration state arrived after the guest used this uvfsd")
	}
	l := loader{fs: fs, byPath: map[string]*inode{"": fs.rootNode()}, byID: map[uint64]*inode{}, mountFD: -1}
	defer func() { closeFD(l.mountFD) }()
	fs.inodes.mu.RLock()
	l.nextID = fs.inodes.nextID
	fs.inodes.mu.RUnlock()
	for i := range st.Nodes {
		if err := l.node(&st.Nodes[i]); err != nil {
			if !fs.o.Migration.GuestError {
				l.undo()
				return err
			}
			l.lost = append(l.lost, err.Error())
		}
	}
	for i := range st.Handles {
		if err := l.handle(&st.Handles[i]); err != nil {
			if !fs.o.Migration.GuestError {
				l.undo()
				return err
			}
			l.lost = append(l.lost, err.Error())
		}
	}
	fs.inodes.mu.Lock()
	fs.inodes.nextID = max(fs.inodes.nextID, st.NextID)
	fs.inodes.mu.Unlock()
	if next := fs.handles.next.Load(); st.NextFh > next {
		fs.handles.next.Store(st.NextFh)
	}
	if len(l.lost) > 0 {
		fs.logf("migration: %d of %d nodes and handles could not be opened; the guest gets errors for them (--migration-on-error=guest-error); the first: %s",
			len(l.lost), len(st.Nodes)+len(st.Handles), l.lost[0])
	}
	fs.inodes.fds.trim()
	return nil
}

func (fs *FS) rootNode() *inode {
	return fs.inodes.byID.get(fuse.RootID)
}

// loader opens the nodes and handles of one migration state.
type loader struct {
	fs     *FS
	byPath map[string]*inode
	byID   map[uint64]*inode
	fhs    []uint64
	lost   []string
	nextID uint64 // the table's before the load, for undo
	// mountFD is the shared directory opened for open_by_handle_at, -1 until needed.
	mountFD      int
	handleWarned bool
}

func (l *loader) node(mn *migNode) error {
	fs := l.fs
	if mn.Err != "" {
		return fmt.Errorf("node %d: the source could not migrate it: %s", mn.ID, mn.Err)
	}
	if mn.ID <= fuse.RootID || l.byID[mn.ID] != nil {
		return fmt.Errorf("migration state: bad or repeated node id %d", mn.ID)
	}
	parentPath, name, err := splitMigPath(mn.Path)
	if err != nil {
		return fmt.Errorf("node %d: %w", mn.ID, err)
	}
	fd, how, err := l.open(mn)
	if err != nil {
		return fmt.Errorf("%s: %w", mn.Path, err)
	}
	var st unix.Statx_t
	if e := fstatx(fd, &st); e != 0 {
		closeFD(fd)
		return fmt.Errorf("%s: %w", mn.Path, e)
	}
	if t := uint32(st.Mode) & unix.S_IFMT; t != mn.Type {
		closeFD(fd)
		return fmt.Errorf("%s: a file of type %#o, not %#o as on the source (replaced on the host?)", mn.Path, t, mn.Type)
	}
	if fs.o.Migration.VerifyHandles && how == "path" {
		if mn.Handle == nil {
			closeFD(fd)
			return fmt.Errorf("%s: --migration-verify-handles, but the source sent no file handle (start it with the flag too)", mn.Path)
		}
		h, _, err := unix.NameToHandleAt(fd, "", unix.AT_EMPTY_PATH)
		if err != nil || h.Type() != mn.Handle.Type || string(h.Bytes()) != string(mn.Handle.Bytes) {
			closeFD(fd)
			return fmt.Errorf("%s: another file than on the source (file handles differ)", mn.Path)
		}
	}
	parent := l.byPath[parentPath]
	n, e := fs.adoptMigrated(fd, &st, parent, name, mn.ID, mn.Lookups)
	if e != 0 {
		return fmt.Errorf("%s: %w", mn.Path, e)
	}
	l.byPath[mn.Path] = n
	l.byID[mn.ID] = n
	return nil
}

// open opens mn's O_PATH fd, by file handle when the source sent one in file-handles mode, else
// by path beneath the shared directory.
func (l *loader) open(mn *migNode) (int, string, error) {
	fs := l.fs
	if mn.Handle != nil && fs.o.Migration.FileHandles && len(mn.Handle.Bytes) <= maxHandleSize {
		if l.mountFD < 0 {
			// open_by_handle_at wants a real fd of the file system, not an O_PATH one.
			fd, err := unix.Openat(fs.o.RootFD, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				return -1, "", fmt.Errorf("open the shared directory for file handles: %w", err)
			}
			l.mountFD = fd
		}
		h := unix.NewFileHandle(mn.Handle.Type, mn.Handle.Bytes)
		fd, err := unix.OpenByHandleAt(l.mountFD, h, unix.O_PATH|unix.O_CLOEXEC)
		if err == nil {
			return fd, "handle", nil
		}
		if !l.handleWarned {
			l.handleWarned = true
			fs.logf("migration: opening %s by its file handle failed (%v); opening by path", mn.Path, err)
		}
	}
	// Submounts on the way are crossed, as the guest crossed them.
	fd, err := unix.Openat2(fs.o.RootFD, mn.Path, &unix.OpenHow{
		Flags: uint64(pathFlags), Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	})
	return fd, "path", err
}

func (l *loader) handle(mh *migHandle) error {
	fs := l.fs
	if mh.Fh == 0 || mh.Fh >= 1<<62 {
		return fmt.Errorf("migration state: bad fh %d", mh.Fh)
	}
	n := l.byID[mh.Node]
	if mh.Node == fuse.RootID {
		n = fs.rootNode()
	}
	if n == nil {
		return fmt.Errorf("open file %d: its node %d did not migrate", mh.Fh, mh.Node)
	}
	n.pins.Add(1)
	defer n.unpin()
	if e := fs.openPinned(n); e != 0 {
		return fmt.Errorf("open file %d: %w", mh.Fh, e)
	}
	var h *handle
	if mh.Dir {
		if !n.isDir() {
			return fmt.Errorf("directory handle %d on a node that is no directory", mh.Fh)
		}
		fd, e := fs.openNode(n, unix.O_RDONLY|unix.O_DIRECTORY)
		if e != 0 {
			return fmt.Errorf("directory handle %d: %w", mh.Fh, e)
		}
		// A new stream starts at offset 0: the guest's next READDIR seeks to mh.Offset.
		h = fs.newDirHandle(fd, n)
	} else {
		flags := mh.Flags & (unix.O_ACCMODE | unix.O_APPEND | unix.O_DIRECT | unix.O_NOATIME | unix.O_SYNC | unix.O_DSYNC | unix.O_NONBLOCK | unix.O_LARGEFILE)
		if fs.o.Readonly && flags&unix.O_ACCMODE != unix.O_RDONLY {
			return fmt.Errorf("open file %d: writable, but this uvfsd shares read-only", mh.Fh)
		}
		fd, e := fs.openNode(n, flags|unix.O_CLOEXEC)
		if e != 0 {
			return fmt.Errorf("open file %d: %w", mh.Fh, e)
		}
		h = &handle{fd: fd}
	}
	if !fs.handles.addAt(mh.Fh, h) {
		closeFD(h.fd)
		return fmt.Errorf("migration state: repeated fh %d", mh.Fh)
	}
	l.fhs = append(l.fhs, mh.Fh)
	return nil
}

// undo forgets what a failed load opened, so that the guest (which runs on at the source) and a
// later migration attempt find the table as before.
func (l *loader) undo() {
	for _, fh := range l.fhs {
		l.fs.handles.remove(fh)
	}
	l.fs.inodes.dropAllBut(fuse.RootID)
	l.fs.inodes.mu.Lock()
	l.fs.inodes.nextID = l.nextID
	l.fs.inodes.mu.Unlock()
}

// splitMigPath checks a migrated path (relative, no empty, "." or ".." component) and splits off
// its last component.
func splitMigPath(p string) (dir, name string, err error) {
	if p == "" || len(p) > unix.PathMax {
		return "", "", fmt.Errorf("bad path %q", p)
	}
	for _, c := range strings.Split(p, "/") {
		if c == "" || c == "." || c == ".." || len(c) > 255 || strings.IndexByte(c, 0) >= 0 {
			return "", "", fmt.Errorf("bad path %q", p)
		}
	}
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p, nil
	}
	return p[:i], p[i+1:], nil
}

// adoptMigrated makes the node id for the O_PATH fd (taken over) of st, found as name in parent
// (nil: a parent that did not migrate; the node then keeps its fd open).
func (fs *FS) adoptMigrated(fd int, st *unix.Statx_t, parent *inode, name string, id, lookups uint64) (*inode, fuse.Errno) {
	ref := parent
	if ref == nil {
		ref = fs.rootNode()
	}
	n, e := fs.newNode(fd, st, ref, fuse.CString(name+"\x00"))
	if e != 0 {
		return nil, e
	}
	n.parent, n.keepOpen = parent, parent == nil
	if !fs.inodes.insertMigrated(n, id, max(lookups, 1)) {
		closeFD(fd)
		return nil, syscall.EEXIST // two migrated ids for one inode: the state is inconsistent
	}
	return n, 0
}

// maxHandleSize is the kernel's MAX_HANDLE_SZ: open_by_handle_at refuses longer handles.
const maxHandleSize = 128
