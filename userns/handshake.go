package userns

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// step names one message of the stage handshake. Each side waits for
// exactly the step it expects next, so a confused peer is an error,
// not a hang.
type step string

const (
	stepChildHello  step = "child-hello"         // stage 1 runs, in the new namespace
	stepMapsWritten step = "parent-maps-written" // stage 0 wrote uid_map and gid_map
	stepChildReady  step = "child-ready"         // stage 2 has its capabilities
	stepChildFailed step = "child-failed"        // stage 2 gave up; Error says why
)

type message struct {
	Step  step   `json:"step"`
	Error string `json:"error,omitempty"`
	// Unusable marks a child-failed that means the user namespace gave
	// no capabilities (AppArmor); Reason is the short form for the
	// fallback warning.
	Unusable bool   `json:"unusable,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// errPeerDied is what EOF on the pipe means.
var errPeerDied = errors.New("the other uvfsd process exited")

func send(w io.Writer, m message) error {
	if err := json.NewEncoder(w).Encode(m); err != nil {
		return fmt.Errorf("sending %s: %w", m.Step, err)
	}
	return nil
}

// waitFor reads the next message and asserts that it is one of want.
func waitFor(d *json.Decoder, want ...step) (message, error) {
	var m message
	if err := d.Decode(&m); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return m, fmt.Errorf("waiting for %s: %w", want[0], errPeerDied)
		}
		return m, fmt.Errorf("waiting for %s: %w", want[0], err)
	}
	for _, w := range want {
		if m.Step == w {
			return m, nil
		}
	}
	return m, fmt.Errorf("handshake: got %q, want %q", m.Step, want)
}
