package speaker

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/bgp"
	"github.com/ferrolb/ferrolb/internal/config"
)

// bgpInput is what the BGP plan needs to know of this node besides the cluster.
type bgpInput struct {
	node      *corev1.Node // this node
	class     string
	namespace string // the speaker's: where peers' Secrets are read
}

// bgpPlan is what this node's BGP speaker runs: its identity, sessions and paths (also what
// the state file keeps), a report per BGPPeer meant for this node (for its status), and the
// problems found on the way.
type bgpPlan struct {
	state bgpState
	// sends are, per Service (key) and address, the BGPPeers (names) this node sends it to.
	sends    serviceSends
	reports  map[string]peerReport
	problems []nodeProblem
}

// planBGP works out which sessions this node opens (the BGPPeers that select it and can be
// set up as written: password Secret, BFD profile, one BGPPeer per address), with which
// router ID and ASN, and which paths it sends on each (paths). It is pure.
func planBGP(snap config.Snapshot, problems []config.Problem, cl cluster, in bgpInput) bgpPlan {
	me := in.node
	plan := bgpPlan{reports: map[string]peerReport{}, problems: configProblems(problems, "IPPool", "BGPAdvertisement", "BFDProfile")}
	reject := func(obj *v1.BGPPeer, name string, err error) {
		plan.problems = append(plan.problems, nodeProblem{obj: obj, kind: "BGPPeer", event: true, reason: "InvalidConfiguration",
			msg: fmt.Sprintf("BGPPeer %s not set up: %v", name, err)})
		plan.reports[name] = peerReport{why: err.Error()}
	}
	// A BGPPeer whose spec does not parse selects no node that can be told: every node says so.
	for _, p := range problems {
		if obj, ok := p.Object.(*v1.BGPPeer); ok && !slices.ContainsFunc(snap.BGPPeers, func(c config.BGPPeer) bool { return c.Name == obj.Name }) {
			reject(obj, obj.Name, p.Err)
		}
	}
	var (
		peers    []bgp.Peer
		byName   = map[string]netip.Addr{}
		routerID netip.Addr
	)
	for _, cp := range snap.BGPPeers {
		if !cp.MatchesNode(me.Labels) {
			continue
		}
		obj := cl.bgpPeer(cp.Name)
		if cp.BFDError != nil {
			reject(obj, cp.Name, cp.BFDError)
			continue
		}
		if ref := cp.PasswordSecret; ref.Name != "" {
			var err error
			if cp.Peer.Password, err = password(cl.secrets, in.namespace, ref); err != nil {
				reject(obj, cp.Name, config.FieldError{Field: "spec.passwordSecretRef", Reason: err.Error()})
				continue
			}
		}
		if slices.ContainsFunc(peers, func(p bgp.Peer) bool { return p.Address == cp.Peer.Address }) {
			reject(obj, cp.Name, config.FieldError{Field: "spec.peerAddress", Reason: fmt.Sprintf("%v is already the address of another BGPPeer for this node", cp.Peer.Address)})
			continue
		}
		if !routerID.IsValid() {
			routerID = cp.RouterID
		}
		peers = append(peers, cp.Peer)
		byName[cp.Name] = cp.Peer.Address
		plan.reports[cp.Name] = peerReport{addr: cp.Peer.Address}
	}
	if len(peers) == 0 {
		return plan
	}
	if !routerID.IsValid() {
		routerID = nodeIPv4(me)
	}
	if !routerID.IsValid() {
		err := errors.New("no BGP router ID: the node has no IPv4 InternalIP; set spec.routerID on its BGPPeers")
		plan.problems = append(plan.problems, nodeProblem{obj: me, kind: "Node", event: true, reason: "InvalidConfiguration", msg: err.Error()})
		for name := range byName {
			plan.reports[name] = peerReport{why: err.Error()}
		}
		return plan
	}
	asn := peers[0].LocalASN
	for _, p := range peers {
		asn = min(asn, p.LocalASN)
	}
	plan.state = bgpState{RouterID: routerID, ASN: asn, Peers: peers}
	// An excluded node keeps its sessions (routers see it healthy) but sends no paths.
	if _, excluded := me.Labels[LabelExcludeFromLB]; !excluded {
		plan.state.Paths, plan.sends = paths(cl, me, in.class, snap, peers, byName)
	}
	return plan
}

// password reads a BGPPeer's MD5 password from its Secret, which must be in the speaker's own
// namespace (the only one whose Secrets it may read).
func password(secrets []corev1.Secret, namespace string, ref v1.SecretReference) (string, error) {
	ns := ref.Namespace
	if ns == "" {
		ns = namespace
	}
	if ns != namespace {
		return "", fmt.Errorf("secret %s/%s: the speaker reads Secrets only in its own namespace, %s", ns, ref.Name, namespace)
	}
	i := slices.IndexFunc(secrets, func(s corev1.Secret) bool { return s.Namespace == ns && s.Name == ref.Name })
	if i < 0 {
		return "", fmt.Errorf("secret %s/%s: not found", ns, ref.Name)
	}
	pw, ok := secrets[i].Data[PasswordKey]
	if !ok || len(pw) == 0 {
		return "", fmt.Errorf("secret %s/%s has no %q key", ns, ref.Name, PasswordKey)
	}
	return string(pw), nil
}

