package compat

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/config"
)

// item is a source object decoded into the struct of its kind.
type item struct {
	src Source
	v   any
}

// poolInfo is what the cross-object checks need of a converted pool.
type poolInfo struct {
	src    Source
	name   string
	system string // "MetalLB" or "Cilium"
	blocks []block
}

// l2Info is what the cross-object checks need of a converted Layer 2 policy.
type l2Info struct {
	src    Source
	system string
	out    *v1.L2Policy
}

// converter holds one conversion: the indexes objects refer to each other through, and what
// has been produced so far.
type converter struct {
	warnings
	// metallbPools are the IPAddressPools of the input, for ipAddressPoolSelectors.
	metallbPools []*metallbIPAddressPool
	// communities maps MetalLB Community aliases to their values.
	communities map[string]string
	// peerConfigs and bgpAdverts are Cilium's BGP v2 objects that CiliumBGPClusterConfigs refer
	// to, by name and by label.
	peerConfigs map[string]item
	bgpAdverts  []item
	// peerNames counts Cilium BGP v2 peer names, to keep them as they are when unique.
	peerNames map[string]int
	// usedPeerConfigs are the CiliumBGPPeerConfigs converted peers refer to.
	usedPeerConfigs map[string]bool
	// v2Peers are the converted peers of CiliumBGPClusterConfigs.
	v2Peers []v2Peer

	pools []poolInfo
	l2    []l2Info

	// bfdProfiles are the BFDProfiles of the input, by name: true when converted. bfdUsers are
	// the converted BGPPeers that name a profile (see checkBFDProfiles).
	bfdProfiles map[string]bool
	bfdUsers    []bfdUser
}

// bfdUser is a converted BGPPeer that names a BFDProfile.
type bfdUser struct {
	src     Source
	peer    string
	profile string
}

// Convert translates the source objects into FerroLB's. Objects of kinds it does not convert
// produce a warning each; objects that cannot be converted at all an ObjectError each. The
// outputs come in the order of their sources.
func Convert(srcs []Source) Result {
	res := &Result{}
	c := &converter{
		warnings:    warnings{res: res, broken: map[string][]*ObjectError{}},
		communities: map[string]string{},
		peerConfigs: map[string]item{},
		peerNames:   map[string]int{},
		bfdProfiles: map[string]bool{},

		usedPeerConfigs: map[string]bool{},
	}

	// First every object is decoded, once (decoding reports unknown fields), and indexed:
	// objects refer to others by name or label, in any order.
	var items []item
	for _, src := range srcs {
		it, ok := c.decode(src)
		if !ok {
			continue
		}
		items = append(items, it)
		switch v := it.v.(type) {
		case *metallbIPAddressPool:
			c.metallbPools = append(c.metallbPools, v)
		case *metallbCommunity:
			c.indexCommunities(src, v)
		case *ciliumBGPPeerConfig:
			c.peerConfigs[src.Name] = it
		case *ciliumBGPAdvertisement:
			c.bgpAdverts = append(c.bgpAdverts, it)
		case *ciliumBGPClusterConfig:
			for _, inst := range v.Spec.BGPInstances {
				for _, p := range inst.Peers {
					c.peerNames[p.Name]++
				}
			}
		}
	}

	for _, it := range items {
		c.convert(it)
	}
	// Cilium's BGP v2 advertisements are selected by the peers' configs: they are converted
	// once every peer is known.
	c.ciliumAdvertisements()
	c.checkPoolOverlaps()
	c.checkL2Overlaps()
	c.checkBFDProfiles()
	c.checkNames()

	order := map[string]int{}
	for i, s := range srcs {
		for _, name := range []string{s.Ref(), s.APIVersion + " " + s.Ref()} { // as Output.From
			if _, ok := order[name]; !ok {
				order[name] = i
			}
		}
	}
	sortWarnings(res.Warnings, order)
	sortErrors(res.Errors, order)
	return *res
}

