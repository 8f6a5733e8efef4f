package config_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/config"
)

func TestFor(t *testing.T) {
	om := func(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name} }
	r := config.Resources{
		Pools: []v1.IPPool{
			{ObjectMeta: om("b"), Spec: v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "192.0.2.0/28"}}}},
			{ObjectMeta: om("broken"), Spec: v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "192.0.2.1/24"}}}},
			{ObjectMeta: om("a"), Spec: v1.IPPoolSpec{Blocks: []v1.IPBlock{{Start: "2001:db8::1", Stop: "2001:db8::9"}}}},
		},
		L2Policies: []v1.L2Policy{
			{ObjectMeta: om("z")},
			{ObjectMeta: om("typo"), Spec: v1.L2PolicySpec{ServiceSelector: &metav1.LabelSelector{
				MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "in", Values: []string{"x"}}}}}},
			{ObjectMeta: om("y"), Spec: v1.L2PolicySpec{Interfaces: []string{"eth0"}}},
		},
		BGPAdvertisements: []v1.BGPAdvertisement{
			{ObjectMeta: om("adv"), Spec: v1.BGPAdvertisementSpec{Communities: []string{"65000:1"}}},
			{ObjectMeta: om("bad-community"), Spec: v1.BGPAdvertisementSpec{Communities: []string{"65000"}}},
		},
		BFDProfiles: []v1.BFDProfile{
			{ObjectMeta: om("fast"), Spec: v1.BFDProfileSpec{ReceiveInterval: 100, TransmitInterval: 100}},
			{ObjectMeta: om("echo"), Spec: v1.BFDProfileSpec{EchoMode: true}},
		},
		BGPPeers: []v1.BGPPeer{
			{ObjectMeta: om("with-bfd"), Spec: v1.BGPPeerSpec{PeerAddress: "192.0.2.254", PeerASN: 65000, LocalASN: 65001, BFDProfile: "fast"}},
			{ObjectMeta: om("missing-profile"), Spec: v1.BGPPeerSpec{PeerAddress: "192.0.2.253", PeerASN: 65000, LocalASN: 65001, BFDProfile: "nope"}},
			{ObjectMeta: om("invalid-profile"), Spec: v1.BGPPeerSpec{PeerAddress: "192.0.2.252", PeerASN: 65000, LocalASN: 65001, BFDProfile: "echo"}},
			{ObjectMeta: om("bad-asn"), Spec: v1.BGPPeerSpec{PeerAddress: "192.0.2.251", PeerASN: 0, LocalASN: 65001}},
		},
	}
	s, problems := config.For(r)

	names := func(n []string) string { return strings.Join(n, ",") }
	var got []string
	for _, p := range s.Pools {
		got = append(got, p.Name)
	}
	if names(got) != "a,b" {
		t.Errorf("pools %v, want the valid ones by name: a,b", got)
	}
	got = nil
	for _, p := range s.L2Policies {
		got = append(got, p.Name)
	}
	if names(got) != "y,z" {
		t.Errorf("L2 policies %v, want y,z", got)
	}
	if len(s.BGPAdvertisements) != 1 || s.BGPAdvertisements[0].Name != "adv" || !slices.Equal(s.BGPAdvertisements[0].Communities, []uint32{65000<<16 | 1}) {
		t.Errorf("advertisements %+v, want adv with 65000:1", s.BGPAdvertisements)
	}
	got = nil
	for _, p := range s.BGPPeers {
		got = append(got, p.Name)
		switch p.Name {
		case "with-bfd":
			if p.BFDError != nil || !p.Peer.BFD.Enabled || p.Peer.BFD.ReceiveInterval != 100*time.Millisecond {
				t.Errorf("with-bfd: BFD %+v, error %v; want the profile's 100 ms", p.Peer.BFD, p.BFDError)
			}
		case "missing-profile", "invalid-profile":
			if p.BFDError == nil || p.Peer.BFD.Enabled {
				t.Errorf("%s: BFD %+v, error %v; want no BFD and an error", p.Name, p.Peer.BFD, p.BFDError)
			}
		}
	}
	if names(got) != "invalid-profile,missing-profile,with-bfd" {
		t.Errorf("peers %v, want every peer whose own spec is valid", got)
	}

	want := []string{
		`IPPool broken: spec.blocks[0]: cidr "192.0.2.1/24" has host bits set`,
		`L2Policy typo: spec.serviceSelector.matchExpressions[0].operator`,
		`BGPAdvertisement bad-community: spec.communities[0]`,
		`BFDProfile echo: spec.echoMode: not supported`,
		`BGPPeer missing-profile: spec.bfdProfile: BFDProfile "nope" does not exist`,
		`BGPPeer invalid-profile: BFDProfile "echo": spec.echoMode`,
		`BGPPeer bad-asn: spec.peerASN: 0 is not an AS number`,
	}
	if len(problems) != len(want) {
		t.Errorf("%d problems, want %d: %v", len(problems), len(want), problems)
	}
	for _, w := range want {
		if !slices.ContainsFunc(problems, func(p config.Problem) bool { return strings.HasPrefix(p.Error(), w) }) {
			t.Errorf("no problem %q in %v", w, problems)
		}
	}
	for _, p := range problems {
		if p.Object == nil || p.Object.GetName() == "" {
			t.Errorf("problem %v names no object", p)
		}
	}

	if got := s.PoolOf(netip.MustParseAddr("192.0.2.5")); got != "b" {
		t.Errorf("PoolOf(192.0.2.5) = %q, want b", got)
	}
	if got := s.PoolOf(netip.MustParseAddr("192.0.2.200")); got != "" {
		t.Errorf("PoolOf(192.0.2.200) = %q: the invalid pool must hold nothing", got)
	}
}

func TestForIsPure(t *testing.T) {
	r := config.Resources{Pools: []v1.IPPool{
		{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "192.0.2.0/28"}}}},
	}}
	a, _ := config.For(r)
	b, _ := config.For(r)
	if len(a.Pools) != 1 || len(b.Pools) != 1 || a.Pools[0].Name != b.Pools[0].Name {
		t.Fatalf("two readings of the same resources differ: %+v, %+v", a.Pools, b.Pools)
	}
	if r.Pools[0].Name != "p" || len(r.Pools[0].Spec.Blocks) != 1 {
		t.Fatalf("For changed its input: %+v", r.Pools[0])
	}
}

func TestIngressAndInternalIPs(t *testing.T) {
	svc := &corev1.Service{Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{
		{IP: "192.0.2.1"}, {Hostname: "lb.example"}, {IP: "::ffff:192.0.2.2"}, {IP: "2001:db8::1"}, {IP: "not-an-ip"},
	}}}}
	want := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::1")}
	if got := config.Ingress(svc); !slices.Equal(got, want) {
		t.Errorf("Ingress = %v, want %v", got, want)
	}
	node := &corev1.Node{Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
		{Type: corev1.NodeHostName, Address: "n1"},
		{Type: corev1.NodeExternalIP, Address: "203.0.113.1"},
		{Type: corev1.NodeInternalIP, Address: "2001:db8::10"},
		{Type: corev1.NodeInternalIP, Address: "::ffff:198.51.100.10"},
	}}}
	want = []netip.Addr{netip.MustParseAddr("2001:db8::10"), netip.MustParseAddr("198.51.100.10")}
	if got := config.InternalIPs(node); !slices.Equal(got, want) {
		t.Errorf("InternalIPs = %v, want %v", got, want)
	}
}
