package main

import (
	"bytes"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
)

// Every flag the Rust virtiofsd 1.13.2 lists in --help (testdata, captured from it) is accepted
// by uvfsd with the same meaning, or refused by name with a reason: a client written for
// virtiofsd never has a flag of its ignored.

// helpFlag is one flag of virtiofsd's --help.
type helpFlag struct {
	long  string // without "--"; "" for a short-only flag
	short string // without "-"; "" for a long-only flag
	// value is the placeholder of the flag's value ("" for a switch); equals says it is written
	// --flag=VALUE only (clap's require_equals).
	value  string
	equals bool
}

func (f helpFlag) key() string {
	if f.long != "" {
		return "--" + f.long
	}
	return "-" + f.short
}

// helpFlagLine matches a flag's line in clap's long help: "  -o <COMPAT_OPTIONS>",
// "      --shared-dir <SHARED_DIR>", "      --inode-file-handles=<INODE_FILE_HANDLES>",
// "  -h, --help".
var helpFlagLine = regexp.MustCompile(`^  (?:-([A-Za-z]))?(?:, )?(?:\s*--([a-z0-9-]+))?(?:( |=)<([A-Z_]+)>)?$`)

func virtiofsdHelpFlags(t *testing.T) []helpFlag {
	t.Helper()
	text, err := os.ReadFile("testdata/virtiofsd-1.13.2-help.txt")
	if err != nil {
		t.Fatal(err)
	}
	var flags []helpFlag
	for _, line := range strings.Split(string(text), "\n") {
		// A flag's line is indented 2 (short) or 6 (long only) spaces, its description 10.
		if !strings.HasPrefix(line, "  -") && !strings.HasPrefix(line, "      --") {
			continue
		}
		m := helpFlagLine.FindStringSubmatch(line)
		if m == nil || (m[1] == "" && m[2] == "") {
			t.Fatalf("help line %q looks like a flag but does not parse: fix helpFlagLine", line)
		}
		flags = append(flags, helpFlag{short: m[1], long: m[2], value: m[4], equals: m[3] == "="})
	}
	if len(flags) < 40 {
		t.Fatalf("found only %d flags in the help text", len(flags))
	}
	return flags
}

// flagUse is one use of a virtiofsd flag and what uvfsd must make of it.
type flagUse struct {
	base  []string // replaces baseArgs when set
	extra []string // before the flag, e.g. the opposite switch, so that the flag's effect shows
	value string   // the flag's value, for a flag that takes one
	// want edits baseExpected into the Config the flag must give; refuse, if set, is what the
	// error must say instead (besides naming the flag).
	want   func(*Config)
	refuse string
}

