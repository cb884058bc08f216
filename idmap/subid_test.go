package idmap_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/uvfsd/uvfsd/idmap"
)

func TestParseSubIDs(t *testing.T) {
	file := `# comment
alice:100000:65536
bob:165536:65536

1000:300000:10
alice:0:0
carol:garbage
alice:400000:5
`
	got, err := idmap.ParseSubIDs(strings.NewReader(file), "alice", 1000)
	if err != nil {
		t.Fatal(err)
	}
	want := []idmap.Range{{100000, 65536}, {300000, 10}, {400000, 5}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseSubIDs(alice, 1000) = %v, want %v", got, want)
	}
	// Without a name only the numeric lines match.
	got, err = idmap.ParseSubIDs(strings.NewReader(file), "", 1000)
	if err != nil || !reflect.DeepEqual(got, []idmap.Range{{300000, 10}}) {
		t.Errorf("ParseSubIDs(\"\", 1000) = %v, %v", got, err)
	}
	got, err = idmap.ParseSubIDs(strings.NewReader(file), "dave", 1001)
	if err != nil || len(got) != 0 {
		t.Errorf("ParseSubIDs(dave) = %v, %v; want none", got, err)
	}
}

func TestParseSubIDsErrors(t *testing.T) {
	tests := []struct{ file, wantErr string }{
		{"alice:1:2:3\n", `line 1 "alice:1:2:3": want 3 fields`},
		{"x:1:1\nalice:x:1\n", "line 2"},
		{"alice:1:-1\n", "bad count"},
		{"alice:4294967290:10\n", "largest valid id"},
	}
	for _, tt := range tests {
		_, err := idmap.ParseSubIDs(strings.NewReader(tt.file), "alice", 1000)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseSubIDs(%q) error = %v, want containing %q", tt.file, err, tt.wantErr)
		}
	}
}

func TestReadSubIDs(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "subuid")
	if err := os.WriteFile(path, []byte("alice:100000:65536\nalice:bad\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := idmap.ReadSubIDs(path, "alice", 1000); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("error %v does not name the file", err)
	}
	got, err := idmap.ReadSubIDs(filepath.Join(dir, "missing"), "alice", 1000)
	if err != nil || got != nil {
		t.Errorf("missing file: %v, %v; want no ranges and no error", got, err)
	}
}

func TestCleanSubIDRanges(t *testing.T) {
	tests := []struct {
		name      string
		in        []idmap.Range
		own       uint32
		want      []idmap.Range
		truncated bool
	}{
		{name: "nothing", in: nil, own: 1000, want: nil},
		{name: "one", in: []idmap.Range{{100000, 65536}}, own: 1000, want: []idmap.Range{{100000, 65536}}},
		{name: "duplicate lines", in: []idmap.Range{{100000, 65536}, {100000, 65536}}, own: 1000,
			want: []idmap.Range{{100000, 65536}}},
		{name: "unsorted overlap", in: []idmap.Range{{200, 100}, {100, 150}}, own: 1,
			want: []idmap.Range{{100, 200}}},
		{name: "contained", in: []idmap.Range{{100, 1000}, {200, 10}}, own: 1,
			want: []idmap.Range{{100, 1000}}},
		{name: "adjacent merged", in: []idmap.Range{{100, 10}, {110, 10}}, own: 1,
			want: []idmap.Range{{100, 20}}},
		{name: "gap kept", in: []idmap.Range{{100, 10}, {111, 10}}, own: 1,
			want: []idmap.Range{{100, 10}, {111, 10}}},
		{name: "empty dropped", in: []idmap.Range{{100, 0}, {5, 1}}, own: 1, want: []idmap.Range{{5, 1}}},
		{name: "own id in the middle", in: []idmap.Range{{900, 200}}, own: 1000,
			want: []idmap.Range{{900, 100}, {1001, 99}}},
		{name: "own id first", in: []idmap.Range{{1000, 10}}, own: 1000, want: []idmap.Range{{1001, 9}}},
		{name: "own id last", in: []idmap.Range{{991, 10}}, own: 1000, want: []idmap.Range{{991, 9}}},
		{name: "only own id", in: []idmap.Range{{1000, 1}}, own: 1000, want: nil},
		// Every host id but one's own fills the namespace exactly.
		{name: "whole id space", in: []idmap.Range{{0, 4294967295}}, own: 5,
			want: []idmap.Range{{0, 5}, {6, 4294967289}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, truncated, err := idmap.CleanSubIDRanges(tt.in, tt.own)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) || truncated != tt.truncated {
				t.Errorf("CleanSubIDRanges(%v, %d) = %v, %v; want %v, %v", tt.in, tt.own, got, truncated, tt.want, tt.truncated)
			}
			// Whatever came in, the result must be a valid uid_map.
			if _, err := idmap.PodmanLayout(tt.own, got); err != nil {
				t.Errorf("PodmanLayout of the cleaned ranges: %v", err)
			}
		})
	}
}

func TestCleanSubIDRangesLineLimit(t *testing.T) {
	var in []idmap.Range
	for i := range 400 {
		in = append(in, idmap.Range{Start: uint32(100000 + i*10), Count: 5})
	}
	got, truncated, err := idmap.CleanSubIDRanges(in, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != idmap.MaxExtents-1 || !truncated {
		t.Fatalf("got %d ranges, truncated %v; want %d, true", len(got), truncated, idmap.MaxExtents-1)
	}
	m, err := idmap.PodmanLayout(1000, got)
	if err != nil || m.Len() != idmap.MaxExtents {
		t.Fatalf("PodmanLayout: %d lines, %v", m.Len(), err)
	}
}

func TestCleanSubIDRangesOverflow(t *testing.T) {
	_, _, err := idmap.CleanSubIDRanges([]idmap.Range{{4294967295, 1}}, 0)
	if err == nil || !strings.Contains(err.Error(), "largest valid id") {
		t.Fatalf("error = %v", err)
	}
}

func TestPodmanLayout(t *testing.T) {
	m, err := idmap.PodmanLayout(1000, []idmap.Range{{100000, 65536}, {300000, 10}})
	if err != nil {
		t.Fatal(err)
	}
	want := "0 1000 1\n1 100000 65536\n65537 300000 10\n"
	if m.String() != want {
		t.Errorf("layout = %q, want %q", m.String(), want)
	}
	wantArgs := []string{"77", "0", "1000", "1", "1", "100000", "65536", "65537", "300000", "10"}
	if got := m.HelperArgs(77); !reflect.DeepEqual(got, wantArgs) {
		t.Errorf("HelperArgs = %q, want %q", got, wantArgs)
	}
	// Uncleaned input (own id inside a range) is refused, not passed on.
	if _, err := idmap.PodmanLayout(1000, []idmap.Range{{900, 200}}); err == nil {
		t.Errorf("PodmanLayout accepted a range containing the own id")
	}
}
