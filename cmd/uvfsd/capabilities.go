package main

import (
	"fmt"
	"io"
)

// printCapabilities prints the vhost-user.json backend capabilities (QEMU
// docs/interop/vhost-user.json) for --print-capabilities, formatted exactly as the Rust virtiofsd
// prints them. Of the two features defined for the "fs" type, uvfsd has "separate-options" (it
// takes its settings as flags of their own, --cache=auto, not only as -o cache=auto; libvirt then
// passes them so) and not "migrate-precopy": it cannot migrate.
func printCapabilities(w io.Writer) {
	fmt.Fprint(w, "{\n  \"type\": \"fs\",\n  \"features\": [\n    \"separate-options\"\n  ]\n}\n")
}
