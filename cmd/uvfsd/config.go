package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/uvfsd/uvfsd/userns"
	"github.com/uvfsd/uvfsd/vhost"
)

// version is what -V/--version prints; release builds override it with
// -ldflags "-X main.version=…".
var version = "0.1.0-dev"

// errHelp is returned by ParseConfig for -h/--help; the caller prints
// writeUsage and exits 0.
var errHelp = errors.New("help requested")

// Config is everything the command line and the TOML config file can say. One field per flag.
type Config struct {
	SharedDir, SocketPath, SocketGroup string
	FD                                 int    // --fd, -1 if unset
	Tag                                string // virtio-fs tag, at most 36 bytes ("" = let QEMU's tag= win)

	Cache   string // auto|always|metadata|never (C's "none" → "never")
	Sandbox string // namespace|chroot|none
	// Seccomp is accepted for virtiofsd compatibility, but uvfsd installs no seccomp filter yet:
	// the default is "none", and finish refuses any other value instead of pretending to filter.
	Seccomp  string
	LogLevel string // error|warn|info|debug|trace|off

	Syslog, PrintCapabilities, Version bool

	ThreadPoolSize int // 0 = no pool, as virtiofsd
	// PollUS is the longest a request queue's worker watches its ring for the guest's next request
	// before it sleeps (adaptive, like KVM's halt polling); 0 never polls, -1 (the default) picks
	// by the CPUs there are (pollWindow).
	PollUS int
	// HiprioGatherUS batches the guest's FORGET requests (see vhost.Config.HiprioGather).
	HiprioGatherUS int
	// HiprioLingerUS serves FORGET floods on a timer (see vhost.Config.HiprioLinger).
	HiprioLingerUS int
	// HotWaitMS keeps queue workers off the Go runtime's books between requests (see
	// vhost.Config.HotWait).
	HotWaitMS int
	// RlimitNofile is -1 when unset (raise the soft limit like virtiofsd:
	// min(1000000, nr_open, hard limit)); 0 leaves the limit unchanged.
	RlimitNofile int

	AllowDirectIO, AllowMmap, AnnounceSubmounts, Writeback, Xattr, PosixACL, SecurityLabel bool
	KillprivV2, NoReaddirplus, PreserveNoatime, Readonly                                   bool
	// NoOpen lets the guest open regular files without OPEN and RELEASE (FUSE_NO_OPEN_SUPPORT).
	NoOpen bool
	// NoOpendir lets the guest list directories without OPENDIR and RELEASEDIR
	// (FUSE_NO_OPENDIR_SUPPORT); the guest then caches listings.
	NoOpendir bool

	Xattrmap         string // rules as in virtiofsd; a non-empty map implies Xattr
	InodeFileHandles string // never|prefer|mandatory (default prefer)
	Modcaps          string // e.g. "+sys_admin:-chown", syntax checked shallowly

	UIDMap, GIDMap             []string // --uid-map/--gid-map (repeatable), ":ns:host:count:"
	TranslateUID, TranslateGID []string // --translate-uid/--translate-gid (repeatable), "kind:a:b:count"

	Profile string // "" or "home"; "home" implies Xattr
	// HomeUID/HomeGID: guest ids for the invoking user's files in the home
	// profile, -1 = same as host. Only valid with Profile "home".
	HomeUID, HomeGID int

	// Flock and PosixLock are the C virtiofsd's -o flock / -o posix_lock;
	// both default off there (no_flock, no_posix_lock) and Rust virtiofsd has
	// no locks at all, so uvfsd defaults them off too.
	Flock, PosixLock bool
	RequestQueues    int    // --num-request-queues: request virtqueues served, 1..1022 (QEMU's limit)
	ConfigFile       string // the config file that was read ("" = none); set with --config

	warnings []string
}

// Warnings lists accepted-but-ignored settings (-o timeout=…) for the caller to log once at
// start-up.
func (c *Config) Warnings() []string { return c.warnings }

