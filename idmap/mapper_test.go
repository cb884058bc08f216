package idmap_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/uvfsd/uvfsd/idmap"
)

// podman is the podman-unshare layout for host uid 1000.
const podman = "0 1000 1\n1 100000 65536\n"

type g2n struct {
	guest, ns uint32
	forbidden bool
}

type n2g struct{ ns, guest uint32 }

func checkMapper(t *testing.T, m *idmap.Mapper, toNS []g2n, toGuest []n2g) {
	t.Helper()
	for _, tt := range toNS {
		got, err := m.GuestToNS(tt.guest)
		if tt.forbidden {
			if !errors.Is(err, idmap.ErrForbidden) {
				t.Errorf("GuestToNS(%d) = %d, %v; want ErrForbidden", tt.guest, got, err)
			}
			continue
		}
		if err != nil || got != tt.ns {
			t.Errorf("GuestToNS(%d) = %d, %v; want %d", tt.guest, got, err, tt.ns)
		}
	}
	for _, tt := range toGuest {
		if got := m.NSToGuest(tt.ns); got != tt.guest {
			t.Errorf("NSToGuest(%d) = %d, want %d", tt.ns, got, tt.guest)
		}
	}
}

func newMapper(t *testing.T, flags []string, nsText string, hostID uint32) *idmap.Mapper {
	t.Helper()
	ns := idmap.IdentityNSMap()
	if nsText != "" {
		ns = mustNSMap(t, nsText)
	}
	m, err := idmap.NewMapper(mustTranslation(t, flags...), ns, hostID)
	if err != nil {
		t.Fatalf("NewMapper: %v", err)
	}
	return m
}

func TestMapperNoRules(t *testing.T) {
	t.Run("no namespace", func(t *testing.T) {
		m := newMapper(t, nil, "", 1000)
		if !m.IsIdentity() || m.InNamespace() {
			t.Fatalf("IsIdentity %v InNamespace %v; want true, false", m.IsIdentity(), m.InNamespace())
		}
		checkMapper(t, m,
			[]g2n{{guest: 0, ns: 0}, {guest: 1000, ns: 1000}, {guest: 4294967294, ns: 4294967294}},
			[]n2g{{0, 0}, {1000, 1000}, {123456, 123456}})
	})
	t.Run("empty map means no namespace", func(t *testing.T) {
		m, err := idmap.NewMapper(nil, idmap.NSMap{}, 1000)
		if err != nil || !m.IsIdentity() {
			t.Fatalf("NewMapper(empty map) = %v, %v; want identity", m, err)
		}
	})
	t.Run("podman layout", func(t *testing.T) {
		m := newMapper(t, nil, podman, 1000)
		if m.IsIdentity() || !m.InNamespace() {
			t.Fatalf("IsIdentity %v InNamespace %v; want false, true", m.IsIdentity(), m.InNamespace())
		}
		checkMapper(t, m,
			[]g2n{
				{guest: 0, ns: 0},                   // the invoking user
				{guest: 1000, ns: 1000},             // a subordinate id (host 100999)
				{guest: 65536, ns: 65536},           // the last subordinate id
				{guest: 65537, ns: 0},               // unmapped: created as the invoking user
				{guest: 4294967294, ns: 0},          // unmapped
				{guest: 4294967295, ns: 4294967295}, // chown's "no change"
			},
			[]n2g{{0, 0}, {1000, 1000}, {65536, 65536}, {65537, idmap.OverflowID}})
	})
	t.Run("own id only", func(t *testing.T) {
		// No subordinate ranges: every guest id creates files as the
		// invoking user instead of failing with EINVAL (lima #2152).
		m := newMapper(t, nil, "0 1000 1\n", 1000)
		checkMapper(t, m,
			[]g2n{{guest: 0, ns: 0}, {guest: 1, ns: 0}, {guest: 1000, ns: 0}},
			[]n2g{{0, 0}, {1, idmap.OverflowID}, {idmap.OverflowID, idmap.OverflowID}})
	})
}

