package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRequestCounterReadsBothDaemonsLogs(t *testing.T) {
	c := newRequestCounter()
	// The C virtiofsd's debug lines, split across writes.
	c.Write([]byte("[ID: 00000012]    unique: 2, opcode: LOOKUP (1), nodeid: 1, insize: 46, pid: 7\n[ID: 0000"))
	c.Write([]byte("0012]    unique: 3, opcode: LOOKUP (1), nodeid: 1, insize: 46, pid: 7\n   unique: 4, opcode: GETATTR (3), nodeid: 2\n"))
	if got := c.snapshot(nil); got["LOOKUP"] != 2 || got["GETATTR"] != 1 || len(got) != 2 {
		t.Fatalf("C totals %v", got)
	}
	// The Rust virtiofsd's debug lines name opcodes its own way.
	r := newRequestCounter()
	r.Write([]byte("[2026-12-07T14:34:25Z DEBUG virtiofsd::server] Received request: opcode=Lookup (1), inode=1, unique=2, pid=7\n"))
	r.Write([]byte("[2026-12-07T14:34:25Z DEBUG virtiofsd::server] Received request: opcode=BatchForget (42), inode=0, unique=3, pid=0\n"))
	r.Write([]byte("[2026-12-07T14:34:25Z DEBUG virtiofsd::server] Replying OK, header: OutHeader { len: 16, error: 0, unique: 3 }\n"))
	if got := r.snapshot(nil); got["LOOKUP"] != 1 || got["BATCH_FORGET"] != 1 || len(got) != 2 {
		t.Fatalf("Rust totals %v", got)
	}
	// uvfsd reports totals when signalled; the snapshot waits for the report.
	u := newRequestCounter()
	got := u.snapshot(func() error {
		go u.Write([]byte("uvfsd: requests served: LOOKUP=5 INIT=1; requests per queue: hiprio=0 1=6\n"))
		return nil
	})
	if got["LOOKUP"] != 5 || got["INIT"] != 1 {
		t.Fatalf("uvfsd totals %v", got)
	}
}

func TestCountStepsRecordsDeltasPerWorkload(t *testing.T) {
	c := newRequestCounter()
	console, counts := countSteps(c, nil)
	c.Write([]byte("opcode: INIT (26)\nopcode: CREATE (35)\nopcode: CREATE (35)\n"))
	console.Write([]byte("BENCH create 123\n"))
	c.Write([]byte("opcode: LOOKUP (1)\n"))
	console.Write([]byte("[  3.1] BENCH stat 45\n"))
	if counts["create"]["CREATE"] != 2 || counts["stat"]["LOOKUP"] != 1 || counts["stat"]["CREATE"] != 0 {
		t.Fatalf("per-step counts %v", counts)
	}
	var buf bytes.Buffer
	writeCounts(&buf, map[string]stepCounts{"C": counts}, []string{"C"}, sizes{SmallFiles: 2})
	if !strings.Contains(buf.String(), "CREATE") || !strings.Contains(buf.String(), "create 2 files") {
		t.Fatalf("table:\n%s", buf.String())
	}
}
