package passfs

import (
	"testing"

	"golang.org/x/sys/unix"
)

// The values containers/storage writes (its TestFormatContainersOverrideXattrDevice) and the
// older three-field form fuse-overlayfs writes must read back as the same guest attributes.
func TestParseOverride(t *testing.T) {
	cases := []struct {
		value    string
		hostType uint32
		want     overrideStat
	}{
		{"1000:1011:0644:file", unix.S_IFREG, overrideStat{uid: 1000, gid: 1011, mode: unix.S_IFREG | 0o644}},
		{"1001:1012:0755:dir", unix.S_IFDIR, overrideStat{uid: 1001, gid: 1012, mode: unix.S_IFDIR | 0o755}},
		{"1002:1013:0777:symlink", unix.S_IFREG, overrideStat{uid: 1002, gid: 1013, mode: unix.S_IFLNK | 0o777}},
		{"1003:1014:0666:pipe", unix.S_IFREG, overrideStat{uid: 1003, gid: 1014, mode: unix.S_IFIFO | 0o666}},
		{"1004:1015:0700:socket", unix.S_IFREG, overrideStat{uid: 1004, gid: 1015, mode: unix.S_IFSOCK | 0o700}},
		{"1005:1016:0600:block-8-1", unix.S_IFREG, overrideStat{uid: 1005, gid: 1016, mode: unix.S_IFBLK | 0o600, major: 8, minor: 1}},
		{"0:0:0600:char-10-11", unix.S_IFREG, overrideStat{mode: unix.S_IFCHR | 0o600, major: 10, minor: 11}},
		{"0:5:4755:file", unix.S_IFREG, overrideStat{gid: 5, mode: unix.S_IFREG | 0o4755}},
		{"7:8:3777:dir", unix.S_IFDIR, overrideStat{uid: 7, gid: 8, mode: unix.S_IFDIR | 0o3777}},
		// Three fields: the host's type.
		{"1000:1000:755", unix.S_IFDIR, overrideStat{uid: 1000, gid: 1000, mode: unix.S_IFDIR | 0o755}},
		{"0:0:4711", unix.S_IFREG, overrideStat{mode: unix.S_IFREG | 0o4711}},
		// Later fields and device parts are for later versions.
		{"1:2:0644:char-1-3-x:more", unix.S_IFREG, overrideStat{uid: 1, gid: 2, mode: unix.S_IFCHR | 0o644, major: 1, minor: 3}},
		// A type the host file cannot stand for is the host's.
		{"1:2:0755:dir", unix.S_IFREG, overrideStat{uid: 1, gid: 2, mode: unix.S_IFREG | 0o755}},
		{"1:2:0755:char-1-3", unix.S_IFDIR, overrideStat{uid: 1, gid: 2, mode: unix.S_IFDIR | 0o755}},
		{"4294967294:4294967294:7777:file", unix.S_IFREG, overrideStat{uid: 1<<32 - 2, gid: 1<<32 - 2, mode: unix.S_IFREG | 0o7777}},
	}
	for _, c := range cases {
		got, ok := parseOverride([]byte(c.value), c.hostType)
		if !ok || got != c.want {
			t.Errorf("parseOverride(%q, %#o) = %+v, %v; want %+v", c.value, c.hostType, got, ok, c.want)
		}
	}
	for _, bad := range []string{"", "1:2", "1:2:", ":2:755", "1::755", "1:2:789", "-1:2:755", "1:2:755:fifo",
		"1:2:755:", "1:2:755:char", "1:2:755:char-1", "1:2:755:block--1", "4294967295:0:755", "0:4294967296:755",
		"1:2:0644:file\x00", " 1:2:755", "99999999999999999999999:1:755"} {
		if got, ok := parseOverride([]byte(bad), unix.S_IFREG); ok {
			t.Errorf("parseOverride(%q) = %+v, want not ok", bad, got)
		}
	}
}

