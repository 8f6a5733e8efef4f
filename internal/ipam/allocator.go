package ipam

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Policy is a Service's dual-stack policy (spec.ipFamilyPolicy).
type Policy uint8

// The dual-stack policies.
const (
	// SingleStack: one address, of the Service's first family.
	SingleStack Policy = iota
	// PreferDualStack: one address of each family where pools can give it.
	PreferDualStack
	// RequireDualStack: one address of each family, or none: a Service that would end up
	// with one family only (requested addresses included) gives up what it has.
	RequireDualStack
)

// Port is one port a Service exposes; Services that share an address must not collide on
// one.
type Port struct {
	Protocol string
	Number   uint16
}

func (p Port) String() string { return fmt.Sprintf("%d/%s", p.Number, p.Protocol) }

// Request is what a Service asks for.
type Request struct {
	// Service identifies the Service, for example "namespace/name".
	Service string
	// Families are the Service's families in order (spec.ipFamilies); empty means IPv4
	// (both families for a dual-stack policy). The API server lists only the cluster's
	// families, so a PreferDualStack Service in a single-stack cluster lists one, and gets
	// one: an address of a family the cluster cannot route would be refused traffic anyway.
	Families []Family
	Policy   Policy
	// Pools are the pools whose selectors match the Service (the caller resolves them).
	Pools []string
	// NamedPool says the Service named Pools explicitly, so pools with AutoAssign off serve
	// it too.
	NamedPool bool
	// Addresses are specific addresses the Service asks for. When set, the Service gets those
	// of them that can be granted and nothing else: of each family, the first that can be
	// granted, and more only while the pool of the next one allows (Pool.MaxPerService).
	// Addresses it holds and still asks for are kept, however many.
	Addresses []netip.Addr
	// KeepOnly says the Service asks for specific addresses in a way that could not be read
	// (the caller refused the request, for example as too long): it keeps what it holds, as
	// nobody can tell which of those it no longer wants, and is given nothing new. Addresses
	// is then ignored.
	KeepOnly bool
	// SharingKey lets Services with the same key share an address when their ports do not
	// collide and Local agrees.
	SharingKey string
	Ports      []Port
	// Local is externalTrafficPolicy: Local, which Services sharing an address must agree on.
	Local bool
}

// Refusal is an address (or, when Addr is invalid, a family) the Service did not get or lost,
// and why.
type Refusal struct {
	Addr   netip.Addr
	Family Family
	Reason string
}

func (r Refusal) String() string {
	if r.Addr.IsValid() {
		return r.Addr.String() + ": " + r.Reason
	}
	return r.Family.String() + ": " + r.Reason
}

// Result is what a Service holds after Assign, and what it was refused.
type Result struct {
	// Addresses the Service holds, in the order of its families.
	Addresses []netip.Addr
	// Refused lists requested addresses or families that were not granted.
	Refused []Refusal
	// Released lists addresses the Service held before this call and gave up, with why.
	Released []Refusal
	// Orphans are held addresses that no pool holds any more. They stay with the Service
	// until it is deleted, stops being a LoadBalancer, or asks for other addresses.
	Orphans []netip.Addr
}

// holding is who holds one address.
type holding struct {
	key   string
	local bool
	// services hold the address with their ports; nearly always one, so a slice (cheaper to
	// build than a map).
	services []holder
}

type holder struct {
	service string
	ports   []Port
}

// index is the position of svc in h.services, or -1.
func (h *holding) index(svc string) int {
	for i := range h.services {
		if h.services[i].service == svc {
			return i
		}
	}
	return -1
}

// Allocator hands out addresses. It is not safe for concurrent use; the caller serialises.
type Allocator struct {
	pools    map[string]*pool
	order    []*pool // valid pools by priority, then name
	index    map[Family][]indexEntry
	holders  map[netip.Addr]*holding
	services map[string][]netip.Addr            // what each Service holds, in the order it got them
	shared   map[string]map[netip.Addr]struct{} // sharing key -> addresses held under it
	taken    func(netip.Addr) bool              // whether anybody holds an address
}

