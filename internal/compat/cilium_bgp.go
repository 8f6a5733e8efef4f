package compat

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/config"
)

// ciliumSecretNamespace is where Cilium's Helm chart has the agent read BGP Secrets
// (bgpControlPlane.secretNamespace.name); an authSecretRef names a Secret there.
const ciliumSecretNamespace = "kube-system"

// peerSettings are the session settings Cilium keeps on a v1 neighbor or a v2
// CiliumBGPPeerConfig, with the path of each in its source.
type peerSettings struct {
	prefix          string // field path of the settings in their source
	src             Source // the object holding them
	port            *int32
	authSecretRef   *string
	multihopTTL     *int32
	multihopField   string
	connect         *int32
	hold            *int32
	keepalive       *int32
	timersPrefix    string
	gracefulRestart *ciliumGracefulRestart
	families        []ciliumFamily
}

// ciliumPeerSpec fills a BGPPeer's session settings from Cilium's; ok is false when the peer
// cannot be converted (after an error on each setting that is wrong).
func (c *converter) ciliumPeerSpec(ps peerSettings, out *v1.BGPPeerSpec) (ok bool) {
	src, f := ps.src, ps.prefix
	ok = true
	if p := ps.port; p != nil && *p != 0 && *p != 179 {
		out.PeerPort = *p
	}
	if ref := ps.authSecretRef; ref != nil && *ref != "" {
		out.PasswordSecretRef = &v1.SecretReference{Name: *ref, Namespace: SpeakerNamespace}
		c.warn(src, fieldPath(f, "authSecretRef"), "the FerroLB speaker reads MD5 Secrets only in its own namespace: "+
			"passwordSecretRef names %s/%s, a copy of Cilium's Secret in its BGP secrets namespace (the Helm chart's "+
			"bgpControlPlane.secretNamespace.name, %s by default; key password) that you make: %s",
			SpeakerNamespace, *ref, ciliumSecretNamespace, copySecret(ciliumSecretNamespace, *ref))
	}
	if ttl := ps.multihopTTL; ttl != nil && *ttl > 1 && out.PeerASN != out.LocalASN {
		// Cilium ignores the TTL for iBGP peers, as FerroLB ignores ebgpMultihop for them.
		out.EBGPMultihop = true
		if *ttl != 255 {
			c.warn(src, ps.multihopField, "%d: FerroLB's eBGP multihop sends TTL 255, not a chosen TTL", *ttl)
		}
	}
	tf := ps.timersPrefix
	if h := ps.hold; h != nil {
		if (*h != 0 && *h < 3) || *h > 65535 {
			c.fail(src, fieldPath(tf, "holdTimeSeconds"), "%d: must be 0 or 3 to 65535; not converted", *h)
			ok = false
		} else {
			out.HoldTime = seconds(*h)
		}
	}
	if k := ps.keepalive; k != nil && (*k < 1 || *k > 65535) {
		c.fail(src, fieldPath(tf, "keepAliveTimeSeconds"), "%d: must be 1 to 65535; not converted", *k)
		ok = false
	} else if k != nil {
		out.KeepaliveTime = seconds(*k)
		hold := 90 * time.Second // Cilium's and FerroLB's default
		if out.HoldTime != nil {
			hold = out.HoldTime.Duration
		}
		if hold != 0 && out.KeepaliveTime.Duration >= hold {
			third := (hold / 3).Truncate(time.Second)
			c.warn(src, fieldPath(tf, "keepAliveTimeSeconds"), "%d is not below the hold time (Cilium allows equal, "+
				"FerroLB does not); converted as %s, a third of it", *k, third)
			out.KeepaliveTime = &metav1.Duration{Duration: third}
		}
	}
	if ct := ps.connect; ct != nil {
		switch {
		case *ct < 1:
			c.fail(src, fieldPath(tf, "connectRetryTimeSeconds"), "%d: must be at least 1; not converted", *ct)
			ok = false
		case *ct > 65535:
			c.warn(src, fieldPath(tf, "connectRetryTimeSeconds"), "%d is above FerroLB's largest, 65535; converted as 65535", *ct)
			out.ConnectTime = seconds(65535)
		default:
			out.ConnectTime = seconds(*ct)
		}
	}
	if gr := ps.gracefulRestart; gr != nil && gr.Enabled {
		out.GracefulRestart = &v1.GracefulRestart{Enabled: true}
		if rt := gr.RestartTimeSeconds; rt != nil {
			if *rt < 1 || *rt > 4095 {
				c.fail(src, fieldPath(f, "gracefulRestart", "restartTimeSeconds"), "%d: must be 1 to 4095; not converted", *rt)
				ok = false
			} else {
				out.GracefulRestart.RestartTime = seconds(*rt)
			}
		}
	}
	for i, fam := range ps.families {
		var af v1.AddressFamily
		switch {
		case fam.Afi == "ipv4" && fam.Safi == "unicast":
			af = v1.IPv4Unicast
		case fam.Afi == "ipv6" && fam.Safi == "unicast":
			af = v1.IPv6Unicast
		default:
			c.warn(src, fieldPath(f, "families", i), "%s/%s: FerroLB carries IPv4 and IPv6 unicast only; not converted",
				fam.Afi, fam.Safi)
			continue
		}
		if !slices.Contains(out.Families, af) {
			out.Families = append(out.Families, af)
		}
	}
	if len(ps.families) > 0 && len(out.Families) == 0 {
		c.fail(src, fieldPath(f, "families"), "lists no unicast family FerroLB carries; peer not converted")
		ok = false
	}
	return ok
}

