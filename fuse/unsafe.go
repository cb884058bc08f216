package fuse

import "unsafe"

// asBytesSlice views a []uint64 as bytes, to get 8-byte aligned byte buffers.
func asBytesSlice(w []uint64) []byte {
	if len(w) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&w[0])), len(w)*8)
}
