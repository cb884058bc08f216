package idmap_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/uvfsd/uvfsd/idmap"
)

func mustTranslation(t *testing.T, flags ...string) *idmap.Translation {
	t.Helper()
	tr, err := idmap.ParseTranslation(flags)
	if err != nil {
		t.Fatalf("ParseTranslation(%q): %v", flags, err)
	}
	return tr
}

func TestTranslationLookups(t *testing.T) {
	tr := mustTranslation(t,
		"guest:100:5000:10",     // guest 100..109 → host 5000..5009
		"squash-guest:200:7:50", // guest 200..249 → host 7
		"forbid-guest:300:5",    // guest 300..304 refused
		"map:1000:9000:2",       // guest 1000,1001 ↔ host 9000,9001
		"host:5000:100:5",       // host 5000..5004 → guest 100..104
		"squash-host:0:65534:10",
	)
	g2h := []struct {
		guest, host uint32
		forbidden   bool
	}{
		{guest: 99, host: 99},
		{guest: 100, host: 5000},
		{guest: 109, host: 5009},
		{guest: 110, host: 110},
		{guest: 200, host: 7},
		{guest: 249, host: 7},
		{guest: 250, host: 250},
		{guest: 299, host: 299},
		{guest: 300, forbidden: true},
		{guest: 304, forbidden: true},
		{guest: 305, host: 305},
		{guest: 1000, host: 9000},
		{guest: 1001, host: 9001},
		{guest: 1002, host: 1002},
		{guest: 4294967295, host: 4294967295},
	}
	for _, tt := range g2h {
		host, err := tr.GuestToHost(tt.guest)
		if tt.forbidden {
			if !errors.Is(err, idmap.ErrForbidden) {
				t.Errorf("GuestToHost(%d) error = %v, want ErrForbidden", tt.guest, err)
			}
			continue
		}
		if err != nil || host != tt.host {
			t.Errorf("GuestToHost(%d) = %d, %v; want %d", tt.guest, host, err, tt.host)
		}
	}
	h2g := []struct{ host, guest uint32 }{
		{0, 65534}, {9, 65534}, {10, 10},
		{5000, 100}, {5004, 104}, {5005, 5005}, // host rule covers only 5 ids
		{9000, 1000}, {9001, 1001}, {9002, 9002},
		{7, 65534}, // squash-guest has no reverse direction
	}
	for _, tt := range h2g {
		if got := tr.HostToGuest(tt.host); got != tt.guest {
			t.Errorf("HostToGuest(%d) = %d, want %d", tt.host, got, tt.guest)
		}
	}
}

func TestTranslationEmpty(t *testing.T) {
	var nilTr *idmap.Translation
	for _, tr := range []*idmap.Translation{nilTr, mustTranslation(t)} {
		if !tr.Empty() {
			t.Errorf("Empty() = false for a translation without rules")
		}
		if h, err := tr.GuestToHost(1234); h != 1234 || err != nil {
			t.Errorf("GuestToHost(1234) = %d, %v; want identity", h, err)
		}
		if g := tr.HostToGuest(4321); g != 4321 {
			t.Errorf("HostToGuest(4321) = %d; want identity", g)
		}
	}
	if mustTranslation(t, "host:1:1:1").Empty() {
		t.Errorf("Empty() = true with a host rule")
	}
}

func TestTranslationOverlap(t *testing.T) {
	tests := []struct {
		flags   []string
		wantErr string
	}{
		{[]string{"guest:0:100:10", "squash-guest:5:1:10"}, `"guest:0:100:10" and "squash-guest:5:1:10" both cover guest ids 5-9`},
		{[]string{"forbid-guest:10:1", "map:0:100:11"}, "guest ids 10-10"},
		{[]string{"host:0:100:10", "map:100:9:1"}, "both cover host ids 9-9"},
		{[]string{"squash-host:0:1:4294967295", "host:4294967294:0:1"}, "host ids 4294967294-4294967294"},
	}
	for _, tt := range tests {
		_, err := idmap.ParseTranslation(tt.flags)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseTranslation(%q) error = %v, want containing %q", tt.flags, err, tt.wantErr)
		}
	}
	// Ranges in different directions, or adjacent, may share numbers.
	ok := [][]string{
		{"guest:0:100:10", "host:0:100:10"},
		{"guest:0:100:10", "guest:10:200:10"},
		{"squash-guest:0:1001:4294967295", "host:1001:1000:1"},
	}
	for _, flags := range ok {
		if _, err := idmap.ParseTranslation(flags); err != nil {
			t.Errorf("ParseTranslation(%q): %v", flags, err)
		}
	}
}

func TestNewTranslationValidatesRules(t *testing.T) {
	_, err := idmap.NewTranslation([]idmap.Rule{{Kind: idmap.RuleMap, From: 1, To: 1, Count: 0}})
	if err == nil || !strings.Contains(err.Error(), "count is 0") {
		t.Fatalf("error = %v, want count is 0", err)
	}
}
