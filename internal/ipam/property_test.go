package ipam_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ferrolb/ferrolb/internal/ipam"
)

// The property test runs random operations on an allocator over a small universe of
// addresses (so that pools overlap and fill up, and Services collide) and checks, after each,
// invariants against a plain model that recomputes everything from scratch.

var (
	// v4Universe crosses a .255/.0 boundary, for AvoidBuggyIPs.
	v4Universe = span("10.0.0.224", 64)
	v6Universe = span("2001:db8::", 64)
	outsiders  = addrs("192.0.2.1", "2001:db8:ffff::1")
	propPorts  = []ipam.Port{{Protocol: "TCP", Number: 80}, {Protocol: "TCP", Number: 443}, {Protocol: "UDP", Number: 53}}
)

const (
	propServices = 12
	propPools    = 6
)

func span(from string, n int) []netip.Addr {
	a := netip.MustParseAddr(from)
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = a
		a = a.Next()
	}
	return out
}

func TestProperties(t *testing.T) {
	ops := 3000
	if testing.Short() {
		ops = 500
	}
	for seed := uint64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			m := &model{t: t, rnd: rand.New(rand.NewPCG(seed, 0x1feb)), a: ipam.New(), reqs: map[string]ipam.Request{}, seen: map[string]int{}}
			for i := range ops {
				m.step(i)
				if t.Failed() {
					t.Logf("seed %d, operation %d; the last operations:\n%s", seed, i, strings.Join(m.history, "\n"))
					return
				}
			}
			t.Logf("seen: %v", m.seen)
			for _, what := range []string{"shared address", "orphan", "released", "refused address", "refused family",
				"conflict", "restart", "disabled pool", "manual pool", "buggy-avoiding pool", "pool error", "dual-stack holder",
				"per-family limit", "several of a family", "keep-only"} {
				if m.seen[what] == 0 {
					t.Errorf("the random operations never reached: %s", what)
				}
			}
		})
	}
}

type model struct {
	t       *testing.T
	rnd     *rand.Rand
	a       *ipam.Allocator
	pools   []ipam.Pool
	reqs    map[string]ipam.Request // the last request of every Service that may hold something
	history []string
	seen    map[string]int // how often interesting things happened, to show the test reaches them

	// Derived from pools by setPools.
	valids    []ipam.Pool               // valid pools by priority, then name
	owners    map[netip.Addr]*ipam.Pool // the one valid pool that hands out an address
	usables   map[string][]netip.Addr   // pool/family -> what it may hand out, ascending
	conflicts map[string][]string       // pool -> the valid pools it overlaps, both enabled or both disabled
}

func (m *model) setPools(ps []ipam.Pool) {
	m.pools = ps
	m.valids = nil
	for _, p := range ps {
		if m.valid(p) {
			m.valids = append(m.valids, p)
		}
	}
	slices.SortFunc(m.valids, func(x, y ipam.Pool) int {
		if x.Priority != y.Priority {
			return x.Priority - y.Priority
		}
		return strings.Compare(x.Name, y.Name)
	})
	m.owners = map[netip.Addr]*ipam.Pool{}
	for _, u := range [][]netip.Addr{v4Universe, v6Universe} {
		for _, addr := range u {
			// The one enabled pool that holds it; with none, the one disabled pool (a
			// disabled pool yields to enabled ones and conflicts only with disabled ones).
			for _, disabled := range []bool{false, true} {
				var owner *ipam.Pool
				n := 0
				for i := range m.valids {
					if inPool(m.valids[i], addr) && m.valids[i].Disabled == disabled {
						owner = &m.valids[i]
						n++
					}
				}
				if n == 1 {
					m.owners[addr] = owner
				}
				if n > 0 {
					break
				}
			}
		}
	}
	m.usables = map[string][]netip.Addr{}
	m.conflicts = map[string][]string{}
	for _, p := range m.valids {
		for _, fam := range []ipam.Family{ipam.IPv4, ipam.IPv6} {
			for _, addr := range universe(fam) {
				if o := m.owner(addr); o != nil && o.Name == p.Name && (!p.AvoidBuggyIPs || !isBuggy(addr)) {
					m.usables[p.Name+"/"+fam.String()] = append(m.usables[p.Name+"/"+fam.String()], addr)
				}
			}
		}
		for _, q := range m.valids {
			if q.Name != p.Name && p.Disabled == q.Disabled && overlaps(p, q) {
				m.conflicts[p.Name] = append(m.conflicts[p.Name], q.Name)
			}
		}
		slices.Sort(m.conflicts[p.Name])
	}
}

