// Package vhost implements the back-end side of the vhost-user protocol for a virtio-fs device.
//
// QEMU (the front-end) connects to a unix socket, shares guest RAM through memfds and hands over
// split virtqueues together with kick/call eventfds. The back-end maps that memory, runs one worker
// goroutine per started queue and turns every descriptor chain into a Request whose In and Out
// buffers point straight into guest memory, so the FUSE layer reads and writes guest memory without
// copies.
//
// The guest is hostile: every ring address, descriptor, length and index is bounded before use, and
// a bad chain is returned to the guest with 0 bytes written instead of crashing or hanging the
// daemon. Malformed front-end messages only produce an error reply or a closed connection, and the
// kick and call fds it passes are made non-blocking, so that a pipe or socket in place of an
// eventfd cannot block a worker. The front-end is trusted not to shrink a memory region's file
// after mapping it (QEMU seals its memfds against that): a fault on guest memory would crash the
// daemon.
//
// Live migration is offered only with Config.Migration: dirty logging of every write into guest
// memory while the front-end acks VHOST_F_LOG_ALL (dirtylog.go), and the device's internal state
// moved through the fd of SET_DEVICE_STATE_FD once every ring is stopped (migration.go). Anything
// that could make the saved state disagree with the guest memory the destination gets (a write
// the log missed, a request still running after its ring was stopped) makes the save fail, so
// that QEMU fails the migration and the guest runs on at the source.
//
// File map: protocol.go (wire constants and payload layouts), conn.go (framing and fd passing),
// memory.go (guest memory regions), ring.go (split ring layout and atomic index access), walk.go
// (descriptor chain walker), queue.go, worker.go and request.go (per-queue state, the worker
// goroutine, Request and Complete), backend.go and messages.go (connection loop and one method
// per message), dirtylog.go and migration.go (live migration), listen.go (sockets).
package vhost
