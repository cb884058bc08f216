package passfs

// The --xattrmap rule language of virtiofsd (QEMU's C daemon and the Rust
// daemon, doc/xattr-mapping.md), which renames extended attributes between
// the guest ("client") and the host file system ("server").
//
// A rule is  <sep>type<sep>scope<sep>key<sep>prepend<sep>  where <sep> is the
// rule's first character (any ASCII character; rules may use different ones)
// and white space may surround rules. Rules are tried in order and the first
// match decides:
//
//	scope  client: match key against a guest name (get/set/remove xattr)
//	       server: match prepend against a host name (listxattr)
//	       all:    both of the above
//	type   prefix: guest name -> prepend+name; host name -> name minus prepend
//	       ok:     the name passes unchanged
//	       bad:    a guest name gets EPERM; a host name is hidden
//	       unsupported: a guest name gets ENOTSUP; a host name is hidden
//
// <sep>map<sep>key<sep>prepend<sep> is shorthand and must be the last rule.
// With a key it expands to
//
//	:prefix:all:key:prepend:  :bad:all:prepend:key:  :ok:all:::
//
// (the bad rule both refuses guest names that start with prepend, so the guest
// cannot forge mapped names, and hides the host's own key* names); with an
// empty key it expands to  :prefix:all::prepend:  :bad:all:::.
//
// Every name must meet some rule. virtiofsd fails at request time (Rust: a
// panic) when none matches; ParseXattrMap instead refuses rule sets without a
// client catch-all (client/all scope, empty key) and a server catch-all
// (server/all scope, empty prepend), so lookups here always end in a rule.

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"syscall"
)

// ErrBadXattrMap is wrapped by every ParseXattrMap error.
var ErrBadXattrMap = errors.New("invalid --xattrmap")

// xattrNameMax is Linux's XATTR_NAME_MAX; longer names get ERANGE, as from
// the kernel's own getxattr.
const xattrNameMax = 255

// securityCapability is the attribute the kernel clears on write; see
// RemappedCapability.
const securityCapability = "security.capability"

type ruleScope uint8

const (
	scopeClient ruleScope = 1 << iota
	scopeServer
	scopeAll = scopeClient | scopeServer
)

type ruleType uint8

const (
	typePrefix ruleType = iota
	typeOK
	typeBad
	typeUnsupported
)

type xattrRule struct {
	kind    ruleType
	scope   ruleScope
	key     []byte // prefix of guest names this rule matches
	prepend []byte // prefix of host names this rule matches, and the prefix added
}

// XattrMap translates xattr names between guest and host. The zero of
// *XattrMap (nil) is the identity mapping, so callers need no nil checks.
// It is immutable after ParseXattrMap and safe for concurrent use.
type XattrMap struct {
	rules []xattrRule
	// capHost is the host name of the guest's security.capability when the
	// rules rename it, else nil.
	capHost []byte
}

// RootlessDefaultRules is the rule set of RootlessDefault. An unprivileged
// host user may only set user.* attributes and POSIX ACLs, so every other
// guest name (trusted.*, security.*, ...) is stored on the host under
// "user.uvfsd." + guest name, e.g. trusted.overlay.opaque <->
// user.uvfsd.trusted.overlay.opaque; user.* and system.posix_acl_* pass
// unchanged. The guest may not name user.uvfsd.* itself (EPERM), so it cannot
// forge stored attributes. Host names the mapping could not have produced are
// hidden: the host's own trusted.*, security.* and other names, and
// user.uvfsd.user.* / user.uvfsd.system.posix_acl_* (they would shadow real
// ones). So every name the guest sees maps back to the same host name.
const RootlessDefaultRules = `
	:bad:client:user.uvfsd.::
	:ok:client:user.::
	:ok:client:system.posix_acl_::
	:prefix:client::user.uvfsd.:
	:bad:server::user.uvfsd.user.:
	:bad:server::user.uvfsd.system.posix_acl_:
	:prefix:server::user.uvfsd.:
	:ok:server::user.:
	:ok:server::system.posix_acl_:
	:bad:server:::
`

var rootlessDefault = mustParseXattrMap(RootlessDefaultRules)

// RootlessDefault is the mapping for a daemon running as a non-root host
// user with xattrs enabled; see RootlessDefaultRules. The map is shared.
func RootlessDefault() *XattrMap { return rootlessDefault }

func mustParseXattrMap(rules string) *XattrMap {
	m, err := ParseXattrMap(rules)
	if err != nil {
		panic(err) // only for constant rule sets, covered by tests
	}
	return m
}

