package main

import (
	"fmt"
	"io"
)

// printCapabilities prints the vhost-user.json backend capabilities (QEMU
// docs/interop/vhost-user.json) for --print-capabilities, formatted exactly as the Rust virtiofsd
// prints them: both features defined for the "fs" type, "migrate-precopy" (live migration with
// the device state moved through QEMU's migration stream) and "separate-options" (settings are
// flags of their own, --cache=auto, not only -o cache=auto; libvirt then passes them so).
func printCapabilities(w io.Writer) {
	fmt.Fprint(w, "{\n  \"type\": \"fs\",\n  \"features\": [\n    \"migrate-precopy\",\n    \"separate-options\"\n  ]\n}\n")
}
