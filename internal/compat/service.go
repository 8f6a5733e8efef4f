package compat

import (
	"slices"
	"sort"
	"strings"

	"github.com/ferrolb/ferrolb/internal/ipam"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferrolb/ferrolb/internal/config"
)

// service is a Service, as far as the check reads it.
type service struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta  `json:"metadata"`
	Spec            corev1.ServiceSpec `json:"spec"`
	Status          any                `json:"status"`
}

// honouredAnnotations are the MetalLB and Cilium Service annotations FerroLB reads as they are
// (internal/config); informational ones that their controllers write need nothing either.
var honouredAnnotations = []string{
	"metallb.io/loadBalancerIPs", "metallb.universe.tf/loadBalancerIPs",
	"metallb.io/address-pool", "metallb.universe.tf/address-pool",
	"metallb.io/allow-shared-ip", "metallb.universe.tf/allow-shared-ip",
	"lbipam.cilium.io/ips", "io.cilium/lb-ipam-ips", "lbipam.cilium.io/sharing-key",
	// Written by MetalLB to show where an address came from; FerroLB says so in a condition.
	"metallb.io/ip-allocated-from-pool", "metallb.universe.tf/ip-allocated-from-pool",
}

// checkService produces nothing (Services stay as they are: FerroLB reads MetalLB's and
// Cilium's address annotations) but warns about what FerroLB would not honour.
func (c *converter) checkService(src Source, s *service) {
	if s.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return
	}
	if cl := s.Spec.LoadBalancerClass; cl != nil && *cl != config.LoadBalancerClass {
		c.warn(src, "spec.loadBalancerClass", "%q: FerroLB serves Services with no class or %s and leaves this one "+
			"alone; the field cannot be changed, so recreate the Service without it (or run the controller and "+
			"speakers with --load-balancer-class=%s)", *cl, config.LoadBalancerClass, *cl)
	}
	c.checkRequestedAddresses(src, s)
	keys := make([]string, 0, len(s.Metadata.Annotations))
	for k := range s.Metadata.Annotations {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if slices.Contains(honouredAnnotations, k) {
			continue
		}
		prefix, _, _ := strings.Cut(k, "/")
		switch {
		case k == "lbipam.cilium.io/sharing-cross-namespace":
			c.warn(src, annotationField(k), "FerroLB shares Cilium sharing keys within one namespace only; to share "+
				"across namespaces, use metallb.io/allow-shared-ip (cluster-wide) instead")
		case prefix == "metallb.io" || prefix == "metallb.universe.tf" || prefix == "lbipam.cilium.io" ||
			strings.HasPrefix(k, "io.cilium/lb-ipam"):
			// Only address management annotations: Cilium's other Service annotations concern
			// its datapath, which keeps working when Cilium stays the CNI.
			c.warn(src, annotationField(k), "not read by FerroLB; see docs/migration.md for the annotations it honours")
		}
	}
}

func annotationField(k string) string { return "metadata.annotations[" + k + "]" }

// checkRequestedAddresses warns about a Service that lists several addresses of one family:
// Cilium gives it all of them, FerroLB one per family unless the pool allows more (MetalLB
// refuses such a Service). The request is read by FerroLB's own parse, so what it refuses
// whole (too long) is said too.
func (c *converter) checkRequestedAddresses(src Source, s *service) {
	req, problems := config.ServiceRequest(&corev1.Service{ObjectMeta: s.Metadata, Spec: s.Spec}, nil)
	for _, p := range problems {
		if strings.Contains(p.Reason, "refused") {
			c.warn(src, p.Field, "%s", p.Reason)
		}
	}
	var n [2]int
	for _, a := range req.Addresses {
		if ipam.FamilyOf(a) == ipam.IPv6 {
			n[1]++
		} else {
			n[0]++
		}
	}
	for i, fam := range []ipam.Family{ipam.IPv4, ipam.IPv6} {
		if n[i] > 1 {
			c.warn(src, "metadata.annotations", "lists %d %s addresses: FerroLB gives a Service one address per family "+
				"(Cilium gives every one listed), and more only from a pool that allows them: set spec.maxAddressesPerService: %d "+
				"on the IPPool holding them", n[i], fam, n[i])
		}
	}
}
