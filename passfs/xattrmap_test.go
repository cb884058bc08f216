package passfs_test

import (
	"bytes"
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/uvfsd/uvfsd/passfs"
)

// guestCase is one guest name and what ToHost must make of it.
type guestCase struct {
	guest string
	host  string // wanted host name when errno is 0
	errno syscall.Errno
}

// hostCase is one host name and what FromHost must make of it.
type hostCase struct {
	host    string
	guest   string // wanted guest name when visible
	visible bool
}

func pass(guest, host string) guestCase              { return guestCase{guest: guest, host: host} }
func refuse(guest string, e syscall.Errno) guestCase { return guestCase{guest: guest, errno: e} }
func shown(host, guest string) hostCase              { return hostCase{host: host, guest: guest, visible: true} }
func hidden(host string) hostCase                    { return hostCase{host: host} }

func mustParse(t *testing.T, rules string) *passfs.XattrMap {
	t.Helper()
	m, err := passfs.ParseXattrMap(rules)
	if err != nil {
		t.Fatalf("ParseXattrMap(%q): %v", rules, err)
	}
	return m
}

func checkMap(t *testing.T, m *passfs.XattrMap, guests []guestCase, hosts []hostCase) {
	t.Helper()
	for _, c := range guests {
		got, errno := m.ToHost(nil, []byte(c.guest))
		if errno != c.errno || (errno == 0 && string(got) != c.host) {
			t.Errorf("ToHost(%q) = %q, %v; want %q, %v", c.guest, got, errno, c.host, c.errno)
		}
	}
	for _, c := range hosts {
		got, ok := m.FromHost(nil, []byte(c.host))
		if ok != c.visible || (ok && string(got) != c.guest) {
			t.Errorf("FromHost(%q) = %q, %v; want %q, %v", c.host, got, ok, c.guest, c.visible)
		}
	}
}

