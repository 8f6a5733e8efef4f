package speaker

import (
	"context"
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/ferrolb/ferrolb/internal/bgp"
	"github.com/ferrolb/ferrolb/internal/l2/member"
)

// PasswordKey is the key of a BGPPeer's Secret that holds the MD5 password.
const PasswordKey = "password"

// bgpReconciler recomputes, from the whole cache, which BGP sessions this node opens and
// which paths it sends on each, and hands both to the embedded BGP speaker, which applies
// only the difference. Like the layer 2 reconcile, it is level-triggered.
type bgpReconciler struct {
	client    client.Client
	node      string
	class     string
	namespace string // where peers' Secrets live
	speaker   *bgp.Speaker
	status    *bgpStatus
	fallback  *fallback
	store     *stateStore
	reporter  *reporter
	announced *announcements
	// tracker's live set picks the one node that writes the Advertised conditions.
	tracker *member.Tracker
}

func (r *bgpReconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	snap, problems, cl, err := list(ctx, r.client, r.namespace)
	if err != nil {
		return ctrl.Result{}, err
	}
	me := cl.node(r.node)
	if me == nil {
		return ctrl.Result{}, fmt.Errorf("node %q not found", r.node)
	}
	// From here on the cache decides: the state file's sessions and paths step aside.
	r.fallback.takeOver(partBGP)
	plan := planBGP(snap, problems, cl, bgpInput{node: me, class: r.class, namespace: r.namespace})
	r.reporter.report("bgp", plan.problems)
	r.status.set(plan.reports)
	r.store.setBGP(plan.state)
	r.announced.set(protocolBGP, plan.sends.byAddress())
	// One writer for the cluster, the first live node by name, the same on every node.
	if alive := r.tracker.Alive(); len(alive) > 0 && alive[0] == r.node {
		in := bgpInput{node: me, class: r.class, namespace: r.namespace}
		bgpInUse := len(snap.BGPAdvertisements) > 0 && len(snap.BGPPeers) > 0
		for _, w := range advertisedConditions(cl, r.class, advertisedSends(snap, problems, cl, in, plan), bgpInUse) {
			if err := applyAdvertised(ctx, r.client, w.svc, w.cond); err != nil {
				return ctrl.Result{}, fmt.Errorf("status of %s/%s: %w", w.svc.Namespace, w.svc.Name, err)
			}
		}
	}
	if err := r.speaker.Apply(bgp.Identity{RouterID: plan.state.RouterID, ASN: plan.state.ASN}, plan.state.Peers, plan.state.Paths); err != nil {
		// GoBGP refused part of it; what it refused is retried on the next event, and
		// the error is the log's, not a reason to hammer the API server with requeues.
		log.Error(err, "applying BGP configuration")
	}
	return ctrl.Result{}, nil
}
