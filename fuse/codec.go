package fuse

import (
	"bytes"
	"syscall"
	"unsafe"
)

// Fixed sizes of the wire structs, checked by a test against the kernel's numbers.
const (
	inHeaderSize  = int(unsafe.Sizeof(InHeader{}))
	outHeaderSize = int(unsafe.Sizeof(OutHeader{}))
)

// Limits on what the guest may send. A request larger than these is refused before it is copied.
const (
	nameMax      = 255   // NAME_MAX and XATTR_NAME_MAX
	pathMax      = 4096  // PATH_MAX, for symlink targets
	xattrSizeMax = 65536 // XATTR_SIZE_MAX
	// maxRequest bounds every request but WRITE, whose payload is never copied: the largest is
	// SETXATTR (header, struct, name, a 64 KiB value) plus request extensions.
	maxRequest = 128 << 10
	// maxReaddir bounds a READDIR reply buffer (the kernel asks for a page or a few; a shorter
	// reply than asked is fine). Each request slot keeps its buffer, so a guest with a ring's
	// worth of READDIRs in flight pins this much per slot.
	maxReaddir = 128 << 10
)

// sizeOf returns the encoded size of a wire struct.
func sizeOf[T any]() int {
	var v T
	return int(unsafe.Sizeof(v))
}

// argAt returns the struct of type T that starts at b[off:], or nil if b is too short. The scratch
// buffers it is used on are 8-byte aligned, and FUSE structs start at multiples of 8 except the
// request extensions, which follow an unpadded name: plain unaligned loads, which amd64 and arm64
// do (nothing here is accessed atomically).
func argAt[T any](b []byte, off int) *T {
	if off < 0 || off+sizeOf[T]() > len(b) {
		return nil
	}
	return (*T)(unsafe.Pointer(&b[off]))
}

// asBytes returns the encoded bytes of a wire struct.
func asBytes[T any](v *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(v)), sizeOf[T]())
}

// cstring splits the NUL-terminated string at the start of b. It returns the string including its
// NUL and the rest, or ok=false when there is no NUL within max+1 bytes.
func cstring(b []byte, max int) (s CString, rest []byte, ok bool) {
	limit := len(b)
	if limit > max+1 {
		limit = max + 1
	}
	i := bytes.IndexByte(b[:limit], 0)
	if i < 0 {
		return nil, nil, false
	}
	return CString(b[:i+1]), b[i+1:], true
}

// checkName validates a file name from the guest: not empty, no '/', and not "." or ".." unless
// dots is set (LOOKUP only).
func checkName(n CString, dots bool) Errno {
	b := n.Bytes()
	if len(b) == 0 {
		return syscall.EINVAL
	}
	if len(b) > nameMax {
		return syscall.ENAMETOOLONG
	}
	if bytes.IndexByte(b, '/') >= 0 {
		return syscall.EINVAL
	}
	if !dots && (n.IsDot() || n.IsDotDot()) {
		return syscall.EINVAL
	}
	return OK
}

// gather copies up to len(dst) bytes from the front of bufs into dst and returns how many.
func gather(dst []byte, bufs [][]byte) int {
	return gatherAt(dst, bufs, 0)
}

// gatherAt copies the bytes from offset off of the concatenation of bufs into dst and returns how
// many it copied.
func gatherAt(dst []byte, bufs [][]byte, off int) int {
	n := 0
	for _, b := range bufs {
		if n == len(dst) {
			break
		}
		if off >= len(b) {
			off -= len(b)
			continue
		}
		n += copy(dst[n:], b[off:])
		off = 0
	}
	return n
}

// scatter copies src into the front of bufs and returns how many bytes fit.
func scatter(bufs [][]byte, src []byte) int {
	n := 0
	for _, b := range bufs {
		if n == len(src) {
			break
		}
		n += copy(b, src[n:])
	}
	return n
}

// totalLen returns the summed length of bufs.
func totalLen(bufs [][]byte) int {
	n := 0
	for _, b := range bufs {
		n += len(b)
	}
	return n
}

// window appends to dst the parts of bufs that cover bytes [off, off+n) and returns it, without
// copying data: the result aliases bufs' memory (guest memory for zero-copy READ and WRITE).
func window(dst, bufs [][]byte, off, n int) [][]byte {
	for _, b := range bufs {
		if n == 0 {
			break
		}
		if off >= len(b) {
			off -= len(b)
			continue
		}
		b = b[off:]
		off = 0
		if len(b) > n {
			b = b[:n]
		}
		dst = append(dst, b)
		n -= len(b)
	}
	return dst
}
