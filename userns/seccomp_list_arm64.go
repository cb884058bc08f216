package userns

import "golang.org/x/sys/unix"

const seccompArch = unix.AUDIT_ARCH_AARCH64

// archCloneFlags: the runtime's clone on arm64 sets no TLS in the call (sys_linux_arm64.s).
const archCloneFlags = 0
