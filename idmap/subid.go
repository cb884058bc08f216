package idmap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Range is a subordinate id range from /etc/subuid or /etc/subgid:
// host ids [Start, Start+Count).
type Range struct {
	Start, Count uint32
}

func (r Range) String() string {
	return fmt.Sprintf("%d-%d", r.Start, uint64(r.Start)+uint64(r.Count)-1)
}

func (r Range) end() uint64 { return uint64(r.Start) + uint64(r.Count) }

// ParseSubIDs returns the ranges that /etc/subuid or /etc/subgid
// content grants the user, named either by name or by numeric uid
// ("user:start:count"; in /etc/subgid too, as shadow reads it). Comments,
// blank lines and other users' lines
// are skipped; a malformed line of this user is an error, because
// newuidmap would refuse the same data with a far vaguer message.
func ParseSubIDs(r io.Reader, name string, id uint32) ([]Range, error) {
	idText := strconv.FormatUint(uint64(id), 10)
	var ranges []Range
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		if f[0] != idText && (name == "" || f[0] != name) {
			continue
		}
		rg, err := parseSubIDLine(f)
		if err != nil {
			return nil, fmt.Errorf("line %d %q: %w; fix it as \"user:start:count\"", n, line, err)
		}
		if rg.Count > 0 {
			ranges = append(ranges, rg)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading subordinate ids: %w", err)
	}
	return ranges, nil
}

func parseSubIDLine(f []string) (Range, error) {
	if len(f) != 3 {
		return Range{}, fmt.Errorf("want 3 fields, have %d", len(f))
	}
	start, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil {
		return Range{}, fmt.Errorf("bad start: %w", err)
	}
	count, err := strconv.ParseUint(f[2], 10, 32)
	if err != nil {
		return Range{}, fmt.Errorf("bad count: %w", err)
	}
	if start+count > nsIDLimit {
		return Range{}, fmt.Errorf("range %d+%d reaches past 4294967294, the largest valid id", start, count)
	}
	return Range{Start: uint32(start), Count: uint32(count)}, nil
}

// ReadSubIDs is ParseSubIDs on a file. A missing file means no ranges.
func ReadSubIDs(path, name string, id uint32) ([]Range, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading subordinate ids: %w", err)
	}
	defer f.Close()
	ranges, err := ParseSubIDs(f, name, id)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ranges, nil
}

// maxSubordinateLines leaves one uid_map line for the own id.
const maxSubordinateLines = MaxExtents - 1

// CleanSubIDRanges makes ranges safe to hand to newuidmap, which
// answers a bare "Invalid argument" to anything else: it drops empty
// ranges, sorts, merges duplicates, overlaps and neighbours, and cuts
// ownID out (it is mapped on its own at ns 0). It keeps the result
// within the kernel's MaxExtents lines (with the own-id line), dropping
// the highest ranges and reporting truncated if it had to. A range
// reaching past 4294967294 is an error.
func CleanSubIDRanges(ranges []Range, ownID uint32) (clean []Range, truncated bool, err error) {
	sorted := make([]Range, 0, len(ranges))
	for _, r := range ranges {
		if r.end() > nsIDLimit {
			return nil, false, fmt.Errorf("subordinate range %d+%d reaches past 4294967294, the largest valid id; fix /etc/subuid or /etc/subgid", r.Start, r.Count)
		}
		if r.Count > 0 {
			sorted = append(sorted, r)
		}
	}
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Start < sorted[j].Start })

	merged := make([]Range, 0, len(sorted))
	for _, r := range sorted {
		if n := len(merged); n > 0 && uint64(r.Start) <= merged[n-1].end() {
			last := &merged[n-1]
			last.Count = uint32(max(last.end(), r.end()) - uint64(last.Start))
			continue
		}
		merged = append(merged, r)
	}

	for _, r := range merged {
		if ownID < r.Start || uint64(ownID) >= r.end() {
			clean = append(clean, r)
			continue
		}
		if ownID > r.Start {
			clean = append(clean, Range{Start: r.Start, Count: ownID - r.Start})
		}
		if after := r.end() - uint64(ownID) - 1; after > 0 {
			clean = append(clean, Range{Start: ownID + 1, Count: uint32(after)})
		}
	}

	if len(clean) > maxSubordinateLines {
		clean, truncated = clean[:maxSubordinateLines], true
	}
	// No namespace-side check is needed: the ranges are disjoint host
	// ids below 4294967295 without ownID, at most 4294967294 ids, which
	// is exactly what ns ids 1..4294967294 hold.
	return clean, truncated, nil
}

// PodmanLayout is the map podman unshare sets up: ns 0 is the own id,
// then the subordinate ranges back to back from ns 1. sub must be the
// output of CleanSubIDRanges.
func PodmanLayout(ownID uint32, sub []Range) (NSMap, error) {
	extents := make([]Extent, 0, len(sub)+1)
	extents = append(extents, Extent{NS: 0, Host: ownID, Count: 1})
	next := uint64(1)
	for _, r := range sub {
		extents = append(extents, Extent{NS: uint32(next), Host: r.Start, Count: r.Count})
		next += uint64(r.Count)
	}
	return NewNSMap(extents)
}
