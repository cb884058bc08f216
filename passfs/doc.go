// Package passfs is the passthrough file system behind uvfsd: it implements fuse.FileSystem on top
// of a host directory.
//
// Every inode the guest knows is an O_PATH|O_NOFOLLOW fd (inodes.go); names are resolved only with
// *at() syscalls relative to their parent's fd, never by building paths, so a hostile guest cannot
// walk out of the share and host symlinks are never followed. File data is opened by re-opening
// the O_PATH fd through /proc/self/fd (only regular files and directories: CVE-2020-35517).
// Creating operations run with the guest caller's ids as per-thread fsuid/fsgid (creds.go).
//
// The behaviour follows the Rust virtiofsd where it is documented (cache policy, flag handling,
// errnos); where the C virtiofsd offers more (OFD locks, flock, O_TMPFILE), passfs does that too.
package passfs
