package config

import (
	"fmt"
	"regexp"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

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
	if out.ServiceSelector, err = selector(p.Spec.ServiceSelector); err != nil {
		return out, FieldError{"spec.serviceSelector", err.Error()}
	}
	if out.NodeSelector, err = selector(p.Spec.NodeSelector); err != nil {
		return out, FieldError{"spec.nodeSelector", err.Error()}
	}
	return out, nil
}

func selector(s *metav1.LabelSelector) (labels.Selector, error) {
	if s == nil {
		return nil, nil
	}
	return metav1.LabelSelectorAsSelector(s)
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
