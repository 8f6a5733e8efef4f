package controller_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/controller"
)

// TestPolicyValid: the controller marks each L2Policy and BGPAdvertisement Valid, and one the
// speakers would ignore (here a label key that the CRD's CEL rules do not check, and the
// speakers' parse refuses) Valid=False with the field and the reason, and an Event; fixed,
// it is Valid again.
func TestPolicyValid(t *testing.T) {
	ctx := context.Background()
	startController(t)

	good := &v1.L2Policy{ObjectMeta: metav1.ObjectMeta{Name: "valid-l2"},
		Spec: v1.L2PolicySpec{NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "edge"}}}}
	bad := &v1.L2Policy{ObjectMeta: metav1.ObjectMeta{Name: "invalid-l2"},
		Spec: v1.L2PolicySpec{NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"node role": "edge"}}}}
	badAdv := &v1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "invalid-adv"},
		Spec: v1.BGPAdvertisementSpec{ServiceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"front end"}}}}}}
	goodAdv := &v1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "valid-adv"}}
	for _, o := range []client.Object{good, bad, badAdv, goodAdv} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatalf("create %s: %v", o.GetName(), err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), o) })
	}

	waitValid(t, &v1.L2Policy{}, "valid-l2", metav1.ConditionTrue, "Valid", "the speakers use it")
	waitValid(t, &v1.BGPAdvertisement{}, "valid-adv", metav1.ConditionTrue, "Valid", "the speakers use it")
	waitValid(t, &v1.L2Policy{}, "invalid-l2", metav1.ConditionFalse, "Invalid",
		`ignored by the speakers: spec.nodeSelector.matchLabels: Invalid value: "node role"`)
	waitValid(t, &v1.BGPAdvertisement{}, "invalid-adv", metav1.ConditionFalse, "Invalid",
		`ignored by the speakers: spec.serviceSelector.matchExpressions[0].values[0]: Invalid value: "front end"`)
	waitPolicyEvent(t, "L2Policy", "invalid-l2", "InvalidConfiguration", `spec.nodeSelector.matchLabels: Invalid value: "node role"`)
	waitPolicyEvent(t, "BGPAdvertisement", "invalid-adv", "InvalidConfiguration", "spec.serviceSelector.matchExpressions[0].values[0]")
	waitGauge(t, "ferrolb_config_invalid_objects", map[string]string{"kind": "L2Policy"}, 1)
	waitGauge(t, "ferrolb_config_invalid_objects", map[string]string{"kind": "BGPAdvertisement"}, 1)

	// Fixed: Valid again, and said so.
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(bad), bad); err != nil {
		t.Fatal(err)
	}
	bad.Spec.NodeSelector.MatchLabels = map[string]string{"node-role": "edge"}
	if err := env.Client.Update(ctx, bad); err != nil {
		t.Fatal(err)
	}
	waitValid(t, &v1.L2Policy{}, "invalid-l2", metav1.ConditionTrue, "Valid", "the speakers use it")
	waitPolicyEvent(t, "L2Policy", "invalid-l2", "Valid", "valid again")
	waitGauge(t, "ferrolb_config_invalid_objects", map[string]string{"kind": "L2Policy"}, 0)

	// Deleted: no longer counted.
	if err := env.Client.Delete(ctx, badAdv); err != nil {
		t.Fatal(err)
	}
	waitGauge(t, "ferrolb_config_invalid_objects", map[string]string{"kind": "BGPAdvertisement"}, 0)
}

// waitValid waits until the policy's Valid condition has this status and reason, and a
// message containing msg, for its current generation.
func waitValid(t *testing.T, obj client.Object, name string, status metav1.ConditionStatus, reason, msg string) {
	t.Helper()
	poll(t, func() string {
		if err := env.Client.Get(context.Background(), client.ObjectKey{Name: name}, obj); err != nil {
			return err.Error()
		}
		var conds []metav1.Condition
		switch o := obj.(type) {
		case *v1.L2Policy:
			conds = o.Status.Conditions
		case *v1.BGPAdvertisement:
			conds = o.Status.Conditions
		case *v1.BFDProfile:
			conds = o.Status.Conditions
		}
		c := meta.FindStatusCondition(conds, controller.ConditionValid)
		if c == nil || c.Status != status || c.Reason != reason || !strings.Contains(c.Message, msg) || c.ObservedGeneration != obj.GetGeneration() {
			return fmt.Sprintf("%s: Valid condition %+v, want %s/%s with %q for generation %d", name, c, status, reason, msg, obj.GetGeneration())
		}
		return ""
	})
}

