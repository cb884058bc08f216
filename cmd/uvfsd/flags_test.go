package main

import (
	"slices"
	"strings"
	"testing"
)

// testFlags is a small flag set with each kind of flag the parser knows.
type testFlags struct {
	fs      *flagSet
	d, f    bool
	o       []string
	name    string
	n       int
	mode    string
	negated bool
}

func newTestFlags() *testFlags {
	t := &testFlags{negated: true}
	t.fs = newFlagSet()
	t.fs.boolVar(&t.d, "debug", 'd', "")
	t.fs.boolVar(&t.f, "foreground", 'f', "")
	t.fs.variable(&listValue{&t.o, func(string) error { return nil }}, "option", 'o', "`OPT`")
	t.fs.stringVar(&t.name, "name", "`NAME`")
	t.fs.intVar(&t.n, "count", "`N`")
	t.fs.variable(newEnum(&t.mode, []string{"a", "b"}, nil), "mode", 0, "`MODE`").bare = "a"
	t.fs.variable(&negatedBool{&t.negated}, "no-thing", 0, "")
	return t
}

func TestFlagGrammar(t *testing.T) {
	cases := []struct {
		args       []string
		d, f       bool
		o          []string
		name       string
		n          int
		mode       string
		negated    bool
		positional []string
	}{
		{args: []string{"-d"}, d: true, negated: true},
		{args: []string{"-df"}, d: true, f: true, negated: true},
		{args: []string{"-fdo", "x"}, d: true, f: true, o: []string{"x"}, negated: true},
		{args: []string{"-dox,y", "-o=z", "-o", "w"}, d: true, o: []string{"x,y", "z", "w"}, negated: true},
		{args: []string{"--debug", "--debug=false"}, negated: true},
		{args: []string{"--name", "a b", "--name=c"}, name: "c", negated: true},
		{args: []string{"--name="}, negated: true},
		{args: []string{"--name", "-"}, name: "-", negated: true}, // "-" alone is a value
		{args: []string{"--count=-3"}, n: -3, negated: true},
		{args: []string{"--mode"}, mode: "a", negated: true},
		{args: []string{"--mode=b"}, mode: "b", negated: true},
		{args: []string{"--no-thing"}},
		{args: []string{"--no-thing=false"}, negated: true},
		{args: []string{"x", "--", "-d", "--name=y"}, negated: true, positional: []string{"x", "-d", "--name=y"}},
		{args: []string{"-"}, negated: true, positional: []string{"-"}},
	}
	for _, tc := range cases {
		tf := newTestFlags()
		pos, err := tf.fs.parse(tc.args)
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if tf.d != tc.d || tf.f != tc.f || !slices.Equal(tf.o, tc.o) || tf.name != tc.name || tf.n != tc.n ||
			tf.mode != tc.mode || tf.negated != tc.negated || !slices.Equal(pos, tc.positional) {
			t.Errorf("%q: got d=%v f=%v o=%q name=%q n=%d mode=%q negated=%v positional=%q", tc.args,
				tf.d, tf.f, tf.o, tf.name, tf.n, tf.mode, tf.negated, pos)
		}
	}
}

func TestFlagGrammarErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "unknown flag --bogus"},
		{[]string{"-x"}, "unknown flag -x ("},
		{[]string{"-dx"}, "unknown flag -x in -dx"},
		{[]string{"-name=a"}, "unknown flag -name=a: long flags take two dashes, --name=a"},
		{[]string{"-d=true"}, "-d takes no value: write -d"},
		{[]string{"--name"}, "--name needs a value: --name NAME"},
		{[]string{"--name", "-d"}, `--name needs a value, and "-d" looks like a flag: if it is the value, write --name=-d`},
		{[]string{"--count", "-3"}, "write --count=-3"},
		{[]string{"-o"}, "-o needs a value: -o OPT"},
		{[]string{"-o", "--name"}, `write -o--name`},
		{[]string{"--count=x"}, `invalid value "x" for --count: want a whole number`},
		{[]string{"--debug=maybe"}, `invalid value "maybe" for --debug: want true or false`},
		{[]string{"--mode=c"}, `invalid value "c" for --mode: must be one of a, b`},
	}
	for _, tc := range cases {
		_, err := newTestFlags().fs.parse(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}

// --help lists each flag, its value's name and its default, clap-style.
func TestFlagUsages(t *testing.T) {
	tf := newTestFlags()
	tf.n = 7
	got := tf.fs.usages()
	for _, want := range []string{"  -d, --debug\n", "  -o, --option OPT\n", "      --name NAME\n",
		"      --mode[=MODE]\n", "[default: 7]", "      --no-thing\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("usages lack %q:\n%s", want, got)
		}
	}
}