func (m *model) log(format string, args ...any) {
	m.history = append(m.history, fmt.Sprintf(format, args...))
	if len(m.history) > 20 {
		m.history = m.history[1:]
	}
}

func svcName(i int) string { return fmt.Sprintf("s%d", i) }

// snapshot is what every Service holds.
func (m *model) snapshot() map[string][]netip.Addr {
	out := map[string][]netip.Addr{}
	for i := range propServices {
		if h := m.a.Holds(svcName(i)); h != nil {
			out[svcName(i)] = h
		}
	}
	return out
}

func (m *model) step(i int) {
	before := m.snapshot()
	svc := svcName(m.rnd.IntN(propServices))
	switch r := m.rnd.IntN(100); {
	case r < 6:
		m.setPools(m.randPools())
		m.log("%d SetPools %s", i, fmtPools(m.pools))
		m.a.SetPools(m.pools)
		m.check(before, "")
	case r < 70:
		m.assign(i, before, svc, m.randRequest(svc))
	case r < 80:
		if req, ok := m.reqs[svc]; ok {
			m.assign(i, before, svc, req)
		}
	case r < 95:
		m.log("%d Release %s", i, svc)
		m.a.Release(svc)
		delete(m.reqs, svc)
		if h := m.a.Holds(svc); h != nil {
			m.t.Errorf("Release(%s): still holds %v", svc, h)
		}
		m.check(before, svc)
	default:
		m.log("%d restart", i)
		m.seen["restart"]++
		m.restart()
		m.check(before, "")
	}
}

func (m *model) assign(i int, before map[string][]netip.Addr, svc string, req ipam.Request) {
	m.log("%d Assign %+v", i, req)
	res := m.a.Assign(req)
	m.log("   -> %+v", outcomeOf(res))
	m.reqs[svc] = req
	m.count(res)
	m.checkAssign(before, req, res)
	m.check(before, svc)

	// The same request again changes nothing.
	again := m.a.Assign(req)
	want := outcome{Addresses: strs(res.Addresses), Orphans: strs(res.Orphans)}
	if diff := diff(want, outcome{Addresses: strs(again.Addresses), Released: strs(again.Released), Orphans: strs(again.Orphans)}); diff != "" {
		m.t.Errorf("Assign(%s) twice: second result (-want +got):\n%s", svc, diff)
	}
	m.check(before, svc)
}

func (m *model) count(res ipam.Result) {
	if len(res.Orphans) > 0 {
		m.seen["orphan"]++
	}
	if len(res.Released) > 0 {
		m.seen["released"]++
	}
	for _, r := range res.Refused {
		if r.Addr.IsValid() {
			m.seen["refused address"]++
			if strings.Contains(r.Reason, "maxAddressesPerService") {
				m.seen["per-family limit"]++
			}
		} else {
			m.seen["refused family"]++
		}
	}
	if len(res.Addresses) == 2 && ipam.FamilyOf(res.Addresses[0]) != ipam.FamilyOf(res.Addresses[1]) {
		m.seen["dual-stack holder"]++
	}
	if len(res.Addresses) > 1 && ipam.FamilyOf(res.Addresses[0]) == ipam.FamilyOf(res.Addresses[1]) {
		m.seen["several of a family"]++
	}
	for _, st := range m.a.Pools() {
		if len(st.Conflicts) > 0 {
			m.seen["conflict"]++
		}
		if st.Err != nil {
			m.seen["pool error"]++
		}
	}
	for _, p := range m.valids {
		switch {
		case p.Disabled:
			m.seen["disabled pool"]++
		case !p.AutoAssign:
			m.seen["manual pool"]++
		case p.AvoidBuggyIPs:
			m.seen["buggy-avoiding pool"]++
		}
	}
}

