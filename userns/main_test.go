package userns_test

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/uvfsd/uvfsd/idmap"
	"github.com/uvfsd/uvfsd/userns"
	"golang.org/x/sys/unix"
)

// The test binary doubles as a stand-in for uvfsd: with roleEnv set,
// TestMain runs a role instead of the tests. Roles call userns.Enter
// exactly as main does, so the re-exec'd stages land here too.
const (
	roleEnv     = "UVFSD_TEST_ROLE"
	exitEnv     = "UVFSD_TEST_EXIT"       // exit code of the state role
	mountNSEnv  = "UVFSD_TEST_MOUNTNS"    // "1": Options.MountNamespace
	uidMapEnv   = "UVFSD_TEST_UIDMAP"     // comma-separated --uid-map values
	pidFileEnv  = "UVFSD_TEST_PIDFILE"    // where the wait role writes its pid
	sandboxEnv  = "UVFSD_TEST_SANDBOX"    // mode for the sandbox role
	sharedDirEv = "UVFSD_TEST_SHAREDIR"   // shared dir for the sandbox and confine roles
	outsideEnv  = "UVFSD_TEST_OUTSIDE"    // a file beside the share, for the confine role
	maxUserNSEv = "UVFSD_TEST_MAXUSERNS"  // a fake max_user_namespaces file
	noUserNSEnv = "UVFSD_TEST_NOUSERNS"   // "1": Options.NoUserNamespace and Reexec
	noFallbackE = "UVFSD_TEST_NOFALLBACK" // "1": Options.NoFallback
)

// report is what a role prints on stdout for the test to check.
type report struct {
	State    *userns.State
	UIDMap   string // State.UIDs as uid_map text (NSMap has no JSON form)
	GIDMap   string
	UID, GID int
	MountNS  string // readlink /proc/self/ns/mnt
	CapEff   string
	Tasks    []taskCaps
	Sandbox  *sandboxReport
	Confine  *confineReport
	Error    string
}

// confineReport is what a confined process could still do: "ok" or the error.
type confineReport struct {
	Confinement                          userns.Confinement
	ReadInside, CreateInside             string
	ReadOutside, ReopenOutside           string
	CreateOutside, ListParent, ExecShell string
}

type taskCaps struct{ Eff, Prm, Bnd, Amb string }

type sandboxReport struct {
	MarkerByPath, MarkerByRootFD, MarkerByReopen string
	ProcVisible                                  bool
	DotDotIsRoot                                 bool
	// MountPoints are the mount points Jail.MountInfo lists.
	MountPoints []string
}

func runRole(role string) {
	var opts userns.Options
	opts.MountNamespace = os.Getenv(mountNSEnv) == "1"
	opts.NoUserNamespace = os.Getenv(noUserNSEnv) == "1"
	opts.Reexec = opts.NoUserNamespace
	opts.NoFallback = os.Getenv(noFallbackE) == "1"
	if v := os.Getenv(maxUserNSEv); v != "" {
		p := userns.DefaultPaths()
		p.MaxUserNamespaces = v
		opts.Paths = &p
	}
	if v := os.Getenv(uidMapEnv); v != "" {
		m, err := idmap.ParseMapFlags(strings.Split(v, ","))
		if err != nil {
			fail(err)
		}
		opts.UIDMap = m
	}
	st, err := userns.Enter(opts)
	if err != nil {
		fail(err)
	}
	rep := report{State: st, UIDMap: st.UIDs.String(), GIDMap: st.GIDs.String(), UID: os.Getuid(), GID: os.Getgid()}
	rep.MountNS, _ = os.Readlink("/proc/self/ns/mnt")
	switch role {
	case "state":
		rep.CapEff = statusField("/proc/self/status", "CapEff")
	case "wait":
		waitForSignal()
	case "sandbox":
		rep.Sandbox = sandboxChecks()
	case "confine":
		rep.Confine = confineChecks()
	case "caps":
		if err := userns.DropCapabilities(userns.KeptCapabilities); err != nil {
			fail(err)
		}
		rep.Tasks = allTaskCaps()
	default:
		fail(fmt.Errorf("unknown role %q", role))
	}
	json.NewEncoder(os.Stdout).Encode(rep)
	code, _ := strconv.Atoi(os.Getenv(exitEnv))
	os.Exit(code)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "role failed:", err)
	os.Exit(111)
}

