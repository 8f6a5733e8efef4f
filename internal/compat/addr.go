package compat

import (
	"fmt"
	"net/netip"
	"strings"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
)

// span is the addresses of one converted block, inclusive.
type span struct {
	from, to netip.Addr
}

// block is one converted block of a pool: what is written, and the addresses it gives.
type block struct {
	out   v1.IPBlock
	span  span
	field string // the source field it came from, for messages
}

// lastAddr is the last address of a prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr()
	b := a.AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	last, _ := netip.AddrFromSlice(b)
	return last
}

// parseAddr parses an address as users write it; IPv4-mapped IPv6 addresses count as IPv4,
// as in internal/config.
func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return netip.Addr{}, err
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q: a Service address has no zone", s)
	}
	return a.Unmap(), nil
}

// prefixBlock converts a CIDR. Host bits are cleared, as MetalLB (net.ParseCIDR) and Cilium
// (netip.Prefix.Masked) do: "198.51.100.10/24", written in MetalLB's own documentation, is the
// whole of 198.51.100.0/24 to both, and FerroLB's API refuses host bits.
func prefixBlock(s string) (block, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return block{}, fmt.Errorf("%q is not a CIDR", s)
	}
	if p.Addr().Zone() != "" {
		return block{}, fmt.Errorf("%q: a Service address has no zone", s)
	}
	// IPv4-mapped IPv6 addresses count as IPv4 (see parseAddr), and FerroLB's API refuses
	// them as CIDRs: ::ffff:10.0.2.0/120 is written as 10.0.2.0/24, the same addresses.
	if p.Addr().Is4In6() {
		if p.Bits() < 96 {
			return block{}, fmt.Errorf("%q: an IPv4-mapped CIDR shorter than /96 holds IPv6 addresses too", s)
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	p = p.Masked()
	return block{out: v1.IPBlock{CIDR: p.String()}, span: span{p.Addr(), lastAddr(p)}}, nil
}

// rangeBlock converts an inclusive range.
func rangeBlock(start, stop string) (block, error) {
	from, err := parseAddr(start)
	if err != nil {
		return block{}, fmt.Errorf("start %q is not an IP address", start)
	}
	to, err := parseAddr(stop)
	if err != nil {
		return block{}, fmt.Errorf("stop %q is not an IP address", stop)
	}
	if from.Is4() != to.Is4() {
		return block{}, fmt.Errorf("%s and %s are of different families", from, to)
	}
	if from.Compare(to) > 0 {
		return block{}, fmt.Errorf("%s is above %s", from, to)
	}
	return block{out: v1.IPBlock{Start: from.String(), Stop: to.String()}, span: span{from, to}}, nil
}

// buggy reports whether a is an IPv4 address ending in .0 or .255, which avoidBuggyIPs skips.
func buggy(a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	b := a.As4()
	return b[3] == 0 || b[3] == 255
}

// firstUsable is the first address of s that a pool hands out, and false if there is none.
func firstUsable(s span, avoidBuggy bool) (netip.Addr, bool) {
	for a := s.from; a.IsValid() && a.Compare(s.to) <= 0; a = a.Next() {
		if !avoidBuggy || !buggy(a) {
			return a, true
		}
		if a == s.to {
			break
		}
	}
	return netip.Addr{}, false
}

// orderDiffers checks a pool's blocks of one family for the one difference in allocation order
// between MetalLB and Cilium on one side and FerroLB on the other: they hand out a pool's
// blocks in the order listed, FerroLB hands out the lowest free address of the pool. When the
// blocks are listed in ascending order the two agree. Otherwise it returns the first address
// each would hand out.
func orderDiffers(blocks []block, is4, avoidBuggy bool) (listed, lowest netip.Addr, differs bool) {
	var prev netip.Addr
	ascending := true
	for _, b := range blocks {
		if b.span.from.Is4() != is4 {
			continue
		}
		if a, ok := firstUsable(b.span, avoidBuggy); ok {
			if !listed.IsValid() {
				listed = a
			}
			if !lowest.IsValid() || a.Compare(lowest) < 0 {
				lowest = a
			}
		}
		if prev.IsValid() && b.span.from.Compare(prev) <= 0 {
			ascending = false
		}
		prev = b.span.to
	}
	return listed, lowest, !ascending
}

func family(is4 bool) string {
	if is4 {
		return "IPv4"
	}
	return "IPv6"
}

// overlaps reports whether two spans share an address.
func overlaps(a, b span) bool {
	return a.from.Is4() == b.from.Is4() && a.from.Compare(b.to) <= 0 && b.from.Compare(a.to) <= 0
}
