package ipam

import (
	"net/netip"
	"slices"
)

// space hands out the free addresses of one pool and one family in ascending order.
//
// Addresses at or after the cursor have never been handed out by this space (but some may be
// held: requested, restored, or shared, which the caller's taken func reports). Every free
// address before the cursor waits in a min-heap of released addresses, so the lowest free
// address is always the heap's minimum, or else the first free one from the cursor on.
//
// The heap deletes lazily: an address in it may have been requested or restored since it was
// freed (the taken func says so when it comes up), and one requested and freed again is in it
// twice. Both operations are O(log n); an address the cursor steps over because it is held
// costs O(1), once per pass; stale heap entries are swept out before they outnumber the live
// ones, so they cost O(log n) each, amortised.
type space struct {
	ranges     []Range // sorted, disjoint, one family
	avoidBuggy bool
	ri         int        // range of the cursor; len(ranges) when exhausted
	cursor     netip.Addr // next never-handed-out address in ranges[ri]
	released   addrHeap
	sweepAt    int // heap length at which free sweeps out stale entries
}

// minSweep is the heap length below which free does not bother sweeping.
const minSweep = 64

func newSpace(ranges []Range, avoidBuggy bool) *space {
	s := &space{ranges: ranges, avoidBuggy: avoidBuggy, sweepAt: minSweep}
	if len(ranges) > 0 {
		s.cursor = ranges[0].From
	}
	return s
}

// take returns the lowest free address, or false when the space is full.
func (s *space) take(taken func(netip.Addr) bool) (netip.Addr, bool) {
	for len(s.released) > 0 {
		a := s.released.pop()
		if !taken(a) {
			return a, true
		}
	}
	for s.ri < len(s.ranges) {
		a := s.cursor
		s.advance()
		if s.avoidBuggy && buggy(a) {
			continue
		}
		if !taken(a) {
			return a, true
		}
	}
	return netip.Addr{}, false
}

func (s *space) advance() {
	if s.cursor == s.ranges[s.ri].To {
		s.ri++
		if s.ri < len(s.ranges) {
			s.cursor = s.ranges[s.ri].From
		}
		return
	}
	s.cursor = s.cursor.Next()
}

// free makes a, an address of this space that nobody holds any more, available again.
func (s *space) free(a netip.Addr, taken func(netip.Addr) bool) {
	if !s.passed(a) {
		return // the cursor has yet to reach a and will find it free
	}
	if s.avoidBuggy && buggy(a) {
		// A restored .0 or .255: the cursor skipped it, and it must not come back through the
		// heap either.
		return
	}
	s.released.push(a)
	if len(s.released) >= s.sweepAt {
		s.sweep(taken)
	}
}

// sweep drops the heap's stale entries: held addresses and duplicates. A sorted slice is a
// valid min-heap. The next sweep waits until the heap has doubled, so sweeping costs
// O(log n) per push, amortised, and the heap never holds more than about twice the free
// addresses behind the cursor.
func (s *space) sweep(taken func(netip.Addr) bool) {
	h := s.released
	slices.SortFunc(h, netip.Addr.Compare)
	h = slices.Compact(h)
	h = slices.DeleteFunc(h, taken)
	s.released = h
	s.sweepAt = max(2*len(h), minSweep)
}

// passed reports whether the cursor has gone past a.
func (s *space) passed(a netip.Addr) bool {
	return s.ri >= len(s.ranges) || a.Less(s.cursor)
}

// addrHeap is a min-heap of addresses. It does not use container/heap, whose interface would
// box every netip.Addr into an interface value (an allocation per push and per pop).
type addrHeap []netip.Addr

func (h *addrHeap) push(a netip.Addr) {
	*h = append(*h, a)
	s := *h
	for i := len(s) - 1; i > 0; {
		parent := (i - 1) / 2
		if !s[i].Less(s[parent]) {
			break
		}
		s[i], s[parent] = s[parent], s[i]
		i = parent
	}
}

func (h *addrHeap) pop() netip.Addr {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s[n] = netip.Addr{}
	s = s[:n]
	for i := 0; ; {
		least := i
		if l := 2*i + 1; l < n && s[l].Less(s[least]) {
			least = l
		}
		if r := 2*i + 2; r < n && s[r].Less(s[least]) {
			least = r
		}
		if least == i {
			break
		}
		s[i], s[least] = s[least], s[i]
		i = least
	}
	*h = s
	return top
}
