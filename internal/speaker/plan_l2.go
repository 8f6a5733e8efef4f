package speaker

import (
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
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
}

// l2Service is one served Service's part of the plan: its addresses under each policy that
// covers it, and the addresses refused.
type l2Service struct {
	svc     *corev1.Service
	entries []l2Entry
	refused []string
}

// conditionWrite is an Announced condition to apply to a Service.
type conditionWrite struct {
	svc  *corev1.Service
	cond *metav1.Condition
}

// assignment is who announces one address of a Service.
type assignment struct {
	addr       netip.Addr
	node       string
	interfaces []string // on this node, when node is this node
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
	for i, p := range snap.L2Policies {
		for _, name := range in.interfaces {
			if p.MatchesInterface(name) {
				polIfs[i] = append(polIfs[i], name)
				if !slices.Contains(plan.state.Interfaces, name) {
					plan.state.Interfaces = append(plan.state.Interfaces, name)
				}
			}
		}
	}
	for i := range cl.services {
		svc := &cl.services[i]
		if !config.Served(svc, in.class) {
			continue
		}
		local := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
		var ready []string
		if local {
			ready = readyNodes(svc, cl.slices)
		}
		s := l2Service{svc: svc}
		for pi, p := range snap.L2Policies {
			if !p.MatchesService(svc.Namespace, svc.Name, svc.Labels) {
				continue
			}
			// The eligible nodes, alive or not: the election (and a speaker running from
			// the state file) takes the live ones among them.
			var cands []string
			for _, n := range cl.nodes {
				if _, excluded := n.Labels[LabelExcludeFromLB]; excluded || !p.MatchesNode(n.Labels) ||
					(ready != nil && !slices.Contains(ready, n.Name)) {
					continue
				}
				cands = append(cands, n.Name)
			}
			if local && ready == nil {
				cands = nil // Local with no ready endpoint anywhere: nobody may announce
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
				s.entries = append(s.entries, e)
			}
		}
		plan.services = append(plan.services, s)
	}
	return plan
}

// elect runs the election on the live set: what this node (node) answers for on which of its
// usable interfaces, and the Announced conditions this node is the one to write (see
// condition), only those that change.
func (p l2Plan) elect(node string, alive, usable []string) (map[netip.Addr][]string, []conditionWrite) {
	var writes []conditionWrite
	claimed := map[netip.Addr][]string{} // interfaces named in the conditions so far
	for _, s := range p.services {
		var as []assignment
		for _, e := range s.entries {
			winner, ok := e.winner(alive)
			if !ok {
				continue
			}
			a := assignment{addr: e.Addr, node: winner}
			if winner == node {
				for _, name := range e.Interfaces {
					if slices.Contains(usable, name) && !slices.Contains(claimed[e.Addr], name) {
						claimed[e.Addr] = append(claimed[e.Addr], name)
						a.interfaces = append(a.interfaces, name)
					}
				}
			}
			as = append(as, a)
		}
		if c := condition(node, s.svc, as, s.refused, alive); c != nil {
			writes = append(writes, conditionWrite{s.svc, c})
		}
	}
	return l2Want(p.state.Entries, node, alive, usable), writes
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
	if p.LoadBalancerIPs {
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
