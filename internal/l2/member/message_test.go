package member

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestHeartbeatRoundTrip(t *testing.T) {
	for _, name := range []string{"n", "node-1", strings.Repeat("a", maxNameLength)} {
		b, err := heartbeat{Name: name}.marshal()
		if err != nil {
			t.Fatal(err)
		}
		var h heartbeat
		if err := h.unmarshal(b); err != nil || h.Name != name {
			t.Errorf("round trip of %q: got %q, %v", name, h.Name, err)
		}
	}
	for _, name := range []string{"", strings.Repeat("a", maxNameLength+1)} {
		if _, err := (heartbeat{Name: name}).marshal(); !errors.Is(err, ErrName) {
			t.Errorf("marshal name of %d bytes: %v, want ErrName", len(name), err)
		}
	}
}

func TestHeartbeatMalformed(t *testing.T) {
	good, _ := heartbeat{Name: "node-1"}.marshal()
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"header only", good[:headerLength], ErrShort}, // the length byte says 6; none follow
		{"truncated name", good[:len(good)-1], ErrShort},
		{"trailing byte", append(bytes.Clone(good), 0), ErrShort},
		{"other magic", append([]byte("XLB\x01"), good[4:]...), ErrMagic},
		{"other version", append(append([]byte(magic), 2), good[5:]...), ErrVersion},
		{"zero-length name", append([]byte(magic), version, 0), ErrName},
	}
	for _, tt := range tests {
		var h heartbeat
		if err := h.unmarshal(tt.b); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
}

// FuzzHeartbeat: any bytes from the network parse or fail cleanly, and what parses
// marshals back to the same bytes.
func FuzzHeartbeat(f *testing.F) {
	good, _ := heartbeat{Name: "node-1"}.marshal()
	f.Add(good)
	f.Add([]byte(magic))
	f.Add(append([]byte(magic), version, 255))
	f.Fuzz(func(t *testing.T, b []byte) {
		var h heartbeat
		if err := h.unmarshal(b); err != nil {
			return
		}
		again, err := h.marshal()
		if err != nil {
			t.Fatalf("parsed %q but cannot marshal it: %v", h.Name, err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("round trip changed %x to %x", b, again)
		}
	})
}
