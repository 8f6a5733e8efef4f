package config

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/ferrolb/ferrolb/internal/ipam"
)

// Service annotations FerroLB reads. MetalLB's and Cilium's are honoured too, so a migration
// needs no edits to Services.
const (
	AnnotationIPs        = "ferrolb.io/ips"
	AnnotationPool       = "ferrolb.io/pool"
	AnnotationSharingKey = "ferrolb.io/sharing-key"
	// AnnotationDatapathMode chooses how the XDP datapath (speaker --datapath=xdp) sends
	// the Service's packets to its endpoints: "dsr" or "snat"; without it, the node's
	// default (--datapath-dsr). The speakers read it; the controller only knows it.
	AnnotationDatapathMode = "ferrolb.io/datapath-mode"
)

// ConditionAnnounced is the Service condition in which the speakers say which node announces
// each address by layer 2, or why none does. The speakers write it; the controller removes
// it with its own when it stops serving a Service.
const ConditionAnnounced = "ferrolb.io/Announced"

// ConditionAdvertised is the Service condition in which the speakers say which nodes
// advertise each address over BGP, to which BGPPeers. Like Announced, the controller removes
// it when it stops serving a Service.
const ConditionAdvertised = "ferrolb.io/Advertised"

// LoadBalancerClass is the spec.loadBalancerClass FerroLB serves by default (besides none).
const LoadBalancerClass = "ferrolb.io/ferrolb"

// Bounds on a Service's request for addresses (the annotations of ipAnnotations). A Service
// gets one address per family, more only where its pool's maxAddressesPerService (at most
// MaxRequestedAddresses) allows, so a longer request is a mistake or an attempt on the
// pool: it is refused whole, unread, instead of being parsed on every reconcile.
const (
	MaxAddressAnnotationBytes = 4096
	MaxRequestedAddresses     = 64
)

// The annotations that request addresses, pools and sharing, in precedence order: when a
// Service carries several that disagree, the first wins and the others are reported.
var (
	ipAnnotations = []string{
		AnnotationIPs,
		"metallb.io/loadBalancerIPs",
		"metallb.universe.tf/loadBalancerIPs",
		"lbipam.cilium.io/ips",
		"io.cilium/lb-ipam-ips",
	}
	poolAnnotations = []string{
		AnnotationPool,
		"metallb.io/address-pool",
		"metallb.universe.tf/address-pool",
	}
	// sharingAnnotations: FerroLB's and Cilium's keys are scoped to the Service's namespace
	// (a tenant cannot attach to another tenant's address by guessing its key); MetalLB's are
	// cluster-wide, as in MetalLB, so migrated Services keep sharing across namespaces.
	sharingAnnotations = []struct {
		name    string
		cluster bool
	}{
		{AnnotationSharingKey, false},
		{"lbipam.cilium.io/sharing-key", false},
		{"metallb.io/allow-shared-ip", true},
		{"metallb.universe.tf/allow-shared-ip", true},
	}
)

// knownAnnotations are the ferrolb.io/ annotations FerroLB defines; any other is reported, as
// it is most likely a typo that would otherwise be silently ignored.
var knownAnnotations = append([]string{AnnotationIPs, AnnotationPool, AnnotationSharingKey, AnnotationDatapathMode, AnnotationHealthCheck}, healthCheckSettings...)

// Key identifies a Service in the allocator.
func Key(svc *corev1.Service) string { return svc.Namespace + "/" + svc.Name }

// Served reports whether FerroLB allocates for svc: a LoadBalancer Service with no class or
// with class.
func Served(svc *corev1.Service, class string) bool {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	return svc.Spec.LoadBalancerClass == nil || *svc.Spec.LoadBalancerClass == class
}

// ExternalIPsOnly reports whether svc is a Service FerroLB does not allocate for but whose
// spec.externalIPs an L2Policy with externalIPs may announce: a ClusterIP (with a cluster
// IP: kube-proxy ignores headless Services) or NodePort Service with external IPs, as in
// Cilium's layer 2 announcement example. kube-proxy carries the traffic once it reaches a
// node. Such Services have no class, so they count as Services with none.
func ExternalIPsOnly(svc *corev1.Service) bool {
	if len(svc.Spec.ExternalIPs) == 0 {
		return false
	}
	switch svc.Spec.Type {
	case corev1.ServiceTypeClusterIP, "":
		return svc.Spec.ClusterIP != corev1.ClusterIPNone
	case corev1.ServiceTypeNodePort:
		return true
	}
	return false
}

