package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// sizes scales the workloads; --quick shrinks them.
type sizes struct {
	SmallFiles int // files created, stat'ed, read and removed
	TreeFiles  int // files of the host-made tree (ls -lR, find, cp -a)
	BigMiB     int // sequential write and read
}

// workload is one timed guest step, in the order the guest runs them.
type workload struct {
	Name  string // the BENCH line's name
	Label func(s sizes) string
}

var workloads = []workload{
	{"create", func(s sizes) string { return fmt.Sprintf("create %d files", s.SmallFiles) }},
	{"stat", func(s sizes) string { return fmt.Sprintf("stat %d (cold)", s.SmallFiles) }},
	{"read", func(s sizes) string { return fmt.Sprintf("cat %d files", s.SmallFiles) }},
	{"ls-lR", func(s sizes) string { return fmt.Sprintf("ls -lR %d (cold)", s.TreeFiles) }},
	{"find", func(s sizes) string { return fmt.Sprintf("find %d (cold)", s.TreeFiles) }},
	{"cp-a", func(s sizes) string { return fmt.Sprintf("cp -a %d (cold)", s.TreeFiles) }},
	{"write-seq", func(s sizes) string { return fmt.Sprintf("dd write %d MiB+fsync", s.BigMiB) }},
	{"read-seq", func(s sizes) string { return fmt.Sprintf("dd read %d MiB (cold)", s.BigMiB) }},
	// One guest process per vCPU, pinned to it (benchstep @par-files, @par-read): with several
	// request queues a Linux 6.11+ guest sends each vCPU's requests on its own queue.
	{"par-files", func(s sizes) string { return fmt.Sprintf("par create+stat+read %d/CPU", s.SmallFiles/2) }},
	{"par-read", func(s sizes) string { return fmt.Sprintf("par read %d MiB (cold)", s.BigMiB) }},
	{"rm-rf", func(s sizes) string { return "rm -rf all" }},
}

// selectWorkloads keeps only the named workloads (comma separated; "" keeps
// all) in the order the guest runs them.
func selectWorkloads(names string) error {
	if names == "" {
		return nil
	}
	want := map[string]bool{}
	for _, name := range strings.Split(names, ",") {
		name = strings.TrimSpace(name)
		if !slices.ContainsFunc(workloads, func(w workload) bool { return w.Name == name }) {
			return fmt.Errorf("--workloads: no workload %q", name)
		}
		want[name] = true
	}
	workloads = slices.DeleteFunc(slices.Clone(workloads), func(w workload) bool { return !want[w.Name] })
	return nil
}

// guestScript runs the workloads in the share (the working directory) and
// prints one "BENCH name ns" line per step through /bin/benchstep. Caches
// are dropped before each step marked cold, so the daemon is asked again.
// Steps not in workloads are skipped (a step may need the files an earlier
// one makes: stat and cat those of create, the dd read and par-read that of the dd write).
//
// With gated set, each step first prints "BENCH-WAIT name" and waits for a
// line on the console: the host lets one guest at a time run a step (see
// lockstep.go). The caches are dropped after the gate, just before the step.
// After the last step the guest waits at a final gate, "BENCH-WAIT end", so
// that its power-off (seconds of guest CPU under TCG) does not overlap
// another guest's step.
func guestScript(s sizes, gated bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "N=%d\nMIB=%d\nGATED=%v\n", s.SmallFiles, s.BigMiB, gated)
	b.WriteString("W=\"")
	for _, w := range workloads {
		b.WriteString(" " + w.Name)
	}
	b.WriteString(` "
fail=0
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
gate() { [ "$GATED" = true ] || return 0; echo "BENCH-WAIT $1"; read -r _ </dev/console; }
# step NAME warm|cold COMMAND...
step() {
	name=$1 cold=$2; shift 2
	case "$W" in *" $name "*) ;; *) return 0;; esac
	gate "$name"
	[ "$cold" = cold ] && drop
	/bin/benchstep "$name" "$@" || fail=1
}
[ -d tree ] || { echo "BENCH-FAIL setup: no host tree in $(pwd)"; exit 1; }
mkdir small || exit 1
step create warm @create small $N
step stat cold @stat small $N
step read warm cat small/*
step ls-lR cold ls -lR tree
step find cold find tree
step cp-a cold cp -a tree tree2
step write-seq warm dd if=/dev/zero of=big bs=1M count=$MIB conv=fsync
step read-seq cold dd if=big of=/dev/null bs=1M
step par-files warm @par-files par $((N / 2))
step par-read cold @par-read big
step rm-rf warm rm -rf small tree tree2 big par
gate end
exit $fail
`)
	return b.String()
}

// floorPrologue moves the guest script of sysFloor from the share to a tmpfs, with a copy of the
// host tree, before the first step (untimed; in lockstep no guest starts a step before every
// guest reached its first gate). Its cold steps drop caches like the others', which a tmpfs
// keeps: the floor is a lower bound.
const floorPrologue = `mkdir -p /floor && mount -t tmpfs floor /floor && cp -a tree /floor/ && cd /floor || { echo "BENCH-FAIL setup: no tmpfs copy of the tree"; exit 1; }
`

// makeTree creates files regular files under root in 10 top directories of
// 10 subdirectories each, sized 0 to 3840 bytes, owned by uid:gid when
// chown is set. It is the host-made tree the guest lists, walks and copies.
func makeTree(root string, files int, chown bool, uid, gid int) error {
	const top, sub = 10, 10
	leaves := top * sub
	data := make([]byte, 4096)
	for i := range data {
		data[i] = byte('a' + i%26)
	}
	mkdir := func(p string) error {
		if err := os.Mkdir(p, 0o755); err != nil {
			return fmt.Errorf("make benchmark tree: %w", err)
		}
		if chown {
			return os.Lchown(p, uid, gid)
		}
		return nil
	}
	if err := mkdir(root); err != nil {
		return err
	}
	for i := range files {
		leaf := i % leaves
		dir := filepath.Join(root, fmt.Sprintf("d%02d", leaf/sub), fmt.Sprintf("s%02d", leaf%sub))
		if i < leaves {
			if leaf%sub == 0 {
				if err := mkdir(filepath.Dir(dir)); err != nil {
					return err
				}
			}
			if err := mkdir(dir); err != nil {
				return err
			}
		}
		p := filepath.Join(dir, fmt.Sprintf("file%05d.txt", i))
		if err := os.WriteFile(p, data[:(i%16)*256], 0o644); err != nil {
			return fmt.Errorf("make benchmark tree: %w", err)
		}
		if chown {
			if err := os.Lchown(p, uid, gid); err != nil {
				return fmt.Errorf("make benchmark tree: %w", err)
			}
		}
	}
	return nil
}
