package controller

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
)

// peerStatusReconciler keeps the controller's part of the BGPPeers' status. Each speaker
// writes and removes its own node's entry in status.nodes; the controller removes the
// entries of nodes that no longer exist (a node deleted with its speaker, scaled down or
// gone without a clean stop, cannot), and sums the entries up in status.established
// ("2/3"), which `kubectl get bgppeers` shows: a printer column cannot count a list.
type peerStatusReconciler struct {
	client client.Client
}

func (r *peerStatusReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var p v1.BGPPeer
	if err := r.client.Get(ctx, req.NamespacedName, &p); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	nodes := &metav1.PartialObjectMetadataList{}
	nodes.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NodeList"))
	if err := r.client.List(ctx, nodes); err != nil {
		return ctrl.Result{}, err
	}
	exists := make(map[string]bool, len(nodes.Items))
	for _, n := range nodes.Items {
		exists[n.Name] = true
	}
	orig := p.DeepCopy()
	keep := p.Status.Nodes[:0:0]
	var gone []string
	established := 0
	for _, e := range p.Status.Nodes {
		if !exists[e.Node] {
			gone = append(gone, e.Node)
			continue
		}
		keep = append(keep, e)
		if e.Session == "Established" {
			established++
		}
	}
	summary := ""
	if len(keep) > 0 {
		summary = fmt.Sprintf("%d/%d", established, len(keep))
	}
	if len(gone) == 0 && summary == p.Status.Established {
		return ctrl.Result{}, nil
	}
	p.Status.Nodes, p.Status.Established = keep, summary
	// The optimistic lock keeps a speaker's entry written since the read from being lost
	// with the list this patch replaces: a conflict is retried with the fresh object.
	err := r.client.Status().Patch(ctx, &p, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
	if apierrors.IsNotFound(err) {
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("BGPPeer %s status: %w", p.Name, err)
	}
	if len(gone) > 0 {
		logf.FromContext(ctx).Info("removed deleted nodes from BGPPeer status", "peer", p.Name, "nodes", gone)
	}
	return ctrl.Result{}, nil
}

// setupPeerStatus registers the reconciler: every BGPPeer is looked at when the controller
// starts and when its status changes, and all of them when a Node is deleted (Nodes are
// watched by metadata only, deletions only).
func setupPeerStatus(mgr ctrl.Manager) error {
	allPeers := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		var list v1.BGPPeerList
		if err := mgr.GetClient().List(ctx, &list); err != nil {
			logf.FromContext(ctx).Error(err, "list BGPPeers after a Node deletion")
			return nil
		}
		out := make([]reconcile.Request, 0, len(list.Items))
		for i := range list.Items {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
		return out
	})
	deletions := predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		UpdateFunc:  func(event.UpdateEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return true },
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("bgppeer-status").
		For(&v1.BGPPeer{}).
		Watches(&corev1.Node{}, allPeers, builder.OnlyMetadata, builder.WithPredicates(deletions)).
		Complete(&peerStatusReconciler{client: mgr.GetClient()})
}
