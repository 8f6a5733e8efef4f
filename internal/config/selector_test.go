package config_test

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/config"
)

// TestSelectors: every kind's label selectors are checked by one rule, which the speakers
// (parsing) and the controller (the Valid condition) share, and a bad one is reported with
// the path of the field at fault: what the CRDs' CEL rules refuse (operators, values), what
// they leave to Go (label syntax), and objects stored before the rules existed.
func TestSelectors(t *testing.T) {
	req := func(key string, op metav1.LabelSelectorOperator, values ...string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "ok", Operator: metav1.LabelSelectorOpExists},
			{Key: key, Operator: op, Values: values},
		}}
	}
	selectors := []struct {
		name string
		sel  *metav1.LabelSelector
		// want is the error after the field's path ("" for a valid selector); the path is
		// spec.<field> followed by wantPath.
		wantPath, want string
	}{
		{name: "valid", sel: &metav1.LabelSelector{
			MatchLabels: map[string]string{"app": "web", "example.com/tier": ""},
			MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "zone", Operator: metav1.LabelSelectorOpIn, Values: []string{"a", "b"}},
				{Key: "gpu", Operator: metav1.LabelSelectorOpDoesNotExist},
			}}},
		{name: "lower-case operator (the report's typo)", sel: req("zone", "in", "a"),
			wantPath: ".matchExpressions[1].operator", want: `Invalid value: "in": not a valid selector operator`},
		{name: "In without values", sel: req("zone", metav1.LabelSelectorOpIn),
			wantPath: ".matchExpressions[1].values", want: "Required value"},
		{name: "NotIn without values", sel: req("zone", metav1.LabelSelectorOpNotIn),
			wantPath: ".matchExpressions[1].values", want: "Required value"},
		{name: "Exists with values", sel: req("zone", metav1.LabelSelectorOpExists, "a"),
			wantPath: ".matchExpressions[1].values", want: "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"},
		{name: "key with a space", sel: req("my zone", metav1.LabelSelectorOpExists),
			wantPath: ".matchExpressions[1].key", want: `Invalid value: "my zone"`},
		{name: "value too long", sel: req("zone", metav1.LabelSelectorOpIn, strings.Repeat("a", 64)),
			wantPath: ".matchExpressions[1].values[0]", want: `Invalid value: "` + strings.Repeat("a", 64) + `": must be no more than 63 bytes`},
		{name: "matchLabels key", sel: &metav1.LabelSelector{MatchLabels: map[string]string{"-app": "web"}},
			wantPath: ".matchLabels", want: `Invalid value: "-app"`},
		{name: "matchLabels value", sel: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web server"}},
			wantPath: ".matchLabels", want: `Invalid value: "web server"`},
		{name: "two problems: both said", sel: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "a", Operator: "Near"}, {Key: "b", Operator: metav1.LabelSelectorOpIn}}},
			wantPath: ".matchExpressions[0].operator", want: `Invalid value: "Near": not a valid selector operator`},
	}
	meta := metav1.ObjectMeta{Name: "x"}
	kinds := []struct {
		field string
		parse func(*metav1.LabelSelector) error
	}{
		{"spec.serviceSelector (IPPool)", func(s *metav1.LabelSelector) error {
			_, err := config.ParsePool(&v1.IPPool{ObjectMeta: meta, Spec: v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "192.0.2.0/30"}}, ServiceSelector: s}})
			return err
		}},
		{"spec.serviceSelector (L2Policy)", func(s *metav1.LabelSelector) error {
			_, err := config.ParseL2Policy(&v1.L2Policy{ObjectMeta: meta, Spec: v1.L2PolicySpec{ServiceSelector: s}})
			return err
		}},
		{"spec.nodeSelector (L2Policy)", func(s *metav1.LabelSelector) error {
			_, err := config.ParseL2Policy(&v1.L2Policy{ObjectMeta: meta, Spec: v1.L2PolicySpec{NodeSelector: s}})
			return err
		}},
		{"spec.nodeSelector (BGPPeer)", func(s *metav1.LabelSelector) error {
			_, err := config.ParseBGPPeer(&v1.BGPPeer{ObjectMeta: meta, Spec: v1.BGPPeerSpec{PeerAddress: "192.0.2.1", PeerASN: 1, LocalASN: 2, NodeSelector: s}})
			return err
		}},
		{"spec.serviceSelector (BGPAdvertisement)", func(s *metav1.LabelSelector) error {
			_, err := config.ParseBGPAdvertisement(&v1.BGPAdvertisement{ObjectMeta: meta, Spec: v1.BGPAdvertisementSpec{ServiceSelector: s}})
			return err
		}},
		{"spec.nodeSelector (BGPAdvertisement)", func(s *metav1.LabelSelector) error {
			_, err := config.ParseBGPAdvertisement(&v1.BGPAdvertisement{ObjectMeta: meta, Spec: v1.BGPAdvertisementSpec{NodeSelector: s}})
			return err
		}},
	}
	for _, k := range kinds {
		field, _, _ := strings.Cut(k.field, " ")
		for _, tt := range selectors {
			t.Run(k.field+"/"+tt.name, func(t *testing.T) {
				err := k.parse(tt.sel)
				if tt.want == "" {
					if err != nil {
						t.Fatalf("valid selector refused: %v", err)
					}
					return
				}
				want := field + tt.wantPath + ": " + tt.want
				if err == nil || !strings.HasPrefix(err.Error(), want) {
					t.Fatalf("error = %v, want one starting %q", err, want)
				}
			})
		}
	}
	// Every problem is said, not only the first.
	_, err := config.ParseL2Policy(&v1.L2Policy{ObjectMeta: meta, Spec: v1.L2PolicySpec{NodeSelector: selectors[len(selectors)-1].sel}})
	if err == nil || !strings.Contains(err.Error(), "spec.nodeSelector.matchExpressions[1].values: Required value") {
		t.Errorf("error = %v, want the second problem said too", err)
	}
}