// decode decodes a source into the struct of its kind; ok is false for kinds that produce
// nothing (after a warning). An object with fields of the wrong type is reported (every such
// field) and marked broken: it is decoded without them and converted for its other errors and
// warnings, but produces nothing.
func (c *converter) decode(src Source) (item, bool) {
	var v any
	switch src.Group() + "/" + src.Kind {
	case "metallb.io/IPAddressPool":
		v = &metallbIPAddressPool{}
	case "metallb.io/L2Advertisement":
		v = &metallbL2Advertisement{}
	case "metallb.io/BGPAdvertisement":
		v = &metallbBGPAdvertisement{}
	case "metallb.io/BGPPeer":
		v = &metallbBGPPeer{}
	case "metallb.io/BFDProfile":
		v = &metallbBFDProfile{}
	case "metallb.io/Community":
		v = &metallbCommunity{}
	case "cilium.io/CiliumLoadBalancerIPPool":
		v = &ciliumLoadBalancerIPPool{}
	case "cilium.io/CiliumL2AnnouncementPolicy":
		v = &ciliumL2AnnouncementPolicy{}
	case "cilium.io/CiliumBGPPeeringPolicy":
		v = &ciliumBGPPeeringPolicy{}
	case "cilium.io/CiliumBGPClusterConfig":
		v = &ciliumBGPClusterConfig{}
	case "cilium.io/CiliumBGPPeerConfig":
		v = &ciliumBGPPeerConfig{}
	case "cilium.io/CiliumBGPAdvertisement":
		v = &ciliumBGPAdvertisement{}
	case "/Service":
		v = &service{}
	case "/ConfigMap":
		if src.Name != ciliumConfigName {
			c.notConverted(src)
			return item{}, false
		}
		v = &ciliumConfigMap{}
	default:
		c.notConverted(src)
		return item{}, false
	}
	errs := decodeInto(src, v, c.warnings)
	if src.Name == "" && !slices.ContainsFunc(errs, func(e *ObjectError) bool { return related(e.Field, "metadata.name") }) {
		errs = append(errs, &ObjectError{Object: src.Ref(), Field: "metadata.name",
			Message: "missing: every object needs a name; not converted"})
	}
	if len(errs) > 0 {
		// The object is not converted, but it is still read as far as it decoded: what else
		// is wrong with it is reported now, not after the user fixed these and ran again.
		c.res.Errors = append(c.res.Errors, errs...)
		c.broken[src.Ref()] = errs
	}
	return item{src, v}, true
}

// notConverted explains why an object of a kind that is not converted produces nothing.
func (c *converter) notConverted(src Source) {
	why := "kind not converted: ferrolb convert reads MetalLB's IPAddressPool, L2Advertisement, " +
		"BGPAdvertisement, BGPPeer, BFDProfile and Community, Cilium's CiliumLoadBalancerIPPool, " +
		"CiliumL2AnnouncementPolicy, CiliumBGPPeeringPolicy, CiliumBGPClusterConfig, CiliumBGPPeerConfig " +
		"and CiliumBGPAdvertisement, checks Services, and reads Cilium's ConfigMap cilium-config for hints"
	switch src.Group() + "/" + src.Kind {
	case "metallb.io/AddressPool":
		why = "MetalLB's AddressPool was replaced by IPAddressPool in MetalLB 0.13: convert it to IPAddressPool " +
			"and L2Advertisement/BGPAdvertisement with MetalLB's own tooling first; not converted"
	case "/ConfigMap":
		if src.Name == "config" {
			why = "MetalLB's ConfigMap configuration (before 0.13) is not read: convert it to MetalLB's custom " +
				"resources with MetalLB's configmaptocrs tool first; not converted"
		}
	case "cilium.io/CiliumBGPNodeConfigOverride":
		why = "per-node overrides (routerID, localPort, peers' localAddress) are not converted: FerroLB takes " +
			"routerID and sourceAddress per BGPPeer; for one node, give it a BGPPeer of its own with a " +
			"nodeSelector on kubernetes.io/hostname"
	case "cilium.io/CiliumPodIPPool", "cilium.io/CiliumNode":
		why = "Pod IP addressing is the CNI's concern, not FerroLB's; not converted"
	}
	c.warn(src, "kind", "%s", why)
}

func (c *converter) convert(it item) {
	switch v := it.v.(type) {
	case *metallbIPAddressPool:
		c.metallbPool(it.src, v)
	case *metallbL2Advertisement:
		c.metallbL2(it.src, v)
	case *metallbBGPAdvertisement:
		c.metallbBGPAdvertisement(it.src, v)
	case *metallbBGPPeer:
		c.metallbBGPPeer(it.src, v)
	case *metallbBFDProfile:
		c.metallbBFDProfile(it.src, v)
	case *metallbCommunity:
		// Aliases were inlined where BGPAdvertisements use them; FerroLB has no Community kind.
	case *ciliumLoadBalancerIPPool:
		c.ciliumPool(it.src, v)
	case *ciliumL2AnnouncementPolicy:
		c.ciliumL2(it.src, v)
	case *ciliumBGPPeeringPolicy:
		c.ciliumPeeringPolicy(it.src, v)
	case *ciliumBGPClusterConfig:
		c.ciliumClusterConfig(it.src, v)
	case *ciliumBGPPeerConfig, *ciliumBGPAdvertisement:
		// Converted through the CiliumBGPClusterConfigs that use them (ciliumAdvertisements).
	case *service:
		c.checkService(it.src, v)
	case *ciliumConfigMap:
		c.ciliumConfig(it.src, v)
	}
}