// ToHost maps a guest attribute name (without NUL) to the host name and
// appends it to dst, without allocating when dst has room. The result has no
// NUL terminator. Errors: EINVAL for an empty name or one containing NUL,
// ERANGE for a name longer than 255 bytes, EPERM for a "bad" rule, ENOTSUP
// for an "unsupported" rule.
func (m *XattrMap) ToHost(dst, guest []byte) ([]byte, syscall.Errno) {
	if len(guest) == 0 || bytes.IndexByte(guest, 0) >= 0 {
		return dst, syscall.EINVAL
	}
	if len(guest) > xattrNameMax {
		return dst, syscall.ERANGE
	}
	if m == nil {
		return append(dst, guest...), 0
	}
	for i := range m.rules {
		r := &m.rules[i]
		if r.scope&scopeClient == 0 || !bytes.HasPrefix(guest, r.key) {
			continue
		}
		switch r.kind {
		case typeOK:
			return append(dst, guest...), 0
		case typePrefix:
			return append(append(dst, r.prepend...), guest...), 0
		case typeUnsupported:
			return dst, syscall.ENOTSUP
		default:
			return dst, syscall.EPERM
		}
	}
	// Unreachable: ParseXattrMap demands a client catch-all.
	return dst, syscall.EPERM
}

// FromHost maps a host attribute name back to the guest's name and appends it
// to dst (no allocation when dst has room). ok=false means the guest must not
// see the name; dst is then returned unchanged.
func (m *XattrMap) FromHost(dst, host []byte) (guest []byte, ok bool) {
	if len(host) == 0 || bytes.IndexByte(host, 0) >= 0 {
		return dst, false
	}
	if m == nil {
		return append(dst, host...), true
	}
	for i := range m.rules {
		r := &m.rules[i]
		if r.scope&scopeServer == 0 || !bytes.HasPrefix(host, r.prepend) {
			continue
		}
		switch r.kind {
		case typeOK:
			return append(dst, host...), true
		case typePrefix:
			stripped := host[len(r.prepend):]
			if len(stripped) == 0 {
				return dst, false // an empty name would corrupt the list
			}
			return append(dst, stripped...), true
		default:
			return dst, false
		}
	}
	// Unreachable: ParseXattrMap demands a server catch-all.
	return dst, false
}

// FilterList rewrites a host listxattr buffer (names each ending in NUL) into
// the guest's view, appended to dst with every name NUL-terminated; hidden and
// empty names are dropped. The result is never longer than hostList plus one
// byte, so a dst with that capacity avoids allocation, and dst may be
// hostList[:0] to filter in place.
func (m *XattrMap) FilterList(dst, hostList []byte) []byte {
	for len(hostList) > 0 {
		name := hostList
		end := bytes.IndexByte(hostList, 0)
		if end >= 0 {
			name, hostList = hostList[:end], hostList[end+1:]
		} else {
			hostList = nil
		}
		if len(name) == 0 {
			continue
		}
		var ok bool
		if dst, ok = m.FromHost(dst, name); ok {
			dst = append(dst, 0)
		}
	}
	return dst
}

// IsCapabilityHost reports whether a host name holds file capabilities for
// the guest: security.capability itself, or the name the rules store the
// guest's security.capability under. The write path must clear the latter
// itself, because the kernel only clears the former (CVE-2021-20263).
func (m *XattrMap) IsCapabilityHost(host []byte) bool {
	if string(host) == securityCapability {
		return true
	}
	return m != nil && m.capHost != nil && bytes.Equal(host, m.capHost)
}

// RemappedCapability is the host name holding the guest's
// security.capability when the rules rename it (the write path removes it on
// write and on chown, as the kernel would), or nil when the name is not
// renamed or the guest may not use it.
func (m *XattrMap) RemappedCapability() []byte {
	if m == nil {
		return nil
	}
	return m.capHost
}

// ParseXattrMap parses virtiofsd's --xattrmap (C virtiofsd: -o xattrmap=)
// rule string. Errors wrap ErrBadXattrMap and name the 1-based rule.
func ParseXattrMap(rules string) (*XattrMap, error) {
	m := &XattrMap{}
	rest := rules
	ruleNo := 0
	for {
		rest = strings.TrimLeft(rest, " \t\r\n\v\f")
		if rest == "" {
			break
		}
		ruleNo++
		parsed, isMap, tail, err := parseXattrRule(rest)
		if err != nil {
			return nil, fmt.Errorf("%w: rule %d (%s): %s", ErrBadXattrMap, ruleNo, excerpt(rest), err)
		}
		m.rules = append(m.rules, parsed...)
		rest = tail
		if isMap && strings.TrimLeft(rest, " \t\r\n\v\f") != "" {
			return nil, fmt.Errorf("%w: rule %d: a map rule must be the last rule; move it to the end or write its expansion out", ErrBadXattrMap, ruleNo)
		}
	}
	if ruleNo == 0 {
		return nil, fmt.Errorf("%w: no rules; give at least a catch-all such as \":ok:all:::\"", ErrBadXattrMap)
	}
	if err := m.checkCatchAll(ruleNo); err != nil {
		return nil, err
	}
	if host, errno := m.ToHost(nil, []byte(securityCapability)); errno == 0 && string(host) != securityCapability {
		m.capHost = host
	}
	return m, nil
}

