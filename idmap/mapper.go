package idmap

import "fmt"

// NoChange is (uid_t)-1: chown/setattr's "leave this id alone". The
// Mapper passes it through unchanged in both directions.
const NoChange = 1<<32 - 1

// Mapper composes the translate rules with the daemon's user namespace.
// The user's rules speak of host ids, the daemon's syscalls of ns ids.
//
// Guest → ns (GuestToNS, for creating files and chown):
//   - a guest→host rule matches: its host id is converted to an ns id;
//   - a forbid-guest rule matches: ErrForbidden (reply EPERM);
//   - no rule matches: the guest number is used as the ns id as-is, so
//     in the podman-unshare layout guest 0 is ns 0 (the invoking user)
//     and guest 1000 is ns 1000 (a subordinate id). Without a namespace
//     this is the identity.
//   - an unmatched guest id that the namespace does not map falls back
//     to the invoking user's ns id: files are created as the invoking
//     user, never refused with EINVAL. (A rule's host ids must be mapped:
//     NewMapper refuses the rule otherwise, because falling back would
//     turn, say, "squash guest root to nobody" into "guest root is you".)
//
// ns → guest (NSToGuest, for stat results):
//   - an ns id the namespace does not map becomes OverflowID;
//   - otherwise its host id goes through the host→guest rules;
//   - no rule matches: the ns number as-is (without a namespace: the
//     host id, which is the same number).
//
// So unmatched ids behave the same with and without a namespace, and
// rules written for a daemon outside a namespace keep working inside.
// Rules must cover the ids they are meant to keep apart: an unmatched
// guest id lands on the ns id of the same number, which a host→guest
// rule may show as another guest id (podman layout plus map:1000:1000:1:
// guest 0 creates as ns 0, host 1000, which shows as guest 1000).
type Mapper struct {
	rules       *Translation
	ns          NSMap
	inNamespace bool
	fallbackNS  uint32 // the invoking user's ns id
	identity    bool   // no rules, no namespace: every lookup is a no-op
}

// NewMapper builds a Mapper from the translate rules (nil for none),
// the namespace's map (an empty or identity NSMap means the daemon is
// in no user namespace) and the invoking user's host id, which must be
// mapped.
func NewMapper(rules *Translation, ns NSMap, hostID uint32) (*Mapper, error) {
	m := &Mapper{rules: rules, ns: ns, inNamespace: ns.Len() > 0 && !ns.IsIdentity()}
	m.fallbackNS = hostID
	if m.inNamespace {
		nsID, ok := ns.HostToNS(hostID)
		if !ok {
			return nil, fmt.Errorf("the invoking user's host id %d is not mapped in the user namespace (map: %q); map it with --uid-map or --gid-map, e.g. \":0:%d:1:\"", hostID, ns.String(), hostID)
		}
		m.fallbackNS = nsID
		if err := rules.checkTargetsMapped(ns); err != nil {
			return nil, err
		}
	}
	m.identity = !m.inNamespace && rules.Empty()
	return m, nil
}

// NewHomeMapper builds the "home" profile for a user sharing their own
// files: every guest id creates files as the invoking user (host id
// hostID), and files of the invoking user appear in the guest as
// guestID (usually the same number as hostID, so the guest user who has
// that id owns them). Other ids pass through as in NewMapper: with a
// namespace, ns id N shows as guest N; without one, host id H as H.
// It is the rule set
//
//	squash-guest:0:HOSTID:4294967295
//	host:HOSTID:GUESTID:1
func NewHomeMapper(ns NSMap, hostID, guestID uint32) (*Mapper, error) {
	rules, err := NewTranslation([]Rule{
		{Kind: RuleSquashGuest, From: 0, To: hostID, Count: 1<<32 - 1},
		{Kind: RuleHost, From: hostID, To: guestID, Count: 1},
	})
	if err != nil {
		return nil, err
	}
	return NewMapper(rules, ns, hostID)
}

// IsIdentity reports whether the Mapper changes no id at all, so a
// caller may skip it.
func (m *Mapper) IsIdentity() bool { return m.identity }

// InNamespace reports whether the Mapper converts through a user
// namespace map.
func (m *Mapper) InNamespace() bool { return m.inNamespace }

// GuestToNS translates an id the guest asks for into the id to use in
// syscalls. It fails only with ErrForbidden. It does not allocate.
func (m *Mapper) GuestToNS(guest uint32) (uint32, error) {
	if m.identity || guest == NoChange {
		return guest, nil
	}
	host, matched, err := m.rules.guestRule(guest)
	if err != nil {
		return 0, err
	}
	if !m.inNamespace {
		return host, nil
	}
	if !matched {
		if _, ok := m.ns.NSToHost(guest); ok {
			return guest, nil
		}
		return m.fallbackNS, nil
	}
	if ns, ok := m.ns.HostToNS(host); ok {
		return ns, nil
	}
	return m.fallbackNS, nil
}

// NSToGuest translates an id from a stat result into the id the guest
// sees. It does not allocate.
func (m *Mapper) NSToGuest(ns uint32) uint32 {
	if m.identity || ns == NoChange {
		return ns
	}
	if !m.inNamespace {
		return m.rules.HostToGuest(ns)
	}
	host, ok := m.ns.NSToHost(ns)
	if !ok {
		return OverflowID
	}
	if guest, matched := m.rules.hostRule(host); matched {
		return guest
	}
	return ns
}
