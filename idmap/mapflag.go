package idmap

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ParseMapFlag parses one --uid-map/--gid-map value,
// ":namespace_id:host_id:count:". As in virtiofsd the first character
// is the separator, whatever it is, and the value must end with it.
func ParseMapFlag(s string) (Extent, error) {
	sep, size := utf8.DecodeRuneInString(s)
	if size == 0 || sep == utf8.RuneError || (sep >= '0' && sep <= '9') {
		return Extent{}, fmt.Errorf("id map %q: want \":namespace_id:host_id:count:\" (the first character is the separator), e.g. \":0:1000:1:\"", s)
	}
	fields := strings.Split(s, string(sep))
	// A well-formed value splits into "", ns, host, count, "".
	if len(fields) != 5 || fields[0] != "" || fields[4] != "" {
		return Extent{}, fmt.Errorf("id map %q: want \"%cnamespace_id%chost_id%ccount%c\" (the first character, %q, is the separator), e.g. \"%c0%c1000%c1%c\"",
			s, sep, sep, sep, sep, sep, sep, sep, sep, sep)
	}
	var n [3]uint32
	for i, f := range fields[1:4] {
		v, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			return Extent{}, fmt.Errorf("id map %q: %q is not a number between 0 and 4294967295: %w", s, f, err)
		}
		n[i] = uint32(v)
	}
	return Extent{NS: n[0], Host: n[1], Count: n[2]}, nil
}

// ParseMapFlags parses every --uid-map (or --gid-map) value and
// validates them together: count > 0, no overflow, no overlap.
func ParseMapFlags(values []string) (NSMap, error) {
	extents := make([]Extent, 0, len(values))
	for _, v := range values {
		e, err := ParseMapFlag(v)
		if err != nil {
			return NSMap{}, err
		}
		extents = append(extents, e)
	}
	m, err := NewNSMap(extents)
	if err != nil {
		return NSMap{}, fmt.Errorf("--uid-map/--gid-map: %w", err)
	}
	return m, nil
}
