// Package passfs is the passthrough file system behind uvfsd: it implements fuse.FileSystem on top
// of a host directory.
//
// Every inode the guest knows is a node with an O_PATH|O_NOFOLLOW fd (inodes.go); names are
// resolved only with *at() syscalls relative to their parent's fd, never by building paths, so a
// hostile guest cannot walk out of the share and host symlinks are never followed. File data is
// opened by re-opening the O_PATH fd through /proc/self/fd (only regular files and directories:
// CVE-2020-35517). Creating operations run with the guest caller's ids as per-thread fsuid/fsgid
// (creds.go).
//
// # File descriptors
//
// The guest keeps every node it has seen (it sends FORGET only under memory pressure), so a walk
// of a large tree would need one fd per file. passfs instead keeps at most a budget of inode fds
// open (budget.go): Options.FDBudget, by default three quarters of the RLIMIT_NOFILE soft limit at
// New (at least 32); the last quarter is left for open files and directories (one fd per guest
// handle), the vhost-user socket, eventfds and QEMU's memory fds. When a new or reopened node
// passes the budget, the fds of nodes that no running operation uses and that were not used
// recently (a clock with a second-chance bit) are closed, down to 15/16 of the budget. The root's
// fd is never closed, nor that of an O_TMPFILE file or of a node whose name our own UNLINK or
// RENAME removed (the guest may still use an unlinked file; it forgets it soon). If any open still
// fails with EMFILE or ENFILE, a quarter of the inode fds are closed and the open is tried once
// more. So a guest can walk more files than the fd limit allows; what it costs is a reopen.
// In no-open mode (nodedata.go) a regular file's data fds (one for reading, one for writing) count
// in the same budget and close with its node fd; the same eviction that closes the node fd closes
// them, and they reopen on the next READ or WRITE.
//
// A closed node reopens on its next use: from its file handle if it has one, else with
// openat(parent, name), its parent reopened the same way first if needed. The (parent, name) is
// where the node was last found by LOOKUP or READDIRPLUS, or moved to by our own RENAME; for hard
// links any one name will do. The reopened fd must be the same inode (device, inode number, mount
// id) or the operation fails with ESTALE: a host process that renamed or removed the file while
// its fd was closed cannot make the guest reach another file. A new LOOKUP of the file's current
// name finds the node again and heals it.
//
// File handles (Options.InodeFileHandles, --inode-file-handles; filehandles.go): with "prefer" (the
// default) or "mandatory", New probes open_by_handle_at on the shared directory. It needs
// CAP_DAC_READ_SEARCH in the initial user namespace, so only a daemon running as real root (that
// kept the capability) uses them; nodes then also store name_to_handle_at's handle and reopen from
// it, which finds the inode wherever a host process moved it. Rootless uvfsd (root only in its
// user namespace) gets EPERM: "prefer" silently reopens by name, "mandatory" makes New fail, as it
// does on a file system without file handles.
//
// # Submounts
//
// A directory on another mount than its parent is a submount (inode keys include the mount id, so
// files of different file systems never share a node). With Options.AnnounceSubmounts its
// attributes carry fuse.AttrSubmount: the guest automounts it with its own st_dev, and sends a
// SYNCFS per submount. Without it the guest sees one st_dev for the whole share, so two files on
// different host file systems with the same inode number look like hard links of each other (find,
// du, tar, cp -a); passfs still serves each its own data and logs once that the flag is missing.
// As the virtiofs submounts RFC notes, stat(2) does not trigger the automount, so the mount point
// itself shows the parent's st_dev until something enters it.
//
// # Kernel pseudo file systems
//
// A mount of /proc, /sys, devtmpfs, devpts, cgroup, debugfs and the other kernel interfaces in the
// share is an empty directory to the guest (pseudofs.go): the guest can look up the mount point
// (and mount its own /proc on it) but nothing under it, and no request opens, changes or reads
// xattrs of it. Whether a node is on such a file system is decided once, when a node on another
// mount than its parent is made (statfs f_type; devtmpfs by its device number from mountinfo), so
// no request pays for it.
//
// # POSIX ACLs and rootless device nodes
//
// ACL xattrs name users and groups by number; passfs translates those ids through Options.UIDs and
// GIDs like file owners (acl.go), so --posix-acl works together with id mapping. Rootless, the
// host kernel allows creating a 0:0 character device (an overlayfs whiteout, also made by
// RENAME_WHITEOUT) without CAP_MKNOD since Linux 5.8, so overlayfs in the guest can use the share
// as its upper layer; any other device node gets the host's EPERM.
//
// # Mapped ownership
//
// With Options.Ownership = OwnershipMapped (--ownership=mapped) every file the guest makes is a
// plain file or directory of the daemon's user on the host, and the guest's owner, group, mode,
// file type and device number live in one user.* attribute in the format of containers/storage
// (override.go, mapped.go): chown to any id, set-id bits, device nodes, FIFOs and sockets work
// rootless, without /etc/subuid ranges, and survive a restart.
//
// The behaviour follows the Rust virtiofsd where it is documented (cache policy, flag handling,
// errnos); where the C virtiofsd offers more (OFD locks, flock, O_TMPFILE), passfs does that too.
package passfs
