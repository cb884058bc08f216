package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/fuse"
)

// Every case starts from these, so validation passes.
var baseArgs = []string{"--shared-dir=/base", "--socket-path=/base.sock"}

func noEnv(string) string { return "" }

func envOf(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// baseExpected is the Config that baseArgs alone must produce.
func baseExpected() *Config {
	c := defaultConfig()
	c.SharedDir = "/base"
	c.SocketPath = "/base.sock"
	return c
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustParse(t *testing.T, args []string, getenv func(string) string) *Config {
	t.Helper()
	c, err := ParseConfig(args, getenv)
	if err != nil {
		t.Fatalf("ParseConfig(%q): %v", args, err)
	}
	return c
}

func compareConfig(t *testing.T, what string, got, want *Config) {
	t.Helper()
	g, w := *got, *want
	g.warnings, w.warnings = nil, nil
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got  %+v\n want %+v", what, g, w)
	}
}

// The defaults documented by virtiofsd's README (and uvfsd's choices where
// virtiofsd has none).
func TestDefaults(t *testing.T) {
	c := mustParse(t, baseArgs, noEnv)
	checks := []struct {
		name      string
		got, want any
	}{
		{"FD", c.FD, -1},
		{"Cache", c.Cache, "auto"},
		{"Sandbox", c.Sandbox, "namespace"},
		{"Seccomp", c.Seccomp, "kill"},
		{"LogLevel", c.LogLevel, "info"},
		{"ThreadPoolSize", c.ThreadPoolSize, 0},
		{"PollUS", c.PollUS, -1},
		{"HiprioGatherUS", c.HiprioGatherUS, 0},
		{"HiprioLingerUS", c.HiprioLingerUS, 1000},
		{"HotWaitMS", c.HotWaitMS, 100},
		{"RlimitNofile", c.RlimitNofile, -1},
		{"InodeFileHandles", c.InodeFileHandles, "prefer"},
		{"HomeUID", c.HomeUID, -1},
		{"HomeGID", c.HomeGID, -1},
		{"RequestQueues", c.RequestQueues, 0},
		{"KillprivV2", c.KillprivV2, true},
		{"NoOpen", c.NoOpen, true},
		{"Xattr", c.Xattr, false},
		{"Flock", c.Flock, false},
		{"PosixLock", c.PosixLock, false},
		{"Profile", c.Profile, ""},
		{"ConfigFile", c.ConfigFile, ""},
		{"Warnings", len(c.Warnings()), 0},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("default %s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

// flagCase is one flag, given on the command line (after baseArgs) and, if
// toml is set, as the equivalent config file line.
type flagCase struct {
	flag string        // long flag name this case covers
	base []string      // replaces baseArgs when set
	args []string      // appended to base
	toml string        // the same setting in a config file; "" = command line only
	want func(*Config) // edits baseExpected()
}

var flagCases = []flagCase{
	{flag: "shared-dir", args: []string{"--shared-dir", "/x"}, toml: `shared-dir = "/x"`, want: func(c *Config) { c.SharedDir = "/x" }},
	{flag: "socket-path", args: []string{"--socket-path=/x.sock"}, toml: `socket-path = "/x.sock"`, want: func(c *Config) { c.SocketPath = "/x.sock" }},
	{flag: "socket", args: []string{"--socket=/x.sock"}, want: func(c *Config) { c.SocketPath = "/x.sock" }},
	{flag: "fd", base: []string{"--shared-dir=/base"}, args: []string{"--fd", "3"}, toml: `fd = 3`, want: func(c *Config) { c.SocketPath = ""; c.FD = 3 }},
	{flag: "socket-group", args: []string{"--socket-group=kvm"}, toml: `socket-group = "kvm"`, want: func(c *Config) { c.SocketGroup = "kvm" }},
	{flag: "tag", args: []string{"--tag=myfs"}, toml: `tag = "myfs"`, want: func(c *Config) { c.Tag = "myfs" }},
	{flag: "cache", args: []string{"--cache=metadata"}, toml: `cache = "metadata"`, want: func(c *Config) { c.Cache = "metadata" }},
	{flag: "cache", args: []string{"--cache=none"}, toml: `cache = "none"`, want: func(c *Config) { c.Cache = "never" }},
	{flag: "cache", args: []string{"--cache=always"}, toml: `cache = "always"`, want: func(c *Config) { c.Cache = "always" }},
	{flag: "sandbox", args: []string{"--sandbox", "chroot"}, toml: `sandbox = "chroot"`, want: func(c *Config) { c.Sandbox = "chroot" }},
	{flag: "sandbox", args: []string{"--sandbox=none"}, toml: `sandbox = "none"`, want: func(c *Config) { c.Sandbox = "none" }},
	{flag: "no-fallback", args: []string{"--sandbox=namespace", "--no-fallback"}, toml: "sandbox = \"namespace\"\nno-fallback = true", want: func(c *Config) { c.Sandbox = "namespace"; c.NoFallback = true }},
	{flag: "seccomp", args: []string{"--seccomp", "none"}, toml: `seccomp = "none"`, want: func(c *Config) { c.Seccomp = "none" }},
	{flag: "seccomp", args: []string{"--seccomp=log"}, toml: `seccomp = "log"`, want: func(c *Config) { c.Seccomp = "log" }},
	{flag: "seccomp", args: []string{"--seccomp=trap"}, toml: `seccomp = "trap"`, want: func(c *Config) { c.Seccomp = "trap" }},
	{flag: "log-level", args: []string{"--log-level=trace"}, toml: `log-level = "trace"`, want: func(c *Config) { c.LogLevel = "trace" }},
	{flag: "log-level", args: []string{"--log-level=err"}, toml: `log-level = "err"`, want: func(c *Config) { c.LogLevel = "error" }},
	{flag: "debug", args: []string{"-d"}, want: func(c *Config) { c.LogLevel = "debug" }},
	{flag: "debug", args: []string{"--debug"}, want: func(c *Config) { c.LogLevel = "debug" }},
	{flag: "syslog", args: []string{"--syslog"}, toml: `syslog = true`, want: func(c *Config) { c.Syslog = true }},
	{flag: "foreground", args: []string{"-f"}, want: func(c *Config) {}},
	{flag: "thread-pool-size", args: []string{"--thread-pool-size=16"}, toml: `thread-pool-size = 16`, want: func(c *Config) { c.ThreadPoolSize = 16 }},
	{flag: "forget-gather-us", args: []string{"--forget-gather-us=500"}, toml: `forget-gather-us = 500`, want: func(c *Config) { c.HiprioGatherUS = 500 }},
	{flag: "forget-linger-us", args: []string{"--forget-linger-us=0"}, toml: `forget-linger-us = 0`, want: func(c *Config) { c.HiprioLingerUS = 0 }},
	{flag: "hot-wait-ms", args: []string{"--hot-wait-ms=0"}, toml: `hot-wait-ms = 0`, want: func(c *Config) { c.HotWaitMS = 0 }},
	{flag: "poll-us", args: []string{"--poll-us=0"}, toml: `poll-us = 0`, want: func(c *Config) { c.PollUS = 0 }},
	{flag: "poll-us", args: []string{"--poll-us=-1"}, toml: `poll-us = -1`, want: func(c *Config) { c.PollUS = -1 }},
	{flag: "rlimit-nofile", args: []string{"--rlimit-nofile=4096"}, toml: `rlimit-nofile = 4096`, want: func(c *Config) { c.RlimitNofile = 4096 }},
	{flag: "rlimit-nofile", args: []string{"--rlimit-nofile=0"}, toml: `rlimit-nofile = 0`, want: func(c *Config) { c.RlimitNofile = 0 }},
	{flag: "num-request-queues", args: []string{"--num-request-queues=4"}, toml: `num-request-queues = 4`, want: func(c *Config) { c.RequestQueues = 4 }},
	{flag: "allow-direct-io", args: []string{"--allow-direct-io"}, toml: `allow-direct-io = true`, want: func(c *Config) { c.AllowDirectIO = true }},
	{flag: "allow-mmap", args: []string{"--allow-mmap"}, toml: `allow-mmap = true`, want: func(c *Config) { c.AllowMmap = true }},
	{flag: "announce-submounts", args: []string{"--announce-submounts"}, toml: `announce-submounts = true`, want: func(c *Config) { c.AnnounceSubmounts = true }},
	{flag: "no-announce-submounts", args: []string{"--announce-submounts", "--no-announce-submounts"}, toml: `no-announce-submounts = true`, want: func(c *Config) {}},
	{flag: "writeback", args: []string{"--writeback"}, toml: `writeback = true`, want: func(c *Config) { c.Writeback = true }},
	{flag: "xattr", args: []string{"--xattr"}, toml: `xattr = true`, want: func(c *Config) { c.Xattr = true }},
	{flag: "posix-acl", args: []string{"--posix-acl"}, toml: `posix-acl = true`, want: func(c *Config) { c.PosixACL = true; c.Xattr = true }},
	{flag: "security-label", args: []string{"--security-label"}, toml: `security-label = true`, want: func(c *Config) { c.SecurityLabel = true; c.Xattr = true }},
	{flag: "killpriv-v2", args: []string{"--killpriv-v2=false"}, toml: `killpriv-v2 = false`, want: func(c *Config) { c.KillprivV2 = false }},
	{flag: "no-open", args: []string{"--no-open=false"}, toml: `no-open = false`, want: func(c *Config) { c.NoOpen = false }},
	{flag: "no-opendir", args: []string{"--no-opendir"}, toml: `no-opendir = true`, want: func(c *Config) { c.NoOpendir = true }},
	{flag: "no-killpriv-v2", args: []string{"--killpriv-v2", "--no-killpriv-v2"}, toml: `no-killpriv-v2 = true`, want: func(c *Config) { c.KillprivV2 = false }},
	{flag: "no-readdirplus", args: []string{"--no-readdirplus"}, toml: `no-readdirplus = true`, want: func(c *Config) { c.NoReaddirplus = true }},
	{flag: "preserve-noatime", args: []string{"--preserve-noatime"}, toml: `preserve-noatime = true`, want: func(c *Config) { c.PreserveNoatime = true }},
	{flag: "readonly", args: []string{"--readonly"}, toml: `readonly = true`, want: func(c *Config) { c.Readonly = true }},
	{flag: "flock", args: []string{"--flock"}, toml: `flock = true`, want: func(c *Config) { c.Flock = true }},
	{flag: "posix-lock", args: []string{"--posix-lock"}, toml: `posix-lock = true`, want: func(c *Config) { c.PosixLock = true }},
	{flag: "xattrmap", args: []string{"--xattrmap=:map::user.virtiofs.:"}, toml: `xattrmap = ":map::user.virtiofs.:"`, want: func(c *Config) { c.Xattrmap = ":map::user.virtiofs.:"; c.Xattr = true }},
	{flag: "inode-file-handles", args: []string{"--inode-file-handles=mandatory"}, toml: `inode-file-handles = "mandatory"`, want: func(c *Config) { c.InodeFileHandles = "mandatory" }},
	{flag: "inode-file-handles", args: []string{"--inode-file-handles=never", "--inode-file-handles"}, want: func(c *Config) { c.InodeFileHandles = "prefer" }},
	{flag: "modcaps", args: []string{"--modcaps=+sys_admin:-chown"}, toml: `modcaps = "+sys_admin:-chown"`, want: func(c *Config) { c.Modcaps = "+sys_admin:-chown" }},
	{flag: "modcaps", args: []string{"--modcaps=-mknod"}, toml: `modcaps = "-mknod"`, want: func(c *Config) { c.Modcaps = "-mknod" }},
	{flag: "uid-map", args: []string{"--uid-map=:0:1000:1:", "--uid-map", ":1:100000:65536:"}, toml: `uid-map = [":0:1000:1:", ":1:100000:65536:"]`,
		want: func(c *Config) { c.UIDMap = []string{":0:1000:1:", ":1:100000:65536:"} }},
	{flag: "uid-map", args: []string{"--uid-map=/0/1000/1/"}, toml: `uid-map = "/0/1000/1/"`, want: func(c *Config) { c.UIDMap = []string{"/0/1000/1/"} }},
	{flag: "gid-map", args: []string{"--gid-map=:0:1000:1:"}, toml: `gid-map = [":0:1000:1:"]`, want: func(c *Config) { c.GIDMap = []string{":0:1000:1:"} }},
	{flag: "translate-uid", args: []string{"--translate-uid", "squash-guest:0:1001:4294967295", "--translate-uid=host:1001:1000:1"},
		toml: `translate-uid = ["squash-guest:0:1001:4294967295", "host:1001:1000:1"]`,
		want: func(c *Config) { c.TranslateUID = []string{"squash-guest:0:1001:4294967295", "host:1001:1000:1"} }},
	{flag: "translate-gid", args: []string{"--translate-gid=forbid-guest:0:100", "--translate-gid=map:5:6:7", "--translate-gid=guest:1:2:3", "--translate-gid=squash-host:1:2:3"},
		toml: `translate-gid = ["forbid-guest:0:100", "map:5:6:7", "guest:1:2:3", "squash-host:1:2:3"]`,
		want: func(c *Config) {
			c.TranslateGID = []string{"forbid-guest:0:100", "map:5:6:7", "guest:1:2:3", "squash-host:1:2:3"}
		}},
	{flag: "ownership", args: []string{"--ownership=mapped"}, toml: `ownership = "mapped"`, want: func(c *Config) { c.Ownership = "mapped" }},
	{flag: "ownership", args: []string{"--ownership", "passthrough"}, toml: `ownership = "passthrough"`, want: func(c *Config) {}},
	{flag: "profile", args: []string{"--profile=home"}, toml: `profile = "home"`, want: func(c *Config) { c.Profile = "home"; c.Xattr = true }},
	{flag: "profile", args: []string{"--profile=home", "--profile=none"}, toml: `profile = "none"`, want: func(c *Config) {}},
	{flag: "home-uid", args: []string{"--profile=home", "--home-uid=1000"}, toml: "profile = \"home\"\nhome-uid = 1000",
		want: func(c *Config) { c.Profile = "home"; c.Xattr = true; c.HomeUID = 1000 }},
	{flag: "home-gid", args: []string{"--profile=home", "--home-gid=0"}, toml: "profile = \"home\"\nhome-gid = 0",
		want: func(c *Config) { c.Profile = "home"; c.Xattr = true; c.HomeGID = 0 }},
	{flag: "migration-mode", args: []string{"--migration-mode=file-handles"}, toml: `migration-mode = "file-handles"`,
		want: func(c *Config) { c.MigrationMode = "file-handles" }},
	{flag: "migration-on-error", args: []string{"--migration-on-error=guest-error"}, toml: `migration-on-error = "guest-error"`,
		want: func(c *Config) { c.MigrationOnError = "guest-error" }},
	{flag: "migration-verify-handles", args: []string{"--migration-verify-handles"}, toml: `migration-verify-handles = true`,
		want: func(c *Config) { c.MigrationVerifyHandles = true }},
	{flag: "migration-confirm-paths", args: []string{"--migration-confirm-paths"}, toml: `migration-confirm-paths = true`,
		want: func(c *Config) { c.MigrationConfirmPaths = true }},
	{flag: "option", args: []string{"-o", "xattr,cache=none", "-o", "flock"}, want: func(c *Config) { c.Xattr = true; c.Cache = "never"; c.Flock = true }},
}

func TestFlagsOnCommandLine(t *testing.T) {
	for _, tc := range flagCases {
		base := tc.base
		if base == nil {
			base = baseArgs
		}
		args := append(append([]string{}, base...), tc.args...)
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			want := baseExpected()
			tc.want(want)
			compareConfig(t, "command line", mustParse(t, args, noEnv), want)
		})
	}
}

// Each flag as a config file key must have the same effect as the flag.
func TestFlagsInConfigFile(t *testing.T) {
	for _, tc := range flagCases {
		if tc.toml == "" {
			continue
		}
		t.Run(tc.toml, func(t *testing.T) {
			content := tc.toml + "\n"
			if !strings.Contains(tc.toml, "shared-dir") {
				content += "shared-dir = \"/base\"\n"
			}
			if !strings.Contains(tc.toml, "socket-path") && !strings.HasPrefix(tc.toml, "fd ") {
				content += "socket-path = \"/base.sock\"\n"
			}
			path := writeFile(t, t.TempDir(), "c.toml", content)
			want := baseExpected()
			tc.want(want)
			want.ConfigFile = path
			compareConfig(t, "config file "+content, mustParse(t, []string{"--config", path}, noEnv), want)
		})
	}
}

// A new flag must come with a test, and with a config file test unless it
// is command-line only.
func TestEveryFlagIsCovered(t *testing.T) {
	onCommandLine, inFile := map[string]bool{}, map[string]bool{}
	for _, tc := range flagCases {
		onCommandLine[tc.flag] = true
		if tc.toml != "" {
			inFile[tc.flag] = true
		}
	}
	for _, tc := range errorCases {
		onCommandLine[tc.flag] = true
	}
	// Covered by their own tests below.
	for _, f := range []string{"help", "version", "print-capabilities", "config"} {
		onCommandLine[f] = true
	}
	for _, d := range newFlagParser().fs.defs {
		if !onCommandLine[d.name] {
			t.Errorf("flag --%s has no test case", d.name)
		}
		if !commandLineOnly[d.name] && !inFile[d.name] {
			t.Errorf("flag --%s has no config file test case", d.name)
		}
	}
}

// legacyCases covers every C virtiofsd -o option.
var legacyCases = []struct {
	opt  string
	want func(*Config)
}{
	{"source=/x", func(c *Config) { c.SharedDir = "/x" }},
	{"cache=none", func(c *Config) { c.Cache = "never" }},
	{"cache=always", func(c *Config) { c.Cache = "always" }},
	{"log_level=err", func(c *Config) { c.LogLevel = "error" }},
	{"log_level=warn", func(c *Config) { c.LogLevel = "warn" }},
	{"sandbox=chroot", func(c *Config) { c.Sandbox = "chroot" }},
	{"xattrmap=:map::user.virtiofs.:", func(c *Config) { c.Xattrmap = ":map::user.virtiofs.:"; c.Xattr = true }},
	{"modcaps=+sys_admin:-chown", func(c *Config) { c.Modcaps = "+sys_admin:-chown" }},
	{"timeout=0.5", func(c *Config) {}},
	{"max_idle_threads=10", func(c *Config) {}},
	{"norace", func(c *Config) {}},
	{"vhost_user_socket=/other.sock", func(c *Config) { c.SocketPath = "/other.sock" }},
	{"debug", func(c *Config) { c.LogLevel = "debug" }},
	{"xattr", func(c *Config) { c.Xattr = true }},
	{"xattr,no_xattr", func(c *Config) {}},
	{"no_xattr", func(c *Config) {}},
	{"flock", func(c *Config) { c.Flock = true }},
	{"flock,no_flock", func(c *Config) {}},
	{"no_flock", func(c *Config) {}},
	{"posix_lock", func(c *Config) { c.PosixLock = true }},
	{"no_posix_lock", func(c *Config) {}},
	{"writeback", func(c *Config) { c.Writeback = true }},
	{"no_writeback", func(c *Config) {}},
	{"readdirplus", func(c *Config) {}},
	{"no_readdirplus", func(c *Config) { c.NoReaddirplus = true }},
	{"no_readdirplus,readdirplus", func(c *Config) {}},
	{"announce_submounts", func(c *Config) { c.AnnounceSubmounts = true }},
	{"killpriv_v2", func(c *Config) { c.KillprivV2 = true }},
	{"killpriv_v2,no_killpriv_v2", func(c *Config) { c.KillprivV2 = false }},
	{"no_killpriv_v2", func(c *Config) { c.KillprivV2 = false }},
	{"allow_direct_io", func(c *Config) { c.AllowDirectIO = true }},
	{"no_allow_direct_io", func(c *Config) {}},
	{"posix_acl", func(c *Config) { c.PosixACL = true; c.Xattr = true }},
	{"no_posix_acl", func(c *Config) {}},
	{"security_label", func(c *Config) { c.SecurityLabel = true; c.Xattr = true }},
	{"no_security_label", func(c *Config) {}},
	// libfuse-style escaped comma inside a value, and empty items.
	{`xattrmap=:prefix:all:a\,b::,xattr,`, func(c *Config) { c.Xattrmap = ":prefix:all:a,b::"; c.Xattr = true }},
	// libvirt doubles a comma in a path.
	{"source=/a,,b,,,xattr", func(c *Config) { c.SharedDir = "/a,b,"; c.Xattr = true }},
}

func TestLegacyOptions(t *testing.T) {
	for _, tc := range legacyCases {
		t.Run(tc.opt, func(t *testing.T) {
			want := baseExpected()
			tc.want(want)
			args := append(append([]string{}, baseArgs...), "-o", tc.opt)
			compareConfig(t, "-o "+tc.opt, mustParse(t, args, noEnv), want)
		})
	}
}

func TestEveryLegacyOptionIsCovered(t *testing.T) {
	covered := map[string]bool{}
	for _, tc := range legacyCases {
		for _, opt := range splitLegacyOptions(tc.opt) {
			name, _, _ := strings.Cut(opt, "=")
			covered[name] = true
		}
	}
	for _, m := range []map[string]string{legacyValued, legacyIgnored, legacyIgnoredSwitches} {
		for name := range m {
			if !covered[name] {
				t.Errorf("-o %s has no test case", name)
			}
		}
	}
	for name := range legacySwitches {
		if !covered[name] {
			t.Errorf("-o %s has no test case", name)
		}
	}
}

// Later settings win, whichever spelling they use.
func TestCommandLineOrder(t *testing.T) {
	cases := []struct {
		args  []string
		field func(*Config) any
		want  any
	}{
		{[]string{"-d", "--log-level=warn"}, func(c *Config) any { return c.LogLevel }, "warn"},
		{[]string{"--log-level=warn", "-d"}, func(c *Config) any { return c.LogLevel }, "debug"},
		{[]string{"-o", "cache=always", "--cache=never"}, func(c *Config) any { return c.Cache }, "never"},
		{[]string{"--cache=never", "-o", "cache=always"}, func(c *Config) any { return c.Cache }, "always"},
		{[]string{"--no-killpriv-v2", "--killpriv-v2"}, func(c *Config) any { return c.KillprivV2 }, true},
		{[]string{"--socket-path=/a", "--socket=/b"}, func(c *Config) any { return c.SocketPath }, "/b"},
		{[]string{"-o", "source=/o", "--shared-dir=/flag"}, func(c *Config) any { return c.SharedDir }, "/flag"},
	}
	for _, tc := range cases {
		c := mustParse(t, append(append([]string{}, baseArgs...), tc.args...), noEnv)
		if got := tc.field(c); got != tc.want {
			t.Errorf("%q: got %v, want %v", tc.args, got, tc.want)
		}
	}
}

func TestWarnings(t *testing.T) {
	cases := []struct {
		args []string
		want []string // substrings, one per warning
	}{
		{nil, nil},
		{[]string{"--seccomp=none"}, nil},
		{[]string{"-o", "timeout=5"}, []string{"ignoring -o timeout=5: uvfsd derives cache timeouts from --cache"}},
		{[]string{"-o", "max_idle_threads=3", "-o", "norace"}, []string{"max_idle_threads=3", "norace"}},
	}
	for _, tc := range cases {
		c := mustParse(t, append(append([]string{}, baseArgs...), tc.args...), noEnv)
		got := c.Warnings()
		if len(got) != len(tc.want) {
			t.Errorf("%q: warnings %q, want %d", tc.args, got, len(tc.want))
			continue
		}
		for i := range got {
			if !strings.Contains(got[i], tc.want[i]) {
				t.Errorf("%q: warning %q does not contain %q", tc.args, got[i], tc.want[i])
			}
		}
	}
}

type errorCase struct {
	flag    string // the flag the case exercises
	args    []string
	toml    string // config file content, passed with --config
	wantErr string
}

var errorCases = []errorCase{
	{flag: "shared-dir", args: []string{"--socket-path=/s"}, wantErr: "missing --shared-dir"},
	{flag: "socket-path", args: []string{"--shared-dir=/d"}, wantErr: "missing --socket-path or --fd"},
	{flag: "fd", args: append([]string{"--fd=3"}, baseArgs...), wantErr: "--socket-path and --fd both given"},
	{flag: "fd", args: append([]string{"--fd=-1"}, baseArgs...), wantErr: "want a number from 0 to 2147483647"},
	{flag: "fd", args: append([]string{"--fd=x"}, baseArgs...), wantErr: `invalid value "x" for --fd: want a number`},
	{flag: "tag", args: append([]string{"--tag=" + strings.Repeat("t", 37)}, baseArgs...), wantErr: `invalid value "ttttttttttttttttttttttttttttttttttttt" for --tag: a tag is 1 to 36 bytes long, not 37`},
	{flag: "tag", args: append([]string{"--tag="}, baseArgs...), wantErr: "a tag is 1 to 36 bytes long, not 0"},
	{flag: "cache", args: append([]string{"--cache=bogus"}, baseArgs...), wantErr: "must be one of auto, always, metadata, never"},
	{flag: "sandbox", args: append([]string{"--sandbox=jail"}, baseArgs...), wantErr: "must be one of namespace, chroot, none"},
	{flag: "seccomp", args: append([]string{"--seccomp=errno"}, baseArgs...), wantErr: "must be one of none, kill, log, trap"},
	{flag: "log-level", args: append([]string{"--log-level=loud"}, baseArgs...), wantErr: "must be one of error, warn, info, debug, trace, off"},
	{flag: "inode-file-handles", args: append([]string{"--inode-file-handles=always"}, baseArgs...), wantErr: "must be one of never, prefer, mandatory"},
	{flag: "inode-file-handles", args: append([]string{"--inode-file-handles", "mandatory"}, baseArgs...), wantErr: `--inode-file-handles takes its value after '=': --inode-file-handles=mandatory`},
	{flag: "ownership", args: append([]string{"--ownership=mapped-xattr"}, baseArgs...), wantErr: "must be one of passthrough, mapped"},
	{flag: "ownership", args: append([]string{"--ownership=mapped", "--posix-acl"}, baseArgs...), wantErr: "cannot be combined with --posix-acl"},
	{flag: "profile", args: append([]string{"--profile=work"}, baseArgs...), wantErr: "must be one of home, none"},
	{flag: "home-uid", args: append([]string{"--home-uid=1000"}, baseArgs...), wantErr: "only apply to --profile=home"},
	{flag: "home-gid", args: append([]string{"--home-gid=1000"}, baseArgs...), wantErr: "only apply to --profile=home"},
	{flag: "home-uid", args: append([]string{"--profile=home", "--home-uid=4294967295"}, baseArgs...), wantErr: "want a number from 0 to 4294967294"},
	{flag: "thread-pool-size", args: append([]string{"--thread-pool-size=-1"}, baseArgs...), wantErr: "--thread-pool-size=-1"},
	{flag: "num-request-queues", args: append([]string{"--num-request-queues=-1"}, baseArgs...), wantErr: "use 1 to 1022"},
	{flag: "num-request-queues", args: append([]string{"--num-request-queues=1023"}, baseArgs...), wantErr: "use 1 to 1022"},
	{flag: "rlimit-nofile", args: append([]string{"--rlimit-nofile=-5"}, baseArgs...), wantErr: "want a number from 0"},
	{flag: "uid-map", args: append([]string{"--uid-map=0:1000:1"}, baseArgs...), wantErr: `want ":namespace_id:host_id:count:"`},
	{flag: "uid-map", args: append([]string{"--uid-map=:0:1000:"}, baseArgs...), wantErr: `want ":namespace_id:host_id:count:"`},
	{flag: "uid-map", args: append([]string{"--uid-map=:0:1000:1"}, baseArgs...), wantErr: `want ":namespace_id:host_id:count:"`},
	{flag: "gid-map", args: append([]string{"--gid-map=:0:x:1:"}, baseArgs...), wantErr: `"x" is not a number from 0 to 4294967295`},
	{flag: "gid-map", args: append([]string{"--gid-map=:0:4294967296:1:"}, baseArgs...), wantErr: "is not a number"},
	{flag: "translate-uid", args: append([]string{"--translate-uid=bogus:1:2:3"}, baseArgs...), wantErr: `unknown kind "bogus"`},
	{flag: "translate-uid", args: append([]string{"--translate-uid=guest:1:2"}, baseArgs...), wantErr: "guest takes 3 numbers"},
	{flag: "translate-gid", args: append([]string{"--translate-gid=forbid-guest:1:2:3"}, baseArgs...), wantErr: "forbid-guest takes 2 numbers"},
	{flag: "translate-gid", args: append([]string{"--translate-gid=map:1:-2:3"}, baseArgs...), wantErr: `"-2" is not a number`},
	{flag: "modcaps", args: append([]string{"--modcaps=sys_admin"}, baseArgs...), wantErr: `bad item "sys_admin"`},
	{flag: "modcaps", args: append([]string{"--modcaps=+chown:-"}, baseArgs...), wantErr: `bad item "-"`},
	{flag: "modcaps", args: append([]string{"--modcaps=+sys admin"}, baseArgs...), wantErr: `unknown capability "sys admin"`},
	{flag: "modcaps", args: append([]string{"--modcaps=+-chown"}, baseArgs...), wantErr: `unknown capability "-chown"`},
	{flag: "modcaps", args: append([]string{"--modcaps=+frobnicate"}, baseArgs...), wantErr: `unknown capability "frobnicate"`},
	{flag: "modcaps", args: append([]string{"--modcaps", "-mknod"}, baseArgs...), wantErr: `--modcaps needs a value, and "-mknod" looks like a flag: if it is the value, write --modcaps=-mknod`},
	{flag: "migration-mode", args: append([]string{"--migration-mode=bogus"}, baseArgs...), wantErr: "must be one of find-paths, file-handles"},
	{flag: "daemonize", args: append([]string{"--daemonize"}, baseArgs...), wantErr: "--daemonize is not supported"},
	{flag: "syslog", args: append([]string{"--syslog=maybe"}, baseArgs...), wantErr: `invalid value "maybe" for --syslog: want true or false`},
	{flag: "", args: append([]string{"--bogus"}, baseArgs...), wantErr: "unknown flag --bogus (see uvfsd --help"},
	{flag: "", args: append([]string{"extra"}, baseArgs...), wantErr: `unexpected argument "extra"`},
	{flag: "option", args: append([]string{"-o", "allow_root"}, baseArgs...), wantErr: `unknown option "allow_root"`},
	{flag: "option", args: append([]string{"-o", "xattr=1"}, baseArgs...), wantErr: "xattr takes no value"},
	{flag: "option", args: append([]string{"-o", "source"}, baseArgs...), wantErr: "source needs a value"},
	{flag: "option", args: append([]string{"-o", "timeout=soon"}, baseArgs...), wantErr: "timeout needs a non-negative number"},
	{flag: "option", args: append([]string{"-o", "timeout"}, baseArgs...), wantErr: "timeout needs a non-negative number"},
	{flag: "option", args: append([]string{"-o", "cache=bogus"}, baseArgs...), wantErr: "cache: must be one of auto, always, metadata, never"},
	{flag: "option", args: append([]string{"-o", "log_level=loud"}, baseArgs...), wantErr: "log_level: must be one of"},
	// Config file errors (the file path is appended to the message check).
	{flag: "config", toml: "bogus = 1\n", wantErr: `unknown key "bogus"`},
	{flag: "config", toml: "help = true\n", wantErr: `key "help" only works on the command line`},
	{flag: "config", toml: "option = \"xattr\"\n", wantErr: `key "option" only works on the command line`},
	{flag: "config", toml: "config = \"/other.toml\"\n", wantErr: `key "config" only works on the command line`},
	{flag: "config", toml: "xattr = \"yes\"\n", wantErr: `key "xattr": want true or false, not a string`},
	{flag: "config", toml: "fd = \"3\"\n", wantErr: `key "fd": want an integer, not a string`},
	{flag: "config", toml: "thread-pool-size = 1.5\n", wantErr: `key "thread-pool-size": want an integer, not a float`},
	{flag: "config", toml: "tag = 7\n", wantErr: `key "tag": want a string, not an integer`},
	{flag: "config", toml: "uid-map = [1, 2]\n", wantErr: `key "uid-map": want an array of strings, but it holds an integer`},
	{flag: "config", toml: "uid-map = true\n", wantErr: `key "uid-map": want an array of strings, not a boolean`},
	{flag: "config", toml: "[cache]\nmode = \"auto\"\n", wantErr: `key "cache": want a string, not a table`},
	{flag: "config", toml: "cache = \"bogus\"\n", wantErr: `cache = "bogus": must be one of auto, always, metadata, never`},
	{flag: "config", toml: "uid-map = [\":0:1000:1:\", \"0:1:1\"]\n", wantErr: `uid-map = "0:1:1": want ":namespace_id:host_id:count:"`},
	{flag: "config", toml: "cache = \n", wantErr: "config file "},
}

func TestErrors(t *testing.T) {
	for _, tc := range errorCases {
		args := tc.args
		name := strings.Join(args, " ")
		var path string
		if tc.toml != "" {
			path = writeFile(t, t.TempDir(), "bad.toml", tc.toml)
			args = []string{"--config=" + path} // the file fails before the required flags are checked
			name = tc.toml
		}
		t.Run(name, func(t *testing.T) {
			c, err := ParseConfig(args, noEnv)
			if err == nil {
				t.Fatalf("ParseConfig(%q) = %+v, want error containing %q", args, c, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not contain %q", err, tc.wantErr)
			}
			if path != "" && !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the config file %s", err, path)
			}
		})
	}
}

func TestExplicitConfigMustExist(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.toml")
	_, err := ParseConfig(append([]string{"--config", missing}, baseArgs...), noEnv)
	if err == nil || !strings.Contains(err.Error(), "--config") || !strings.Contains(err.Error(), missing) {
		t.Fatalf("got %v, want a --config error naming %s", err, missing)
	}
}

func TestConfigFileLocation(t *testing.T) {
	dir := t.TempDir()
	xdg := filepath.Join(dir, "xdg")
	home := filepath.Join(dir, "home")
	xdgFile := writeFile(t, xdg, "uvfsd/config.toml", `tag = "from-xdg"`)
	homeFile := writeFile(t, home, ".config/uvfsd/config.toml", `tag = "from-home"`)
	explicit := writeFile(t, dir, "explicit.toml", `tag = "from-explicit"`)

	cases := []struct {
		name     string
		env      map[string]string
		extra    []string
		wantFile string
		wantTag  string
	}{
		{"xdg wins over home", map[string]string{"XDG_CONFIG_HOME": xdg, "HOME": home}, nil, xdgFile, "from-xdg"},
		{"xdg without file falls back to home", map[string]string{"XDG_CONFIG_HOME": filepath.Join(dir, "empty"), "HOME": home}, nil, homeFile, "from-home"},
		{"relative xdg is ignored", map[string]string{"XDG_CONFIG_HOME": "xdg", "HOME": home}, nil, homeFile, "from-home"},
		{"home only", map[string]string{"HOME": home}, nil, homeFile, "from-home"},
		{"no file anywhere", map[string]string{"HOME": filepath.Join(dir, "empty")}, nil, "", ""},
		{"no environment", nil, nil, "", ""},
		{"--config beats both", map[string]string{"XDG_CONFIG_HOME": xdg, "HOME": home}, []string{"--config=" + explicit}, explicit, "from-explicit"},
		{"flag beats file", map[string]string{"XDG_CONFIG_HOME": xdg}, []string{"--tag=from-flag"}, xdgFile, "from-flag"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := mustParse(t, append(append([]string{}, baseArgs...), tc.extra...), envOf(tc.env))
			if c.ConfigFile != tc.wantFile || c.Tag != tc.wantTag {
				t.Errorf("ConfigFile %q, Tag %q; want %q, %q", c.ConfigFile, c.Tag, tc.wantFile, tc.wantTag)
			}
		})
	}
}

// defaults < file < command line, including repeatable flags, -o and the
// socket-path/fd alternative.
func TestConfigFilePrecedence(t *testing.T) {
	file := writeFile(t, t.TempDir(), "c.toml", `
shared-dir = "/file"
socket-path = "/file.sock"
cache = "always"
xattr = true
killpriv-v2 = true
uid-map = [":0:1000:1:", ":1:100000:65536:"]
translate-gid = ["map:0:100:1"]
`)
	cases := []struct {
		name string
		args []string
		want func(*Config)
	}{
		{"file only", nil, func(c *Config) {}},
		{"scalar flag overrides", []string{"--cache=never"}, func(c *Config) { c.Cache = "never" }},
		{"bool flag overrides", []string{"--xattr=false"}, func(c *Config) { c.Xattr = false }},
		{"-o overrides", []string{"-o", "source=/cli,no_xattr"}, func(c *Config) { c.SharedDir = "/cli"; c.Xattr = false }},
		{"list flag replaces the file's list", []string{"--uid-map=:5:6:7:"}, func(c *Config) { c.UIDMap = []string{":5:6:7:"} }},
		{"--fd replaces the file's socket-path", []string{"--fd=4"}, func(c *Config) { c.SocketPath = ""; c.FD = 4 }},
		{"--socket replaces the file's socket-path", []string{"--socket=/cli.sock"}, func(c *Config) { c.SocketPath = "/cli.sock" }},
		{"--no-killpriv-v2 overrides killpriv-v2", []string{"--no-killpriv-v2"}, func(c *Config) { c.KillprivV2 = false }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := defaultConfig()
			want.ConfigFile = file
			want.SharedDir, want.SocketPath = "/file", "/file.sock"
			want.Cache, want.Xattr, want.KillprivV2 = "always", true, true
			want.UIDMap = []string{":0:1000:1:", ":1:100000:65536:"}
			want.TranslateGID = []string{"map:0:100:1"}
			tc.want(want)
			got := mustParse(t, append([]string{"--config", file}, tc.args...), noEnv)
			compareConfig(t, tc.name, got, want)
		})
	}
}

