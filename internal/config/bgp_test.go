package config_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/bgp"
	"github.com/ferrolb/ferrolb/internal/config"
)

func TestParseBGPPeer(t *testing.T) {
	d := func(x time.Duration) *metav1.Duration { return &metav1.Duration{Duration: x} }
	base := func(mod func(*v1.BGPPeerSpec)) *v1.BGPPeer {
		s := v1.BGPPeerSpec{PeerAddress: "192.0.2.1", PeerASN: 64512, LocalASN: 4200000000}
		if mod != nil {
			mod(&s)
		}
		return &v1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "tor"}, Spec: s}
	}
	got, err := config.ParseBGPPeer(base(func(s *v1.BGPPeerSpec) {
		s.PeerPort = 1179
		s.HoldTime, s.KeepaliveTime, s.ConnectTime = d(9*time.Second), d(3*time.Second), d(5*time.Second)
		s.EBGPMultihop = true
		s.RouterID = "10.0.0.1"
		s.SourceAddress = "192.0.2.2"
		s.PasswordSecretRef = &v1.SecretReference{Name: "md5"}
		s.GracefulRestart = &v1.GracefulRestart{Enabled: true}
		s.Families = []v1.AddressFamily{v1.IPv6Unicast}
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := config.BGPPeer{
		Name: "tor",
		Peer: bgp.Peer{Address: netip.MustParseAddr("192.0.2.1"), ASN: 64512, LocalASN: 4200000000, Port: 1179,
			Source:   netip.MustParseAddr("192.0.2.2"),
			HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second, ConnectRetry: 5 * time.Second, EBGPMultihop: true,
			GracefulRestart: 120 * time.Second, IPv6: true},
		RouterID:       netip.MustParseAddr("10.0.0.1"),
		PasswordSecret: v1.SecretReference{Name: "md5"},
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{}), cmpopts.IgnoreFields(config.BGPPeer{}, "NodeSelector")); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// No families listed: the bgp package carries the peer address's family.
	if p, _ := config.ParseBGPPeer(base(nil)); p.Peer.IPv4 || p.Peer.IPv6 {
		t.Errorf("no families listed should leave both unset; got IPv4=%v IPv6=%v", p.Peer.IPv4, p.Peer.IPv6)
	}
	// No connectTime: the API's default, 5 s (GoBGP's own would be 120 s).
	if p, _ := config.ParseBGPPeer(base(nil)); p.Peer.ConnectRetry != 5*time.Second {
		t.Errorf("no connectTime: ConnectRetry %v, want 5s", p.Peer.ConnectRetry)
	}

	for _, tt := range []struct {
		name string
		mod  func(*v1.BGPPeerSpec)
		want string
	}{
		{"bad address", func(s *v1.BGPPeerSpec) { s.PeerAddress = "tor-1" }, "spec.peerAddress"},
		{"ASN zero", func(s *v1.BGPPeerSpec) { s.PeerASN = 0 }, "spec.peerASN: 0 is not an AS number"},
		{"local ASN too big", func(s *v1.BGPPeerSpec) { s.LocalASN = 1 << 32 }, "spec.localASN"},
		{"fractional timer", func(s *v1.BGPPeerSpec) { s.HoldTime = d(1500 * time.Millisecond) }, "spec.holdTime: 1.5s: BGP timers are whole seconds"},
		{"keepalive not below hold", func(s *v1.BGPPeerSpec) { s.HoldTime, s.KeepaliveTime = d(9*time.Second), d(9*time.Second) }, "spec.keepaliveTime"},
		{"IPv6 router ID", func(s *v1.BGPPeerSpec) { s.RouterID = "2001:db8::1" }, "spec.routerID"},
		{"multihop BFD", func(s *v1.BGPPeerSpec) { s.EBGPMultihop, s.BFDProfile = true, "fast" }, "spec.bfdProfile"},
		{"source of the other family", func(s *v1.BGPPeerSpec) { s.SourceAddress = "2001:db8::2" }, "spec.sourceAddress"},
		{"unknown family", func(s *v1.BGPPeerSpec) { s.Families = []v1.AddressFamily{"l2vpn-evpn"} }, "spec.families[0]"},
	} {
		if _, err := config.ParseBGPPeer(base(tt.mod)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one containing %q", tt.name, err, tt.want)
		}
	}
}

func TestParseBGPAdvertisement(t *testing.T) {
	adv := func(s v1.BGPAdvertisementSpec) *v1.BGPAdvertisement {
		return &v1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Spec: s}
	}
	a, err := config.ParseBGPAdvertisement(adv(v1.BGPAdvertisementSpec{
		Communities:       []string{"65000:100", "no-export", "blackhole"},
		LargeCommunities:  []string{"4200000000:1:2"},
		LocalPref:         ptr.To[int64](150),
		AggregationLength: ptr.To[int32](24),
	}))
	if err != nil {
		t.Fatal(err)
	}
	want4 := bgp.Path{
		Prefix:           netip.MustParsePrefix("192.0.2.0/24"),
		Communities:      []uint32{65000<<16 | 100, 0xFFFFFF01, 65535<<16 | 666},
		LargeCommunities: [][3]uint32{{4200000000, 1, 2}},
		LocalPref:        ptr.To[uint32](150),
	}
	if diff := cmp.Diff(want4, a.Path(netip.MustParseAddr("192.0.2.77")), cmpopts.EquateComparable(netip.Prefix{}, netip.Addr{})); diff != "" {
		t.Errorf("IPv4 path (-want +got):\n%s", diff)
	}
	// IPv6 keeps its own default: each address alone.
	if got := a.Path(netip.MustParseAddr("2001:db8::5")).Prefix; got != netip.MustParsePrefix("2001:db8::5/128") {
		t.Errorf("IPv6 prefix = %s, want 2001:db8::5/128", got)
	}

	for _, tt := range []struct {
		name string
		spec v1.BGPAdvertisementSpec
		want string
	}{
		{"community part too big", v1.BGPAdvertisementSpec{Communities: []string{"65536:1"}}, "spec.communities[0]"},
		{"unknown community name", v1.BGPAdvertisementSpec{Communities: []string{"65000:1", "no-such"}}, "spec.communities[1]"},
		{"large community of two parts", v1.BGPAdvertisementSpec{LargeCommunities: []string{"1:2"}}, "spec.largeCommunities[0]"},
		{"aggregation beyond /32", v1.BGPAdvertisementSpec{AggregationLength: ptr.To[int32](33)}, "spec.aggregationLength"},
		{"negative local-pref", v1.BGPAdvertisementSpec{LocalPref: ptr.To[int64](-1)}, "spec.localPref"},
	} {
		if _, err := config.ParseBGPAdvertisement(adv(tt.spec)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one containing %q", tt.name, err, tt.want)
		}
	}
}