// maxTagLen is the size of the tag field in virtio-fs config space.
const maxTagLen = 36

// maxRequestQueues is QEMU's limit: VIRTIO_QUEUE_MAX minus the hiprio and
// notification queues.
const maxRequestQueues = 1022

func defaultConfig() *Config {
	return &Config{
		FD:               -1,
		Cache:            "auto",
		Sandbox:          "namespace",
		Seccomp:          "none",
		LogLevel:         "info",
		RlimitNofile:     -1,
		InodeFileHandles: "prefer",
		HomeUID:          -1,
		HomeGID:          -1,
		RequestQueues:    1,
		PollUS:           -1,
		HiprioGatherUS:   0,
		HiprioLingerUS:   1000,
		HotWaitMS:        int(vhost.DefaultHotWait / time.Millisecond),
		KillprivV2:       true,
		NoOpen:           true,
		NoOpendir:        true,
	}
}

// ParseConfig parses args (without argv[0]); getenv looks up XDG_CONFIG_HOME and HOME.
// Order: defaults < config file (--config FILE, else $XDG_CONFIG_HOME/uvfsd/config.toml if it
// exists, else ~/.config/uvfsd/config.toml if it exists) < command-line flags.
// -h/--help returns errHelp; -V/--version and --print-capabilities skip the
// config file and all other checks.
func ParseConfig(args []string, getenv func(string) string) (*Config, error) {
	// First pass: learn --config and which flags the command line sets, so
	// that the file can be applied underneath them.
	cli := newFlagParser()
	if err := cli.parseArgs(args); err != nil {
		return nil, err
	}
	if cli.cfg.Version || cli.cfg.PrintCapabilities {
		return cli.cfg, nil
	}

	p := newFlagParser()
	path, err := configFilePath(cli.cfg.ConfigFile, getenv)
	if err != nil {
		return nil, err
	}
	if path != "" {
		if err := p.applyConfigFile(path, cli.fs); err != nil {
			return nil, err
		}
	}
	if err := p.parseArgs(args); err != nil {
		return nil, err
	}
	p.cfg.ConfigFile = path
	if err := p.finish(); err != nil {
		return nil, err
	}
	return p.cfg, nil
}

// flagParser binds one flagSet to one Config, plus the flags that only exist to be accepted and
// rejected.
type flagParser struct {
	cfg *Config
	fs  *flagSet

	help, foreground, daemonize                   bool
	migrationMode, migrationOnError               string
	migrationVerifyHandles, migrationConfirmPaths bool
}

