package ipam

import (
	"fmt"
	"math/big"
	"net/netip"
)

// Family is an address family.
type Family uint8

// The two families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string {
	switch f {
	case IPv4:
		return "IPv4"
	case IPv6:
		return "IPv6"
	}
	return fmt.Sprintf("Family(%d)", uint8(f))
}

// FamilyOf is the family of a.
func FamilyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

// Range is an inclusive range of addresses of one family.
type Range struct {
	From, To netip.Addr
}

// PrefixRange is the range of every address in p; the zero Range (which Valid refuses) if p
// is not a valid prefix.
func PrefixRange(p netip.Prefix) Range {
	if !p.IsValid() {
		// Bits() is -1: the loop below would set a bit of a made-up address.
		return Range{}
	}
	p = p.Masked()
	from := p.Addr()
	to := from.As16()
	bits := from.BitLen()
	off := 128 - bits // As16 holds IPv4 in the last 4 bytes
	for i := p.Bits(); i < bits; i++ {
		to[(off+i)/8] |= 0x80 >> ((off + i) % 8)
	}
	end := netip.AddrFrom16(to)
	if from.Is4() {
		end = end.Unmap()
	}
	return Range{From: from, To: end}
}

// Contains reports whether a is in r.
func (r Range) Contains(a netip.Addr) bool {
	return r.From.BitLen() == a.BitLen() && r.From.Compare(a) <= 0 && a.Compare(r.To) <= 0
}

// Valid reports whether r is a non-empty range of one family.
func (r Range) Valid() error {
	switch {
	case !r.From.IsValid() || !r.To.IsValid():
		return fmt.Errorf("range %s-%s: not an address", r.From, r.To)
	case r.From.BitLen() != r.To.BitLen():
		return fmt.Errorf("range %s-%s: start and stop are of different families", r.From, r.To)
	case r.To.Less(r.From):
		return fmt.Errorf("range %s-%s: start is above stop", r.From, r.To)
	}
	return nil
}

func (r Range) String() string {
	if r.From == r.To {
		return r.From.String()
	}
	return r.From.String() + "-" + r.To.String()
}

// size is the number of addresses in r, leaving out IPv4 .0 and .255 when avoidBuggy.
func (r Range) size(avoidBuggy bool) *big.Int {
	from, to := addrInt(r.From), addrInt(r.To)
	n := new(big.Int).Sub(to, from)
	n.Add(n, big.NewInt(1))
	if avoidBuggy && r.From.Is4() {
		// Count the x in [from, to] with x%256 == 0 or x%256 == 255.
		n.Sub(n, countMod(from, to, 0))
		n.Sub(n, countMod(from, to, 255))
	}
	return n
}

// countMod counts the x in [from, to] with x%256 == rem.
func countMod(from, to *big.Int, rem int64) *big.Int {
	// floor((to-rem)/256) - floor((from-1-rem)/256)
	m := big.NewInt(256)
	a := new(big.Int).Sub(to, big.NewInt(rem))
	b := new(big.Int).Sub(from, big.NewInt(rem+1))
	a.Div(a, m) // big.Int.Div is Euclidean: floors for a positive divisor
	b.Div(b, m)
	return a.Sub(a, b)
}

func addrInt(a netip.Addr) *big.Int {
	b := a.AsSlice()
	return new(big.Int).SetBytes(b)
}

// buggy reports whether a is an IPv4 address ending in .0 or .255.
func buggy(a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	last := a.As4()[3]
	return last == 0 || last == 255
}