// New returns an allocator with no pools.
func New() *Allocator {
	a := &Allocator{
		pools:    map[string]*pool{},
		index:    map[Family][]indexEntry{},
		holders:  map[netip.Addr]*holding{},
		services: map[string][]netip.Addr{},
		shared:   map[string]map[netip.Addr]struct{}{},
	}
	// Built once: a method value made per call would allocate.
	a.taken = func(x netip.Addr) bool { return a.holders[x] != nil }
	return a
}

// Holds returns the addresses a Service holds.
func (a *Allocator) Holds(svc string) []netip.Addr {
	return slices.Clone(a.services[svc])
}

// Holders returns the Services holding addr, sorted.
func (a *Allocator) Holders(addr netip.Addr) []string {
	h := a.holders[addr]
	if h == nil {
		return nil
	}
	out := make([]string, 0, len(h.services))
	for _, s := range h.services {
		out = append(out, s.service)
	}
	slices.Sort(out)
	return out
}

// Restore records that req.Service holds addrs, as its status says, without consulting
// pools: it rebuilds the allocator's view after a restart. An address already held by a
// Service it may not share with is refused (the earlier holder keeps it).
func (a *Allocator) Restore(req Request, addrs []netip.Addr) []Refusal {
	var refused []Refusal
	for _, addr := range addrs {
		if !addr.IsValid() {
			refused = append(refused, Refusal{Addr: addr, Family: FamilyOf(addr), Reason: "not an IP address"})
			continue
		}
		if a.holdsAddr(req.Service, addr) {
			continue
		}
		if why := a.shareable(addr, req); why != "" {
			refused = append(refused, Refusal{Addr: addr, Family: FamilyOf(addr), Reason: why})
			continue
		}
		a.hold(addr, req)
	}
	return refused
}

// Release gives up everything svc holds.
func (a *Allocator) Release(svc string) {
	addrs, ok := a.services[svc]
	if !ok {
		return
	}
	// Forget the Service first, so that unhold does not edit addrs while we range over it
	// (slices.DeleteFunc shifts and zeroes the backing array: a dual-stack Service's second
	// address used to leak, held forever by a deleted Service).
	delete(a.services, svc)
	for _, addr := range addrs {
		a.unhold(addr, svc)
	}
}

// Assign brings what req.Service holds in line with req: it keeps every held address that
// still fits, releases those that do not (saying why), and fills what is missing.
func (a *Allocator) Assign(req Request) Result {
	var res Result
	wantedBuf, n := wantedFamilies(req)
	wanted := wantedBuf[:n]

	// 1. Keep what still fits. A held address is never moved for the allocator's own reasons:
	// only a change to the Service or to the pools that serve it releases one.
	var have [2]int // addresses held, by famIndex
	var heldBuf [4]netip.Addr
	held := append(heldBuf[:0], a.services[req.Service]...) // unhold edits the original
	for _, addr := range held {
		fam := FamilyOf(addr)
		why := ""
		p, conflict := a.poolOf(addr)
		// With KeepOnly nothing is known of what the Service asks for: only a change of its
		// families or of the pools releases anything.
		switch {
		case !req.KeepOnly && len(req.Addresses) > 0 && !slices.Contains(req.Addresses, addr):
			why = "no longer requested"
		case !slices.Contains(wanted, fam):
			why = fmt.Sprintf("the Service no longer has the %s family", fam)
		case !req.KeepOnly && len(req.Addresses) == 0 && have[famIndex(fam)] > 0:
			why = fmt.Sprintf("a Service that requests no address gets one per family, and it holds %s already", fam)
		case p != nil && !serves(p, req):
			why = fmt.Sprintf("pool %s does not serve this Service any more", p.Name)
		default:
			why = a.shareable(addr, req)
		}
		if why != "" {
			a.unhold(addr, req.Service)
			res.Released = append(res.Released, Refusal{Addr: addr, Family: fam, Reason: why})
			continue
		}
		a.hold(addr, req) // refreshes ports and key
		have[famIndex(fam)]++
		if p == nil && conflict == nil {
			res.Orphans = append(res.Orphans, addr)
		}
	}

	// 2. Requested addresses, or one address per wanted family.
	var addedBuf [2]netip.Addr
	added := addedBuf[:0]
	switch {
	case req.KeepOnly:
	case len(req.Addresses) > 0:
		for _, addr := range req.Addresses {
			if a.holdsAddr(req.Service, addr) {
				continue
			}
			if why := a.grantable(addr, req, wanted, have); why != "" {
				res.Refused = append(res.Refused, Refusal{Addr: addr, Family: FamilyOf(addr), Reason: why})
				continue
			}
			a.hold(addr, req)
			added = append(added, addr)
			have[famIndex(FamilyOf(addr))]++
		}
	default:
		for _, fam := range wanted {
			if have[famIndex(fam)] > 0 {
				continue
			}
			addr, why := a.allocate(fam, req)
			if why != "" {
				res.Refused = append(res.Refused, Refusal{Family: fam, Reason: why})
				continue
			}
			a.hold(addr, req)
			added = append(added, addr)
			have[famIndex(fam)]++
		}
	}

	// 3. RequireDualStack: an address of each family, or none at all. This looks at what the
	// Service ends up with, not only at what this call added: requested addresses of one
	// family, or a kept address whose partner was released, leave it with one family too.
	if req.Policy == RequireDualStack {
		a.requireDualStack(req, wanted, have, added, &res)
	}

	res.Addresses = a.Holds(req.Service)
	slices.SortFunc(res.Addresses, func(x, y netip.Addr) int {
		if d := slices.Index(wanted, FamilyOf(x)) - slices.Index(wanted, FamilyOf(y)); d != 0 {
			return d
		}
		return x.Compare(y)
	})
	return res
}