// restart rebuilds the allocator as the controller does after a restart: the same pools, then
// every Service's addresses from its status, in name order.
func (m *model) restart() {
	b := ipam.New()
	b.SetPools(m.pools)
	for i := range propServices {
		svc := svcName(i)
		h := m.a.Holds(svc)
		if h == nil {
			continue
		}
		if r := b.Restore(m.reqs[svc], h); r != nil {
			m.t.Errorf("restart: Restore(%s, %v) refused %v", svc, h, r)
		}
	}
	old := m.snapshot()
	oldPools := fmtStatus(m.a.Pools())
	m.a = b
	if diff := cmp.Diff(old, m.snapshot(), cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
		m.t.Errorf("restart: holdings (-before +after):\n%s", diff)
	}
	if diff := diff(oldPools, fmtStatus(m.a.Pools())); diff != "" {
		m.t.Errorf("restart: pools (-before +after):\n%s", diff)
	}
}

// check verifies the invariants that hold after any operation. target is the Service the
// operation was about; every other Service must hold what it held before.
func (m *model) check(before map[string][]netip.Addr, target string) {
	t := m.t
	t.Helper()
	after := m.snapshot()
	holders := map[netip.Addr][]string{}
	for svc, h := range after {
		if _, ok := m.reqs[svc]; !ok {
			t.Errorf("%s holds %v but was released or never assigned", svc, h)
		}
		seen := map[netip.Addr]bool{}
		for _, addr := range h {
			if seen[addr] {
				t.Errorf("%s holds %s twice: %v", svc, addr, h)
			}
			seen[addr] = true
			holders[addr] = append(holders[addr], svc)
		}
	}
	// Holds and Holders agree, and nobody else holds anything.
	var all []netip.Addr
	for addr, svcs := range holders {
		all = append(all, addr)
		slices.Sort(svcs)
		if diff := diff(svcs, m.a.Holders(addr)); diff != "" {
			t.Errorf("Holders(%s) disagrees with Holds (-Holds +Holders):\n%s", addr, diff)
		}
		if len(svcs) > 1 {
			m.seen["shared address"]++
			m.checkShared(addr, svcs)
		}
	}
	slices.SortFunc(all, netip.Addr.Compare)
	if diff := diff(strs(all), strs(ipam.HeldAddrs(m.a))); diff != "" {
		t.Errorf("held addresses: Holds (-) and the allocator's index (+) disagree:\n%s", diff)
	}
	// Other Services' addresses do not move.
	for i := range propServices {
		svc := svcName(i)
		if svc != target && !slices.Equal(before[svc], after[svc]) {
			t.Errorf("%s held %v and now holds %v, though the operation was about %q", svc, before[svc], after[svc], target)
		}
	}
	m.checkPools(all)
}

// checkShared: Services share an address only with the same key, the same Local and no
// colliding port.
func (m *model) checkShared(addr netip.Addr, svcs []string) {
	first := m.reqs[svcs[0]]
	for i, x := range svcs {
		r := m.reqs[x]
		if r.SharingKey == "" || r.SharingKey != first.SharingKey || r.Local != first.Local {
			m.t.Errorf("%s is shared by %v with keys/Local %q/%v and %q/%v", addr, svcs, first.SharingKey, first.Local, r.SharingKey, r.Local)
		}
		for _, y := range svcs[i+1:] {
			for _, p := range r.Ports {
				if slices.Contains(m.reqs[y].Ports, p) {
					m.t.Errorf("%s is shared by %s and %s, both on port %s", addr, x, y, p)
				}
			}
		}
	}
}