// waitPolicyEvent waits for an Event about a cluster-scoped policy (such Events go to the
// default namespace).
func waitPolicyEvent(t *testing.T, kind, name, reason, substr string) {
	t.Helper()
	poll(t, func() string {
		var list eventsv1.EventList
		if err := env.Client.List(context.Background(), &list, client.InNamespace(metav1.NamespaceDefault)); err != nil {
			return err.Error()
		}
		var notes []string
		for _, e := range list.Items {
			if e.Regarding.Kind == kind && e.Regarding.Name == name && e.Reason == reason {
				notes = append(notes, e.Note)
			}
		}
		if !slices.ContainsFunc(notes, func(n string) bool { return strings.Contains(n, substr) }) {
			return fmt.Sprintf("no %s Event on %s %s containing %q; have %q", reason, kind, name, substr, notes)
		}
		return ""
	})
}

// TestPolicyNodes: a valid L2Policy's and BGPAdvertisement's Valid condition names the nodes
// their nodeSelector selects, less those labelled
// node.kubernetes.io/exclude-from-external-load-balancers, and status.nodes counts them;
// both follow Nodes' labels as they change, and a label change that changes no policy's
// nodes writes nothing.
func TestPolicyNodes(t *testing.T) {
	ctx := context.Background()
	startController(t)

	node := func(name string, labels map[string]string) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
		if err := env.Client.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), n) })
		return n
	}
	relabel := func(n *corev1.Node, change func(map[string]string)) {
		t.Helper()
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(n), n); err != nil {
			t.Fatal(err)
		}
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		change(n.Labels)
		if err := env.Client.Update(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	edge := map[string]string{"policy-nodes-role": "edge"}
	a, _, c := node("pn-a", map[string]string{"policy-nodes-role": "edge"}), node("pn-b", map[string]string{"policy-nodes-role": "edge"}), node("pn-c", nil)

	l2 := &v1.L2Policy{ObjectMeta: metav1.ObjectMeta{Name: "policy-nodes"},
		Spec: v1.L2PolicySpec{NodeSelector: &metav1.LabelSelector{MatchLabels: edge}}}
	adv := &v1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "policy-nodes"},
		Spec: v1.BGPAdvertisementSpec{NodeSelector: &metav1.LabelSelector{MatchLabels: edge}}}
	none := &v1.L2Policy{ObjectMeta: metav1.ObjectMeta{Name: "policy-nodes-none"},
		Spec: v1.L2PolicySpec{NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"policy-nodes-role": "nowhere"}}}}
	for _, o := range []client.Object{l2, adv, none} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), o) })
	}
	both := func(msg string, n int32) {
		t.Helper()
		waitValid(t, &v1.L2Policy{}, l2.Name, metav1.ConditionTrue, "Valid", msg)
		waitValid(t, &v1.BGPAdvertisement{}, adv.Name, metav1.ConditionTrue, "Valid", msg)
		waitUsers(t, &v1.L2Policy{}, l2.Name, n)
		waitUsers(t, &v1.BGPAdvertisement{}, adv.Name, n)
	}
	both("the speakers use it; its nodeSelector selects 2 nodes: pn-a, pn-b", 2)
	waitValid(t, &v1.L2Policy{}, none.Name, metav1.ConditionTrue, "Valid", "the speakers use it; its nodeSelector selects no node")
	waitUsers(t, &v1.L2Policy{}, none.Name, 0)

	// A node gains the label: selected.
	relabel(c, func(l map[string]string) { l["policy-nodes-role"] = "edge" })
	both("its nodeSelector selects 3 nodes: pn-a, pn-b, pn-c", 3)

	// A node labelled to be excluded from load balancers: no longer counted, but said.
	relabel(a, func(l map[string]string) { l[corev1.LabelNodeExcludeBalancers] = "" })
	both("its nodeSelector selects 2 nodes: pn-b, pn-c (and 1 node labelled node.kubernetes.io/exclude-from-external-load-balancers, which announce nothing)", 2)

	// A label change that changes no policy's nodes is looked at, and written nowhere.
	var before v1.L2Policy
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(l2), &before); err != nil {
		t.Fatal(err)
	}
	var policies v1.L2PolicyList
	if err := env.Client.List(ctx, &policies); err != nil {
		t.Fatal(err)
	}
	reconciles := counterValue(t, "controller_runtime_reconcile_total", map[string]string{"controller": "L2Policy-status"})
	relabel(c, func(l map[string]string) { l["unrelated"] = "yes" })
	poll(t, func() string { // every L2Policy is looked at again
		if n := counterValue(t, "controller_runtime_reconcile_total", map[string]string{"controller": "L2Policy-status"}); n < reconciles+float64(len(policies.Items)) {
			return fmt.Sprintf("%v L2Policy reconciles after a label change, want %d", n-reconciles, len(policies.Items))
		}
		return ""
	})
	var after v1.L2Policy
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(l2), &after); err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != before.ResourceVersion {
		t.Errorf("L2Policy written after a label change that selects no other node: resourceVersion %s -> %s, status %+v",
			before.ResourceVersion, after.ResourceVersion, after.Status)
	}

	// A node deleted: gone from the list. More nodes than the message names: a count.
	if err := env.Client.Delete(ctx, c); err != nil {
		t.Fatal(err)
	}
	both("its nodeSelector selects 1 node: pn-b (and 1 node", 1)
	for i := range 11 {
		node(fmt.Sprintf("pn-many-%02d", i), map[string]string{"policy-nodes-role": "edge"})
	}
	both("its nodeSelector selects 12 nodes: pn-b, pn-many-00, pn-many-01, pn-many-02, pn-many-03, pn-many-04, "+
		"pn-many-05, pn-many-06, pn-many-07, pn-many-08 and 2 more (and 1 node", 12)
}

