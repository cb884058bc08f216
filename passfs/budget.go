package passfs

import (
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// The fd budget: how many inode O_PATH fds may be open at once (doc.go explains the policy). Nodes
// with an fd that could be closed sit in a clock; when the count passes the limit, the hand sweeps
// it and closes the fds of nodes that are neither pinned nor used since the hand last passed
// (second chance). Using a node only sets a bit, so the hot paths stay cheap.

// Limits of the default budget: below minFDBudget node fds the daemon could hardly work, and
// fdReserveDivisor keeps a quarter of RLIMIT_NOFILE for everything that is not an inode fd.
const (
	minFDBudget      = 32
	fdReserveDivisor = 4
	maxFDBudget      = 1 << 30 // for RLIM_INFINITY
)

// defaultFDBudget derives the budget from the RLIMIT_NOFILE soft limit: three quarters of it for
// inode fds, the rest for open files and directories, the vhost-user socket, eventfds, QEMU's
// memory fds and the runtime's own.
func defaultFDBudget() int64 {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return minFDBudget
	}
	if lim.Cur > maxFDBudget {
		return maxFDBudget
	}
	return max(minFDBudget, int64(lim.Cur-lim.Cur/fdReserveDivisor))
}

type fdBudget struct {
	limit int64        // the budget; fixed after New
	open  atomic.Int64 // open node fds (the root's included) and data fds (nodedata.go)
	// sweepAt: after a sweep that could not reach the limit, trim waits for this many (0: none).
	sweepAt atomic.Int64

	mu    sync.Mutex // guards nodes, hand and every node's clockIdx
	nodes []*inode   // nodes in the table except the root
	hand  int
}

// add puts a new node into the clock.
func (b *fdBudget) add(n *inode) {
	b.mu.Lock()
	n.clockIdx = len(b.nodes)
	b.nodes = append(b.nodes, n)
	b.mu.Unlock()
}

// remove takes a forgotten node out of the clock (swapping the last one into its place).
func (b *fdBudget) remove(n *inode) {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := n.clockIdx
	if i < 0 || i >= len(b.nodes) || b.nodes[i] != n {
		return
	}
	last := len(b.nodes) - 1
	b.nodes[i] = b.nodes[last]
	b.nodes[i].clockIdx = i
	b.nodes[last] = nil
	b.nodes = b.nodes[:last]
	n.clockIdx = -1
}

// trim closes fds when the count is over the limit, down to 15/16 of it so that the next few
// opens do not sweep again. If a sweep cannot get below the limit (too many nodes pinned or kept
// open), the next one waits until limit/16 more fds are open, so that every open does not sweep
// the whole clock in vain.
func (b *fdBudget) trim() {
	n := b.open.Load()
	if n <= b.limit {
		if b.sweepAt.Load() != 0 {
			b.sweepAt.Store(0)
		}
		return
	}
	if n < b.sweepAt.Load() {
		return
	}
	b.evictDownTo(b.limit - b.limit/16 - 1)
	if left := b.open.Load(); left > b.limit {
		b.sweepAt.Store(left + max(1, b.limit/16))
	}
}

// relieve is for an open that failed with EMFILE or ENFILE: it closes a quarter of the node fds
// (at least 16) whatever the budget says, and reports whether it closed any.
func (b *fdBudget) relieve() bool {
	n := b.open.Load()
	return b.evictDownTo(n-max(16, n/4)) > 0
}

// evictDownTo sweeps the clock at most twice (the first pass may only clear "recent" bits) and
// closes unpinned fds until at most target remain. It returns how many it closed.
func (b *fdBudget) evictDownTo(target int64) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	closed := 0
	for steps := 2 * len(b.nodes); steps > 0 && b.open.Load() > target; steps-- {
		if b.hand >= len(b.nodes) {
			b.hand = 0
		}
		n := b.nodes[b.hand]
		b.hand++
		if n.recent.Load() {
			n.recent.Store(false)
			continue
		}
		if n.pins.Load() != 0 || !n.mu.TryLock() {
			continue
		}
		closed += int(n.closeIfUnpinnedLocked(true))
		n.mu.Unlock()
	}
	return closed
}
