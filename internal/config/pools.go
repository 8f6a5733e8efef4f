// Package config turns API objects into validated domain configuration. It is the one place
// that parses and validates what users write; the controller and the speaker both call it.
// It is pure: no client, no cache, no I/O.
package config

import (
	"fmt"
	"math"
	"net/netip"
	"slices"

	"k8s.io/apimachinery/pkg/labels"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/ipam"
)

// Pool is an IPPool translated: the allocator's view plus what decides which Services it
// serves.
type Pool struct {
	ipam.Pool
	Selector   labels.Selector // nil: every Service
	Namespaces []string        // empty: every namespace
}

// MaxAddressesPerService is the most an IPPool's maxAddressesPerService may say (its CRD's
// maximum too).
const MaxAddressesPerService = 64

// FieldError is a problem with one field of an object, named by its path.
type FieldError struct {
	Field  string
	Reason string
}

func (e FieldError) Error() string { return e.Field + ": " + e.Reason }

// ParsePool translates an IPPool. The API server has already checked what CEL can check; this
// checks the rest (an IPv6 range that runs backwards) and everything again, so objects that
// predate a validation rule are caught too.
func ParsePool(p *v1.IPPool) (Pool, error) {
	out := Pool{Pool: ipam.Pool{
		Name:          p.Name,
		AutoAssign:    p.Spec.AutoAssign == nil || *p.Spec.AutoAssign,
		AvoidBuggyIPs: p.Spec.AvoidBuggyIPs,
		Disabled:      p.Spec.Disabled,
		// Pools without a priority come after all pools with one.
		Priority: math.MaxInt32 + 1,
	}, Namespaces: p.Spec.Namespaces}
	if p.Spec.Priority != nil {
		out.Priority = int(*p.Spec.Priority)
	}
	if m := p.Spec.MaxAddressesPerService; m != nil {
		if *m < 1 || *m > MaxAddressesPerService {
			return out, FieldError{"spec.maxAddressesPerService", fmt.Sprintf("%d is not 1 to %d", *m, MaxAddressesPerService)}
		}
		out.MaxPerService = int(*m)
	}
	if len(p.Spec.Blocks) == 0 {
		return out, FieldError{"spec.blocks", "a pool needs at least one block"}
	}
	for i, b := range p.Spec.Blocks {
		r, err := parseBlock(b)
		if err != nil {
			return out, FieldError{fmt.Sprintf("spec.blocks[%d]", i), err.Error()}
		}
		out.Ranges = append(out.Ranges, r)
	}
	sel, err := selector("serviceSelector", p.Spec.ServiceSelector)
	if err != nil {
		return out, err
	}
	out.Selector = sel
	return out, nil
}

func parseBlock(b v1.IPBlock) (ipam.Range, error) {
	switch {
	case b.CIDR != "" && (b.Start != "" || b.Stop != ""):
		return ipam.Range{}, fmt.Errorf("a block is either a cidr or a start/stop range, not both")
	case b.CIDR != "":
		p, err := netip.ParsePrefix(b.CIDR)
		if err != nil {
			return ipam.Range{}, fmt.Errorf("cidr %q: %w", b.CIDR, err)
		}
		if p.Masked() != p {
			return ipam.Range{}, fmt.Errorf("cidr %q has host bits set (the network is %s)", b.CIDR, p.Masked())
		}
		return ipam.PrefixRange(p), nil
	case b.Start != "" && b.Stop != "":
		from, err := parseAddr(b.Start)
		if err != nil {
			return ipam.Range{}, fmt.Errorf("start: %w", err)
		}
		to, err := parseAddr(b.Stop)
		if err != nil {
			return ipam.Range{}, fmt.Errorf("stop: %w", err)
		}
		r := ipam.Range{From: from, To: to}
		if err := r.Valid(); err != nil {
			return ipam.Range{}, err
		}
		return r, nil
	}
	return ipam.Range{}, fmt.Errorf("a block needs a cidr, or both start and stop")
}

// parseAddr parses an address as users write it; IPv4-mapped IPv6 addresses count as IPv4
// and zones are refused (a zone has no meaning for a Service address).
func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q: a Service address has no zone", s)
	}
	return a.Unmap(), nil
}

// Serves reports whether the pool may give addresses to a Service with these labels in this
// namespace. The pseudo-labels io.kubernetes.service.namespace and
// io.kubernetes.service.name match the Service's namespace and name, as in Cilium.
func (p Pool) Serves(namespace, name string, svcLabels map[string]string) bool {
	if len(p.Namespaces) > 0 && !slices.Contains(p.Namespaces, namespace) {
		return false
	}
	if p.Selector == nil {
		return true
	}
	return p.Selector.Matches(serviceLabels{namespace: namespace, name: name, labels: svcLabels})
}

// Pseudo-labels a pool's serviceSelector may use.
const (
	LabelServiceNamespace = "io.kubernetes.service.namespace"
	LabelServiceName      = "io.kubernetes.service.name"
)

// serviceLabels adds the pseudo-labels to a Service's labels without copying them.
type serviceLabels struct {
	namespace, name string
	labels          map[string]string
}

func (s serviceLabels) Has(key string) bool {
	_, ok := s.lookup(key)
	return ok
}

func (s serviceLabels) Get(key string) string {
	v, _ := s.lookup(key)
	return v
}

func (s serviceLabels) Lookup(key string) (string, bool) { return s.lookup(key) }

func (s serviceLabels) lookup(key string) (string, bool) {
	switch key {
	case LabelServiceNamespace:
		return s.namespace, true
	case LabelServiceName:
		return s.name, true
	}
	v, ok := s.labels[key]
	return v, ok
}
