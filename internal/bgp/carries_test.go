package bgp

import (
	"net/netip"
	"testing"
)

func TestPeerCarries(t *testing.T) {
	v4, v6 := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")
	for _, tt := range []struct {
		peer         Peer
		want4, want6 bool
	}{
		{Peer{Address: netip.MustParseAddr("192.0.2.1")}, true, false},
		{Peer{Address: netip.MustParseAddr("2001:db8::1")}, false, true},
		{Peer{Address: netip.MustParseAddr("::ffff:192.0.2.1")}, true, false},
		{Peer{Address: netip.MustParseAddr("192.0.2.1"), IPv4: true, IPv6: true}, true, true},
		{Peer{Address: netip.MustParseAddr("2001:db8::1"), IPv4: true}, true, false},
	} {
		if got := tt.peer.Carries(v4); got != tt.want4 {
			t.Errorf("%+v carries IPv4: %v, want %v", tt.peer, got, tt.want4)
		}
		if got := tt.peer.Carries(v6); got != tt.want6 {
			t.Errorf("%+v carries IPv6: %v, want %v", tt.peer, got, tt.want6)
		}
		// The same answer as the speaker's own, after normalising.
		n, err := normalisePeer(Peer{Address: tt.peer.Address, ASN: 1, IPv4: tt.peer.IPv4, IPv6: tt.peer.IPv6})
		if err != nil {
			t.Fatal(err)
		}
		if n.carries(netip.PrefixFrom(v4, 32)) != tt.want4 || n.carries(netip.PrefixFrom(v6, 128)) != tt.want6 {
			t.Errorf("%+v: Carries disagrees with the speaker's carries", tt.peer)
		}
	}
}