// virtiofsdFlags maps each flag of virtiofsd's --help (helpFlag.key) to its uses. -h, -V and
// --print-capabilities are checked by TestVirtiofsdInfoFlags.
var virtiofsdFlags = map[string][]flagUse{
	"--shared-dir": {{value: "/srv/x", want: func(c *Config) { c.SharedDir = "/srv/x" }}},
	"--tag": {
		{value: "myfs", want: func(c *Config) { c.Tag = "myfs" }},
		{value: strings.Repeat("t", 37), refuse: "a tag is 1 to 36 bytes long"},
	},
	"--socket":       {{value: "/run/x.sock", want: func(c *Config) { c.SocketPath = "/run/x.sock" }}},
	"--socket-path":  {{base: []string{"--shared-dir=/base"}, value: "/run/x.sock", want: func(c *Config) { c.SocketPath = "/run/x.sock" }}},
	"--socket-group": {{value: "kvm", want: func(c *Config) { c.SocketGroup = "kvm" }}},
	"--fd":           {{base: []string{"--shared-dir=/base"}, value: "3", want: func(c *Config) { c.SocketPath = ""; c.FD = 3 }}},
	"--thread-pool-size": {
		{value: "16", want: func(c *Config) { c.ThreadPoolSize = 16 }},
		{value: "0", want: func(c *Config) {}},
	},
	"--xattr":     {{want: func(c *Config) { c.Xattr = true }}},
	"--posix-acl": {{want: func(c *Config) { c.PosixACL = true; c.Xattr = true }}},
	"--xattrmap": {{value: ":map::user.virtiofs.:", want: func(c *Config) {
		c.Xattrmap = ":map::user.virtiofs.:"
		c.Xattr = true
	}}},
	"--sandbox": {
		{value: "namespace", want: func(c *Config) {}},
		{value: "chroot", want: func(c *Config) { c.Sandbox = "chroot" }},
		{value: "none", want: func(c *Config) { c.Sandbox = "none" }},
	},
	"--readonly": {{want: func(c *Config) { c.Readonly = true }}},
	"--seccomp": {
		{value: "none", want: func(c *Config) { c.Seccomp = "none" }},
		{value: "kill", want: func(c *Config) {}},
		{value: "log", want: func(c *Config) { c.Seccomp = "log" }},
		{value: "trap", want: func(c *Config) { c.Seccomp = "trap" }},
	},
	"--announce-submounts":    {{want: func(c *Config) { c.AnnounceSubmounts = true }}},
	"--no-announce-submounts": {{extra: []string{"--announce-submounts"}, want: func(c *Config) {}}},
	"--inode-file-handles": {
		{value: "never", want: func(c *Config) { c.InodeFileHandles = "never" }},
		{value: "prefer", want: func(c *Config) {}},
		{value: "fallback", want: func(c *Config) {}},
		{value: "mandatory", want: func(c *Config) { c.InodeFileHandles = "mandatory" }},
	},
	"--cache": {
		{value: "auto", want: func(c *Config) {}},
		{value: "always", want: func(c *Config) { c.Cache = "always" }},
		{value: "never", want: func(c *Config) { c.Cache = "never" }},
		{value: "metadata", want: func(c *Config) { c.Cache = "metadata" }},
	},
	"--allow-mmap":         {{want: func(c *Config) { c.AllowMmap = true }}},
	"--no-readdirplus":     {{want: func(c *Config) { c.NoReaddirplus = true }}},
	"--writeback":          {{want: func(c *Config) { c.Writeback = true }}},
	"--allow-direct-io":    {{want: func(c *Config) { c.AllowDirectIO = true }}},
	"--print-capabilities": {},
	"--modcaps":            {{value: "+sys_admin:-chown", want: func(c *Config) { c.Modcaps = "+sys_admin:-chown" }}},
	"--log-level": {
		{value: "error", want: func(c *Config) { c.LogLevel = "error" }},
		{value: "warn", want: func(c *Config) { c.LogLevel = "warn" }},
		{value: "debug", want: func(c *Config) { c.LogLevel = "debug" }},
		{value: "trace", want: func(c *Config) { c.LogLevel = "trace" }},
		{value: "off", want: func(c *Config) { c.LogLevel = "off" }},
	},
	"--syslog": {{want: func(c *Config) { c.Syslog = true }}},
	"--rlimit-nofile": {
		{value: "4096", want: func(c *Config) { c.RlimitNofile = 4096 }},
		{value: "0", want: func(c *Config) { c.RlimitNofile = 0 }},
	},
	"-o": {
		{value: "source=/o,xattr", want: func(c *Config) { c.SharedDir = "/o"; c.Xattr = true }},
		{value: "cache=none,sandbox=chroot,no_readdirplus", want: func(c *Config) {
			c.Cache, c.Sandbox, c.NoReaddirplus = "never", "chroot", true
		}},
	},
	"-d":               {{want: func(c *Config) { c.LogLevel = "debug" }}},
	"--no-killpriv-v2": {{want: func(c *Config) { c.KillprivV2 = false }}},
	"--killpriv-v2":    {{extra: []string{"--no-killpriv-v2"}, want: func(c *Config) {}}},
	"-f":               {{want: func(c *Config) {}}},
	"--security-label": {{want: func(c *Config) { c.SecurityLabel = true; c.Xattr = true }}},
	"--uid-map":        {{value: ":0:100000:65536:", want: func(c *Config) { c.UIDMap = []string{":0:100000:65536:"} }}},
	"--gid-map":        {{value: ":0:100000:65536:", want: func(c *Config) { c.GIDMap = []string{":0:100000:65536:"} }}},
	"--translate-uid": {{value: "squash-guest:0:1000:4294967295", want: func(c *Config) {
		c.TranslateUID = []string{"squash-guest:0:1000:4294967295"}
	}}},
	"--translate-gid":    {{value: "map:0:100:1", want: func(c *Config) { c.TranslateGID = []string{"map:0:100:1"} }}},
	"--preserve-noatime": {{want: func(c *Config) { c.PreserveNoatime = true }}},
	"--migration-mode": {
		{value: "find-paths", want: func(c *Config) {}},
		{value: "file-handles", want: func(c *Config) { c.MigrationMode = "file-handles" }},
	},
	"--migration-on-error": {
		{value: "abort", want: func(c *Config) {}},
		{value: "guest-error", want: func(c *Config) { c.MigrationOnError = "guest-error" }},
	},
	"--migration-verify-handles": {{want: func(c *Config) { c.MigrationVerifyHandles = true }}},
	"--migration-confirm-paths":  {{want: func(c *Config) { c.MigrationConfirmPaths = true }}},
	"--help":                     {},
	"--version":                  {},
}

