// Command uvfsd is an unprivileged virtio-fs daemon: it serves a directory to a QEMU guest over
// vhost-user, as virtiofsd does, and works without root.
package main

import (
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/idmap"
	"github.com/uvfsd/uvfsd/passfs"
	"github.com/uvfsd/uvfsd/userns"
	"github.com/uvfsd/uvfsd/vhost"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run returns the process exit code: 0 when the front-end disconnected normally. stdout takes
// --help, --version and --print-capabilities, stderr the reason uvfsd did not start.
func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := ParseConfig(args, os.Getenv)
	switch {
	case errors.Is(err, errHelp):
		writeUsage(stdout)
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "uvfsd: %v\n", err)
		return 2
	case cfg.Version:
		printVersion(stdout)
		return 0
	case cfg.PrintCapabilities:
		printCapabilities(stdout)
		return 0
	}
	logger, err := newLogger(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "uvfsd: %v\n", err)
		return 1
	}
	if err := serve(cfg, logger); err != nil {
		logger.errorf("%v", err)
		if logger.toSyslog || logger.level < 0 {
			fmt.Fprintf(stderr, "uvfsd: %v\n", err) // why it stopped, where the user looks
		}
		return 1
	}
	return 0
}

// serve sets the daemon up in the order the sandbox demands and serves one front-end connection.
func serve(cfg *Config, lg *logger) error {
	// SIGUSR1 asks for the request counts; its default action would end the daemon if it came
	// before the server exists.
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	uidMap, err := idmap.ParseMapFlags(cfg.UIDMap)
	if err != nil {
		return fmt.Errorf("--uid-map: %w", err)
	}
	gidMap, err := idmap.ParseMapFlags(cfg.GIDMap)
	if err != nil {
		return fmt.Errorf("--gid-map: %w", err)
	}
	uidRules, err := idmap.ParseTranslation(cfg.TranslateUID)
	if err != nil {
		return fmt.Errorf("--translate-uid: %w", err)
	}
	gidRules, err := idmap.ParseTranslation(cfg.TranslateGID)
	if err != nil {
		return fmt.Errorf("--translate-gid: %w", err)
	}
	// Check what can be checked before the namespace exists, so that errors come from the
	// process the user started.
	if cfg.Xattrmap != "" {
		if _, err := passfs.ParseXattrMap(cfg.Xattrmap); err != nil {
			return fmt.Errorf("--xattrmap: %w", err)
		}
	}
	handles, err := passfs.ParseInodeFileHandles(cfg.InodeFileHandles)
	if err != nil {
		return err
	}
	if _, err := passfs.ParseCachePolicy(cfg.Cache); err != nil {
		return err
	}
	if err := checkSharedDir(cfg.SharedDir); err != nil {
		return err
	}

	// The socket is made (or, with --fd, taken over) by the process the user started, before any
	// namespace or sandbox: --socket-group names a host group there, and that process, which no
	// sandbox confines, removes the socket at the end. A re-exec'ed child inherits it. That
	// process also writes and holds the pid file, so that the pid in it is the one the client
	// started, which it waits for and signals.
	var listenerFile, supervisor *os.File
	var made madeFiles
	var pass []*os.File
	if !userns.InChild() {
		if listenerFile, made, err = listen(cfg); err != nil {
			return err
		}
		defer made.Remove() // on every way out of this process but a re-exec's (AtExit)
		pass = []*os.File{listenerFile}
		if cfg.Seccomp == userns.SeccompLog {
			// This process, which the filter does not cover, logs the calls outside the list.
			parent, child, err := userns.NewSeccompSupervisor()
			if err != nil {
				return err
			}
			go userns.SuperviseSeccomp(parent, lg.warnf)
			pass = append(pass, child)
		}
	}
	// Non-root: this re-execs into a user namespace and, in the original process, exits with
	// the child's status. --sandbox=none re-execs too, without a namespace, so that the process
	// the user started stays unconfined to remove the socket after a confined child, and so does
	// --seccomp=log, so that this process can log what the child's filter reports.
	st, err := userns.Enter(userns.Options{UIDMap: uidMap, GIDMap: gidMap,
		MountNamespace: cfg.Sandbox == userns.SandboxNamespace, NoUserNamespace: cfg.Sandbox == userns.SandboxNone,
		Reexec:     cfg.Sandbox == userns.SandboxNone || cfg.Seccomp == userns.SeccompLog,
		NoFallback: cfg.NoFallback, Files: pass, AtExit: made.Remove})
	if err != nil {
		return err
	}
	if err := checkSharedDirReadable(cfg.SharedDir, st.HostUID); err != nil {
		return err
	}
	if listenerFile == nil {
		files := userns.InheritedFiles()
		want := 1
		if cfg.Seccomp == userns.SeccompLog {
			want = 2
		}
		if len(files) != want {
			return fmt.Errorf("internal error: the re-exec'ed daemon inherited %d files, want %d (the listening socket, and for --seccomp=log the supervisor's)", len(files), want)
		}
		listenerFile = files[0]
		if want == 2 {
			supervisor = files[1]
		}
	}
	listener, err := vhost.ListenerFromFile(listenerFile)
	if err != nil {
		return fmt.Errorf("the vhost-user socket: %w", err)
	}
	removeSocketOnSignal(made, lg)
	lg.debugf("user namespace: %v; uid_map %q; gid_map %q; invoking user %d:%d",
		st.InNamespace, st.UIDs.String(), st.GIDs.String(), st.HostUID, st.HostGID)
	uids, gids, err := idMappers(cfg, st, uidRules, gidRules)
	if err != nil {
		return err
	}

	mode := cfg.Sandbox
	if st.Fallback != "" {
		mode = userns.SandboxNone // without a namespace, neither chroot nor pivot_root is allowed
	}
	jail, err := userns.Sandbox(mode, cfg.SharedDir)
	if err != nil {
		return err
	}
	if mode == userns.SandboxNone && st.Reexeced {
		confine(cfg, st, jail, lg)
	}
	raiseNofile(cfg.RlimitNofile, lg)
	if os.Geteuid() == 0 {
		keep, err := userns.ModifiedCapabilities(cfg.Modcaps) // checked when parsed
		if err != nil {
			return err
		}
		if handles != passfs.FileHandlesNever {
			keep = append(keep, unix.CAP_DAC_READ_SEARCH) // open_by_handle_at needs it
		}
		if err := userns.DropCapabilities(keep); err != nil {
			lg.warnf("could not drop capabilities: %v", err)
		}
	}
	popts, err := fileSystemOptions(cfg, jail.RootFD, jail.ProcSelfFD, st.InNamespace || os.Geteuid() != 0)
	if err != nil {
		return err
	}
	popts.UIDs, popts.GIDs, popts.Logf = uids, gids, lg.warnf
	popts.MountInfo = jail.MountInfo
	fs, err := passfs.New(popts)
	if err != nil {
		return err
	}
	server := fuse.NewServer(fs, fuse.Options{Want: wantedCapabilities(cfg), Logf: lg.infof, Debugf: lg.debugf})
	backend := vhost.NewBackend(vhost.Config{Tag: cfg.Tag, RequestQueues: cfg.RequestQueues,
		ThreadPoolSize: cfg.ThreadPoolSize, PollMax: pollWindow(cfg.PollUS, runtime.NumCPU()),
		HiprioGather: time.Duration(cfg.HiprioGatherUS) * time.Microsecond,
		HiprioLinger: time.Duration(cfg.HiprioLingerUS) * time.Microsecond,
		HotWait:      time.Duration(cfg.HotWaitMS) * time.Millisecond, Logf: lg.warnf,
		Migration: migrator(server)},
		fuseHandler{server})
	logCountsOnSignal(usr1, server, backend, lg)
	if err := installSeccomp(cfg, supervisor, lg); err != nil {
		return err
	}
	lg.infof("serving %s on %s", cfg.SharedDir, describeSocket(cfg))
	if err := backend.ServeListener(listener, made.sock); err != nil {
		var limit *vhost.QueueLimitError
		if errors.As(err, &limit) {
			return fmt.Errorf("%w: start uvfsd with --num-request-queues=%d or more, or without it to serve as many as QEMU sets up",
				err, limit.Index)
		}
		return err
	}
	lg.infof("front-end disconnected; exiting (%s)", formatQueueCounts(backend.QueueCounts()))
	lg.debugf("requests served: %s", formatCounts(server.RequestCounts()))
	return nil
}

