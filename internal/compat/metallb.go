package compat

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/config"
)

// pinnedLast is the priority given to a MetalLB pool that is pinned to namespaces or Services
// but has no priority: MetalLB tries such pools after the pinned pools with a priority and
// before every pool that is not pinned. FerroLB tries pools without a priority after all pools
// with one, so the largest priority keeps MetalLB's order.
const pinnedLast = math.MaxInt32

// metallbPool converts an IPAddressPool.
func (c *converter) metallbPool(src Source, p *metallbIPAddressPool) {
	out := &v1.IPPool{ObjectMeta: meta(p.Metadata, src.Name)}
	s := p.Spec
	var blocks []block
	good := true // every address is; the rest is checked either way, to report all at once
	for i, a := range s.Addresses {
		field := fieldPath("spec", "addresses", i)
		var b block
		var err error
		if from, to, isRange := strings.Cut(a, "-"); isRange {
			b, err = rangeBlock(from, to)
		} else {
			b, err = prefixBlock(a)
		}
		if err != nil {
			c.fail(src, field, "%v; pool not converted", err)
			good = false
			continue
		}
		b.field = field
		blocks = append(blocks, b)
		out.Spec.Blocks = append(out.Spec.Blocks, b.out)
	}
	if len(s.Addresses) == 0 {
		c.fail(src, "spec.addresses", "a pool needs at least one address range; not converted")
		good = false
	}
	if s.AutoAssign != nil && !*s.AutoAssign {
		out.Spec.AutoAssign = ptr.To(false)
	}
	out.Spec.AvoidBuggyIPs = s.AvoidBuggyIPs
	if good {
		c.checkOrder(src, "spec.addresses", "MetalLB", blocks, s.AvoidBuggyIPs)
	}

	if sa := s.ServiceAllocation; sa != nil {
		const f = "spec.serviceAllocation"
		pinned := len(sa.Namespaces) > 0 || len(sa.NamespaceSelectors) > 0 || len(sa.ServiceSelectors) > 0
		switch {
		case sa.Priority > math.MaxInt32:
			c.warn(src, f+".priority", "%d is above FerroLB's largest priority; converted as %d", sa.Priority, pinnedLast)
			out.Spec.Priority = ptr.To(int32(pinnedLast))
		case sa.Priority > 0:
			out.Spec.Priority = ptr.To(int32(sa.Priority))
		case sa.Priority < 0:
			c.warn(src, f+".priority", "%d: MetalLB orders negative priorities inconsistently; converted as no priority", sa.Priority)
		}
		if pinned && out.Spec.Priority == nil {
			out.Spec.Priority = ptr.To(int32(pinnedLast))
		}
		if !pinned {
			// MetalLB only auto-assigns a pool with a serviceAllocation when the Service's
			// namespace or labels pin it there; with nothing to pin to, never.
			out.Spec.AutoAssign = ptr.To(false)
			c.warn(src, f, "names no namespaces and no selectors: MetalLB then never assigns this pool's addresses "+
				"unless a Service asks for them; converted as autoAssign: false")
		}
		out.Spec.Namespaces = slices.Clone(sa.Namespaces)
		if len(sa.NamespaceSelectors) > 0 {
			if len(sa.Namespaces) == 0 {
				out.Spec.AutoAssign = ptr.To(false)
				c.warn(src, f+".namespaceSelectors", "FerroLB selects namespaces by name only: %s is not converted, "+
					"and to keep the pool from serving every namespace it is converted with autoAssign: false; list the "+
					"namespaces in spec.namespaces and remove autoAssign", selectorStrings(sa.NamespaceSelectors))
			} else {
				c.warn(src, f+".namespaceSelectors", "FerroLB selects namespaces by name only: %s is not converted, "+
					"so the pool serves only the namespaces listed; add the namespaces the selectors match to spec.namespaces",
					selectorStrings(sa.NamespaceSelectors))
			}
		}
		if sel, ok := orSelectors(sa.ServiceSelectors); ok {
			out.Spec.ServiceSelector = sel
		} else {
			out.Spec.ServiceSelector = &sa.ServiceSelectors[0]
			c.warn(src, f+".serviceSelectors", "FerroLB takes one selector, MetalLB matches any of %s: only the first "+
				"is kept, so Services matching only the others no longer get this pool", selectorStrings(sa.ServiceSelectors))
		}
		for i, sel := range sa.ServiceSelectors {
			for _, key := range selectorKeys(sel) {
				if key == config.LabelServiceNamespace || key == config.LabelServiceName {
					c.warn(src, fieldPath(f, "serviceSelectors", i), "FerroLB reads %s as the Service's namespace or "+
						"name (a Cilium pseudo-label); MetalLB reads it as a label", key)
				}
			}
		}
	}
	if !good {
		c.reject(src, out)
		return
	}
	if c.emit(src, out) {
		c.pools = append(c.pools, poolInfo{src: src, name: out.Name, system: "MetalLB", blocks: blocks})
	}
}