// checkPools recounts every pool's status.
func (m *model) checkPools(held []netip.Addr) {
	want := map[string]string{}
	for _, p := range m.pools {
		if !m.valid(p) {
			want[p.Name] = "error"
			continue
		}
		conflicts := m.conflicts[p.Name]
		var fams []string
		for _, fam := range []ipam.Family{ipam.IPv4, ipam.IPv6} {
			if !slices.ContainsFunc(p.Ranges, func(r ipam.Range) bool { return ipam.FamilyOf(r.From) == fam }) {
				continue
			}
			total, used := len(m.usable(p, fam)), 0
			for _, addr := range held {
				if o := m.owner(addr); ipam.FamilyOf(addr) == fam && o != nil && o.Name == p.Name {
					used++
				}
			}
			fams = append(fams, fmt.Sprintf("%s %d/%d", fam, used, total))
		}
		want[p.Name] = fmt.Sprintf("conflicts %v %s", conflicts, strings.Join(fams, " "))
	}
	if diff := diff(want, fmtStatus(m.a.Pools())); diff != "" {
		m.t.Errorf("pool status (-recount +Pools):\n%s", diff)
	}
}

func fmtStatus(sts []ipam.PoolStatus) map[string]string {
	out := map[string]string{}
	for _, st := range sts {
		if st.Err != nil {
			out[st.Name] = "error"
			continue
		}
		var fams []string
		for _, fam := range []ipam.Family{ipam.IPv4, ipam.IPv6} {
			if n, ok := st.Total[fam]; ok {
				fams = append(fams, fmt.Sprintf("%s %d/%s", fam, st.Used[fam], n))
			}
		}
		out[st.Name] = fmt.Sprintf("conflicts %v %s", st.Conflicts, strings.Join(fams, " "))
	}
	return out
}

// checkAssign verifies what one Assign did.
func (m *model) checkAssign(before map[string][]netip.Addr, req ipam.Request, res ipam.Result) {
	t := m.t
	t.Helper()
	svc := req.Service
	h := m.a.Holds(svc)
	wanted := wantedFams(req)
	// Result.Addresses is what the Service holds, in the order of its families.
	sorted := slices.Clone(h)
	slices.SortFunc(sorted, func(x, y netip.Addr) int {
		if d := slices.Index(wanted, ipam.FamilyOf(x)) - slices.Index(wanted, ipam.FamilyOf(y)); d != 0 {
			return d
		}
		return x.Compare(y)
	})
	if diff := diff(strs(sorted), strs(res.Addresses)); diff != "" {
		t.Errorf("Result.Addresses (-Holds +Result):\n%s", diff)
	}

	var perFam [7]int
	for _, addr := range h {
		fam := ipam.FamilyOf(addr)
		perFam[fam]++
		if !slices.Contains(wanted, fam) {
			t.Errorf("%s holds %s, not of its families %v", svc, addr, wanted)
		}
		if !req.KeepOnly && len(req.Addresses) > 0 && !slices.Contains(req.Addresses, addr) {
			t.Errorf("%s holds %s, which it did not request (%v)", svc, addr, req.Addresses)
		}
	}
	if !req.KeepOnly && len(req.Addresses) == 0 && (perFam[ipam.IPv4] > 1 || perFam[ipam.IPv6] > 1) {
		t.Errorf("%s requests no address and holds %v", svc, h)
	}
	if req.Policy == ipam.RequireDualStack && len(h) > 0 && (perFam[wanted[0]] == 0 || perFam[wanted[1]] == 0) {
		t.Errorf("%s is RequireDualStack and holds %v", svc, h)
	}

	prevHolders := map[netip.Addr][]string{}
	for s, as := range before {
		for _, addr := range as {
			prevHolders[addr] = append(prevHolders[addr], s)
		}
	}
	// taken: held by anybody now, or by another Service before (it is still).
	taken := func(addr netip.Addr) bool {
		return m.a.Holders(addr) != nil || slices.ContainsFunc(prevHolders[addr], func(s string) bool { return s != svc })
	}
	// limit is, per family, the most addresses the pools of its new addresses allow.
	var limit [7]int
	for _, addr := range h {
		if slices.Contains(before[svc], addr) {
			continue // kept, whatever the pools say now
		}
		if req.KeepOnly {
			t.Errorf("%s got %s, though its request was KeepOnly", svc, addr)
		}
		m.checkNew(req, addr, len(prevHolders[addr]) > 0, taken)
		if p := m.owner(addr); p != nil {
			limit[ipam.FamilyOf(addr)] = max(limit[ipam.FamilyOf(addr)], p.MaxPerService, 1)
		}
	}
	for _, fam := range []ipam.Family{ipam.IPv4, ipam.IPv6} {
		if limit[fam] > 0 && perFam[fam] > limit[fam] {
			t.Errorf("%s got new %s addresses and holds %d of them, more than its pools allow (%d): %v", svc, fam, perFam[fam], limit[fam], h)
		}
	}
	if req.KeepOnly {
		m.seen["keep-only"]++
		if len(res.Refused) > 0 {
			t.Errorf("%s is KeepOnly and was refused %v", svc, res.Refused)
		}
	}

	// A family refused for an automatic address: no pool that may serve it has a free one.
	if len(req.Addresses) == 0 {
		for _, r := range res.Refused {
			if r.Addr.IsValid() {
				continue
			}
			for _, p := range m.validPools() {
				if !m.autoServes(p, req) {
					continue
				}
				for _, addr := range m.usable(p, r.Family) {
					if !taken(addr) {
						t.Errorf("%s refused %s (%s), but pool %s has %s free", svc, r.Family, r.Reason, p.Name, addr)
					}
				}
			}
		}
	} else if req.Policy != ipam.RequireDualStack {
		// A requested address refused: it could not be granted.
		for _, r := range res.Refused {
			if r.Addr.IsValid() {
				if why := m.grantable(req, r.Addr, perFam[ipam.FamilyOf(r.Addr)]); why == "" {
					t.Errorf("%s refused %s (%s), but it could be granted", svc, r.Addr, r.Reason)
				}
			}
		}
	}
}