// formatQueueCounts says how many requests each queue took: "requests per queue: hiprio=3 1=120
// 2=98". With several request queues it shows whether the guest spread its requests over them.
func formatQueueCounts(counts []uint64) string {
	var b strings.Builder
	b.WriteString("requests per queue:")
	for i, n := range counts {
		if i == 0 {
			fmt.Fprintf(&b, " hiprio=%d", n)
		} else {
			fmt.Fprintf(&b, " %d=%d", i, n)
		}
	}
	return b.String()
}

// confine restricts a daemon that has no chroot or pivot_root to the share (userns.Confine) and
// says, in one line, what is in force; after a fallback that line is the one warning about what
// was given up.
func confine(cfg *Config, st *userns.State, jail *userns.Jail, lg *logger) {
	c, err := userns.Confine(jail.RootFD)
	confined := fmt.Sprintf("confined to %s by %s", cfg.SharedDir, c)
	switch {
	case err != nil && c.Confined():
		confined += fmt.Sprintf(" (no more: %v)", err)
	case err != nil:
		confined = fmt.Sprintf("NOT confined (%v)", err)
	}
	ids := "every guest id creates files as you"
	if os.Geteuid() == 0 {
		ids = "guest ids create files as themselves"
	}
	if st.Fallback != "" {
		lg.warnf("serving without a user namespace: %s; uvfsd runs as uid %d (%s), %s instead of --sandbox=%s "+
			"(--no-fallback makes this an error)", st.Fallback, os.Getuid(), ids, confined, cfg.Sandbox)
	} else {
		lg.infof("--sandbox=none: serving as uid %d without a user namespace, %s", os.Getuid(), confined)
	}
	probeSandbox(os.Getenv(envProbe), lg)
}