// Every example of the C virtiofsd man page and of Rust virtiofsd's
// doc/xattr-mapping.md and README. Single-rule examples are not complete rule
// sets, so a catch-all is appended to them.
func TestXattrMapDocumentedExamples(t *testing.T) {
	tests := []struct {
		name   string
		rules  string
		guests []guestCase
		hosts  []hostCase
	}{
		{
			name:   "prefix client: trusted. names from the guest get user.virtiofs.",
			rules:  ":prefix:client:trusted.:user.virtiofs.: :ok:all:::",
			guests: []guestCase{pass("trusted.overlay.opaque", "user.virtiofs.trusted.overlay.opaque"), pass("user.a", "user.a")},
			hosts:  []hostCase{shown("user.virtiofs.trusted.x", "user.virtiofs.trusted.x")}, // a client rule does not strip
		},
		{
			name:   "prefix server: user.virtiofs. is stripped from all host names",
			rules:  ":prefix:server::user.virtiofs.: :ok:all:::",
			guests: []guestCase{pass("trusted.x", "trusted.x")}, // a server rule does not prefix
			hosts:  []hostCase{shown("user.virtiofs.trusted.x", "trusted.x"), shown("user.virtiofs.anything", "anything"), shown("user.a", "user.a")},
		},
		{
			name:   "prefix all combines both",
			rules:  ":prefix:all:trusted.:user.virtiofs.: :ok:all:::",
			guests: []guestCase{pass("trusted.x", "user.virtiofs.trusted.x"), pass("security.y", "security.y")},
			hosts:  []hostCase{shown("user.virtiofs.trusted.x", "trusted.x"), shown("security.y", "security.y")},
		},
		{
			name:   "ok client: user. names pass and skip the following rules",
			rules:  ":ok:client:user.:: :bad:all:::",
			guests: []guestCase{pass("user.a", "user.a"), refuse("trusted.a", syscall.EPERM)},
			hosts:  []hostCase{hidden("user.a")}, // a client rule says nothing about host names
		},
		{
			name:   "ok server: security. names are listed",
			rules:  ":ok:server::security.: :bad:all:::",
			guests: []guestCase{refuse("security.selinux", syscall.EPERM)},
			hosts:  []hostCase{shown("security.selinux", "security.selinux"), hidden("user.a")},
		},
		{
			name:   "ok all terminates passing everything",
			rules:  ":ok:all:::",
			guests: []guestCase{pass("user.a", "user.a"), pass("trusted.b", "trusted.b"), pass("system.posix_acl_access", "system.posix_acl_access")},
			hosts:  []hostCase{shown("security.selinux", "security.selinux"), shown("user.virtiofs.x", "user.virtiofs.x")},
		},
		{
			name:   "bad server hides security. names",
			rules:  ":bad:server::security.: :ok:all:::",
			guests: []guestCase{pass("security.selinux", "security.selinux")}, // server scope only
			hosts:  []hostCase{hidden("security.selinux"), hidden("security.capability"), shown("user.a", "user.a")},
		},
		{
			name:  "example 1: prefix all attributes with user.virtiofs.",
			rules: ":prefix:all::user.virtiofs.::bad:all:::",
			guests: []guestCase{
				pass("user.a", "user.virtiofs.user.a"), pass("trusted.b", "user.virtiofs.trusted.b"),
				pass("system.posix_acl_access", "user.virtiofs.system.posix_acl_access"), // the POSIX ACL section
				pass("user.virtiofs.x", "user.virtiofs.user.virtiofs.x"),
			},
			hosts: []hostCase{shown("user.virtiofs.user.a", "user.a"), hidden("user.a"), hidden("security.selinux"), hidden("user.virtiofs.")},
		},
		{
			name:   "example 1 as a map rule (also the README's and the POSIX ACL section's)",
			rules:  ":map::user.virtiofs.:",
			guests: []guestCase{pass("user.a", "user.virtiofs.user.a"), pass("system.posix_acl_default", "user.virtiofs.system.posix_acl_default")},
			hosts:  []hostCase{shown("user.virtiofs.trusted.b", "trusted.b"), hidden("trusted.b"), hidden("system.posix_acl_access")},
		},
		{
			name: "example 2: prefix trusted., allow others, '/' separators and new lines",
			rules: `/prefix/all/trusted./user.virtiofs./
			        /bad/server//trusted./
			        /bad/client/user.virtiofs.//
			        /ok/all///`,
			guests: []guestCase{
				pass("trusted.overlay.opaque", "user.virtiofs.trusted.overlay.opaque"),
				refuse("user.virtiofs.trusted.overlay.opaque", syscall.EPERM), // no forging
				pass("user.a", "user.a"), pass("security.selinux", "security.selinux"),
			},
			hosts: []hostCase{shown("user.virtiofs.trusted.overlay.opaque", "trusted.overlay.opaque"), hidden("trusted.overlay.opaque"), shown("user.a", "user.a")},
		},
		{
			name:   "example 2 as a map rule",
			rules:  "/map/trusted./user.virtiofs./",
			guests: []guestCase{pass("trusted.x", "user.virtiofs.trusted.x"), refuse("user.virtiofs.trusted.x", syscall.EPERM), pass("user.a", "user.a")},
			hosts:  []hostCase{shown("user.virtiofs.trusted.x", "trusted.x"), hidden("trusted.x"), shown("security.selinux", "security.selinux")},
		},
		{
			name: "example 3: hide security. names, allow everything else",
			rules: `/bad/all/security./security./
			        /ok/all///`,
			guests: []guestCase{refuse("security.selinux", syscall.EPERM), refuse("security.capability", syscall.EPERM), pass("user.a", "user.a")},
			hosts:  []hostCase{hidden("security.selinux"), shown("trusted.a", "trusted.a")},
		},
		{
			name:   "SELinux: keep guest and host labels apart under trusted.virtiofs.",
			rules:  ":map:security.selinux:trusted.virtiofs.:",
			guests: []guestCase{pass("security.selinux", "trusted.virtiofs.security.selinux"), refuse("trusted.virtiofs.security.selinux", syscall.EPERM), pass("security.capability", "security.capability"), pass("trusted.overlay.x", "trusted.overlay.x")},
			hosts:  []hostCase{shown("trusted.virtiofs.security.selinux", "security.selinux"), hidden("security.selinux"), shown("security.capability", "security.capability")},
		},
		{
			name:   "unsupported all with the same key and prepend",
			rules:  ":unsupported:all:trusted.:trusted.: :ok:all:::",
			guests: []guestCase{refuse("trusted.overlay.opaque", syscall.ENOTSUP), pass("user.a", "user.a")},
			hosts:  []hostCase{hidden("trusted.overlay.opaque"), shown("user.a", "user.a")},
		},
		{
			name:   "unsupported all with an empty prepend hides every host name, as documented",
			rules:  ":unsupported:all:security.:: :ok:all:::",
			guests: []guestCase{refuse("security.selinux", syscall.ENOTSUP), pass("user.a", "user.a")},
			hosts:  []hostCase{hidden("security.selinux"), hidden("user.a")},
		},
		{
			name:   "unsupported client, other separators mixed in one set",
			rules:  "|unsupported|client|system.|| #bad#server##trusted.# ,ok,all,,,",
			guests: []guestCase{refuse("system.posix_acl_access", syscall.ENOTSUP), pass("trusted.a", "trusted.a")},
			hosts:  []hostCase{shown("system.posix_acl_access", "system.posix_acl_access"), hidden("trusted.a")},
		},
		{
			name:   "first matching rule wins",
			rules:  ":ok:all:user.a:user.a: :bad:all:user.:user.: :ok:all:::",
			guests: []guestCase{pass("user.ab", "user.ab"), refuse("user.b", syscall.EPERM)},
			hosts:  []hostCase{shown("user.ab", "user.ab"), hidden("user.b")},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkMap(t, mustParse(t, tc.rules), tc.guests, tc.hosts)
		})
	}
}

