package bgp

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// GoBGP sends every path of its global RIB to every peer, with the same attributes, unless
// an export policy says otherwise; per-peer policies exist only for route-server clients.
// So one global export policy carries the per-peer choices: a statement per (peer, family,
// attributes) group matches the peer (a neighbor set) and the group's prefixes (a prefix
// set), adds the group's attributes and accepts; anything else is rejected. The statements
// change only when a group appears or goes; a Service coming or going only adds or removes
// one prefix in a set.

// attrs are the attributes one peer gets with one prefix, as GoBGP's policy actions spell
// them; comparable, so that equal attributes share a statement.
type attrs struct {
	communities string // comma-separated "ASN:value"
	large       string // comma-separated "global:local1:local2"
	localPref   string // decimal; empty: none
	nextHop     string // empty: the RIB's (self)
}

func attrsOf(p Path) attrs {
	var a attrs
	cs := make([]string, 0, len(p.Communities))
	for _, c := range p.Communities {
		cs = append(cs, fmt.Sprintf("%d:%d", c>>16, c&0xFFFF))
	}
	a.communities = strings.Join(cs, ",")
	ls := make([]string, 0, len(p.LargeCommunities))
	for _, c := range p.LargeCommunities {
		ls = append(ls, fmt.Sprintf("%d:%d:%d", c[0], c[1], c[2]))
	}
	a.large = strings.Join(ls, ",")
	if p.LocalPref != nil {
		a.localPref = strconv.FormatUint(uint64(*p.LocalPref), 10)
	}
	return a
}

// group is the key of one statement and its prefix set. A prefix set holds one family.
type group struct {
	peer netip.Addr
	v4   bool
	at   attrs
}

func (g group) setName() string {
	h := fnv.New64a()
	fmt.Fprintf(h, "%v|%v|%q|%q|%q|%q", g.peer, g.v4, g.at.communities, g.at.large, g.at.localPref, g.at.nextHop)
	return fmt.Sprintf("ferrolb-p-%016x", h.Sum64())
}

func neighborSetName(a netip.Addr) string { return "ferrolb-n-" + a.String() }

// exportState is the export policy as GoBGP holds it.
type exportState struct {
	gen       int
	policy    string                               // the assigned policy; empty before the first apply
	sig       []string                             // its statements' set names, in order
	sets      map[string]map[netip.Prefix]struct{} // prefix sets and their entries
	neighbors map[netip.Addr]bool                  // neighbor sets
	have      map[netip.Addr]map[netip.Prefix]attrs
	// After apply, until prune: set entries and sets the new state no longer needs.
	staleEntries map[string][]netip.Prefix
	staleSets    []string
	staleNbrs    []netip.Addr
}

func newExportState() exportState {
	return exportState{
		sets:      map[string]map[netip.Prefix]struct{}{},
		neighbors: map[netip.Addr]bool{},
		have:      map[netip.Addr]map[netip.Prefix]attrs{},
	}
}

// apply makes the policy export want (peer -> prefix -> attributes), adding set entries
// and replacing the policy if its statements change; what is no longer needed is removed
// by prune, once the RIB no longer holds the paths concerned. It returns the peers whose
// share changed for a prefix that stays in the RIB unchanged (stays reports which): those
// need their paths re-sent.
func (e *exportState) apply(ctx context.Context, srv *server.BgpServer, want map[netip.Addr]map[netip.Prefix]attrs, stays func(netip.Prefix) bool) ([]netip.Addr, error) {
	var errs []error
	groups := map[string]group{}
	wantSets := map[string]map[netip.Prefix]struct{}{}
	for peer, pfxs := range want {
		for pfx, at := range pfxs {
			g := group{peer: peer, v4: pfx.Addr().Is4(), at: at}
			name := g.setName()
			groups[name] = g
			if wantSets[name] == nil {
				wantSets[name] = map[netip.Prefix]struct{}{}
			}
			wantSets[name][pfx] = struct{}{}
		}
	}
	for name, pfxs := range wantSets {
		have := e.sets[name]
		var add []netip.Prefix
		for pfx := range pfxs {
			if _, ok := have[pfx]; !ok {
				add = append(add, pfx)
			}
		}
		if len(add) == 0 {
			continue
		}
		err := srv.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: prefixSet(name, add)})
		if err != nil {
			errs = append(errs, fmt.Errorf("prefix set %s: %w", name, err))
			continue
		}
		if have == nil {
			have = map[netip.Prefix]struct{}{}
			e.sets[name] = have
		}
		for _, pfx := range add {
			have[pfx] = struct{}{}
		}
	}
	for _, g := range groups {
		if e.neighbors[g.peer] {
			continue
		}
		bits := 32
		if g.peer.Is6() {
			bits = 128
		}
		err := srv.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: &api.DefinedSet{
			DefinedType: api.DefinedType_DEFINED_TYPE_NEIGHBOR,
			Name:        neighborSetName(g.peer),
			List:        []string{netip.PrefixFrom(g.peer, bits).String()},
		}})
		if err != nil {
			errs = append(errs, fmt.Errorf("neighbor set %v: %w", g.peer, err))
			continue
		}
		e.neighbors[g.peer] = true
	}
	if len(errs) > 0 {
		// The policy must not refer to sets GoBGP lacks; keep the old one and retry.
		return nil, errors.Join(errs...)
	}

	sig := slices.Sorted(maps.Keys(groups))
	if e.policy == "" || !slices.Equal(sig, e.sig) {
		if err := e.replacePolicy(ctx, srv, sig, groups); err != nil {
			return nil, err
		}
	}

	var changed []netip.Addr
	for _, peer := range slices.Collect(maps.Keys(union(e.have, want))) {
		h, w := e.have[peer], want[peer]
		for pfx := range union(h, w) {
			a, inH := h[pfx]
			b, inW := w[pfx]
			if (inH != inW || a != b) && stays(pfx) {
				changed = append(changed, peer)
				break
			}
		}
	}
	e.have = want

	e.staleEntries = map[string][]netip.Prefix{}
	e.staleSets, e.staleNbrs = nil, nil
	for name, have := range e.sets {
		w, ok := wantSets[name]
		if !ok {
			e.staleSets = append(e.staleSets, name)
			continue
		}
		for pfx := range have {
			if _, ok := w[pfx]; !ok {
				e.staleEntries[name] = append(e.staleEntries[name], pfx)
			}
		}
	}
	for peer := range e.neighbors {
		if _, ok := want[peer]; !ok {
			e.staleNbrs = append(e.staleNbrs, peer)
		}
	}
	return changed, nil
}

