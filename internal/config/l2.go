package config

import (
	"fmt"
	"regexp"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
)

// L2Policy is an L2Policy translated.
type L2Policy struct {
	Name            string
	ServiceSelector labels.Selector // nil: every Service
	NodeSelector    labels.Selector // nil: every node
	// Interfaces match whole interface names; empty: every interface that is up, except
	// loopback.
	Interfaces      []*regexp.Regexp
	Pools           []string // empty: every pool
	LoadBalancerIPs bool
	ExternalIPs     bool
}

// ParseL2Policy translates an L2Policy; errors name the field.
func ParseL2Policy(p *v1.L2Policy) (L2Policy, error) {
	out := L2Policy{
		Name:            p.Name,
		Pools:           p.Spec.Pools,
		LoadBalancerIPs: p.Spec.LoadBalancerIPs == nil || *p.Spec.LoadBalancerIPs,
		ExternalIPs:     p.Spec.ExternalIPs,
	}
	for i, re := range p.Spec.Interfaces {
		// Anchored: "eth0" must not also match "veth0abc".
		c, err := regexp.Compile("^(?:" + re + ")$")
		if err != nil {
			return out, FieldError{fmt.Sprintf("spec.interfaces[%d]", i), err.Error()}
		}
		out.Interfaces = append(out.Interfaces, c)
	}
	var err error
	if out.ServiceSelector, err = selector("serviceSelector", p.Spec.ServiceSelector); err != nil {
		return out, err
	}
	if out.NodeSelector, err = selector("nodeSelector", p.Spec.NodeSelector); err != nil {
		return out, err
	}
	return out, nil
}

// selector translates the label selector in spec.<name>, checked as the API server checks
// the selectors of its own kinds: operators In, NotIn, Exists and DoesNotExist, values for
// the first two and none for the others, label keys and values of label syntax. The CRDs'
// CEL rules check the operators and values too, but not the syntax of keys and values (too
// costly for CEL on an unbounded selector) nor objects stored before the rules existed; a
// selector that fails here makes the speakers ignore its whole object, so the error names
// the field, for the object's condition. nil: every object.
func selector(name string, s *metav1.LabelSelector) (labels.Selector, error) {
	if s == nil {
		return nil, nil
	}
	path := field.NewPath("spec", name)
	if errs := metav1validation.ValidateLabelSelector(s, metav1validation.LabelSelectorValidationOptions{}, path); len(errs) > 0 {
		reasons := make([]string, 0, len(errs))
		for _, e := range errs[1:] {
			reasons = append(reasons, e.Error())
		}
		reason := errs[0].ErrorBody()
		if len(reasons) > 0 {
			reason += "; and " + strings.Join(reasons, "; ")
		}
		return nil, FieldError{errs[0].Field, reason}
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return nil, FieldError{path.String(), err.Error()}
	}
	return sel, nil
}

// MatchesInterface reports whether the policy announces on the interface named name.
func (p L2Policy) MatchesInterface(name string) bool {
	if len(p.Interfaces) == 0 {
		return true
	}
	for _, re := range p.Interfaces {
		if re.MatchString(name) {
			return true
		}
	}
	return false
}

// MatchesService reports whether the policy covers a Service.
func (p L2Policy) MatchesService(namespace, name string, svcLabels map[string]string) bool {
	return p.ServiceSelector == nil || p.ServiceSelector.Matches(serviceLabels{namespace: namespace, name: name, labels: svcLabels})
}

// MatchesNode reports whether a node with these labels may announce for the policy.
func (p L2Policy) MatchesNode(nodeLabels map[string]string) bool {
	return p.NodeSelector == nil || p.NodeSelector.Matches(labels.Set(nodeLabels))
}
