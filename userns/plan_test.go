package userns

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uvfsd/uvfsd/idmap"
)

// setuidHelper creates a fake newuidmap that passes findHelper.
func setuidHelper(t *testing.T, path string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a setuid-root fake newuidmap")
	}
	writeFile(t, path, "#!/bin/sh\nexit 0\n", os.ModeSetuid|0o755)
}

func TestPlanMapSubordinateRanges(t *testing.T) {
	p, _ := fakePaths(t)
	setuidHelper(t, p.NewUIDMap)
	// Duplicate and overlapping lines, and a range holding the own id:
	// all of this makes the real newuidmap fail with EINVAL.
	writeFile(t, p.SubUID, "alice:100000:65536\nalice:100000:65536\n1000:150000:20000\nalice:900:200\nbob:1:5\n", 0o644)
	pl, err := planMap("uid", idmap.NSMap{}, p.SubUID, p.NewUIDMap, "alice", 1000, 1000, false)
	if err != nil {
		t.Fatal(err)
	}
	want := "0 1000 1\n1 900 100\n101 1001 99\n200 100000 70000\n"
	if pl.m.String() != want || pl.helper != p.NewUIDMap || pl.ownOnly {
		t.Errorf("plan = map %q helper %q ownOnly %v; want map %q via %s", pl.m.String(), pl.helper, pl.ownOnly, want, p.NewUIDMap)
	}
	if !strings.Contains(pl.source, "900-999, 1001-1099, 100000-169999") {
		t.Errorf("source %q does not list the cleaned ranges", pl.source)
	}
}

// shadow's newgidmap finds a user's /etc/subgid lines by name or by uid, never by gid.
func TestPlanMapSubGIDLinesByUID(t *testing.T) {
	p, _ := fakePaths(t)
	setuidHelper(t, p.NewGIDMap)
	writeFile(t, p.SubGID, "1001:200000:65536\n100:300000:65536\n", 0o644)
	pl, err := planMap("gid", idmap.NSMap{}, p.SubGID, p.NewGIDMap, "alice", 1001, 100, false)
	if err != nil {
		t.Fatal(err)
	}
	if want := "0 100 1\n1 200000 65536\n"; pl.m.String() != want {
		t.Errorf("gid map %q, want %q (alice's line is keyed by her uid 1001, not her gid 100)", pl.m.String(), want)
	}
}

func TestPlanMapOwnIDOnly(t *testing.T) {
	p, _ := fakePaths(t) // no subuid file, no helper: neither is needed
	pl, err := planMap("gid", idmap.NSMap{}, p.SubGID, p.NewGIDMap, "alice", 1000, 1000, false)
	if err != nil {
		t.Fatal(err)
	}
	if pl.m.String() != "0 1000 1\n" || pl.helper != "" || !pl.ownOnly {
		t.Errorf("plan = %q helper %q ownOnly %v; want the own id, written directly", pl.m.String(), pl.helper, pl.ownOnly)
	}
}

func TestPlanMapExplicit(t *testing.T) {
	p, _ := fakePaths(t)
	own, err := idmap.ParseMapFlags([]string{":0:1000:1:"})
	if err != nil {
		t.Fatal(err)
	}
	pl, err := planMap("uid", own, p.SubUID, p.NewUIDMap, "alice", 1000, 1000, false)
	if err != nil || pl.helper != "" || pl.m.String() != "0 1000 1\n" {
		t.Errorf("own id only: %+v, %v; want a direct write", pl, err)
	}
	// virtiofsd's README example leaves the own id out; uvfsd cannot.
	readme, _ := idmap.ParseMapFlags([]string{":0:100000:65536:"})
	_, err = planMap("uid", readme, p.SubUID, p.NewUIDMap, "alice", 1000, 1000, false)
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "--uid-map=:0:1000:1: --uid-map=:1:100000:65536:") {
		t.Errorf("own id not at 0: error = %v", err)
	}
	ranges, _ := idmap.ParseMapFlags([]string{":0:1000:1:", ":1:100000:10:"})
	_, err = planMap("uid", ranges, p.SubUID, p.NewUIDMap, "alice", 1000, 1000, false)
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "newuidmap not found") {
		t.Errorf("ranges without newuidmap: error = %v", err)
	}
}

func TestPlanMapBadSubUID(t *testing.T) {
	p, _ := fakePaths(t)
	writeFile(t, p.SubUID, "alice:4294967000:1000\n", 0o644)
	_, err := planMap("uid", idmap.NSMap{}, p.SubUID, p.NewUIDMap, "alice", 1000, 1000, false)
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), p.SubUID) {
		t.Errorf("error = %v, want one naming %s", err, p.SubUID)
	}
}

func TestApplyDirect(t *testing.T) {
	p, _ := fakePaths(t)
	for _, f := range []string{"uid_map", "gid_map", "setgroups"} {
		writeFile(t, filepath.Join(p.Proc, "42", f), "", 0o644)
	}
	uid, _ := planMap("uid", idmap.NSMap{}, p.SubUID, p.NewUIDMap, "", 1000, 1000, false)
	gid, _ := planMap("gid", idmap.NSMap{}, p.SubGID, p.NewGIDMap, "", 1000, 100, false)
	for _, pl := range []mapPlan{uid, gid} {
		if err := pl.apply(p, 42); err != nil {
			t.Fatal(err)
		}
	}
	for f, want := range map[string]string{"uid_map": "0 1000 1\n", "gid_map": "0 100 1\n", "setgroups": "deny"} {
		got, _ := os.ReadFile(filepath.Join(p.Proc, "42", f))
		if string(got) != want {
			t.Errorf("%s = %q, want %q", f, got, want)
		}
	}
	err := uid.apply(p, 43) // no such process
	if err == nil || !strings.Contains(err.Error(), "43/uid_map") {
		t.Errorf("missing process: %v", err)
	}
}