func newFlagParser() *flagParser {
	p := &flagParser{cfg: defaultConfig(), migrationMode: "find-paths", migrationOnError: "abort"}
	c := p.cfg
	fs := newFlagSet()
	p.fs = fs

	// A flag's default is its field's value in defaultConfig, written once; --help shows it.
	fs.boolVar(&p.help, "help", 'h', "print this help and exit")
	fs.boolVar(&c.Version, "version", 'V', "print the version and exit")
	fs.boolVar(&c.PrintCapabilities, "print-capabilities", 0, "print vhost-user.json backend capabilities and exit")
	fs.stringVar(&c.ConfigFile, "config", "read settings from this TOML `FILE` (default $XDG_CONFIG_HOME/uvfsd/config.toml or ~/.config/uvfsd/config.toml, if present)")

	fs.stringVar(&c.SharedDir, "shared-dir", "shared directory `PATH` (required)")
	fs.stringVar(&c.SocketPath, "socket-path", "listen for QEMU on the vhost-user unix socket at `PATH`; uvfsd writes its pid to PATH.pid and holds a lock on it while it runs")
	fs.stringVar(&c.SocketPath, "socket", "deprecated alias of --socket-path").hidden = true
	fs.variable(&idValue{target: &c.FD, max: maxFD}, "fd", 0, "listen on the already listening (not yet connected) socket `FD` instead of --socket-path")
	fs.stringVar(&c.SocketGroup, "socket-group", "`GROUP` that owns the vhost-user socket")
	fs.variable(&tagValue{&c.Tag}, "tag", 0, "`TAG` the virtio-fs device advertises, 1 to 36 bytes (QEMU 7.2 ignores it; use -device …,tag=)")

	fs.variable(newEnum(&c.Cache, []string{"auto", "always", "metadata", "never"}, map[string]string{"none": "never"}), "cache", 0, "caching `POLICY`: auto, always, metadata, never")
	fs.variable(newEnum(&c.Sandbox, []string{"namespace", "chroot", "none"}, nil), "sandbox", 0, "sandbox `MODE`: namespace, chroot, none")
	fs.variable(newEnum(&c.Seccomp, []string{"none", "kill", "log", "trap"}, nil), "seccomp", 0, "seccomp `ACTION`: uvfsd has no seccomp filter yet, so it takes none only and refuses kill, log and trap")
	fs.variable(newEnum(&c.LogLevel, []string{"error", "warn", "info", "debug", "trace", "off"}, map[string]string{"err": "error", "warning": "warn"}), "log-level", 0, "log `LEVEL`: error, warn, info, debug, trace, off")
	fs.variable(&debugValue{&c.LogLevel}, "debug", 'd', "same as --log-level=debug (virtiofsd's -d)")
	fs.boolVar(&c.Syslog, "syslog", 0, "log to syslog instead of stderr")
	fs.boolVar(&p.foreground, "foreground", 'f', "no effect: uvfsd always runs in the foreground (virtiofsd's -f)")
	fs.boolVar(&p.daemonize, "daemonize", 0, "not supported").hidden = true

	fs.intVar(&c.ThreadPoolSize, "thread-pool-size", "let up to `N` goroutines serve a request queue when requests queue up (a lone request is served inline, so a request that blocks still holds up the ones after it); 0 or 1: one per queue")
	fs.variable(&idValue{target: &c.PollUS, max: 1000, auto: true}, "poll-us", 0, "after a request queue runs dry, watch it up to `N` µs (0 to 1000) for the next request before sleeping (adapts to the guest; 0 never); saves a wake-up and a guest kick per request when the guest is fast (KVM) and a core is spare (default 50 with 4 or more CPUs, else 0: on 2 cores the spinning takes CPU from the guest)")
	fs.intVar(&c.HiprioGatherUS, "forget-gather-us", "after the guest's first FORGET, wait `N` µs for more before serving them, so that dropping thousands of inodes costs the guest one interrupt per batch instead of one each (0, the default, serves at once: no gain measured under TCG)")
	fs.intVar(&c.HiprioLingerUS, "forget-linger-us", "while the guest keeps sending FORGETs, serve them every `N` µs without asking it to kick for each one, and interrupt it once per quarter ring or when they stop instead of once per FORGET (0: serve on kicks, one interrupt per batch served)")
	fs.intVar(&c.HotWaitMS, "hot-wait-ms", "for `N` ms after the guest's last request, a queue's worker waits in a system call that the Go runtime does not see, which spares the runtime's monitor thread a wake-up per request (0 to 10000; 0: always wait through the runtime)")
	fs.variable(&idValue{target: &c.RlimitNofile, max: 1 << 40}, "rlimit-nofile", 0, "set the file descriptor limit to `N`; 0 leaves it unchanged (default min(1000000, nr_open))")
	fs.intVar(&c.RequestQueues, "num-request-queues", "serve `N` request virtqueues, 1 to 1022; match QEMU's num-request-queues=")

	fs.boolVar(&c.AllowDirectIO, "allow-direct-io", 0, "honor O_DIRECT from guest applications")
	fs.boolVar(&c.AllowMmap, "allow-mmap", 0, "allow mmap with --cache=metadata or never")
	fs.boolVar(&c.AnnounceSubmounts, "announce-submounts", 0, "tell the guest which directories are mount points")
	fs.variable(&negatedBool{&c.AnnounceSubmounts}, "no-announce-submounts", 0, "do not tell the guest which directories are mount points (the default)")
	fs.boolVar(&c.Writeback, "writeback", 0, "enable the writeback cache")
	fs.boolVar(&c.Xattr, "xattr", 0, "enable extended attributes")
	fs.boolVar(&c.PosixACL, "posix-acl", 0, "enable POSIX ACLs (implies --xattr)")
	fs.boolVar(&c.SecurityLabel, "security-label", 0, "enable security labels (SELinux; implies --xattr)")
	fs.boolVar(&c.KillprivV2, "killpriv-v2", 0, "let uvfsd clear set-id bits on write, truncate and chown (FUSE_HANDLE_KILLPRIV_V2; the default), which spares the guest a GETATTR before every chown")
	fs.variable(&negatedBool{&c.KillprivV2}, "no-killpriv-v2", 0, "disable FUSE_HANDLE_KILLPRIV_V2: the guest refreshes the mode before every chown and clears set-id bits itself")
	fs.boolVar(&c.NoOpen, "no-open", 0, "let the guest open and close regular files without OPEN and RELEASE round trips (FUSE_NO_OPEN_SUPPORT; only with --cache=auto or always, not with --posix-lock or --flock); a host change to a cached file then shows within the attribute timeout rather than at the next open; --no-open=false restores them")
	fs.boolVar(&c.NoOpendir, "no-opendir", 0, "let the guest list directories without OPENDIR and RELEASEDIR round trips (FUSE_NO_OPENDIR_SUPPORT; not with --cache=never); the guest then caches a listing until the directory's attributes time out and show a change; --no-opendir=false restores them")
	fs.boolVar(&c.NoReaddirplus, "no-readdirplus", 0, "disable READDIRPLUS")
	fs.boolVar(&c.PreserveNoatime, "preserve-noatime", 0, "keep O_NOATIME from the guest instead of clearing it")
	fs.boolVar(&c.Readonly, "readonly", 0, "refuse all writes from the guest")
	fs.boolVar(&c.Flock, "flock", 0, "enable flock(2) locks (C virtiofsd's -o flock)")
	fs.boolVar(&c.PosixLock, "posix-lock", 0, "enable POSIX record locks (C virtiofsd's -o posix_lock)")
	fs.stringVar(&c.Xattrmap, "xattrmap", "xattr name mapping `RULES`, e.g. :map::user.virtiofs.: (implies --xattr)")
	fs.variable(newEnum(&c.InodeFileHandles, []string{"never", "prefer", "mandatory"}, map[string]string{"fallback": "prefer"}), "inode-file-handles", 0, "when to use file handles for inodes (`MODE`): never, prefer, mandatory; bare --inode-file-handles means prefer").bare = "prefer"
	fs.variable(&modcapsValue{&c.Modcaps}, "modcaps", 0, "modify the kept capabilities, `CAPS` like --modcaps=+sys_admin:-chown (use the = sign)")

	fs.variable(&listValue{&c.UIDMap, checkIDMap}, "uid-map", 0, "map host uids into the user namespace, `:ns_uid:host_uid:count:` (repeatable; needs /etc/subuid)")
	fs.variable(&listValue{&c.GIDMap, checkIDMap}, "gid-map", 0, "map host gids into the user namespace, `:ns_gid:host_gid:count:` (repeatable; needs /etc/subgid)")
	fs.variable(&listValue{&c.TranslateUID, checkTranslation}, "translate-uid", 0, "translate uids, `KIND:a:b:count` with KIND guest, host, squash-guest, squash-host, map, or forbid-guest:a:count (repeatable)")
	fs.variable(&listValue{&c.TranslateGID, checkTranslation}, "translate-gid", 0, "translate gids, `KIND:a:b:count` as for --translate-uid (repeatable)")

	fs.variable(newEnum(&c.Profile, []string{"home", "none"}, nil), "profile", 0, "`NAME` of a preset: home = share your $HOME: every guest uid/gid creates files as you; your files appear in the guest as --home-uid/--home-gid (default: your host ids); enables --xattr")
	fs.variable(&idValue{target: &c.HomeUID, max: maxID}, "home-uid", 0, "with --profile=home: guest `UID` of your files")
	fs.variable(&idValue{target: &c.HomeGID, max: maxID}, "home-gid", 0, "with --profile=home: guest `GID` of your files")

	fs.variable(newEnum(&p.migrationMode, []string{"find-paths", "file-handles"}, nil), "migration-mode", 0, "not supported: uvfsd cannot migrate, so `MODE` must stay find-paths")
	fs.variable(newEnum(&p.migrationOnError, []string{"abort", "guest-error"}, nil), "migration-on-error", 0, "not supported: uvfsd cannot migrate, so `ACTION` must stay abort")
	fs.boolVar(&p.migrationVerifyHandles, "migration-verify-handles", 0, "not supported: uvfsd cannot migrate")
	fs.boolVar(&p.migrationConfirmPaths, "migration-confirm-paths", 0, "not supported: uvfsd cannot migrate")

	fs.variable(&legacyOptionValue{p}, "option", 'o', "C virtiofsd options `OPT[,OPT...]` (repeatable; listed below)")
	return p
}

