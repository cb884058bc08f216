package idmap

import (
	"fmt"
	"strconv"
	"strings"
)

// RuleKind is one of the six --translate-uid/--translate-gid forms of
// the Rust virtiofsd.
type RuleKind int

// The rule kinds; the comment shows the flag syntax.
const (
	RuleGuest       RuleKind = iota // guest:GUEST:HOST:COUNT, guest→host 1:1
	RuleHost                        // host:HOST:GUEST:COUNT, host→guest 1:1
	RuleSquashGuest                 // squash-guest:GUEST:HOST:COUNT, guest range→one host id
	RuleSquashHost                  // squash-host:HOST:GUEST:COUNT, host range→one guest id
	RuleForbidGuest                 // forbid-guest:GUEST:COUNT, guest range refused
	RuleMap                         // map:GUEST:HOST:COUNT, both directions 1:1
)

var ruleKindNames = [...]string{
	RuleGuest:       "guest",
	RuleHost:        "host",
	RuleSquashGuest: "squash-guest",
	RuleSquashHost:  "squash-host",
	RuleForbidGuest: "forbid-guest",
	RuleMap:         "map",
}

func (k RuleKind) String() string {
	if k >= 0 && int(k) < len(ruleKindNames) {
		return ruleKindNames[k]
	}
	return "RuleKind(" + strconv.Itoa(int(k)) + ")"
}

// Rule is one parsed translate rule. From is the base of the source
// range in the flag's order (a guest id for guest, squash-guest,
// forbid-guest and map; a host id for host and squash-host); To is the
// target base, or the single target of a squash rule.
type Rule struct {
	Kind  RuleKind
	From  uint32
	To    uint32 // unused for RuleForbidGuest
	Count uint32
}

// String gives the rule back in flag syntax, for error messages.
func (r Rule) String() string {
	if r.Kind == RuleForbidGuest {
		return fmt.Sprintf("%s:%d:%d", r.Kind, r.From, r.Count)
	}
	return fmt.Sprintf("%s:%d:%d:%d", r.Kind, r.From, r.To, r.Count)
}

// ParseRule parses one --translate-uid or --translate-gid value such as
// "squash-guest:0:1001:4294967295".
func ParseRule(s string) (Rule, error) {
	fields := strings.Split(s, ":")
	kind := -1
	for k, name := range ruleKindNames {
		if fields[0] == name {
			kind = k
		}
	}
	if kind < 0 {
		return Rule{}, fmt.Errorf("translate rule %q: unknown type %q; use one of guest, host, squash-guest, squash-host, forbid-guest, map", s, fields[0])
	}
	r := Rule{Kind: RuleKind(kind)}
	want := 4
	if r.Kind == RuleForbidGuest {
		want = 3
	}
	if len(fields) != want {
		return Rule{}, fmt.Errorf("translate rule %q: want %d fields, e.g. %q", s, want, ruleExample(r.Kind))
	}
	nums := make([]uint32, 0, 3)
	for _, f := range fields[1:] {
		n, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			return Rule{}, fmt.Errorf("translate rule %q: %q is not an id or count between 0 and 4294967295: %w", s, f, err)
		}
		nums = append(nums, uint32(n))
	}
	r.From, r.Count = nums[0], nums[len(nums)-1]
	if r.Kind != RuleForbidGuest {
		r.To = nums[1]
	}
	if err := r.validate(); err != nil {
		return Rule{}, fmt.Errorf("translate rule %q: %w", s, err)
	}
	return r, nil
}

func ruleExample(k RuleKind) string {
	if k == RuleForbidGuest {
		return "forbid-guest:0:100"
	}
	return k.String() + ":1000:1000:1"
}

// validate checks the count and that neither range runs past 2^32.
func (r Rule) validate() error {
	if r.Count == 0 {
		return fmt.Errorf("count is 0; a rule must cover at least one id")
	}
	if uint64(r.From)+uint64(r.Count) > idSpace {
		return fmt.Errorf("source range %d+%d runs past 4294967295; lower the count", r.From, r.Count)
	}
	// 4294967295 is no id: chown(2) reads it as "leave alone", and setfsuid(2) as "read only".
	oneToOne := r.Kind == RuleGuest || r.Kind == RuleHost || r.Kind == RuleMap
	if oneToOne && uint64(r.To)+uint64(r.Count) > idSpace-1 {
		return fmt.Errorf("target range %d+%d runs past 4294967294, the largest id; lower the count", r.To, r.Count)
	}
	if (r.Kind == RuleSquashGuest || r.Kind == RuleSquashHost) && r.To == NoChange {
		return fmt.Errorf("target 4294967295 is no id (it means \"unchanged\"); squash to a real id such as 65534")
	}
	return nil
}