// envProbe names files that the daemon tries to open once confined, logging what happened: the
// e2e tests check from inside the daemon that files beside the share stay out of its reach.
const envProbe = "_UVFSD_TEST_PROBE_OPEN"

func probeSandbox(paths string, lg *logger) {
	if paths == "" {
		return
	}
	for _, p := range strings.Split(paths, ":") {
		f, err := os.Open(p)
		if err == nil {
			f.Close()
			lg.warnf("sandbox probe: open %s: opened", p)
			continue
		}
		lg.warnf("sandbox probe: %v", err)
	}
}

// formatCounts lists request counts as "LOOKUP=12 GETATTR=3", most frequent first.
func formatCounts(counts map[string]uint64) string {
	names := make([]string, 0, len(counts))
	for name := range counts {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool {
		if counts[names[i]] != counts[names[j]] {
			return counts[names[i]] > counts[names[j]]
		}
		return names[i] < names[j]
	})
	var b strings.Builder
	for i, name := range names {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", name, counts[name])
	}
	return b.String()
}

// fileSystemOptions turns flags into passfs options for a share whose root is rootFD. rootless
// says that the host will refuse trusted.* and security.* attributes.
func fileSystemOptions(cfg *Config, rootFD, procSelfFD int, rootless bool) (passfs.Options, error) {
	policy, err := passfs.ParseCachePolicy(cfg.Cache)
	if err != nil {
		return passfs.Options{}, err
	}
	handles, err := passfs.ParseInodeFileHandles(cfg.InodeFileHandles)
	if err != nil {
		return passfs.Options{}, err
	}
	ownership, err := passfs.ParseOwnership(cfg.Ownership)
	if err != nil {
		return passfs.Options{}, err
	}
	o := passfs.Options{
		RootFD: rootFD, ProcSelfFD: procSelfFD, Cache: policy, InodeFileHandles: handles, Ownership: ownership,
		Writeback: cfg.Writeback, AllowDirectIO: cfg.AllowDirectIO, AllowMmap: cfg.AllowMmap,
		PreserveNoatime: cfg.PreserveNoatime, Readonly: cfg.Readonly,
		Xattr: cfg.Xattr, PosixACL: cfg.PosixACL, SecurityLabel: cfg.SecurityLabel,
		KillprivV2: cfg.KillprivV2, AnnounceSubmounts: cfg.AnnounceSubmounts, NoOpen: cfg.NoOpen,
		// Creating files as other users needs CAP_SETUID, which root has, in the initial
		// namespace or in ours.
		SetCreds: os.Geteuid() == 0,
	}
	o.Migration = passfs.MigrationOptions{
		FileHandles: cfg.MigrationMode == "file-handles", GuestError: cfg.MigrationOnError == "guest-error",
		VerifyHandles: cfg.MigrationVerifyHandles, ConfirmPaths: cfg.MigrationConfirmPaths,
	}
	if o.Migration.FileHandles && rootless {
		return o, errors.New("--migration-mode=file-handles needs CAP_DAC_READ_SEARCH in the initial user namespace, " +
			"which rootless uvfsd does not have: run it as root, or migrate with the default --migration-mode=find-paths")
	}
	switch {
	case cfg.Xattrmap != "":
		m, err := passfs.ParseXattrMap(cfg.Xattrmap)
		if err != nil {
			return o, fmt.Errorf("--xattrmap: %w", err)
		}
		o.XattrMap = m
	case cfg.Xattr && rootless:
		// Unprivileged hosts refuse trusted.* and security.*: store them under user.* instead,
		// so that overlayfs in the guest works with no extra flag.
		o.XattrMap = passfs.RootlessDefault()
	}
	return o, nil
}