// checkOrder warns when a pool's blocks are not listed in ascending order: see orderDiffers.
func (c *converter) checkOrder(src Source, field, system string, blocks []block, avoidBuggy bool) {
	for _, is4 := range []bool{true, false} {
		listed, lowest, differs := orderDiffers(blocks, is4, avoidBuggy)
		if !differs {
			continue
		}
		c.warn(src, field, "%s hands out the %s blocks in the order listed (first %s); FerroLB hands out the lowest "+
			"free address of the pool (first %s): new Services may get other addresses than %s would give them "+
			"(Services keep the addresses they hold); list the blocks in ascending order to make this warning go away",
			system, family(is4), listed, lowest, system)
	}
}

func selectorKeys(s metav1.LabelSelector) []string {
	var keys []string
	for k := range s.MatchLabels {
		keys = append(keys, k)
	}
	for _, e := range s.MatchExpressions {
		keys = append(keys, e.Key)
	}
	slices.Sort(keys)
	return keys
}

// metallbPoolNames resolves an advertisement's pool list and pool selectors to pool names. An
// empty result means every pool, as in MetalLB (an advertisement whose names and selectors
// match no pool at all applies to every pool). FerroLB lists pools by name, so selectors are
// resolved against the pools of this input, once: a warning says so.
func (c *converter) metallbPoolNames(src Source, names []string, sels []metav1.LabelSelector) []string {
	out := slices.Clone(names)
	if len(sels) == 0 {
		return out
	}
	const f = "spec.ipAddressPoolSelectors"
	if len(c.metallbPools) == 0 {
		c.warn(src, f, "%s cannot be resolved: the input holds no IPAddressPool; converted as if absent, which "+
			"(unless ipAddressPools names pools) means every pool: convert the pools and advertisements together",
			selectorStrings(sels))
		return out
	}
	var matched []string
	for _, p := range c.metallbPools {
		if slices.ContainsFunc(sels, func(s metav1.LabelSelector) bool { return matches(s, p.Metadata.Labels) }) &&
			!slices.Contains(out, p.Metadata.Name) {
			matched = append(matched, p.Metadata.Name)
		}
	}
	out = append(out, matched...)
	c.warn(src, f, "FerroLB lists pools by name: %s resolved to the pools of this input that match now (%s); "+
		"pools created later with matching labels will not be included", selectorStrings(sels), joinQuoted(matched))
	return out
}

// nodeSelector converts MetalLB's list of node selectors (any may match) for an L2Policy or a
// BGPPeer, which hold one. When the list cannot be written as one selector only the first is
// kept: fewer nodes announce (or peer) than before, never nodes that should not.
func (c *converter) nodeSelector(src Source, field string, sels []metav1.LabelSelector) *metav1.LabelSelector {
	if sel, ok := orSelectors(sels); ok {
		return sel
	}
	c.warn(src, field, "FerroLB takes one node selector, MetalLB matches any of %s: only the first is kept, so "+
		"nodes matching only the others no longer take part", selectorStrings(sels))
	return &sels[0]
}

// metallbL2 converts an L2Advertisement.
func (c *converter) metallbL2(src Source, a *metallbL2Advertisement) {
	out := &v1.L2Policy{ObjectMeta: meta(a.Metadata, src.Name)}
	s := a.Spec
	out.Spec.Pools = c.metallbPoolNames(src, s.IPAddressPools, s.IPAddressPoolSelectors)
	out.Spec.NodeSelector = c.nodeSelector(src, "spec.nodeSelectors", s.NodeSelectors)
	for _, name := range s.Interfaces {
		out.Spec.Interfaces = append(out.Spec.Interfaces, literalInterface(name))
	}
	if c.emit(src, out) {
		c.l2 = append(c.l2, l2Info{src: src, system: "MetalLB", out: out})
	}
}