// requireDualStack gives up everything req.Service holds unless it holds an address of each
// wanted family.
func (a *Allocator) requireDualStack(req Request, wanted []Family, have [2]int, added []netip.Addr, res *Result) {
	var missing Family
	for _, fam := range wanted {
		if have[famIndex(fam)] == 0 {
			missing = fam
			break
		}
	}
	if missing == 0 {
		return
	}
	if !req.KeepOnly && len(req.Addresses) > 0 && !slices.ContainsFunc(req.Addresses, func(x netip.Addr) bool { return FamilyOf(x) == missing }) {
		res.Refused = append(res.Refused, Refusal{Family: missing,
			Reason: fmt.Sprintf("RequireDualStack needs an %s address, and none is requested", missing)})
	}
	why := fmt.Sprintf("not kept: RequireDualStack needs an address of each family, and the Service gets no %s address", missing)
	for _, addr := range a.Holds(req.Service) {
		a.unhold(addr, req.Service)
		r := Refusal{Addr: addr, Family: FamilyOf(addr), Reason: why}
		if slices.Contains(added, addr) {
			res.Refused = append(res.Refused, r)
		} else {
			res.Released = append(res.Released, r)
		}
	}
	res.Orphans = nil
}

// wantedFamilies are the families a Service gets addresses of, primary first: out[:n].
func wantedFamilies(req Request) (out [2]Family, n int) {
	out[0] = IPv4
	if len(req.Families) > 0 {
		out[0] = req.Families[0]
	}
	if req.Policy == SingleStack {
		return out, 1
	}
	switch {
	case len(req.Families) > 1 && req.Families[1] != out[0]:
		out[1] = req.Families[1]
	case len(req.Families) == 1 && req.Policy == PreferDualStack:
		return out, 1
	case out[0] == IPv4:
		out[1] = IPv6
	default:
		out[1] = IPv4
	}
	return out, 2
}

// famIndex maps a family to 0 or 1, for arrays indexed by family.
func famIndex(f Family) int {
	if f == IPv6 {
		return 1
	}
	return 0
}

// serves reports whether p is a valid pool that may serve req at all: by request, sharing,
// or, if autoServes says so too, automatic assignment.
func serves(p *pool, req Request) bool {
	return p.err == nil && slices.Contains(req.Pools, p.Name)
}

// autoServes reports whether p may give req an address req did not ask for by address.
func autoServes(p *pool, req Request) bool {
	return serves(p, req) && !p.Disabled && (p.AutoAssign || req.NamedPool)
}