// TestMapperReadmeSquash is the Rust virtiofsd README's example: any
// guest user creates files as 1001 (gid 100) on the host, whose files
// show as 1000 in the guest; the result must not depend on whether the
// daemon runs in a user namespace.
func TestMapperReadmeSquash(t *testing.T) {
	uidRules := []string{"squash-guest:0:1001:4294967295", "host:1001:1000:1"}
	gidRules := []string{"squash-guest:0:100:4294967295", "host:100:1000:1"}
	setups := []struct {
		name           string
		uidMap, gidMap string
	}{
		{name: "no namespace"},
		{name: "podman layout", uidMap: "0 1001 1\n1 100000 65536\n", gidMap: "0 100 1\n1 100000 65536\n"},
		{name: "own id only", uidMap: "0 1001 1\n", gidMap: "0 100 1\n"},
		{name: "own id not at ns 0", uidMap: "0 100000 1000\n1000 1001 1\n", gidMap: "0 100000 5\n5 100 1\n"},
	}
	for _, s := range setups {
		t.Run(s.name, func(t *testing.T) {
			for _, kind := range []struct {
				rules  []string
				nsText string
				host   uint32
			}{{uidRules, s.uidMap, 1001}, {gidRules, s.gidMap, 100}} {
				m := newMapper(t, kind.rules, kind.nsText, kind.host)
				ns := idmap.IdentityNSMap()
				if kind.nsText != "" {
					ns = mustNSMap(t, kind.nsText)
				}
				for _, guest := range []uint32{0, 1, 1000, 65534, 4294967294} {
					nsID, err := m.GuestToNS(guest)
					if err != nil {
						t.Fatalf("GuestToNS(%d): %v", guest, err)
					}
					if host, ok := ns.NSToHost(nsID); !ok || host != kind.host {
						t.Errorf("guest %d creates as host %d (ns %d, mapped %v); want host %d", guest, host, nsID, ok, kind.host)
					}
				}
				ownNS, _ := ns.HostToNS(kind.host)
				if got := m.NSToGuest(ownNS); got != 1000 {
					t.Errorf("a file of host %d shows as guest %d, want 1000", kind.host, got)
				}
			}
		})
	}
	// Other host ids stay visible unchanged where they exist.
	plain := newMapper(t, uidRules, "", 1001)
	checkMapper(t, plain, nil, []n2g{{0, 0}, {5, 5}, {1000, 1000}, {1001, 1000}})
	inNS := newMapper(t, uidRules, "0 1001 1\n1 100000 65536\n", 1001)
	checkMapper(t, inNS, nil, []n2g{{0, 1000}, {5, 5}, {70000, idmap.OverflowID}})
}

func TestMapperRulesInNamespace(t *testing.T) {
	m := newMapper(t, []string{
		"guest:2000:100005:3", // host subordinate ids: ns 6..8
		"map:3000:1000:1",     // the invoking user, ns 0
		"forbid-guest:10:5",
		"squash-host:100000:7:1", // host 100000 is ns 1
	}, podman, 1000)
	checkMapper(t, m,
		[]g2n{
			{guest: 2000, ns: 6}, {guest: 2002, ns: 8},
			{guest: 3000, ns: 0},
			{guest: 10, forbidden: true}, {guest: 14, forbidden: true},
			{guest: 15, ns: 15}, // no rule: the number as an ns id
		},
		[]n2g{{1, 7}, {6, 6}, {0, 3000}})
}