// metallbBGPAdvertisement converts a BGPAdvertisement. Several node selectors that cannot be
// written as one become one BGPAdvertisement each: with BGP every selected node advertises
// independently, so the union of the advertisements is exactly MetalLB's.
func (c *converter) metallbBGPAdvertisement(src Source, a *metallbBGPAdvertisement) {
	s := a.Spec
	spec := v1.BGPAdvertisementSpec{Peers: slices.Clone(s.Peers)}
	spec.Pools = c.metallbPoolNames(src, s.IPAddressPools, s.IPAddressPoolSelectors)
	if l := s.AggregationLength; l != nil && *l != 32 {
		spec.AggregationLength = ptr.To(*l)
	}
	if l := s.AggregationLengthV6; l != nil && *l != 128 {
		spec.AggregationLengthV6 = ptr.To(*l)
	}
	if s.LocalPref != 0 {
		// MetalLB sends no LOCAL_PREF when localPref is 0 (its default).
		spec.LocalPref = ptr.To(int64(s.LocalPref))
	}
	for i, cm := range s.Communities {
		c.metallbCommunity(src, fieldPath("spec", "communities", i), string(cm), &spec)
	}

	var selectors []*metav1.LabelSelector
	if sel, ok := orSelectors(s.NodeSelectors); ok {
		selectors = []*metav1.LabelSelector{sel}
	} else {
		for i := range s.NodeSelectors {
			selectors = append(selectors, &s.NodeSelectors[i])
		}
	}
	for i, sel := range selectors {
		name := src.Name
		if len(selectors) > 1 {
			name = fmt.Sprintf("%s-%d", src.Name, i)
		}
		out := &v1.BGPAdvertisement{ObjectMeta: meta(a.Metadata, name), Spec: *spec.DeepCopy()}
		out.Spec.NodeSelector = sel
		c.emit(src, out)
	}
}

// metallbCommunity converts one community of a BGPAdvertisement: "ASN:value", a large
// community "large:a:b:c", or the name of an alias defined by a Community object.
func (c *converter) metallbCommunity(src Source, field, value string, spec *v1.BGPAdvertisementSpec) {
	v := value
	if alias, ok := c.communities[value]; ok {
		v = alias
	}
	if large, ok := strings.CutPrefix(v, "large:"); ok {
		if !validLarge(large) {
			c.warn(src, field, "%q is not a large community large:global:local1:local2; not converted", value)
			return
		}
		if !slices.Contains(spec.LargeCommunities, large) {
			spec.LargeCommunities = append(spec.LargeCommunities, large)
		}
		return
	}
	if _, err := config.ParseCommunity(v); err != nil || !strings.Contains(v, ":") {
		c.warn(src, field, "%q is neither ASN:value, large:global:local1:local2 nor an alias defined by a Community "+
			"in this input; not converted: convert the Community objects together with the advertisements", value)
		return
	}
	if !slices.Contains(spec.Communities, v) {
		spec.Communities = append(spec.Communities, v)
	}
}

func validLarge(s string) bool {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return false
	}
	for _, p := range parts {
		if _, err := strconv.ParseUint(p, 10, 32); err != nil {
			return false
		}
	}
	return true
}

// indexCommunities records a Community object's aliases, which BGPAdvertisements use by name.
func (c *converter) indexCommunities(src Source, cm *metallbCommunity) {
	for i, a := range cm.Spec.Communities {
		if a.Name == "" {
			continue // not an alias (an entry of the wrong type, reported as such)
		}
		if prev, dup := c.communities[a.Name]; dup && prev != a.Value {
			c.warn(src, fieldPath("spec", "communities", i), "alias %q is defined twice (%s and %s); the last one is used",
				a.Name, prev, a.Value)
		}
		c.communities[a.Name] = a.Value
	}
}