// migrator offers live migration when the FUSE server can save and load its state, and refuses
// it (nil) while it cannot.
func migrator(server *fuse.Server) vhost.Migrator {
	if m, ok := any(server).(vhost.Migrator); ok {
		return m
	}
	return nil
}

// fuseHandler connects the vhost transport to the FUSE server.
type fuseHandler struct{ s *fuse.Server }

func (h fuseHandler) Serve(queue int, r *vhost.Request) { h.s.Serve(r.In, r.Out, r) }

// pollWindow is the vhost poll window for --poll-us=us on a host with cpus CPUs; the default (-1)
// is vhost.DefaultPollMax.
func pollWindow(us, cpus int) time.Duration {
	if us < 0 {
		return vhost.DefaultPollMax(cpus)
	}
	return time.Duration(us) * time.Microsecond
}

// wantedCapabilities turns flags into the FUSE capabilities offered at INIT.
func wantedCapabilities(cfg *Config) uint64 {
	want := fuse.DefaultWant
	if cfg.Cache != "never" && cfg.NoOpendir {
		// Directories are listed without OPENDIR/RELEASEDIR round trips (passfs.Opendir).
		want |= fuse.CapNoOpendirSupport
	}
	// Files are opened without OPEN/RELEASE (passfs/nodedata.go); the server then drops
	// ATOMIC_O_TRUNC so that the guest truncates with SETATTR. The guest would cache file data
	// then, which never and metadata (DIRECT_IO) promise it does not: passfs.FS.Init decides by
	// the same rule.
	if policy, err := passfs.ParseCachePolicy(cfg.Cache); err == nil && policy.CachesFileData() &&
		cfg.NoOpen && !cfg.PosixLock && !cfg.Flock {
		want |= fuse.CapNoOpenSupport
	}
	if cfg.NoReaddirplus {
		want &^= fuse.CapReaddirplus | fuse.CapReaddirplusAuto
	}
	if cfg.Writeback {
		want |= fuse.CapWritebackCache
	}
	if cfg.KillprivV2 {
		want |= fuse.CapHandleKillprivV2
	}
	if cfg.AnnounceSubmounts {
		want |= fuse.CapSubmounts
	}
	if cfg.PosixACL {
		want |= fuse.CapPosixACL | fuse.CapDontMask | fuse.CapSetxattrExt
	}
	if cfg.SecurityLabel {
		want |= fuse.CapSecurityCtx
	}
	if cfg.Ownership == "mapped" {
		// A guest that agreed on ALLOW_IDMAP sends uid and gid -1 in every request but those that
		// create files, and mapped ownership needs the caller in SETATTR too: a chown by root
		// keeps a set-group-id bit that anybody else's clears (passfs/mapped.go).
		want &^= fuse.CapAllowIdmap
	}
	if cfg.AllowMmap {
		// With --cache=never or metadata files are FOPEN_DIRECT_IO; a guest of Linux 6.6 or
		// newer may still map them shared (DIRECT_IO_ALLOW_MMAP), as with virtiofsd.
		want |= fuse.CapDirectIOAllowMmap
	}
	if cfg.PosixLock {
		want |= fuse.CapPosixLocks
	}
	if cfg.Flock {
		want |= fuse.CapFlockLocks
	}
	return want
}

