package userns

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/uvfsd/uvfsd/idmap"
)

// Environment of the re-exec'd stages. The parent removes any it
// inherited; stage 2 removes them before the daemon runs.
const (
	envStage  = "_UVFSD_USERNS_STAGE"  // "1" or "2"
	envPipes  = "_UVFSD_USERNS_PIPES"  // "IN,OUT" fds of the handshake
	envParent = "_UVFSD_USERNS_PARENT" // pid of stage 0, for the orphan check
	envFiles  = "_UVFSD_USERNS_FILES"  // fds of Options.Files in the child, comma separated
)

// markers are all of them: a child's environment gets fresh ones, and stage 2 removes them.
var markers = []string{envStage, envPipes, envParent, envFiles}

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
	if os.Geteuid() == 0 || !uids.IsIdentity() {
		// Root, or already in a user namespace (podman unshare):
		// the ids are what they are.
		if !o.MountNamespace {
			return currentState(p)
		}
		code, err := runParent(p, nil, o.Files)
		return nil, exitWith(o, code, err)
	}

	plans, err := planUserNamespace(o, p)
	if err != nil {
		return nil, err
	}
	code, err := runParent(p, plans, o.Files)
	return nil, exitWith(o, code, err)
}

// planUserNamespace checks that a user namespace is possible and picks
// its maps, telling the user once when only their own ids get mapped.
func planUserNamespace(o Options, p Paths) ([]mapPlan, error) {
	if err := checkUsernsEnabled(p); err != nil {
		return nil, err
	}
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	name := userName(p.Passwd, uid)
	uidPlan, err := planMap("uid", o.UIDMap, p.SubUID, p.NewUIDMap, name, uid, uid)
	if err != nil {
		return nil, err
	}
	gidPlan, err := planMap("gid", o.GIDMap, p.SubGID, p.NewGIDMap, name, uid, gid)
	if err != nil {
		return nil, err
	}
	for _, note := range []string{uidPlan.note, gidPlan.note, ownOnlyNote(p, name, uid, uidPlan, gidPlan)} {
		io.WriteString(o.stderr(), note)
	}
	return []mapPlan{uidPlan, gidPlan}, nil
}

// exitWith ends stage 0 with the child's exit code, or returns the
// error that kept the child from running.
func exitWith(o Options, code int, err error) error {
	if err != nil {
		return fmt.Errorf("starting uvfsd in a namespace: %w", err)
	}
	if o.AtExit != nil {
		o.AtExit()
	}
	os.Exit(code)
	return nil
}
