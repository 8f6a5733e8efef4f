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

// BGPPeer is a BGPPeer translated: the session as the bgp package takes it, plus what decides
// which nodes open it. The MD5 password is read from the Secret by the speaker.
type BGPPeer struct {
	Name     string
	Peer     bgp.Peer
	LocalASN uint32
	RouterID netip.Addr // invalid: the node's own
	Source   netip.Addr // invalid: chosen by the kernel
	// PasswordSecret names the Secret holding the MD5 password; Name empty: none.
	PasswordSecret  v1.SecretReference
	GracefulRestart time.Duration // 0: off
	IPv4, IPv6      bool          // the families carried
	NodeSelector    labels.Selector
	BFDProfile      string
}

// ParseBGPPeer translates a BGPPeer; errors name the field.
func ParseBGPPeer(p *v1.BGPPeer) (BGPPeer, error) {
	s := p.Spec
	out := BGPPeer{Name: p.Name, BFDProfile: s.BFDProfile, IPv4: len(s.Families) == 0, IPv6: len(s.Families) == 0}
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
	if out.LocalASN, err = asn("spec.localASN", s.LocalASN); err != nil {
		return out, err
	}
	out.Peer = bgp.Peer{Address: addr, ASN: peerASN, EBGPMultihop: s.EBGPMultihop}
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
	if h, k := out.Peer.HoldTime, out.Peer.KeepaliveTime; h != 0 && k != 0 && k >= h {
		return out, FieldError{"spec.keepaliveTime", fmt.Sprintf("%s is not shorter than holdTime %s", k, h)}
	}
	if s.RouterID != "" {
		if out.RouterID, err = parseAddr(s.RouterID); err != nil || !out.RouterID.Is4() {
			return out, FieldError{"spec.routerID", fmt.Sprintf("%q is not an IPv4 address", s.RouterID)}
		}
	}
	if s.SourceAddress != "" {
		if out.Source, err = parseAddr(s.SourceAddress); err != nil {
			return out, FieldError{"spec.sourceAddress", err.Error()}
		}
	}
	if s.PasswordSecretRef != nil {
		out.PasswordSecret = *s.PasswordSecretRef
	}
	if gr := s.GracefulRestart; gr != nil && gr.Enabled {
		out.GracefulRestart = 120 * time.Second
		if gr.RestartTime != nil {
			out.GracefulRestart = gr.RestartTime.Duration
		}
	}
	for i, f := range s.Families {
		switch f {
		case v1.IPv4Unicast:
			out.IPv4 = true
		case v1.IPv6Unicast:
			out.IPv6 = true
		default:
			return out, FieldError{fmt.Sprintf("spec.families[%d]", i), fmt.Sprintf("unknown family %q", f)}
		}
	}
	if out.NodeSelector, err = selector(s.NodeSelector); err != nil {
		return out, FieldError{"spec.nodeSelector", err.Error()}
	}
	return out, nil
}

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
	if out.ServiceSelector, err = selector(s.ServiceSelector); err != nil {
		return out, FieldError{"spec.serviceSelector", err.Error()}
	}
	if out.NodeSelector, err = selector(s.NodeSelector); err != nil {
		return out, FieldError{"spec.nodeSelector", err.Error()}
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