// checkCatchAll makes sure every guest name and every host name meets a rule.
func (m *XattrMap) checkCatchAll(ruleCount int) error {
	var client, server bool
	for _, r := range m.rules {
		client = client || (r.scope&scopeClient != 0 && len(r.key) == 0)
		server = server || (r.scope&scopeServer != 0 && len(r.prepend) == 0)
	}
	switch {
	case !client && !server:
		return fmt.Errorf("%w: none of the %d rules matches every name; end with a catch-all such as \":ok:all:::\" or \":bad:all:::\"", ErrBadXattrMap, ruleCount)
	case !client:
		return fmt.Errorf("%w: none of the %d rules matches every guest name (a client or all rule with an empty key); end with a catch-all such as \":ok:all:::\" or \":bad:all:::\"", ErrBadXattrMap, ruleCount)
	case !server:
		return fmt.Errorf("%w: none of the %d rules matches every host name (a server or all rule with an empty prepend); end with a catch-all such as \":ok:all:::\" or \":bad:all:::\"", ErrBadXattrMap, ruleCount)
	}
	return nil
}

var (
	ruleTypes  = map[string]ruleType{"prefix": typePrefix, "ok": typeOK, "bad": typeBad, "unsupported": typeUnsupported}
	ruleScopes = map[string]ruleScope{"client": scopeClient, "server": scopeServer, "all": scopeAll}
)

// parseXattrRule parses the rule at the start of s (no leading white space)
// and returns its rules (several for map), whether it was a map rule and the
// text after it.
func parseXattrRule(s string) ([]xattrRule, bool, string, error) {
	sep := s[0]
	if sep >= 0x80 {
		return nil, false, "", errors.New("the separator (first character) must be an ASCII character")
	}
	rest := s[1:]
	field := func(name string) (string, error) {
		end := strings.IndexByte(rest, sep)
		if end < 0 {
			return "", fmt.Errorf("missing %q after the %s field; a rule is %cTYPE%cSCOPE%cKEY%cPREPEND%c", sep, name, sep, sep, sep, sep, sep)
		}
		f := rest[:end]
		rest = rest[end+1:]
		if strings.IndexByte(f, 0) >= 0 {
			return "", fmt.Errorf("the %s field contains a NUL byte", name)
		}
		return f, nil
	}
	typeName, err := field("type")
	if err != nil {
		return nil, false, "", err
	}
	isMap := typeName == "map"
	kind, known := ruleTypes[typeName]
	if !known && !isMap {
		return nil, false, "", fmt.Errorf("unknown type %q; use prefix, ok, bad, unsupported or map", typeName)
	}
	scope := scopeAll
	if !isMap {
		scopeName, err := field("scope")
		if err != nil {
			return nil, false, "", err
		}
		if scope, known = ruleScopes[scopeName]; !known {
			return nil, false, "", fmt.Errorf("unknown scope %q; use client, server or all", scopeName)
		}
	}
	key, err := field("key")
	if err != nil {
		return nil, false, "", err
	}
	prepend, err := field("prepend")
	if err != nil {
		return nil, false, "", err
	}
	if isMap {
		return expandMapRule([]byte(key), []byte(prepend)), true, rest, nil
	}
	return []xattrRule{{kind: kind, scope: scope, key: []byte(key), prepend: []byte(prepend)}}, false, rest, nil
}

// expandMapRule is the Rust virtiofsd expansion of :map:key:prepend:.
func expandMapRule(key, prepend []byte) []xattrRule {
	rules := []xattrRule{{kind: typePrefix, scope: scopeAll, key: key, prepend: prepend}}
	if len(key) == 0 {
		// Everything is prefixed; hide and refuse whatever is not.
		return append(rules, xattrRule{kind: typeBad, scope: scopeAll})
	}
	return append(rules,
		// Refuse guest names already carrying prepend (forgery) and hide
		// the host's own key* names, which are not the guest's.
		xattrRule{kind: typeBad, scope: scopeAll, key: prepend, prepend: key},
		xattrRule{kind: typeOK, scope: scopeAll},
	)
}

// excerpt quotes the start of a rule for error messages.
func excerpt(s string) string {
	const limit = 48
	if end := strings.IndexAny(s, "\r\n"); end >= 0 {
		s = s[:end]
	}
	if len(s) > limit {
		return fmt.Sprintf("%q...", s[:limit])
	}
	return fmt.Sprintf("%q", s)
}
