// Package userns puts uvfsd into a user namespace and sandboxes it.
//
// Enter is called first thing in main. A non-root user cannot create a
// user namespace from a multithreaded Go process, so the process
// re-execs itself in three stages, told apart by an environment marker:
//
//	stage 0 (parent, original ids): starts stage 1 with CLONE_NEWUSER|
//	  CLONE_NEWNS, writes its uid_map/gid_map (newuidmap/newgidmap with
//	  the /etc/subuid ranges, or the own id alone), forwards signals and
//	  exits with the child's exit code.
//	stage 1 (child, no capabilities yet): waits for the maps, then
//	  execs itself again, because a process exec'd before its uid_map
//	  was written has lost its capabilities for good.
//	stage 2 (child, ns root with full capabilities): Enter returns and
//	  the daemon runs.
//
// The stages talk over two pipes with typed steps; EOF means the other
// side died. Root in the initial namespace, or a process already in a
// user namespace (podman unshare), skips the user namespace; it still
// re-execs with CLONE_NEWNS alone when Options.MountNamespace asks for
// a mount namespace (--sandbox=namespace), because unshare(CLONE_NEWNS)
// in Go would move only the calling thread.
//
// Where the user namespace cannot be made or is useless (a seccomp
// profile refuses CLONE_NEWUSER, no_new_privs stops newuidmap, AppArmor
// denies capabilities inside it), Enter falls back to a plain re-exec
// without one, unless Options.NoFallback, and State.Fallback says why;
// Options.NoUserNamespace (--sandbox=none) asks for that from the start.
// Such a daemon cannot chroot: Confine restricts it to the shared
// directory with Landlock and no_new_privs instead.
//
// Then Sandbox confines the process to the shared directory and
// DropCapabilities keeps only what a file server needs.
//
// uvfsd must not link cgo: capabilities are per thread, and
// syscall.AllThreadsSyscall, which applies them to every thread, refuses
// to run when cgo is linked in. So no package of the daemon imports net,
// os/user or log/syslog, which link cgo in a default (CGO_ENABLED=1)
// build, and a plain go build or go install gives a binary that drops
// its capabilities (cmd/uvfsd's TestImportGraphLinksNoCgo checks).
package userns
