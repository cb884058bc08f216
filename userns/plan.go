package userns

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/uvfsd/uvfsd/idmap"
)

// mapPlan is the uid_map or gid_map stage 0 writes for the child.
type mapPlan struct {
	kind    string // "uid" or "gid"
	m       idmap.NSMap
	helper  string // resolved newuidmap/newgidmap; "" writes the map directly
	source  string // where the ranges came from and what to check, for errors
	ownOnly bool   // no subordinate ranges were found
	note    string // something to tell the user, or ""
}

// planMap chooses the map for one id kind: the explicit --uid-map or
// --gid-map if given, else the podman-unshare layout of the cleaned
// subordinate ranges, else the own id alone.
//
// Lines of /etc/subuid and /etc/subgid alike belong to a user by name or by uid (as shadow's
// newuidmap and newgidmap read them), so user and uid name the owner; own is the id to map at 0
// (the uid or the gid). noHelpers says that newuidmap and newgidmap cannot work here
// (no_new_privs): the own id alone is mapped then.
func planMap(kind string, explicit idmap.NSMap, subPath, helperName, user string, uid, own uint32, noHelpers bool) (mapPlan, error) {
	pl := mapPlan{kind: kind}
	if explicit.Len() > 0 {
		if host, ok := explicit.NSToHost(0); !ok || host != own {
			// Unlike virtiofsd, which forks without exec, a Go program
			// must exec inside the namespace, and exec grants
			// capabilities only to ns root.
			return pl, fmt.Errorf("--%s-map must map your own %s %d to 0 in the namespace, because uvfsd re-executes itself there and only "+
				"namespace root keeps its capabilities: e.g. --%s-map=:0:%d:1: --%s-map=:1:100000:65536: (the ranges from /etc/sub%s)", kind, kind, own, kind, own, kind, kind)
		}
		pl.m = explicit
		pl.source = fmt.Sprintf("these ranges come from --%s-map: check that %s grants them to you", kind, subPath)
		if ext := explicit.Extents(); len(ext) == 1 && ext[0].Host == own && ext[0].Count == 1 {
			return pl, nil // the kernel lets us write our own id ourselves
		}
		if noHelpers {
			return pl, fmt.Errorf("--%s-map needs new%smap, which cannot work under no_new_privs (set on this process by a container or service manager): "+
				"drop --%s-map to map only your own id", kind, kind, kind)
		}
	} else if noHelpers {
		// newuidmap's setuid bit does nothing under no_new_privs.
		m, err := idmap.PodmanLayout(own, nil)
		if err != nil {
			return pl, err
		}
		pl.m, pl.ownOnly = m, true
		return pl, nil
	} else {
		ranges, err := idmap.ReadSubIDs(subPath, user, uid)
		if err != nil {
			return pl, fmt.Errorf("reading your subordinate %ss: %w", kind, err)
		}
		clean, truncated, err := idmap.CleanSubIDRanges(ranges, own)
		if err != nil {
			return pl, fmt.Errorf("%s: %w", subPath, err)
		}
		if truncated {
			pl.note = fmt.Sprintf("uvfsd: note: %s grants you more separate ranges than a user namespace's map holds (%d lines); the highest ones are left out\n",
				subPath, idmap.MaxExtents)
		}
		if pl.m, err = idmap.PodmanLayout(own, clean); err != nil {
			return pl, fmt.Errorf("%s: %w", subPath, err)
		}
		if len(clean) == 0 {
			pl.ownOnly = true
			return pl, nil
		}
		pl.source = fmt.Sprintf("these ranges are your lines of %s after merging them and removing your own id (%s): "+
			"check that they are yours and overlap no other user's", subPath, formatRanges(clean))
	}
	helper, err := findHelper(helperName, "new"+kind+"map")
	if err != nil {
		return pl, err
	}
	pl.helper = helper
	return pl, nil
}

func formatRanges(rs []idmap.Range) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = r.String()
	}
	return strings.Join(s, ", ")
}

// apply writes the map for process pid.
func (pl mapPlan) apply(p Paths, pid int) error {
	if pl.helper != "" {
		args := pl.m.HelperArgs(pid)
		out, err := exec.Command(pl.helper, args...).CombinedOutput()
		if err != nil {
			return mapWriteUnusable(pl.kind, fmt.Errorf("%s %s failed: %w: %s; %s",
				pl.helper, strings.Join(args, " "), err, strings.TrimSpace(string(out)), pl.source))
		}
		return nil
	}
	dir := filepath.Join(p.Proc, strconv.Itoa(pid))
	if pl.kind == "gid" {
		// Unprivileged writers must give up setgroups before gid_map.
		if err := os.WriteFile(filepath.Join(dir, "setgroups"), []byte("deny"), 0); err != nil {
			return mapWriteUnusable(pl.kind, fmt.Errorf("writing %s/setgroups: %w", dir, explainNamespaceEPERM(p, err)))
		}
	}
	file := filepath.Join(dir, pl.kind+"_map")
	if err := os.WriteFile(file, []byte(pl.m.String()), 0); err != nil {
		return mapWriteUnusable(pl.kind, fmt.Errorf("writing %q to %s: %w", pl.m.String(), file, explainNamespaceEPERM(p, err)))
	}
	return nil
}

// ownOnlyNote tells the user, once, why only their own ids are mapped
// and how to get more.
func ownOnlyNote(p Paths, user string, uid uint32, uidPlan, gidPlan mapPlan, noHelpers bool) string {
	var missing []string
	if uidPlan.ownOnly {
		missing = append(missing, p.SubUID)
	}
	if gidPlan.ownOnly {
		missing = append(missing, p.SubGID)
	}
	if len(missing) == 0 {
		return ""
	}
	if noHelpers {
		return "uvfsd: note: no_new_privs is set on this process (by a container or service manager), so newuidmap and newgidmap cannot map " +
			"your subordinate ids; only your own id is mapped (as 0 in the namespace), so files the guest creates as other users will belong to you.\n"
	}
	who := user
	if who == "" {
		who = strconv.FormatUint(uint64(uid), 10)
	}
	return fmt.Sprintf("uvfsd: no subordinate ids for %s in %s; only your own id is mapped (as 0 in the namespace), "+
		"so files the guest creates as other users will belong to you.\n"+
		"uvfsd: to map 65536 more ids, as root run: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 %s "+
		"(pick a range no other line of /etc/subuid or /etc/subgid uses)\n",
		who, strings.Join(missing, " and "), who)
}
