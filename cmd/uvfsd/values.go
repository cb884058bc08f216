package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/uvfsd/uvfsd/userns"
)

// Flag value types. Each checks its value in Set, so the command line, -o
// and the config file all get the same check and the same message.

const (
	maxFD = 1<<31 - 1
	maxID = 1<<32 - 2 // (uid_t)-1 means "no id"
)

// enumValue accepts one of valid, or an alias for one (C virtiofsd spellings).
type enumValue struct {
	target  *string
	valid   []string
	aliases map[string]string
}

func newEnum(target *string, valid []string, aliases map[string]string) *enumValue {
	return &enumValue{target, valid, aliases}
}

func (e *enumValue) Set(s string) error {
	if canonical, ok := e.aliases[s]; ok {
		s = canonical
	}
	for _, v := range e.valid {
		if s == v {
			*e.target = s
			return nil
		}
	}
	return fmt.Errorf("must be one of %s", strings.Join(e.valid, ", "))
}
func (e *enumValue) String() string { return *e.target }
func (e *enumValue) Type() string   { return "string" }

// idValue is a non-negative integer up to max, -1 while unset; it prints
// no "(default -1)" in --help.
type idValue struct {
	target *int
	max    int64
	auto   bool // -1 is accepted too: the default, uvfsd's choice
}

func (v *idValue) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 64)
	if v.auto && err == nil && n == -1 {
		*v.target = -1
		return nil
	}
	if err != nil || n < 0 || n > v.max {
		if v.auto {
			return fmt.Errorf("want a number from 0 to %d, or -1 for uvfsd's choice", v.max)
		}
		return fmt.Errorf("want a number from 0 to %d", v.max)
	}
	*v.target = int(n)
	return nil
}

func (v *idValue) String() string {
	if *v.target < 0 {
		return ""
	}
	return strconv.Itoa(*v.target)
}
func (v *idValue) Type() string { return "int" }

// negatedBool backs --no-X flags that share a field with --X.
type negatedBool struct{ target *bool }

func (v *negatedBool) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("want true or false")
	}
	*v.target = !b
	return nil
}
func (v *negatedBool) String() string { return "false" } // --help shows no default
func (v *negatedBool) Type() string   { return "bool" }

// debugValue backs -d/--debug: a shortcut for --log-level=debug.
type debugValue struct{ logLevel *string }

func (v *debugValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("want true or false")
	}
	if b {
		*v.logLevel = "debug"
	}
	return nil
}
func (v *debugValue) String() string { return "false" }
func (v *debugValue) Type() string   { return "bool" }

// tagValue is the virtio-fs tag: 1 to maxTagLen bytes, as virtiofsd checks it.
type tagValue struct{ target *string }

func (v *tagValue) Set(s string) error {
	if s == "" || len(s) > maxTagLen {
		return fmt.Errorf("a tag is 1 to %d bytes long, not %d", maxTagLen, len(s))
	}
	*v.target = s
	return nil
}
func (v *tagValue) String() string { return *v.target }
func (v *tagValue) Type() string   { return "string" }

// listValue is a repeatable flag; every element is checked when added.
type listValue struct {
	target *[]string
	check  func(string) error
}

func (v *listValue) Set(s string) error {
	if err := v.check(s); err != nil {
		return err
	}
	*v.target = append(*v.target, s)
	return nil
}
func (v *listValue) String() string { return strings.Join(*v.target, " ") }
func (v *listValue) Type() string   { return "stringArray" }

// checkIDMap checks the shape of ":ns:host:count:" (the first character is
// the separator, as in virtiofsd); package idmap parses it for real.
func checkIDMap(s string) error {
	const want = `want ":namespace_id:host_id:count:", e.g. ":0:1000:1:"`
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return errors.New(want)
	}
	fields := strings.Split(s, s[:1])
	if len(fields) != 5 || fields[0] != "" || fields[4] != "" {
		return errors.New(want)
	}
	return checkIDs(fields[1:4])
}

// translationFields is the number of numbers each --translate-uid kind takes.
var translationFields = map[string]int{
	"guest": 3, "host": 3, "squash-guest": 3, "squash-host": 3, "map": 3, "forbid-guest": 2,
}

// checkTranslation checks the shape of "kind:a:b:count"; package idmap
// parses it for real.
func checkTranslation(s string) error {
	fields := strings.Split(s, ":")
	want, ok := translationFields[fields[0]]
	if !ok {
		return fmt.Errorf("unknown kind %q: use guest, host, squash-guest, squash-host, map or forbid-guest, e.g. squash-guest:0:1000:4294967295", fields[0])
	}
	if len(fields)-1 != want {
		if want == 2 {
			return fmt.Errorf("%s takes 2 numbers, e.g. %s:0:100", fields[0], fields[0])
		}
		return fmt.Errorf("%s takes 3 numbers, e.g. %s:0:1000:1", fields[0], fields[0])
	}
	return checkIDs(fields[1:])
}

func checkIDs(fields []string) error {
	for _, f := range fields {
		if _, err := strconv.ParseUint(f, 10, 32); err != nil {
			return fmt.Errorf("%q is not a number from 0 to 4294967295", f)
		}
	}
	return nil
}

// modcapsValue takes "+cap:-cap…" with known capability names.
type modcapsValue struct{ target *string }

func (v *modcapsValue) Set(s string) error {
	if _, err := userns.ModifiedCapabilities(s); err != nil {
		return err
	}
	*v.target = s
	return nil
}
func (v *modcapsValue) String() string { return *v.target }
func (v *modcapsValue) Type() string   { return "string" }