// probeNames exercise prefixes used by the rule sets in these tests.
var probeNames = []string{
	"user.a", "user.virtiofs.", "user.virtiofs.user.a", "user.virtiofs.trusted.x", "user.virtiofs.x",
	"user.uvfsd", "user.uvfsd.", "user.uvfsd.trusted.overlay.opaque", "user.uvfsd.user.a",
	"user.uvfsd.system.posix_acl_access", "user.uvfsd.system.posix_acl", "user.uvfsd.user.uvfsd.x",
	"trusted.x", "trusted.overlay.opaque", "trusted.virtiofs.security.selinux", "trusted", "user",
	"security.selinux", "security.capability", "system.posix_acl_access", "system.posix_acl_default",
	"system.posix_acl", "system.nfs4_acl", "os2.x", "x",
}

// The documentation says each map rule equals the longhand rules next to it.
func TestXattrMapRuleEqualsItsExpansion(t *testing.T) {
	pairs := []struct{ short, long string }{
		{":map::user.virtiofs.:", ":prefix:all::user.virtiofs.::bad:all:::"},
		{"/map/trusted./user.virtiofs./", "/prefix/all/trusted./user.virtiofs.//bad/server//trusted.//bad/client/user.virtiofs.///ok/all///"},
		{":map:security.selinux:trusted.virtiofs.:", ":prefix:all:security.selinux:trusted.virtiofs.::bad:server::security.selinux::bad:client:trusted.virtiofs.:::ok:all:::"},
		{":ok:client:user.:: :map:trusted.:user.virtiofs.:", ":ok:client:user.:: :prefix:all:trusted.:user.virtiofs.::bad:all:user.virtiofs.:trusted.::ok:all:::"},
	}
	for _, p := range pairs {
		short, long := mustParse(t, p.short), mustParse(t, p.long)
		for _, name := range probeNames {
			sh, se := short.ToHost(nil, []byte(name))
			lh, le := long.ToHost(nil, []byte(name))
			if se != le || !bytes.Equal(sh, lh) {
				t.Errorf("%s: ToHost(%q) = %q, %v; longhand gives %q, %v", p.short, name, sh, se, lh, le)
			}
			sg, sok := short.FromHost(nil, []byte(name))
			lg, lok := long.FromHost(nil, []byte(name))
			if sok != lok || !bytes.Equal(sg, lg) {
				t.Errorf("%s: FromHost(%q) = %q, %v; longhand gives %q, %v", p.short, name, sg, sok, lg, lok)
			}
		}
	}
}