// metallbBGPPeer converts a BGPPeer.
func (c *converter) metallbBGPPeer(src Source, p *metallbBGPPeer) {
	s := p.Spec
	out := &v1.BGPPeer{ObjectMeta: meta(p.Metadata, src.Name)}
	out.Spec.PeerAddress = s.PeerAddress
	out.Spec.LocalASN = int64(s.MyASN)
	out.Spec.PeerASN = int64(s.PeerASN)
	good := true // nothing failed so far; the rest is checked either way, to report all at once
	switch {
	case s.DynamicASN == "internal" && s.PeerASN == 0:
		// "internal" accepts only a peer in our own AS: exactly an iBGP peer.
		out.Spec.PeerASN = int64(s.MyASN)
	case s.DynamicASN != "":
		c.fail(src, "spec.dynamicASN", "%q: FerroLB needs the peer's AS number in peerASN; not converted", s.DynamicASN)
		good = false
	}
	if s.PeerPort != 0 && s.PeerPort != 179 {
		out.Spec.PeerPort = int32(s.PeerPort)
	}
	out.Spec.SourceAddress = s.SourceAddress
	out.Spec.RouterID = s.RouterID
	out.Spec.EBGPMultihop = s.EBGPMultiHop
	out.Spec.BFDProfile = s.BFDProfile
	if s.EBGPMultiHop && s.BFDProfile != "" {
		// Keep the session and lose fast failure detection, rather than lose the session.
		out.Spec.BFDProfile = ""
		c.warn(src, "spec.bfdProfile", "%q on a multihop session: FerroLB runs BFD on single-hop sessions only "+
			"(no RFC 5883); converted without BFD, so a failure is detected by the hold time", s.BFDProfile)
	}
	if s.EnableGracefulRestart {
		// MetalLB (FRR) advertises FRR's default restart time, 120 s, as FerroLB does.
		out.Spec.GracefulRestart = &v1.GracefulRestart{Enabled: true}
	}
	if !c.timers(src, s, &out.Spec) {
		good = false
	}
	out.Spec.NodeSelector = c.nodeSelector(src, "spec.nodeSelectors", s.NodeSelectors)

	switch {
	case s.PasswordSecret.Name != "":
		// MetalLB reads the Secret from its own namespace, whatever the reference says; the
		// FerroLB speaker reads Secrets only in its own (it is not given every Secret of the
		// cluster), so the Secret must be copied there.
		from := src.Namespace
		if from == "" {
			from = s.PasswordSecret.Namespace
		}
		if from == "" {
			from = "metallb-system"
		}
		out.Spec.PasswordSecretRef = &v1.SecretReference{Name: s.PasswordSecret.Name, Namespace: SpeakerNamespace}
		c.warn(src, "spec.passwordSecret", "the FerroLB speaker reads MD5 Secrets only in its own namespace: "+
			"passwordSecretRef names %s, a copy of MetalLB's Secret %s/%s (key password) that you make: %s",
			SpeakerNamespace+"/"+s.PasswordSecret.Name, from, s.PasswordSecret.Name, copySecret(from, s.PasswordSecret.Name))
		if s.Password != "" {
			c.warn(src, "spec.password", "ignored: passwordSecret takes precedence, as in MetalLB")
		}
	case s.Password != "":
		name := src.Name + "-bgp-password"
		out.Spec.PasswordSecretRef = &v1.SecretReference{Name: name, Namespace: SpeakerNamespace}
		c.warn(src, "spec.password", "FerroLB reads MD5 passwords only from Secrets: passwordSecretRef names Secret "+
			"%s/%s, which you create: kubectl -n %s create secret generic %s "+
			"--from-literal=password=...", SpeakerNamespace, name, SpeakerNamespace, name)
	}
	if s.VRF != "" {
		c.warn(src, "spec.vrf", "%q: FerroLB peers from the node's default VRF only; not converted", s.VRF)
	}
	if s.DisableMP {
		c.warn(src, "spec.disableMP", "FerroLB carries IPv4 and IPv6 over one multiprotocol session (restrict it with "+
			"spec.families); separate sessions per family are not converted")
	}
	if s.Interface != "" {
		c.warn(src, "spec.interface", "%q: unnumbered BGP over an interface has no FerroLB equivalent; peer by "+
			"address instead; not converted", s.Interface)
		if s.PeerAddress == "" {
			c.fail(src, "spec.peerAddress", "missing (the peer is given by interface only); not converted")
			good = false
		}
	}
	if !good {
		c.reject(src, out)
		return
	}
	if c.emit(src, out) && out.Spec.BFDProfile != "" {
		c.bfdUsers = append(c.bfdUsers, bfdUser{src: src, peer: out.Name, profile: out.Spec.BFDProfile})
	}
}

