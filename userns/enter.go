package userns

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/uvfsd/uvfsd/idmap"
)

// Environment of the re-exec'd stages. The parent removes any it
// inherited; stage 2 removes them before the daemon runs.
const (
	envStage      = "_UVFSD_USERNS_STAGE"    // "1" or "2"
	envPipes      = "_UVFSD_USERNS_PIPES"    // "IN,OUT" fds of the handshake
	envParent     = "_UVFSD_USERNS_PARENT"   // pid of stage 0, for the orphan check
	envFiles      = "_UVFSD_USERNS_FILES"    // fds of Options.Files in the child, comma separated
	envMountNS    = "_UVFSD_USERNS_MOUNTNS"  // "1" when the child has a mount namespace of its own
	envUserNS     = "_UVFSD_USERNS_USERNS"   // "1" when the child has a user namespace of its own
	envFallbackOf = "_UVFSD_USERNS_FALLBACK" // why the child runs without the namespace it was asked for
)

// markers are all of them: a child's environment gets fresh ones, and stage 2 removes them.
var markers = []string{envStage, envPipes, envParent, envFiles, envMountNS, envUserNS, envFallbackOf}

// InChild reports whether this process is a re-exec'ed stage (Enter has not returned yet there:
// call it before Enter).
func InChild() bool { return os.Getenv(envStage) != "" }

// inherited holds the Options.Files stage 0 passed, once stage 2 has read envFiles.
var inherited []*os.File

// InheritedFiles returns, in a re-exec'ed child after Enter, the files the original process passed
// in Options.Files, in their order; elsewhere nil.
func InheritedFiles() []*os.File { return inherited }

// Enter must be called first thing in main, with the same arguments in
// every stage. In the original process of a non-root user it does not
// return on success: it exits with the namespaced child's exit code.
// In the child, and where no re-exec is needed, it returns the State.
//
// Where the user namespace cannot be made or is useless (a container's
// seccomp profile, a sysctl, AppArmor), Enter serves without one: the
// child runs as the invoking user and State.Fallback says why, unless
// Options.NoFallback makes that an error.
func Enter(o Options) (*State, error) {
	p := o.paths()
	switch os.Getenv(envStage) {
	case "1":
		return nil, runStage1()
	case "2":
		return enterStage2(p)
	}

	uids, err := idmap.ReadNSMap(filepath.Join(p.Proc, "self/uid_map"))
	if err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 || !uids.IsIdentity() || o.NoUserNamespace {
		// Root, already in a user namespace (podman unshare), or asked
		// for none: the ids are what they are.
		if !o.MountNamespace && !o.Reexec {
			return currentState(p)
		}
		mountNS := o.MountNamespace && (os.Geteuid() == 0 || !uids.IsIdentity())
		code, err := runParent(p, childSpec{mountNS: mountNS}, o.Files)
		return nil, exitWith(o, code, err)
	}

	spec, err := planUserNamespace(o, p)
	if err == nil {
		var code int
		code, err = runParent(p, spec, o.Files)
		if !isUnusable(err) {
			return nil, exitWith(o, code, err)
		}
	}
	if !isUnusable(err) {
		return nil, err
	}
	if o.NoFallback {
		return nil, fmt.Errorf("%w; --no-fallback forbids serving without a user namespace", err)
	}
	// No usable namespace: serve as the invoking user from a plain child,
	// so that this process stays unconfined to clean up after it.
	code, err := runParent(p, childSpec{fallback: unusableReason(err)}, o.Files)
	return nil, exitWith(o, code, err)
}

// planUserNamespace checks that a user namespace is possible and picks
// its maps; the notes for the user are said once the child runs.
func planUserNamespace(o Options, p Paths) (childSpec, error) {
	// A user namespace always comes with a mount namespace: mounts made
	// in it must not reach the host's.
	spec := childSpec{userNS: true, mountNS: true, stderr: o.stderr()}
	if err := checkUsernsEnabled(p); err != nil {
		return spec, &unusableError{reason: err.Error(), err: err}
	}
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	name := userName(p.Passwd, uid)
	noHelpers := noNewPrivs(p)
	uidPlan, err := planMap("uid", o.UIDMap, p.SubUID, p.NewUIDMap, name, uid, uid, noHelpers)
	if err != nil {
		return spec, err
	}
	gidPlan, err := planMap("gid", o.GIDMap, p.SubGID, p.NewGIDMap, name, uid, gid, noHelpers)
	if err != nil {
		return spec, err
	}
	spec.plans = []mapPlan{uidPlan, gidPlan}
	spec.notes = uidPlan.note + gidPlan.note + ownOnlyNote(p, name, uid, uidPlan, gidPlan, noHelpers)
	return spec, nil
}

// exitWith ends stage 0 with the child's exit code, or returns the
// error that kept the child from running.
func exitWith(o Options, code int, err error) error {
	if err != nil {
		return fmt.Errorf("starting uvfsd in a namespace: %w", err)
	}
	if code == 128+int(syscall.SIGSYS) {
		fmt.Fprintf(o.stderr(), "uvfsd: the serving process was killed by SIGSYS: it made a system call outside "+
			"its seccomp list (--seccomp=log names the call and lets it run)\n")
	}
	if o.AtExit != nil {
		o.AtExit()
	}
	os.Exit(code)
	return nil
}

// say writes a note for the user, if there is one.
func say(w io.Writer, note string) {
	if w != nil && note != "" {
		io.WriteString(w, note)
	}
}
