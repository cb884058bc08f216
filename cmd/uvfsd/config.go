package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

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
	// NoFallback makes a user namespace that cannot be made an error, instead of serving without
	// one (confined by Landlock and no_new_privs).
	NoFallback bool
	// Seccomp is what the allow-list filter does with a system call outside it: kill (the
	// default, as virtiofsd's), log, trap, or none for no filter (userns.InstallSeccomp).
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
	// (FUSE_NO_OPENDIR_SUPPORT); the guest then caches listings. Off by default: a cached listing
	// does not refresh its entries, so every later access by name past the entry timeout costs a
	// LOOKUP each (rm -rf, ls -l of a directory listed a while ago), where a re-listing refreshes
	// them all with one READDIRPLUS (docs/benchmarks.md, 2026-12-07 22:46).
	NoOpendir bool

	Xattrmap         string // rules as in virtiofsd; a non-empty map implies Xattr
	InodeFileHandles string // never|prefer|mandatory (default prefer)
	// MigrationMode (find-paths|file-handles), MigrationOnError (abort|guest-error),
	// MigrationVerifyHandles and MigrationConfirmPaths: virtiofsd's flags for live migration
	// (passfs.MigrationOptions says what each does).
	MigrationMode, MigrationOnError               string
	MigrationVerifyHandles, MigrationConfirmPaths bool
	Modcaps                                       string // e.g. "+sys_admin:-chown", syntax checked shallowly

	UIDMap, GIDMap             []string // --uid-map/--gid-map (repeatable), ":ns:host:count:"
	TranslateUID, TranslateGID []string // --translate-uid/--translate-gid (repeatable), "kind:a:b:count"

	// Ownership is where guest owners and modes live: passthrough (the host file's) or mapped (a
	// user.* attribute of plain host files of the invoking user; passfs/mapped.go).
	Ownership string

	Profile string // "" or "home"; "home" implies Xattr
	// HomeUID/HomeGID: guest ids for the invoking user's files in the home
	// profile, -1 = same as host. Only valid with Profile "home".
	HomeUID, HomeGID int

	// Flock and PosixLock are the C virtiofsd's -o flock / -o posix_lock;
	// both default off there (no_flock, no_posix_lock) and Rust virtiofsd has
	// no locks at all, so uvfsd defaults them off too.
	Flock, PosixLock bool
	RequestQueues    int    // --num-request-queues: most request virtqueues served, 1..1022; 0 follows QEMU
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
const maxRequestQueues = vhost.MaxRequestQueues

