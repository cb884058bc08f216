package userns

// Paths are the files Enter consults. Tests point them at fakes.
type Paths struct {
	MaxUserNamespaces       string // 0 disables user namespaces
	UnprivilegedUsernsClone string // Debian/Ubuntu kernels: 0 disables them for non-root
	AppArmorRestrict        string // Ubuntu 24.04: 1 denies capabilities inside
	SubUID, SubGID          string
	Passwd                  string // to find the user's name for /etc/subuid
	NewUIDMap, NewGIDMap    string // a bare name is searched in PATH, then /usr/bin
	Proc                    string // procfs root: Proc/self/uid_map, Proc/PID/uid_map
}

// DefaultPaths are the real system files.
func DefaultPaths() Paths {
	return Paths{
		MaxUserNamespaces:       "/proc/sys/user/max_user_namespaces",
		UnprivilegedUsernsClone: "/proc/sys/kernel/unprivileged_userns_clone",
		AppArmorRestrict:        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
		SubUID:                  "/etc/subuid",
		SubGID:                  "/etc/subgid",
		Passwd:                  "/etc/passwd",
		NewUIDMap:               "newuidmap",
		NewGIDMap:               "newgidmap",
		Proc:                    "/proc",
	}
}
