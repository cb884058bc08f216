package passfs

import (
	"math"
	"sync"
	"sync/atomic"
	"testing"
)

type idTestEntry struct{ id uint64 }

func (e *idTestEntry) tableID() uint64 { return e.id }

func newTestIDTable() *idTable[idTestEntry, *idTestEntry] {
	t := &idTable[idTestEntry, *idTestEntry]{}
	t.init()
	return t
}

// Sequential ids as the tables hand them out, removed in another order, through several rebuilds;
// ids the table never held, hostile ones included, miss.
func TestIDTableSequentialIDs(t *testing.T) {
	tab := newTestIDTable()
	const n = 5000 // several times minIDSlots: the array grows
	for id := uint64(1); id <= n; id++ {
		tab.put(&idTestEntry{id: id})
	}
	if tab.len() != n {
		t.Fatalf("len %d, want %d", tab.len(), n)
	}
	for id := uint64(1); id <= n; id++ {
		if e := tab.get(id); e == nil || e.id != id {
			t.Fatalf("get(%d) = %v", id, e)
		}
	}
	for _, id := range []uint64{0, n + 1, n + 1000, 1 << 40, math.MaxUint64} {
		if e := tab.get(id); e != nil {
			t.Fatalf("get(%d) of an id never added = %v", id, e)
		}
		if e := tab.remove(id); e != nil {
			t.Fatalf("remove(%d) of an id never added = %v", id, e)
		}
	}
	// Remove the odd ids: the even ones stay, the odd ones (tombstones now) miss.
	for id := uint64(1); id <= n; id += 2 {
		if e := tab.remove(id); e == nil || e.id != id {
			t.Fatalf("remove(%d) = %v", id, e)
		}
		if e := tab.remove(id); e != nil {
			t.Fatalf("second remove(%d) = %v", id, e)
		}
	}
	for id := uint64(1); id <= n; id++ {
		if e := tab.get(id); (e != nil) != (id%2 == 0) {
			t.Fatalf("get(%d) after removing odd ids = %v", id, e)
		}
	}
	seen := 0
	for e := range tab.all() {
		if e.id%2 != 0 || e == tab.tomb {
			t.Fatalf("all() yields %v", e)
		}
		seen++
	}
	if seen != n/2 || tab.len() != n/2 {
		t.Fatalf("all() yields %d, len %d, want %d", seen, tab.len(), n/2)
	}
}

// Create/forget churn keeps a few entries live: tombstones are dropped by rebuilds, the array
// stays at its minimum size and probes stay short (an empty slot always ends them).
func TestIDTableChurn(t *testing.T) {
	tab := newTestIDTable()
	root := &idTestEntry{id: 1}
	tab.put(root)
	arrays := map[*idSlots[idTestEntry]]bool{}
	for id := uint64(2); id < 200000; id++ {
		tab.put(&idTestEntry{id: id})
		if id > 30 {
			if tab.remove(id-29) == nil {
				t.Fatalf("remove(%d) missed", id-29)
			}
		}
		arrays[tab.cur.Load()] = true
		if 2*tab.used > len(tab.cur.Load().s) {
			t.Fatalf("%d of %d slots used", tab.used, len(tab.cur.Load().s))
		}
	}
	if tab.get(1) != root || tab.len() != 30 {
		t.Fatalf("root %v, len %d", tab.get(1), tab.len())
	}
	if got := len(tab.cur.Load().s); got != minIDSlots {
		t.Fatalf("array of %d slots for 30 entries, want %d", got, minIDSlots)
	}
	// One new array per about minIDSlots/2 new ids: what a new node costs the table.
	if max := 200000/(minIDSlots/2-30) + 2; len(arrays) > max {
		t.Fatalf("%d arrays for 200000 ids, want at most %d", len(arrays), max)
	}
}

// Readers look ids up while a writer adds and removes others and rebuilds the array: an id that
// stays in the table is always found, and a lookup never returns another id's entry.
func TestIDTableConcurrentReaders(t *testing.T) {
	tab := newTestIDTable()
	var mu sync.Mutex // the writer's lock, as inodeTable.mu
	const stable = 100
	for id := uint64(1); id <= stable; id++ {
		tab.put(&idTestEntry{id: id})
	}
	var next atomic.Uint64
	next.Store(stable + 1)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(r); !stop.Load(); i++ {
				id := 1 + i%stable
				if e := tab.get(id); e == nil || e.id != id {
					t.Errorf("get(%d) of a stable id = %v", id, e)
					return
				}
				churned := next.Load() - 1 - i%8
				if e := tab.get(churned); e != nil && e.id != churned {
					t.Errorf("get(%d) = entry %d", churned, e.id)
					return
				}
			}
		}()
	}
	for id := uint64(stable + 1); id < 100000; id++ {
		mu.Lock()
		tab.put(&idTestEntry{id: id})
		next.Store(id + 1)
		if id > stable+16 {
			tab.remove(id - 16)
		}
		mu.Unlock()
	}
	stop.Store(true)
	wg.Wait()
}

// A lookup takes no allocation; adding does not either, but for a new array now and then.
func TestIDTableAllocs(t *testing.T) {
	tab := newTestIDTable()
	entries := make([]idTestEntry, 10000)
	for i := range entries {
		entries[i].id = uint64(i + 1)
	}
	i := 0
	allocs := testing.AllocsPerRun(len(entries)-1, func() {
		tab.put(&entries[i])
		if tab.get(entries[i].id) == nil {
			t.Fatal("miss")
		}
		if i >= 20 {
			tab.remove(entries[i-20].id)
		}
		i++
	})
	if allocs > 0.01 {
		t.Fatalf("%.3f allocations per put/get/remove", allocs)
	}
}

// BenchmarkIDTableGet is every request's node lookup, from all cores at once. On the 2-core test
// VM: about 2 ns, where sync.Map's Load took about 13 ns.
func BenchmarkIDTableGet(b *testing.B) {
	tab := newTestIDTable()
	const n = 5000
	for id := uint64(1); id <= n; id++ {
		tab.put(&idTestEntry{id: id})
	}
	b.RunParallel(func(pb *testing.PB) {
		id := uint64(1)
		for pb.Next() {
			if tab.get(id) == nil {
				b.Fatal("miss")
			}
			id = id%n + 1
		}
	})
}

// Migrated handles keep their fh, a repeated one is refused, and new handles never get one of
// theirs, even when the state's next fh lags behind them.
func TestHandleTableAddAt(t *testing.T) {
	tab := newHandleTable()
	if !tab.addAt(100, &handle{fd: -1}) || tab.addAt(100, &handle{fd: -1}) {
		t.Fatal("addAt(100) twice: want true, then false")
	}
	if fh := tab.add(&handle{fd: -1}); fh <= 100 {
		t.Fatalf("a new handle got fh %d after a migrated 100", fh)
	}
	if h := tab.get(100); h == nil || h.id != 100 {
		t.Fatalf("get(100) = %v", h)
	} else {
		h.unpin()
	}
	if !tab.remove(100) || tab.remove(100) || tab.get(100) != nil {
		t.Fatal("remove(100): want it gone once")
	}
	if got := tab.count(); got != 1 {
		t.Fatalf("%d handles, want 1", got)
	}
}
