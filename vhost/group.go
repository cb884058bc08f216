package vhost

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// groupFile is the group database --socket-group names are looked up in.
const groupFile = "/etc/group"

// lookupGroup returns the gid of the group called name in a group(5) file. It reads the file
// itself, as os/user does without cgo, because os/user links cgo in a default build (see
// Listener). Groups that only NSS serves (LDAP, sssd) are not found; a numeric gid names them.
func lookupGroup(path, name string) (int, error) {
	// '#' starts a comment and '+' or '-' a NIS entry: no group has such a name.
	if name == "" || strings.ContainsAny(name[:1], "#+-") || strings.Contains(name, ":") {
		return 0, fmt.Errorf("%q is not a group name", name)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading the group database: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		fields := strings.SplitN(strings.TrimRight(line, "\r\n"), ":", 4) // name:password:gid:members
		if len(fields) < 3 || fields[0] != name {
			continue
		}
		gid, err := strconv.ParseUint(fields[2], 10, 32)
		if err != nil {
			return 0, fmt.Errorf("%s gives group %s the gid %q, which is not a number", path, name, fields[2])
		}
		return int(gid), nil
	}
	return 0, fmt.Errorf("no group %s in %s (a group from NSS, e.g. LDAP or sssd, is found only by its numeric gid)", name, path)
}
