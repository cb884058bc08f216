package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// The -o opt[,opt...] options of the C virtiofsd (the Rust virtiofsd takes a subset of them, and
// refuses flock and posix_lock), each mapped onto a uvfsd flag.

// legacyValued maps "-o name=value" to the flag that takes the value.
var legacyValued = map[string]string{
	"source": "shared-dir", "cache": "cache", "log_level": "log-level",
	"sandbox": "sandbox", "xattrmap": "xattrmap", "modcaps": "modcaps",
	"vhost_user_socket": "socket-path", // the C virtiofsd's old spelling of --socket-path
}

// legacySwitches maps "-o name" to a bool flag and the value it sets.
var legacySwitches = map[string]struct{ flag, value string }{
	"debug":              {"debug", "true"},
	"xattr":              {"xattr", "true"},
	"no_xattr":           {"xattr", "false"},
	"flock":              {"flock", "true"},
	"no_flock":           {"flock", "false"},
	"posix_lock":         {"posix-lock", "true"},
	"no_posix_lock":      {"posix-lock", "false"},
	"writeback":          {"writeback", "true"},
	"no_writeback":       {"writeback", "false"},
	"readdirplus":        {"no-readdirplus", "false"},
	"no_readdirplus":     {"no-readdirplus", "true"},
	"announce_submounts": {"announce-submounts", "true"},
	"killpriv_v2":        {"killpriv-v2", "true"},
	"no_killpriv_v2":     {"killpriv-v2", "false"},
	"allow_direct_io":    {"allow-direct-io", "true"},
	"no_allow_direct_io": {"allow-direct-io", "false"},
	"posix_acl":          {"posix-acl", "true"},
	"no_posix_acl":       {"posix-acl", "false"},
	"security_label":     {"security-label", "true"},
	"no_security_label":  {"security-label", "false"},
}

// legacyIgnored are numeric "-o name=N" options that uvfsd accepts with a
// warning saying why they have no effect.
var legacyIgnored = map[string]string{
	"timeout":          "uvfsd derives cache timeouts from --cache",
	"max_idle_threads": "uvfsd sizes its workers with --thread-pool-size",
}

// legacyIgnoredSwitches are "-o name" options that uvfsd accepts with a warning.
var legacyIgnoredSwitches = map[string]string{
	"norace": "uvfsd has no racy fallback to turn off",
}

type legacyOptionValue struct{ p *flagParser }

func (v *legacyOptionValue) Set(s string) error {
	for _, opt := range splitLegacyOptions(s) {
		if err := v.p.applyLegacyOption(opt); err != nil {
			return err
		}
	}
	return nil
}
func (v *legacyOptionValue) String() string { return "" }
func (v *legacyOptionValue) Type() string   { return "stringArray" }

// splitLegacyOptions splits at commas. A doubled comma is a literal one, as libvirt writes a
// comma in a path (source=/a,,b is /a,b), and so is `\,` as in libfuse (xattrmap rules may hold
// one). Empty items are dropped.
func splitLegacyOptions(s string) []string {
	var opts []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case (s[i] == '\\' || s[i] == ',') && i+1 < len(s) && s[i+1] == ',':
			i++
			cur.WriteByte(',')
		case s[i] == ',':
			opts = append(opts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(s[i])
		}
	}
	opts = append(opts, cur.String())
	kept := opts[:0]
	for _, o := range opts {
		if o != "" {
			kept = append(kept, o)
		}
	}
	return kept
}

// applyLegacyOption sets one -o option through the FlagSet, so it is
// checked like the flag it stands for and counts as given on the command line.
func (p *flagParser) applyLegacyOption(opt string) error {
	name, value, hasValue := strings.Cut(opt, "=")
	if flag, ok := legacyValued[name]; ok {
		if !hasValue {
			return fmt.Errorf("%s needs a value, e.g. -o %s=…", name, name)
		}
		return p.setFlag(name, flag, value)
	}
	if sw, ok := legacySwitches[name]; ok {
		if hasValue {
			return fmt.Errorf("%s takes no value; write -o %s", name, name)
		}
		return p.setFlag(name, sw.flag, sw.value)
	}
	if why, ok := legacyIgnoredSwitches[name]; ok && !hasValue {
		p.cfg.warnings = append(p.cfg.warnings, fmt.Sprintf("ignoring -o %s: %s", opt, why))
		return nil
	}
	if why, ok := legacyIgnored[name]; ok {
		if n, err := strconv.ParseFloat(value, 64); !hasValue || err != nil || n < 0 {
			return fmt.Errorf("%s needs a non-negative number, e.g. -o %s=1", name, name)
		}
		p.cfg.warnings = append(p.cfg.warnings, fmt.Sprintf("ignoring -o %s: %s", opt, why))
		return nil
	}
	return fmt.Errorf("unknown option %q; see uvfsd --help for the -o options uvfsd accepts", name)
}

func (p *flagParser) setFlag(option, flag, value string) error {
	if err := p.fs.set(flag, value); err != nil {
		return fmt.Errorf("%s: %w", option, err)
	}
	return nil
}

// legacyOptionNames lists the -o options for --help, sorted.
func legacyOptionNames() []string {
	var names []string
	for name := range legacyValued {
		names = append(names, name+"=")
	}
	for name := range legacyIgnored {
		names = append(names, name+"=")
	}
	for name := range legacySwitches {
		names = append(names, name)
	}
	for name := range legacyIgnoredSwitches {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}
