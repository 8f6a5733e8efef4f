package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/config"
)

// ConditionValid is the condition the controller keeps on every L2Policy, BGPAdvertisement
// and BFDProfile: True when the speakers can use it, with who uses it (the nodes a policy
// selects, the BGPPeers that name a profile), False (reason Invalid) when they ignore it
// all, with the field at fault and why. The verdict is the config package's, the very parse
// the speakers run; the controller, one writer, says it, instead of every speaker.
const ConditionValid = "Valid"

// Reasons of ConditionValid.
const (
	ReasonValid   = "Valid"
	ReasonInvalid = "Invalid"
)

// listedUsers bounds the names a Valid condition lists (nodes, BGPPeers): the first by name,
// then a count of the rest. The count is in the status too (status.nodes, status.peers).
const listedUsers = 10

// verdict is what the controller found of one object: whether the speakers can use it
// (err nil) and who uses it.
type verdict struct {
	err error // the field at fault and why, from the config package's parse
	// users counts the nodes or BGPPeers that use the object; nil when that means nothing
	// (a policy the speakers ignore).
	users *int32
	// about says who uses it, for the condition's message; "" for nothing to say.
	about string
}

// policyKind is one kind of checked configuration: how to make one and list them, judge one
// (parse it as the speakers do, and find who uses it), reach its status, and what else to
// watch for changes of who uses it.
type policyKind struct {
	name    string
	newObj  func() client.Object
	newList func() client.ObjectList
	judge   func(ctx context.Context, c client.Reader, obj client.Object) (verdict, error)
	status  func(client.Object) (conds *[]metav1.Condition, users **int32)
	watch   func(b *builder.Builder, mgr ctrl.Manager, k policyKind) *builder.Builder
}

var (
	l2PolicyKind = policyKind{
		name:    "L2Policy",
		newObj:  func() client.Object { return &v1.L2Policy{} },
		newList: func() client.ObjectList { return &v1.L2PolicyList{} },
		judge: func(ctx context.Context, c client.Reader, o client.Object) (verdict, error) {
			p, err := config.ParseL2Policy(o.(*v1.L2Policy))
			if err != nil {
				return verdict{err: err}, nil
			}
			return nodesVerdict(ctx, c, p.MatchesNode)
		},
		status: func(o client.Object) (*[]metav1.Condition, **int32) {
			st := &o.(*v1.L2Policy).Status
			return &st.Conditions, &st.Nodes
		},
		watch: watchNodes,
	}
	bgpAdvertisementKind = policyKind{
		name:    "BGPAdvertisement",
		newObj:  func() client.Object { return &v1.BGPAdvertisement{} },
		newList: func() client.ObjectList { return &v1.BGPAdvertisementList{} },
		judge: func(ctx context.Context, c client.Reader, o client.Object) (verdict, error) {
			a, err := config.ParseBGPAdvertisement(o.(*v1.BGPAdvertisement))
			if err != nil {
				return verdict{err: err}, nil
			}
			return nodesVerdict(ctx, c, a.MatchesNode)
		},
		status: func(o client.Object) (*[]metav1.Condition, **int32) {
			st := &o.(*v1.BGPAdvertisement).Status
			return &st.Conditions, &st.Nodes
		},
		watch: watchNodes,
	}
	bfdProfileKind = policyKind{
		name:    "BFDProfile",
		newObj:  func() client.Object { return &v1.BFDProfile{} },
		newList: func() client.ObjectList { return &v1.BFDProfileList{} },
		judge:   judgeBFDProfile,
		status: func(o client.Object) (*[]metav1.Condition, **int32) {
			st := &o.(*v1.BFDProfile).Status
			return &st.Conditions, &st.Peers
		},
		watch: watchPeersOfProfiles,
	}
)

// nodesVerdict is a valid policy's: the nodes its nodeSelector selects (selects), less
// those labelled node.kubernetes.io/exclude-from-external-load-balancers, which announce
// nothing (the speakers' rule).
func nodesVerdict(ctx context.Context, c client.Reader, selects func(map[string]string) bool) (verdict, error) {
	nodes := &metav1.PartialObjectMetadataList{}
	nodes.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NodeList"))
	if err := c.List(ctx, nodes); err != nil {
		return verdict{}, fmt.Errorf("list Nodes: %w", err)
	}
	var names []string
	excluded := 0
	for _, n := range nodes.Items {
		if !selects(n.Labels) {
			continue
		}
		if _, ex := n.Labels[corev1.LabelNodeExcludeBalancers]; ex {
			excluded++
			continue
		}
		names = append(names, n.Name)
	}
	about := "its nodeSelector selects no node"
	if len(names) > 0 {
		about = fmt.Sprintf("its nodeSelector selects %s: %s", plural(len(names), "node", "nodes"), listNames(names))
	}
	if excluded > 0 {
		about += fmt.Sprintf(" (and %s labelled %s, which announce nothing)",
			plural(excluded, "node", "nodes"), corev1.LabelNodeExcludeBalancers)
	}
	n := int32(len(names)) //nolint:gosec // a count of Nodes
	return verdict{users: &n, about: about}, nil
}

