package main

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
)

// backendCaps is a vhost-user.json backend description, or what --print-capabilities prints.
type backendCaps struct {
	Description string   `json:"description"`
	Type        string   `json:"type"`
	Binary      string   `json:"binary"`
	Features    []string `json:"features"`
}

func TestPrintCapabilitiesIsVhostUserJSON(t *testing.T) {
	var buf bytes.Buffer
	printCapabilities(&buf)
	var caps backendCaps
	if err := json.Unmarshal(buf.Bytes(), &caps); err != nil {
		t.Fatalf("output %q is not JSON: %v", buf.String(), err)
	}
	if caps.Type != "fs" {
		t.Errorf("type = %q, want fs", caps.Type)
	}
	// No migration support, so "migrate-precopy" must not be advertised; every setting is a flag
	// of its own, so "separate-options" is.
	if !slices.Equal(caps.Features, []string{"separate-options"}) {
		t.Errorf("features = %q, want [separate-options]", caps.Features)
	}
}

// The output is the Rust virtiofsd 1.13.2's (testdata, captured from it) byte for byte, less the
// feature uvfsd does not have.
func TestPrintCapabilitiesMatchesVirtiofsd(t *testing.T) {
	rust, err := os.ReadFile("testdata/virtiofsd-1.13.2-print-capabilities.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(string(rust), "    \"migrate-precopy\",\n", "", 1)
	if want == string(rust) {
		t.Fatalf("testdata has no migrate-precopy line to drop:\n%s", rust)
	}
	var got bytes.Buffer
	printCapabilities(&got)
	if got.String() != want {
		t.Errorf("printCapabilities wrote\n%s\nwant (virtiofsd's without migrate-precopy)\n%s", got.String(), want)
	}
}
