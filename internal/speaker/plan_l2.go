package speaker

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferrolb/ferrolb/internal/config"
	"github.com/ferrolb/ferrolb/internal/l2/member"
)

// l2Input is what the layer 2 plan needs to know of this node besides the cluster.
type l2Input struct {
	node       string
	class      string
	memberPort uint16
	// interfaces are the node's Ethernet interfaces, up or not.
	interfaces []string
}

// l2Plan is the layer 2 plan before the election: what the state file keeps (peers,
// interfaces, and per address the eligible nodes), and per served Service what its
// Announced condition is made of.
type l2Plan struct {
	state    l2State
	services []l2Service
	// unmatched are the L2Policies that select this node and none of its interfaces: the
	// node is eligible for their addresses and cannot answer for them.
	unmatched []string
}

// l2Service is one served Service's part of the plan: its addresses under each policy that
// covers it, the addresses refused, and whether it needs a condition at all.
type l2Service struct {
	svc     *corev1.Service
	entries []svcEntry
	refused []string
	// noPolicy: the Service has addresses and no L2Policy covers it.
	noPolicy bool
}

// svcEntry is one address of a Service under one policy, and when no node may announce it,
// why (a condition reason) and what to tell the user.
type svcEntry struct {
	l2Entry
	policy      string
	why, detail string
}

// Reasons of a False Announced condition: why nobody announces an address.
const (
	ReasonNoPolicy            = "NoPolicy"
	ReasonExcluded            = "Excluded"
	ReasonNoReadyEndpoint     = "NoReadyEndpoint"
	ReasonNoLiveNode          = "NoLiveNode"
	ReasonNoInterfaceMatched  = "NoInterfaceMatched"
	ReasonExternalIPNotInPool = "ExternalIPNotInPool"
)

// conditionWrite is an Announced condition to apply to a Service.
type conditionWrite struct {
	svc  *corev1.Service
	cond *metav1.Condition
}

// assignment is who announces one address of a Service, or why nobody does (why != "").
type assignment struct {
	addr       netip.Addr
	node       string
	interfaces []string // on this node, when node is this node
	why        string
	detail     string
}

// planL2 works out, from the configuration and the cluster, who may announce each address of
// each served Service: for each L2Policy that covers the Service, the nodes it selects (not
// excluded, and with externalTrafficPolicy Local only those with a ready endpoint) and the
// interfaces of this node it selects. It is pure: the election on the live set comes after
// (elect), so the same plan serves every change of the live set.
func planL2(snap config.Snapshot, cl cluster, in l2Input) l2Plan {
	plan := l2Plan{state: l2State{Peers: peers(cl.nodes, in.memberPort), Policies: len(snap.L2Policies)}}
	// Each policy's interfaces on this node, up or not (the state file keeps them all: one
	// may come up while the speaker runs from it).
	polIfs := make([][]string, len(snap.L2Policies))
	me := cl.node(in.node)
	for i, p := range snap.L2Policies {
		for _, name := range in.interfaces {
			if p.MatchesInterface(name) {
				polIfs[i] = append(polIfs[i], name)
				if !slices.Contains(plan.state.Interfaces, name) {
					plan.state.Interfaces = append(plan.state.Interfaces, name)
				}
			}
		}
		if len(polIfs[i]) == 0 && me != nil && p.MatchesNode(me.Labels) {
			plan.unmatched = append(plan.unmatched, p.Name)
		}
	}
	for i := range cl.services {
		svc := &cl.services[i]
		// Services FerroLB does not allocate for count for their spec.externalIPs only,
		// and only under policies that announce those.
		extOnly := !config.Served(svc, in.class) && config.ExternalIPsOnly(svc)
		if !extOnly && !config.Served(svc, in.class) {
			continue
		}
		local := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
		var ready []string
		if local {
			ready = readyNodes(svc, cl.slices)
		}
		s := l2Service{svc: svc}
		covered := false
		for pi, p := range snap.L2Policies {
			if !p.MatchesService(svc.Namespace, svc.Name, svc.Labels) || extOnly && !p.ExternalIPs {
				continue
			}
			covered = true
			// The eligible nodes, alive or not: the election (and a speaker running from
			// the state file) takes the live ones among them.
			var cands []string
			selected, excluded := 0, 0
			for _, n := range cl.nodes {
				if !p.MatchesNode(n.Labels) {
					continue
				}
				selected++
				if _, ex := n.Labels[LabelExcludeFromLB]; ex {
					excluded++
					continue
				}
				if ready != nil && !slices.Contains(ready, n.Name) {
					continue
				}
				cands = append(cands, n.Name)
			}
			if local && ready == nil {
				cands = nil // Local with no ready endpoint anywhere: nobody may announce
			}
			var why, detail string
			switch {
			case len(cands) > 0:
			case selected == 0:
				why, detail = ReasonExcluded, fmt.Sprintf("L2Policy %s's nodeSelector selects no node", p.Name)
			case excluded == selected:
				why, detail = ReasonExcluded, fmt.Sprintf("every node L2Policy %s selects is labelled %s", p.Name, LabelExcludeFromLB)
			default:
				why, detail = ReasonNoReadyEndpoint, fmt.Sprintf("externalTrafficPolicy Local and no node L2Policy %s selects has a ready endpoint", p.Name)
			}
			for _, c := range addresses(svc, p) {
				pool := snap.PoolOf(c.addr)
				if c.external && pool == "" || len(p.Pools) > 0 && !slices.Contains(p.Pools, pool) {
					// spec.externalIPs is written by whoever may create a Service, unlike
					// the allocated addresses: answering ARP for any of them would let
					// that user take the gateway's address on the segment (CVE-2020-8554
					// carried onto layer 2). Only addresses of the policy's pools (any
					// IPPool when it names none) count.
					if c.external {
						s.refused = append(s.refused, fmt.Sprintf("%s (spec.externalIPs: in no IPPool of L2Policy %s)", c.addr, p.Name))
					}
					continue
				}
				e := l2Entry{Addr: c.addr, Candidates: cands, Interfaces: polIfs[pi]}
				if len(cands) > 0 {
					plan.state.Entries = append(plan.state.Entries, e)
				}
				s.entries = append(s.entries, svcEntry{l2Entry: e, policy: p.Name, why: why, detail: detail})
			}
		}
		// A Service no L2Policy covers is told so while policies exist or it carries the
		// condition; a cluster without any L2Policy (BGP only) never sees it.
		// A Service with external IPs only is ours to tell only once it was announced.
		has := meta.FindStatusCondition(svc.Status.Conditions, ConditionAnnounced) != nil
		if extOnly {
			s.noPolicy = !covered && has
		} else {
			s.noPolicy = !covered && len(config.Ingress(svc)) > 0 && (len(snap.L2Policies) > 0 || has)
		}
		plan.services = append(plan.services, s)
	}
	return plan
}