// checkNew verifies an address a Service got in this call.
func (m *model) checkNew(req ipam.Request, addr netip.Addr, wasHeld bool, taken func(netip.Addr) bool) {
	t := m.t
	t.Helper()
	p := m.owner(addr)
	if p == nil {
		t.Errorf("%s got %s, which lies in no pool or where pools overlap", req.Service, addr)
		return
	}
	requested := slices.Contains(req.Addresses, addr)
	switch {
	case !slices.Contains(req.Pools, p.Name):
		t.Errorf("%s got %s from pool %s, which does not serve it", req.Service, addr, p.Name)
	case p.Disabled:
		t.Errorf("%s got %s from disabled pool %s", req.Service, addr, p.Name)
	case !requested && !p.AutoAssign && !req.NamedPool:
		t.Errorf("%s got %s from pool %s without automatic assignment", req.Service, addr, p.Name)
	case p.AvoidBuggyIPs && isBuggy(addr):
		t.Errorf("%s got %s from pool %s, which avoids it", req.Service, addr, p.Name)
	}
	if requested || wasHeld {
		return
	}
	// A free address: the lowest free one of the first pool, by priority, that has one.
	fam := ipam.FamilyOf(addr)
	for _, q := range m.validPools() {
		if !m.autoServes(q, req) {
			continue
		}
		for _, y := range m.usable(q, fam) {
			if q.Name == p.Name && !y.Less(addr) {
				return
			}
			if !taken(y) {
				t.Errorf("%s got %s from pool %s, but %s of pool %s (priority %d) was free", req.Service, addr, p.Name, y, q.Name, q.Priority)
				return
			}
		}
	}
}

// grantable says why req, holding have addresses of addr's family, may not have addr, or "".
func (m *model) grantable(req ipam.Request, addr netip.Addr, have int) string {
	if !slices.Contains(wantedFams(req), ipam.FamilyOf(addr)) {
		return "family"
	}
	p := m.owner(addr)
	switch {
	case p == nil:
		return "no pool"
	case !slices.Contains(req.Pools, p.Name):
		return "pool does not serve"
	case p.Disabled:
		return "disabled"
	case p.AvoidBuggyIPs && isBuggy(addr):
		return "buggy"
	}
	for _, s := range m.a.Holders(addr) {
		o := m.reqs[s]
		if s == req.Service {
			continue
		}
		if o.SharingKey == "" || o.SharingKey != req.SharingKey || o.Local != req.Local {
			return "held"
		}
		for _, port := range req.Ports {
			if slices.Contains(o.Ports, port) {
				return "port"
			}
		}
	}
	if have >= max(p.MaxPerService, 1) {
		return "limit"
	}
	return ""
}