// A rule whose host ids the namespace does not map is refused: falling back to the invoking user
// would turn "squash guest root to nobody" into "guest root is the user who owns the share".
func TestMapperRefusesRulesToUnmappedHostIDs(t *testing.T) {
	for _, rule := range []string{"guest:0:65534:1", "squash-guest:0:65534:100", "map:3000:5000:1", "guest:0:165530:10"} {
		tr, err := idmap.ParseTranslation([]string{rule})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := idmap.NewMapper(tr, mustNSMap(t, podman), 1000); err == nil || !strings.Contains(err.Error(), "not all mapped") {
			t.Errorf("NewMapper with %q in the podman layout: %v, want a refusal", rule, err)
		}
		if _, err := idmap.NewMapper(tr, idmap.IdentityNSMap(), 1000); err != nil {
			t.Errorf("NewMapper with %q and no namespace: %v", rule, err)
		}
	}
	// Ranges that span two extents are fine.
	tr, _ := idmap.ParseTranslation([]string{"guest:0:1000:1", "guest:1:100000:65536", "forbid-guest:70000:5"})
	if _, err := idmap.NewMapper(tr, mustNSMap(t, podman), 1000); err != nil {
		t.Errorf("rules within the map: %v", err)
	}
}

func TestMapperRulesWithoutNamespace(t *testing.T) {
	m := newMapper(t, []string{"map:0:1000:1", "forbid-guest:5:1"}, "", 1000)
	if m.IsIdentity() {
		t.Fatal("IsIdentity() = true with rules")
	}
	checkMapper(t, m,
		[]g2n{{guest: 0, ns: 1000}, {guest: 5, forbidden: true}, {guest: 7, ns: 7}},
		[]n2g{{1000, 0}, {0, 0}, {7, 7}})
}

func TestNewMapperUnmappedHostID(t *testing.T) {
	_, err := idmap.NewMapper(nil, mustNSMap(t, podman), 2000)
	if err == nil || !strings.Contains(err.Error(), `":0:2000:1:"`) {
		t.Fatalf("error = %v, want a hint to map host id 2000", err)
	}
}

func TestHomeMapper(t *testing.T) {
	t.Run("podman layout", func(t *testing.T) {
		m, err := idmap.NewHomeMapper(mustNSMap(t, podman), 1000, 1000)
		if err != nil {
			t.Fatal(err)
		}
		checkMapper(t, m,
			[]g2n{{guest: 0, ns: 0}, {guest: 1000, ns: 0}, {guest: 5, ns: 0}, {guest: 4294967294, ns: 0}},
			[]n2g{{0, 1000}, {5, 5}, {70000, idmap.OverflowID}})
	})
	t.Run("no namespace, other guest id", func(t *testing.T) {
		m, err := idmap.NewHomeMapper(idmap.IdentityNSMap(), 1000, 501)
		if err != nil {
			t.Fatal(err)
		}
		checkMapper(t, m,
			[]g2n{{guest: 0, ns: 1000}, {guest: 501, ns: 1000}},
			[]n2g{{1000, 501}, {0, 0}, {2000, 2000}})
	})
}

func TestMapperDoesNotAllocate(t *testing.T) {
	m := newMapper(t, []string{"squash-guest:0:1001:4294967295", "host:1001:1000:1"}, "0 1001 1\n1 100000 65536\n", 1001)
	var sink uint32
	allocs := testing.AllocsPerRun(1000, func() {
		for id := uint32(0); id < 100; id++ {
			ns, _ := m.GuestToNS(id * 997)
			sink += ns + m.NSToGuest(id*997)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per run, want 0", allocs)
	}
	_ = sink
}

func BenchmarkMapperIdentity(b *testing.B) {
	m, _ := idmap.NewMapper(nil, idmap.IdentityNSMap(), 1000)
	var sink uint32
	for i := 0; b.Loop(); i++ {
		ns, _ := m.GuestToNS(uint32(i))
		sink += ns + m.NSToGuest(uint32(i))
	}
	_ = sink
}

func BenchmarkMapperRulesInNamespace(b *testing.B) {
	rules, _ := idmap.ParseTranslation([]string{"squash-guest:0:1001:4294967295", "host:1001:1000:1"})
	ns, _ := idmap.ParseNSMap("0 1001 1\n1 100000 65536\n")
	m, _ := idmap.NewMapper(rules, ns, 1001)
	var sink uint32
	for i := 0; b.Loop(); i++ {
		id, _ := m.GuestToNS(uint32(i))
		sink += id + m.NSToGuest(uint32(i))
	}
	_ = sink
}
