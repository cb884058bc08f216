package userns

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/uvfsd/uvfsd/idmap"
)

// Options configure Enter.
type Options struct {
	// UIDMap and GIDMap come from --uid-map/--gid-map. Empty: map the
	// own id at 0 and the /etc/subuid (/etc/subgid) ranges from 1 on.
	// Given, they must map the own id at 0 (see planMap).
	UIDMap, GIDMap idmap.NSMap
	// MountNamespace asks for a private mount namespace, which
	// Sandbox("namespace") needs. Root re-execs for it too.
	MountNamespace bool
	// NoUserNamespace keeps a non-root daemon out of any user namespace
	// (--sandbox=none, as the Rust virtiofsd): it serves as the invoking
	// user.
	NoUserNamespace bool
	// Reexec asks for a child even where no namespace is needed, so that
	// the original process stays unconfined to clean up after a child
	// that Confine restricts.
	Reexec bool
	// NoFallback makes a user namespace that cannot be made or is useless
	// an error instead of a reason to serve without one.
	NoFallback bool
	// Stderr receives notes for the user; nil means os.Stderr.
	Stderr io.Writer
	// Paths overrides the system files consulted; nil means DefaultPaths.
	Paths *Paths
	// Files are passed to a re-exec'ed child, which finds them with InheritedFiles; Enter closes
	// them in this process once the child has them. Where no re-exec happens, Enter leaves them
	// alone.
	Files []*os.File
	// AtExit runs in the original process before it exits with the child's status (after a
	// re-exec), e.g. to remove what it made for the child.
	AtExit func()
}

func (o Options) paths() Paths {
	if o.Paths != nil {
		return *o.Paths
	}
	return DefaultPaths()
}

func (o Options) stderr() io.Writer {
	if o.Stderr != nil {
		return o.Stderr
	}
	return os.Stderr
}

// State describes the namespace the daemon ended up in.
type State struct {
	// InNamespace is true when the process is in a user namespace of
	// its own (uid_map is not the identity).
	InNamespace bool
	// HostUID and HostGID are the invoking user's ids outside, the
	// numbers `id` prints on the host.
	HostUID, HostGID uint32
	// UIDs and GIDs are the namespace's uid_map and gid_map.
	UIDs, GIDs idmap.NSMap
	// SubordinateRanges is true when both maps hold ids besides the
	// invoking user's, so files can be owned by other users.
	SubordinateRanges bool
	// CanSetgroups is true when setgroups(2) is allowed (it is denied
	// when gid_map was written without newgidmap).
	CanSetgroups bool
	// MountNamespace is true when Enter created a private mount
	// namespace for this process.
	MountNamespace bool
	// Fallback, when set, says why this process runs without the user
	// namespace it was asked for (and so without chroot or pivot_root):
	// the caller should confine it otherwise (Confine) and tell the user.
	Fallback string
	// Reexeced is true in a re-exec'ed child, whose original process
	// waits outside and cleans up after it.
	Reexeced bool
}

// currentState reads the maps of this process.
func currentState(p Paths) (*State, error) {
	uids, err := idmap.ReadNSMap(filepath.Join(p.Proc, "self/uid_map"))
	if err != nil {
		return nil, err
	}
	gids, err := idmap.ReadNSMap(filepath.Join(p.Proc, "self/gid_map"))
	if err != nil {
		return nil, err
	}
	st := &State{InNamespace: !uids.IsIdentity(), UIDs: uids, GIDs: gids}
	var ok bool
	if st.HostUID, ok = uids.NSToHost(uint32(os.Getuid())); !ok {
		return nil, fmt.Errorf("this process's uid %d is not mapped in its user namespace (uid_map %q); start uvfsd outside the namespace or map the uid", os.Getuid(), uids.String())
	}
	if st.HostGID, ok = gids.NSToHost(uint32(os.Getgid())); !ok {
		return nil, fmt.Errorf("this process's gid %d is not mapped in its user namespace (gid_map %q); start uvfsd outside the namespace or map the gid", os.Getgid(), gids.String())
	}
	// Without a namespace of its own only root can own files as others.
	st.SubordinateRanges = mappedIDs(uids) > 1 && mappedIDs(gids) > 1 && (st.InNamespace || os.Geteuid() == 0)
	setgroups, _ := os.ReadFile(filepath.Join(p.Proc, "self/setgroups"))
	st.CanSetgroups = os.Geteuid() == 0 && strings.TrimSpace(string(setgroups)) == "allow"
	return st, nil
}

func mappedIDs(m idmap.NSMap) uint64 {
	var n uint64
	for _, e := range m.Extents() {
		n += uint64(e.Count)
	}
	return n
}
