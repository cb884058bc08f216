// Command uvfs-helper is a tiny static tool for uvfs-vm's guest, installed as
// /bin/uvfs-helper in the initramfs. It does what busybox cannot: switch to
// a numeric uid/gid, and call xattr, rename(2) and O_TMPFILE directly so the
// workout can check their exact errno.
//
// Build it with CGO_ENABLED=0 (vm.BuildHelper does) so it runs in a
// busybox guest without a libc.
//
// Usage:
//
//	uvfs-helper runas [-root DIR] [-cwd DIR] UID GID GROUPS|- -- PROG [ARGS...]
//	uvfs-helper setxattr PATH NAME VALUE
//	uvfs-helper getxattr PATH NAME
//	uvfs-helper listxattr PATH
//	uvfs-helper removexattr PATH NAME
//	uvfs-helper rename OLD NEW
//	uvfs-helper tmpfile DIR [LINKNAME]
//	uvfs-helper setacl PATH access|default ENTRIES   (acl.go)
//	uvfs-helper getacl PATH access|default
//	uvfs-helper walk DIR                             (walk.go)
//	uvfs-helper btime PATH                           (prints "BTIME SEC.NSEC", statx(2))
//	uvfs-helper idmap SRC DST FROM TO COUNT          (an idmapped bind mount, idmap.go)
//
// Failed system calls print "uvfs-helper: OP ARG: ENAME (text)" and exit 1,
// so scripts can grep for the errno name. tmpfile exits 3 when the file
// system does not support O_TMPFILE.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	args := os.Args[2:]
	var err error
	switch os.Args[1] {
	case "runas":
		err = runAs(args)
	case "setxattr":
		need(args, 3)
		err = wrap("setxattr", args[0], unix.Lsetxattr(args[0], args[1], []byte(args[2]), 0))
	case "getxattr":
		need(args, 2)
		err = getXattr(args[0], args[1])
	case "listxattr":
		need(args, 1)
		err = listXattr(args[0])
	case "removexattr":
		need(args, 2)
		err = wrap("removexattr", args[0], unix.Lremovexattr(args[0], args[1]))
	case "rename":
		need(args, 2)
		err = wrap("rename", args[0], unix.Rename(args[0], args[1]))
	case "tmpfile":
		if len(args) < 1 || len(args) > 2 {
			usage()
		}
		err = tmpFile(args)
	case "setacl":
		need(args, 3)
		err = setACL(args[0], args[1], args[2])
	case "getacl":
		need(args, 2)
		err = getACL(args[0], args[1])
	case "walk":
		need(args, 1)
		err = walk(args[0])
	case "btime":
		need(args, 1)
		err = btime(args[0])
	case "idmap":
		need(args, 5)
		err = idmapMount(args)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "uvfs-helper:", err)
		if errors.Is(err, errUnsupported) {
			os.Exit(3)
		}
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: uvfs-helper runas|setxattr|getxattr|listxattr|removexattr|rename|tmpfile|setacl|getacl|walk|btime|idmap ARGS (see the package comment)")
	os.Exit(2)
}

func need(args []string, n int) {
	if len(args) != n {
		usage()
	}
}

var errUnsupported = errors.New("not supported by this file system")

// btime prints the birth time statx(2) gives for path, or exits 3 when the file system has none.
func btime(path string) error {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS|unix.STATX_BTIME, &st); err != nil {
		return wrap("statx", path, err)
	}
	if st.Mask&unix.STATX_BTIME == 0 {
		return fmt.Errorf("statx %s: no birth time (mask %#x): %w", path, st.Mask, errUnsupported)
	}
	fmt.Printf("BTIME %d.%09d\n", st.Btime.Sec, st.Btime.Nsec)
	return nil
}

// wrap formats a failed call with the errno's symbolic name.
func wrap(op, arg string, err error) error {
	if err == nil {
		return nil
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return fmt.Errorf("%s %s: %s (%w)", op, arg, unix.ErrnoName(errno), err)
	}
	return fmt.Errorf("%s %s: %w", op, arg, err)
}

