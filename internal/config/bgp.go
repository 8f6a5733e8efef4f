package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/bgp"
)

// BGPPeer is a BGPPeer translated: the session as the bgp package takes it (local ASN,
// source, families, graceful restart included), plus what decides which nodes open it. The
// speaker fills in the MD5 password from the Secret and the BFD settings from the profile.
type BGPPeer struct {
	Name     string
	Peer     bgp.Peer
	RouterID netip.Addr // invalid: the node's own
	// PasswordSecret names the Secret holding the MD5 password; Name empty: none.
	PasswordSecret v1.SecretReference
	NodeSelector   labels.Selector
	BFDProfile     string
	// BFDError says why BFDProfile could not be used (missing or invalid); set by For.
	BFDError error
}

// ParseBGPPeer translates a BGPPeer; errors name the field.
func ParseBGPPeer(p *v1.BGPPeer) (BGPPeer, error) {
	s := p.Spec
	out := BGPPeer{Name: p.Name, BFDProfile: s.BFDProfile}
	addr, err := parseAddr(s.PeerAddress)
	if err != nil {
		return out, FieldError{"spec.peerAddress", err.Error()}
	}
	asn := func(field string, v int64) (uint32, error) {
		if v < 1 || v > 4294967295 {
			return 0, FieldError{field, fmt.Sprintf("%d is not an AS number (1 to 4294967295)", v)}
		}
		return uint32(v), nil
	}
	peerASN, err := asn("spec.peerASN", s.PeerASN)
	if err != nil {
		return out, err
	}
	localASN, err := asn("spec.localASN", s.LocalASN)
	if err != nil {
		return out, err
	}
	out.Peer = bgp.Peer{Address: addr, ASN: peerASN, LocalASN: localASN, EBGPMultihop: s.EBGPMultihop}
	if s.EBGPMultihop && s.BFDProfile != "" {
		return out, FieldError{"spec.bfdProfile", "multihop BFD (RFC 5883) is not supported; BFD runs on single-hop sessions"}
	}
	if s.PeerPort != 0 {
		if s.PeerPort < 1 || s.PeerPort > 65535 {
			return out, FieldError{"spec.peerPort", fmt.Sprintf("%d is not a port", s.PeerPort)}
		}
		out.Peer.Port = uint16(s.PeerPort)
	}
	for _, t := range []struct {
		field string
		in    *time.Duration
		out   *time.Duration
	}{
		{"spec.holdTime", durationOf(s.HoldTime), &out.Peer.HoldTime},
		{"spec.keepaliveTime", durationOf(s.KeepaliveTime), &out.Peer.KeepaliveTime},
		{"spec.connectTime", durationOf(s.ConnectTime), &out.Peer.ConnectRetry},
	} {
		if t.in == nil {
			continue
		}
		if *t.in%time.Second != 0 || *t.in < 0 {
			return out, FieldError{t.field, fmt.Sprintf("%s: BGP timers are whole seconds", *t.in)}
		}
		*t.out = *t.in
	}
	if out.Peer.ConnectRetry == 0 {
		// The API's documented default. Left at zero, GoBGP waits 120 s between attempts, and
		// as the speaker only dials, a session whose first attempt failed (the router
		// restarting) came back only after 90 to 120 s.
		out.Peer.ConnectRetry = DefaultConnectTime
	}
	if h, k := out.Peer.HoldTime, out.Peer.KeepaliveTime; h != 0 && k != 0 && k >= h {
		return out, FieldError{"spec.keepaliveTime", fmt.Sprintf("%s is not shorter than holdTime %s", k, h)}
	}
	if s.RouterID != "" {
		if out.RouterID, err = parseAddr(s.RouterID); err != nil || !out.RouterID.Is4() {
			return out, FieldError{"spec.routerID", fmt.Sprintf("%q is not an IPv4 address", s.RouterID)}
		}
	}
	if s.SourceAddress != "" {
		if out.Peer.Source, err = parseAddr(s.SourceAddress); err != nil {
			return out, FieldError{"spec.sourceAddress", err.Error()}
		}
		if out.Peer.Source.Is4() != addr.Is4() {
			return out, FieldError{"spec.sourceAddress", "must be of the peer address's family"}
		}
	}
	if s.PasswordSecretRef != nil {
		out.PasswordSecret = *s.PasswordSecretRef
	}
	if gr := s.GracefulRestart; gr != nil && gr.Enabled {
		out.Peer.GracefulRestart = 120 * time.Second
		if gr.RestartTime != nil {
			out.Peer.GracefulRestart = gr.RestartTime.Duration
		}
		if d := out.Peer.GracefulRestart; d%time.Second != 0 || d < time.Second || d > 4095*time.Second {
			return out, FieldError{"spec.gracefulRestart.restartTime", fmt.Sprintf("%s: whole seconds from 1s to 4095s", d)}
		}
	}
	for i, f := range s.Families {
		switch f {
		case v1.IPv4Unicast:
			out.Peer.IPv4 = true
		case v1.IPv6Unicast:
			out.Peer.IPv6 = true
		default:
			return out, FieldError{fmt.Sprintf("spec.families[%d]", i), fmt.Sprintf("unknown family %q", f)}
		}
	}
	if out.NodeSelector, err = selector("nodeSelector", s.NodeSelector); err != nil {
		return out, err
	}
	return out, nil
}