// emit validates a converted object the way the controller and the speaker will read it
// (internal/config) and adds it to the output; an object they would refuse is an error
// instead, naming the field. An object whose source is broken (see decode) is only checked
// (see reject).
func (c *converter) emit(src Source, obj client.Object) bool {
	setTypeMeta(obj)
	if c.isBroken(src) {
		c.reject(src, obj)
		return false
	}
	if err := validate(obj); err != nil {
		c.fail(src, "", "the converted %s %q would be refused: %v; not converted",
			obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName(), err)
		return false
	}
	c.res.Outputs = append(c.res.Outputs, Output{From: src.APIVersion + " " + src.Ref(), Object: obj})
	return true
}

// reject checks an object that is not converted, because its source has errors already
// reported, as emit would, so that what else is wrong is reported in the same run. The
// fields those errors left empty that FerroLB requires (a peer's address and AS numbers, a
// pool's blocks, the name) are filled with placeholders first, so that they are not reported
// a second time as missing, and the checks go on past them.
func (c *converter) reject(src Source, obj client.Object) {
	setTypeMeta(obj)
	obj = obj.DeepCopyObject().(client.Object)
	name := obj.GetName()
	if name == "" {
		obj.SetName("placeholder")
	}
	switch o := obj.(type) {
	case *v1.IPPool:
		if len(o.Spec.Blocks) == 0 {
			o.Spec.Blocks = []v1.IPBlock{{CIDR: "192.0.2.1/32"}}
		}
	case *v1.BGPPeer:
		if o.Spec.PeerAddress == "" {
			o.Spec.PeerAddress = "192.0.2.1"
			if strings.Contains(o.Spec.SourceAddress, ":") {
				o.Spec.PeerAddress = "2001:db8::1"
			}
		}
		if o.Spec.PeerASN == 0 {
			o.Spec.PeerASN = 64512
		}
		if o.Spec.LocalASN == 0 {
			o.Spec.LocalASN = 64512
		}
	}
	if err := validate(obj); err != nil {
		c.fail(src, "", "the converted %s %q would be refused: %v; not converted",
			obj.GetObjectKind().GroupVersionKind().Kind, name, err)
	}
}

// setTypeMeta sets the apiVersion and kind of a converted object.
func setTypeMeta(obj client.Object) {
	var kind string
	switch obj.(type) {
	case *v1.IPPool:
		kind = "IPPool"
	case *v1.L2Policy:
		kind = "L2Policy"
	case *v1.BGPPeer:
		kind = "BGPPeer"
	case *v1.BGPAdvertisement:
		kind = "BGPAdvertisement"
	case *v1.BFDProfile:
		kind = "BFDProfile"
	}
	obj.GetObjectKind().SetGroupVersionKind(v1.GroupVersion.WithKind(kind))
}

// validate checks a converted object as the controller and the speaker will read it.
func validate(obj client.Object) error {
	var err error
	switch o := obj.(type) {
	case *v1.IPPool:
		_, err = config.ParsePool(o)
		if err == nil {
			err = checkNamespaces(o.Spec.Namespaces)
		}
	case *v1.L2Policy:
		_, err = config.ParseL2Policy(o)
	case *v1.BGPPeer:
		_, err = config.ParseBGPPeer(o)
	case *v1.BGPAdvertisement:
		_, err = config.ParseBGPAdvertisement(o)
	case *v1.BFDProfile:
		_, err = config.ParseBFDProfile(o)
	}
	if err == nil {
		if msgs := validation.IsDNS1123Subdomain(obj.GetName()); len(msgs) > 0 {
			err = fmt.Errorf("metadata.name: %q is not a valid name for a FerroLB object: %s", obj.GetName(), msgs[0])
		}
	}
	return err
}

func checkNamespaces(nss []string) error {
	for i, ns := range nss {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			return config.FieldError{Field: fmt.Sprintf("spec.namespaces[%d]", i), Reason: fmt.Sprintf("%q: %s", ns, msgs[0])}
		}
	}
	return nil
}

// meta is the metadata of a converted object: its name, and the source's labels and
// annotations (labels may be what other objects select it by). The source's namespace is
// dropped: FerroLB's kinds are cluster-scoped, and MetalLB reads only its own namespace anyway.
// kubectl's last-applied-configuration is dropped: it describes the source object, and kubectl
// apply would diff the new object against it.
func meta(src metav1.ObjectMeta, name string) metav1.ObjectMeta {
	out := metav1.ObjectMeta{Name: name, Labels: maps.Clone(src.Labels)}
	if len(src.Annotations) > 0 {
		out.Annotations = maps.Clone(src.Annotations)
		delete(out.Annotations, "kubectl.kubernetes.io/last-applied-configuration")
		if len(out.Annotations) == 0 {
			out.Annotations = nil
		}
	}
	return out
}

