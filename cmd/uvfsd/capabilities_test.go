package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"testing"
)

func TestPrintCapabilitiesIsVhostUserJSON(t *testing.T) {
	var buf bytes.Buffer
	printCapabilities(&buf)
	var caps struct {
		Type     string   `json:"type"`
		Features []string `json:"features"`
	}
	if err := json.Unmarshal(buf.Bytes(), &caps); err != nil {
		t.Fatalf("output %q is not JSON: %v", buf.String(), err)
	}
	if caps.Type != "fs" {
		t.Errorf("type = %q, want fs", caps.Type)
	}
	// No migration support, so "migrate-precopy" must not be advertised.
	if len(caps.Features) != 0 {
		t.Errorf("features = %q, want none", caps.Features)
	}
}

// The C virtiofsd shipped with QEMU prints the same document; when it is
// installed, the formatting must match it byte for byte.
func TestPrintCapabilitiesMatchesCVirtiofsd(t *testing.T) {
	const cVirtiofsd = "/usr/lib/qemu/virtiofsd"
	if _, err := os.Stat(cVirtiofsd); err != nil {
		t.Skipf("C virtiofsd not installed (%v); install qemu-system-common to compare", err)
	}
	want, err := exec.Command(cVirtiofsd, "--print-capabilities").Output()
	if err != nil {
		t.Fatalf("%s --print-capabilities: %v", cVirtiofsd, err)
	}
	var got bytes.Buffer
	printCapabilities(&got)
	if got.String() != string(want) {
		t.Errorf("printCapabilities wrote %q, C virtiofsd writes %q", got.String(), want)
	}
}
