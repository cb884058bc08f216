package guest

import (
	"reflect"
	"testing"
)

func TestParseVariants(t *testing.T) {
	got, err := ParseVariants([]string{"cold=--hot-wait-ms=0", " tp2 = --thread-pool-size=2  --poll-us=0", "bare="}, "uvfsd", "9p")
	if err != nil {
		t.Fatal(err)
	}
	want := []Variant{
		{"cold", []string{"--hot-wait-ms=0"}},
		{"tp2", []string{"--thread-pool-size=2", "--poll-us=0"}},
		{"bare", []string{}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	for _, bad := range [][]string{
		{"noequals"},
		{"=--poll-us=0"},
		{"a,b=--poll-us=0"},
		{"a b=--poll-us=0"},
		{"uvfsd=--poll-us=0"},
		{"9p=--poll-us=0"},
		{"x=--poll-us=0", "x=--poll-us=1"},
	} {
		if vs, err := ParseVariants(bad, "uvfsd", "9p"); err == nil {
			t.Errorf("ParseVariants(%q) = %+v, want an error", bad, vs)
		}
	}
}
