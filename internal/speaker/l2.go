package speaker

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/ferrolb/ferrolb/internal/config"
	"github.com/ferrolb/ferrolb/internal/l2"
	"github.com/ferrolb/ferrolb/internal/l2/member"
)

// ConditionAnnounced is the Service condition that says which node announces each of its
// addresses, and how: "which node has my IP?" answered with kubectl.
const ConditionAnnounced = config.ConditionAnnounced

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
	namespace  string // the speaker's: the Secrets it reads (list)
	memberPort uint16
	tracker    *member.Tracker
	announcer  *l2.Responders
	// fallback, when the speaker started from its state file, announces from it until the
	// first reconcile here takes over; store records what each reconcile decided.
	fallback *fallback
	store    *stateStore
	reporter *reporter
	// announced is what this node answers for, per Service (metrics, logs).
	announced *announcements
}

func (r *l2Reconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	snap, problems, cl, err := list(ctx, r.client, r.namespace)
	if err != nil {
		return ctrl.Result{}, err
	}
	// From here on the cache decides: the state file's view steps aside for good.
	r.fallback.takeOver(partL2)
	all, usable, err := r.announcer.Interfaces()
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("list interfaces: %w", err)
	}
	names := make([]string, 0, len(all))
	for _, ifi := range all {
		names = append(names, ifi.Name)
	}
	plan := planL2(snap, cl, l2Input{node: r.node, class: r.class, memberPort: r.memberPort, interfaces: names})
	found := configProblems(problems, "IPPool", "L2Policy")
	if me := cl.node(r.node); me != nil {
		for _, p := range plan.unmatched {
			found = append(found, nodeProblem{obj: me, kind: "Node", event: true, reason: ReasonNoInterfaceMatched,
				msg: fmt.Sprintf("L2Policy %s selects this node and none of its interfaces (%s): it cannot answer for the policy's addresses", p, strings.Join(names, ", "))})
		}
	}
	r.reporter.report("layer2", found)
	r.tracker.SetPeers(plan.state.Peers)
	// A node that cannot announce (no carrier on any interface a policy selects) stops
	// heartbeating and counts itself out, so the others take its addresses over within the
	// detection time, even when heartbeats could still flow over another network.
	r.tracker.SetDown(plan.state.down(usable))
	want, writes := plan.elect(r.node, r.tracker.Alive(), usable)
	if err := r.announcer.Apply(ctx, want); err != nil {
		log.Error(err, "announcing")
	}
	r.announced.set(protocolLayer2, plan.servicesOf(r.announcer.Announced()))
	r.store.setL2(plan.state)
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
