package controller

import (
	"context"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/ipam"
)

// Conditions of an IPPool.
const (
	ConditionReady    = "Ready"
	ConditionConflict = "Conflict"
)

// ipPoolKind names IPPools in ferrolb_config_invalid_objects.
const ipPoolKind = "IPPool"

// poolReconciler writes each IPPool's status: whether it is valid and serving, whether it
// overlaps another pool, and how many addresses it holds and hands out.
type poolReconciler struct {
	client  client.Client
	state   *allocation
	metrics *ipamMetrics
	invalid *invalidObjects
	// countInterval spaces writes that only change usage counts: while Services are being
	// allocated by the thousand, one write per pool per interval, not one per Service.
	countInterval time.Duration

	mu        sync.Mutex
	lastWrite map[string]time.Time
}

func (r *poolReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	pool := &v1.IPPool{}
	if err := r.client.Get(ctx, req.NamespacedName, pool); err != nil {
		if apierrors.IsNotFound(err) {
			r.metrics.poolDeleted(req.Name)
			r.invalid.set(ipPoolKind, req.Name, false)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	r.state.mu.Lock()
	if err := r.state.sync(ctx, r.client); err != nil {
		r.state.mu.Unlock()
		return ctrl.Result{}, err
	}
	st, _ := r.state.alloc.Pool(pool.Name)
	perr := r.state.poolErrs[pool.Name]
	r.state.mu.Unlock()
	r.metrics.pool(st)
	r.invalid.set(ipPoolKind, pool.Name, perr != nil || st.Err != nil)

	status := pool.Status.DeepCopy()
	status.ObservedGeneration = pool.Generation
	ready := metav1.Condition{Type: ConditionReady, Status: metav1.ConditionTrue, Reason: "Ready",
		Message: "the pool hands out addresses", ObservedGeneration: pool.Generation}
	switch {
	case perr != nil:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, "Invalid", perr.Error()
	case st.Err != nil:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, "Invalid", st.Err.Error()
	case pool.Spec.Disabled:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, "Disabled",
			"spec.disabled: no new allocations; Services keep the addresses they hold"
	}
	meta.SetStatusCondition(&status.Conditions, ready)
	conflict := metav1.Condition{Type: ConditionConflict, Status: metav1.ConditionFalse, Reason: "NoOverlap",
		Message: "the pool overlaps no other pool", ObservedGeneration: pool.Generation}
	if len(st.Conflicts) > 0 {
		conflict.Status, conflict.Reason = metav1.ConditionTrue, "Overlap"
		conflict.Message = fmt.Sprintf("overlaps pool %s: the overlapping addresses are handed out by neither",
			strings.Join(st.Conflicts, ", "))
	}
	// A disabled pool blocks no enabled one (Cilium's users keep an informational disabled
	// pool beside the live one): the enabled pool owns what they share.
	switch yields := strings.Join(st.Yields, ", "); {
	case yields == "":
	case pool.Spec.Disabled:
		conflict.Reason = "YieldsToEnabled"
		conflict.Message = fmt.Sprintf("overlaps enabled pool %s, which owns the overlapping addresses: a disabled pool blocks no other", yields)
		if len(st.Conflicts) > 0 {
			conflict.Reason = "Overlap"
			conflict.Message = fmt.Sprintf("overlaps disabled pool %s (the overlapping addresses are neither's) and enabled pool %s, which owns what it shares with this one",
				strings.Join(st.Conflicts, ", "), yields)
		}
	case len(st.Conflicts) > 0:
		conflict.Message += fmt.Sprintf("; it also overlaps disabled pool %s, which does not block it", yields)
	default:
		conflict.Message = fmt.Sprintf("overlaps only disabled pool %s, which does not block it", yields)
	}
	meta.SetStatusCondition(&status.Conditions, conflict)
	status.IPv4 = count(st, ipam.IPv4)
	status.IPv6 = count(st, ipam.IPv6)

	if equality.Semantic.DeepEqual(status, &pool.Status) {
		return ctrl.Result{}, nil
	}
	onlyCounts := equality.Semantic.DeepEqual(status.Conditions, pool.Status.Conditions) &&
		status.ObservedGeneration == pool.Status.ObservedGeneration
	if wait := r.wait(pool.Name); onlyCounts && wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	pool.Status = *status
	if err := r.client.Status().Update(ctx, pool); err != nil {
		if apierrors.IsConflict(err) {
			// Someone wrote the pool since we read it: recompute from the fresh object.
			return ctrl.Result{RequeueAfter: 50 * time.Millisecond}, nil
		}
		return ctrl.Result{}, err
	}
	r.mu.Lock()
	r.lastWrite[pool.Name] = time.Now()
	r.mu.Unlock()
	return ctrl.Result{}, nil
}

// wait is how long a counts-only write to the pool must wait.
func (r *poolReconciler) wait(name string) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return time.Until(r.lastWrite[name].Add(r.countInterval))
}

func count(st ipam.PoolStatus, fam ipam.Family) *v1.AddressCount {
	total := st.Total[fam]
	if total == nil {
		return nil
	}
	used := st.Used[fam]
	free := new(big.Int).Sub(total, big.NewInt(int64(used)))
	if free.Sign() < 0 {
		free.SetInt64(0)
	}
	return &v1.AddressCount{Total: total.String(), Used: int64(used), Free: free.String()}
}
