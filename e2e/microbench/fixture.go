package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// The fixture every target serves: the same names and sizes, so a FUSE
// request and its direct-syscall counterpart touch the same kind of file.
const (
	fixtureDir    = "bench" // everything lives here
	readFile      = "file"  // 1 MiB, read by READ and looked up by LOOKUP/GETATTR
	writeFile     = "wfile" // 1 MiB, overwritten by WRITE
	listDir       = "dir"   // dirEntries small files: READDIRPLUS
	createDir     = "new"   // CREATE makes files here
	coldDir       = "cold"  // coldDirs directories of dirEntries files: READDIRPLUS cold
	coldDirs      = 64      // listed in turn; a directory's entries are forgotten after each listing
	dirEntries    = 20      // fit one 4 KiB READDIRPLUS reply (~160 bytes each)
	readdirSize   = 4096    // the guest asks for a page per READDIRPLUS
	largeIOSize   = 1 << 20 // the guest's max_write / max read
	smallIOSize   = 4096    //
	fixtureFileSz = 1 << 20 //
	fixtureMode   = os.FileMode(0o755)
)

// makeFixture fills share with the fixture, owned by uid:gid when chown.
func makeFixture(share string, chown bool, uid, gid int) error {
	base := filepath.Join(share, fixtureDir)
	data := make([]byte, fixtureFileSz)
	for i := range data {
		data[i] = byte(i)
	}
	var paths []string
	add := func(p string, err error) error {
		if err != nil {
			return fmt.Errorf("benchmark fixture: %w", err)
		}
		paths = append(paths, p)
		return nil
	}
	dirs := []string{base, filepath.Join(base, listDir), filepath.Join(base, createDir), filepath.Join(base, coldDir)}
	for i := range coldDirs {
		dirs = append(dirs, filepath.Join(base, coldDir, coldName(i)))
	}
	for _, d := range dirs {
		if err := add(d, os.Mkdir(d, fixtureMode)); err != nil {
			return err
		}
	}
	for _, f := range []string{readFile, writeFile} {
		p := filepath.Join(base, f)
		if err := add(p, os.WriteFile(p, data, 0o644)); err != nil {
			return err
		}
	}
	for _, dir := range append([]string{filepath.Join(base, listDir)}, dirs[4:]...) {
		for i := range dirEntries {
			p := filepath.Join(dir, fmt.Sprintf("entry-%02d", i))
			if err := add(p, os.WriteFile(p, data[:100], 0o644)); err != nil {
				return err
			}
		}
	}
	if chown {
		for _, p := range paths {
			if err := os.Lchown(p, uid, gid); err != nil {
				return fmt.Errorf("benchmark fixture: %w", err)
			}
		}
	}
	return nil
}

// coldName is the name of cold directory i under coldDir.
func coldName(i int) string { return fmt.Sprintf("d%02d", i) }