func TestParseXattrMapErrors(t *testing.T) {
	tests := []struct {
		rules string
		want  []string // substrings of the error
	}{
		{"", []string{"no rules", ":ok:all:::"}},
		{" \n\t ", []string{"no rules"}},
		{":prefix:client:hi", []string{"rule 1", `missing ':' after the key field`}},
		{":ok:all:::  :prefix:all:trusted.:user.vm.", []string{"rule 2", "missing ':' after the prepend field"}},
		{":ok:all::", []string{"rule 1", "prepend field"}},
		{":ok", []string{"rule 1", "type field"}},
		{":TOMATOPIRATE:trusted.:virtiofs.user.:", []string{"rule 1", `unknown type "TOMATOPIRATE"`, "prefix, ok, bad, unsupported or map"}},
		{":ok:all::: /prefix/helloworld///", []string{"rule 2", `unknown scope "helloworld"`, "client, server or all"}},
		{":OK:all:::", []string{"unknown type"}},
		{":map:trusted.:virtiofs.user.::map:trusted.:virtiofs.user.:", []string{"rule 1", "map rule must be the last"}},
		{":map::user.virtiofs.: :ok:all:::", []string{"rule 1", "map rule must be the last"}},
		{":map:a:", []string{"rule 1", "prepend field"}},
		{":ok:all:user.\x00x::", []string{"rule 1", "key field contains a NUL"}},
		{"\xc3\xa9ok\xc3\xa9all\xc3\xa9\xc3\xa9\xc3\xa9", []string{"rule 1", "ASCII"}},
		{":prefix:client:trusted.:user.virtiofs.: :ok:server:::", []string{"none of the 2 rules", "guest"}},
		{":ok:client::: :ok:server::user.:", []string{"none of the 2 rules", "host"}},
		{":prefix:all:trusted.:user.virtiofs.:", []string{"matches every name", ":bad:all:::"}},
	}
	for _, tc := range tests {
		m, err := passfs.ParseXattrMap(tc.rules)
		if err == nil {
			t.Errorf("ParseXattrMap(%q) = %v, want an error", tc.rules, m)
			continue
		}
		if !errors.Is(err, passfs.ErrBadXattrMap) {
			t.Errorf("ParseXattrMap(%q) error %v does not wrap ErrBadXattrMap", tc.rules, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("ParseXattrMap(%q) error %q does not mention %q", tc.rules, err, w)
			}
		}
	}
}

func TestRootlessDefault(t *testing.T) {
	m := passfs.RootlessDefault()
	if again, err := passfs.ParseXattrMap(passfs.RootlessDefaultRules); err != nil || again == nil {
		t.Fatalf("RootlessDefaultRules does not parse: %v", err)
	}
	checkMap(t, m,
		[]guestCase{
			pass("trusted.overlay.opaque", "user.uvfsd.trusted.overlay.opaque"),
			pass("security.selinux", "user.uvfsd.security.selinux"),
			pass("security.capability", "user.uvfsd.security.capability"),
			pass("user.a", "user.a"),
			pass("system.posix_acl_access", "system.posix_acl_access"),
			pass("system.posix_acl_default", "system.posix_acl_default"),
			refuse("user.uvfsd.trusted.overlay.opaque", syscall.EPERM), // no forging
			refuse("user.uvfsd.x", syscall.EPERM),
		},
		[]hostCase{
			shown("user.uvfsd.trusted.overlay.opaque", "trusted.overlay.opaque"),
			shown("user.uvfsd.security.selinux", "security.selinux"),
			shown("user.a", "user.a"),
			shown("system.posix_acl_access", "system.posix_acl_access"),
			hidden("trusted.overlay.opaque"),             // the host's own, not the guest's
			hidden("security.selinux"),                   // the host's own label
			hidden("user.uvfsd.user.a"),                  // would shadow the real user.a
			hidden("user.uvfsd.system.posix_acl_access"), // would shadow the real ACL
			hidden("user.uvfsd."),                        // would be an empty name
		})
}