// spellings are the ways clap takes the flag with value v: --f v and --f=v (only --f=v with
// require_equals), -o v, -ov and -o=v.
func (f helpFlag) spellings(v string) [][]string {
	switch {
	case f.value == "" && f.long != "":
		return [][]string{{"--" + f.long}}
	case f.value == "":
		return [][]string{{"-" + f.short}}
	case f.long != "" && f.equals:
		return [][]string{{"--" + f.long + "=" + v}}
	case f.long != "":
		return [][]string{{"--" + f.long, v}, {"--" + f.long + "=" + v}}
	default:
		return [][]string{{"-" + f.short, v}, {"-" + f.short + v}, {"-" + f.short + "=" + v}}
	}
}

func TestEveryVirtiofsdFlag(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range virtiofsdHelpFlags(t) {
		seen[f.key()] = true
		uses, ok := virtiofsdFlags[f.key()]
		if !ok {
			t.Errorf("virtiofsd's %s (help: %+v) is not in virtiofsdFlags: accept it with its meaning or refuse it by name", f.key(), f)
			continue
		}
		if f.equals {
			// clap refuses "--flag value" for a require_equals flag; uvfsd says how to write it.
			args := append(append([]string{}, baseArgs...), "--"+f.long, uses[0].value)
			if _, err := ParseConfig(args, noEnv); err == nil || !strings.Contains(err.Error(), "--"+f.long+"="+uses[0].value) {
				t.Errorf("%q: got %v, want an error that shows --%s=%s", args, err, f.long, uses[0].value)
			}
		}
		for _, u := range uses {
			if (u.value != "") != (f.value != "") {
				t.Errorf("%s: use %+v does not match whether the flag takes a value (%q)", f.key(), u, f.value)
				continue
			}
			for _, spelled := range f.spellings(u.value) {
				base := baseArgs
				if u.base != nil {
					base = u.base
				}
				args := append(append(append([]string{}, base...), u.extra...), spelled...)
				c, err := ParseConfig(args, noEnv)
				if u.refuse != "" {
					if err == nil || !strings.Contains(err.Error(), u.refuse) || !strings.Contains(err.Error(), f.key()) {
						t.Errorf("%q: got %v, want an error naming %s that says %q", args, err, f.key(), u.refuse)
					}
					continue
				}
				if err != nil {
					t.Errorf("%q: %v", args, err)
					continue
				}
				want := baseExpected()
				u.want(want)
				compareConfig(t, strings.Join(args, " "), c, want)
			}
		}
	}
	for key := range virtiofsdFlags {
		if !seen[key] {
			t.Errorf("virtiofsdFlags has %s, which virtiofsd's help does not list", key)
		}
	}
}

