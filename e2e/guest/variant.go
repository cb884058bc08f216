package guest

import (
	"fmt"
	"slices"
	"strings"
)

// Variant is uvfsd run with other flags as one more system of a benchmark,
// from a --variant "NAME=FLAGS" argument.
type Variant struct {
	Name  string
	Flags []string
}

// ParseVariants parses --variant arguments ("NAME=FLAGS", the flags space
// separated). A name must be new: not in taken (the benchmark's own system
// names) and not given twice, and it holds no comma or space, so that it
// can appear in a comma-separated --systems list.
func ParseVariants(args []string, taken ...string) ([]Variant, error) {
	var vs []Variant
	for _, arg := range args {
		name, flags, ok := strings.Cut(arg, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, ", ") {
			return nil, fmt.Errorf("--variant %q: want NAME=FLAGS, e.g. cold=--hot-wait-ms=0", arg)
		}
		if slices.Contains(taken, name) || slices.ContainsFunc(vs, func(v Variant) bool { return v.Name == name }) {
			return nil, fmt.Errorf("--variant %q: the name %s is taken; give the variant a new one", arg, name)
		}
		vs = append(vs, Variant{Name: name, Flags: strings.Fields(flags)})
	}
	return vs, nil
}

// StringList is a repeatable string flag (flag.Value), e.g. --variant.
type StringList []string

func (l *StringList) String() string     { return strings.Join(*l, " ") }
func (l *StringList) Set(s string) error { *l = append(*l, s); return nil }