// idMappers builds the uid and gid translations, from the home profile or --translate-*.
func idMappers(cfg *Config, st *userns.State, uidRules, gidRules *idmap.Translation) (uids, gids *idmap.Mapper, err error) {
	if cfg.Profile == "home" {
		guestUID, guestGID := st.HostUID, st.HostGID
		if cfg.HomeUID >= 0 {
			guestUID = uint32(cfg.HomeUID)
		}
		if cfg.HomeGID >= 0 {
			guestGID = uint32(cfg.HomeGID)
		}
		if uids, err = idmap.NewHomeMapper(st.UIDs, st.HostUID, guestUID); err != nil {
			return nil, nil, err
		}
		gids, err = idmap.NewHomeMapper(st.GIDs, st.HostGID, guestGID)
		return uids, gids, err
	}
	if uids, err = idmap.NewMapper(uidRules, st.UIDs, st.HostUID); err != nil {
		return nil, nil, err
	}
	gids, err = idmap.NewMapper(gidRules, st.GIDs, st.HostGID)
	return uids, gids, err
}

// checkSharedDir fails early, before any namespace is made, with a message that says what to do.
func checkSharedDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("shared directory %q does not exist: create it or fix --shared-dir", dir)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("shared directory %q: a directory on its path cannot be searched by uid %d (%w): "+
			"give yourself search permission on it (chmod u+x) or share another directory", dir, os.Getuid(), err)
	case err != nil:
		return fmt.Errorf("shared directory: %w", err)
	case !fi.IsDir():
		return fmt.Errorf("shared directory %q is not a directory: --shared-dir takes a directory", dir)
	}
	return nil
}

// checkSharedDirReadable fails early, in the process that serves, when it cannot list the shared
// directory: the guest would otherwise mount a share whose every lookup fails. (In a user
// namespace uvfsd reads the invoking user's directories whatever their mode, so the check comes
// after Enter.)
func checkSharedDirReadable(dir string, hostUID uint32) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("shared directory %q cannot be read by uid %d (%w): give yourself read and search "+
			"permission on it (chmod u+rx %s) or share another directory", dir, hostUID, err, dir)
	}
	return unix.Close(fd)
}

// madeFiles are what this process made for the daemon and removes when it ends: the socket and its
// pid file (none with --fd, or in a re-exec'ed child).
type madeFiles struct {
	sock *vhost.SocketFile
	pid  *pidFile
}

// Remove removes the socket, then the pid file, whose going says that the daemon is gone.
func (m madeFiles) Remove() {
	m.sock.Remove()
	m.pid.Remove()
}

// listen returns the listening socket as a file (to pass to a re-exec'ed child or to listen on),
// and, when this process made it (--socket-path), the socket and its pid file for their removal.
// A running daemon's pid file stops it before the socket is touched.
func listen(cfg *Config) (*os.File, madeFiles, error) {
	if cfg.FD >= 0 {
		l, err := vhost.ListenerFromFD(cfg.FD)
		if err != nil {
			return nil, madeFiles{}, err
		}
		defer l.Close() // the file is a duplicate
		f, err := l.File()
		if err != nil {
			return nil, madeFiles{}, fmt.Errorf("the vhost-user socket: %w", err)
		}
		return f, madeFiles{}, nil
	}
	if err := checkPidFile(pidFilePath(cfg.SocketPath)); err != nil {
		return nil, madeFiles{}, err
	}
	l, err := vhost.Listen(cfg.SocketPath, cfg.SocketGroup)
	if err != nil {
		return nil, madeFiles{}, err
	}
	defer l.Close() // the file is a duplicate
	var m madeFiles
	if m.sock, err = vhost.OpenSocketFile(cfg.SocketPath); err != nil {
		os.Remove(cfg.SocketPath)
		return nil, madeFiles{}, err
	}
	f, err := l.File()
	if err != nil {
		m.Remove()
		return nil, madeFiles{}, fmt.Errorf("the vhost-user socket: %w", err)
	}
	// The pid file appears once the socket listens: whoever waits for it can connect at once.
	if m.pid, err = createPidFile(pidFilePath(cfg.SocketPath), os.Getpid()); err != nil {
		f.Close()
		m.Remove()
		return nil, madeFiles{}, err
	}
	return f, m, nil
}

