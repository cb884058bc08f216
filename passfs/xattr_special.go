package passfs

import (
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/uvfsd/uvfsd/fuse"
)

// specialXattrWorker runs xattr calls on symlinks and special files, which have no fd that
// f*xattr accepts and must never be opened. One goroutine, locked to its own OS thread, unshares
// its file system context (CLONE_FS) and changes directory to /proc/self/fd; there "N" names
// the inode of fd N, and getxattr("N") follows the magic link to the inode itself (not further,
// even for a symlink). The thread is never unlocked, so the runtime discards it when the goroutine
// ends and no other goroutine ever runs with that working directory. Requests are rare (ls -l on
// symlinks) so one thread suffices.
type specialXattrWorker struct {
	once  sync.Once
	reqs  chan *specialXattrReq
	err   fuse.Errno // why the worker could not start
	ready chan struct{}
	quit  chan struct{}
	stopO sync.Once
}

type specialXattrReq struct {
	op    xattrOp
	fd    int
	name  *byte
	buf   []byte
	flags int
	n     int
	e     fuse.Errno
	done  chan struct{}
}

func (w *specialXattrWorker) start(procSelfFD int) {
	w.reqs = make(chan *specialXattrReq)
	w.ready = make(chan struct{})
	w.quit = make(chan struct{})
	go w.run(procSelfFD)
	<-w.ready
}

func (w *specialXattrWorker) run(procSelfFD int) {
	runtime.LockOSThread() // never unlocked: see the type's comment
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		w.err = errnoOf(err)
	} else if err := unix.Fchdir(procSelfFD); err != nil {
		w.err = errnoOf(err)
	}
	close(w.ready)
	if w.err != 0 {
		return
	}
	for {
		select {
		case r := <-w.reqs:
			var name fdName
			r.n, r.e = pathXattr(r.op, name.of(r.fd), r.name, r.buf, r.flags)
			close(r.done)
		case <-w.quit:
			return
		}
	}
}

func (w *specialXattrWorker) do(procSelfFD int, op xattrOp, fd int, name *byte, buf []byte, flags int) (int, fuse.Errno) {
	w.once.Do(func() { w.start(procSelfFD) })
	if w.err != 0 {
		return 0, syscall.EOPNOTSUPP
	}
	r := &specialXattrReq{op: op, fd: fd, name: name, buf: buf, flags: flags, done: make(chan struct{})}
	select {
	case w.reqs <- r:
	case <-w.quit:
		return 0, syscall.EBADF
	}
	<-r.done
	return r.n, r.e
}

func (w *specialXattrWorker) stop() {
	w.stopO.Do(func() {
		w.once.Do(func() { w.quit = make(chan struct{}) }) // never started: make do() fail fast
		if w.quit != nil {
			close(w.quit)
		}
	})
}