// Under the rootless map every name the guest can store reads back as itself
// and every host name the guest sees maps back to the same host name, so the
// guest's view is a consistent file system.
func TestRootlessDefaultRoundTrips(t *testing.T) {
	m := passfs.RootlessDefault()
	for _, name := range probeNames {
		if host, errno := m.ToHost(nil, []byte(name)); errno == 0 {
			back, ok := m.FromHost(nil, host)
			if !ok || string(back) != name {
				t.Errorf("guest %q -> host %q -> guest %q, %v", name, host, back, ok)
			}
		}
		if guest, ok := m.FromHost(nil, []byte(name)); ok {
			back, errno := m.ToHost(nil, guest)
			if errno != 0 || string(back) != name {
				t.Errorf("host %q -> guest %q -> host %q, %v", name, guest, back, errno)
			}
		}
	}
}

func TestFilterList(t *testing.T) {
	m := passfs.RootlessDefault()
	hostList := "user.a\x00trusted.secret\x00user.uvfsd.trusted.overlay.opaque\x00\x00security.selinux\x00system.posix_acl_access\x00user.uvfsd.security.selinux"
	want := "user.a\x00trusted.overlay.opaque\x00system.posix_acl_access\x00security.selinux\x00"
	if got := m.FilterList(nil, []byte(hostList)); string(got) != want {
		t.Errorf("FilterList = %q, want %q", got, want)
	}

	inPlace := []byte(hostList)
	if got := m.FilterList(inPlace[:0], inPlace); string(got) != want {
		t.Errorf("FilterList in place = %q, want %q", got, want)
	}

	prefix := []byte("keep\x00")
	if got := m.FilterList(prefix, []byte("user.b\x00")); string(got) != "keep\x00user.b\x00" {
		t.Errorf("FilterList appending = %q", got)
	}
	if got := m.FilterList(nil, []byte("trusted.a\x00security.b\x00")); len(got) != 0 {
		t.Errorf("FilterList of hidden names = %q, want empty", got)
	}
	var identity *passfs.XattrMap
	if got := identity.FilterList(nil, []byte("a\x00\x00b")); string(got) != "a\x00b\x00" {
		t.Errorf("nil map FilterList = %q", got)
	}
}

func TestXattrNamesChecked(t *testing.T) {
	long := strings.Repeat("u", 256)
	for _, m := range []*passfs.XattrMap{nil, passfs.RootlessDefault(), mustParse(t, ":ok:all:::")} {
		checkMap(t, m,
			[]guestCase{
				refuse("user.a\x00b", syscall.EINVAL), refuse("\x00", syscall.EINVAL), refuse("", syscall.EINVAL),
				refuse("user."+long, syscall.ERANGE), pass("user.a", "user.a"),
			},
			[]hostCase{hidden("user.a\x00b"), hidden(""), shown("user.a", "user.a")})
		if got := m.FilterList(nil, []byte("user.a\x00\x00")); string(got) != "user.a\x00" {
			t.Errorf("FilterList = %q", got)
		}
	}
}