// TestBFDProfileValid: a BFDProfile is Valid with the BGPPeers that name it, counted in
// status.peers and followed as peers come, go and change; one the speakers cannot use
// (stored before the CRD's rules refused it) is Valid=False naming the field, with an Event,
// the peers that name it (which open no session) and ferrolb_config_invalid_objects.
func TestBFDProfileValid(t *testing.T) {
	ctx := context.Background()
	startController(t)

	create := func(o client.Object) {
		t.Helper()
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatalf("create %s: %v", o.GetName(), err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), o) })
	}
	peer := func(name, profile string) *v1.BGPPeer {
		return &v1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.BGPPeerSpec{
			PeerAddress: "192.0.2.1", PeerASN: 64512, LocalASN: 64513, BFDProfile: profile}}
	}
	create(&v1.BFDProfile{ObjectMeta: metav1.ObjectMeta{Name: "bfd-fast"}, Spec: v1.BFDProfileSpec{ReceiveInterval: 100, TransmitInterval: 100}})
	waitValid(t, &v1.BFDProfile{}, "bfd-fast", metav1.ConditionTrue, "Valid", "the speakers use it; no BGPPeer names it")
	waitUsers(t, &v1.BFDProfile{}, "bfd-fast", 0)
	p1, p2 := peer("bfd-router-1", "bfd-fast"), peer("bfd-router-2", "bfd-fast")
	create(p1)
	create(p2)
	waitValid(t, &v1.BFDProfile{}, "bfd-fast", metav1.ConditionTrue, "Valid", "the speakers use it; named by 2 BGPPeers: bfd-router-1, bfd-router-2")
	waitUsers(t, &v1.BFDProfile{}, "bfd-fast", 2)
	if err := env.Client.Delete(ctx, p1); err != nil {
		t.Fatal(err)
	}
	waitValid(t, &v1.BFDProfile{}, "bfd-fast", metav1.ConditionTrue, "Valid", "named by 1 BGPPeer: bfd-router-2")

	// A profile the CRD refuses today (echoMode), as stored before its rules existed.
	withoutSpecRules(t, "bfdprofiles.ferrolb.io", func() {
		poll(t, func() string {
			err := env.Client.Create(ctx, &v1.BFDProfile{ObjectMeta: metav1.ObjectMeta{Name: "bfd-echo"}, Spec: v1.BFDProfileSpec{EchoMode: true}})
			if err != nil {
				return "create a BFDProfile with echoMode while the CRD's rules are lifted: " + err.Error()
			}
			return ""
		})
	})
	t.Cleanup(func() {
		_ = env.Client.Delete(context.Background(), &v1.BFDProfile{ObjectMeta: metav1.ObjectMeta{Name: "bfd-echo"}})
	})
	waitValid(t, &v1.BFDProfile{}, "bfd-echo", metav1.ConditionFalse, "Invalid",
		"ignored by the speakers: spec.echoMode: not supported: FerroLB's BFD (GoBGP's) has no echo function; no BGPPeer names it")
	waitPolicyEvent(t, "BFDProfile", "bfd-echo", "InvalidConfiguration", "spec.echoMode")
	waitGauge(t, "ferrolb_config_invalid_objects", map[string]string{"kind": "BFDProfile"}, 1)

	// The remaining peer moves to it: both profiles follow, and the invalid one says the
	// peer opens no session.
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(p2), p2); err != nil {
		t.Fatal(err)
	}
	p2.Spec.BFDProfile = "bfd-echo"
	if err := env.Client.Update(ctx, p2); err != nil {
		t.Fatal(err)
	}
	waitValid(t, &v1.BFDProfile{}, "bfd-echo", metav1.ConditionFalse, "Invalid",
		"spec.echoMode: not supported: FerroLB's BFD (GoBGP's) has no echo function; the BGPPeer naming it opens no session: bfd-router-2")
	waitUsers(t, &v1.BFDProfile{}, "bfd-echo", 1)
	waitValid(t, &v1.BFDProfile{}, "bfd-fast", metav1.ConditionTrue, "Valid", "no BGPPeer names it")
	waitUsers(t, &v1.BFDProfile{}, "bfd-fast", 0)

	// Fixed: Valid again, said so, no longer counted.
	var echo v1.BFDProfile
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "bfd-echo"}, &echo); err != nil {
		t.Fatal(err)
	}
	echo.Spec.EchoMode = false
	if err := env.Client.Update(ctx, &echo); err != nil {
		t.Fatal(err)
	}
	waitValid(t, &v1.BFDProfile{}, "bfd-echo", metav1.ConditionTrue, "Valid", "the speakers use it; named by 1 BGPPeer: bfd-router-2")
	waitPolicyEvent(t, "BFDProfile", "bfd-echo", "Valid", "valid again")
	waitGauge(t, "ferrolb_config_invalid_objects", map[string]string{"kind": "BFDProfile"}, 0)
}

