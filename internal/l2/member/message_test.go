package member

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestHeartbeatRoundTrip(t *testing.T) {
	for _, name := range []string{"n", "node-1", strings.Repeat("a", maxNameLength)} {
		b, err := heartbeat{Name: name}.marshal()
		if err != nil {
			t.Fatal(err)
		}
		var h heartbeat
		if signed, err := h.unmarshal(b, nil); err != nil || signed || h.Name != name {
			t.Errorf("round trip of %q: got %q, signed %v, %v", name, h.Name, signed, err)
		}
		sent := time.Unix(1_800_000_000, 123456789)
		b, err = heartbeat{Name: name, Epoch: 0xfeedface01020304, Seq: 42, Sent: sent}.marshalSigned(testKey)
		if err != nil {
			t.Fatal(err)
		}
		if signed, err := h.unmarshal(b, testKey); err != nil || !signed || h.Name != name || !h.Sent.Equal(sent) ||
			h.Epoch != 0xfeedface01020304 || h.Seq != 42 {
			t.Errorf("signed round trip of %q: got %+v, signed %v, %v", name, h, signed, err)
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
	signed, _ := heartbeat{Name: "node-1", Sent: time.Now()}.marshalSigned(testKey)
	signedOther, _ := heartbeat{Name: "node-1", Sent: time.Now()}.marshalSigned([]byte("another key, also 32 bytes long."))
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
		{"other version", append(append([]byte(magic), 4), good[5:]...), ErrVersion},
		{"version 2 (ordered by the clock, before epochs)", append(append([]byte(magic), 2), good[5:]...), ErrVersion},
		{"zero-length name", append([]byte(magic), version, 0), ErrName},
		{"signed, truncated", signed[:len(signed)-1], ErrShort},
		{"signed, another key", signedOther, ErrTag},
		{"signed, a bit flipped in the name", flip(signed, headerLength), ErrTag},
		{"signed, a bit flipped in the epoch", flip(signed, len(signed)-signedTrailing), ErrTag},
		{"signed, a bit flipped in the sequence", flip(signed, len(signed)-signedTrailing+epochLength), ErrTag},
		{"signed, a bit flipped in the time", flip(signed, len(signed)-tagLength-1), ErrTag},
		{"signed, a bit flipped in the tag", flip(signed, len(signed)-1), ErrTag},
		{"unsigned, marked signed", append(append([]byte(magic), versionSigned), good[5:]...), ErrShort},
	}
	for _, tt := range tests {
		var h heartbeat
		if _, err := h.unmarshal(tt.b, testKey); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	// Without a key, a signed heartbeat cannot be checked, so it does not count.
	var h heartbeat
	if _, err := h.unmarshal(signed, nil); !errors.Is(err, ErrNoKey) {
		t.Errorf("signed heartbeat without a key: %v, want ErrNoKey", err)
	}
}

var testKey = []byte("0123456789abcdef0123456789abcdef")

func flip(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 1
	return b
}

// FuzzHeartbeat: any bytes from the network parse or fail cleanly, and what parses
// marshals back to the same bytes.
func FuzzHeartbeat(f *testing.F) {
	good, _ := heartbeat{Name: "node-1"}.marshal()
	signed, _ := heartbeat{Name: "node-1", Sent: time.Unix(1_800_000_000, 0)}.marshalSigned(testKey)
	f.Add(good)
	f.Add(signed)
	f.Add([]byte(magic))
	f.Add(append([]byte(magic), version, 255))
	f.Fuzz(func(t *testing.T, b []byte) {
		var h heartbeat
		signed, err := h.unmarshal(b, testKey)
		if err != nil {
			return
		}
		var again []byte
		if signed {
			again, err = h.marshalSigned(testKey)
		} else {
			again, err = h.marshal()
		}
		if err != nil {
			t.Fatalf("parsed %q but cannot marshal it: %v", h.Name, err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("round trip changed %x to %x", b, again)
		}
	})
}

// BenchmarkHeartbeat: the cost of one heartbeat to send and to check, unsigned and signed.
// Each speaker sends N-1 and receives N-1 every interval (100 ms).
func BenchmarkHeartbeat(b *testing.B) {
	sent := time.Now()
	b.Run("unsigned", func(b *testing.B) {
		for b.Loop() {
			m, _ := heartbeat{Name: "node-123.example.internal"}.marshal()
			var h heartbeat
			if _, err := h.unmarshal(m, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("signed", func(b *testing.B) {
		for b.Loop() {
			m, _ := heartbeat{Name: "node-123.example.internal", Sent: sent}.marshalSigned(testKey)
			var h heartbeat
			if _, err := h.unmarshal(m, testKey); err != nil {
				b.Fatal(err)
			}
		}
	})
}