// ParseBFDProfile translates a BFDProfile into the BFD settings of a peer; errors name the
// field. The API server already rejects what GoBGP's BFD cannot do; this checks again for
// objects stored before those rules existed.
func ParseBFDProfile(p *v1.BFDProfile) (bgp.BFD, error) {
	s := p.Spec
	switch {
	case s.EchoMode:
		return bgp.BFD{}, FieldError{"spec.echoMode", "not supported: FerroLB's BFD (GoBGP's) has no echo function"}
	case s.PassiveMode:
		return bgp.BFD{}, FieldError{"spec.passiveMode", "not supported: FerroLB's BFD (GoBGP's) always sends first"}
	case s.MinimumTTL != 0 && s.MinimumTTL != 254:
		return bgp.BFD{}, FieldError{"spec.minimumTTL", "applies to multihop BFD, which FerroLB does not run"}
	}
	out := bgp.BFD{Enabled: true, TransmitInterval: 300 * time.Millisecond, ReceiveInterval: 300 * time.Millisecond, DetectMultiplier: 3}
	for _, f := range []struct {
		field string
		v     int32
		out   *time.Duration
	}{{"spec.receiveInterval", s.ReceiveInterval, &out.ReceiveInterval}, {"spec.transmitInterval", s.TransmitInterval, &out.TransmitInterval}} {
		if f.v == 0 {
			continue
		}
		if f.v < 10 || f.v > 60000 {
			return out, FieldError{f.field, fmt.Sprintf("%d ms is not 10 to 60000", f.v)}
		}
		*f.out = time.Duration(f.v) * time.Millisecond
	}
	if s.DetectMultiplier != 0 {
		if s.DetectMultiplier < 2 || s.DetectMultiplier > 255 {
			return out, FieldError{"spec.detectMultiplier", fmt.Sprintf("%d is not 2 to 255", s.DetectMultiplier)}
		}
		out.DetectMultiplier = uint8(s.DetectMultiplier)
	}
	return out, nil
}

// DefaultConnectTime is a BGPPeer's spec.connectTime when it sets none.
const DefaultConnectTime = 5 * time.Second

// durationOf is d's duration, or nil when the field is absent.
func durationOf(d *metav1.Duration) *time.Duration {
	if d == nil {
		return nil
	}
	v := d.Duration
	return &v
}

// BGPAdvertisement is a BGPAdvertisement translated.
type BGPAdvertisement struct {
	Name             string
	Pools            []string // empty: every pool
	ServiceSelector  labels.Selector
	Peers            []string // empty: every peer
	NodeSelector     labels.Selector
	Communities      []uint32
	LargeCommunities [][3]uint32
	LocalPref        *uint32
	// AggregationLength and AggregationLengthV6 are the prefix lengths addresses are
	// advertised with (32 and 128: each address alone).
	AggregationLength, AggregationLengthV6 int
}

// wellKnownCommunities are the RFC 1997, 7999 and 8326 community names users may write.
var wellKnownCommunities = map[string]uint32{
	"no-export":           0xFFFFFF01,
	"no-advertise":        0xFFFFFF02,
	"no-export-subconfed": 0xFFFFFF03,
	"no-peer":             0xFFFFFF04,
	"blackhole":           0xFFFF029A,
	"graceful-shutdown":   0xFFFF0000,
}

