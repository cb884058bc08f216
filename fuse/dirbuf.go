package fuse

import "unsafe"

const (
	direntSize     = int(unsafe.Sizeof(Dirent{}))
	direntPlusSize = int(unsafe.Sizeof(EntryOut{})) + direntSize
)

// DirBuffer collects READDIR or READDIRPLUS entries into a reply of at most the size the guest
// asked for. The server owns the memory; file systems only add entries.
type DirBuffer struct {
	buf  []byte
	n    int
	plus bool
}

// Reset prepares the buffer for a reply of at most size bytes, reusing its memory.
func (d *DirBuffer) Reset(size int, plus bool) {
	if cap(d.buf) < size {
		d.buf = make([]byte, size)
	}
	d.buf = d.buf[:size]
	d.n = 0
	d.plus = plus
}

func align8(n int) int { return (n + 7) &^ 7 }

// entrySize is the space one entry with a name of nameLen bytes takes.
func (d *DirBuffer) entrySize(nameLen int) int {
	if d.plus {
		return align8(direntPlusSize + nameLen)
	}
	return align8(direntSize + nameLen)
}

// Fits reports whether an entry with a name of nameLen bytes still fits. READDIRPLUS callers check
// this before looking the entry up, so that no lookup is counted for an entry that is not sent.
func (d *DirBuffer) Fits(nameLen int) bool { return d.n+d.entrySize(nameLen) <= len(d.buf) }

// Empty reports whether no entry was added yet.
func (d *DirBuffer) Empty() bool { return d.n == 0 }

// Add appends an entry. off is the offset of the next entry (what the guest passes back to continue
// after this one), typ the file type (DT_*). entry is used only for READDIRPLUS and may be nil there
// for an entry with no node (NodeID 0, e.g. "." and ".."). It returns false if the entry does not fit.
func (d *DirBuffer) Add(ino, off uint64, typ uint32, name []byte, entry *EntryOut) bool {
	size := d.entrySize(len(name))
	if d.n+size > len(d.buf) {
		return false
	}
	p := d.buf[d.n : d.n+size]
	clear(p)
	if d.plus {
		if entry != nil {
			*(*EntryOut)(unsafe.Pointer(&p[0])) = *entry
		}
		p = p[int(unsafe.Sizeof(EntryOut{})):]
	}
	*(*Dirent)(unsafe.Pointer(&p[0])) = Dirent{Ino: ino, Off: off, Namelen: uint32(len(name)), Type: typ}
	copy(p[direntSize:], name)
	d.n += size
	return true
}

// Bytes returns the encoded entries.
func (d *DirBuffer) Bytes() []byte { return d.buf[:d.n] }