// Unlike the Rust virtiofsd, uvfsd translates the ids inside ACLs, so --posix-acl (here from the
// file) and --translate-uid (from the command line) work together.
func TestACLWithTranslationAcrossFileAndFlags(t *testing.T) {
	file := writeFile(t, t.TempDir(), "c.toml", "posix-acl = true\n")
	c, err := ParseConfig(append([]string{"--config", file, "--translate-uid=map:0:1:1"}, baseArgs...), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if !c.PosixACL || !c.Xattr || len(c.TranslateUID) != 1 {
		t.Fatalf("got posix-acl %v xattr %v translate-uid %q", c.PosixACL, c.Xattr, c.TranslateUID)
	}
}

// -V and --print-capabilities must work without a shared dir and even
// with a broken config file.
func TestInfoFlagsSkipEverythingElse(t *testing.T) {
	broken := writeFile(t, t.TempDir(), "broken.toml", "bogus = 1\n")
	for _, args := range [][]string{
		{"-V"}, {"--version"}, {"--print-capabilities"}, {"--config", broken, "--print-capabilities"},
	} {
		c, err := ParseConfig(args, noEnv)
		if err != nil {
			t.Errorf("%q: %v", args, err)
			continue
		}
		if !c.Version && !c.PrintCapabilities {
			t.Errorf("%q: neither Version nor PrintCapabilities set", args)
		}
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"--shared-dir=/x", "--help"}} {
		if _, err := ParseConfig(args, noEnv); !errors.Is(err, errHelp) {
			t.Errorf("%q: got %v, want errHelp", args, err)
		}
	}
	var buf bytes.Buffer
	writeUsage(&buf)
	help := buf.String()
	if !strings.Contains(help, "Usage: uvfsd [FLAGS] [OPTIONS] --fd <fd>|--socket-path <socket-path> --shared-dir <shared-dir>") {
		t.Errorf("help has no usage line:\n%s", help)
	}
	for _, d := range newFlagParser().fs.defs {
		listed := strings.Contains(help, "--"+d.name+" ") || strings.Contains(help, "--"+d.name+"\n") ||
			strings.Contains(help, "--"+d.name+"[=")
		if listed == d.hidden {
			t.Errorf("--%s: listed in help = %v, hidden = %v", d.name, listed, d.hidden)
		}
	}
	for _, f := range []string{"-o, --option", "-d, --debug", "-V, --version", "-h, --help", "-f, --foreground"} {
		if !strings.Contains(help, f) {
			t.Errorf("help does not list %q", f)
		}
	}
	// No "(default -1)" for unset numbers.
	if strings.Contains(help, "(default -1)") {
		t.Errorf("help shows an internal -1 default:\n%s", help)
	}
}

