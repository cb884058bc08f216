package userns

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// userName finds uid's login name in a passwd file, or "" when it has
// none; /etc/subuid may name the user either way. It parses the file
// itself because os/user would link cgo (see the package comment).
func userName(passwdPath string, uid uint32) string {
	f, err := os.Open(passwdPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	want := strconv.FormatUint(uint64(uid), 10)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) >= 3 && fields[2] == want {
			return fields[0]
		}
	}
	return ""
}