// elect runs the election on the live set: what this node (node) answers for on which of its
// usable interfaces, the Announced conditions this node is the one to write (see condition),
// only those that change, and what it announces per Service (for the metrics and logs).
func (p l2Plan) elect(node string, alive, usable []string) (map[netip.Addr][]string, []conditionWrite) {
	var writes []conditionWrite
	claimed := map[netip.Addr][]string{} // interfaces named in the conditions so far
	for _, s := range p.services {
		var as []assignment
		for _, e := range s.entries {
			if e.why != "" {
				as = append(as, assignment{addr: e.Addr, why: e.why, detail: e.detail})
				continue
			}
			winner, ok := e.winner(alive)
			if !ok {
				as = append(as, assignment{addr: e.Addr, why: ReasonNoLiveNode,
					detail: fmt.Sprintf("none of the nodes L2Policy %s allows (%s) is alive", e.policy, strings.Join(e.Candidates, ", "))})
				continue
			}
			a := assignment{addr: e.Addr, node: winner}
			if winner == node {
				up := false
				for _, name := range e.Interfaces {
					if !slices.Contains(usable, name) {
						continue
					}
					up = true
					if !slices.Contains(claimed[e.Addr], name) {
						claimed[e.Addr] = append(claimed[e.Addr], name)
						a.interfaces = append(a.interfaces, name)
					}
				}
				if !up {
					a.why, a.detail = ReasonNoInterfaceMatched, fmt.Sprintf("%s is elected and has no interface up that L2Policy %s selects", node, e.policy)
				}
			}
			as = append(as, a)
		}
		if c := condition(node, s, as, alive); c != nil {
			writes = append(writes, conditionWrite{s.svc, c})
		}
	}
	return l2Want(p.state.Entries, node, alive, usable), writes
}

// services are the Services (keys) with each of the addresses in want.
func (p l2Plan) servicesOf(want map[netip.Addr][]string) map[netip.Addr][]string {
	out := make(map[netip.Addr][]string, len(want))
	for _, s := range p.services {
		for _, e := range s.entries {
			if _, ok := want[e.Addr]; ok && !slices.Contains(out[e.Addr], config.Key(s.svc)) {
				out[e.Addr] = append(out[e.Addr], config.Key(s.svc))
			}
		}
	}
	return out
}

// notAnnounced starts the part of an Announced message that lists addresses not announced.
const notAnnounced = "not announced: "