// ServiceRequest translates a Service into an allocation request. pools are all pools; the
// request's candidates are those that serve the Service (or those it names, if they serve it).
// Problems with the Service's annotations come back as FieldErrors: the request still carries
// everything that could be understood, so one bad entry costs only itself.
func ServiceRequest(svc *corev1.Service, pools []Pool) (ipam.Request, []FieldError) {
	var problems []FieldError
	req := ipam.Request{Service: Key(svc), Local: svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal}
	for _, f := range svc.Spec.IPFamilies {
		switch f {
		case corev1.IPv4Protocol:
			req.Families = append(req.Families, ipam.IPv4)
		case corev1.IPv6Protocol:
			req.Families = append(req.Families, ipam.IPv6)
		}
	}
	if p := svc.Spec.IPFamilyPolicy; p != nil {
		switch *p {
		case corev1.IPFamilyPolicyPreferDualStack:
			req.Policy = ipam.PreferDualStack
		case corev1.IPFamilyPolicyRequireDualStack:
			req.Policy = ipam.RequireDualStack
		}
	}
	for _, p := range svc.Spec.Ports {
		req.Ports = append(req.Ports, ipam.Port{Protocol: string(p.Protocol), Number: uint16(p.Port)}) //nolint:gosec // the API server bounds ports to 1-65535
	}

	ann := svc.Annotations
	for k := range ann {
		if strings.HasPrefix(k, "ferrolb.io/") && !slices.Contains(knownAnnotations, k) {
			problems = append(problems, FieldError{annotationPath(k), fmt.Sprintf("unknown annotation; FerroLB reads %s", strings.Join(knownAnnotations, ", "))})
		}
	}
	// The health checks are the speakers' (with --datapath=xdp); the controller reports
	// their problems, once for the cluster rather than once per node.
	_, _, hcProblems := ServiceHealthCheck(svc)
	problems = append(problems, hcProblems...)

	// Requested addresses.
	ipsFrom, ipsValue := first(ann, ipAnnotations)
	if ipsFrom != "" {
		problems = append(problems, disagreeing(ann, ipAnnotations, ipsFrom)...)
		entries, why := addressEntries(ipsValue)
		if why != "" {
			// Which of the addresses it holds the Service still wants is unknown: it keeps
			// them all (a Service is never robbed for its annotation's sake) and gets no other.
			problems = append(problems, FieldError{annotationPath(ipsFrom), why +
				"; the Service keeps the addresses it holds and is given no other. List one address per family " +
				"(more only where the pool's maxAddressesPerService allows)"})
			req.KeepOnly = true
		}
		for _, s := range entries {
			a, err := parseAddr(s)
			if err != nil {
				problems = append(problems, FieldError{annotationPath(ipsFrom), fmt.Sprintf("%q is not an IP address", s)})
				continue
			}
			if !slices.Contains(req.Addresses, a) {
				req.Addresses = append(req.Addresses, a)
			}
		}
		if svc.Spec.LoadBalancerIP != "" {
			problems = append(problems, FieldError{"spec.loadBalancerIP", fmt.Sprintf("ignored: annotation %s takes precedence", ipsFrom)})
		}
	} else if s := svc.Spec.LoadBalancerIP; s != "" {
		a, err := parseAddr(s)
		if err != nil {
			problems = append(problems, FieldError{"spec.loadBalancerIP", fmt.Sprintf("%q is not an IP address", s)})
		} else {
			req.Addresses = append(req.Addresses, a)
		}
	}

	// Sharing.
	for _, sa := range sharingAnnotations {
		v := strings.TrimSpace(ann[sa.name])
		if v == "" {
			continue
		}
		if req.SharingKey != "" {
			problems = append(problems, FieldError{annotationPath(sa.name), "ignored: another sharing annotation takes precedence"})
			continue
		}
		if sa.cluster {
			req.SharingKey = "cluster/" + v
		} else {
			req.SharingKey = "namespace/" + svc.Namespace + "/" + v
		}
	}

	// Candidate pools.
	poolFrom, poolValue := first(ann, poolAnnotations)
	var named []string
	if poolFrom != "" {
		problems = append(problems, disagreeing(ann, poolAnnotations, poolFrom)...)
		for _, n := range strings.Split(poolValue, ",") {
			if n = strings.TrimSpace(n); n != "" {
				named = append(named, n)
			}
		}
		req.NamedPool = true
	}
	for _, p := range pools {
		if named != nil && !slices.Contains(named, p.Name) {
			continue
		}
		if p.Serves(svc.Namespace, svc.Name, svc.Labels) {
			req.Pools = append(req.Pools, p.Name)
		}
	}
	for _, n := range named {
		if !slices.ContainsFunc(pools, func(p Pool) bool { return p.Name == n }) {
			problems = append(problems, FieldError{annotationPath(poolFrom), fmt.Sprintf("no IPPool named %q", n)})
		} else if !slices.Contains(req.Pools, n) {
			problems = append(problems, FieldError{annotationPath(poolFrom), fmt.Sprintf("IPPool %q does not serve this Service (its namespaces or serviceSelector exclude it)", n)})
		}
	}
	return req, problems
}

func annotationPath(name string) string { return "metadata.annotations[" + name + "]" }

// addressEntries splits an address annotation into its non-empty entries, or says why it is
// refused whole: longer than MaxAddressAnnotationBytes (then it is not split at all) or with
// more than MaxRequestedAddresses entries.
func addressEntries(v string) ([]string, string) {
	if len(v) > MaxAddressAnnotationBytes {
		return nil, fmt.Sprintf("refused unread: %d bytes, more than the %d an address request may have", len(v), MaxAddressAnnotationBytes)
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	if len(out) > MaxRequestedAddresses {
		return nil, fmt.Sprintf("refused: %d entries, more than the %d an address request may list", len(out), MaxRequestedAddresses)
	}
	return out, ""
}

// first returns the first of names set in ann, and its value.
func first(ann map[string]string, names []string) (string, string) {
	for _, n := range names {
		if v, ok := ann[n]; ok && strings.TrimSpace(v) != "" {
			return n, v
		}
	}
	return "", ""
}

// disagreeing reports the annotations among names, other than winner, whose value differs.
func disagreeing(ann map[string]string, names []string, winner string) []FieldError {
	var out []FieldError
	for _, n := range names {
		if v, ok := ann[n]; ok && n != winner && v != ann[winner] {
			out = append(out, FieldError{annotationPath(n), fmt.Sprintf("ignored: %s takes precedence", winner)})
		}
	}
	return out
}