// timers converts MetalLB's BGP timers. MetalLB derives a missing holdTime or keepaliveTime
// from the other (hold = 3 x keepalive); FerroLB derives only keepalive from hold, so a lone
// keepaliveTime gets its holdTime written out. FerroLB's timers are whole seconds.
func (c *converter) timers(src Source, s metallbBGPPeerSpec, out *v1.BGPPeerSpec) bool {
	seconds := func(field string, d *metav1.Duration) *metav1.Duration {
		if d == nil {
			return nil
		}
		r := d.Truncate(time.Second)
		if r != d.Duration {
			c.warn(src, field, "%s: FerroLB's BGP timers are whole seconds; converted as %s", d.Duration, r)
		}
		return &metav1.Duration{Duration: r}
	}
	good := true
	hold := seconds("spec.holdTime", s.HoldTime)
	keep := seconds("spec.keepaliveTime", s.KeepaliveTime)
	if hold == nil && keep != nil {
		hold = &metav1.Duration{Duration: 3 * keep.Duration}
	}
	if hold != nil && (hold.Duration != 0 && hold.Duration < 3*time.Second || hold.Duration > 65535*time.Second) {
		c.fail(src, "spec.holdTime", "%s: must be 0 or 3s to 65535s (RFC 4271); not converted", hold.Duration)
		good, hold = false, nil
	}
	if keep != nil && keep.Duration < time.Second {
		c.fail(src, "spec.keepaliveTime", "%s: must be at least 1s; not converted", keep.Duration)
		good, keep = false, nil
	}
	out.HoldTime, out.KeepaliveTime = hold, keep
	if ct := seconds("spec.connectTime", s.ConnectTime); ct != nil {
		if ct.Duration < time.Second || ct.Duration > 65535*time.Second {
			c.fail(src, "spec.connectTime", "%s: must be 1s to 65535s; not converted", ct.Duration)
			good = false
		} else {
			out.ConnectTime = ct
		}
	}
	return good
}

// metallbBFDProfile converts a BFDProfile. The timers and their bounds are the same, and so
// are their defaults (left to the API server). FerroLB runs GoBGP's BFD: asynchronous mode on
// single-hop sessions, always sending first. Echo mode, passive mode and a minimum TTL (which
// only multihop sessions use) have no equivalent; they are dropped with a warning, as BFD with
// its control packets still does its job without them.
func (c *converter) metallbBFDProfile(src Source, p *metallbBFDProfile) {
	s := p.Spec
	out := &v1.BFDProfile{ObjectMeta: meta(p.Metadata, src.Name)}
	good := true
	bounded := func(field string, v *uint32, lo, hi uint32) int32 {
		if v == nil {
			return 0 // FerroLB's default, which is MetalLB's
		}
		if *v < lo || *v > hi {
			c.fail(src, field, "%d is not %d to %d; not converted", *v, lo, hi)
			good = false
			return 0
		}
		return int32(*v) //nolint:gosec // bounded just above
	}
	ms := func(v *milliseconds) *uint32 { return (*uint32)(v) }
	out.Spec.ReceiveInterval = bounded("spec.receiveInterval", ms(s.ReceiveInterval), 10, 60000)
	out.Spec.TransmitInterval = bounded("spec.transmitInterval", ms(s.TransmitInterval), 10, 60000)
	out.Spec.DetectMultiplier = bounded("spec.detectMultiplier", s.DetectMultiplier, 2, 255)
	if ttl := bounded("spec.minimumTtl", s.MinimumTTL, 1, 254); ttl != 0 && ttl != 254 {
		c.warn(src, "spec.minimumTtl", "%d: applies to multihop BFD, which FerroLB does not run (single-hop sessions "+
			"require TTL 255); not converted", ttl)
	}
	switch {
	case ptr.Deref(s.EchoMode, false):
		c.warn(src, "spec.echoMode", "FerroLB's BFD (GoBGP's) has no echo function: echo mode (and echoInterval) not "+
			"converted; failures are detected by control packets at transmitInterval x detectMultiplier")
	case s.EchoInterval != nil:
		c.warn(src, "spec.echoInterval", "has no effect without echoMode (as in MetalLB), and FerroLB has no echo "+
			"function; not converted")
	}
	if ptr.Deref(s.PassiveMode, false) {
		c.warn(src, "spec.passiveMode", "FerroLB's BFD (GoBGP's) always sends first; passive mode not converted")
	}
	if !good {
		c.reject(src, out)
	}
	c.bfdProfiles[out.Name] = good && c.emit(src, out)
}