// attrSet is what one peer is sent with one prefix, merged over the advertisements that
// select it: communities add up; the first advertisement (by name) with a local
// preference sets it.
type attrSet struct {
	communities []uint32
	large       [][3]uint32
	localPref   *uint32
}

func (a attrSet) key() string {
	lp := "-"
	if a.localPref != nil {
		lp = fmt.Sprint(*a.localPref)
	}
	return fmt.Sprint(a.communities, a.large, lp)
}

// paths are what this node advertises: every address of every Service it is eligible for
// (with externalTrafficPolicy Local, only if it has a ready endpoint), under every
// advertisement that selects the address's pool, the Service and this node, to the peers
// the advertisement names (all when it names none); and per Service and address the BGPPeers
// it goes to.
func paths(cl cluster, me *corev1.Node, class string, snap config.Snapshot, peers []bgp.Peer, byName map[string]netip.Addr) ([]bgp.Path, serviceSends) {
	sends := serviceSends{}
	nameOf := make(map[netip.Addr]string, len(byName))
	for name, a := range byName {
		nameOf[a] = name
	}
	peerAt := make(map[netip.Addr]bgp.Peer, len(peers))
	for _, p := range peers {
		peerAt[p.Address] = p
	}
	all := make([]netip.Addr, 0, len(peers))
	for _, p := range peers {
		all = append(all, p.Address)
	}
	merged := map[netip.Prefix]map[netip.Addr]*attrSet{}
	for i := range cl.services {
		svc := &cl.services[i]
		if !config.Served(svc, class) {
			continue
		}
		if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal &&
			!slices.Contains(readyNodes(svc, cl.slices), me.Name) {
			continue
		}
		for _, addr := range config.Ingress(svc) {
			pool := snap.PoolOf(addr)
			for _, ad := range snap.BGPAdvertisements {
				if (len(ad.Pools) > 0 && !slices.Contains(ad.Pools, pool)) || !ad.MatchesService(svc.Namespace, svc.Name, svc.Labels) || !ad.MatchesNode(me.Labels) {
					continue
				}
				targets := all
				if len(ad.Peers) > 0 {
					targets = nil
					for _, name := range ad.Peers {
						if a, ok := byName[name]; ok {
							targets = append(targets, a)
						}
					}
				}
				p := ad.Path(addr)
				for _, t := range targets {
					// The speaker sends a prefix only on sessions of its family.
					if peerAt[t].Carries(addr) {
						sends.add(config.Key(svc), addr, nameOf[t])
					}
				}
				for _, t := range targets {
					if merged[p.Prefix] == nil {
						merged[p.Prefix] = map[netip.Addr]*attrSet{}
					}
					m := merged[p.Prefix][t]
					if m == nil {
						m = &attrSet{}
						merged[p.Prefix][t] = m
					}
					for _, c := range p.Communities {
						if !slices.Contains(m.communities, c) {
							m.communities = append(m.communities, c)
						}
					}
					for _, c := range p.LargeCommunities {
						if !slices.Contains(m.large, c) {
							m.large = append(m.large, c)
						}
					}
					if m.localPref == nil {
						m.localPref = p.LocalPref
					}
				}
			}
		}
	}
	// One path per prefix and distinct attributes, to the peers that get those.
	var out []bgp.Path
	for pfx, byPeer := range merged {
		groups := map[string]*bgp.Path{}
		for peer, m := range byPeer {
			slices.Sort(m.communities)
			slices.SortFunc(m.large, func(a, b [3]uint32) int { return slices.Compare(a[:], b[:]) })
			k := m.key()
			g := groups[k]
			if g == nil {
				g = &bgp.Path{Prefix: pfx, Communities: m.communities, LargeCommunities: m.large, LocalPref: m.localPref, Peers: []netip.Addr{}}
				groups[k] = g
			}
			g.Peers = append(g.Peers, peer)
		}
		for _, g := range groups {
			slices.SortFunc(g.Peers, netip.Addr.Compare)
			out = append(out, *g)
		}
	}
	return out, sends
}

// nodeIPv4 is the node's first IPv4 InternalIP, the router ID when no BGPPeer sets one.
func nodeIPv4(n *corev1.Node) netip.Addr {
	for _, a := range config.InternalIPs(n) {
		if a.Is4() {
			return a
		}
	}
	return netip.Addr{}
}

// serviceSends are, per Service (key) and address, the BGPPeers (names) a node sends it to.
type serviceSends map[string]map[netip.Addr][]string

func (s serviceSends) add(svc string, addr netip.Addr, peer string) {
	if s[svc] == nil {
		s[svc] = map[netip.Addr][]string{}
	}
	if !slices.Contains(s[svc][addr], peer) {
		s[svc][addr] = append(s[svc][addr], peer)
	}
}

// byAddress are the Services of each address sent (for the metrics).
func (s serviceSends) byAddress() map[netip.Addr][]string {
	out := map[netip.Addr][]string{}
	for svc, addrs := range s {
		for a := range addrs {
			out[a] = append(out[a], svc)
		}
	}
	for a := range out {
		slices.Sort(out[a])
	}
	return out
}
