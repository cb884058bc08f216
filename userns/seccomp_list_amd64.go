package userns

import "golang.org/x/sys/unix"

const seccompArch = unix.AUDIT_ARCH_X86_64

// archCloneFlags: the runtime's clone on amd64 sets the new thread's TLS in the call.
const archCloneFlags = unix.CLONE_SETTLS