// parseArgs parses the command line on top of whatever the FlagSet already
// holds (defaults, then the config file).
// -h/--help and -V/--version win over any mistake after them, as in clap.
func (p *flagParser) parseArgs(args []string) error {
	positional, err := p.fs.parse(args)
	switch {
	case p.help:
		return errHelp
	case p.cfg.Version:
		return nil
	case err != nil:
		return err
	case len(positional) > 0:
		return p.unexpectedArgument(args, positional[0])
	}
	if p.daemonize {
		return errors.New("--daemonize is not supported: uvfsd stays in the foreground; background it from your shell or service manager")
	}
	return nil
}

// unexpectedArgument explains a positional argument: most likely the value of a flag whose value is
// optional (--inode-file-handles never), which must then follow an '=', or a shared directory
// given without --shared-dir.
func (p *flagParser) unexpectedArgument(args []string, arg string) error {
	if i := slices.Index(args, arg); i > 0 && strings.HasPrefix(args[i-1], "--") {
		if d := p.fs.lookup(strings.TrimPrefix(args[i-1], "--")); d != nil && d.bare != "" && d.value.Type() != "bool" {
			return fmt.Errorf("unexpected argument %q: %s takes its value after '=': %s=%s (see uvfsd --help)", arg, args[i-1], args[i-1], arg)
		}
	}
	return fmt.Errorf("unexpected argument %q: uvfsd takes only flags, e.g. --shared-dir=%s (see uvfsd --help)", arg, arg)
}

