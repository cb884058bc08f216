package passfs

// Test hooks into the tables.

func (fs *FS) NodeCount() int   { return fs.inodes.count() }
func (fs *FS) HandleCount() int { return fs.handles.count() }

// NodeLookups returns a node's lookup count, or -1 if the node does not exist.
func (fs *FS) NodeLookups(id uint64) int64 {
	n := fs.inodes.get(id)
	if n == nil {
		return -1
	}
	defer n.unpin()
	return int64(n.lookups.Load())
}