func (m *model) autoServes(p ipam.Pool, req ipam.Request) bool {
	return slices.Contains(req.Pools, p.Name) && !p.Disabled && (p.AutoAssign || req.NamedPool)
}

// valid: a unique name, some ranges, all of them valid.
func (m *model) valid(p ipam.Pool) bool {
	n := 0
	for _, q := range m.pools {
		if q.Name == p.Name {
			n++
		}
	}
	if n != 1 || len(p.Ranges) == 0 {
		return false
	}
	for _, r := range p.Ranges {
		if r.From.BitLen() != r.To.BitLen() || r.To.Less(r.From) {
			return false
		}
	}
	return true
}

// validPools are the valid pools by priority, then name.
func (m *model) validPools() []ipam.Pool { return m.valids }

// owner is the one valid pool that hands addr out, or nil (none, or a conflict).
func (m *model) owner(addr netip.Addr) *ipam.Pool { return m.owners[addr] }

// usable are the addresses of fam p may hand out, ascending.
func (m *model) usable(p ipam.Pool, fam ipam.Family) []netip.Addr {
	return m.usables[p.Name+"/"+fam.String()]
}

func inPool(p ipam.Pool, addr netip.Addr) bool {
	for _, r := range p.Ranges {
		if r.From.BitLen() == addr.BitLen() && !addr.Less(r.From) && !r.To.Less(addr) {
			return true
		}
	}
	return false
}

func overlaps(p, q ipam.Pool) bool {
	for _, fam := range []ipam.Family{ipam.IPv4, ipam.IPv6} {
		for _, addr := range universe(fam) {
			if inPool(p, addr) && inPool(q, addr) {
				return true
			}
		}
	}
	return false
}

func universe(fam ipam.Family) []netip.Addr {
	if fam == ipam.IPv4 {
		return v4Universe
	}
	return v6Universe
}

func isBuggy(addr netip.Addr) bool {
	return addr.Is4() && (addr.As4()[3] == 0 || addr.As4()[3] == 255)
}

func wantedFams(req ipam.Request) []ipam.Family {
	first := ipam.IPv4
	if len(req.Families) > 0 {
		first = req.Families[0]
	}
	if req.Policy == ipam.SingleStack {
		return []ipam.Family{first}
	}
	if len(req.Families) > 1 && req.Families[1] != first {
		return []ipam.Family{first, req.Families[1]}
	}
	// The API server lists only the cluster's families: a PreferDualStack Service in a
	// single-stack cluster lists one and gets one.
	if len(req.Families) == 1 && req.Policy == ipam.PreferDualStack {
		return []ipam.Family{first}
	}
	if first == ipam.IPv4 {
		return []ipam.Family{ipam.IPv4, ipam.IPv6}
	}
	return []ipam.Family{ipam.IPv6, ipam.IPv4}
}

