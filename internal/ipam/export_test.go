package ipam

import (
	"net/netip"
	"slices"
)

// HeldAddrs lists every address somebody holds, sorted: the tests' view of the holders index.
func HeldAddrs(a *Allocator) []netip.Addr {
	out := make([]netip.Addr, 0, len(a.holders))
	for addr := range a.holders {
		out = append(out, addr)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// ReleasedLen is the length of the heap of released addresses of one pool and family, stale
// entries included; -1 without such a space.
func ReleasedLen(a *Allocator, pool string, fam Family) int {
	p := a.pools[pool]
	if p == nil || p.spaces[fam] == nil {
		return -1
	}
	return len(p.spaces[fam].released)
}
