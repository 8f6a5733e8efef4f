package controller_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

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