// uvfsd writes exactly containers/storage's format.
func TestFormatOverride(t *testing.T) {
	cases := []struct {
		s    overrideStat
		want string
	}{
		{overrideStat{uid: 1000, gid: 1011, mode: unix.S_IFREG | 0o644}, "1000:1011:0644:file"},
		{overrideStat{uid: 1001, gid: 1012, mode: unix.S_IFDIR | 0o755}, "1001:1012:0755:dir"},
		{overrideStat{uid: 1002, gid: 1013, mode: unix.S_IFLNK | 0o777}, "1002:1013:0777:symlink"},
		{overrideStat{uid: 1003, gid: 1014, mode: unix.S_IFIFO | 0o666}, "1003:1014:0666:pipe"},
		{overrideStat{uid: 1004, gid: 1015, mode: unix.S_IFSOCK | 0o700}, "1004:1015:0700:socket"},
		{overrideStat{uid: 1005, gid: 1016, mode: unix.S_IFBLK | 0o600, major: 8, minor: 1}, "1005:1016:0600:block-8-1"},
		{overrideStat{uid: 1006, gid: 1017, mode: unix.S_IFCHR | 0o600, major: 10, minor: 11}, "1006:1017:0600:char-10-11"},
		{overrideStat{mode: unix.S_IFREG | 0o4755}, "0:0:4755:file"},
		{overrideStat{mode: unix.S_IFREG}, "0:0:0000:file"},
		{overrideStat{uid: 1<<32 - 2, gid: 1<<32 - 2, mode: unix.S_IFBLK | 0o7777, major: 1<<32 - 1, minor: 1<<32 - 1},
			"4294967294:4294967294:7777:block-4294967295-4294967295"},
	}
	for _, c := range cases {
		if got := c.s.String(); got != c.want {
			t.Errorf("format %+v = %q, want %q", c.s, got, c.want)
		}
		host := uint32(unix.S_IFREG)
		if c.s.fileType() == unix.S_IFDIR {
			host = unix.S_IFDIR
		}
		back, ok := parseOverride([]byte(c.want), host)
		if !ok || back != c.s {
			t.Errorf("%q reads back as %+v, %v; want %+v", c.want, back, ok, c.s)
		}
	}
}

func TestFormatOverrideDoesNotAllocate(t *testing.T) {
	s := overrideStat{uid: 1005, gid: 1016, mode: unix.S_IFBLK | 0o600, major: 8, minor: 1}
	var buf [overrideMax]byte
	if allocs := testing.AllocsPerRun(100, func() {
		v := s.format(&buf)
		if _, ok := parseOverride(v, unix.S_IFREG); !ok {
			t.Fatal("not ok")
		}
	}); allocs != 0 {
		t.Errorf("format and parse allocate %.1f times", allocs)
	}
}

// FuzzParseOverride: any value either fails or reads back, after formatting, as itself.
func FuzzParseOverride(f *testing.F) {
	for _, s := range []string{"1000:1011:0644:file", "1:2:0600:char-1-3", "0:0:755", "1:2:7777:block-8-1-9"} {
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, v []byte, dir bool) {
		host := uint32(unix.S_IFREG)
		if dir {
			host = unix.S_IFDIR
		}
		s, ok := parseOverride(v, host)
		if !ok {
			return
		}
		if dir && s.fileType() != unix.S_IFDIR || !dir && s.fileType() == unix.S_IFDIR {
			t.Fatalf("%q on a %#o host file gave type %#o", v, host, s.fileType())
		}
		var buf [overrideMax]byte
		again, ok := parseOverride(s.format(&buf), host)
		if !ok || again != s {
			t.Fatalf("%q: %+v formats as %q, which reads as %+v, %v", v, s, s.format(&buf), again, ok)
		}
	})
}

func TestParseOwnership(t *testing.T) {
	for s, want := range map[string]Ownership{"": OwnershipPassthrough, "passthrough": OwnershipPassthrough, "mapped": OwnershipMapped} {
		if got, err := ParseOwnership(s); err != nil || got != want {
			t.Errorf("ParseOwnership(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := ParseOwnership("mapped-xattr"); err == nil {
		t.Error("ParseOwnership accepted mapped-xattr")
	}
}