func describeSocket(cfg *Config) string {
	if cfg.SocketPath == "" {
		return fmt.Sprintf("inherited fd %d", cfg.FD)
	}
	return cfg.SocketPath
}

// removeSocketOnSignal removes the socket and the pid file (none in a re-exec'ed child, whose
// original process removes them) when the daemon is told to stop, so that the next start finds no
// stale file.
func removeSocketOnSignal(made madeFiles, lg *logger) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		sig := <-ch
		made.Remove()
		lg.infof("%v: exiting", sig)
		os.Exit(0)
	}()
}

// logCountsOnSignal logs the requests served so far on each signal from ch (SIGUSR1), so that a
// benchmark can see what one guest operation costs in round trips.
func logCountsOnSignal(ch <-chan os.Signal, server *fuse.Server, backend *vhost.Backend, lg *logger) {
	go func() {
		for range ch {
			lg.infof("requests served: %s; %s", formatCounts(server.RequestCounts()), formatQueueCounts(backend.QueueCounts()))
		}
	}()
}

// raiseNofile sets RLIMIT_NOFILE like virtiofsd: by default min(1000000, nr_open, hard limit);
// 0 leaves it alone. An unprivileged process cannot pass its hard limit.
func raiseNofile(want int, lg *logger) {
	if want == 0 {
		return
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	target := uint64(want)
	if want < 0 {
		target = min(1000000, lim.Max)
		if lim.Cur >= target {
			return
		}
	}
	if target > lim.Max && os.Geteuid() != 0 {
		lg.warnf("--rlimit-nofile=%d is above the hard limit %d; using %d", target, lim.Max, lim.Max)
		target = lim.Max
	}
	newLim := unix.Rlimit{Cur: target, Max: max(target, lim.Max)}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &newLim); err != nil {
		lg.warnf("could not set RLIMIT_NOFILE to %d: %v", target, err)
	}
}

// logger writes leveled messages to stderr or syslog.
type logger struct {
	level    int
	l        *log.Logger
	toSyslog bool // --syslog found a syslog daemon
}

var logLevels = map[string]int{"off": -1, "error": 0, "warn": 1, "info": 2, "debug": 3, "trace": 4}

func newLogger(cfg *Config) (*logger, error) {
	lg := &logger{level: logLevels[cfg.LogLevel], l: log.New(os.Stderr, "uvfsd: ", 0)}
	if cfg.Syslog {
		// Containers and CI runners often have no syslog daemon; a client that passes --syslog
		// (virtme-ng does) still needs the daemon, so it logs to stderr and says so once.
		w, err := newSyslogWriter(syslogPaths, syslogDaemon|syslogInfo, "uvfsd")
		switch {
		case err == nil:
			lg.l, lg.toSyslog = log.New(w, "", 0), true
		case !userns.InChild():
			lg.warnf("--syslog: %v; logging to stderr instead", err)
		}
	}
	if !userns.InChild() { // the process the user started already said them
		for _, w := range cfg.Warnings() {
			lg.warnf("%s", w)
		}
	}
	return lg, nil
}

func (lg *logger) logf(level int, format string, a ...any) {
	if lg.level >= level {
		lg.l.Printf(format, a...)
	}
}

func (lg *logger) errorf(format string, a ...any) { lg.logf(0, format, a...) }
func (lg *logger) warnf(format string, a ...any)  { lg.logf(1, format, a...) }
func (lg *logger) infof(format string, a ...any)  { lg.logf(2, format, a...) }
func (lg *logger) debugf(format string, a ...any) { lg.logf(3, format, a...) }
