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
	if !slices.Equal(caps.Features, []string{"migrate-precopy", "separate-options"}) {
		t.Errorf("features = %q, want [migrate-precopy separate-options]", caps.Features)
	}
}

// The output is the Rust virtiofsd 1.13.2's (testdata, captured from it) byte for byte.
func TestPrintCapabilitiesMatchesVirtiofsd(t *testing.T) {
	rust, err := os.ReadFile("testdata/virtiofsd-1.13.2-print-capabilities.txt")
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	printCapabilities(&got)
	if got.String() != string(rust) {
		t.Errorf("printCapabilities wrote\n%s\nwant (virtiofsd's)\n%s", got.String(), rust)
	}
}

// packaging/50-uvfsd.json, which make install puts where libvirt looks for vhost-user backends,
// describes uvfsd as --print-capabilities does, in the form of QEMU's vhost-user.json schema.
func TestVhostUserDescription(t *testing.T) {
	data, err := os.ReadFile("../../packaging/50-uvfsd.json")
	if err != nil {
		t.Fatal(err)
	}
	var desc backendCaps
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&desc); err != nil {
		t.Fatalf("50-uvfsd.json: %v", err)
	}
	var printed bytes.Buffer
	printCapabilities(&printed)
	var caps backendCaps
	if err := json.Unmarshal(printed.Bytes(), &caps); err != nil {
		t.Fatal(err)
	}
	if desc.Description == "" || desc.Type != "fs" || !slices.Equal(desc.Features, caps.Features) {
		t.Errorf("50-uvfsd.json: %+v; want a description, type fs and the features %q", desc, caps.Features)
	}
	// The Makefile rewrites this line for the installed binary's path.
	if !strings.HasPrefix(desc.Binary, "/") || !strings.HasSuffix(desc.Binary, "/uvfsd") ||
		!strings.Contains(string(data), "\n  \"binary\": \""+desc.Binary+"\",\n") {
		t.Errorf("50-uvfsd.json: binary %q, want an absolute path to uvfsd on a line of its own", desc.Binary)
	}
}
