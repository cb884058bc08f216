package passfs

import (
	"iter"
	"math/bits"
	"sync/atomic"
)

// idTable maps the ids the guest holds (node ids, file handles) to their objects. Every request
// looks one up, from every queue's worker at once, so a lookup takes no lock and writes no shared
// memory; adding and removing are done by one writer at a time (the owner's lock).
//
// It replaces a sync.Map, whose Store allocated twice (the boxed key and a trie entry) per new
// node or handle. The ids come from counters and are never reused, and each entry knows its own
// id, so a slot is one pointer: an open-addressing array of atomic pointers, probed linearly from
// a Fibonacci hash (sequential ids spread evenly). A removed entry leaves a tombstone. When
// entries and tombstones would fill half the array, the writer copies the live entries into a new
// array and publishes it; readers still on the old array may find an entry removed since, as
// they could with sync.Map, so callers check for that after pinning (inode.forgotten,
// handle.tryPin).
type idTable[T any, P idEntry[T]] struct {
	cur  atomic.Pointer[idSlots[T]]
	tomb *T // marks a removed entry's slot; never returned

	// Writers only.
	live int // entries
	used int // entries and tombstones
}

// idEntry is what an idTable holds: a pointer whose target knows its id (never 0, never changed
// while in the table).
type idEntry[T any] interface {
	*T
	tableID() uint64
}

type idSlots[T any] struct {
	shift uint // 64 - log2(len(s))
	s     []atomic.Pointer[T]
}

// minIDSlots keeps small tables from being rebuilt often: a rebuild allocates the array, so a
// table of a few live entries churned by create/forget allocates once per about 500 new ids.
const minIDSlots = 1024

func (a *idSlots[T]) home(id uint64) uint64 { return (id * 0x9e3779b97f4a7c15) >> a.shift }

func (a *idSlots[T]) mask() uint64 { return uint64(len(a.s) - 1) }

func newIDSlots[T any](n int) *idSlots[T] {
	return &idSlots[T]{shift: uint(64 - bits.TrailingZeros(uint(n))), s: make([]atomic.Pointer[T], n)}
}

// init readies the table; before it is shared.
func (t *idTable[T, P]) init() {
	t.tomb = new(T)
	t.cur.Store(newIDSlots[T](minIDSlots))
}

// get returns the entry with id, or nil. Any id is safe: a probe ends at an empty slot, and at
// most half the slots are ever used.
func (t *idTable[T, P]) get(id uint64) P {
	_, p := t.find(t.cur.Load(), id)
	return p
}

// find returns the index of id's slot in a and its entry, or nil.
func (t *idTable[T, P]) find(a *idSlots[T], id uint64) (uint64, P) {
	for i := a.home(id); ; i = (i + 1) & a.mask() {
		p := a.s[i].Load()
		if p == nil {
			return 0, nil
		}
		if p != t.tomb && P(p).tableID() == id {
			return i, p
		}
	}
}

// put adds p, whose id the table must not hold yet (writer).
func (t *idTable[T, P]) put(p P) {
	a := t.cur.Load()
	if 2*(t.used+1) > len(a.s) {
		a = t.rebuild(t.live + 1)
	}
	for i := a.home(P(p).tableID()); ; i = (i + 1) & a.mask() {
		q := a.s[i].Load()
		if q == nil || q == t.tomb {
			if q == nil {
				t.used++
			}
			a.s[i].Store(p)
			t.live++
			return
		}
	}
}

// remove takes the entry with id out and returns it, or nil if there is none (writer).
func (t *idTable[T, P]) remove(id uint64) P {
	a := t.cur.Load()
	i, p := t.find(a, id)
	if p != nil {
		a.s[i].Store(t.tomb)
		t.live--
	}
	return p
}

// rebuild publishes a new array holding the live entries, with room for at least need entries
// before the next rebuild, and returns it (writer).
func (t *idTable[T, P]) rebuild(need int) *idSlots[T] {
	size := max(minIDSlots, 1<<bits.Len(uint(4*need-1)))
	b := newIDSlots[T](size)
	for p := range t.all() {
		for i := b.home(P(p).tableID()); ; i = (i + 1) & b.mask() {
			if b.s[i].Load() == nil {
				b.s[i].Store(p)
				break
			}
		}
	}
	t.used = t.live
	t.cur.Store(b)
	return b
}

// all yields every entry (writer, or with writers excluded).
func (t *idTable[T, P]) all() iter.Seq[P] {
	return func(yield func(P) bool) {
		a := t.cur.Load()
		for i := range a.s {
			if p := a.s[i].Load(); p != nil && p != t.tomb && !yield(p) {
				return
			}
		}
	}
}

// len is the number of entries (writer, or with writers excluded).
func (t *idTable[T, P]) len() int { return t.live }