// -h/--help, -V/--version and --print-capabilities, each as the client writes it.
func TestVirtiofsdInfoFlags(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"--shared-dir", "/x", "-h"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "Usage: uvfsd") {
			t.Errorf("uvfsd %q: exit %d, stdout %q, stderr %q", args, code, stdout.String(), stderr.String())
		}
	}
	if _, err := ParseConfig([]string{"--help"}, noEnv); !errors.Is(err, errHelp) {
		t.Errorf("--help: %v, want errHelp", err)
	}
	// vng and Lima run --version alone and take a daemon whose --version succeeds; clap
	// answers -V even before a mistake that follows it.
	for _, args := range [][]string{{"--version"}, {"-V"}, {"--version", "--bogus"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 0 || stdout.String() != "uvfsd "+version+"\n" || stderr.Len() != 0 {
			t.Errorf("uvfsd %q: exit %d, stdout %q, stderr %q; want exit 0 and one version line", args, code, stdout.String(), stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--print-capabilities"}, &stdout, &stderr); code != 0 || stderr.Len() != 0 {
		t.Fatalf("uvfsd --print-capabilities: exit %d, stderr %q", code, stderr.String())
	}
	var want bytes.Buffer
	printCapabilities(&want)
	if stdout.String() != want.String() {
		t.Errorf("uvfsd --print-capabilities printed %q, want %q", stdout.String(), want.String())
	}
}

// The command lines real clients run virtiofsd with, exactly (NOTES: vng 1.35 and 1.41, Lima,
// podman machine, libvirt 9.0). S is the socket, D the shared directory.
func TestRealClientCommandLines(t *testing.T) {
	const S, D = "/tmp/virtmeXYZ", "/home/me/share"
	vng := func(c *Config) {
		c.Syslog, c.AnnounceSubmounts, c.SocketPath, c.SharedDir, c.Sandbox = true, false, S, "/", "none"
	}
	cases := []struct {
		name string
		line string
		want func(*Config)
	}{
		{"vng 1.35", "--syslog --no-announce-submounts --socket-path " + S + " --shared-dir / --sandbox none", vng},
		{"vng 1.35, read-only export", "--syslog --no-announce-submounts --socket-path " + S + " --shared-dir / --sandbox none --cache always --readonly",
			func(c *Config) { vng(c); c.Cache, c.Readonly = "always", true }},
		{"vng 1.35, cache auto", "--syslog --no-announce-submounts --socket-path " + S + " --shared-dir / --sandbox none --cache auto", vng},
		{"vng 1.35, external root", "--syslog --no-announce-submounts --posix-acl --socket-path " + S + " --shared-dir / --sandbox none --cache auto",
			func(c *Config) { vng(c); c.PosixACL, c.Xattr = true, true }},
		{"vng 1.41", "--syslog --no-announce-submounts --socket-path " + S + " --shared-dir / --sandbox none -o cache=always",
			func(c *Config) { vng(c); c.Cache = "always" }},
		{"vng 1.41, cache auto", "--syslog --no-announce-submounts --posix-acl --socket-path " + S + " --shared-dir / --sandbox none -o cache=auto",
			func(c *Config) { vng(c); c.PosixACL, c.Xattr = true, true }},
		{"Lima", "--socket-path " + S + " --shared-dir " + D, func(c *Config) { c.SocketPath, c.SharedDir = S, D }},
		{"podman machine", "--sandbox none --socket-path " + S + " --shared-dir . --seccomp=none",
			func(c *Config) { c.Sandbox, c.SocketPath, c.SharedDir, c.Seccomp = "none", S, ".", "none" }},
		{"libvirt 9.0", "--fd=31 -o source=" + D + ",xattr", func(c *Config) { c.FD, c.SharedDir, c.Xattr = 31, D, true }},
		{"libvirt 9.0, every option", "--fd=31 -o source=/srv/a,,b,cache=none,sandbox=chroot,xattr,flock,posix_lock --thread-pool-size=16",
			func(c *Config) {
				c.FD, c.SharedDir, c.Cache, c.Sandbox, c.Xattr = 31, "/srv/a,b", "never", "chroot", true
				c.Flock, c.PosixLock, c.ThreadPoolSize = true, true, 16
			}},
		{"libvirt 9.0, virtiofsd_debug", "--fd=31 -o source=" + D + ",xattr -d",
			func(c *Config) { c.FD, c.SharedDir, c.Xattr, c.LogLevel = 31, D, true, "debug" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := strings.Fields(tc.line)
			want := defaultConfig()
			tc.want(want)
			compareConfig(t, tc.line, mustParse(t, args, noEnv), want)
		})
	}
}