func TestNilXattrMapIsIdentity(t *testing.T) {
	var m *passfs.XattrMap
	checkMap(t, m,
		[]guestCase{pass("trusted.a", "trusted.a"), pass("user.uvfsd.x", "user.uvfsd.x")},
		[]hostCase{shown("security.selinux", "security.selinux")})
	if m.RemappedCapability() != nil || !m.IsCapabilityHost([]byte("security.capability")) || m.IsCapabilityHost([]byte("user.a")) {
		t.Error("nil map: wrong capability answers")
	}
}

func TestCapabilityNames(t *testing.T) {
	tests := []struct {
		rules    string
		remapped string // "" when security.capability keeps its name or is refused
	}{
		{":ok:all:::", ""},
		{":map::user.virtiofs.:", "user.virtiofs.security.capability"},
		{":map:security.:trusted.sec.:", "trusted.sec.security.capability"},
		{":map:security.selinux:trusted.virtiofs.:", ""},
		{"/bad/all/security./security./ /ok/all///", ""},
		{passfs.RootlessDefaultRules, "user.uvfsd.security.capability"},
	}
	for _, tc := range tests {
		m := mustParse(t, tc.rules)
		if got := string(m.RemappedCapability()); got != tc.remapped {
			t.Errorf("%q: RemappedCapability = %q, want %q", tc.rules, got, tc.remapped)
		}
		if !m.IsCapabilityHost([]byte("security.capability")) {
			t.Errorf("%q: security.capability not reported", tc.rules)
		}
		if tc.remapped != "" && !m.IsCapabilityHost([]byte(tc.remapped)) {
			t.Errorf("%q: %q not reported", tc.rules, tc.remapped)
		}
		for _, other := range []string{"user.a", "security.capability2", "user.virtiofs.security.capabilit", ""} {
			if m.IsCapabilityHost([]byte(other)) {
				t.Errorf("%q: %q reported as a capability", tc.rules, other)
			}
		}
	}
}

func TestXattrMapHotPathsDoNotAllocate(t *testing.T) {
	m := passfs.RootlessDefault()
	buf := make([]byte, 0, 512)
	guest := []byte("trusted.overlay.opaque")
	host := []byte("user.uvfsd.trusted.overlay.opaque")
	list := []byte("user.a\x00trusted.x\x00user.uvfsd.trusted.overlay.opaque\x00")
	for name, f := range map[string]func(){
		"ToHost":     func() { buf, _ = m.ToHost(buf[:0], guest) },
		"FromHost":   func() { buf, _ = m.FromHost(buf[:0], host) },
		"FilterList": func() { buf = m.FilterList(buf[:0], list) },
		"IsCapabilityHost": func() {
			if m.IsCapabilityHost(host) {
				t.Error("not a capability")
			}
		},
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s allocates %v times per call", name, n)
		}
	}
}

func FuzzXattrMap(f *testing.F) {
	f.Add(":map::user.virtiofs.:", "user.virtiofs.trusted.x\x00trusted.y\x00")
	f.Add("/prefix/all/trusted./user.virtiofs.//bad/server//trusted.//ok/all///", "trusted.a\x00user.b")
	f.Add(passfs.RootlessDefaultRules, "user.uvfsd.\x00\x00user.uvfsd.user.a\x00")
	f.Add(":unsupported:all:a:b: :bad:all:::", "a\x00b")
	f.Fuzz(func(t *testing.T, rules, names string) {
		m, err := passfs.ParseXattrMap(rules)
		if err != nil {
			return
		}
		list := m.FilterList(nil, []byte(names))
		if len(list) > len(names)+1 {
			t.Fatalf("FilterList grew %q to %q", names, list)
		}
		for _, name := range bytes.Split([]byte(names), []byte{0}) {
			m.ToHost(nil, name)
			if guest, ok := m.FromHost(nil, name); ok && (len(guest) == 0 || bytes.IndexByte(guest, 0) >= 0) {
				t.Fatalf("FromHost(%q) = %q", name, guest)
			}
		}
	})
}
