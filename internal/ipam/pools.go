package ipam

import (
	"cmp"
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"strings"
)

// Pool is a set of addresses and the rules for handing them out.
type Pool struct {
	Name   string
	Ranges []Range
	// AutoAssign: with false, only Services that name this pool or request one of its
	// addresses get them.
	AutoAssign bool
	// AvoidBuggyIPs skips IPv4 addresses ending in .0 and .255.
	AvoidBuggyIPs bool
	// Disabled: no new allocations (nor new sharers of an address in it); holders keep
	// their addresses.
	Disabled bool
	// Priority orders candidate pools, lowest first; ties go by name.
	Priority int
	// MaxPerService is how many addresses of one family a Service may hold when it is given
	// a requested address from this pool; 0 means 1. Addresses given automatically are one
	// per family whatever it says.
	MaxPerService int
}

// maxPerService is p's MaxPerService, 1 when unset.
func (p *Pool) maxPerService() int { return max(p.MaxPerService, 1) }

// PoolStatus is what the allocator knows of one pool.
type PoolStatus struct {
	Name string
	// Err says why the pool is invalid and hands out nothing.
	Err error
	// Conflicts names the pools this one overlaps; the overlapping addresses are handed out by
	// neither. A disabled pool conflicts with no enabled one (see Yields).
	Conflicts []string
	// Yields: of a disabled pool, the enabled pools it overlaps, which own the overlapping
	// addresses (a disabled pool blocks nothing: Cilium's users keep an "informational"
	// disabled pool beside the live one); of an enabled pool, the disabled pools it overlaps.
	Yields []string
	// Total is the number of addresses the pool can hand out, per family (after leaving out
	// conflicts and, with AvoidBuggyIPs, .0 and .255); Used the number held by Services.
	Total map[Family]*big.Int
	Used  map[Family]int
}

// pool is a Pool with what the allocator derived from it.
type pool struct {
	Pool
	err       error
	conflicts []string
	yields    []string
	usable    map[Family][]Range // own ranges minus conflicts, sorted, disjoint
	spaces    map[Family]*space
	used      map[Family]int
}

// indexEntry maps a range of addresses to the pool that hands it out, or to the pools whose
// conflict keeps it from being handed out.
type indexEntry struct {
	Range
	pool      *pool
	conflicts []string
}

// SetPools replaces the allocator's pools. Holdings are untouched: an address that no pool
// holds any more stays with its Service (Assign reports it as an orphan). Pools whose usable
// addresses did not change keep their free lists.
func (a *Allocator) SetPools(pools []Pool) {
	old := a.pools
	a.pools = make(map[string]*pool, len(pools))
	for _, p := range pools {
		if dup := a.pools[p.Name]; dup != nil {
			// Pools are known by name (requests, status): two of one name would both hand
			// out addresses while only one could be reported, and conflict with each other.
			// Neither is used.
			dup.err = fmt.Errorf("more than one pool is named %q", p.Name)
			continue
		}
		np := &pool{Pool: p, used: map[Family]int{}, spaces: map[Family]*space{}}
		np.Ranges = slices.Clone(p.Ranges)
		for _, r := range np.Ranges {
			if err := r.Valid(); err != nil {
				np.err = err
				break
			}
		}
		if len(np.Ranges) == 0 && np.err == nil {
			np.err = fmt.Errorf("pool has no addresses")
		}
		a.pools[p.Name] = np
	}
	var valid []*pool
	for _, p := range pools {
		if np := a.pools[p.Name]; np.err == nil { // a name given twice has an error
			valid = append(valid, np)
		}
	}
	a.order = slices.Clone(valid)
	slices.SortFunc(a.order, func(x, y *pool) int {
		return cmp.Or(cmp.Compare(x.Priority, y.Priority), strings.Compare(x.Name, y.Name))
	})

	a.index = map[Family][]indexEntry{}
	for _, fam := range []Family{IPv4, IPv6} {
		a.buildFamily(fam, valid)
	}
	for _, p := range valid {
		slices.Sort(p.conflicts)
		p.conflicts = slices.Compact(p.conflicts)
		for fam, rs := range p.usable {
			if o := old[p.Name]; o != nil && o.err == nil && o.AvoidBuggyIPs == p.AvoidBuggyIPs &&
				slices.Equal(o.usable[fam], rs) {
				p.spaces[fam] = o.spaces[fam]
				continue
			}
			p.spaces[fam] = newSpace(rs, p.AvoidBuggyIPs)
		}
	}
	// Recount usage: holdings may now fall in other pools.
	for addr := range a.holders {
		if p, _ := a.poolOf(addr); p != nil {
			p.used[FamilyOf(addr)]++
		}
	}
}