// finish applies implications and checks the combined settings.
func (p *flagParser) finish() error {
	c := p.cfg
	if err := p.rejectMigration(); err != nil {
		return err
	}
	if c.SharedDir == "" {
		return errors.New("missing --shared-dir: name the directory to share, e.g. --shared-dir=$HOME")
	}
	switch {
	case c.SocketPath == "" && c.FD < 0:
		return errors.New("missing --socket-path or --fd: say where QEMU connects, e.g. --socket-path=/tmp/uvfsd.sock")
	case c.SocketPath != "" && c.FD >= 0:
		return errors.New("--socket-path and --fd both given: pass only one")
	}
	if c.ThreadPoolSize < 0 {
		return fmt.Errorf("--thread-pool-size=%d: use 0 (no pool) or a positive size", c.ThreadPoolSize)
	}
	if c.HiprioLingerUS < 0 || c.HiprioLingerUS > 100000 {
		return fmt.Errorf("--forget-linger-us=%d: use 0 (serve on kicks) to 100000", c.HiprioLingerUS)
	}
	if c.HotWaitMS < 0 || c.HotWaitMS > 10000 {
		return fmt.Errorf("--hot-wait-ms=%d: use 0 (always wait through the runtime) to 10000", c.HotWaitMS)
	}
	if c.HiprioGatherUS < 0 || c.HiprioGatherUS > 100000 {
		return fmt.Errorf("--forget-gather-us=%d: use 0 (serve at once) to 100000", c.HiprioGatherUS)
	}
	if c.PollUS < -1 || c.PollUS > 1000 {
		return fmt.Errorf("--poll-us=%d: use 0 (never poll) to 1000, or -1 (by the CPU count)", c.PollUS)
	}
	if c.RequestQueues < 1 || c.RequestQueues > maxRequestQueues {
		return fmt.Errorf("--num-request-queues=%d: use 1 to %d, matching QEMU's num-request-queues=", c.RequestQueues, maxRequestQueues)
	}
	if c.Profile == "none" {
		c.Profile = ""
	}
	if c.Profile != "home" && (c.HomeUID >= 0 || c.HomeGID >= 0) {
		return errors.New("--home-uid/--home-gid only apply to --profile=home: add --profile=home or drop them")
	}
	// virtiofsd: every xattr-based feature needs xattr support.
	c.Xattr = c.Xattr || c.PosixACL || c.SecurityLabel || c.Xattrmap != "" || c.Profile == "home"
	if c.Seccomp != "none" {
		return fmt.Errorf("--seccomp=%s: uvfsd has no seccomp filter yet and will not run pretending to have one; use --seccomp=none or leave the flag out", c.Seccomp)
	}
	return nil
}