func seconds(n int32) *metav1.Duration {
	return &metav1.Duration{Duration: time.Duration(n) * time.Second}
}

// peerName makes a BGPPeer name from parts, as a DNS subdomain: lower case, with the
// characters of IPv6 addresses that names cannot hold turned into "-".
func peerName(parts ...string) string {
	s := strings.ToLower(strings.Join(parts, "-"))
	s = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '-'
	}, s)
	return strings.Trim(s, "-.")
}

// ciliumPeeringPolicy converts a CiliumBGPPeeringPolicy (BGP control plane v1): each neighbor
// of each virtual router becomes a BGPPeer on the policy's nodes, and each virtual router with
// a serviceSelector a BGPAdvertisement to its neighbors.
func (c *converter) ciliumPeeringPolicy(src Source, p *ciliumBGPPeeringPolicy) {
	for i, vr := range p.Spec.VirtualRouters {
		f := fieldPath("spec", "virtualRouters", i)
		// A virtual router or neighbor that fails is still checked to the end, so that every
		// error is reported in one run; it is then left out (reject).
		vrGood := true
		if vr.LocalASN < 1 || vr.LocalASN > 4294967295 {
			c.fail(src, fieldPath(f, "localASN"), "%d is not an AS number; virtual router not converted", vr.LocalASN)
			vrGood = false
		}
		if ptr.Deref(vr.ExportPodCIDR, false) {
			c.warn(src, fieldPath(f, "exportPodCIDR"), "FerroLB advertises Service addresses only, not Pod CIDRs; not converted")
		}
		if vr.PodIPPoolSelector != nil {
			c.warn(src, fieldPath(f, "podIPPoolSelector"), "FerroLB advertises Service addresses only, not Pod IP pools; not converted")
		}
		var peers []string
		for j, n := range vr.Neighbors {
			nf := fieldPath(f, "neighbors", j)
			good := vrGood
			addr, err := neighborAddress(n.PeerAddress)
			if err != nil {
				c.fail(src, fieldPath(nf, "peerAddress"), "%v; neighbor not converted", err)
				good = false
			}
			name := peerName(src.Name, strconv.FormatInt(vr.LocalASN, 10), addr.String())
			out := &v1.BGPPeer{ObjectMeta: meta(p.Metadata, name)}
			if addr.IsValid() {
				out.Spec.PeerAddress = addr.String()
			}
			if vrGood {
				out.Spec.LocalASN = vr.LocalASN
			}
			out.Spec.PeerASN = n.PeerASN
			out.Spec.NodeSelector = p.Spec.NodeSelector
			ok := c.ciliumPeerSpec(peerSettings{
				prefix: nf, src: src, port: n.PeerPort, authSecretRef: n.AuthSecretRef,
				multihopTTL: n.EBGPMultihopTTL, multihopField: fieldPath(nf, "eBGPMultihopTTL"),
				connect: n.ConnectRetryTimeSeconds, hold: n.HoldTimeSeconds, keepalive: n.KeepAliveTimeSeconds,
				timersPrefix: nf, gracefulRestart: n.GracefulRestart, families: n.Families,
			}, &out.Spec)
			if !ok || !good {
				c.reject(src, out)
				continue
			}
			for k := range n.AdvertisedPathAttributes {
				c.warn(src, fieldPath(nf, "advertisedPathAttributes", k), "per-neighbor path attributes are not "+
					"converted: give the BGPAdvertisement communities or localPref (and peers: [%s]) instead", name)
			}
			if c.emit(src, out) {
				peers = append(peers, name)
			}
		}
		if vrGood {
			c.peeringPolicyAdvertisement(src, p, f, vr, peers)
		}
	}
}