func TestParseBFDProfile(t *testing.T) {
	bfd := func(s v1.BFDProfileSpec) *v1.BFDProfile {
		return &v1.BFDProfile{ObjectMeta: metav1.ObjectMeta{Name: "fast"}, Spec: s}
	}
	got, err := config.ParseBFDProfile(bfd(v1.BFDProfileSpec{ReceiveInterval: 100, TransmitInterval: 50, DetectMultiplier: 5, MinimumTTL: 254}))
	want := bgp.BFD{Enabled: true, ReceiveInterval: 100 * time.Millisecond, TransmitInterval: 50 * time.Millisecond, DetectMultiplier: 5}
	if err != nil || got != want {
		t.Errorf("ParseBFDProfile = %+v, %v; want %+v", got, err, want)
	}
	// Unset fields take the CRD's defaults (an object written without defaulting).
	got, err = config.ParseBFDProfile(bfd(v1.BFDProfileSpec{}))
	want = bgp.BFD{Enabled: true, ReceiveInterval: 300 * time.Millisecond, TransmitInterval: 300 * time.Millisecond, DetectMultiplier: 3}
	if err != nil || got != want {
		t.Errorf("ParseBFDProfile(empty) = %+v, %v; want %+v", got, err, want)
	}
	for _, tt := range []struct {
		name string
		spec v1.BFDProfileSpec
		want string
	}{
		{"echo", v1.BFDProfileSpec{EchoMode: true}, "spec.echoMode"},
		{"passive", v1.BFDProfileSpec{PassiveMode: true}, "spec.passiveMode"},
		{"minimum TTL", v1.BFDProfileSpec{MinimumTTL: 200}, "spec.minimumTTL"},
		{"interval", v1.BFDProfileSpec{ReceiveInterval: 5}, "spec.receiveInterval"},
		{"multiplier", v1.BFDProfileSpec{DetectMultiplier: 1}, "spec.detectMultiplier"},
	} {
		if _, err := config.ParseBFDProfile(bfd(tt.spec)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one naming %s", tt.name, err, tt.want)
		}
	}
}
