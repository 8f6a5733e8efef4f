package controller

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/config"
)

// ConditionValid is the condition the controller keeps on every L2Policy and
// BGPAdvertisement: True when the speakers can use it, False (reason Invalid) when they
// ignore it all, with the field at fault and why. The verdict is the config package's, the
// very parse the speakers run; the controller, one writer, says it, instead of every speaker.
const ConditionValid = "Valid"

// Reasons of ConditionValid.
const (
	ReasonValid   = "Valid"
	ReasonInvalid = "Invalid"
)

// policyKind is one kind of announcement policy: how to make one, parse it (as the speakers
// do) and reach its status.
type policyKind struct {
	name   string
	newObj func() client.Object
	parse  func(client.Object) error
	status func(client.Object) *v1.PolicyStatus
}

var (
	l2PolicyKind = policyKind{
		name:   "L2Policy",
		newObj: func() client.Object { return &v1.L2Policy{} },
		parse: func(o client.Object) error {
			_, err := config.ParseL2Policy(o.(*v1.L2Policy))
			return err
		},
		status: func(o client.Object) *v1.PolicyStatus { return &o.(*v1.L2Policy).Status },
	}
	bgpAdvertisementKind = policyKind{
		name:   "BGPAdvertisement",
		newObj: func() client.Object { return &v1.BGPAdvertisement{} },
		parse: func(o client.Object) error {
			_, err := config.ParseBGPAdvertisement(o.(*v1.BGPAdvertisement))
			return err
		},
		status: func(o client.Object) *v1.PolicyStatus { return &o.(*v1.BGPAdvertisement).Status },
	}
)

// policyStatusReconciler writes the Valid condition of one kind of policy, and an Event when
// a policy becomes invalid (or valid again).
type policyStatusReconciler struct {
	client   client.Client
	recorder events.EventRecorder
	kind     policyKind
	invalid  *invalidObjects
}

func (r *policyStatusReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	obj := r.kind.newObj()
	if err := r.client.Get(ctx, req.NamespacedName, obj); err != nil {
		if apierrors.IsNotFound(err) {
			r.invalid.set(r.kind.name, req.Name, false)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	orig := obj.DeepCopyObject().(client.Object)
	st := r.kind.status(obj)
	var prev *metav1.Condition
	if c := meta.FindStatusCondition(st.Conditions, ConditionValid); c != nil {
		prev = c.DeepCopy()
	}
	cond := metav1.Condition{Type: ConditionValid, Status: metav1.ConditionTrue, Reason: ReasonValid,
		Message: "the speakers use it", ObservedGeneration: obj.GetGeneration()}
	perr := r.kind.parse(obj)
	r.invalid.set(r.kind.name, obj.GetName(), perr != nil)
	if perr != nil {
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonInvalid
		cond.Message = "ignored by the speakers: " + perr.Error()
		if len(cond.Message) > 32768 {
			cond.Message = cond.Message[:32765] + "..."
		}
	}
	if !meta.SetStatusCondition(&st.Conditions, cond) {
		return ctrl.Result{}, nil
	}
	if err := r.client.Status().Patch(ctx, obj, client.MergeFrom(orig)); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(fmt.Errorf("%s %s status: %w", r.kind.name, obj.GetName(), err))
	}
	switch {
	case perr != nil && (prev == nil || prev.Status != metav1.ConditionFalse || prev.Message != cond.Message):
		r.recorder.Eventf(obj, nil, corev1.EventTypeWarning, "InvalidConfiguration", "Validate", "%s",
			eventNote("", []string{cond.Message}))
	case perr == nil && prev != nil && prev.Status == metav1.ConditionFalse:
		r.recorder.Eventf(obj, nil, corev1.EventTypeNormal, "Valid", "Validate", "valid again: the speakers use it")
	}
	return ctrl.Result{}, nil
}

// setupPolicyStatus registers a reconciler per policy kind. Each policy is looked at when
// the controller starts and when its spec changes.
func setupPolicyStatus(mgr ctrl.Manager, invalid *invalidObjects) error {
	for _, k := range []policyKind{l2PolicyKind, bgpAdvertisementKind} {
		invalid.addKind(k.name)
		err := ctrl.NewControllerManagedBy(mgr).
			Named(k.name+"-status").
			For(k.newObj(), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
			Complete(&policyStatusReconciler{client: mgr.GetClient(), recorder: mgr.GetEventRecorder("ferrolb-controller"), kind: k, invalid: invalid})
		if err != nil {
			return fmt.Errorf("%s-status controller: %w", k.name, err)
		}
	}
	return nil
}
