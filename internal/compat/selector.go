package compat

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// orSelectors turns a list of label selectors that MetalLB ORs together (nodeSelectors,
// serviceSelectors) into the one selector a FerroLB field holds. It succeeds when the list has
// at most one selector, or when every selector requires one value of the same label, as in
// MetalLB's documented "kubernetes.io/hostname: NodeA, or NodeB": that is the set-based
// "key In (NodeA, NodeB)". Otherwise ok is false and the caller decides what to keep.
func orSelectors(sels []metav1.LabelSelector) (out *metav1.LabelSelector, ok bool) {
	switch len(sels) {
	case 0:
		return nil, true
	case 1:
		s := sels[0]
		return &s, true
	}
	var key string
	var values []string
	for i, s := range sels {
		k, vs, single := singleKey(s)
		if !single || (i > 0 && k != key) {
			return nil, false
		}
		key = k
		for _, v := range vs {
			if !slices.Contains(values, v) {
				values = append(values, v)
			}
		}
	}
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: key, Operator: metav1.LabelSelectorOpIn, Values: values},
	}}, true
}

// singleKey reports whether s requires exactly one label to have one of some values, and which.
func singleKey(s metav1.LabelSelector) (key string, values []string, ok bool) {
	switch {
	case len(s.MatchLabels) == 1 && len(s.MatchExpressions) == 0:
		for k, v := range s.MatchLabels {
			return k, []string{v}, true
		}
	case len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 1 && s.MatchExpressions[0].Operator == metav1.LabelSelectorOpIn:
		e := s.MatchExpressions[0]
		return e.Key, e.Values, true
	}
	return "", nil, false
}

// selectorString renders a selector for messages, as kubectl does.
func selectorString(s metav1.LabelSelector) string {
	sel, err := metav1.LabelSelectorAsSelector(&s)
	if err != nil {
		return fmt.Sprintf("%v", s)
	}
	if str := sel.String(); str != "" {
		return str
	}
	return "(everything)"
}

// selectorStrings renders selectors for messages.
func selectorStrings(sels []metav1.LabelSelector) string {
	var parts []string
	for _, s := range sels {
		parts = append(parts, "{"+selectorString(s)+"}")
	}
	return strings.Join(parts, " or ")
}

// matches reports whether a selector matches a set of labels; an invalid selector matches
// nothing.
func matches(s metav1.LabelSelector, set map[string]string) bool {
	sel, err := metav1.LabelSelectorAsSelector(&s)
	if err != nil {
		return false
	}
	return sel.Matches(labels.Set(set))
}

// disjoint reports whether no set of labels can match both selectors, as far as their
// matchLabels show (one label required to hold two different values). A nil selector matches
// everything.
func disjoint(a, b *metav1.LabelSelector) bool {
	if a == nil || b == nil {
		return false
	}
	for k, v := range a.MatchLabels {
		if w, ok := b.MatchLabels[k]; ok && w != v {
			return true
		}
	}
	return false
}

// equalSelectors reports whether two selectors are written the same way (nil and empty are
// both "everything").
func equalSelectors(a, b *metav1.LabelSelector) bool {
	isAll := func(s *metav1.LabelSelector) bool {
		return s == nil || (len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0)
	}
	if isAll(a) || isAll(b) {
		return isAll(a) && isAll(b)
	}
	if !maps.Equal(a.MatchLabels, b.MatchLabels) || len(a.MatchExpressions) != len(b.MatchExpressions) {
		return false
	}
	for i := range a.MatchExpressions {
		x, y := a.MatchExpressions[i], b.MatchExpressions[i]
		if x.Key != y.Key || x.Operator != y.Operator || !slices.Equal(x.Values, y.Values) {
			return false
		}
	}
	return true
}

// literalInterface is the FerroLB interface pattern for an interface name MetalLB takes
// literally: FerroLB's entries are regular expressions matched against the whole name.
func literalInterface(name string) string { return regexp.QuoteMeta(name) }

// unanchoredInterface is the FerroLB interface pattern equivalent to a Cilium one. Cilium
// searches the name for the expression ("eth0" also matches "veth0abc" unless written
// "^eth0$"); FerroLB matches the whole name. Wrapping the expression in ".*" on each side it
// is not anchored keeps Cilium's meaning exactly.
func unanchoredInterface(re string) string {
	if strings.Contains(re, "|") {
		// An alternation's anchors bind to its branches, not to the whole: wrap it whole.
		return ".*(?:" + re + ").*"
	}
	start := strings.HasPrefix(re, "^")
	end := strings.HasSuffix(re, "$") && !escaped(re, len(re)-1)
	switch {
	case start && end:
		return re
	case start:
		return re + ".*"
	case end:
		return ".*" + re
	}
	return ".*" + re + ".*"
}

// escaped reports whether the byte at i of a regular expression is escaped: preceded by an
// odd number of backslashes.
func escaped(re string, i int) bool {
	n := 0
	for j := i - 1; j >= 0 && re[j] == '\\'; j-- {
		n++
	}
	return n%2 == 1
}