// checkNames reports outputs of one kind with one name: the API server would keep only one.
// That happens when objects of one name come from several namespaces (MetalLB only reads its
// own), or from two source kinds that convert to one FerroLB kind.
func (c *converter) checkNames() {
	seen := map[string]string{}
	kept := c.res.Outputs[:0]
	for _, o := range c.res.Outputs {
		key := o.Object.GetObjectKind().GroupVersionKind().Kind + "/" + o.Object.GetName()
		if first, dup := seen[key]; dup {
			c.res.Errors = append(c.res.Errors, &ObjectError{Object: o.From, Field: "metadata.name",
				Message: fmt.Sprintf("converts to %s, as %s does already; not converted: rename one of them", key, first)})
			continue
		}
		seen[key] = o.From
		kept = append(kept, o)
	}
	c.res.Outputs = kept
}

// checkPoolOverlaps warns about pools that share addresses. MetalLB refuses such a
// configuration as a whole (and keeps running the last valid one); Cilium marks the pool added
// later as conflicting and allocates from the other; FerroLB marks both Conflict and hands out
// the shared addresses from neither.
func (c *converter) checkPoolOverlaps() {
	for i, a := range c.pools {
		for _, b := range c.pools[:i] {
			for _, x := range a.blocks {
				if !slices.ContainsFunc(b.blocks, func(y block) bool { return overlaps(x.span, y.span) }) {
					continue
				}
				how := "MetalLB refuses a configuration with overlapping pools and keeps running its last valid one"
				if a.system == "Cilium" {
					how = "Cilium marks the pool created later as conflicting and allocates from the other"
				}
				c.warn(a.src, x.field, "overlaps pool %q: %s; FerroLB marks both pools Conflict and hands out "+
					"the shared addresses from neither: make the pools disjoint", b.name, how)
				break
			}
		}
	}
}

// checkL2Overlaps warns about two Layer 2 policies that may cover one address with different
// node selectors. MetalLB and Cilium elect one announcing node over the union of the nodes of
// every policy covering the address; FerroLB elects one node per L2Policy, so two nodes could
// answer ARP/NDP for one address. With equal node selectors the elections agree (the same
// hash over the same nodes), which is why that case is not reported.
func (c *converter) checkL2Overlaps() {
	for i, a := range c.l2 {
		for _, b := range c.l2[:i] {
			if equalSelectors(a.out.Spec.NodeSelector, b.out.Spec.NodeSelector) {
				continue
			}
			if len(a.out.Spec.Pools) > 0 && len(b.out.Spec.Pools) > 0 &&
				!slices.ContainsFunc(a.out.Spec.Pools, func(p string) bool { return slices.Contains(b.out.Spec.Pools, p) }) {
				continue
			}
			if disjoint(a.out.Spec.ServiceSelector, b.out.Spec.ServiceSelector) {
				continue
			}
			c.warn(a.src, "spec", "may cover the same Service addresses as %s %q with other nodes: %s elects one "+
				"announcing node over the union of both; FerroLB elects one per L2Policy, so two nodes could answer "+
				"for one address: merge them into one L2Policy, or make their pools or Services disjoint",
				b.src.Kind, b.out.Name, a.system)
		}
	}
}

// checkBFDProfiles warns about converted BGPPeers whose BFDProfile is not converted: FerroLB's
// speaker opens no session to a peer whose profile is missing or invalid (its status says
// NotConfigured on every node), where MetalLB refuses the configuration as a whole. The peer
// is still written, as MetalLB's is, so that once the profile exists it comes up with BFD.
func (c *converter) checkBFDProfiles() {
	for _, u := range c.bfdUsers {
		converted, inInput := c.bfdProfiles[u.profile]
		switch {
		case !inInput:
			c.warn(u.src, "spec.bfdProfile", "BFDProfile %q is not in this input: FerroLB's speaker opens no session "+
				"to BGPPeer %q (NotConfigured on every node) until a BFDProfile of that name exists; convert the "+
				"BFDProfiles together with the peers", u.profile, u.peer)
		case !converted:
			c.warn(u.src, "spec.bfdProfile", "BFDProfile %q was not converted (see its errors): FerroLB's speaker "+
				"opens no session to BGPPeer %q (NotConfigured on every node) until it is; fix the BFDProfile and "+
				"convert again, or remove bfdProfile to peer without BFD", u.profile, u.peer)
		}
	}
}

// SpeakerNamespace is where deploy/ferrolb.yaml runs the speaker, the one namespace whose
// Secrets it reads; converted BGP peers name their MD5 Secret there.
const SpeakerNamespace = "ferrolb-system"

// copySecret is the command that copies a Secret into SpeakerNamespace.
func copySecret(ns, name string) string {
	return fmt.Sprintf("kubectl -n %s get secret %s -o json | jq '{apiVersion, kind, type, data, "+
		"metadata: {name: .metadata.name, namespace: %q}}' | kubectl apply -f -", ns, name, SpeakerNamespace)
}