// waitForSignal writes our pid, then exits 33 on SIGHUP; other signals
// keep their default action. It gives up after a minute so a broken
// test cannot leave it behind.
func waitForSignal() {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	if err := os.WriteFile(os.Getenv(pidFileEnv), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		fail(err)
	}
	select {
	case <-hup:
		os.Exit(33)
	case <-time.After(time.Minute):
		os.Exit(99)
	}
}

func sandboxChecks() *sandboxReport {
	dir := os.Getenv(sharedDirEv)
	jail, err := userns.Sandbox(os.Getenv(sandboxEnv), dir)
	if err != nil {
		fail(err)
	}
	r := &sandboxReport{}
	marker := "marker"
	if dir == "/" {
		marker = "etc/passwd" // sharing the root: a file every system has
	}
	path := "/" + marker
	if os.Getenv(sandboxEnv) == userns.SandboxNone {
		path = filepath.Join(dir, marker)
	}
	b, _ := os.ReadFile(path)
	r.MarkerByPath = string(b)
	// An O_PATH fd below the root, reopened for reading through
	// /proc/self/fd as the file server will do.
	fd, err := unix.Openat(jail.RootFD, marker, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		fail(fmt.Errorf("openat(RootFD, marker): %w", err))
	}
	r.MarkerByRootFD = "opened"
	rfd, err := unix.Openat(jail.ProcSelfFD, strconv.Itoa(fd), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		fail(fmt.Errorf("reopen via ProcSelfFD: %w", err))
	}
	buf := make([]byte, 64)
	n, _ := unix.Read(rfd, buf)
	r.MarkerByReopen = string(buf[:n])
	_, err = os.Stat("/proc/self")
	r.ProcVisible = err == nil
	var root, up unix.Stat_t
	unix.Stat("/", &root)
	unix.Stat("/../..", &up)
	r.DotDotIsRoot = root.Ino == up.Ino && root.Dev == up.Dev
	r.MountPoints = mountPoints(jail.MountInfo)
	return r
}

// mountPoints lists the mount points (the fifth field) in a mountinfo file.
func mountPoints(mountInfo *os.File) []string {
	if mountInfo == nil {
		return nil
	}
	b, err := io.ReadAll(mountInfo)
	if err != nil {
		fail(err)
	}
	var points []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 {
			points = append(points, f[4])
		}
	}
	return points
}

// confineChecks confines this process to the shared directory and
// then tries, as a bug in uvfsd might, to reach files outside it.
func confineChecks() *confineReport {
	dir, outside := os.Getenv(sharedDirEv), os.Getenv(outsideEnv)
	jail, err := userns.Sandbox(userns.SandboxNone, dir)
	if err != nil {
		fail(err)
	}
	c, err := userns.Confine(jail.RootFD)
	if err != nil {
		fail(err)
	}
	result := func(err error) string {
		if err != nil {
			return err.Error()
		}
		return "ok"
	}
	r := &confineReport{Confinement: c}
	_, err = os.ReadFile(filepath.Join(dir, "marker"))
	r.ReadInside = result(err)
	r.CreateInside = result(os.WriteFile(filepath.Join(dir, "new"), nil, 0o644))
	_, err = os.ReadFile(outside)
	r.ReadOutside = result(err)
	// O_PATH opens are not checked; reading through /proc/self/fd is.
	if fd, err := unix.Open(outside, unix.O_PATH|unix.O_CLOEXEC, 0); err != nil {
		r.ReopenOutside = "O_PATH: " + err.Error()
	} else {
		rfd, err := unix.Openat(jail.ProcSelfFD, strconv.Itoa(fd), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			unix.Close(rfd)
		}
		r.ReopenOutside = result(err)
	}
	r.CreateOutside = result(os.WriteFile(outside+".new", nil, 0o644))
	if fd, err := unix.Openat(jail.RootFD, "..", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
		r.ListParent = result(err)
	} else {
		unix.Close(fd)
		r.ListParent = "ok"
	}
	r.ExecShell = result(exec.Command("/bin/true").Run())
	return r
}

func statusField(path, field string) string {
	b, _ := os.ReadFile(path)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func allTaskCaps() []taskCaps {
	tasks, _ := filepath.Glob("/proc/self/task/*/status")
	var out []taskCaps
	for _, t := range tasks {
		out = append(out, taskCaps{
			Eff: statusField(t, "CapEff"), Prm: statusField(t, "CapPrm"),
			Bnd: statusField(t, "CapBnd"), Amb: statusField(t, "CapAmb"),
		})
	}
	return out
}
