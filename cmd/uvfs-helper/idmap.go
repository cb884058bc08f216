package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// idmapMount mounts an idmapped bind mount of src at dst (Linux 5.12+): ids FROM..FROM+COUNT-1
// that files have on src appear as TO..TO+COUNT-1 on dst, for uids and gids alike, and files a
// caller creates on dst as TO are stored as FROM. The file system must allow it (FUSE: a server
// that agreed on FUSE_ALLOW_IDMAP, Linux 6.12+). Usage: idmap SRC DST FROM TO COUNT.
func idmapMount(args []string) error {
	var ids [3]uint64
	for i, a := range args[2:] {
		v, err := strconv.ParseUint(a, 10, 32)
		if err != nil {
			return fmt.Errorf("idmap: %q is not an id or a count", a)
		}
		ids[i] = v
	}
	from, to, count := int(ids[0]), int(ids[1]), int(ids[2])
	// The mapping lives in a user namespace; a process that waits in it lends it.
	m := []syscall.SysProcIDMap{{ContainerID: from, HostID: to, Size: count}}
	holder := exec.Command("/bin/sleep", "1000")
	holder.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, UidMappings: m, GidMappings: m}
	if err := holder.Start(); err != nil {
		return fmt.Errorf("idmap: user namespace: %w", err)
	}
	defer func() {
		holder.Process.Kill()
		holder.Wait()
	}()
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", holder.Process.Pid))
	if err != nil {
		return fmt.Errorf("idmap: %w", err)
	}
	defer ns.Close()
	tree, err := unix.OpenTree(unix.AT_FDCWD, args[0], unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return wrap("open_tree", args[0], err)
	}
	defer unix.Close(tree)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(ns.Fd())}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return wrap("mount_setattr MOUNT_ATTR_IDMAP", args[0], err)
	}
	return wrap("move_mount", args[1], unix.MoveMount(tree, "", unix.AT_FDCWD, args[1], unix.MOVE_MOUNT_F_EMPTY_PATH))
}
