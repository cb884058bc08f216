package vhost_test

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/uvfsd/uvfsd/vhost"
	"github.com/uvfsd/uvfsd/vhost/frontend"
	"golang.org/x/sys/unix"
)

const smallMem = 256 << 10

// badChain builds a malformed chain in f and returns the head to publish.
type badChain func(t *testing.T, f *frontend.Frontend) uint16

func buf(t *testing.T, f *frontend.Frontend, n int) uint64 {
	t.Helper()
	gpa, _, err := f.Alloc(n)
	if err != nil {
		t.Fatal(err)
	}
	return gpa
}

// indirectTable writes entries into a fresh table and returns its address.
func indirectTable(t *testing.T, f *frontend.Frontend, entries ...frontend.Desc) uint64 {
	t.Helper()
	table := buf(t, f, 16*len(entries))
	for i, d := range entries {
		f.WriteDesc(table+uint64(16*i), d)
	}
	return table
}

func TestMalformedChainsAreReturnedEmpty(t *testing.T) {
	const qsize = 8
	end := frontend.GuestBase + smallMem
	cases := map[string]badChain{
		"loop of two": func(t *testing.T, f *frontend.Frontend) uint16 {
			b := buf(t, f, 8)
			f.SetDesc(1, 0, frontend.Desc{Addr: b, Len: 8, Flags: frontend.DescNext, Next: 1})
			f.SetDesc(1, 1, frontend.Desc{Addr: b, Len: 8, Flags: frontend.DescNext, Next: 0})
			return 0
		},
		"self loop": func(t *testing.T, f *frontend.Frontend) uint16 {
			f.SetDesc(1, 3, frontend.Desc{Addr: buf(t, f, 8), Len: 8, Flags: frontend.DescWrite | frontend.DescNext, Next: 3})
			return 3
		},
		"chain longer than the ring": func(t *testing.T, f *frontend.Frontend) uint16 {
			b := buf(t, f, 8)
			for i := 0; i < qsize; i++ { // every index used once, then back to the start
				f.SetDesc(1, i, frontend.Desc{Addr: b, Len: 8, Flags: frontend.DescNext, Next: uint16((i + 1) % qsize)})
			}
			return 0
		},
		"next out of range": func(t *testing.T, f *frontend.Frontend) uint16 {
			f.SetDesc(1, 0, frontend.Desc{Addr: buf(t, f, 8), Len: 8, Flags: frontend.DescNext, Next: 200})
			return 0
		},
		"head out of range": func(t *testing.T, f *frontend.Frontend) uint16 { return 100 },
		"address past the end of memory": func(t *testing.T, f *frontend.Frontend) uint16 {
			f.SetDesc(1, 0, frontend.Desc{Addr: end, Len: 16, Flags: frontend.DescWrite})
			return 0
		},
		"address below memory": func(t *testing.T, f *frontend.Frontend) uint16 {
			f.SetDesc(1, 0, frontend.Desc{Addr: 0x1000, Len: 16})
			return 0
		},
		"buffer straddling the end": func(t *testing.T, f *frontend.Frontend) uint16 {
			f.SetDesc(1, 0, frontend.Desc{Addr: end - 8, Len: 16, Flags: frontend.DescWrite})
			return 0
		},
		"addr plus len overflows": func(t *testing.T, f *frontend.Frontend) uint16 {
			f.SetDesc(1, 0, frontend.Desc{Addr: 0xffff_ffff_ffff_fff0, Len: 0x100, Flags: frontend.DescWrite})
			return 0
		},
		"readable after writable": func(t *testing.T, f *frontend.Frontend) uint16 {
			b := buf(t, f, 8)
			f.SetDesc(1, 0, frontend.Desc{Addr: b, Len: 8, Flags: frontend.DescWrite | frontend.DescNext, Next: 1})
			f.SetDesc(1, 1, frontend.Desc{Addr: b, Len: 8})
			return 0
		},
		"zero-length indirect table": func(t *testing.T, f *frontend.Frontend) uint16 {
			f.SetDesc(1, 0, frontend.Desc{Addr: buf(t, f, 16), Len: 0, Flags: frontend.DescIndirect})
			return 0
		},
		"indirect length not a multiple of 16": func(t *testing.T, f *frontend.Frontend) uint16 {
			f.SetDesc(1, 0, frontend.Desc{Addr: buf(t, f, 32), Len: 24, Flags: frontend.DescIndirect})
			return 0
		},
		"indirect table larger than the queue": func(t *testing.T, f *frontend.Frontend) uint16 {
			f.SetDesc(1, 0, frontend.Desc{Addr: buf(t, f, 16*(qsize+1)), Len: 16 * (qsize + 1), Flags: frontend.DescIndirect})
			return 0
		},
		"indirect table outside memory": func(t *testing.T, f *frontend.Frontend) uint16 {
			f.SetDesc(1, 0, frontend.Desc{Addr: end - 16, Len: 32, Flags: frontend.DescIndirect})
			return 0
		},
		"nested indirect": func(t *testing.T, f *frontend.Frontend) uint16 {
			inner := indirectTable(t, f, frontend.Desc{Addr: buf(t, f, 8), Len: 8, Flags: frontend.DescWrite})
			outer := indirectTable(t, f, frontend.Desc{Addr: inner, Len: 16, Flags: frontend.DescIndirect})
			f.SetDesc(1, 0, frontend.Desc{Addr: outer, Len: 16, Flags: frontend.DescIndirect})
			return 0
		},
		"indirect with next": func(t *testing.T, f *frontend.Frontend) uint16 {
			table := indirectTable(t, f, frontend.Desc{Addr: buf(t, f, 8), Len: 8, Flags: frontend.DescWrite})
			f.SetDesc(1, 0, frontend.Desc{Addr: table, Len: 16, Flags: frontend.DescIndirect | frontend.DescNext, Next: 1})
			f.SetDesc(1, 1, frontend.Desc{Addr: buf(t, f, 8), Len: 8, Flags: frontend.DescWrite})
			return 0
		},
		"loop inside an indirect table": func(t *testing.T, f *frontend.Frontend) uint16 {
			b := buf(t, f, 8)
			table := indirectTable(t, f,
				frontend.Desc{Addr: b, Len: 8, Flags: frontend.DescNext, Next: 1},
				frontend.Desc{Addr: b, Len: 8, Flags: frontend.DescNext, Next: 0})
			f.SetDesc(1, 0, frontend.Desc{Addr: table, Len: 32, Flags: frontend.DescIndirect})
			return 0
		},
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			h := &echo{}
			hs := start(t, vhost.Config{}, h, frontend.Options{MemSize: smallMem, QueueSize: qsize, Indirect: true})
			head := build(t, hs.f)
			hs.f.Publish(1, head)
			if err := hs.f.Kick(1); err != nil {
				t.Fatal(err)
			}
			e, err := hs.f.WaitUsed(1, 5*time.Second)
			if err != nil {
				t.Fatalf("malformed chain never came back: %v", err)
			}
			if e.ID != uint32(head) || e.Len != 0 {
				t.Fatalf("used entry %+v, want id %d with 0 bytes", e, head)
			}
			if h.served[1].Load() != 0 {
				t.Fatal("malformed chain reached the handler")
			}
			if hs.logs.count() == 0 {
				t.Error("malformed chain was not logged")
			}
			hs.mustEcho(1, "still usable")
		})
	}
}

