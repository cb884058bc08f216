package main

// uvfsd's own command-line parser. It replaces spf13/pflag for two reasons: pflag imports package
// net, which links runtime/cgo whenever cgo is enabled, and a cgo binary cannot change
// capabilities or apply Landlock on all threads (syscall.AllThreadsSyscall refuses); and the
// grammar must be clap 4's, the parser of the Rust virtiofsd whose command lines uvfsd accepts:
//
//	--name value, --name=value   a flag that takes a value; a next argument that starts with '-'
//	                             is a flag, not the value (write --name=-x)
//	--name                       a boolean flag; uvfsd also takes --name=true|false
//	-o value, -ovalue, -o=value  short forms; boolean shorts bundle: -fd, -do cache=auto
//	--                           ends the flags
//
// A flag given twice keeps its last value (virtiofsd sets clap's args_override_self); repeatable
// flags (--uid-map, -o) add each value.

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// flagValue holds one flag's value. Set checks the value, so the command line, -o and the
// config file all give the same message for the same mistake.
type flagValue interface {
	Set(string) error
	String() string
	// Type names the TOML type the config file must use: bool, int, string or stringArray.
	Type() string
}

// flagDef is one flag.
type flagDef struct {
	name  string // long name, without "--"
	short byte   // 0: none
	usage string // help text; a `QUOTED` word names the value in --help
	value flagValue
	// bare is the value a flag given without one sets ("true" for booleans); "" means the flag
	// needs a value. A flag with bare set takes a value only after '=' (clap's require_equals).
	bare    string
	hidden  bool // left out of --help
	changed bool // set on the command line (or through -o)
}

// flagSet is an ordered set of flags.
type flagSet struct {
	defs    []*flagDef
	byName  map[string]*flagDef
	byShort map[byte]*flagDef
}

func newFlagSet() *flagSet {
	return &flagSet{byName: map[string]*flagDef{}, byShort: map[byte]*flagDef{}}
}

// add registers a flag; a duplicate name is a programming error.
func (fs *flagSet) add(d *flagDef) *flagDef {
	if fs.byName[d.name] != nil || (d.short != 0 && fs.byShort[d.short] != nil) {
		panic("flag defined twice: --" + d.name)
	}
	fs.defs = append(fs.defs, d)
	fs.byName[d.name] = d
	if d.short != 0 {
		fs.byShort[d.short] = d
	}
	return d
}

func (fs *flagSet) boolVar(p *bool, name string, short byte, usage string) *flagDef {
	return fs.add(&flagDef{name: name, short: short, usage: usage, value: (*boolValue)(p), bare: "true"})
}

func (fs *flagSet) intVar(p *int, name, usage string) *flagDef {
	return fs.add(&flagDef{name: name, usage: usage, value: (*intValue)(p)})
}

func (fs *flagSet) stringVar(p *string, name, usage string) *flagDef {
	return fs.add(&flagDef{name: name, usage: usage, value: (*stringValue)(p)})
}

func (fs *flagSet) variable(v flagValue, name string, short byte, usage string) *flagDef {
	d := &flagDef{name: name, short: short, usage: usage, value: v}
	if v.Type() == "bool" {
		d.bare = "true"
	}
	return fs.add(d)
}

func (fs *flagSet) lookup(name string) *flagDef { return fs.byName[name] }

// set gives flag name a value as if from the command line.
func (fs *flagSet) set(name, value string) error {
	d := fs.byName[name]
	if d == nil {
		return fmt.Errorf("no flag --%s", name)
	}
	if err := d.value.Set(value); err != nil {
		return err
	}
	d.changed = true
	return nil
}

// visitChanged calls fn for every flag the command line set.
func (fs *flagSet) visitChanged(fn func(*flagDef)) {
	for _, d := range fs.defs {
		if d.changed {
			fn(d)
		}
	}
}

// parse parses args (without argv[0]) and returns the arguments that are not flags.
func (fs *flagSet) parse(args []string) (positional []string, err error) {
	for i := 0; i < len(args); i++ {
		arg := args[i]
		switch {
		case arg == "--":
			return append(positional, args[i+1:]...), nil
		case strings.HasPrefix(arg, "--"):
			name, value, hasValue := strings.Cut(arg[2:], "=")
			d := fs.byName[name]
			if d == nil {
				return nil, fmt.Errorf("unknown flag --%s (see uvfsd --help for the flags uvfsd accepts)", name)
			}
			switch {
			case hasValue:
			case d.bare != "":
				value = d.bare
			case i+1 < len(args) && !looksLikeFlag(args[i+1]):
				i++
				value = args[i]
			case i+1 < len(args):
				return nil, fmt.Errorf("--%s needs a value, and %q looks like a flag: if it is the value, write --%s=%s", name, args[i+1], name, args[i+1])
			default:
				return nil, fmt.Errorf("--%s needs a value: --%s %s", name, name, valueName(d))
			}
			if err := fs.setParsed(d, "--"+name, value); err != nil {
				return nil, err
			}
		case len(arg) > 1 && arg[0] == '-':
			var err error
			if i, err = fs.parseShorts(args, i); err != nil {
				return nil, err
			}
		default:
			positional = append(positional, arg)
		}
	}
	return positional, nil
}

