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
)

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
		return nil, exitWith(runParent(p, nil))
	}

	plans, err := planUserNamespace(o, p)
	if err != nil {
		return nil, err
	}
	return nil, exitWith(runParent(p, plans))
}

// planUserNamespace checks that a user namespace is possible and picks
// its maps, telling the user once when only their own ids get mapped.
func planUserNamespace(o Options, p Paths) ([]mapPlan, error) {
	if err := checkUsernsEnabled(p); err != nil {
		return nil, err
	}
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	name := userName(p.Passwd, uid)
	uidPlan, err := planMap("uid", o.UIDMap, p.SubUID, p.NewUIDMap, name, uid)
	if err != nil {
		return nil, err
	}
	gidPlan, err := planMap("gid", o.GIDMap, p.SubGID, p.NewGIDMap, name, gid)
	if err != nil {
		return nil, err
	}
	if note := ownOnlyNote(p, name, uid, uidPlan, gidPlan); note != "" {
		io.WriteString(o.stderr(), note)
	}
	return []mapPlan{uidPlan, gidPlan}, nil
}

// exitWith ends stage 0 with the child's exit code, or returns the
// error that kept the child from running.
func exitWith(code int, err error) error {
	if err != nil {
		return fmt.Errorf("starting uvfsd in a namespace: %w", err)
	}
	os.Exit(code)
	return nil
}