func (c *converter) peeringPolicyAdvertisement(src Source, p *ciliumBGPPeeringPolicy, f string, vr ciliumVirtualRouter, peers []string) {
	kinds := vr.ServiceAdvertisements
	if len(kinds) == 0 {
		kinds = []string{"LoadBalancerIP"} // Cilium's default
	}
	lb := c.serviceAddressKinds(src, fieldPath(f, "serviceAdvertisements"), kinds)
	switch {
	case vr.ServiceSelector == nil:
		// Cilium v1 advertises no Service without a serviceSelector: nothing to convert.
		return
	case !lb:
		return
	case len(peers) == 0:
		if !c.isBroken(src) { // a broken policy converts nothing: its errors say why
			c.warn(src, fieldPath(f, "serviceSelector"), "no neighbor of this virtual router was converted: its "+
				"advertisement is not converted either")
		}
		return
	}
	name := peerName(src.Name, strconv.FormatInt(vr.LocalASN, 10))
	out := &v1.BGPAdvertisement{ObjectMeta: meta(p.Metadata, name)}
	out.Spec.ServiceSelector = vr.ServiceSelector
	c.bgpPseudoLabels(src, fieldPath(f, "serviceSelector"), vr.ServiceSelector)
	// The peers, which only the policy's nodes open, restrict the advertisement to those
	// nodes: no node selector is needed.
	out.Spec.Peers = peers
	c.emit(src, out)
}

// serviceAddressKinds reports whether load balancer addresses are among the Service address
// kinds Cilium advertises, and warns about the kinds FerroLB does not advertise.
func (c *converter) serviceAddressKinds(src Source, field string, kinds []string) bool {
	lb := false
	for i, k := range kinds {
		switch k {
		case "LoadBalancerIP":
			lb = true
		case "ClusterIP", "ExternalIP":
			c.warn(src, fieldPath(field, i), "%s: FerroLB advertises load balancer addresses only; not converted", k)
		default:
			c.warn(src, fieldPath(field, i), "%q is not a Service address kind FerroLB knows; not converted", k)
		}
	}
	return lb
}

// neighborAddress parses a v1 neighbor's peerAddress, a one-address CIDR.
func neighborAddress(s string) (netip.Addr, error) {
	if !strings.Contains(s, "/") {
		return parseAddr(s)
	}
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an address", s)
	}
	if !p.IsSingleIP() {
		return netip.Addr{}, fmt.Errorf("%q is a network, not one address", s)
	}
	return p.Addr().Unmap(), nil
}

// v2Peer is a converted peer of a CiliumBGPClusterConfig, and the advertisement selectors of
// its CiliumBGPPeerConfig, by family.
type v2Peer struct {
	name     string
	families []ciliumFamily
}