// holdsAddr reports whether svc holds addr.
func (a *Allocator) holdsAddr(svc string, addr netip.Addr) bool {
	return slices.Contains(a.services[svc], addr)
}

// grantable says why addr cannot be given to req, which holds have addresses of each family
// (by famIndex), or "" if it can.
func (a *Allocator) grantable(addr netip.Addr, req Request, wanted []Family, have [2]int) string {
	if !addr.IsValid() {
		return "not an IP address"
	}
	fam := FamilyOf(addr)
	if !slices.Contains(wanted, fam) {
		if req.Policy == SingleStack {
			return fmt.Sprintf("the Service is single-stack %s", wanted[0])
		}
		return fmt.Sprintf("the Service's ipFamilies list only %s", wanted[0])
	}
	p, conflict := a.poolOf(addr)
	switch {
	case conflict != nil:
		return fmt.Sprintf("it lies where pools %s overlap, and neither hands it out", strings.Join(conflict, " and "))
	case p == nil:
		return "no pool holds it"
	case !serves(p, req):
		return fmt.Sprintf("pool %s holds it but does not serve this Service", p.Name)
	case p.Disabled:
		return fmt.Sprintf("pool %s is disabled", p.Name)
	case p.AvoidBuggyIPs && buggy(addr):
		return fmt.Sprintf("pool %s avoids addresses ending in .0 and .255", p.Name)
	}
	if why := a.shareable(addr, req); why != "" {
		return why
	}
	// Last, so that the first address of a family that can be granted is.
	if n, limit := have[famIndex(fam)], p.maxPerService(); n >= limit {
		if limit == 1 {
			return fmt.Sprintf("a Service gets one %s address, and this one holds %s (pool %s allows no more: maxAddressesPerService)",
				fam, a.heldOf(req.Service, fam), p.Name)
		}
		return fmt.Sprintf("a Service gets at most %d %s addresses from pool %s (maxAddressesPerService), and this one holds %d",
			limit, fam, p.Name, n)
	}
	return ""
}

// heldOf is the first address of fam svc holds, for messages.
func (a *Allocator) heldOf(svc string, fam Family) netip.Addr {
	for _, x := range a.services[svc] {
		if FamilyOf(x) == fam {
			return x
		}
	}
	return netip.Addr{}
}

// shareable says why req.Service may not hold addr next to its current holders, or "".
func (a *Allocator) shareable(addr netip.Addr, req Request) string {
	h := a.holders[addr]
	if canShare(h, req) {
		return ""
	}
	others := make([]holder, 0, len(h.services))
	for _, x := range h.services {
		if x.service != req.Service {
			others = append(others, x)
		}
	}
	slices.SortFunc(others, func(x, y holder) int { return strings.Compare(x.service, y.service) })
	names := make([]string, len(others))
	for i, x := range others {
		names[i] = x.service
	}
	switch {
	case h.key == "" || req.SharingKey == "":
		return fmt.Sprintf("held by %s, and both need a sharing key to share it", strings.Join(names, ", "))
	case h.key != req.SharingKey:
		return fmt.Sprintf("held by %s under another sharing key", strings.Join(names, ", "))
	case h.local != req.Local:
		return fmt.Sprintf("held by %s with another externalTrafficPolicy", strings.Join(names, ", "))
	}
	for _, x := range others {
		for _, p := range req.Ports {
			if slices.Contains(x.ports, p) {
				return fmt.Sprintf("port %s collides with %s on the shared address", p, x.service)
			}
		}
	}
	return "" // not reached: canShare said no
}

// canShare reports whether req.Service may hold an address held as h (nil: by nobody): it is
// shareable's fast path, which allocates nothing, for the scan over a sharing key's addresses.
func canShare(h *holding, req Request) bool {
	if h == nil {
		return true
	}
	alone := true
	for _, x := range h.services {
		if x.service == req.Service {
			continue
		}
		alone = false
		for _, p := range req.Ports {
			if slices.Contains(x.ports, p) {
				return false
			}
		}
	}
	return alone || (h.key != "" && h.key == req.SharingKey && h.local == req.Local)
}

