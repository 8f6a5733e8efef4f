package member

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// A heartbeat on the wire:
//
//	0         4         5               6
//	| "FLB" 1 | version | name length n | name (n bytes) |
//
// Version 1 ends there. Version 3, signed, for speakers that share a key, goes on:
//
//	| epoch (8 bytes) | sequence (8 bytes) | send time (Unix ns, 8 bytes) | tag (16 bytes) |
//
// all big endian, the tag being the first 16 bytes of HMAC-SHA256(key, every byte before it).
// The epoch is random for each start of a speaker and the sequence counts its heartbeats
// from 1: together they order a speaker's heartbeats and refuse a replayed one without
// trusting anybody's clock, so a clock that steps on either side changes nothing. The send
// time is only a coarse check when a receiver meets an epoch for the first time (see
// Tracker.handle). Version 2 (send time without epoch and sequence, ordered by the clock)
// came before any release and is refused as unknown.
const (
	magic          = "FLB\x01"
	version        = 1
	versionSigned  = 3
	maxNameLength  = 253 // a Kubernetes node name
	headerLength   = len(magic) + 2
	epochLength    = 8
	seqLength      = 8
	timeLength     = 8
	tagLength      = 16
	signedTrailing = epochLength + seqLength + timeLength + tagLength
)

// MinKeyLength is the shortest key New takes: HMAC-SHA256 wants 32 random bytes, and fewer
// than 16 is a mistake.
const MinKeyLength = 16

// Errors Unmarshal returns.
var (
	ErrShort   = errors.New("heartbeat too short")
	ErrMagic   = errors.New("not a FerroLB heartbeat")
	ErrVersion = errors.New("unknown heartbeat version")
	ErrName    = errors.New("invalid node name length")
	ErrNoKey   = errors.New("signed heartbeat, and no key to check it")
	ErrTag     = errors.New("heartbeat signature does not match the key")
)

// heartbeat says "I am alive" from one speaker.
type heartbeat struct {
	Name string
	// Epoch and Seq place a signed heartbeat in its sender's run: Epoch is random per
	// start, Seq counts from 1. Zero for an unsigned heartbeat.
	Epoch, Seq uint64
	// Sent is when a signed heartbeat was sent, by the sender's clock; zero for an
	// unsigned one.
	Sent time.Time
}

func (h heartbeat) header(v byte, extra int) ([]byte, error) {
	if len(h.Name) == 0 || len(h.Name) > maxNameLength {
		return nil, fmt.Errorf("%w: %d", ErrName, len(h.Name))
	}
	b := make([]byte, 0, headerLength+len(h.Name)+extra)
	b = append(b, magic...)
	b = append(b, v, byte(len(h.Name))) //nolint:gosec // checked above: at most 253
	return append(b, h.Name...), nil
}

// marshal encodes an unsigned (version 1) heartbeat.
func (h heartbeat) marshal() ([]byte, error) {
	return h.header(version, 0)
}

// marshalSigned encodes a signed (version 3) heartbeat.
func (h heartbeat) marshalSigned(key []byte) ([]byte, error) {
	b, err := h.header(versionSigned, signedTrailing)
	if err != nil {
		return nil, err
	}
	b = binary.BigEndian.AppendUint64(b, h.Epoch)
	b = binary.BigEndian.AppendUint64(b, h.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(h.Sent.UnixNano()))
	return append(b, tag(key, b)...), nil
}

func tag(key, b []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(b)
	return m.Sum(nil)[:tagLength]
}

// unmarshal decodes b and, for a signed heartbeat, checks its tag with key. signed says
// which it was.
func (h *heartbeat) unmarshal(b, key []byte) (signed bool, err error) {
	if len(b) < headerLength {
		return false, ErrShort
	}
	if string(b[:len(magic)]) != magic {
		return false, ErrMagic
	}
	v := b[len(magic)]
	if v != version && v != versionSigned {
		return false, ErrVersion
	}
	n := int(b[len(magic)+1])
	if n == 0 || n > maxNameLength {
		return false, fmt.Errorf("%w: %d", ErrName, n)
	}
	want := headerLength + n
	if v == versionSigned {
		want += signedTrailing
	}
	if len(b) != want {
		return false, ErrShort
	}
	name := string(b[headerLength : headerLength+n])
	if v == version {
		*h = heartbeat{Name: name}
		return false, nil
	}
	if len(key) == 0 {
		return true, ErrNoKey
	}
	body, got := b[:len(b)-tagLength], b[len(b)-tagLength:]
	if !hmac.Equal(got, tag(key, body)) {
		return true, ErrTag
	}
	f := body[headerLength+n:]
	sent := int64(binary.BigEndian.Uint64(f[epochLength+seqLength:])) //nolint:gosec // as written by marshalSigned
	*h = heartbeat{
		Name:  name,
		Epoch: binary.BigEndian.Uint64(f),
		Seq:   binary.BigEndian.Uint64(f[epochLength:]),
		Sent:  time.Unix(0, sent),
	}
	return true, nil
}
