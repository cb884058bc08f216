package fuse

import "testing"

func TestServedHasARowPerOpcode(t *testing.T) {
	var s Server
	if len(s.served) < len(opTable) {
		t.Fatalf("Server.served has %d counters for %d opcodes in opTable", len(s.served), len(opTable))
	}
}
