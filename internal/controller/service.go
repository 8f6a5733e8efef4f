package controller

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/config"
	"github.com/ferrolb/ferrolb/internal/eventnote"
	"github.com/ferrolb/ferrolb/internal/ipam"
)

// ConditionAllocated is the condition FerroLB keeps on each Service it serves: True when the
// Service holds addresses, with a message saying which and from which pool, and what was
// refused and why.
const ConditionAllocated = "ferrolb.io/Allocated"

// Reasons of ConditionAllocated.
const (
	ReasonAllocated          = "Allocated"
	ReasonPartiallyAllocated = "PartiallyAllocated"
	ReasonNoAddress          = "NoAddress"
)

// serviceReconciler gives each served Service its addresses and records them in its status.
type serviceReconciler struct {
	client   client.Client
	recorder events.EventRecorder
	state    *allocation
	// poolEvents asks the pool reconciler to refresh a pool's usage counts.
	poolEvents chan<- event.GenericEvent
	// retry re-queues Services that wait for an address, when one is freed.
	retry   chan<- event.GenericEvent
	metrics *ipamMetrics
}

func (r *serviceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	svc := &corev1.Service{}
	if err := r.client.Get(ctx, req.NamespacedName, svc); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
		svc = nil
	}
	key := req.Namespace + "/" + req.Name

	r.state.mu.Lock()
	if err := r.state.sync(ctx, r.client); err != nil {
		r.state.mu.Unlock()
		return ctrl.Result{}, err
	}
	before := r.state.alloc.Holds(key)
	if svc == nil || !config.Served(svc, r.state.class) {
		r.state.alloc.Release(key)
		delete(r.state.pending, key)
		waiting := r.state.waiting(len(before) > 0)
		r.metrics.pending.Set(float64(len(r.state.pending)))
		r.state.mu.Unlock()
		r.metrics.allocations.WithLabelValues("released").Add(float64(len(before)))
		r.touchPools(ctx, before)
		r.requeue(ctx, waiting)
		if svc == nil {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, r.clearStatus(ctx, svc)
	}
	request, problems := config.ServiceRequest(svc, r.state.pools)
	res := r.state.alloc.Assign(request)
	pools := make(map[netip.Addr]string, len(res.Addresses))
	for _, a := range res.Addresses {
		pools[a] = r.state.poolOf(a)
	}
	if len(res.Refused) > 0 {
		r.state.pending[key] = struct{}{}
	} else {
		delete(r.state.pending, key)
	}
	waiting := r.state.waiting(len(res.Released) > 0)
	r.metrics.pending.Set(float64(len(r.state.pending)))
	r.state.mu.Unlock()

	changed := append(slices.Clone(before), res.Addresses...)
	r.touchPools(ctx, changed)
	r.requeue(ctx, waiting)
	return ctrl.Result{}, r.writeStatus(ctx, svc, before, res, pools, problems)
}

// writeStatus records the result in the Service's status and, when that changes, says what
// happened in Events.
func (r *serviceReconciler) writeStatus(ctx context.Context, svc *corev1.Service, before []netip.Addr,
	res ipam.Result, pools map[netip.Addr]string, problems []config.FieldError,
) error {
	ingress := make([]corev1.LoadBalancerIngress, 0, len(res.Addresses))
	for _, a := range res.Addresses {
		ingress = append(ingress, corev1.LoadBalancerIngress{IP: a.String(), IPMode: ptr.To(corev1.LoadBalancerIPModeVIP)})
	}
	cond := allocatedCondition(svc, res, pools, problems)
	ingressChanged := !slices.Equal(config.Ingress(svc), res.Addresses)
	if ingressChanged {
		svc.Status.LoadBalancer.Ingress = ingress
	}
	condChanged := meta.SetStatusCondition(&svc.Status.Conditions, cond)
	if !ingressChanged && !condChanged {
		return nil
	}
	if err := r.client.Status().Update(ctx, svc); err != nil {
		return fmt.Errorf("update status of %s/%s: %w", svc.Namespace, svc.Name, err)
	}

	// One Event per reason: client-go folds Events with the same reason about the same object
	// revision into one series and keeps only the first note.
	var assigned, released, refused, orphans, invalid []string
	for _, a := range res.Addresses {
		if !slices.Contains(before, a) {
			assigned = append(assigned, fmt.Sprintf("%s from pool %s", a, pools[a]))
		}
	}
	for _, rel := range res.Released {
		released = append(released, rel.String())
	}
	for _, ref := range res.Refused {
		refused = append(refused, ref.String())
	}
	for _, o := range res.Orphans {
		orphans = append(orphans, o.String())
	}
	for _, p := range problems {
		invalid = append(invalid, p.Error())
	}
	// Counted here, once per change of the Service's status, not once per re-evaluation.
	r.metrics.allocations.WithLabelValues("assigned").Add(float64(len(assigned)))
	r.metrics.allocations.WithLabelValues("released").Add(float64(len(released)))
	r.metrics.allocations.WithLabelValues("refused").Add(float64(len(refused)))
	r.event(svc, corev1.EventTypeNormal, "IPAllocated", "assigned ", assigned)
	r.event(svc, corev1.EventTypeNormal, "IPReleased", "released ", released)
	r.event(svc, corev1.EventTypeWarning, "AllocationFailed", "refused ", refused)
	r.event(svc, corev1.EventTypeWarning, "AddressNotInPool", "in no pool any more, kept until the Service is deleted, stops being a LoadBalancer or asks for other addresses: ", orphans)
	r.event(svc, corev1.EventTypeWarning, "InvalidConfiguration", "", invalid)
	return nil
}

