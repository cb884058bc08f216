// Command nouserns runs a command as a container's default profile would
// let it run: with no_new_privs set, and unshare and clone refusing
// CLONE_NEWUSER with EPERM (clone3 with ENOSYS). The e2e tests run uvfsd
// and uvfs-vm under it to check that they serve without a user namespace.
//
//	nouserns PROGRAM [ARG...]
package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"github.com/uvfsd/uvfsd/e2e/guest"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: nouserns PROGRAM [ARG...]")
		os.Exit(2)
	}
	// no_new_privs is per thread: set it and exec from the same one.
	runtime.LockOSThread()
	if err := guest.ForbidUserNamespaces(); err != nil {
		fmt.Fprintln(os.Stderr, "nouserns:", err)
		os.Exit(126)
	}
	prog, err := exec.LookPath(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "nouserns:", err)
		os.Exit(127)
	}
	err = syscall.Exec(prog, os.Args[1:], os.Environ())
	fmt.Fprintln(os.Stderr, "nouserns: exec:", err)
	os.Exit(126)
}