// ciliumClusterConfig converts a CiliumBGPClusterConfig (BGP control plane v2): each peer of
// each BGP instance becomes a BGPPeer on the config's nodes, with the settings of its
// CiliumBGPPeerConfig. The advertisements follow in ciliumAdvertisements, once every peer is
// known.
func (c *converter) ciliumClusterConfig(src Source, cc *ciliumBGPClusterConfig) {
	for i, inst := range cc.Spec.BGPInstances {
		f := fieldPath("spec", "bgpInstances", i)
		// As for v1: an instance or peer that fails is still checked to the end.
		instGood := true
		if inst.LocalASN == nil || *inst.LocalASN < 1 || *inst.LocalASN > 4294967295 {
			c.fail(src, fieldPath(f, "localASN"), "missing or not an AS number; instance %q not converted", inst.Name)
			instGood = false
		}
		if inst.LocalPort != nil {
			c.warn(src, fieldPath(f, "localPort"), "%d: FerroLB's speaker connects to its peers and takes no listening "+
				"port setting; not converted", *inst.LocalPort)
		}
		for j, peer := range inst.Peers {
			pf := fieldPath(f, "peers", j)
			if peer.PeerAddress == nil || *peer.PeerAddress == "" {
				c.warn(src, pf, "peer %q has no peerAddress (auto-discovery): FerroLB peers by address; not converted", peer.Name)
				continue
			}
			good := instGood
			addr, err := parseAddr(*peer.PeerAddress)
			if err != nil {
				c.fail(src, fieldPath(pf, "peerAddress"), "%q is not an address; peer not converted", *peer.PeerAddress)
				good = false
			}
			if peer.PeerASN == nil || *peer.PeerASN == 0 {
				c.fail(src, fieldPath(pf, "peerASN"), "0 or unset (any AS): FerroLB needs the peer's AS number; peer %q not converted", peer.Name)
				good = false
			}
			name := peer.Name
			if c.peerNames[peer.Name] > 1 {
				name = peerName(src.Name, inst.Name, peer.Name)
			}
			out := &v1.BGPPeer{ObjectMeta: meta(cc.Metadata, peerName(name))}
			if err == nil {
				out.Spec.PeerAddress = addr.String()
			}
			if instGood {
				out.Spec.LocalASN = *inst.LocalASN
			}
			out.Spec.PeerASN = ptr.Deref(peer.PeerASN, 0)
			out.Spec.NodeSelector = cc.Spec.NodeSelector
			var families []ciliumFamily
			if ref := peer.PeerConfigRef; ref != nil && ref.Name != "" {
				pc, found := c.peerConfigs[ref.Name]
				if !found {
					c.warn(src, fieldPath(pf, "peerConfigRef"), "CiliumBGPPeerConfig %q is not in this input: the peer is "+
						"converted with default settings and no advertisements; convert them together", ref.Name)
				} else {
					c.usedPeerConfigs[ref.Name] = true
					s := pc.v.(*ciliumBGPPeerConfig).Spec
					ps := peerSettings{prefix: "spec", src: pc.src, authSecretRef: s.AuthSecretRef,
						multihopTTL: s.EBGPMultihop, multihopField: "spec.ebgpMultihop",
						gracefulRestart: s.GracefulRestart, families: s.Families, timersPrefix: "spec.timers"}
					if s.Transport != nil {
						ps.port = s.Transport.PeerPort
					}
					if t := s.Timers; t != nil {
						ps.connect, ps.hold, ps.keepalive = t.ConnectRetryTimeSeconds, t.HoldTimeSeconds, t.KeepAliveTimeSeconds
					}
					if !c.ciliumPeerSpec(ps, &out.Spec) {
						good = false
					}
					if c.isBroken(pc.src) {
						// Some of its settings could not be read: a BGPPeer without them would be
						// another session than Cilium's.
						c.fail(src, fieldPath(pf, "peerConfigRef"), "CiliumBGPPeerConfig %q could not be read (see its "+
							"errors); peer %q not converted", ref.Name, peer.Name)
						good = false
					}
					// Without families, Cilium's defaults carry no advertisement selector:
					// nothing is advertised to the peer.
					families = s.Families
				}
			}
			if !good {
				c.reject(src, out)
				continue
			}
			if c.emit(src, out) {
				c.v2Peers = append(c.v2Peers, v2Peer{name: out.Name, families: families})
			}
		}
	}
}

// ciliumAdvertisements converts the CiliumBGPAdvertisements that converted peers select
// through the families of their CiliumBGPPeerConfig: one BGPAdvertisement per Service
// advertisement, to those peers.
func (c *converter) ciliumAdvertisements() {
	for _, it := range c.bgpAdverts {
		src, a := it.src, it.v.(*ciliumBGPAdvertisement)
		var peers, partial []string
		for _, p := range c.v2Peers {
			selected, all := 0, 0
			for _, fam := range p.families {
				if fam.Safi != "unicast" || (fam.Afi != "ipv4" && fam.Afi != "ipv6") {
					continue
				}
				all++
				if fam.Advertisements != nil && matches(*fam.Advertisements, a.Metadata.Labels) {
					selected++
				}
			}
			if selected > 0 {
				peers = append(peers, p.name)
			}
			if selected > 0 && selected < all {
				partial = append(partial, p.name)
			}
		}
		if len(peers) == 0 {
			c.warn(src, "metadata.labels", "no converted peer's CiliumBGPPeerConfig selects this advertisement: Cilium "+
				"advertises it to no one; not converted")
			continue
		}
		if len(partial) > 0 {
			c.warn(src, "metadata.labels", "selected for one address family only by the peer config of %s: FerroLB's "+
				"BGPAdvertisement covers both families of the peers it names; restrict the peer's families or the "+
				"Services instead", joinQuoted(partial))
		}
		var services []int
		for i, adv := range a.Spec.Advertisements {
			if adv.AdvertisementType == "Service" {
				services = append(services, i)
				continue
			}
			c.warn(src, fieldPath("spec", "advertisements", i, "advertisementType"), "%s: FerroLB advertises Service "+
				"addresses only; not converted", adv.AdvertisementType)
		}
		for _, i := range services {
			adv := a.Spec.Advertisements[i]
			f := fieldPath("spec", "advertisements", i)
			var kinds []string
			if adv.Service != nil {
				kinds = adv.Service.Addresses
			}
			if !c.serviceAddressKinds(src, fieldPath(f, "service", "addresses"), kinds) {
				continue
			}
			if adv.Selector == nil {
				c.warn(src, fieldPath(f, "selector"), "unset: Cilium then advertises no Service; not converted")
				continue
			}
			name := src.Name
			if len(services) > 1 {
				name = fmt.Sprintf("%s-%d", src.Name, i)
			}
			out := &v1.BGPAdvertisement{ObjectMeta: meta(a.Metadata, peerName(name))}
			out.Spec.ServiceSelector = adv.Selector
			c.bgpPseudoLabels(src, fieldPath(f, "selector"), adv.Selector)
			out.Spec.Peers = peers
			if at := adv.Attributes; at != nil {
				if lp := at.LocalPreference; lp != nil {
					if *lp < 0 || *lp > 4294967295 {
						c.warn(src, fieldPath(f, "attributes", "localPreference"), "%d is not 0 to 4294967295; not converted", *lp)
					} else {
						out.Spec.LocalPref = ptr.To(*lp)
					}
				}
				c.ciliumCommunities(src, fieldPath(f, "attributes", "communities"), at.Communities, &out.Spec)
			}
			c.emit(src, out)
		}
	}
	for name, it := range c.peerConfigs {
		if !c.usedPeerConfigs[name] {
			c.warn(it.src, "metadata.name", "no converted peer of a CiliumBGPClusterConfig in this input refers to it: "+
				"nothing converted")
		}
	}
}

