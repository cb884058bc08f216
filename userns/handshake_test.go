package userns

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestHandshakeSteps(t *testing.T) {
	r, w := io.Pipe()
	go func() {
		send(w, message{Step: stepChildHello})
		send(w, message{Step: stepChildFailed, Error: "boom"})
		send(w, message{Step: stepMapsWritten})
		w.Close()
	}()
	d := json.NewDecoder(r)
	if _, err := waitFor(d, stepChildHello); err != nil {
		t.Fatalf("hello: %v", err)
	}
	m, err := waitFor(d, stepChildReady, stepChildFailed)
	if err != nil || m.Step != stepChildFailed || m.Error != "boom" {
		t.Fatalf("failed step: %+v, %v", m, err)
	}
	if _, err := waitFor(d, stepChildReady); err == nil || !strings.Contains(err.Error(), `got "parent-maps-written"`) {
		t.Fatalf("unexpected step: error = %v", err)
	}
	if _, err := waitFor(d, stepChildReady); !errors.Is(err, errPeerDied) {
		t.Fatalf("EOF: error = %v, want errPeerDied", err)
	}
}
