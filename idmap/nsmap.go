package idmap

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

// MaxExtents is the kernel's limit on uid_map/gid_map lines (since 4.15).
const MaxExtents = 340

// Extent is one uid_map line: namespace ids [NS, NS+Count) are host ids
// [Host, Host+Count).
type Extent struct {
	NS, Host, Count uint32
}

func (e Extent) String() string { return fmt.Sprintf("%d %d %d", e.NS, e.Host, e.Count) }

// NSMap is the content of a user namespace's uid_map or gid_map. The
// zero value maps nothing.
type NSMap struct {
	byNS   []Extent // sorted by NS
	byHost []Extent // the same extents sorted by Host
}

// IdentityNSMap is the map of the initial user namespace (and of a
// process that is in no user namespace of its own).
func IdentityNSMap() NSMap {
	m, _ := NewNSMap([]Extent{{NS: 0, Host: 0, Count: 1<<32 - 1}})
	return m
}

// NewNSMap validates extents the way the kernel does: each count > 0, no
// range past 2^32, no overlap on either side, at most MaxExtents lines.
func NewNSMap(extents []Extent) (NSMap, error) {
	if len(extents) > MaxExtents {
		return NSMap{}, fmt.Errorf("%d id map lines; the kernel accepts at most %d, so merge or drop ranges", len(extents), MaxExtents)
	}
	for _, e := range extents {
		if e.Count == 0 {
			return NSMap{}, fmt.Errorf("id map %q: count is 0; give at least 1", e)
		}
		// The kernel refuses extents that reach (u32)-1.
		if uint64(e.NS)+uint64(e.Count) > nsIDLimit || uint64(e.Host)+uint64(e.Count) > nsIDLimit {
			return NSMap{}, fmt.Errorf("id map %q reaches past 4294967294, the largest valid id; lower the count", e)
		}
	}
	m := NSMap{
		byNS:   append([]Extent(nil), extents...),
		byHost: append([]Extent(nil), extents...),
	}
	sort.Slice(m.byNS, func(i, j int) bool { return m.byNS[i].NS < m.byNS[j].NS })
	sort.Slice(m.byHost, func(i, j int) bool { return m.byHost[i].Host < m.byHost[j].Host })
	for i := 1; i < len(m.byNS); i++ {
		a, b := m.byNS[i-1], m.byNS[i]
		if uint64(a.NS)+uint64(a.Count) > uint64(b.NS) {
			return NSMap{}, fmt.Errorf("id maps %q and %q overlap inside the namespace; namespace ranges must be disjoint", a, b)
		}
	}
	for i := 1; i < len(m.byHost); i++ {
		a, b := m.byHost[i-1], m.byHost[i]
		if uint64(a.Host)+uint64(a.Count) > uint64(b.Host) {
			return NSMap{}, fmt.Errorf("id maps %q and %q overlap on the host; host ranges must be disjoint", a, b)
		}
	}
	return m, nil
}

// ParseNSMap parses uid_map/gid_map text: one "ns host count" per line.
func ParseNSMap(text string) (NSMap, error) {
	var extents []Extent
	for i, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return NSMap{}, fmt.Errorf("id map line %d %q: want \"ns-id host-id count\"", i+1, line)
		}
		var n [3]uint32
		for j, s := range f {
			v, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				return NSMap{}, fmt.Errorf("id map line %d %q: %w", i+1, line, err)
			}
			n[j] = uint32(v)
		}
		extents = append(extents, Extent{NS: n[0], Host: n[1], Count: n[2]})
	}
	return NewNSMap(extents)
}

// ReadNSMap reads and parses a uid_map or gid_map file.
func ReadNSMap(path string) (NSMap, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return NSMap{}, fmt.Errorf("reading id map: %w", err)
	}
	m, err := ParseNSMap(string(b))
	if err != nil {
		return NSMap{}, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// ReadSelfUIDMap reads /proc/self/uid_map.
func ReadSelfUIDMap() (NSMap, error) { return ReadNSMap("/proc/self/uid_map") }

// ReadSelfGIDMap reads /proc/self/gid_map.
func ReadSelfGIDMap() (NSMap, error) { return ReadNSMap("/proc/self/gid_map") }

// Extents returns a copy of the extents in namespace order.
func (m NSMap) Extents() []Extent { return append([]Extent(nil), m.byNS...) }

// Len is the number of extents (uid_map lines).
func (m NSMap) Len() int { return len(m.byNS) }

// IsIdentity reports whether m is the initial namespace's map, i.e. the
// process is not in a user namespace of its own.
func (m NSMap) IsIdentity() bool {
	return len(m.byNS) == 1 && m.byNS[0] == Extent{NS: 0, Host: 0, Count: 1<<32 - 1}
}

// NSToHost maps a namespace id to the host; ok is false when unmapped.
func (m NSMap) NSToHost(ns uint32) (host uint32, ok bool) {
	lo, hi := 0, len(m.byNS)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if uint64(m.byNS[mid].NS)+uint64(m.byNS[mid].Count) <= uint64(ns) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < len(m.byNS) && m.byNS[lo].NS <= ns {
		e := m.byNS[lo]
		return e.Host + (ns - e.NS), true
	}
	return 0, false
}

// HostToNS maps a host id into the namespace; ok is false when unmapped.
func (m NSMap) HostToNS(host uint32) (ns uint32, ok bool) {
	lo, hi := 0, len(m.byHost)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if uint64(m.byHost[mid].Host)+uint64(m.byHost[mid].Count) <= uint64(host) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < len(m.byHost) && m.byHost[lo].Host <= host {
		e := m.byHost[lo]
		return e.NS + (host - e.Host), true
	}
	return 0, false
}

// MapsHostRange reports whether every host id in [lo, hi] is mapped.
func (m NSMap) MapsHostRange(lo, hi uint32) bool {
	next := uint64(lo) // the first id not yet known to be mapped
	for _, e := range m.byHost {
		start, end := uint64(e.Host), uint64(e.Host)+uint64(e.Count)
		if end <= next {
			continue
		}
		if start > next {
			return false
		}
		if next = end; next > uint64(hi) {
			return true
		}
	}
	return false
}

// String renders m in uid_map format, ready to write to /proc/PID/uid_map.
func (m NSMap) String() string {
	var b strings.Builder
	for _, e := range m.byNS {
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// HelperArgs builds the arguments of newuidmap/newgidmap for process
// pid: "PID NS HOST COUNT NS HOST COUNT...".
func (m NSMap) HelperArgs(pid int) []string {
	args := []string{strconv.Itoa(pid)}
	for _, e := range m.byNS {
		args = append(args,
			strconv.FormatUint(uint64(e.NS), 10),
			strconv.FormatUint(uint64(e.Host), 10),
			strconv.FormatUint(uint64(e.Count), 10))
	}
	return args
}
