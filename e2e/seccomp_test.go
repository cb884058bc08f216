package e2e

import (
	"os"
	"strings"
	"testing"
)

// envSeccomp gives every uvfsd that uvfsdSpec starts --seccomp=VALUE: UVFSD_E2E_SECCOMP=log runs
// the tests with a filter that names each call outside uvfsd's list instead of killing the
// daemon (README, "seccomp": how to check the list after a Go upgrade).
const envSeccomp = "UVFSD_E2E_SECCOMP"

func seccompArgs() []string {
	if v := os.Getenv(envSeccomp); v != "" {
		return []string{"--seccomp=" + v}
	}
	return nil
}

// seccompDenied is how uvfsd starts the line that reports a call outside its list
// (userns.SuperviseSeccomp).
const seccompDenied = "seccomp: system call outside the list: "

// checkNoSeccompDenials fails the test for each call outside the list that the daemon's output
// reports.
func checkNoSeccompDenials(t *testing.T, output string) {
	t.Helper()
	for line := range strings.Lines(output) {
		if strings.Contains(line, seccompDenied) {
			t.Errorf("uvfsd made a system call outside its seccomp list: %s", strings.TrimSpace(line))
		}
	}
}