// runAs drops to the given ids and execs PROG. Go applies set*id to every
// thread, so the exec'd program has only the new credentials.
// runAs runs PROG as UID:GID with the supplementary GROUPS, after
// chroot(DIR) with -root (uvfs-vm's guest runs the command in the host's
// root file system) and chdir(DIR) with -cwd, done as the user so that a
// directory the user cannot enter fails as it would on the host.
func runAs(args []string) error {
	var root, cwd string
	for len(args) >= 2 && (args[0] == "-root" || args[0] == "-cwd") {
		if args[0] == "-root" {
			root = args[1]
		} else {
			cwd = args[1]
		}
		args = args[2:]
	}
	if len(args) < 5 || args[3] != "--" {
		usage()
	}
	uid, err1 := strconv.ParseUint(args[0], 10, 32)
	gid, err2 := strconv.ParseUint(args[1], 10, 32)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("runas: bad uid %q or gid %q", args[0], args[1])
	}
	groups := []int{}
	if args[2] != "-" {
		for _, s := range strings.Split(args[2], ",") {
			g, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				return fmt.Errorf("runas: bad group %q", s)
			}
			groups = append(groups, int(g))
		}
	}
	if root != "" {
		if err := unix.Chroot(root); err != nil {
			return wrap("chroot", root, err)
		}
		if err := unix.Chdir("/"); err != nil {
			return wrap("chdir", "/", err)
		}
	}
	if err := syscall.Setgroups(groups); err != nil {
		return wrap("setgroups", args[2], err)
	}
	if err := syscall.Setresgid(int(gid), int(gid), int(gid)); err != nil {
		return wrap("setresgid", args[1], err)
	}
	if err := syscall.Setresuid(int(uid), int(uid), int(uid)); err != nil {
		return wrap("setresuid", args[0], err)
	}
	if cwd != "" {
		if err := unix.Chdir(cwd); err != nil {
			return wrap("chdir", cwd, err)
		}
	}
	prog, err := exec.LookPath(args[4])
	if err != nil {
		return fmt.Errorf("runas: %w", err)
	}
	return wrap("exec", prog, syscall.Exec(prog, args[4:], os.Environ()))
}

func getXattr(path, name string) error {
	buf := make([]byte, 64<<10)
	n, err := unix.Lgetxattr(path, name, buf)
	if err != nil {
		return wrap("getxattr", path, err)
	}
	fmt.Printf("%s\n", buf[:n])
	return nil
}

func listXattr(path string) error {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(path, buf)
	if err != nil {
		return wrap("listxattr", path, err)
	}
	names := []string{}
	for _, b := range bytes.Split(buf[:n], []byte{0}) {
		if len(b) > 0 {
			names = append(names, string(b))
		}
	}
	sort.Strings(names)
	for _, s := range names {
		fmt.Println(s)
	}
	return nil
}

// tmpFile creates an unnamed file in dir, checks data round-trips through it
// and, if a name is given, links it into dir.
func tmpFile(args []string) error {
	dir := args[0]
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR, 0o600)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.ENOSYS) {
		return fmt.Errorf("O_TMPFILE in %s: %w (%v)", dir, errUnsupported, err)
	}
	if err != nil {
		return wrap("open O_TMPFILE", dir, err)
	}
	defer unix.Close(fd)
	want := []byte("written through O_TMPFILE\n")
	if _, err := unix.Pwrite(fd, want, 0); err != nil {
		return wrap("pwrite", dir, err)
	}
	got := make([]byte, len(want)+1)
	n, err := unix.Pread(fd, got, 0)
	if err != nil {
		return wrap("pread", dir, err)
	}
	if !bytes.Equal(got[:n], want) {
		return fmt.Errorf("tmpfile in %s: read back %q, wrote %q", dir, got[:n], want)
	}
	if len(args) == 2 {
		target := dir + "/" + args[1]
		err := unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), unix.AT_FDCWD, target, unix.AT_SYMLINK_FOLLOW)
		if err != nil {
			return wrap("linkat", target, err)
		}
	}
	return nil
}
