package idmap

import (
	"errors"
	"fmt"
	"sort"
)

// ErrForbidden is returned for a guest id covered by a forbid-guest
// rule; the caller answers the request with EPERM.
var ErrForbidden = errors.New("guest id is forbidden by a forbid-guest translate rule")

// span is one entry of a lookup table: the inclusive source range
// [first, last] goes to `to` (+offset unless squash).
type span struct {
	first, last uint32
	to          uint32
	squash      bool
	forbid      bool
	rule        Rule // for overlap errors
}

// table is sorted by first and free of overlaps, so a binary search
// finds the only candidate span.
type table []span

// find returns the span containing id, or nil. Written as a plain loop
// so the hot path cannot allocate a closure.
func (t table) find(id uint32) *span {
	lo, hi := 0, len(t)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if t[mid].last < id {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < len(t) && t[lo].first <= id {
		return &t[lo]
	}
	return nil
}

// apply maps id through s; s must contain id.
func (s *span) apply(id uint32) uint32 {
	if s.squash {
		return s.to
	}
	return s.to + (id - s.first)
}

// sortAndCheck sorts the table and reports the first two overlapping
// rules.
func (t table) sortAndCheck(direction string) error {
	sort.Slice(t, func(i, j int) bool { return t[i].first < t[j].first })
	for i := 1; i < len(t); i++ {
		if t[i].first <= t[i-1].last {
			lo, hi := t[i].first, min(t[i].last, t[i-1].last)
			return fmt.Errorf("translate rules %q and %q both cover %s ids %d-%d; source ranges of one direction must not overlap, so narrow one of them",
				t[i-1].rule, t[i].rule, direction, lo, hi)
		}
	}
	return nil
}

// Translation holds the --translate-uid (or --translate-gid) rules as
// two independent tables: guest→host and host→guest. A zero or nil
// Translation has no rules and translates every id to itself.
type Translation struct {
	guestToHost table
	hostToGuest table
}

// NewTranslation builds the lookup tables and rejects rules whose
// source ranges overlap within one direction.
func NewTranslation(rules []Rule) (*Translation, error) {
	t := &Translation{}
	for _, r := range rules {
		if err := r.validate(); err != nil {
			return nil, fmt.Errorf("translate rule %q: %w", r, err)
		}
		s := span{first: r.From, last: uint32(uint64(r.From) + uint64(r.Count) - 1), to: r.To, rule: r}
		switch r.Kind {
		case RuleGuest:
			t.guestToHost = append(t.guestToHost, s)
		case RuleHost:
			t.hostToGuest = append(t.hostToGuest, s)
		case RuleSquashGuest:
			s.squash = true
			t.guestToHost = append(t.guestToHost, s)
		case RuleSquashHost:
			s.squash = true
			t.hostToGuest = append(t.hostToGuest, s)
		case RuleForbidGuest:
			s.forbid = true
			t.guestToHost = append(t.guestToHost, s)
		case RuleMap:
			t.guestToHost = append(t.guestToHost, s)
			t.hostToGuest = append(t.hostToGuest, span{
				first: r.To, last: uint32(uint64(r.To) + uint64(r.Count) - 1), to: r.From, rule: r,
			})
		default:
			return nil, fmt.Errorf("translate rule %q: unknown kind", r)
		}
	}
	if err := t.guestToHost.sortAndCheck("guest"); err != nil {
		return nil, err
	}
	if err := t.hostToGuest.sortAndCheck("host"); err != nil {
		return nil, err
	}
	return t, nil
}

// ParseTranslation parses the values of repeated --translate-uid (or
// --translate-gid) flags and builds the tables.
func ParseTranslation(flags []string) (*Translation, error) {
	rules := make([]Rule, 0, len(flags))
	for _, f := range flags {
		r, err := ParseRule(f)
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	return NewTranslation(rules)
}

// checkTargetsMapped refuses guest→host rules whose host ids the user namespace does not map: the
// daemon could not create files with them.
func (t *Translation) checkTargetsMapped(ns NSMap) error {
	if t == nil {
		return nil
	}
	for _, s := range t.guestToHost {
		if s.forbid {
			continue
		}
		lo, hi := s.to, s.to
		if !s.squash {
			hi = s.to + (s.last - s.first)
		}
		if !ns.MapsHostRange(lo, hi) {
			return fmt.Errorf("translate rule %q: host ids %d-%d are not all mapped in the user namespace (map: %q), so files could not be made with them; add them to /etc/subuid or /etc/subgid (or --uid-map/--gid-map), or choose mapped ids",
				s.rule, lo, hi, ns.String())
		}
	}
	return nil
}

// Empty reports whether there are no rules in either direction.
func (t *Translation) Empty() bool {
	return t == nil || (len(t.guestToHost) == 0 && len(t.hostToGuest) == 0)
}

// guestRule looks up a guest id. matched is false when no rule covers
// it; err is ErrForbidden for a forbid-guest range.
func (t *Translation) guestRule(guest uint32) (host uint32, matched bool, err error) {
	if t == nil {
		return guest, false, nil
	}
	s := t.guestToHost.find(guest)
	if s == nil {
		return guest, false, nil
	}
	if s.forbid {
		return 0, true, ErrForbidden
	}
	return s.apply(guest), true, nil
}

// hostRule looks up a host id; matched is false when no rule covers it.
func (t *Translation) hostRule(host uint32) (guest uint32, matched bool) {
	if t == nil {
		return host, false
	}
	s := t.hostToGuest.find(host)
	if s == nil {
		return host, false
	}
	return s.apply(host), true
}

// GuestToHost translates a guest id by the guest→host rules. An id no
// rule covers is returned unchanged; a forbidden id gives ErrForbidden.
func (t *Translation) GuestToHost(guest uint32) (host uint32, err error) {
	host, _, err = t.guestRule(guest)
	return host, err
}

// HostToGuest translates a host id by the host→guest rules; an id no
// rule covers is returned unchanged.
func (t *Translation) HostToGuest(host uint32) uint32 {
	guest, _ := t.hostRule(host)
	return guest
}
