// Package idmap translates user and group ids between the guest, the
// daemon's user namespace and the host. It is pure logic: it parses the
// --translate-uid/--translate-gid rules, the --uid-map/--gid-map flags,
// /etc/subuid and /etc/subgid, and /proc/self/uid_map, and it composes
// them into a Mapper that the request path calls for every id it sees.
//
// Three id spaces meet here:
//
//   - guest ids: what processes in the VM use;
//   - host ids: what `id` prints outside any namespace; the user's flags
//     (--translate-uid, /etc/subuid) speak of these;
//   - namespace (ns) ids: what the daemon's syscalls see when it runs in
//     a user namespace. Without a namespace ns ids equal host ids.
//
// uid and gid are translated by separate values of the same types.
package idmap

// MaxID is the largest valid id. 4294967295 ((uid_t)-1) means "no
// change" to chown and is never a real id.
const MaxID = 1<<32 - 2

// idSpace is the number of 32-bit ids; translate ranges end at most here.
const idSpace = 1 << 32

// nsIDLimit is where uid_map extents must end at the latest: the kernel
// rejects an extent that would include (u32)-1.
const nsIDLimit = 1<<32 - 1

// OverflowID is the id the kernel reports for ids that have no mapping
// (/proc/sys/kernel/overflowuid); the daemon shows it to the guest for
// the same reason.
const OverflowID = 65534
