package idmap_test

import (
	"strings"
	"testing"

	"github.com/uvfsd/uvfsd/idmap"
)

func TestParseMapFlag(t *testing.T) {
	tests := []struct {
		in      string
		want    idmap.Extent
		wantErr string
	}{
		{in: ":0:1000:1:", want: idmap.Extent{NS: 0, Host: 1000, Count: 1}},
		{in: ":0:100000:65536:", want: idmap.Extent{NS: 0, Host: 100000, Count: 65536}},
		{in: "/1/2/3/", want: idmap.Extent{NS: 1, Host: 2, Count: 3}},
		{in: "x5x6x7x", want: idmap.Extent{NS: 5, Host: 6, Count: 7}},
		{in: "→5→6→7→", want: idmap.Extent{NS: 5, Host: 6, Count: 7}},
		{in: "", wantErr: "first character is the separator"},
		{in: "0:1000:1", wantErr: "first character is the separator"},
		{in: ":0:1000:1", wantErr: `want ":namespace_id:host_id:count:"`},
		{in: ":0:1000:1:2:", wantErr: "want"},
		{in: ":0:1000:x:", wantErr: `"x" is not a number`},
		{in: ":0:4294967296:1:", wantErr: "not a number"},
	}
	for _, tt := range tests {
		got, err := idmap.ParseMapFlag(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseMapFlag(%q) error = %v, want containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseMapFlag(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseMapFlags(t *testing.T) {
	m, err := idmap.ParseMapFlags([]string{":0:1000:1:", ":1:100000:65536:"})
	if err != nil {
		t.Fatal(err)
	}
	if h, ok := m.NSToHost(2); !ok || h != 100001 {
		t.Errorf("NSToHost(2) = %d, %v", h, ok)
	}
	bad := []struct {
		in      []string
		wantErr string
	}{
		{[]string{":0:1000:0:"}, "count is 0"},
		{[]string{":0:1000:10:", ":5:2000:1:"}, "overlap inside the namespace"},
		{[]string{":0:1000:10:", ":20:1009:1:"}, "overlap on the host"},
		{[]string{":1:0:4294967295:"}, "largest valid id"},
		{[]string{"bad"}, "separator"},
	}
	for _, tt := range bad {
		_, err := idmap.ParseMapFlags(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseMapFlags(%q) error = %v, want containing %q", tt.in, err, tt.wantErr)
		}
	}
}