// ParseBGPAdvertisement translates a BGPAdvertisement; errors name the field.
func ParseBGPAdvertisement(a *v1.BGPAdvertisement) (BGPAdvertisement, error) {
	s := a.Spec
	out := BGPAdvertisement{Name: a.Name, Pools: s.Pools, Peers: s.Peers, AggregationLength: 32, AggregationLengthV6: 128}
	for i, c := range s.Communities {
		v, err := ParseCommunity(c)
		if err != nil {
			return out, FieldError{fmt.Sprintf("spec.communities[%d]", i), err.Error()}
		}
		out.Communities = append(out.Communities, v)
	}
	for i, c := range s.LargeCommunities {
		parts := strings.Split(c, ":")
		var lc [3]uint32
		if len(parts) != 3 {
			return out, FieldError{fmt.Sprintf("spec.largeCommunities[%d]", i), fmt.Sprintf("%q is not global:local1:local2", c)}
		}
		for j, p := range parts {
			n, err := strconv.ParseUint(p, 10, 32)
			if err != nil {
				return out, FieldError{fmt.Sprintf("spec.largeCommunities[%d]", i), fmt.Sprintf("%q: part %d is not 0 to 4294967295", c, j+1)}
			}
			lc[j] = uint32(n)
		}
		out.LargeCommunities = append(out.LargeCommunities, lc)
	}
	if s.LocalPref != nil {
		if *s.LocalPref < 0 || *s.LocalPref > 4294967295 {
			return out, FieldError{"spec.localPref", fmt.Sprintf("%d is not 0 to 4294967295", *s.LocalPref)}
		}
		lp := uint32(*s.LocalPref)
		out.LocalPref = &lp
	}
	if l := s.AggregationLength; l != nil {
		if *l < 0 || *l > 32 {
			return out, FieldError{"spec.aggregationLength", fmt.Sprintf("%d is not 0 to 32", *l)}
		}
		out.AggregationLength = int(*l)
	}
	if l := s.AggregationLengthV6; l != nil {
		if *l < 0 || *l > 128 {
			return out, FieldError{"spec.aggregationLengthV6", fmt.Sprintf("%d is not 0 to 128", *l)}
		}
		out.AggregationLengthV6 = int(*l)
	}
	var err error
	if out.ServiceSelector, err = selector("serviceSelector", s.ServiceSelector); err != nil {
		return out, err
	}
	if out.NodeSelector, err = selector("nodeSelector", s.NodeSelector); err != nil {
		return out, err
	}
	return out, nil
}

// ParseCommunity parses "ASN:value" (each 0 to 65535) or a well-known name.
func ParseCommunity(s string) (uint32, error) {
	if v, ok := wellKnownCommunities[s]; ok {
		return v, nil
	}
	hi, lo, ok := strings.Cut(s, ":")
	if !ok {
		return 0, fmt.Errorf("%q is not ASN:value or a well-known community", s)
	}
	a, err1 := strconv.ParseUint(hi, 10, 16)
	b, err2 := strconv.ParseUint(lo, 10, 16)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%q: both parts must be 0 to 65535", s)
	}
	return uint32(a)<<16 | uint32(b), nil
}

// Path is the path advertising addr under this advertisement: the address's covering prefix
// at the aggregation length of its family, with the advertisement's attributes.
func (a BGPAdvertisement) Path(addr netip.Addr) bgp.Path {
	bits := a.AggregationLength
	if addr.Is6() {
		bits = a.AggregationLengthV6
	}
	p, _ := addr.Prefix(bits) // bits are in range: ParseBGPAdvertisement checked them
	return bgp.Path{Prefix: p, Communities: a.Communities, LargeCommunities: a.LargeCommunities, LocalPref: a.LocalPref}
}

// MatchesNode reports whether a node with these labels opens the session.
func (p BGPPeer) MatchesNode(l map[string]string) bool {
	return p.NodeSelector == nil || p.NodeSelector.Matches(labels.Set(l))
}

// MatchesService reports whether the advertisement covers a Service. The pseudo-labels
// io.kubernetes.service.namespace and io.kubernetes.service.name match its namespace and
// name, as in an IPPool's and an L2Policy's serviceSelector (Cilium's BGP examples use them).
func (a BGPAdvertisement) MatchesService(namespace, name string, svcLabels map[string]string) bool {
	return a.ServiceSelector == nil || a.ServiceSelector.Matches(serviceLabels{namespace: namespace, name: name, labels: svcLabels})
}

// MatchesNode reports whether a node with these labels advertises under it.
func (a BGPAdvertisement) MatchesNode(l map[string]string) bool {
	return a.NodeSelector == nil || a.NodeSelector.Matches(labels.Set(l))
}