// ciliumWellKnown are Cilium's well-known community names and their values. Those FerroLB
// knows by name keep their name; the others are written as numbers.
var ciliumWellKnown = map[string]string{
	"internet":                   "0:0",
	"planned-shut":               "65535:0",
	"accept-own":                 "65535:1",
	"route-filter-translated-v4": "65535:2",
	"route-filter-v4":            "65535:3",
	"route-filter-translated-v6": "65535:4",
	"route-filter-v6":            "65535:5",
	"llgr-stale":                 "65535:6",
	"no-llgr":                    "65535:7",
	"blackhole":                  "blackhole",
	"no-export":                  "no-export",
	"no-advertise":               "no-advertise",
	"no-export-subconfed":        "no-export-subconfed",
	"no-peer":                    "no-peer",
}

// ciliumCommunities converts Cilium's standard (ASN:value or one 32-bit number), well-known
// and large communities.
func (c *converter) ciliumCommunities(src Source, f string, cs *ciliumCommunities, out *v1.BGPAdvertisementSpec) {
	if cs == nil {
		return
	}
	add := func(list *[]string, v string) {
		if !slices.Contains(*list, v) {
			*list = append(*list, v)
		}
	}
	for i, s := range cs.Standard {
		v := s
		if !strings.Contains(s, ":") {
			n, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				c.warn(src, fieldPath(f, "standard", i), "%q is not a community; not converted", s)
				continue
			}
			v = fmt.Sprintf("%d:%d", n>>16, n&0xFFFF)
		}
		if _, err := config.ParseCommunity(v); err != nil {
			c.warn(src, fieldPath(f, "standard", i), "%q is not a community; not converted", s)
			continue
		}
		add(&out.Communities, v)
	}
	for i, s := range cs.WellKnown {
		v, ok := ciliumWellKnown[s]
		if !ok {
			c.warn(src, fieldPath(f, "wellKnown", i), "%q is not a well-known community; not converted", s)
			continue
		}
		add(&out.Communities, v)
	}
	for i, s := range cs.Large {
		if !validLarge(s) {
			c.warn(src, fieldPath(f, "large", i), "%q is not a large community; not converted", s)
			continue
		}
		add(&out.LargeCommunities, s)
	}
}

// bgpPseudoLabels warns when a Service selector of a BGP advertisement uses Cilium's
// pseudo-labels: FerroLB's BGPAdvertisement matches Service labels only (its IPPool and
// L2Policy selectors do know the pseudo-labels), so such a selector would match no Service.
func (c *converter) bgpPseudoLabels(src Source, field string, sel *metav1.LabelSelector) {
	if sel == nil {
		return
	}
	for _, key := range selectorKeys(*sel) {
		if key == config.LabelServiceNamespace || key == config.LabelServiceName {
			c.warn(src, field, "%s: FerroLB's BGPAdvertisement serviceSelector matches Service labels only, not "+
				"Cilium's pseudo-labels; label the Services instead", key)
		}
	}
}