func defaultConfig() *Config {
	return &Config{
		FD:               -1,
		Cache:            "auto",
		Sandbox:          "namespace",
		Seccomp:          "kill",
		LogLevel:         "info",
		RlimitNofile:     -1,
		InodeFileHandles: "prefer",
		MigrationMode:    "find-paths",
		MigrationOnError: "abort",
		Ownership:        "passthrough",
		HomeUID:          -1,
		HomeGID:          -1,
		RequestQueues:    0,
		PollUS:           -1,
		HiprioGatherUS:   0,
		HiprioLingerUS:   1000,
		HotWaitMS:        int(vhost.DefaultHotWait / time.Millisecond),
		KillprivV2:       true,
		NoOpen:           true,
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

	help, foreground, daemonize bool
}

func newFlagParser() *flagParser {
	p := &flagParser{cfg: defaultConfig()}
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
	fs.variable(newEnum(&c.Sandbox, []string{"namespace", "chroot", "none"}, nil), "sandbox", 0, "sandbox `MODE`: namespace, chroot, none; as non-root, none serves without a user namespace, confined to the share by Landlock and no_new_privs")
	fs.boolVar(&c.NoFallback, "no-fallback", 0, "fail when the user namespace that --sandbox=namespace or chroot needs cannot be made, instead of serving without one (confined by Landlock and no_new_privs)")
	fs.variable(newEnum(&c.Seccomp, []string{"none", "kill", "log", "trap"}, nil), "seccomp", 0, "seccomp `ACTION` for a system call outside uvfsd's list: kill (the daemon dies with SIGSYS), log (uvfsd logs its name and lets it run), trap (SIGSYS to the thread: the Go runtime prints the stack and exits), none (no filter)")
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
	fs.intVar(&c.RequestQueues, "num-request-queues", "serve at most `N` request virtqueues, 1 to 1022 (default 0: as many as QEMU's num-request-queues= sets up)")

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
	fs.boolVar(&c.NoOpendir, "no-opendir", 0, "let the guest list directories without OPENDIR and RELEASEDIR round trips (FUSE_NO_OPENDIR_SUPPORT; not with --cache=never); the guest then caches a listing until the directory's attributes time out and show a change, and looks up each entry it accesses by name after the entry timeout instead of listing again (worth it for directories listed again and again without a stat of their entries)")
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

	fs.variable(newEnum(&c.Ownership, []string{"passthrough", "mapped"}, nil), "ownership", 0, "where guest owners live (`MODEL`): passthrough = the host file's owner and mode; mapped = every file is a plain file or directory of yours on the host, and the guest's owner, group, mode, set-id bits, file type and device number are kept in its user.containers.override_stat attribute (as rootless podman does): chown to any id, mknod of devices, FIFOs and sockets work without root or /etc/subuid ranges")
	fs.variable(newEnum(&c.Profile, []string{"home", "none"}, nil), "profile", 0, "`NAME` of a preset: home = share your $HOME: every guest uid/gid creates files as you; your files appear in the guest as --home-uid/--home-gid (default: your host ids); enables --xattr")
	fs.variable(&idValue{target: &c.HomeUID, max: maxID}, "home-uid", 0, "with --profile=home: guest `UID` of your files")
	fs.variable(&idValue{target: &c.HomeGID, max: maxID}, "home-gid", 0, "with --profile=home: guest `GID` of your files")

	fs.variable(newEnum(&c.MigrationMode, []string{"find-paths", "file-handles"}, nil), "migration-mode", 0,
		"how open files and known names travel in a live migration (`MODE`): find-paths (their paths in the shared directory, the default) or file-handles (their file handles; needs root on both sides)")
	fs.variable(newEnum(&c.MigrationOnError, []string{"abort", "guest-error"}, nil), "migration-on-error", 0,
		"when the destination cannot open a migrated file (`ACTION`): abort the migration (the guest runs on at the source; the default) or guest-error (finish; the guest gets errors for those files)")
	fs.boolVar(&c.MigrationVerifyHandles, "migration-verify-handles", 0,
		"on the destination, check by file handle that each migrated path is the very file the source had (same file system on both sides)")
	fs.boolVar(&c.MigrationConfirmPaths, "migration-confirm-paths", 0,
		"at switch-over, check that each path still leads to its file and find renamed ones through /proc/self/fd (host processes renaming during the migration)")

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
	if c.RequestQueues < 0 || c.RequestQueues > maxRequestQueues {
		return fmt.Errorf("--num-request-queues=%d: use 1 to %d, at least QEMU's num-request-queues=, or 0 to serve as many as QEMU sets up", c.RequestQueues, maxRequestQueues)
	}
	if c.Profile == "none" {
		c.Profile = ""
	}
	if c.Profile != "home" && (c.HomeUID >= 0 || c.HomeGID >= 0) {
		return errors.New("--home-uid/--home-gid only apply to --profile=home: add --profile=home or drop them")
	}
	if c.Ownership == "mapped" && c.PosixACL {
		return errors.New("--ownership=mapped cannot be combined with --posix-acl: the host would keep ACLs apart from the mapped owner and mode; drop one of them")
	}
	// virtiofsd: every xattr-based feature needs xattr support.
	c.Xattr = c.Xattr || c.PosixACL || c.SecurityLabel || c.Xattrmap != "" || c.Profile == "home"
	return nil
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

// printVersion prints the -V/--version line.
func printVersion(w io.Writer) {
	fmt.Fprintf(w, "uvfsd %s\n", version)
}
