package userns

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// handshakeFiles opens the pipes named by envPipes.
func handshakeFiles() (in, out *os.File, err error) {
	fds := strings.Split(os.Getenv(envPipes), ",")
	if len(fds) != 2 {
		return nil, nil, fmt.Errorf("%s=%q: want two fds; do not set %s yourself", envPipes, os.Getenv(envPipes), envStage)
	}
	var n [2]int
	for i, s := range fds {
		if n[i], err = strconv.Atoi(s); err != nil {
			return nil, nil, fmt.Errorf("%s=%q: %w", envPipes, os.Getenv(envPipes), err)
		}
	}
	return os.NewFile(uintptr(n[0]), "handshake-in"), os.NewFile(uintptr(n[1]), "handshake-out"), nil
}

// runStage1 runs in the new user namespace before it has maps: it
// waits for them and execs stage 2, which then has capabilities. Its
// pipe fds stay open across the exec.
func runStage1() error {
	in, out, err := handshakeFiles()
	if err != nil {
		return err
	}
	if err := send(out, message{Step: stepChildHello}); err != nil {
		return err
	}
	if _, err := waitFor(json.NewDecoder(in), stepMapsWritten); err != nil {
		return err
	}
	os.Setenv(envStage, "2")
	err = syscall.Exec("/proc/self/exe", os.Args, os.Environ())
	return fmt.Errorf("re-executing /proc/self/exe in the namespace: %w", err)
}

// enterStage2 finishes setup in the re-exec'ed child and tells the
// parent whether it succeeded.
func enterStage2(p Paths) (*State, error) {
	in, out, err := handshakeFiles()
	if err != nil {
		return nil, err
	}
	parent, _ := strconv.Atoi(os.Getenv(envParent))
	if s := os.Getenv(envFiles); s != "" {
		for _, f := range strings.Split(s, ",") {
			fd, err := strconv.Atoi(f)
			if err != nil {
				return nil, fmt.Errorf("%s=%q: %w", envFiles, s, err)
			}
			unix.CloseOnExec(fd) // the daemon does not pass them on
			inherited = append(inherited, os.NewFile(uintptr(fd), "inherited"))
		}
	}
	mountNS, userNS := os.Getenv(envMountNS) == "1", os.Getenv(envUserNS) == "1"
	fallback := os.Getenv(envFallbackOf)
	for _, k := range markers {
		os.Unsetenv(k)
	}
	defer in.Close()
	defer out.Close()
	st, err := setupStage2(p, parent, mountNS)
	if err != nil {
		if userNS && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)) {
			// The namespace exists but grants nothing (AppArmor):
			// the parent falls back or reports it, so say nothing here.
			send(out, message{Step: stepChildFailed, Error: err.Error(), Unusable: true,
				Reason: "uvfsd has no capabilities in its user namespace (" + capabilityDenier(p) + ")"})
			os.Exit(125)
		}
		send(out, message{Step: stepChildFailed, Error: err.Error()})
		return nil, err
	}
	st.Fallback = fallback
	st.Reexeced = true
	if err := send(out, message{Step: stepChildReady}); err != nil {
		return nil, err
	}
	return st, nil
}

func setupStage2(p Paths, parent int, mountNS bool) (*State, error) {
	// Gaining capabilities by exec cleared the parent-death signal set
	// at fork; set it again, then make sure the parent did not die
	// before it was set.
	runtime.LockOSThread()
	err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
	runtime.UnlockOSThread()
	if err != nil {
		return nil, fmt.Errorf("setting the parent-death signal: %w", err)
	}
	if os.Getppid() != parent {
		return nil, fmt.Errorf("the parent uvfsd process (pid %d) exited during start-up", parent)
	}
	if mountNS {
		// The mount namespace is a copy of the parent's; keep mounts
		// made here (the sandbox) from propagating out. This is also
		// the first privileged operation, so it shows early whether we
		// have capabilities at all.
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return nil, fmt.Errorf("making mounts private in the new mount namespace: %w", explainNamespaceEPERM(p, err))
		}
	}
	st, err := currentState(p)
	if err != nil {
		return nil, err
	}
	st.MountNamespace = mountNS
	mountNamespaceReady = mountNS
	return st, nil
}

// capabilityDenier names what likely strips a new user namespace of its
// capabilities.
func capabilityDenier(p Paths) string {
	if readSysctl(p.AppArmorRestrict) == "1" {
		return "AppArmor restricts unprivileged user namespaces: " + p.AppArmorRestrict + " is 1"
	}
	return "a security module or container forbids them"
}

// mountNamespaceReady records that this process has a private mount
// namespace, which Sandbox("namespace") requires.
var mountNamespaceReady bool