func TestIndirectRefusedWhenNotNegotiated(t *testing.T) {
	h := &echo{}
	hs := start(t, vhost.Config{}, h, frontend.Options{MemSize: smallMem, QueueSize: 8})
	table := indirectTable(t, hs.f, frontend.Desc{Addr: buf(t, hs.f, 8), Len: 8, Flags: frontend.DescWrite})
	hs.f.SetDesc(1, 0, frontend.Desc{Addr: table, Len: 16, Flags: frontend.DescIndirect})
	hs.f.Publish(1, 0)
	hs.f.Kick(1)
	if e, err := hs.f.WaitUsed(1, 5*time.Second); err != nil || e.Len != 0 {
		t.Fatalf("used %+v, %v; want 0 bytes", e, err)
	}
	if h.served[1].Load() != 0 {
		t.Fatal("indirect chain served without VIRTIO_RING_F_INDIRECT_DESC")
	}
}

func TestAvailIndexJumpBreaksOnlyThatRing(t *testing.T) {
	hs := start(t, vhost.Config{}, &echo{}, frontend.Options{MemSize: smallMem, QueueSize: 8})
	hs.f.SetAvailIdx(1, 100) // 100 new entries in a ring of 8
	hs.f.Kick(1)
	deadline := time.Now().Add(5 * time.Second)
	for !hs.logs.contains("stopping the queue") {
		if time.Now().After(deadline) {
			t.Fatal("impossible avail index was not detected")
		}
		time.Sleep(5 * time.Millisecond)
	}
	hs.mustEcho(0, "other ring works")
	if _, err := hs.f.GetVringBase(1); err != nil {
		t.Fatalf("GET_VRING_BASE on a broken ring: %v", err)
	}
}

