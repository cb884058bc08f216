package idmap_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/uvfsd/uvfsd/idmap"
)

func mustNSMap(t *testing.T, text string) idmap.NSMap {
	t.Helper()
	m, err := idmap.ParseNSMap(text)
	if err != nil {
		t.Fatalf("ParseNSMap(%q): %v", text, err)
	}
	return m
}

func TestNSMapLookups(t *testing.T) {
	// The kernel pads columns with spaces; the podman-unshare layout.
	m := mustNSMap(t, "         0       1000          1\n         1     100000      65536\n")
	tests := []struct {
		ns, host uint32
		ok       bool
	}{
		{ns: 0, host: 1000, ok: true},
		{ns: 1, host: 100000, ok: true},
		{ns: 65536, host: 165535, ok: true},
		{ns: 65537, host: 165536, ok: false},
		{ns: 4294967295, host: 4294967295, ok: false},
	}
	for _, tt := range tests {
		host, ok := m.NSToHost(tt.ns)
		if ok != tt.ok || (ok && host != tt.host) {
			t.Errorf("NSToHost(%d) = %d, %v; want %d, %v", tt.ns, host, ok, tt.host, tt.ok)
		}
		ns, ok := m.HostToNS(tt.host)
		if ok != tt.ok || (ok && ns != tt.ns) {
			t.Errorf("HostToNS(%d) = %d, %v; want %d, %v", tt.host, ns, ok, tt.ns, tt.ok)
		}
	}
	for _, host := range []uint32{0, 999, 1001, 99999} {
		if ns, ok := m.HostToNS(host); ok {
			t.Errorf("HostToNS(%d) = %d, true; want unmapped", host, ns)
		}
	}
	if m.IsIdentity() {
		t.Errorf("IsIdentity() = true for a podman layout")
	}
	if got, want := m.String(), "0 1000 1\n1 100000 65536\n"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := m.HelperArgs(42), []string{"42", "0", "1000", "1", "1", "100000", "65536"}; !reflect.DeepEqual(got, want) {
		t.Errorf("HelperArgs(42) = %q, want %q", got, want)
	}
}

func TestNSMapUnsortedInput(t *testing.T) {
	m := mustNSMap(t, "10 0 5\n0 50 10\n")
	if h, ok := m.NSToHost(12); !ok || h != 2 {
		t.Errorf("NSToHost(12) = %d, %v; want 2", h, ok)
	}
	if n, ok := m.HostToNS(55); !ok || n != 5 {
		t.Errorf("HostToNS(55) = %d, %v; want 5", n, ok)
	}
	if got := m.Extents(); got[0].NS != 0 || got[1].NS != 10 {
		t.Errorf("Extents() not in namespace order: %v", got)
	}
}

func TestNSMapIdentity(t *testing.T) {
	m := mustNSMap(t, "0 0 4294967295\n")
	if !m.IsIdentity() || !idmap.IdentityNSMap().IsIdentity() {
		t.Fatalf("IsIdentity() = false for the initial namespace's map")
	}
	if h, ok := m.NSToHost(4294967294); !ok || h != 4294967294 {
		t.Errorf("NSToHost(4294967294) = %d, %v", h, ok)
	}
	if mustNSMap(t, "0 0 4294967294\n").IsIdentity() {
		t.Errorf("a map one id short is not the identity")
	}
}

func TestNSMapErrors(t *testing.T) {
	tests := []struct{ text, wantErr string }{
		{"0 1000\n", "want \"ns-id host-id count\""},
		{"0 1000 x\n", "invalid syntax"},
		{"0 1000 0\n", "count is 0"},
		{"1 0 4294967295\n", "largest valid id"},
		{"0 4294967294 2\n", "largest valid id"},
		{"0 1000 10\n5 2000 10\n", "overlap inside the namespace"},
		{"0 1000 10\n100 1005 10\n", "overlap on the host"},
		{strings.Repeat("0 0 1\n", 0) + manyLines(341), "at most 340"},
	}
	for _, tt := range tests {
		_, err := idmap.ParseNSMap(tt.text)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseNSMap(%.40q) error = %v, want containing %q", tt.text, err, tt.wantErr)
		}
	}
	if _, err := idmap.ParseNSMap(manyLines(340)); err != nil {
		t.Errorf("340 lines: %v", err)
	}
}

func manyLines(n int) string {
	var b strings.Builder
	for i := range n {
		e := idmap.Extent{NS: uint32(i * 2), Host: uint32(1000 + i*2), Count: 1}
		b.WriteString(e.String() + "\n")
	}
	return b.String()
}

func TestReadNSMap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "uid_map")
	if err := os.WriteFile(path, []byte("0 1000 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := idmap.ReadNSMap(path)
	if err != nil || m.Len() != 1 {
		t.Fatalf("ReadNSMap = %v, %v", m, err)
	}
	if _, err := idmap.ReadNSMap(path + ".missing"); err == nil {
		t.Errorf("ReadNSMap of a missing file succeeded")
	}
	// The real file of this process parses, whatever the namespace.
	self, err := idmap.ReadSelfUIDMap()
	if err != nil || self.Len() == 0 {
		t.Fatalf("ReadSelfUIDMap = %v, %v", self, err)
	}
	if _, ok := self.NSToHost(uint32(os.Getuid())); !ok {
		t.Errorf("own uid %d is not in /proc/self/uid_map %q", os.Getuid(), self)
	}
	if _, err := idmap.ReadSelfGIDMap(); err != nil {
		t.Errorf("ReadSelfGIDMap: %v", err)
	}
}

func TestMapsHostRange(t *testing.T) {
	m := mustNSMap(t, "0 1000 1\n1 1001 10\n20 5000 5\n") // host 1000-1010 in two extents, 5000-5004
	for _, c := range []struct {
		lo, hi uint32
		want   bool
	}{
		{1000, 1000, true}, {1000, 1010, true}, {1005, 1010, true}, {5000, 5004, true},
		{999, 1000, false}, {1000, 1011, false}, {1010, 5000, false}, {5004, 5005, false}, {0, 4294967295, false},
	} {
		if got := m.MapsHostRange(c.lo, c.hi); got != c.want {
			t.Errorf("MapsHostRange(%d, %d) = %v, want %v", c.lo, c.hi, got, c.want)
		}
	}
	if !idmap.IdentityNSMap().MapsHostRange(0, 4294967294) {
		t.Error("the identity map does not map every id")
	}
}
