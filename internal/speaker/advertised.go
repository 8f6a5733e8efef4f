package speaker

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferrolb/ferrolb/internal/config"
)

// ConditionAdvertised is the Service condition that says which nodes advertise each of its
// addresses over BGP, and to which BGPPeers (MetalLB's ServiceBGPStatus, as a condition).
const ConditionAdvertised = config.ConditionAdvertised

// Reasons of the Advertised condition.
const (
	ReasonBGP           = "BGP"
	ReasonNotAdvertised = "NotAdvertised"
)

// advertisedManager is the field manager of the Advertised condition: not the Announced
// condition's, because a server-side apply drops the fields its manager owned and left out,
// and each condition is applied alone.
const advertisedManager = "ferrolb-speaker-bgp"

// advertisedConditions are the Advertised conditions that change: for each served Service
// with addresses, which nodes send each address to which BGPPeers, from every node's plan
// (sends, by node). A Service no node advertises gets False while the cluster advertises
// anything by BGP or it already has the condition; a cluster without BGP never sees it. Pure.
func advertisedConditions(cl cluster, class string, sends map[string]serviceSends, bgpInUse bool) []conditionWrite {
	nodes := slices.Sorted(func(yield func(string) bool) {
		for n := range sends {
			if !yield(n) {
				return
			}
		}
	})
	var out []conditionWrite
	for i := range cl.services {
		svc := &cl.services[i]
		addrs := config.Ingress(svc)
		old := meta.FindStatusCondition(svc.Status.Conditions, ConditionAdvertised)
		if !config.Served(svc, class) || len(addrs) == 0 || !bgpInUse && old == nil {
			continue
		}
		key := config.Key(svc)
		var parts []string
		for _, a := range addrs {
			// Nodes grouped by the BGPPeers they send the address to, in node order.
			type group struct{ nodes, peers []string }
			var groups []group
			for _, n := range nodes {
				peers := slices.Clone(sends[n][key][a])
				if len(peers) == 0 {
					continue
				}
				slices.Sort(peers)
				if i := slices.IndexFunc(groups, func(g group) bool { return slices.Equal(g.peers, peers) }); i >= 0 {
					groups[i].nodes = append(groups[i].nodes, n)
				} else {
					groups = append(groups, group{nodes: []string{n}, peers: peers})
				}
			}
			for _, g := range groups {
				parts = append(parts, fmt.Sprintf("%s by %s to %s", a, strings.Join(g.nodes, ", "), strings.Join(g.peers, ", ")))
			}
		}
		c := metav1.Condition{Type: ConditionAdvertised, ObservedGeneration: svc.Generation}
		if len(parts) > 0 {
			c.Status, c.Reason, c.Message = metav1.ConditionTrue, ReasonBGP, "advertised: "+strings.Join(parts, "; ")
		} else {
			c.Status, c.Reason = metav1.ConditionFalse, ReasonNotAdvertised
			c.Message = "no node sends its addresses to a BGP peer: no BGPAdvertisement selects its pool and the Service on a node that has a BGPPeer"
		}
		if old != nil && old.Status == c.Status && old.Reason == c.Reason && old.Message == c.Message && old.ObservedGeneration == c.ObservedGeneration {
			continue
		}
		out = append(out, conditionWrite{svc, &c})
	}
	return out
}

// advertisedSends plans BGP for every node, as each node's speaker does for itself (the plan
// is a pure function of what every speaker's cache holds), and returns what each sends.
func advertisedSends(snap config.Snapshot, problems []config.Problem, cl cluster, in bgpInput, mine bgpPlan) map[string]serviceSends {
	out := make(map[string]serviceSends, len(cl.nodes))
	for i := range cl.nodes {
		n := &cl.nodes[i]
		if n.Name == in.node.Name {
			out[n.Name] = mine.sends
			continue
		}
		other := in
		other.node = n
		out[n.Name] = planBGP(snap, problems, cl, other).sends
	}
	return out
}

// applyAdvertised sets the Advertised condition by server-side apply, under its own field
// manager (see advertisedManager).
func applyAdvertised(ctx context.Context, c client.Client, svc *corev1.Service, cond *metav1.Condition) error {
	ac := metav1ac.Condition().WithType(cond.Type).WithStatus(cond.Status).WithReason(cond.Reason).
		WithMessage(cond.Message).WithObservedGeneration(cond.ObservedGeneration).WithLastTransitionTime(metav1.Now())
	if old := meta.FindStatusCondition(svc.Status.Conditions, cond.Type); old != nil && old.Status == cond.Status {
		ac.WithLastTransitionTime(old.LastTransitionTime)
	}
	return c.Status().Apply(ctx, corev1ac.Service(svc.Name, svc.Namespace).WithStatus(corev1ac.ServiceStatus().WithConditions(ac)),
		client.FieldOwner(advertisedManager), client.ForceOwnership)
}
