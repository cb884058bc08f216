package main

// Allocations per request, measured in this process: passfs, fuse and vhost
// run here behind a socketpair, the front-end drives them, and every heap
// allocation is sampled (runtime.MemProfileRate = 1). Each sample's stack
// tells whether the server or the test front-end made it, so the front-end's
// own (many) allocations do not count against the daemon.

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
	"github.com/uvfsd/uvfsd/passfs"
	"github.com/uvfsd/uvfsd/vhost"
	"github.com/uvfsd/uvfsd/vhost/frontend"
)

const modulePrefix = "github.com/uvfsd/uvfsd/"

// clientPrefixes mark allocations made by the benchmark's own side.
// (In a test binary this program's functions are named by its import path.)
var clientPrefixes = []string{"main.", modulePrefix + "e2e/microbench.", modulePrefix + "vhost/frontend.", modulePrefix + "fuse/fusetest."}

// allocSide classifies one allocation stack (function names, innermost
// first) by its outermost frame of this module or of this program, that is
// by the goroutine that made it: the back-end's workers start in vhost, the
// benchmark's in main or the front-end. (Innermost would be wrong: the
// server's stacks pass through this program's fuseHandler.) "runtime" is
// for stacks with neither.
func allocSide(funcs []string) string {
	side := "runtime"
	for _, fn := range funcs {
		switch {
		case slices.ContainsFunc(clientPrefixes, func(p string) bool { return strings.HasPrefix(fn, p) }):
			side = "client"
		case strings.HasPrefix(fn, modulePrefix):
			side = "server"
		}
	}
	return side
}

// allocCounts sums allocated objects per side over the whole memory profile,
// and the server's per allocation site (its innermost frame of this module,
// file:line) under the key "site " + site.
func allocCounts() map[string]int64 {
	// The profile lags by up to two GC cycles.
	runtime.GC()
	runtime.GC()
	var recs []runtime.MemProfileRecord
	n, _ := runtime.MemProfile(nil, true)
	for {
		recs = make([]runtime.MemProfileRecord, n+64)
		var ok bool
		if n, ok = runtime.MemProfile(recs, true); ok {
			recs = recs[:n]
			break
		}
	}
	counts := map[string]int64{}
	for _, r := range recs {
		frames := runtime.CallersFrames(r.Stack())
		var funcs []string
		site := ""
		for {
			f, more := frames.Next()
			funcs = append(funcs, f.Function)
			if site == "" && strings.HasPrefix(f.Function, modulePrefix) {
				site = fmt.Sprintf("%s (%s:%d)", strings.TrimPrefix(f.Function, modulePrefix), filepath.Base(f.File), f.Line)
			}
			if !more {
				break
			}
		}
		side := allocSide(funcs)
		counts[side] += r.AllocObjects
		if side == "server" {
			counts["site "+site] += r.AllocObjects
		}
	}
	return counts
}

// inProcess is uvfsd's stack (as cmd/uvfsd wires it, without a sandbox)
// serving share to a front-end in this process.
type inProcess struct {
	fs    *passfs.FS
	front *frontend.Frontend
	done  chan error
}

type fuseHandler struct{ s *fuse.Server }

func (h fuseHandler) Serve(_ int, r *vhost.Request) { h.s.Serve(r.In, r.Out, r) }

// inProcessVhost is the in-process stack's worker model: uvfsd's polling and hot-wait defaults and
// one worker per queue, unless --in-process-poll-us or --in-process-pool say otherwise.
var inProcessVhost = vhost.Config{PollMax: vhost.DefaultPollMax(runtime.NumCPU()), HotWait: vhost.DefaultHotWait}

func startInProcess(share string, o frontend.Options) (*inProcess, error) {
	rootFD, err := unix.Open(share, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open share: %w", err)
	}
	fs, err := passfs.New(passfs.Options{RootFD: rootFD, ProcSelfFD: -1, Cache: passfs.CacheAuto, SetCreds: os.Geteuid() == 0})
	if err != nil {
		unix.Close(rootFD)
		return nil, err
	}
	server := fuse.NewServer(fs, fuse.Options{Want: fuse.DefaultWant})
	backend := vhost.NewBackend(inProcessVhost, fuseHandler{server})
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fs.Close()
		return nil, err
	}
	front, err := unixConn(fds[0])
	if err != nil {
		return nil, err
	}
	back, err := unixConn(fds[1])
	if err != nil {
		return nil, err
	}
	p := &inProcess{fs: fs, done: make(chan error, 1)}
	go func() { p.done <- backend.ServeConn(back) }()
	if p.front, err = frontend.New(front, o); err != nil {
		front.Close()
		<-p.done
		fs.Close()
		return nil, fmt.Errorf("front-end set-up: %w", err)
	}
	return p, nil
}

func unixConn(fd int) (*net.UnixConn, error) {
	f := os.NewFile(uintptr(fd), "socketpair")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	return c.(*net.UnixConn), nil
}

func (p *inProcess) close() error {
	p.front.Close()
	err := <-p.done
	p.fs.Close()
	return err
}

// allocResult is allocations per request of one operation.
type allocResult struct {
	server, client, runtime float64
	sites                   map[string]float64 // server allocations per request by site
}

// measureAllocs runs n operations of each kind one at a time against the
// in-process stack and returns the allocations per operation by side.
func measureAllocs(share string, o frontend.Options, n int) (map[string]allocResult, error) {
	runtime.MemProfileRate = 1
	p, err := startInProcess(share, o)
	if err != nil {
		return nil, err
	}
	s, err := newSession(p.front, uint32(os.Getuid()), uint32(os.Getgid()))
	if err != nil {
		p.close()
		return nil, err
	}
	out := map[string]allocResult{}
	for _, op := range benchOps {
		fn, err := op.fuse(s, 0)
		if errors.Is(err, errNotApplicable) {
			continue
		}
		if err != nil {
			p.close()
			return nil, fmt.Errorf("%s: %w", op.name, err)
		}
		count := n
		if strings.Contains(op.name, "1 MiB") {
			count = max(1, n/10)
		}
		// Warm up: pools fill, and the profiler's sampling switches to every allocation.
		for range 200 {
			if err := fn(); err != nil {
				p.close()
				return nil, fmt.Errorf("%s: %w", op.name, err)
			}
		}
		before := allocCounts()
		for range count {
			if err := fn(); err != nil {
				p.close()
				return nil, fmt.Errorf("%s: %w", op.name, err)
			}
		}
		after := allocCounts()
		per := func(side string) float64 { return float64(after[side]-before[side]) / float64(count) }
		r := allocResult{server: per("server"), client: per("client"), runtime: per("runtime"), sites: map[string]float64{}}
		for k := range after {
			if site, ok := strings.CutPrefix(k, "site "); ok && after[k] > before[k] {
				r.sites[site] = per(k)
			}
		}
		out[op.name] = r
	}
	if err := p.close(); err != nil {
		return out, fmt.Errorf("in-process ServeConn: %w", err)
	}
	return out, nil
}