// rejectMigration accepts virtiofsd's migration flags at their defaults
// only: uvfsd cannot migrate, and silently ignoring a request would lose
// the guest's state.
func (p *flagParser) rejectMigration() error {
	const why = "uvfsd does not support migration"
	switch {
	case p.migrationMode != "find-paths":
		return fmt.Errorf("--migration-mode=%s: %s; remove the flag", p.migrationMode, why)
	case p.migrationOnError != "abort":
		return fmt.Errorf("--migration-on-error=%s: %s; remove the flag", p.migrationOnError, why)
	case p.migrationVerifyHandles:
		return fmt.Errorf("--migration-verify-handles: %s; remove the flag", why)
	case p.migrationConfirmPaths:
		return fmt.Errorf("--migration-confirm-paths: %s; remove the flag", why)
	}
	return nil
}

// configFilePath picks the config file: --config (which must exist), else
// the first of the XDG and ~/.config locations that exists, else none.
func configFilePath(explicit string, getenv func(string) string) (string, error) {
	if explicit != "" {
		if _, err := os.Stat(explicit); err != nil {
			return "", fmt.Errorf("--config: %w", err)
		}
		return explicit, nil
	}
	var candidates []string
	if x := getenv("XDG_CONFIG_HOME"); filepath.IsAbs(x) { // the XDG spec ignores relative paths
		candidates = append(candidates, filepath.Join(x, "uvfsd", "config.toml"))
	}
	if h := getenv("HOME"); h != "" {
		candidates = append(candidates, filepath.Join(h, ".config", "uvfsd", "config.toml"))
	}
	for _, c := range candidates {
		_, err := os.Stat(c)
		if err == nil {
			return c, nil
		}
		// A default location we may not even look into (HOME left over from another user, as
		// with su or setpriv) holds no config of ours.
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, os.ErrPermission) {
			return "", fmt.Errorf("config file: %w", err)
		}
	}
	return "", nil
}

// commandLineOnly are flags that make no sense in a config file.
var commandLineOnly = map[string]bool{
	"help": true, "version": true, "print-capabilities": true, "config": true,
	"option": true, "debug": true, "foreground": true, "daemonize": true, "socket": true,
}

// overrideGroups: a command-line flag replaces the file's value for every
// key of its group, so --fd on the command line beats socket-path in the file.
var overrideGroups = map[string]string{
	"socket-path": "listen", "socket": "listen", "fd": "listen",
	"killpriv-v2": "killpriv", "no-killpriv-v2": "killpriv",
	"announce-submounts": "announce-submounts", "no-announce-submounts": "announce-submounts",
}

