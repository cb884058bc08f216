package fuse

import "testing"

func TestServedHasARowPerOpcode(t *testing.T) {
	var s Server
	if len(s.served) < len(opTable) {
		t.Fatalf("Server.served has %d counters for %d opcodes in opTable", len(s.served), len(opTable))
	}
}

func TestGatherAt(t *testing.T) {
	bufs := [][]byte{[]byte("head"), nil, []byte("er"), []byte("payload")}
	for _, tc := range []struct {
		off, size int
		want      string
	}{
		{0, 6, "header"},
		{4, 5, "erpay"},
		{6, 100, "payload"},
		{13, 4, ""},
		{2, 0, ""},
	} {
		dst := make([]byte, tc.size)
		n := gatherAt(dst, bufs, tc.off)
		if string(dst[:n]) != tc.want {
			t.Errorf("gatherAt(off %d, %d bytes) = %q, want %q", tc.off, tc.size, dst[:n], tc.want)
		}
	}
}
