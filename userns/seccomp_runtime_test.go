package userns

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// runtimeCallsNotAllowed are the system calls the Go runtime knows that a serving daemon never
// makes, and why. Any other call the runtime's sources name must be on the list.
var runtimeCallsNotAllowed = map[string]string{
	"arch_prctl":    "sets the first thread's TLS at start-up; later threads get theirs from clone (CLONE_SETTLS)",
	"brk":           "sbrk0 at start-up (mallocinit)",
	"mincore":       "probes the auxiliary vector at start-up (sysargs)",
	"setitimer":     "CPU profiling, which uvfsd never turns on",
	"timer_create":  "CPU profiling, which uvfsd never turns on",
	"timer_settime": "CPU profiling, which uvfsd never turns on",
	"timer_delete":  "CPU profiling, which uvfsd never turns on",
	"socket":        "Android's log daemon only (write_err_android.go)",
	"connect":       "Android's log daemon only (write_err_android.go)",
	"faccessat":     "Android's log daemon only (write_err_android.go)",
	"pipe2":         "nonblockingPipe, which only the BSDs' poller calls",
	"uname":         "the kernel version, on 32-bit platforms only (os_linux32.go)",
	"epoll_create1": "the poller is made at start-up (netpollinit)",
}

// TestSeccompListCoversTheGoRuntime reads the system calls the Go runtime of this toolchain can
// make (its assembly stubs and internal/runtime/syscall) and checks each against the list. A new
// Go release that adds one fails here, by name, before a daemon dies of it: put it on the list
// (seccomp_list.go) or, with the reason, in runtimeCallsNotAllowed.
func TestSeccompListCoversTheGoRuntime(t *testing.T) {
	if seccompArch == 0 {
		t.Skip("no allow-list for this architecture")
	}
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	goroot := strings.TrimSpace(string(out))
	calls := map[string]uint32{}
	for _, src := range []struct {
		path string
		re   *regexp.Regexp
	}{
		{filepath.Join(goroot, "src/runtime/sys_linux_"+runtime.GOARCH+".s"), regexp.MustCompile(`(?m)^#define\s+SYS_(\w+)\s+(\d+)`)},
		{filepath.Join(goroot, "src/internal/runtime/syscall/linux/defs_linux_"+runtime.GOARCH+".go"), regexp.MustCompile(`(?m)^\s*SYS_(\w+)\s*=\s*(\d+)`)},
	} {
		b, err := os.ReadFile(src.path)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range src.re.FindAllStringSubmatch(string(b), -1) {
			// Named by number: the sources' own names have typos (amd64's SYS_setittimer).
			nr, _ := strconv.Atoi(m[2])
			calls[syscallName(uint32(nr))] = uint32(nr)
		}
	}
	if len(calls) < 20 {
		t.Fatalf("found only %d system calls in the runtime's sources under %s", len(calls), goroot)
	}
	allowed := map[uint32]bool{}
	for _, r := range seccompRules(seccompContext{}) {
		allowed[r.nr] = true
	}
	for name, nr := range calls {
		why, excused := runtimeCallsNotAllowed[name]
		switch {
		case allowed[nr] && excused:
			t.Errorf("%s (%d) is on the list and excused from it (%s): drop one", name, nr, why)
		case !allowed[nr] && !excused:
			t.Errorf("the Go runtime (%s) can make %s (%d), which is not on the seccomp list: add it to seccomp_list.go, or say in runtimeCallsNotAllowed why a serving daemon never makes it",
				runtime.Version(), name, nr)
		}
	}
	for name := range runtimeCallsNotAllowed {
		if _, ok := calls[name]; !ok {
			t.Errorf("runtimeCallsNotAllowed names %s, which the runtime no longer makes: drop it", name)
		}
	}
}