// withoutSpecRules runs f while the CRD named crd has no CEL rules on its spec, and puts them
// back: the API server then stores objects as it did before the rules were written.
func withoutSpecRules(t *testing.T, crd string, f func()) {
	t.Helper()
	ctx := context.Background()
	path := []string{"spec", "versions"}
	edit := func(change func(spec map[string]any)) {
		t.Helper()
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"})
		if err := env.Client.Get(ctx, client.ObjectKey{Name: crd}, u); err != nil {
			t.Fatal(err)
		}
		versions, _, err := unstructured.NestedSlice(u.Object, path...)
		if err != nil || len(versions) != 1 {
			t.Fatalf("CRD %s: versions %v, %v", crd, versions, err)
		}
		spec, ok, err := unstructured.NestedMap(versions[0].(map[string]any), "schema", "openAPIV3Schema", "properties", "spec")
		if !ok || err != nil {
			t.Fatalf("CRD %s has no spec schema (%v)", crd, err)
		}
		change(spec)
		if err := unstructured.SetNestedMap(versions[0].(map[string]any), spec, "schema", "openAPIV3Schema", "properties", "spec"); err != nil {
			t.Fatal(err)
		}
		if err := unstructured.SetNestedSlice(u.Object, versions, path...); err != nil {
			t.Fatal(err)
		}
		if err := env.Client.Update(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	var rules any
	edit(func(spec map[string]any) {
		rules = spec["x-kubernetes-validations"]
		delete(spec, "x-kubernetes-validations")
	})
	restored := false
	restore := func() {
		if !restored {
			restored = true
			edit(func(spec map[string]any) { spec["x-kubernetes-validations"] = rules })
		}
	}
	t.Cleanup(restore)
	f()
	restore()
}

// waitUsers waits until the object's count of users (status.nodes of a policy, status.peers
// of a BFDProfile) is want.
func waitUsers(t *testing.T, obj client.Object, name string, want int32) {
	t.Helper()
	poll(t, func() string {
		if err := env.Client.Get(context.Background(), client.ObjectKey{Name: name}, obj); err != nil {
			return err.Error()
		}
		var got *int32
		switch o := obj.(type) {
		case *v1.L2Policy:
			got = o.Status.Nodes
		case *v1.BGPAdvertisement:
			got = o.Status.Nodes
		case *v1.BFDProfile:
			got = o.Status.Peers
		}
		if got == nil || *got != want {
			return fmt.Sprintf("%s: count of users %v, want %d", name, ptrString(got), want)
		}
		return ""
	})
}

func ptrString(p *int32) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

// counterValue sums the series of the counter name whose labels include labels.
func counterValue(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue series
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}