func u64(v uint64) []byte {
	p := make([]byte, 8)
	binary.LittleEndian.PutUint64(p, v)
	return p
}

func vringState(index, num uint32) []byte {
	p := make([]byte, 8)
	binary.LittleEndian.PutUint32(p[0:], index)
	binary.LittleEndian.PutUint32(p[4:], num)
	return p
}

func memTable(regions ...vhost.MemRegion) []byte {
	p := make([]byte, 8+vhost.MemRegionSize*len(regions))
	binary.LittleEndian.PutUint32(p, uint32(len(regions)))
	for i, r := range regions {
		r.Encode(p[8+i*vhost.MemRegionSize:])
	}
	return p
}

func eventfd(t *testing.T) int {
	t.Helper()
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// TestRefusedMessagesLeaveTheDeviceUsable sends well-framed but invalid requests: each must get a
// failure REPLY_ACK, change nothing, and leave both rings working.
func TestRefusedMessagesLeaveTheDeviceUsable(t *testing.T) {
	type msg struct {
		req     uint32
		payload func(f *frontend.Frontend) []byte
		fds     func(t *testing.T, f *frontend.Frontend) []int
	}
	fixed := func(p []byte) func(*frontend.Frontend) []byte { return func(*frontend.Frontend) []byte { return p } }
	oneFD := func(t *testing.T, f *frontend.Frontend) []int { return []int{eventfd(t)} }
	ringAddr := func(mut func(a *vhost.VringAddr)) func(f *frontend.Frontend) []byte {
		return func(f *frontend.Frontend) []byte {
			base := f.UserAddr(frontend.GuestBase)
			a := vhost.VringAddr{Index: 1, Desc: base, Avail: base + 4096, Used: base + 8192}
			mut(&a)
			p := make([]byte, vhost.VringAddrSize)
			a.Encode(p)
			return p
		}
	}
	cases := map[string]msg{
		"SET_VRING_NUM not power of two":  {req: vhost.ReqSetVringNum, payload: fixed(vringState(1, 3))},
		"SET_VRING_NUM too large":         {req: vhost.ReqSetVringNum, payload: fixed(vringState(1, 65536))},
		"SET_VRING_NUM zero":              {req: vhost.ReqSetVringNum, payload: fixed(vringState(1, 0))},
		"SET_VRING_NUM ring outgrows mem": {req: vhost.ReqSetVringNum, payload: fixed(vringState(1, 32768))},
		"SET_VRING_NUM short payload":     {req: vhost.ReqSetVringNum, payload: fixed([]byte{1, 0, 0, 0})},
		"SET_VRING_BASE too large":        {req: vhost.ReqSetVringBase, payload: fixed(vringState(1, 70000))},
		"SET_VRING_ENABLE value 2":        {req: vhost.ReqSetVringEnable, payload: fixed(vringState(1, 2))},
		"SET_VRING_ADDR outside memory": {req: vhost.ReqSetVringAddr, payload: ringAddr(func(a *vhost.VringAddr) {
			a.Used = a.Desc + smallMem - 8
		})},
		"SET_VRING_ADDR below memory":    {req: vhost.ReqSetVringAddr, payload: ringAddr(func(a *vhost.VringAddr) { a.Desc = 0 })},
		"SET_VRING_ADDR misaligned used": {req: vhost.ReqSetVringAddr, payload: ringAddr(func(a *vhost.VringAddr) { a.Used += 2 })},
		"SET_VRING_CALL unknown bits":    {req: vhost.ReqSetVringCall, payload: fixed(u64(1 | 1<<20)), fds: oneFD},
		"SET_VRING_CALL fd with no-fd":   {req: vhost.ReqSetVringCall, payload: fixed(u64(1 | vhost.VringFdNoFD)), fds: oneFD},
		"SET_VRING_KICK missing fd":      {req: vhost.ReqSetVringKick, payload: fixed(u64(1))},
		"SET_OWNER with an fd":           {req: vhost.ReqSetOwner, payload: fixed(nil), fds: oneFD},
		"SET_FEATURES not offered":       {req: vhost.ReqSetFeatures, payload: fixed(u64(vhost.FeatureVersion1 | 1<<40))},
		"SET_PROTOCOL_FEATURES unknown":  {req: vhost.ReqSetProtocolFeatures, payload: fixed(u64(1 << 50))},
		"SET_MEM_TABLE zero regions":     {req: vhost.ReqSetMemTable, payload: fixed(memTable())},
		"SET_MEM_TABLE fd count mismatch": {req: vhost.ReqSetMemTable, payload: func(f *frontend.Frontend) []byte {
			r := f.Region()
			r2 := r
			r2.GuestAddr += r.Size
			r2.UserAddr += r.Size
			return memTable(r, r2)
		}, fds: func(t *testing.T, f *frontend.Frontend) []int { return []int{f.MemFD()} }},
		"SET_MEM_TABLE region bigger than file": {req: vhost.ReqSetMemTable, payload: func(f *frontend.Frontend) []byte {
			r := f.Region()
			r.Size *= 4
			return memTable(r)
		}, fds: func(t *testing.T, f *frontend.Frontend) []int { return []int{f.MemFD()} }},
		"SET_MEM_TABLE wrapping region": {req: vhost.ReqSetMemTable, payload: func(f *frontend.Frontend) []byte {
			r := f.Region()
			r.GuestAddr = 1<<64 - 4096
			return memTable(r)
		}, fds: func(t *testing.T, f *frontend.Frontend) []int { return []int{f.MemFD()} }},
		"ADD_MEM_REG without fd": {req: vhost.ReqAddMemReg, payload: func(f *frontend.Frontend) []byte {
			p := make([]byte, 8+vhost.MemRegionSize)
			f.Region().Encode(p[8:])
			return p
		}},
		"SET_CONFIG":               {req: vhost.ReqSetConfig, payload: fixed(make([]byte, vhost.ConfigHeaderSize+4))},
		"SET_CONFIG size mismatch": {req: vhost.ReqSetConfig, payload: fixed(make([]byte, vhost.ConfigHeaderSize+4)[:13])},
		"unknown request":          {req: 99, payload: fixed(u64(0))},
		"SET_LOG_BASE":             {req: vhost.ReqSetLogBase, payload: fixed(make([]byte, 16)), fds: oneFD},
	}
	for name, m := range cases {
		t.Run(name, func(t *testing.T) {
			hs := start(t, vhost.Config{}, &echo{}, frontend.Options{MemSize: smallMem, QueueSize: 8})
			var fds []int
			if m.fds != nil {
				fds = m.fds(t, hs.f)
			}
			if _, err := hs.f.Request(m.req, m.payload(hs.f), fds); err == nil {
				t.Fatal("back-end accepted the request")
			}
			hs.mustEcho(0, "queue 0 works")
			hs.mustEcho(1, "queue 1 works")
		})
	}
}

// TestBrokenFramingClosesTheConnection sends messages the back-end cannot answer or parse: it must
// drop the connection (ServeConn returns an error) rather than hang or crash.
func TestBrokenFramingClosesTheConnection(t *testing.T) {
	header := func(req, flags, size uint32) []byte {
		b := make([]byte, vhost.HeaderSize)
		vhost.Header{Request: req, Flags: flags, Size: size}.Encode(b)
		return b
	}
	cases := map[string]func(t *testing.T, f *frontend.Frontend) error{
		"GET_VRING_BASE bad queue": func(t *testing.T, f *frontend.Frontend) error {
			return f.Send(vhost.ReqGetVringBase, vhost.FlagVersion, vringState(vhost.MaxRequestQueues+1, 0), nil)
		},
		"SET_VRING_ENABLE bad queue": func(t *testing.T, f *frontend.Frontend) error {
			return f.Send(vhost.ReqSetVringEnable, vhost.FlagVersion, vringState(1<<31, 1), nil)
		},
		"GET_FEATURES with payload": func(t *testing.T, f *frontend.Frontend) error {
			return f.Send(vhost.ReqGetFeatures, vhost.FlagVersion, u64(0), nil)
		},
		"GET_CONFIG short": func(t *testing.T, f *frontend.Frontend) error {
			return f.Send(vhost.ReqGetConfig, vhost.FlagVersion, []byte{1, 2, 3}, nil)
		},
		"bad version": func(t *testing.T, f *frontend.Frontend) error {
			return f.Send(vhost.ReqSetOwner, 2, nil, nil)
		},
		"huge size field": func(t *testing.T, f *frontend.Frontend) error {
			return f.SendBytes(header(vhost.ReqSetFeatures, vhost.FlagVersion, 1<<30), nil)
		},
		"nine fds": func(t *testing.T, f *frontend.Frontend) error {
			fds := make([]int, 9)
			for i := range fds {
				fds[i] = eventfd(t)
			}
			return f.Send(vhost.ReqSetOwner, vhost.FlagVersion, nil, fds)
		},
		"truncated payload then hang-up": func(t *testing.T, f *frontend.Frontend) error {
			b := append(header(vhost.ReqSetVringAddr, vhost.FlagVersion, vhost.VringAddrSize), make([]byte, 8)...)
			if err := f.SendBytes(b, nil); err != nil {
				return err
			}
			time.Sleep(50 * time.Millisecond)
			return f.Close()
		},
		"truncated header then hang-up": func(t *testing.T, f *frontend.Frontend) error {
			if err := f.SendBytes(header(vhost.ReqSetOwner, vhost.FlagVersion, 0)[:5], nil); err != nil {
				return err
			}
			time.Sleep(50 * time.Millisecond)
			return f.Close()
		},
	}
	for name, send := range cases {
		t.Run(name, func(t *testing.T) {
			hs := start(t, vhost.Config{}, &echo{}, frontend.Options{MemSize: smallMem, QueueSize: 8})
			hs.closedOK = true
			if err := send(t, hs.f); err != nil {
				t.Fatal(err)
			}
			if err := hs.wait(5 * time.Second); err == nil {
				t.Fatal("ServeConn returned nil; want a protocol error")
			} else {
				t.Logf("ServeConn: %v", err)
			}
		})
	}
}
