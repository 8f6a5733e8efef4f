package speaker

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/config"
	"github.com/ferrolb/ferrolb/internal/l2/member"
)

// ConditionAnnounced is the Service condition that says which node announces each of its
// addresses, and how: "which node has my IP?" answered with kubectl.
const ConditionAnnounced = "ferrolb.io/Announced"

// LabelExcludeFromLB is the well-known Node label that keeps a node out of load balancing.
const LabelExcludeFromLB = "node.kubernetes.io/exclude-from-external-load-balancers"

// l2Reconciler recomputes, from the whole cache and the live set, which addresses this node
// answers for, on which interfaces. It is level-triggered: every event leads to the same full
// computation, so no event can be missed or applied out of order.
type l2Reconciler struct {
	client     client.Client
	recorder   events.EventRecorder
	node       string
	class      string
	memberPort uint16
	tracker    *member.Tracker
	announcer  *announcer
	// fallback, when the speaker started from its state file, announces from it until the
	// first reconcile here takes over; store records what each reconcile decided.
	fallback *fallback
	store    *stateStore
}

// assignment is who announces one address of a Service.
type assignment struct {
	addr       netip.Addr
	node       string
	interfaces []string // on this node, when node is this node
}

func (r *l2Reconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	var (
		svcs     corev1.ServiceList
		nodes    corev1.NodeList
		policies v1.L2PolicyList
		pools    v1.IPPoolList
		eps      discoveryv1.EndpointSliceList
	)
	for _, l := range []client.ObjectList{&svcs, &nodes, &policies, &pools, &eps} {
		if err := r.client.List(ctx, l); err != nil {
			return ctrl.Result{}, err
		}
	}
	// From here on the cache decides: the state file's view steps aside for good.
	r.fallback.takeOver(partL2)
	st := l2State{Peers: peers(nodes.Items, r.memberPort)}
	r.tracker.SetPeers(st.Peers)

	var pols []config.L2Policy
	for i := range policies.Items {
		p, err := config.ParseL2Policy(&policies.Items[i])
		if err != nil {
			// The controller says so in the object's Valid condition and an Event.
			log.Error(err, "L2Policy ignored", "policy", policies.Items[i].Name)
			continue
		}
		pols = append(pols, p)
	}
	var cpools []config.Pool
	for i := range pools.Items {
		if p, err := config.ParsePool(&pools.Items[i]); err == nil {
			cpools = append(cpools, p)
		}
	}
	all, usable, err := r.announcer.interfaces()
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("list interfaces: %w", err)
	}
	// Each policy's interfaces on this node, up or not (the state file keeps them all: one
	// may come up while the speaker runs from it).
	polIfs := make([][]string, len(pols))
	for i, p := range pols {
		for _, ifi := range all {
			if p.MatchesInterface(ifi.Name) {
				polIfs[i] = append(polIfs[i], ifi.Name)
				if !slices.Contains(st.Interfaces, ifi.Name) {
					st.Interfaces = append(st.Interfaces, ifi.Name)
				}
			}
		}
	}
	st.Policies = len(pols)
	// A node that cannot announce (no carrier on any interface a policy selects) stops
	// heartbeating and counts itself out, so the others take its addresses over within the
	// detection time, even when heartbeats could still flow over another network.
	r.tracker.SetDown(st.down(usable))
	alive := r.tracker.Alive()

	type write struct {
		svc  *corev1.Service
		cond *metav1.Condition
	}
	var writes []write
	claimed := map[netip.Addr][]string{} // interfaces named in the conditions so far
	for i := range svcs.Items {
		svc := &svcs.Items[i]
		if !config.Served(svc, r.class) {
			continue
		}
		var ready []string
		if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
			ready = readyNodes(svc, eps.Items)
		}
		var (
			as      []assignment
			refused []string
		)
		for pi, p := range pols {
			if !p.MatchesService(svc.Namespace, svc.Name, svc.Labels) {
				continue
			}
			// The eligible nodes, alive or not: the election below (and a speaker running
			// from the state file) takes the live ones among them.
			var cands []string
			for _, n := range nodes.Items {
				if _, excluded := n.Labels[LabelExcludeFromLB]; excluded || !p.MatchesNode(n.Labels) ||
					(ready != nil && !slices.Contains(ready, n.Name)) {
					continue
				}
				cands = append(cands, n.Name)
			}
			if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal && ready == nil {
				cands = nil // Local with no ready endpoint anywhere: nobody may announce
			}
			for _, c := range addresses(svc, p) {
				addr, pool := c.addr, poolOf(cpools, c.addr)
				if c.external && pool == "" || len(p.Pools) > 0 && !slices.Contains(p.Pools, pool) {
					// spec.externalIPs is written by whoever may create a Service, unlike
					// the allocated addresses: answering ARP for any of them would let
					// that user take the gateway's address on the segment (CVE-2020-8554
					// carried onto layer 2). Only addresses of the policy's pools (any
					// IPPool when it names none) count.
					if c.external {
						refused = append(refused, fmt.Sprintf("%s (spec.externalIPs: in no IPPool of L2Policy %s)", addr, p.Name))
					}
					continue
				}
				e := l2Entry{Addr: addr, Candidates: cands, Interfaces: polIfs[pi]}
				if len(cands) > 0 {
					st.Entries = append(st.Entries, e)
				}
				winner, ok := e.winner(alive)
				if !ok {
					continue
				}
				a := assignment{addr: addr, node: winner}
				if winner == r.node {
					for _, name := range e.Interfaces {
						if slices.Contains(usable, name) && !slices.Contains(claimed[addr], name) {
							claimed[addr] = append(claimed[addr], name)
							a.interfaces = append(a.interfaces, name)
						}
					}
				}
				as = append(as, a)
			}
		}
		if c := r.condition(svc, as, refused, alive); c != nil {
			writes = append(writes, write{svc, c})
		}
	}
	want := l2Want(st.Entries, r.node, alive, usable)
	if err := r.announcer.Apply(ctx, want); err != nil {
		log.Error(err, "announcing")
	}
	r.store.setL2(st)
	for _, w := range writes {
		if err := r.applyCondition(ctx, w.svc, w.cond); err != nil {
			return ctrl.Result{}, fmt.Errorf("status of %s/%s: %w", w.svc.Namespace, w.svc.Name, err)
		}
		typ := corev1.EventTypeNormal
		if w.cond.Status != metav1.ConditionTrue || strings.Contains(w.cond.Message, notAnnounced) {
			typ = corev1.EventTypeWarning
		}
		r.recorder.Eventf(w.svc, nil, typ, w.cond.Reason, "Announce", "%s", w.cond.Message)
	}
	return ctrl.Result{}, nil
}

