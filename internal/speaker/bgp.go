package speaker

import (
	"context"
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/ferrolb/ferrolb/internal/bgp"
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
	r.announced.set(protocolBGP, plan.advertised)
	if err := r.speaker.Apply(bgp.Identity{RouterID: plan.state.RouterID, ASN: plan.state.ASN}, plan.state.Peers, plan.state.Paths); err != nil {
		// GoBGP refused part of it; what it refused is retried on the next event, and
		// the error is the log's, not a reason to hammer the API server with requeues.
		log.Error(err, "applying BGP configuration")
	}
	return ctrl.Result{}, nil
}
