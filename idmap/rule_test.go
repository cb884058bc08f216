package idmap_test

import (
	"strings"
	"testing"

	"github.com/uvfsd/uvfsd/idmap"
)

func TestParseRule(t *testing.T) {
	tests := []struct {
		in      string
		want    idmap.Rule
		wantErr string // substring; "" means success
	}{
		{in: "guest:1000:2000:10", want: idmap.Rule{Kind: idmap.RuleGuest, From: 1000, To: 2000, Count: 10}},
		{in: "host:2000:1000:10", want: idmap.Rule{Kind: idmap.RuleHost, From: 2000, To: 1000, Count: 10}},
		{in: "squash-guest:0:1001:4294967295", want: idmap.Rule{Kind: idmap.RuleSquashGuest, From: 0, To: 1001, Count: 4294967295}},
		{in: "squash-host:0:65534:1000", want: idmap.Rule{Kind: idmap.RuleSquashHost, From: 0, To: 65534, Count: 1000}},
		{in: "forbid-guest:0:1", want: idmap.Rule{Kind: idmap.RuleForbidGuest, From: 0, Count: 1}},
		{in: "map:0:1000:1", want: idmap.Rule{Kind: idmap.RuleMap, From: 0, To: 1000, Count: 1}},
		// A squash target is a single id, so only the source range counts;
		// a range may end exactly at 2^32.
		{in: "map:1:0:4294967295", want: idmap.Rule{Kind: idmap.RuleMap, From: 1, To: 0, Count: 4294967295}},
		{in: "squash-guest:4294967294:4294967294:1", want: idmap.Rule{Kind: idmap.RuleSquashGuest, From: 4294967294, To: 4294967294, Count: 1}},
		{in: "squash-guest:4294967294:4294967295:1", wantErr: "no id"},
		{in: "squash-host:0:4294967295:5", wantErr: "no id"},
		{in: "map:0:4294967295:1", wantErr: "target range"},
		{in: "host:0:4294967294:2", wantErr: "target range"},
		{in: "bogus:1:2:3", wantErr: "unknown type"},
		{in: "", wantErr: "unknown type"},
		{in: "guest:1:2", wantErr: "want 4 fields"},
		{in: "forbid-guest:1:2:3", wantErr: "want 3 fields"},
		{in: "map:0:1000:0", wantErr: "count is 0"},
		{in: "map:-1:1000:1", wantErr: "not an id"},
		{in: "map:0:1000:4294967296", wantErr: "not an id"},
		{in: "guest:4294967295:0:2", wantErr: "source range"},
		{in: "guest:0:4294967295:2", wantErr: "target range"},
		{in: "map:2:0:4294967295", wantErr: "source range"},
		{in: "squash-host:2:0:4294967295", wantErr: "source range"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := idmap.ParseRule(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseRule(%q) error = %v, want containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRule(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseRule(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if got.String() != tt.in {
				t.Errorf("String() = %q, want the input back", got.String())
			}
		})
	}
}