func overrideGroup(name string) string {
	if g, ok := overrideGroups[name]; ok {
		return g
	}
	return name
}

// applyConfigFile sets every key of the TOML file at path through the
// FlagSet, so the file is checked exactly like the command line. Keys that
// cli (the parsed command line) sets are skipped: flags override the file,
// and repeatable flags replace the file's list instead of appending to it.
func (p *flagParser) applyConfigFile(path string, cli *flagSet) error {
	var doc map[string]any
	if _, err := toml.DecodeFile(path, &doc); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	overridden := map[string]bool{}
	cli.visitChanged(func(d *flagDef) { overridden[overrideGroup(d.name)] = true })

	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys) // report the same error first on every run
	for _, key := range keys {
		d := p.fs.lookup(key)
		if d == nil {
			return fmt.Errorf("config file %s: unknown key %q: keys are long flag names without \"--\", see uvfsd --help", path, key)
		}
		if commandLineOnly[key] {
			return fmt.Errorf("config file %s: key %q only works on the command line; remove it from the file", path, key)
		}
		if overridden[overrideGroup(key)] {
			continue
		}
		values, err := tomlFlagValues(d.value.Type(), doc[key])
		if err != nil {
			return fmt.Errorf("config file %s: key %q: %w", path, key, err)
		}
		for _, v := range values {
			if err := d.value.Set(v); err != nil {
				return fmt.Errorf("config file %s: %s = %q: %w", path, key, v, err)
			}
		}
	}
	return nil
}

// tomlFlagValues turns a TOML value into the strings the Set of a flag of type typ (flagValue's
// Type) takes, insisting on the TOML type that matches it.
func tomlFlagValues(typ string, v any) ([]string, error) {
	switch typ {
	case "bool":
		if b, ok := v.(bool); ok {
			return []string{strconv.FormatBool(b)}, nil
		}
		return nil, fmt.Errorf("want true or false, not %s", tomlTypeName(v))
	case "int":
		if n, ok := v.(int64); ok {
			return []string{strconv.FormatInt(n, 10)}, nil
		}
		return nil, fmt.Errorf("want an integer, not %s", tomlTypeName(v))
	case "stringArray":
		if s, ok := v.(string); ok {
			return []string{s}, nil
		}
		list, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("want an array of strings, not %s", tomlTypeName(v))
		}
		out := make([]string, 0, len(list))
		for _, e := range list {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("want an array of strings, but it holds %s", tomlTypeName(e))
			}
			out = append(out, s)
		}
		return out, nil
	default:
		if s, ok := v.(string); ok {
			return []string{s}, nil
		}
		return nil, fmt.Errorf("want a string, not %s", tomlTypeName(v))
	}
}

func tomlTypeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	default:
		return "a date/time"
	}
}

// writeUsage prints the --help text.
func writeUsage(w io.Writer) {
	fmt.Fprintf(w, `uvfsd %s: unprivileged virtio-fs daemon (virtiofsd-compatible flags)

Usage: uvfsd [FLAGS] [OPTIONS] --fd <fd>|--socket-path <socket-path> --shared-dir <shared-dir>

`, version)
	fmt.Fprint(w, newFlagParser().fs.usages())
	fmt.Fprintf(w, `
C virtiofsd -o options (a comma inside a value is written ,, or \,):
%s

Settings come from the defaults, then the TOML config file, then the command
line. Config file keys are the long flag names, e.g.
  shared-dir = "/home/me"
  translate-uid = ["squash-guest:0:1000:4294967295"]
`, wrapWords(legacyOptionNames(), "  ", 78))
}

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

// printVersion prints the -V/--version line.
func printVersion(w io.Writer) {
	fmt.Fprintf(w, "uvfsd %s\n", version)
}

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

// C virtiofsd's "-o opt[,opt...]" options, each mapped onto a uvfsd flag.

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