// notAnnounced starts the part of an Announced message that lists refused addresses.
const notAnnounced = "not announced: "

// condition returns the Announced condition to apply to a Service when this node is the one
// to write it, and nil when there is nothing to change. The writer is the announcer of its
// first address, or, when a refused address leaves nothing announced, the first live node
// by name: one writer, the same on every node.
func (r *l2Reconciler) condition(svc *corev1.Service, as []assignment, refused, alive []string) *metav1.Condition {
	switch {
	case len(as) > 0 && as[0].node != r.node,
		len(as) == 0 && (len(refused) == 0 || len(alive) == 0 || alive[0] != r.node):
		return nil
	}
	var parts []string
	for _, a := range as {
		s := fmt.Sprintf("%s by %s (layer 2", a.addr, a.node)
		if len(a.interfaces) > 0 {
			s += " on " + strings.Join(a.interfaces, ", ")
		}
		parts = append(parts, s+")")
	}
	c := metav1.Condition{Type: ConditionAnnounced, Status: metav1.ConditionTrue, Reason: "Layer2", ObservedGeneration: svc.Generation}
	var msg []string
	if len(parts) > 0 {
		msg = append(msg, "announced: "+strings.Join(parts, "; "))
	}
	if len(refused) > 0 {
		msg = append(msg, notAnnounced+strings.Join(refused, "; "))
		if len(as) == 0 {
			c.Status, c.Reason = metav1.ConditionFalse, "ExternalIPNotInPool"
		}
	}
	c.Message = strings.Join(msg, "; ")
	if old := meta.FindStatusCondition(svc.Status.Conditions, ConditionAnnounced); old != nil &&
		old.Status == c.Status && old.Reason == c.Reason && old.Message == c.Message && old.ObservedGeneration == c.ObservedGeneration {
		return nil
	}
	return &c
}

// applyCondition sets the Announced condition by server-side apply: the speaker owns that one
// condition (conditions are a list keyed by type), so it neither conflicts with nor overwrites
// the controller's, whatever the cache's age.
func (r *l2Reconciler) applyCondition(ctx context.Context, svc *corev1.Service, c *metav1.Condition) error {
	cond := metav1ac.Condition().WithType(c.Type).WithStatus(c.Status).WithReason(c.Reason).
		WithMessage(c.Message).WithObservedGeneration(c.ObservedGeneration).WithLastTransitionTime(metav1.Now())
	if old := meta.FindStatusCondition(svc.Status.Conditions, c.Type); old != nil && old.Status == c.Status {
		cond.WithLastTransitionTime(old.LastTransitionTime)
	}
	ac := corev1ac.Service(svc.Name, svc.Namespace).WithStatus(corev1ac.ServiceStatus().WithConditions(cond))
	return r.client.Status().Apply(ctx, ac, client.FieldOwner("ferrolb-speaker"), client.ForceOwnership)
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
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if a, err := netip.ParseAddr(in.IP); err == nil {
				out = append(out, candidate{addr: a.Unmap()})
			}
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

func poolOf(pools []config.Pool, addr netip.Addr) string {
	for _, p := range pools {
		for _, r := range p.Ranges {
			if r.Contains(addr) {
				return p.Name
			}
		}
	}
	return ""
}

// peers are the other speakers, at their Node's first InternalIP.
func peers(nodes []corev1.Node, port uint16) []member.Peer {
	var out []member.Peer
	for _, n := range nodes {
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				out = append(out, member.Peer{Name: n.Name, Addr: netip.AddrPortFrom(ip.Unmap(), port)})
				break
			}
		}
	}
	return out
}
