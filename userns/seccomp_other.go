//go:build !amd64 && !arm64

package userns

// seccompArch 0: no allow-list for this architecture (InstallSeccomp says so).
const seccompArch = 0

var syscallNames []string

const archCloneFlags = 0