func TestPrintVersion(t *testing.T) {
	var buf bytes.Buffer
	printVersion(&buf)
	if got, want := buf.String(), "uvfsd "+version+"\n"; got != want {
		t.Errorf("printVersion wrote %q, want %q", got, want)
	}
}

func TestPollWindow(t *testing.T) {
	for _, tc := range []struct {
		us, cpus int
		want     time.Duration
	}{
		{-1, 2, 0}, {-1, 1, 0}, {-1, 4, 50 * time.Microsecond}, {-1, 64, 50 * time.Microsecond},
		{0, 64, 0}, {20, 2, 20 * time.Microsecond}, {1000, 8, time.Millisecond},
	} {
		if got := pollWindow(tc.us, tc.cpus); got != tc.want {
			t.Errorf("pollWindow(%d, %d CPUs) = %v, want %v", tc.us, tc.cpus, got, tc.want)
		}
	}
}

// TestIdmapAndMappedOwnership: ALLOW_IDMAP is offered by default, and not with
// --ownership=mapped, which needs the caller's ids in SETATTR (a guest that agreed on it sends -1).
func TestIdmapAndMappedOwnership(t *testing.T) {
	base := []string{"--shared-dir=/base", "--socket-path=/base.sock"}
	for _, c := range []struct {
		args []string
		want bool
	}{
		{base, true},
		{append([]string{"--ownership=mapped"}, base...), false},
	} {
		cfg, err := ParseConfig(c.args, func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		if got := wantedCapabilities(cfg)&fuse.CapAllowIdmap != 0; got != c.want {
			t.Errorf("%v: ALLOW_IDMAP offered %v, want %v", c.args, got, c.want)
		}
	}
}

// Rootless uvfsd cannot open file handles, so --migration-mode=file-handles fails at start with
// what to do instead; as root, the options carry the migration flags to passfs.
func TestMigrationOptions(t *testing.T) {
	cfg := defaultConfig()
	cfg.MigrationMode, cfg.MigrationOnError, cfg.MigrationConfirmPaths = "file-handles", "guest-error", true
	if _, err := fileSystemOptions(cfg, -1, -1, true); err == nil || !strings.Contains(err.Error(), "--migration-mode=find-paths") {
		t.Errorf("rootless file-handles: %v, want an error that names find-paths", err)
	}
	o, err := fileSystemOptions(cfg, -1, -1, false)
	if err != nil {
		t.Fatal(err)
	}
	if m := o.Migration; !m.FileHandles || !m.GuestError || !m.ConfirmPaths || m.VerifyHandles {
		t.Errorf("passfs migration options %+v", m)
	}
}