func TestApplyHelperFailure(t *testing.T) {
	p, dir := fakePaths(t)
	helper := filepath.Join(dir, "failing-newuidmap")
	writeFile(t, helper, "#!/bin/sh\necho 'newuidmap: write to uid_map failed: Invalid argument' >&2\nexit 1\n", 0o755)
	m, _ := idmap.PodmanLayout(1000, []idmap.Range{{Start: 100000, Count: 65536}})
	pl := mapPlan{kind: "uid", m: m, helper: helper, source: "these ranges are your lines of /etc/subuid after merging them and removing your own id (100000-165535)"}
	err := pl.apply(p, 77)
	t.Log(err)
	for _, want := range []string{helper + " 77 0 1000 1 1 100000 65536", "write to uid_map failed: Invalid argument", "100000-165535", "exit status 1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

func TestOwnOnlyNote(t *testing.T) {
	p, _ := fakePaths(t)
	own := mapPlan{ownOnly: true}
	note := ownOnlyNote(p, "alice", 1000, own, own, false)
	t.Log(note)
	if !strings.Contains(note, "usermod --add-subuids 100000-165535 --add-subgids 100000-165535 alice") ||
		!strings.Contains(note, p.SubUID+" and "+p.SubGID) {
		t.Errorf("note %q lacks the usermod command or the files", note)
	}
	if note := ownOnlyNote(p, "", 1000, mapPlan{}, own, false); !strings.Contains(note, "for 1000 in "+p.SubGID+";") {
		t.Errorf("nameless user, gid only: %q", note)
	}
	if note := ownOnlyNote(p, "alice", 1000, mapPlan{}, mapPlan{}, false); note != "" {
		t.Errorf("ranges present, note %q", note)
	}
}

func TestPlanUserNamespace(t *testing.T) {
	p, _ := fakePaths(t)
	var stderr bytes.Buffer
	spec, err := planUserNamespace(Options{Paths: &p, Stderr: &stderr}, p)
	if err != nil || len(spec.plans) != 2 || !spec.userNS {
		t.Fatalf("spec %+v, %v", spec, err)
	}
	// The note waits until the child runs: a namespace that then turns
	// out unusable must not leave a note about its maps behind.
	if stderr.Len() != 0 || strings.Count(spec.notes, "usermod --add-subuids") != 1 {
		t.Errorf("stderr %q, notes %q: want the usermod note once, in the notes only", stderr.String(), spec.notes)
	}
	writeFile(t, p.MaxUserNamespaces, "0", 0o644)
	_, err = planUserNamespace(Options{Paths: &p, Stderr: &stderr}, p)
	if err == nil || !strings.Contains(err.Error(), "max_user_namespaces") || !isUnusable(err) {
		t.Errorf("disabled namespaces: %v (unusable: %v)", err, isUnusable(err))
	}
}

// TestPlanUnderNoNewPrivs: newuidmap cannot work under no_new_privs, so
// the own ids alone are mapped, with a note that says why.
func TestPlanUnderNoNewPrivs(t *testing.T) {
	p, _ := fakePaths(t)
	writeFile(t, p.SubUID, "alice:100000:65536\n", 0o644)
	writeFile(t, p.SubGID, "alice:100000:65536\n", 0o644)
	writeFile(t, filepath.Join(p.Proc, "self/status"), "Name:\tuvfsd\nNoNewPrivs:\t1\nSeccomp:\t2\n", 0o644)
	if !noNewPrivs(p) {
		t.Fatal("NoNewPrivs: 1 not seen")
	}
	pl, err := planMap("uid", idmap.NSMap{}, p.SubUID, p.NewUIDMap, "alice", 1000, 1000, true)
	if err != nil || !pl.ownOnly || pl.helper != "" || pl.m.String() != "0 1000 1\n" {
		t.Fatalf("plan %+v (map %q), %v: want the own id alone, written without a helper", pl, pl.m.String(), err)
	}
	if note := ownOnlyNote(p, "alice", 1000, pl, pl, true); !strings.Contains(note, "no_new_privs") || strings.Contains(note, "usermod") {
		t.Errorf("note %q: want the no_new_privs reason and no usermod advice", note)
	}
	explicit, _ := idmap.ParseMapFlags([]string{":0:1000:1:", ":1:100000:65536:"})
	if _, err := planMap("uid", explicit, p.SubUID, p.NewUIDMap, "alice", 1000, 1000, true); err == nil || !strings.Contains(err.Error(), "no_new_privs") {
		t.Errorf("explicit ranges under no_new_privs: %v", err)
	}
}

func TestPlanMapSaysWhenRangesAreLeftOut(t *testing.T) {
	p, _ := fakePaths(t)
	setuidHelper(t, p.NewUIDMap)
	var lines strings.Builder
	for i := range 400 { // separate ranges: more than a map's 340 lines
		fmt.Fprintf(&lines, "alice:%d:10\n", 200000+100*i)
	}
	writeFile(t, p.SubUID, lines.String(), 0o644)
	pl, err := planMap("uid", idmap.NSMap{}, p.SubUID, p.NewUIDMap, "alice", 1000, 1000, false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(pl.note, "left out") || pl.m.Len() != idmap.MaxExtents {
		t.Errorf("note %q with %d map lines; want a note and %d lines", pl.note, pl.m.Len(), idmap.MaxExtents)
	}
}
