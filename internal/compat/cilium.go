package compat

import (
	"k8s.io/utils/ptr"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
)

// ciliumPool converts a CiliumLoadBalancerIPPool. Its serviceSelector, with the pseudo-labels
// io.kubernetes.service.namespace and io.kubernetes.service.name, means the same in FerroLB.
func (c *converter) ciliumPool(src Source, p *ciliumLoadBalancerIPPool) {
	out := &v1.IPPool{ObjectMeta: meta(p.Metadata, src.Name)}
	s := p.Spec
	out.Spec.ServiceSelector = s.ServiceSelector
	out.Spec.Disabled = s.Disabled

	// Cilium reserves the first and last address of a CIDR (network and broadcast) when
	// allowFirstLastIPs is "No", except in CIDRs of one or two addresses. When it is unset,
	// Cilium 1.16 and later hand them out and 1.15 reserved them. A cilium.io/v2 pool comes
	// from a Cilium that has the newer default, so only v2alpha1 pools are ambiguous, and for
	// those the safe choice is made: reserving two addresses costs little, handing out a
	// network's broadcast address can break clients.
	reserve := s.AllowFirstLastIPs == "No" || (s.AllowFirstLastIPs == "" && src.APIVersion == "cilium.io/v2alpha1")
	ambiguous := s.AllowFirstLastIPs == "" && reserve
	good := true // nothing failed so far; the rest is checked either way, to report all at once
	switch s.AllowFirstLastIPs {
	case "", "Yes", "No":
	default:
		c.fail(src, "spec.allowFirstLastIPs", "%q is neither Yes nor No; pool not converted", s.AllowFirstLastIPs)
		good = false
	}

	var blocks []block
	reserved := false
	add := func(field string, b ciliumIPBlock) {
		var out block
		var err error
		switch {
		case b.Cidr != "" && (b.Start != "" || b.Stop != ""):
			c.fail(src, field, "a block is a cidr or a start/stop range, not both; pool not converted")
			good = false
			return
		case b.Cidr != "":
			out, err = prefixBlock(b.Cidr)
			if err == nil && reserve {
				if first, last := out.span.from, out.span.to; first != last && first.Next() != last {
					out = block{out: v1.IPBlock{Start: first.Next().String(), Stop: last.Prev().String()},
						span: span{first.Next(), last.Prev()}}
					reserved = true
				}
			}
		case b.Start != "" && b.Stop == "":
			out, err = rangeBlock(b.Start, b.Start) // a single address, as in Cilium
		case b.Start != "":
			out, err = rangeBlock(b.Start, b.Stop)
		default:
			c.fail(src, field, "a block needs a cidr or a start; pool not converted")
			good = false
			return
		}
		if err != nil {
			c.fail(src, field, "%v; pool not converted", err)
			good = false
			return
		}
		out.field = field
		blocks = append(blocks, out)
	}
	for i, b := range s.Cidrs {
		add(fieldPath("spec", "cidrs", i), b)
	}
	for i, b := range s.Blocks {
		add(fieldPath("spec", "blocks", i), b)
	}
	if len(s.Cidrs)+len(s.Blocks) == 0 {
		c.fail(src, "spec.blocks", "a pool needs at least one block; not converted")
		good = false
	}
	for _, b := range blocks {
		out.Spec.Blocks = append(out.Spec.Blocks, b.out)
	}
	if ambiguous && reserved {
		c.warn(src, "spec.allowFirstLastIPs", "unset: Cilium 1.15 reserves the first and last address of each CIDR, "+
			"Cilium 1.16 and later hand them out; converted as reserved (CIDRs written as start/stop ranges without "+
			"them). On Cilium 1.16 or later, set allowFirstLastIPs: \"Yes\" in the input and convert again")
	}
	if !good {
		c.reject(src, out)
		return
	}
	field := "spec.blocks"
	if len(s.Blocks) == 0 {
		field = "spec.cidrs"
	}
	c.checkOrder(src, field, "Cilium", blocks, false)
	if c.emit(src, out) {
		c.pools = append(c.pools, poolInfo{src: src, name: out.Name, system: "Cilium", blocks: blocks})
	}
}

// ciliumL2 converts a CiliumL2AnnouncementPolicy. Cilium's interfaces are searched for its
// expressions, FerroLB's matched whole (see unanchoredInterface); Cilium announces neither
// kind of address unless told, FerroLB announces load balancer addresses unless told.
func (c *converter) ciliumL2(src Source, p *ciliumL2AnnouncementPolicy) {
	s := p.Spec
	out := &v1.L2Policy{ObjectMeta: meta(p.Metadata, src.Name)}
	out.Spec.ServiceSelector = s.ServiceSelector
	out.Spec.NodeSelector = s.NodeSelector
	for _, re := range s.Interfaces {
		out.Spec.Interfaces = append(out.Spec.Interfaces, unanchoredInterface(re))
	}
	out.Spec.LoadBalancerIPs = ptr.To(s.LoadBalancerIPs)
	out.Spec.ExternalIPs = s.ExternalIPs
	if s.ExternalIPs {
		// Cilium announces any external IP; FerroLB refuses those outside an IPPool, so a
		// silent conversion would stop announcing them on the day of the switch.
		c.warn(src, "spec.externalIPs", "true: FerroLB announces the spec.externalIPs of LoadBalancer, ClusterIP "+
			"and NodePort Services only when the address is inside an IPPool (the policy's pools, or any IPPool when "+
			"it names none); Cilium announces any. Put the external IPs in an IPPool with autoAssign: false, or "+
			"they are refused (condition ferrolb.io/Announced, reason ExternalIPNotInPool)")
	}
	if c.emit(src, out) {
		c.l2 = append(c.l2, l2Info{src: src, system: "Cilium", out: out})
	}
}