func union[K comparable, V any](a, b map[K]V) map[K]struct{} {
	out := make(map[K]struct{}, len(a)+len(b))
	for k := range a {
		out[k] = struct{}{}
	}
	for k := range b {
		out[k] = struct{}{}
	}
	return out
}

// replacePolicy installs a policy with one statement per group and makes it the export
// policy in one assignment, so there is no moment without one; then removes the old one.
func (e *exportState) replacePolicy(ctx context.Context, srv *server.BgpServer, sig []string, groups map[string]group) error {
	e.gen++
	name := fmt.Sprintf("ferrolb-export-%d", e.gen)
	pol := &api.Policy{Name: name}
	for i, set := range sig {
		g := groups[set]
		act := &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_ACCEPT}
		if g.at.communities != "" {
			act.Community = &api.CommunityAction{Type: api.CommunityAction_TYPE_ADD, Communities: strings.Split(g.at.communities, ",")}
		}
		if g.at.large != "" {
			act.LargeCommunity = &api.CommunityAction{Type: api.CommunityAction_TYPE_ADD, Communities: strings.Split(g.at.large, ",")}
		}
		if g.at.localPref != "" {
			v, _ := strconv.ParseUint(g.at.localPref, 10, 32) // attrsOf wrote it
			act.LocalPref = &api.LocalPrefAction{Value: uint32(v)}
		}
		if g.at.nextHop != "" {
			act.Nexthop = &api.NexthopAction{Address: g.at.nextHop}
		}
		pol.Statements = append(pol.Statements, &api.Statement{
			Name: fmt.Sprintf("%s-%d", name, i),
			Conditions: &api.Conditions{
				PrefixSet:   &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: set},
				NeighborSet: &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: neighborSetName(g.peer)},
			},
			Actions: act,
		})
	}
	if err := srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: pol}); err != nil {
		return fmt.Errorf("add export policy: %w", err)
	}
	err := srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name:          "global",
		Direction:     api.PolicyDirection_POLICY_DIRECTION_EXPORT,
		Policies:      []*api.Policy{{Name: name}},
		DefaultAction: api.RouteAction_ROUTE_ACTION_REJECT,
	}})
	if err != nil {
		_ = srv.DeletePolicy(ctx, &api.DeletePolicyRequest{Policy: &api.Policy{Name: name}, All: true})
		return fmt.Errorf("assign export policy: %w", err)
	}
	old := e.policy
	e.policy, e.sig = name, sig
	if old != "" {
		if err := srv.DeletePolicy(ctx, &api.DeletePolicyRequest{Policy: &api.Policy{Name: old}, All: true}); err != nil {
			return fmt.Errorf("delete old export policy %s: %w", old, err)
		}
	}
	return nil
}

// prune removes the set entries and sets that apply found unneeded.
func (e *exportState) prune(ctx context.Context, srv *server.BgpServer) error {
	var errs []error
	for name, pfxs := range e.staleEntries {
		err := srv.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{DefinedSet: prefixSet(name, pfxs)})
		if err != nil {
			errs = append(errs, fmt.Errorf("prefix set %s: %w", name, err))
			continue
		}
		for _, pfx := range pfxs {
			delete(e.sets[name], pfx)
		}
	}
	for _, name := range e.staleSets {
		err := srv.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{All: true,
			DefinedSet: &api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_PREFIX, Name: name}})
		if err != nil {
			errs = append(errs, fmt.Errorf("prefix set %s: %w", name, err))
			continue
		}
		delete(e.sets, name)
	}
	for _, peer := range e.staleNbrs {
		err := srv.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{All: true,
			DefinedSet: &api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_NEIGHBOR, Name: neighborSetName(peer)}})
		if err != nil {
			errs = append(errs, fmt.Errorf("neighbor set %v: %w", peer, err))
			continue
		}
		delete(e.neighbors, peer)
	}
	e.staleEntries, e.staleSets, e.staleNbrs = nil, nil, nil
	return errors.Join(errs...)
}

func prefixSet(name string, pfxs []netip.Prefix) *api.DefinedSet {
	ds := &api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_PREFIX, Name: name}
	for _, p := range pfxs {
		ds.Prefixes = append(ds.Prefixes, &api.Prefix{
			IpPrefix: p.String(), MaskLengthMin: uint32(p.Bits()), MaskLengthMax: uint32(p.Bits()), //nolint:gosec // 0 to 128
		})
	}
	return ds
}