// judgeBFDProfile parses a BFDProfile as the speakers do and names the BGPPeers that use it:
// a BGPPeer naming a profile the speakers cannot use opens no session.
func judgeBFDProfile(ctx context.Context, c client.Reader, o client.Object) (verdict, error) {
	_, perr := config.ParseBFDProfile(o.(*v1.BFDProfile))
	var peers v1.BGPPeerList
	if err := c.List(ctx, &peers); err != nil {
		return verdict{}, fmt.Errorf("list BGPPeers: %w", err)
	}
	var names []string
	for _, p := range peers.Items {
		if p.Spec.BFDProfile == o.GetName() {
			names = append(names, p.Name)
		}
	}
	n := int32(len(names)) //nolint:gosec // a count of BGPPeers
	v := verdict{err: perr, users: &n}
	switch {
	case len(names) == 0:
		v.about = "no BGPPeer names it"
	case perr != nil && len(names) == 1:
		v.about = "the BGPPeer naming it opens no session: " + names[0]
	case perr != nil:
		v.about = fmt.Sprintf("the %d BGPPeers naming it open no session: %s", len(names), listNames(names))
	default:
		v.about = fmt.Sprintf("named by %s: %s", plural(len(names), "BGPPeer", "BGPPeers"), listNames(names))
	}
	return v, nil
}

// listNames lists the first listedUsers names in order, and counts the rest.
func listNames(names []string) string {
	names = slices.Sorted(slices.Values(names))
	if len(names) <= listedUsers {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:listedUsers], ", "), len(names)-listedUsers)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// policyStatusReconciler writes the Valid condition and the count of users of one kind, and
// an Event when an object becomes invalid (or valid again). It writes only what changed: a
// Node's labels changing rewrites the policies whose nodes it changes, not every policy.
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
	v, err := r.kind.judge(ctx, r.client, obj)
	if err != nil {
		return ctrl.Result{}, err
	}
	r.invalid.set(r.kind.name, obj.GetName(), v.err != nil)

	orig := obj.DeepCopyObject().(client.Object)
	conds, users := r.kind.status(obj)
	var prev *metav1.Condition
	if c := meta.FindStatusCondition(*conds, ConditionValid); c != nil {
		prev = c.DeepCopy()
	}
	cond := metav1.Condition{Type: ConditionValid, Status: metav1.ConditionTrue, Reason: ReasonValid,
		Message: "the speakers use it", ObservedGeneration: obj.GetGeneration()}
	cause := "" // why it is invalid: a change of it, not of its users, is an Event
	if v.err != nil {
		cause = "ignored by the speakers: " + v.err.Error()
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, ReasonInvalid, cause
	}
	if v.about != "" {
		cond.Message += "; " + v.about
	}
	if len(cond.Message) > 32768 {
		cond.Message = strings.ToValidUTF8(cond.Message[:32765], "") + "..."
	}
	changed := meta.SetStatusCondition(conds, cond)
	if !equalCount(*users, v.users) {
		*users, changed = v.users, true
	}
	if !changed {
		return ctrl.Result{}, nil
	}
	if err := r.client.Status().Patch(ctx, obj, client.MergeFrom(orig)); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(fmt.Errorf("%s %s status: %w", r.kind.name, obj.GetName(), err))
	}
	switch {
	case v.err != nil && (prev == nil || prev.Status != metav1.ConditionFalse || !strings.HasPrefix(prev.Message, cause)):
		r.recorder.Eventf(obj, nil, corev1.EventTypeWarning, "InvalidConfiguration", "Validate", "%s",
			eventNote("", []string{cond.Message}))
	case v.err == nil && prev != nil && prev.Status == metav1.ConditionFalse:
		r.recorder.Eventf(obj, nil, corev1.EventTypeNormal, "Valid", "Validate", "valid again: the speakers use it")
	}
	return ctrl.Result{}, nil
}

func equalCount(a, b *int32) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}

// watchNodes recomputes every policy of the kind when a Node comes, goes or has its labels
// changed (Nodes are watched by metadata only; their frequent status updates are ignored).
func watchNodes(b *builder.Builder, mgr ctrl.Manager, k policyKind) *builder.Builder {
	all := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		list := k.newList()
		if err := mgr.GetClient().List(ctx, list); err != nil {
			logf.FromContext(ctx).Error(err, "list after a Node change", "kind", k.name)
			return nil
		}
		var out []reconcile.Request
		_ = meta.EachListItem(list, func(o runtime.Object) error {
			if co, ok := o.(client.Object); ok {
				out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(co)})
			}
			return nil
		})
		return out
	})
	return b.Watches(&corev1.Node{}, all, builder.OnlyMetadata, builder.WithPredicates(predicate.LabelChangedPredicate{}))
}

// watchPeersOfProfiles recomputes a BFDProfile when a BGPPeer naming it comes, goes, or
// stops or starts naming it (both the old and the new spec are mapped).
func watchPeersOfProfiles(b *builder.Builder, _ ctrl.Manager, _ policyKind) *builder.Builder {
	named := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		p, ok := o.(*v1.BGPPeer)
		if !ok || p.Spec.BFDProfile == "" {
			return nil
		}
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: p.Spec.BFDProfile}}}
	})
	return b.Watches(&v1.BGPPeer{}, named, builder.WithPredicates(predicate.GenerationChangedPredicate{}))
}

// setupPolicyStatus registers a reconciler per kind. Each object is looked at when the
// controller starts, when its spec changes, and when what uses it changes.
func setupPolicyStatus(mgr ctrl.Manager, invalid *invalidObjects) error {
	for _, k := range []policyKind{l2PolicyKind, bgpAdvertisementKind, bfdProfileKind} {
		invalid.addKind(k.name)
		b := ctrl.NewControllerManagedBy(mgr).
			Named(k.name+"-status").
			For(k.newObj(), builder.WithPredicates(predicate.GenerationChangedPredicate{}))
		err := k.watch(b, mgr, k).
			Complete(&policyStatusReconciler{client: mgr.GetClient(), recorder: mgr.GetEventRecorder("ferrolb-controller"), kind: k, invalid: invalid})
		if err != nil {
			return fmt.Errorf("%s-status controller: %w", k.name, err)
		}
	}
	return nil
}
