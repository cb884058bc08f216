package vhost

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLookupGroup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "group")
	db := "# kvm:x:1:\n" + // a comment, not a group
		"root:x:0:\n" +
		"+kvmnis:::\n" +
		"kvm:x:993:alice,bob\n" +
		"kvm2:x:994\r\n" + // no member list, DOS line end
		"broken:x:abc:\n" +
		"short:x\n" +
		"last:x:4000000000:" // no final newline
	if err := os.WriteFile(path, []byte(db), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		gid     int
		wantErr string
	}{
		{"kvm", 993, ""},
		{"kvm2", 994, ""},
		{"root", 0, ""},
		{"last", 4000000000, ""},
		{"kv", 0, "no group kv"},
		{"broken", 0, "not a number"},
		{"short", 0, "no group short"},
		{"# kvm", 0, "not a group name"},
		{"+kvmnis", 0, "not a group name"},
		{"a:b", 0, "not a group name"},
		{"", 0, "not a group name"},
	} {
		gid, err := lookupGroup(path, c.name)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("lookupGroup(%q) = %d, %v; want an error containing %q", c.name, gid, err, c.wantErr)
			}
			continue
		}
		if err != nil || gid != c.gid {
			t.Errorf("lookupGroup(%q) = %d, %v; want %d", c.name, gid, err, c.gid)
		}
	}
	if _, err := lookupGroup(filepath.Join(t.TempDir(), "none"), "kvm"); err == nil || !strings.Contains(err.Error(), "group database") {
		t.Errorf("lookupGroup on a missing file: %v", err)
	}
}