// buildFamily finds the overlaps between pools in one family, gives each pool its usable
// ranges and builds the lookup index.
func (a *Allocator) buildFamily(fam Family, pools []*pool) {
	type owned struct {
		Range
		pool *pool
	}
	var all []owned
	for _, p := range pools {
		if p.usable == nil {
			p.usable = map[Family][]Range{}
		}
		var rs []Range
		for _, r := range p.Ranges {
			if FamilyOf(r.From) == fam {
				rs = append(rs, r)
			}
		}
		for _, r := range mergeRanges(rs) {
			all = append(all, owned{r, p})
		}
	}
	slices.SortFunc(all, func(x, y owned) int { return x.From.Compare(y.From) })

	// Pairwise overlaps between ranges of different pools (a pool's own ranges are merged).
	// An enabled pool and a disabled one do not conflict: the enabled one owns the overlap.
	var conflicts, disabledConflicts, enabled []indexEntry
	for i := range all {
		if !all[i].pool.Disabled {
			enabled = append(enabled, indexEntry{Range: all[i].Range})
		}
		for j := i + 1; j < len(all) && all[j].From.Compare(all[i].To) <= 0; j++ {
			if all[i].pool == all[j].pool {
				continue
			}
			if all[i].pool.Disabled != all[j].pool.Disabled {
				if !slices.Contains(all[i].pool.yields, all[j].pool.Name) {
					all[i].pool.yields = append(all[i].pool.yields, all[j].pool.Name)
				}
				if !slices.Contains(all[j].pool.yields, all[i].pool.Name) {
					all[j].pool.yields = append(all[j].pool.yields, all[i].pool.Name)
				}
				continue
			}
			to := all[i].To
			if all[j].To.Less(to) {
				to = all[j].To
			}
			names := []string{all[i].pool.Name, all[j].pool.Name}
			c := indexEntry{Range: Range{all[j].From, to}, conflicts: names}
			if all[i].pool.Disabled {
				disabledConflicts = append(disabledConflicts, c)
			} else {
				conflicts = append(conflicts, c)
			}
			all[i].pool.conflicts = append(all[i].pool.conflicts, all[j].pool.Name)
			all[j].pool.conflicts = append(all[j].pool.conflicts, all[i].pool.Name)
		}
	}
	conflicts = mergeConflicts(conflicts)
	// Where disabled pools conflict and an enabled pool holds the addresses, they are the
	// enabled pool's: the index keeps one entry per address.
	enabledRanges := mergeHoles(enabled)
	var shadowed []indexEntry
	for _, c := range mergeConflicts(disabledConflicts) {
		for _, r := range subtract([]Range{c.Range}, enabledRanges) {
			shadowed = append(shadowed, indexEntry{Range: r, conflicts: c.conflicts})
		}
	}

	index := append(slices.Clone(conflicts), shadowed...)
	for _, p := range pools {
		var own []Range
		for _, o := range all {
			if o.pool == p {
				own = append(own, o.Range)
			}
		}
		usable := subtract(own, conflicts)
		if p.Disabled {
			// What an enabled pool owns is not this pool's, also for telling whose a held
			// address is; where disabled pools overlap, neither's.
			usable = subtract(subtract(own, enabledRanges), mergeHoles(disabledConflicts))
		}
		if len(usable) > 0 {
			p.usable[fam] = usable
		}
		for _, r := range usable {
			index = append(index, indexEntry{Range: r, pool: p})
		}
	}
	slices.SortFunc(index, func(x, y indexEntry) int { return x.From.Compare(y.From) })
	a.index[fam] = index
}

