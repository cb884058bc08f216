package vhost

import "errors"

// Reasons a descriptor chain is refused. The guest gets the chain back with 0 bytes written.
var (
	errHeadRange         = errors.New("head descriptor index is not below the queue size")
	errNextRange         = errors.New("next descriptor index is outside its table")
	errChainTooLong      = errors.New("descriptor chain is longer than its table (a loop?)")
	errBufferOutside     = errors.New("descriptor buffer is not inside one guest memory region")
	errIndirectOff       = errors.New("indirect descriptor but VIRTIO_RING_F_INDIRECT_DESC was not negotiated")
	errIndirectNested    = errors.New("indirect descriptor inside an indirect table")
	errIndirectWithNext  = errors.New("indirect descriptor also has the NEXT flag")
	errIndirectLength    = errors.New("indirect table length is zero, not a multiple of 16 or larger than the queue")
	errReadAfterWritable = errors.New("device-readable descriptor follows a device-writable one")
)

// walkChain appends the buffers of the chain starting at head to in (device-readable) and out
// (device-writable) and returns the grown slices. desc is the ring's descriptor table of size
// entries. Every step is bounded: at most size descriptors in the ring and size in one indirect
// table, so a cyclic chain ends with errChainTooLong instead of looping forever.
func walkChain(mem *memTable, desc []byte, size int, head uint16, indirectOK bool, in, out [][]byte) ([][]byte, [][]byte, error) {
	if int(head) >= size || len(desc) < size*descSize {
		return in, out, errHeadRange
	}
	table, entries := desc, size
	i, steps, inIndirect := int(head), 0, false
	for {
		if steps >= entries {
			return in, out, errChainTooLong
		}
		steps++
		d := readDesc(table, i)
		if d.flags&descFlagIndirect != 0 {
			switch {
			case !indirectOK:
				return in, out, errIndirectOff
			case inIndirect:
				return in, out, errIndirectNested
			case d.flags&descFlagNext != 0:
				return in, out, errIndirectWithNext
			case d.len == 0 || d.len%descSize != 0 || int(d.len/descSize) > size:
				return in, out, errIndirectLength
			}
			t, ok := mem.guest(d.addr, uint64(d.len))
			if !ok {
				return in, out, errBufferOutside
			}
			table, entries = t, int(d.len/descSize)
			i, steps, inIndirect = 0, 0, true
			continue
		}
		buf, ok := mem.guest(d.addr, uint64(d.len))
		if !ok {
			return in, out, errBufferOutside
		}
		if d.flags&descFlagWrite != 0 {
			out = append(out, buf)
		} else {
			if len(out) > 0 {
				return in, out, errReadAfterWritable
			}
			in = append(in, buf)
		}
		if d.flags&descFlagNext == 0 {
			return in, out, nil
		}
		if int(d.next) >= entries {
			return in, out, errNextRange
		}
		i = int(d.next)
	}
}
