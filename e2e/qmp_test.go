package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"time"
)

// qmp is a minimal client of QEMU's machine protocol, for what the migration test asks: it
// sends one command at a time and skips the asynchronous events in between.
type qmp struct {
	conn net.Conn
	r    *bufio.Reader
}

// dialQMP connects to QEMU's -qmp unix socket, retrying while QEMU starts, and leaves
// negotiation mode.
func dialQMP(path string, timeout time.Duration) (*qmp, error) {
	deadline := time.Now().Add(timeout)
	var conn net.Conn
	var err error
	for {
		if conn, err = net.Dial("unix", path); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("QMP socket %s: %w", path, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	q := &qmp{conn: conn, r: bufio.NewReader(conn)}
	conn.SetDeadline(time.Now().Add(timeout))
	if _, err := q.r.ReadBytes('\n'); err != nil { // the greeting
		conn.Close()
		return nil, fmt.Errorf("QMP greeting: %w", err)
	}
	if _, err := q.run("qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

// run executes one command and returns its "return" value.
func (q *qmp) run(cmd string, args any) (json.RawMessage, error) {
	q.conn.SetDeadline(time.Now().Add(time.Minute))
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, _ := json.Marshal(req)
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("QMP %s: %w", cmd, err)
	}
	for {
		line, err := q.r.ReadBytes('\n')
		if err != nil {
			return nil, fmt.Errorf("QMP %s: %w", cmd, err)
		}
		var resp struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Class, Desc string
			} `json:"error"`
		}
		if err := json.Unmarshal(line, &resp); err != nil {
			return nil, fmt.Errorf("QMP %s: %q: %w", cmd, line, err)
		}
		switch {
		case resp.Error != nil:
			return nil, fmt.Errorf("QMP %s: %s: %s", cmd, resp.Error.Class, resp.Error.Desc)
		case resp.Return != nil:
			return resp.Return, nil
		}
		// An event: wait on.
	}
}

func (q *qmp) close() { q.conn.Close() }

// migrationStatus is query-migrate's status and, once failed, why.
func (q *qmp) migrationStatus() (status, errDesc string, err error) {
	ret, err := q.run("query-migrate", nil)
	if err != nil {
		return "", "", err
	}
	var m struct {
		Status    string `json:"status"`
		ErrorDesc string `json:"error-desc"`
	}
	if err := json.Unmarshal(ret, &m); err != nil {
		return "", "", err
	}
	return m.Status, m.ErrorDesc, nil
}

// waitMigration polls query-migrate until the status is one of want (or failed/cancelled).
func (q *qmp) waitMigration(timeout time.Duration, want ...string) (string, string, error) {
	deadline := time.Now().Add(timeout)
	for {
		status, desc, err := q.migrationStatus()
		if err != nil {
			return "", "", err
		}
		for _, w := range want {
			if status == w {
				return status, desc, nil
			}
		}
		if status == "failed" || status == "cancelled" {
			return status, desc, nil
		}
		if time.Now().After(deadline) {
			return status, desc, fmt.Errorf("migration still %q after %v", status, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