// allocate finds an address of fam for req: one it may share under its key, else a free one
// from the first pool, by priority, that may serve it automatically and has one.
func (a *Allocator) allocate(fam Family, req Request) (netip.Addr, string) {
	if req.SharingKey != "" {
		var best netip.Addr
		for addr := range a.shared[req.SharingKey] {
			if FamilyOf(addr) != fam || (best.IsValid() && best.Less(addr)) {
				continue
			}
			// Joining a shared address is a new allocation too: the same pools as for a free
			// address (not disabled, automatic assignment or named), and no .0/.255 where the
			// pool avoids them.
			p, _ := a.poolOf(addr)
			if p == nil || !autoServes(p, req) || (p.AvoidBuggyIPs && buggy(addr)) {
				continue
			}
			if canShare(a.holders[addr], req) {
				best = addr
			}
		}
		if best.IsValid() {
			return best, ""
		}
	}
	tried := false
	for _, p := range a.order {
		sp := p.spaces[fam]
		if sp == nil || !autoServes(p, req) {
			continue
		}
		tried = true
		if addr, ok := sp.take(a.taken); ok {
			return addr, ""
		}
	}
	if !tried {
		return netip.Addr{}, fmt.Sprintf("no enabled pool with automatic assignment and %s addresses serves this Service", fam)
	}
	var names []string
	for _, p := range a.order {
		if p.spaces[fam] != nil && autoServes(p, req) {
			names = append(names, p.Name)
		}
	}
	return netip.Addr{}, fmt.Sprintf("no free %s address in pool %s", fam, strings.Join(names, ", "))
}

func (a *Allocator) hold(addr netip.Addr, req Request) {
	h := a.holders[addr]
	if h == nil {
		h = &holding{}
		a.holders[addr] = h
		if p, _ := a.poolOf(addr); p != nil {
			p.used[FamilyOf(addr)]++
		}
	}
	i := h.index(req.Service)
	if h.key != req.SharingKey && (len(h.services) == 0 || (len(h.services) == 1 && i == 0)) {
		// The only holder changed its key: move the address to the new key's index. (With
		// other holders, shareable has made sure the keys agree.)
		a.unshare(h.key, addr)
		h.key = req.SharingKey
	}
	h.local = req.Local
	if h.key != "" {
		if a.shared[h.key] == nil {
			a.shared[h.key] = map[netip.Addr]struct{}{}
		}
		a.shared[h.key][addr] = struct{}{}
	}
	switch {
	case i < 0:
		// Not a holder yet, so not in the Service's list either (the two indexes agree):
		// no scan of that list, which a Service holding many addresses would pay for each.
		h.services = append(h.services, holder{service: req.Service, ports: slices.Clone(req.Ports)})
		a.services[req.Service] = append(a.services[req.Service], addr)
	case !slices.Equal(h.services[i].ports, req.Ports):
		h.services[i].ports = slices.Clone(req.Ports)
	}
}

func (a *Allocator) unhold(addr netip.Addr, svc string) {
	if addrs, ok := a.services[svc]; ok {
		addrs = slices.DeleteFunc(addrs, func(x netip.Addr) bool { return x == addr })
		if len(addrs) == 0 {
			delete(a.services, svc)
		} else {
			a.services[svc] = addrs
		}
	}
	h := a.holders[addr]
	if h == nil {
		return
	}
	if i := h.index(svc); i >= 0 {
		h.services = slices.Delete(h.services, i, i+1)
	}
	if len(h.services) > 0 {
		return
	}
	delete(a.holders, addr)
	a.unshare(h.key, addr)
	if p, _ := a.poolOf(addr); p != nil {
		p.used[FamilyOf(addr)]--
		if sp := p.spaces[FamilyOf(addr)]; sp != nil {
			sp.free(addr, a.taken)
		}
	}
}

func (a *Allocator) unshare(key string, addr netip.Addr) {
	if key == "" {
		return
	}
	delete(a.shared[key], addr)
	if len(a.shared[key]) == 0 {
		delete(a.shared, key)
	}
}
