package main

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/userns"
)

// installSeccomp puts the allow-list filter (--seccomp) on every thread of the daemon: the last
// step of setup, before the first guest request. supervisor is, under --seccomp=log, the socket
// to the process uvfsd was started as, which logs the calls outside the list.
func installSeccomp(cfg *Config, supervisor *os.File, lg *logger) error {
	if cfg.Seccomp == userns.SeccompNone {
		lg.debugf("--seccomp=none: no seccomp filter")
		return nil
	}
	n, err := userns.InstallSeccomp(userns.SeccompOptions{Action: cfg.Seccomp, Syslog: cfg.Syslog, Supervisor: supervisor})
	if errors.Is(err, userns.ErrSeccompUnavailable) {
		lg.warnf("%v", err)
		return nil
	}
	if err != nil {
		return err
	}
	other := map[string]string{
		userns.SeccompKill: "kills the daemon",
		userns.SeccompLog:  "is logged and runs",
		userns.SeccompTrap: "stops the daemon with its stack",
	}[cfg.Seccomp]
	lg.infof("seccomp: %d system calls allowed, any other %s (--seccomp=%s)", n, other, cfg.Seccomp)
	probeSeccomp(os.Getenv(envSeccompProbe) != "", lg)
	return nil
}

// envSeccompProbe makes the daemon, once filtered, make a system call outside the list: the
// tests check that --seccomp=kill kills it and that --seccomp=log names the call and lets it run.
const envSeccompProbe = "_UVFSD_TEST_SECCOMP_PROBE"

// probeCall is personality(0xffffffff), which only reads the process's execution domain and which
// neither uvfsd nor the Go runtime makes.
const probeCall = unix.SYS_PERSONALITY

func probeSeccomp(probe bool, lg *logger) {
	if !probe {
		return
	}
	r, _, e := unix.Syscall(probeCall, 0xffffffff, 0, 0)
	lg.warnf("seccomp probe: personality(0xffffffff) returned %#x, errno %d", r, e)
}
