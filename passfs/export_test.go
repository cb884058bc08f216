package passfs

// Test hooks into the tables.

func (fs *FS) NodeCount() int   { return fs.inodes.count() }
func (fs *FS) HandleCount() int { return fs.handles.count() }
func (fs *FS) LockFDCount() int { return fs.locks.count() }

// NodeLookups returns a node's lookup count, or -1 if the node does not exist.
func (fs *FS) NodeLookups(id uint64) int64 {
	n := fs.inodes.get(id)
	if n == nil {
		return -1
	}
	defer n.unpin()
	return int64(n.lookups.Load())
}

// OpenNodeFDs is how many inode O_PATH fds are open; FDBudget is their limit.
func (fs *FS) OpenNodeFDs() int64 { return fs.inodes.fds.open.Load() }
func (fs *FS) FDBudget() int64    { return fs.inodes.fds.limit }

// EvictNodeFDs closes every inode fd that the budget may close and returns how many it closed.
func (fs *FS) EvictNodeFDs() int { return fs.inodes.fds.evictDownTo(0) }

// UsesFileHandles reports whether New decided to give nodes file handles.
func (fs *FS) UsesFileHandles() bool { return fs.useHandles }

// NodeFileHandle returns the file handle a node keeps, or ok false if it has none.
func (fs *FS) NodeFileHandle(id uint64) (typ int32, handle []byte, ok bool) {
	n := fs.inodes.get(id)
	if n == nil || n.handle == nil {
		return 0, nil, false
	}
	defer n.unpin()
	return n.handle.typ, n.handle.bytes[:n.handle.size], true
}

// SimulateFileHandleProbe makes New's probe return err until the test ends.
func SimulateFileHandleProbe(t interface{ Cleanup(func()) }, err error) {
	saved := probeFileHandles
	probeFileHandles = func(int, int) error { return err }
	t.Cleanup(func() { probeFileHandles = saved })
}

// LookupsExpectNew reports whether the next lookup opens the name first (lookupIn).
func (fs *FS) LookupsExpectNew() bool { return fs.lookupsNew.Load() }

// HoldNodeFDCloses and HoldRmdirs take the lock that keeps RMDIR and node fd closes apart
// (inodeTable.evicting), as a closer and as RMDIR do, and return its release.
func (fs *FS) HoldNodeFDCloses() func() {
	fs.inodes.evicting.RLock()
	return fs.inodes.evicting.RUnlock
}
func (fs *FS) HoldRmdirs() func() { fs.inodes.evicting.Lock(); return fs.inodes.evicting.Unlock }

// DevtmpfsDevice is the mountinfo reader that finds devtmpfs's device number.
var DevtmpfsDevice = devtmpfsDevice

// PooledDirStreams is how many directory streams wait in the pool for the next OPENDIR.
func (fs *FS) PooledDirStreams() int {
	fs.dirScratch.mu.Lock()
	defer fs.dirScratch.mu.Unlock()
	return len(fs.dirScratch.free)
}

// HoldHandle pins an open handle as a running READDIR does, until the returned func is called.
func (fs *FS) HoldHandle(fh uint64) (release func(), ok bool) {
	h := fs.handles.get(fh)
	if h == nil {
		return nil, false
	}
	return h.unpin, true
}
