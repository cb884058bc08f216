package main

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// walk goes through a tree the way find(1) does and checks what busybox
// find cannot:
//   - every directory entry has a d_type, and it matches lstat's file type
//     (overlayfs needs valid d_type from its upper file system);
//   - no directory has the (st_dev, st_ino) of one of its ancestors, neither
//     by lstat of its entry nor by fstat once opened (entering a submount
//     mounts it): GNU find reports that as "File system loop detected";
//   - no two non-directories with one link share (st_dev, st_ino). Such
//     "aliases" are reported but are not an error: they are what a guest
//     sees when submounts are not announced.
//
// It prints one line per problem and a summary line
//
//	walk DIR: N dirs, N files, N loops, N d_type errors, N aliases, N errors
//
// and fails if there was a loop, a d_type error or any other error.
func walk(root string) error {
	w := walker{seen: map[devIno]string{}}
	w.dir(root, nil)
	fmt.Printf("walk %s: %d dirs, %d files, %d loops, %d d_type errors, %d aliases, %d errors\n",
		root, w.dirs, w.files, w.loops, w.dtypeErrs, w.aliases, w.errs)
	if w.loops+w.dtypeErrs+w.errs > 0 {
		return fmt.Errorf("walk %s found problems", root)
	}
	return nil
}

type devIno struct{ dev, ino uint64 }

type walker struct {
	seen                                         map[devIno]string // non-directories with one link
	dirs, files, loops, dtypeErrs, aliases, errs int
}

func (w *walker) problem(counter *int, format string, a ...any) {
	*counter++
	fmt.Printf("walk: "+format+"\n", a...)
}

// dir walks the directory at path; ancestors are the identities of the
// directories above it.
func (w *walker) dir(path string, ancestors []devIno) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		w.problem(&w.errs, "open %s: %v", path, err)
		return
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		w.problem(&w.errs, "fstat %s: %v", path, err)
		return
	}
	self := devIno{st.Dev, st.Ino}
	for _, a := range ancestors {
		if a == self {
			w.problem(&w.loops, "%s: File system loop detected (dev %d ino %d is an ancestor's)", path, self.dev, self.ino)
			return
		}
	}
	w.dirs++
	ancestors = append(ancestors, self)
	buf := make([]byte, 32<<10)
	var subdirs []string
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			w.problem(&w.errs, "getdents %s: %v", path, err)
			return
		}
		if n == 0 {
			break
		}
		for b := buf[:n]; len(b) >= 19; {
			reclen := int(binary.NativeEndian.Uint16(b[16:]))
			if reclen < 19 || reclen > len(b) {
				w.problem(&w.errs, "getdents %s: bad record length %d", path, reclen)
				return
			}
			dtype := b[18]
			name := b[19:reclen]
			for i, c := range name {
				if c == 0 {
					name = name[:i]
					break
				}
			}
			b = b[reclen:]
			if string(name) == "." || string(name) == ".." {
				continue
			}
			child := path + "/" + string(name)
			if w.entry(child, dtype, ancestors) {
				subdirs = append(subdirs, child)
			}
		}
	}
	for _, d := range subdirs {
		w.dir(d, ancestors)
	}
}

// entry checks one directory entry and reports whether to descend into it.
func (w *walker) entry(path string, dtype byte, ancestors []devIno) bool {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		w.problem(&w.errs, "lstat %s: %v", path, err)
		return false
	}
	want := byte((st.Mode & unix.S_IFMT) >> 12) // DT_* is S_IFMT >> 12
	if dtype != want {
		w.problem(&w.dtypeErrs, "%s: d_type %d, lstat says %d", path, dtype, want)
	}
	id := devIno{st.Dev, st.Ino}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		for _, a := range ancestors {
			if a == id {
				w.problem(&w.loops, "%s: File system loop detected (lstat: dev %d ino %d is an ancestor's)", path, id.dev, id.ino)
				return false
			}
		}
		return true
	}
	w.files++
	if st.Nlink == 1 {
		if other, ok := w.seen[id]; ok {
			w.problem(&w.aliases, "alias: %s has the dev %d ino %d of %s", path, id.dev, id.ino, other)
		} else {
			w.seen[id] = path
		}
	}
	return false
}