// poolOf returns the pool that hands out addr, or, when addr lies where pools overlap, the
// names of those pools.
func (a *Allocator) poolOf(addr netip.Addr) (*pool, []string) {
	idx := a.index[FamilyOf(addr)]
	i, _ := slices.BinarySearchFunc(idx, addr, func(e indexEntry, t netip.Addr) int {
		return e.From.Compare(t)
	})
	// i is the first entry starting after addr, or at it.
	if i < len(idx) && idx[i].From == addr {
		return idx[i].pool, idx[i].conflicts
	}
	if i > 0 && idx[i-1].Contains(addr) {
		return idx[i-1].pool, idx[i-1].conflicts
	}
	return nil, nil
}

// mergeRanges sorts rs and merges ranges that overlap or touch.
func mergeRanges(rs []Range) []Range {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(x, y Range) int { return x.From.Compare(y.From) })
	var out []Range
	for _, r := range rs {
		if n := len(out); n > 0 && touches(out[n-1], r) {
			if out[n-1].To.Less(r.To) {
				out[n-1].To = r.To
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// touches reports whether b, which starts at or after a, overlaps a or follows it directly.
func touches(a, b Range) bool {
	next := a.To.Next()
	return b.From.Compare(a.To) <= 0 || (next.IsValid() && next == b.From)
}

// mergeConflicts merges overlapping conflict segments, uniting their pool names.
func mergeConflicts(cs []indexEntry) []indexEntry {
	slices.SortFunc(cs, func(x, y indexEntry) int { return x.From.Compare(y.From) })
	var out []indexEntry
	for _, c := range cs {
		if n := len(out); n > 0 && c.From.Compare(out[n-1].To) <= 0 {
			if out[n-1].To.Less(c.To) {
				out[n-1].To = c.To
			}
			out[n-1].conflicts = append(out[n-1].conflicts, c.conflicts...)
			slices.Sort(out[n-1].conflicts)
			out[n-1].conflicts = slices.Compact(out[n-1].conflicts)
			continue
		}
		c.conflicts = slices.Clone(c.conflicts)
		slices.Sort(c.conflicts)
		out = append(out, c)
	}
	return out
}

// subtract returns the parts of the sorted, disjoint ranges rs outside the sorted, disjoint
// holes.
func subtract(rs []Range, holes []indexEntry) []Range {
	var out []Range
	for _, r := range rs {
		cur := r
		ok := true
		for _, h := range holes {
			if h.To.Less(cur.From) || cur.To.Less(h.From) {
				continue
			}
			if cur.From.Less(h.From) {
				out = append(out, Range{cur.From, h.From.Prev()})
			}
			if !h.To.Less(cur.To) {
				ok = false
				break
			}
			cur.From = h.To.Next()
		}
		if ok {
			out = append(out, cur)
		}
	}
	return out
}

// Pools reports every pool's state, sorted by name.
func (a *Allocator) Pools() []PoolStatus {
	out := make([]PoolStatus, 0, len(a.pools))
	for _, p := range a.pools {
		out = append(out, a.poolStatus(p))
	}
	slices.SortFunc(out, func(x, y PoolStatus) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// Pool reports one pool's state; false if there is no such pool.
func (a *Allocator) Pool(name string) (PoolStatus, bool) {
	p, ok := a.pools[name]
	if !ok {
		return PoolStatus{}, false
	}
	return a.poolStatus(p), true
}

func (a *Allocator) poolStatus(p *pool) PoolStatus {
	st := PoolStatus{Name: p.Name, Err: p.err, Conflicts: slices.Clone(p.conflicts), Yields: slices.Clone(p.yields),
		Total: map[Family]*big.Int{}, Used: map[Family]int{}}
	for _, fam := range []Family{IPv4, IPv6} {
		total := new(big.Int)
		for _, r := range p.usable[fam] {
			total.Add(total, r.size(p.AvoidBuggyIPs))
		}
		hasFamily := slices.ContainsFunc(p.Ranges, func(r Range) bool { return FamilyOf(r.From) == fam })
		if hasFamily && p.err == nil {
			st.Total[fam] = total
			st.Used[fam] = p.used[fam]
		}
	}
	return st
}

// mergeHoles sorts ranges by start and merges those that overlap or touch, as subtract needs.
func mergeHoles(es []indexEntry) []indexEntry {
	rs := make([]Range, 0, len(es))
	for _, e := range es {
		rs = append(rs, e.Range)
	}
	var out []indexEntry
	for _, r := range mergeRanges(rs) {
		out = append(out, indexEntry{Range: r})
	}
	return out
}
