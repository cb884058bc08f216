package main

import (
	"fmt"
	"io"
)

// printCapabilities prints the vhost-user.json backend capabilities
// (QEMU docs/interop/vhost-user.json) for --print-capabilities, formatted
// exactly as virtiofsd prints them. The only feature defined for the "fs"
// type is "migrate-precopy", and uvfsd cannot migrate, so it lists none —
// the same output as QEMU 7.2's C virtiofsd.
func printCapabilities(w io.Writer) {
	fmt.Fprint(w, "{\n  \"type\": \"fs\"\n}\n")
}
