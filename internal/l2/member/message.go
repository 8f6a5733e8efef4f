package member

import (
	"errors"
	"fmt"
)

// A heartbeat on the wire:
//
//	0         4         5               6
//	| "FLB" 1 | version | name length n | name (n bytes) |
const (
	magic         = "FLB\x01"
	version       = 1
	maxNameLength = 253 // a Kubernetes node name
	headerLength  = len(magic) + 2
)

// Errors Unmarshal returns.
var (
	ErrShort   = errors.New("heartbeat too short")
	ErrMagic   = errors.New("not a FerroLB heartbeat")
	ErrVersion = errors.New("unknown heartbeat version")
	ErrName    = errors.New("invalid node name length")
)

// heartbeat says "I am alive" from one speaker.
type heartbeat struct {
	Name string
}

func (h heartbeat) marshal() ([]byte, error) {
	if len(h.Name) == 0 || len(h.Name) > maxNameLength {
		return nil, fmt.Errorf("%w: %d", ErrName, len(h.Name))
	}
	b := make([]byte, 0, headerLength+len(h.Name))
	b = append(b, magic...)
	b = append(b, version, byte(len(h.Name))) //nolint:gosec // checked above: at most 253
	return append(b, h.Name...), nil
}

func (h *heartbeat) unmarshal(b []byte) error {
	if len(b) < headerLength {
		return ErrShort
	}
	if string(b[:len(magic)]) != magic {
		return ErrMagic
	}
	if b[len(magic)] != version {
		return ErrVersion
	}
	n := int(b[len(magic)+1])
	if n == 0 || n > maxNameLength {
		return fmt.Errorf("%w: %d", ErrName, n)
	}
	if len(b) != headerLength+n {
		return ErrShort
	}
	h.Name = string(b[headerLength:])
	return nil
}