// condition returns the Announced condition to apply to a Service when this node is the one
// to write it, and nil when there is nothing to change. The writer is the elected node of
// the first address that has one (only it knows whether it has an interface to answer on);
// when no address has one, the first live node by name: one writer, the same on every node.
// True when at least one address is announced; False with the first address's reason when
// none is.
func condition(node string, s l2Service, as []assignment, alive []string) *metav1.Condition {
	if len(as) == 0 && len(s.refused) == 0 && !s.noPolicy {
		return nil // nothing to say: no address yet
	}
	writer := ""
	if i := slices.IndexFunc(as, func(a assignment) bool { return a.node != "" }); i >= 0 {
		writer = as[i].node
	} else if len(alive) > 0 {
		writer = alive[0]
	}
	if writer != node {
		return nil
	}
	c := metav1.Condition{Type: ConditionAnnounced, Status: metav1.ConditionTrue, Reason: "Layer2", ObservedGeneration: s.svc.Generation}
	var done, not []string
	for _, a := range as {
		if a.why != "" {
			not = append(not, fmt.Sprintf("%s (%s: %s)", a.addr, a.why, a.detail))
			continue
		}
		d := fmt.Sprintf("%s by %s (layer 2", a.addr, a.node)
		if len(a.interfaces) > 0 {
			d += " on " + strings.Join(a.interfaces, ", ")
		}
		done = append(done, d+")")
	}
	not = append(not, s.refused...)
	var msg []string
	if len(done) > 0 {
		msg = append(msg, "announced: "+strings.Join(done, "; "))
	}
	if len(not) > 0 {
		msg = append(msg, notAnnounced+strings.Join(not, "; "))
	}
	if len(done) == 0 {
		c.Status = metav1.ConditionFalse
		switch i := slices.IndexFunc(as, func(a assignment) bool { return a.why != "" }); {
		case i >= 0:
			c.Reason = as[i].why
		case len(s.refused) > 0:
			c.Reason = ReasonExternalIPNotInPool
		default:
			c.Reason = ReasonNoPolicy
			if s.svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
				msg = append(msg, "no L2Policy with externalIPs: true selects this Service")
			} else {
				msg = append(msg, "no L2Policy selects this Service (it may still be advertised by BGP)")
			}
		}
	}
	c.Message = strings.Join(msg, "; ")
	if old := meta.FindStatusCondition(s.svc.Status.Conditions, ConditionAnnounced); old != nil &&
		old.Status == c.Status && old.Reason == c.Reason && old.Message == c.Message && old.ObservedGeneration == c.ObservedGeneration {
		return nil
	}
	return &c
}

// candidate is a Service address a policy may announce; external: from spec.externalIPs.
type candidate struct {
	addr     netip.Addr
	external bool
}

// addresses are the Service addresses a policy may announce, allocated ones first.
func addresses(svc *corev1.Service, p config.L2Policy) []candidate {
	var out []candidate
	has := func(a netip.Addr) bool {
		return slices.ContainsFunc(out, func(c candidate) bool { return c.addr == a })
	}
	if p.LoadBalancerIPs && svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		for _, a := range config.Ingress(svc) {
			out = append(out, candidate{addr: a})
		}
	}
	if p.ExternalIPs {
		for _, s := range svc.Spec.ExternalIPs {
			if a, err := netip.ParseAddr(s); err == nil && !has(a.Unmap()) {
				out = append(out, candidate{addr: a.Unmap(), external: true})
			}
		}
	}
	return out
}

// readyNodes are the nodes with a ready endpoint of svc; nil if none.
func readyNodes(svc *corev1.Service, eps []discoveryv1.EndpointSlice) []string {
	var out []string
	for _, s := range eps {
		if !sliceOf(&s, svc) {
			continue
		}
		for _, e := range s.Endpoints {
			if e.NodeName == nil || !endpointReady(e) {
				continue
			}
			if !slices.Contains(out, *e.NodeName) {
				out = append(out, *e.NodeName)
			}
		}
	}
	return out
}

// sliceOf tells whether the EndpointSlice s lists endpoints of svc.
func sliceOf(s *discoveryv1.EndpointSlice, svc *corev1.Service) bool {
	return s.Namespace == svc.Namespace && s.Labels[discoveryv1.LabelServiceName] == svc.Name
}

// endpointReady reads an endpoint's ready condition; unset means ready (the API's rule).
func endpointReady(e discoveryv1.Endpoint) bool {
	return e.Conditions.Ready == nil || *e.Conditions.Ready
}

// peers are the other speakers, at their Node's first InternalIP.
func peers(nodes []corev1.Node, port uint16) []member.Peer {
	var out []member.Peer
	for i := range nodes {
		if ips := config.InternalIPs(&nodes[i]); len(ips) > 0 {
			out = append(out, member.Peer{Name: nodes[i].Name, Addr: netip.AddrPortFrom(ips[0], port)})
		}
	}
	return out
}
