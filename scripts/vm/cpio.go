package vm

import (
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// CpioWriter writes the SVR4 "newc" cpio format the kernel unpacks as an
// initramfs. It is written here so building a guest needs no external cpio.
type CpioWriter struct {
	w       io.Writer
	nextIno uint32
	err     error

	rdevMajor, rdevMinor uint32 // device numbers of the entry being written
}

// NewCpioWriter returns a writer that appends entries to w. Call Close to
// write the trailer.
func NewCpioWriter(w io.Writer) *CpioWriter {
	return &CpioWriter{w: w, nextIno: 1}
}

const (
	cpioMagic      = "070701"
	cpioHeaderSize = 110 // magic + 13 fields of 8 hex digits
	cpioTrailer    = "TRAILER!!!"
)

// Dir adds a directory with the given permission bits.
func (c *CpioWriter) Dir(name string, perm fs.FileMode) error {
	return c.entry(name, 0o040000|uint32(perm.Perm()), nil)
}

// File adds a regular file with the given permission bits and contents.
func (c *CpioWriter) File(name string, perm fs.FileMode, data []byte) error {
	return c.entry(name, 0o100000|uint32(perm.Perm()), data)
}

// Symlink adds a symbolic link name pointing at target.
func (c *CpioWriter) Symlink(name, target string) error {
	return c.entry(name, 0o120777, []byte(target))
}

// CharDev adds a character device node; the kernel needs /dev/console in
// the initramfs to give init its standard streams before devtmpfs is mounted.
func (c *CpioWriter) CharDev(name string, perm fs.FileMode, major, minor uint32) error {
	c.rdevMajor, c.rdevMinor = major, minor
	defer func() { c.rdevMajor, c.rdevMinor = 0, 0 }()
	return c.entry(name, 0o020000|uint32(perm.Perm()), nil)
}

// Close writes the trailer entry. It does not close the underlying writer.
func (c *CpioWriter) Close() error {
	if c.err != nil {
		return c.err
	}
	return c.writeEntry(cpioTrailer, 0, nil)
}

func (c *CpioWriter) entry(name string, mode uint32, data []byte) error {
	if c.err != nil {
		return c.err
	}
	name = strings.TrimPrefix(name, "/")
	if name == "" || name == cpioTrailer || strings.ContainsRune(name, 0) {
		return fmt.Errorf("cpio: invalid entry name %q", name)
	}
	c.err = c.writeEntry(name, mode, data)
	return c.err
}

func (c *CpioWriter) writeEntry(name string, mode uint32, data []byte) error {
	ino := uint32(0)
	nlink := uint32(0)
	if name != cpioTrailer {
		ino = c.nextIno
		c.nextIno++
		nlink = 1
		if mode&0o170000 == 0o040000 {
			nlink = 2
		}
	}
	if uint64(len(data)) > 0xffffffff {
		return fmt.Errorf("cpio: %s is larger than 4 GiB", name)
	}
	fields := []uint32{
		ino, mode, 0 /* uid */, 0 /* gid */, nlink, 0, /* mtime */
		uint32(len(data)), 0, 0, c.rdevMajor, c.rdevMinor, /* dev and rdev major/minor */
		uint32(len(name) + 1), 0, /* check */
	}
	var hdr strings.Builder
	hdr.Grow(cpioHeaderSize + len(name) + 4)
	hdr.WriteString(cpioMagic)
	for _, f := range fields {
		fmt.Fprintf(&hdr, "%08x", f)
	}
	hdr.WriteString(name)
	hdr.WriteByte(0)
	hdr.WriteString(padding(cpioHeaderSize + len(name) + 1))
	if _, err := io.WriteString(c.w, hdr.String()); err != nil {
		return fmt.Errorf("cpio: write header of %s: %w", name, err)
	}
	if _, err := c.w.Write(data); err != nil {
		return fmt.Errorf("cpio: write data of %s: %w", name, err)
	}
	if _, err := io.WriteString(c.w, padding(len(data))); err != nil {
		return fmt.Errorf("cpio: write padding of %s: %w", name, err)
	}
	return nil
}

// padding returns the NUL bytes that align n to the format's 4-byte boundary.
func padding(n int) string {
	return strings.Repeat("\x00", (4-n%4)%4)
}