// randPools makes a new set of pools, or changes one pool of the current set.
func (m *model) randPools() []ipam.Pool {
	r := m.rnd
	if len(m.pools) > 0 && r.IntN(2) == 0 {
		out := slices.Clone(m.pools)
		i := r.IntN(len(out))
		switch r.IntN(6) {
		case 0:
			out[i].Disabled = !out[i].Disabled
		case 4:
			out[i].MaxPerService = r.IntN(4)
		case 1:
			out[i].AutoAssign = !out[i].AutoAssign
		case 2:
			out[i].Priority = r.IntN(3)
		case 3:
			out[i].Ranges = append(slices.Clone(out[i].Ranges), m.randRange())
		default:
			out = slices.Delete(out, i, i+1)
		}
		return out
	}
	var out []ipam.Pool
	for range 1 + r.IntN(5) {
		p := ipam.Pool{
			Name:          fmt.Sprintf("p%d", r.IntN(propPools)),
			AutoAssign:    r.IntN(5) > 0,
			AvoidBuggyIPs: r.IntN(3) == 0,
			Disabled:      r.IntN(7) == 0,
			Priority:      r.IntN(3),
			MaxPerService: max(0, r.IntN(6)-2), // mostly unset (one per family)
		}
		if slices.ContainsFunc(out, func(q ipam.Pool) bool { return q.Name == p.Name }) && r.IntN(10) > 0 {
			continue // a name used twice, now and then
		}
		if r.IntN(30) > 0 {
			for range 1 + r.IntN(2) {
				p.Ranges = append(p.Ranges, m.randRange())
			}
		}
		out = append(out, p)
	}
	return out
}

func (m *model) randRange() ipam.Range {
	u := universe(ipam.Family(4 + 2*m.rnd.IntN(2)))
	i := m.rnd.IntN(len(u))
	j := min(i+m.rnd.IntN(16), len(u)-1)
	if m.rnd.IntN(25) == 0 {
		i, j = j, i // backwards, unless i == j
	}
	return ipam.Range{From: u[i], To: u[j]}
}

func (m *model) randRequest(svc string) ipam.Request {
	r := m.rnd
	req := ipam.Request{Service: svc, Policy: ipam.Policy(r.IntN(3))}
	req.Families = [][]ipam.Family{nil, {ipam.IPv4}, {ipam.IPv6}, {ipam.IPv4, ipam.IPv6}, {ipam.IPv6, ipam.IPv4}}[r.IntN(5)]
	for i := range propPools + 1 {
		if r.IntN(2) == 0 {
			req.Pools = append(req.Pools, fmt.Sprintf("p%d", i)) // p6 never exists
		}
	}
	req.NamedPool = r.IntN(5) == 0
	req.KeepOnly = r.IntN(20) == 0
	if r.IntN(4) == 0 {
		if len(m.pools) > 0 && r.IntN(3) == 0 {
			// Several addresses of one pool that serves the Service: the per-family limit.
			p := m.pools[r.IntN(len(m.pools))]
			if len(p.Ranges) > 0 {
				addr := p.Ranges[r.IntN(len(p.Ranges))].From
				for range 2 + r.IntN(3) {
					req.Addresses = append(req.Addresses, addr)
					addr = addr.Next()
				}
				if !slices.Contains(req.Pools, p.Name) {
					req.Pools = append(req.Pools, p.Name)
				}
			}
		}
		for range 1 + r.IntN(3) {
			switch r.IntN(9) {
			case 0:
				req.Addresses = append(req.Addresses, outsiders[r.IntN(len(outsiders))])
			case 1, 2, 3, 4:
				req.Addresses = append(req.Addresses, v4Universe[r.IntN(len(v4Universe))])
			default:
				req.Addresses = append(req.Addresses, v6Universe[r.IntN(len(v6Universe))])
			}
		}
	}
	if r.IntN(5) < 2 {
		req.SharingKey = fmt.Sprintf("k%d", r.IntN(2))
	}
	for _, p := range propPorts {
		if r.IntN(3) == 0 {
			req.Ports = append(req.Ports, p)
		}
	}
	req.Local = r.IntN(5) == 0
	return req
}

func fmtPools(ps []ipam.Pool) string {
	var out []string
	for _, p := range ps {
		out = append(out, fmt.Sprintf("{%s %v auto=%v buggy=%v disabled=%v prio=%d max=%d}",
			p.Name, strs(p.Ranges), p.AutoAssign, p.AvoidBuggyIPs, p.Disabled, p.Priority, p.MaxPerService))
	}
	return strings.Join(out, " ")
}

// diff is cmp.Diff, only faster when there is no difference (the common case here).
func diff(x, y any) string {
	if reflect.DeepEqual(x, y) {
		return ""
	}
	return cmp.Diff(x, y)
}