// parseShorts parses the cluster of short flags args[i] ("-fd", "-ocache=auto", "-o", "-o=x")
// and returns the index of the last argument it used.
func (fs *flagSet) parseShorts(args []string, i int) (int, error) {
	arg := args[i]
	for j := 1; j < len(arg); j++ {
		c := arg[j]
		d := fs.byShort[c]
		if d == nil {
			return i, unknownShort(arg, j, fs)
		}
		if d.bare != "" {
			// A boolean short; "-d=true" is refused like clap does (it takes no value).
			if j+1 < len(arg) && arg[j+1] == '=' {
				return i, fmt.Errorf("-%c takes no value: write -%c", c, c)
			}
			if err := fs.setParsed(d, "-"+string(c), d.bare); err != nil {
				return i, err
			}
			continue
		}
		// A short that takes a value: the rest of the cluster (after an optional '='), else the
		// next argument.
		value := strings.TrimPrefix(arg[j+1:], "=")
		switch {
		case j+1 < len(arg):
		case i+1 < len(args) && !looksLikeFlag(args[i+1]):
			i++
			value = args[i]
		case i+1 < len(args):
			return i, fmt.Errorf("-%c needs a value, and %q looks like a flag: if it is the value, write -%c%s", c, args[i+1], c, args[i+1])
		default:
			return i, fmt.Errorf("-%c needs a value: -%c %s", c, c, valueName(d))
		}
		return i, fs.setParsed(d, "-"+string(c), value)
	}
	return i, nil
}

func (fs *flagSet) setParsed(d *flagDef, spelled, value string) error {
	if err := d.value.Set(value); err != nil {
		return fmt.Errorf("invalid value %q for %s: %w", value, spelled, err)
	}
	d.changed = true
	return nil
}

// looksLikeFlag is clap's test for an argument that cannot be a flag's value: "-" alone is a
// value (stdin, by convention), "-x" and "--x" are flags.
func looksLikeFlag(arg string) bool { return len(arg) > 1 && arg[0] == '-' }

// unknownShort explains the unknown short flag arg[j], and a long flag written with one dash.
func unknownShort(arg string, j int, fs *flagSet) error {
	if name, _, _ := strings.Cut(arg[1:], "="); j == 1 && fs.byName[name] != nil {
		return fmt.Errorf("unknown flag %s: long flags take two dashes, -%s", arg, arg)
	}
	if len(arg) == 2 {
		return fmt.Errorf("unknown flag %s (see uvfsd --help for the flags uvfsd accepts)", arg)
	}
	return fmt.Errorf("unknown flag -%c in %s (see uvfsd --help for the flags uvfsd accepts)", arg[j], arg)
}

// valueName is the name of a flag's value in --help: the `QUOTED` word of its usage, else VALUE.
func valueName(d *flagDef) string {
	if _, rest, ok := strings.Cut(d.usage, "`"); ok {
		if name, _, ok := strings.Cut(rest, "`"); ok {
			return name
		}
	}
	return "VALUE"
}

// usages formats the flags for --help, clap-style: the flag on one line, its description below.
func (fs *flagSet) usages() string {
	var b strings.Builder
	for _, d := range fs.defs {
		if d.hidden {
			continue
		}
		b.WriteString("  ")
		if d.short != 0 {
			fmt.Fprintf(&b, "-%c, ", d.short)
		} else {
			b.WriteString("    ")
		}
		b.WriteString("--" + d.name)
		switch {
		case d.bare == "":
			b.WriteString(" " + valueName(d))
		case d.value.Type() != "bool":
			b.WriteString("[=" + valueName(d) + "]")
		}
		b.WriteString("\n")
		usage := strings.ReplaceAll(d.usage, "`", "")
		if def := d.value.String(); def != "" && def != "false" && def != "0" {
			usage += fmt.Sprintf(" [default: %s]", def)
		}
		b.WriteString(wrapWords(strings.Fields(usage), "          ", 80) + "\n")
	}
	return b.String()
}

// The plain value types.

type boolValue bool

func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("want true or false, or no value at all")
	}
	*v = boolValue(b)
	return nil
}
func (v *boolValue) String() string { return strconv.FormatBool(bool(*v)) }
func (v *boolValue) Type() string   { return "bool" }

type intValue int

func (v *intValue) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 0)
	if err != nil {
		return errors.New("want a whole number")
	}
	*v = intValue(n)
	return nil
}
func (v *intValue) String() string { return strconv.Itoa(int(*v)) }
func (v *intValue) Type() string   { return "int" }

type stringValue string

func (v *stringValue) Set(s string) error { *v = stringValue(s); return nil }
func (v *stringValue) String() string     { return string(*v) }
func (v *stringValue) Type() string       { return "string" }

// wrapWords joins words into indented lines of at most width bytes.
func wrapWords(words []string, indent string, width int) string {
	var b strings.Builder
	line := indent
	for _, w := range words {
		if line != indent && len(line)+1+len(w) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if line != indent {
			line += " "
		}
		line += w
	}
	b.WriteString(line)
	return b.String()
}