func allocatedCondition(svc *corev1.Service, res ipam.Result, pools map[netip.Addr]string, problems []config.FieldError) metav1.Condition {
	var parts []string
	for _, a := range res.Addresses {
		if p := pools[a]; p != "" {
			parts = append(parts, fmt.Sprintf("%s from pool %s", a, p))
		} else {
			parts = append(parts, a.String())
		}
	}
	msg := strings.Join(parts, ", ")
	add := func(s string) {
		if msg != "" {
			msg += "; "
		}
		msg += s
	}
	for _, ref := range res.Refused {
		add("refused " + ref.String())
	}
	for _, o := range res.Orphans {
		add(fmt.Sprintf("%s is in no pool any more (kept)", o))
	}
	for _, p := range problems {
		add(p.Error())
	}
	cond := metav1.Condition{Type: ConditionAllocated, ObservedGeneration: svc.Generation, Message: msg}
	switch {
	case len(res.Addresses) == 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonNoAddress
	case len(res.Refused) > 0:
		cond.Status, cond.Reason = metav1.ConditionTrue, ReasonPartiallyAllocated
	default:
		cond.Status, cond.Reason = metav1.ConditionTrue, ReasonAllocated
	}
	if len(cond.Message) > 32768 {
		cond.Message = cond.Message[:32765] + "..."
	}
	return cond
}

// event records one Event listing items, if there are any.
func (r *serviceReconciler) event(svc *corev1.Service, typ, reason, prefix string, items []string) {
	if len(items) == 0 {
		return
	}
	r.recorder.Eventf(svc, nil, typ, reason, "Allocate", "%s", eventNote(prefix, items))
}

// eventNote is prefix and items joined, cut to eventnote.MaxNote (beyond which the API
// server refuses an Event; the recorder would cut anywhere) at an item's end with a count of
// the items left out (the Service's condition lists them all).
func eventNote(prefix string, items []string) string {
	note := prefix + strings.Join(items, "; ")
	if len(note) <= eventnote.MaxNote {
		return note
	}
	note = prefix
	for i, it := range items {
		more := fmt.Sprintf("; and %d more (condition %s lists them)", len(items)-i, ConditionAllocated)
		sep := "; "
		if i == 0 {
			sep, more = "", more[2:]
		}
		if len(note)+len(sep)+len(it)+len(more) > eventnote.MaxNote {
			if i == 0 {
				// Not even the first fits: cut it.
				return strings.ToValidUTF8((note + it)[:eventnote.MaxNote-3], "") + "..."
			}
			return note + more
		}
		note += sep + it
	}
	return note
}

// clearStatus removes FerroLB's addresses and conditions (its own, and the speakers'
// Announced, which no speaker writes for a Service that is not served) from a Service it no
// longer serves (type changed, class changed). Services FerroLB never served are left alone.
func (r *serviceReconciler) clearStatus(ctx context.Context, svc *corev1.Service) error {
	if meta.FindStatusCondition(svc.Status.Conditions, ConditionAllocated) == nil {
		return nil
	}
	old := config.Ingress(svc)
	svc.Status.LoadBalancer.Ingress = nil
	meta.RemoveStatusCondition(&svc.Status.Conditions, ConditionAllocated)
	meta.RemoveStatusCondition(&svc.Status.Conditions, config.ConditionAnnounced)
	meta.RemoveStatusCondition(&svc.Status.Conditions, config.ConditionAdvertised)
	if err := r.client.Status().Update(ctx, svc); err != nil {
		return fmt.Errorf("clear status of %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	var released []string
	for _, a := range old {
		released = append(released, a.String())
	}
	r.event(svc, corev1.EventTypeNormal, "IPReleased", "the Service is no longer a LoadBalancer served by FerroLB; released ", released)
	return nil
}

// requeue asks for the Services keyed "namespace/name" to be reconciled again.
func (r *serviceReconciler) requeue(ctx context.Context, keys []string) {
	for _, k := range keys {
		ns, name, _ := strings.Cut(k, "/")
		select {
		case r.retry <- event.GenericEvent{Object: &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}}:
		case <-ctx.Done():
			return
		}
	}
}

// touchPools asks for the usage counts of the pools holding addrs to be refreshed.
func (r *serviceReconciler) touchPools(ctx context.Context, addrs []netip.Addr) {
	seen := map[string]bool{}
	for _, a := range addrs {
		r.state.mu.Lock()
		name := r.state.poolOf(a)
		r.state.mu.Unlock()
		if name == "" || seen[name] {
			continue
		}
		seen[name] = true
		select {
		case r.poolEvents <- event.GenericEvent{Object: &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name}}}:
		case <-ctx.Done():
			return
		}
	}
}
