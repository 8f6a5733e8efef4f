package bgp

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrolb/ferrolb/internal/lab/netns"
)

// The lab: a router namespace running FRR (AS 64512) and a node namespace running the
// speaker (AS 64513), linked by a veth.
const (
	routerASN = 64512
	nodeASN   = 64513
	routerV4  = "192.0.2.1"
	nodeV4    = "192.0.2.2"
	routerV6  = "2001:db8::1"
	nodeV6    = "2001:db8::2"
)

// frrConf configures FRR with the node as a neighbour over IPv4 and over IPv6, both
// families on both sessions. eBGP needs `no bgp ebgp-requires-policy` (FRR 8 otherwise
// accepts and sends nothing); `neighbor X password` turns on TCP MD5.
func frrConf(password string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "frr defaults traditional\nhostname router\nlog stdout\n!\n")
	fmt.Fprintf(&b, "router bgp %d\n bgp router-id %s\n no bgp ebgp-requires-policy\n", routerASN, routerV4)
	for _, n := range []string{nodeV4, nodeV6} {
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n", n, nodeASN)
		if password != "" {
			fmt.Fprintf(&b, " neighbor %s password %s\n", n, password)
		}
	}
	for _, af := range []string{"ipv4", "ipv6"} {
		fmt.Fprintf(&b, " address-family %s unicast\n", af)
		for _, n := range []string{nodeV4, nodeV6} {
			fmt.Fprintf(&b, "  neighbor %s activate\n", n)
		}
		fmt.Fprintf(&b, " exit-address-family\n")
	}
	return b.String()
}

// lab builds the two namespaces and starts FRR and the speaker (which only dials: it does
// not listen, so there are no connection collisions to muddy the session counters).
func lab(t *testing.T, frrPassword string) (*frr, *remoteSpeaker) {
	t.Helper()
	f, sp, _, _ := labConf(t, frrConf(frrPassword))
	return f, sp
}

// labConf is lab with FRR's bgpd configuration given; it also returns the namespaces.
func labConf(t testing.TB, conf string) (*frr, *remoteSpeaker, *netns.NS, *netns.NS) {
	t.Helper()
	f, router, node := labNamespaces(t, conf)
	return f, startRemoteSpeaker(t, node), router, node
}

// labNamespaces is labConf without the speaker.
func labNamespaces(t testing.TB, conf string) (f *frr, router, node *netns.NS) {
	t.Helper()
	router, node = labLink(t)
	return startFRR(t, router, conf), router, node
}

// labLink is labNamespaces without FRR: the two namespaces, linked, with their addresses.
func labLink(t testing.TB) (router, node *netns.NS) {
	t.Helper()
	router = netns.ForTest(t, "bgpr")
	node = netns.ForTest(t, "bgpn")
	if err := netns.Veth(router, "r0", node, "n0"); err != nil {
		t.Fatal(err)
	}
	// nodad: the addresses are usable at once instead of after duplicate detection.
	router.MustRun(t, "ip", "addr", "add", routerV4+"/24", "dev", "r0")
	router.MustRun(t, "ip", "addr", "add", routerV6+"/64", "dev", "r0", "nodad")
	node.MustRun(t, "ip", "addr", "add", nodeV4+"/24", "dev", "n0")
	node.MustRun(t, "ip", "addr", "add", nodeV6+"/64", "dev", "n0", "nodad")
	return router, node
}

var nodeIdentity = Identity{RouterID: netip.MustParseAddr(nodeV4), ASN: nodeASN}

func routerPeer(addr string) Peer {
	return Peer{Address: netip.MustParseAddr(addr), ASN: routerASN, HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second, IPv4: true, IPv6: true}
}

// waitRoute waits until FRR holds a valid path for prefix that check accepts.
func waitRoute(f *frr, prefix string, check func(route) string) route {
	f.t.Helper()
	var got route
	f.waitFor("route "+prefix, func() (bool, string) {
		rs, err := f.Routes(prefix)
		if err != nil {
			return false, err.Error()
		}
		if len(rs) == 0 {
			return false, "no path"
		}
		got = rs[0]
		if !got.Valid {
			return false, fmt.Sprintf("path not valid: %+v", got)
		}
		if why := check(got); why != "" {
			return false, why
		}
		return true, ""
	})
	return got
}

func hasNexthop(r route, ip string) bool { return r.HasNexthop(ip) }

// (a) The session establishes, and an IPv4 /32 (next hop self) and an IPv6 /128 (explicit
// next hop) reach FRR with their communities and large communities.
func TestAnnounceToFRR(t *testing.T) {
	t.Parallel()
	f, sp := lab(t, "")
	sp.SetPeers(routerPeer(routerV4))
	sp.SetPaths(
		Path{
			Prefix:           netip.MustParsePrefix("198.51.100.10/32"),
			Communities:      []uint32{nodeASN<<16 | 100},
			LargeCommunities: [][3]uint32{{nodeASN, 1, 2}},
		},
		Path{
			Prefix:           netip.MustParsePrefix("2001:db8:100::10/128"),
			NextHop:          netip.MustParseAddr(nodeV6),
			Communities:      []uint32{nodeASN<<16 | 200, 0xFFFFFF01},
			LargeCommunities: [][3]uint32{{nodeASN, 3, 4}},
		},
	)
	f.waitEstablished(nodeV4)

	waitRoute(f, "198.51.100.10/32", func(r route) string {
		if !hasNexthop(r, nodeV4) || r.Community.String != "64513:100" || r.LargeCommunity.String != "64513:1:2" {
			return fmt.Sprintf("want next hop %s, community 64513:100, large 64513:1:2; got %+v", nodeV4, r)
		}
		return ""
	})
	waitRoute(f, "2001:db8:100::10/128", func(r route) string {
		// 0xFFFFFF01 is the well-known NO_EXPORT, which FRR names.
		if !hasNexthop(r, nodeV6) || r.Community.String != "64513:200 no-export" || r.LargeCommunity.String != "64513:3:4" {
			return fmt.Sprintf("want next hop %s, communities 64513:200 no-export, large 64513:3:4; got %+v", nodeV6, r)
		}
		return ""
	})

	states := sp.PeerStates()
	if len(states) != 1 || states[0].Address != netip.MustParseAddr(routerV4) || !states[0].Established() {
		t.Errorf("PeerStates = %+v, want %s Established", states, routerV4)
	}
}

// (b) SetPaths without one path withdraws exactly that path.
func TestWithdraw(t *testing.T) {
	t.Parallel()
	f, sp := lab(t, "")
	sp.SetPeers(routerPeer(routerV4))
	all := []Path{
		{Prefix: netip.MustParsePrefix("198.51.100.1/32")},
		{Prefix: netip.MustParsePrefix("198.51.100.2/32")},
		{Prefix: netip.MustParsePrefix("198.51.100.3/32")},
	}
	sp.SetPaths(all...)
	f.waitEstablished(nodeV4)
	waitPrefixes(f, "198.51.100.1/32", "198.51.100.2/32", "198.51.100.3/32")

	sp.SetPaths(all[0], all[2])
	waitPrefixes(f, "198.51.100.1/32", "198.51.100.3/32")

	sp.SetPaths()
	waitPrefixes(f)
}

// waitPrefixes waits until FRR's IPv4 table holds exactly want.
func waitPrefixes(f *frr, want ...string) {
	f.t.Helper()
	slices.Sort(want)
	f.waitFor(fmt.Sprintf("IPv4 table %v", want), func() (bool, string) {
		got, err := f.Prefixes("ipv4")
		if err != nil {
			return false, err.Error()
		}
		slices.Sort(got)
		return slices.Equal(got, want), fmt.Sprintf("got %v", got)
	})
}

// (c) Adding a path, changing a path and adding a second peer leave the established
// session alone: FRR counts no new connection, no drop, and the same up time.
func TestChangesDoNotResetSession(t *testing.T) {
	t.Parallel()
	f, sp := lab(t, "")
	first := Path{Prefix: netip.MustParsePrefix("198.51.100.1/32")}
	sp.SetPeers(routerPeer(routerV4))
	sp.SetPaths(first)
	f.waitEstablished(nodeV4)
	waitPrefixes(f, "198.51.100.1/32")
	before, err := f.Neighbor(nodeV4)
	if err != nil {
		t.Fatal(err)
	}

	second := Path{Prefix: netip.MustParsePrefix("198.51.100.2/32")}
	sp.SetPaths(first, second)
	waitPrefixes(f, "198.51.100.1/32", "198.51.100.2/32")

	first.Communities = []uint32{nodeASN<<16 | 7}
	sp.SetPaths(first, second)
	waitRoute(f, "198.51.100.1/32", func(r route) string {
		if r.Community.String != "64513:7" {
			return "community not yet 64513:7: " + r.Community.String
		}
		return ""
	})

	// The second peer is the same router over IPv6: a real second session.
	sp.SetPeers(routerPeer(routerV4), routerPeer(routerV6))
	f.waitEstablished(nodeV6)
	f.waitFor("speaker reports both sessions established", func() (bool, string) {
		st := sp.PeerStates()
		return len(st) == 2 && st[0].Established() && st[1].Established(), fmt.Sprintf("%+v", st)
	})

	after, err := f.Neighbor(nodeV4)
	if err != nil {
		t.Fatal(err)
	}
	if !sameSession(before, after) {
		t.Errorf("IPv4 session was reset: before %+v, after %+v", before, after)
	}

	// Removing the second peer leaves the first alone too.
	sp.SetPeers(routerPeer(routerV4))
	f.waitFor("IPv6 session down", func() (bool, string) {
		n, err := f.Neighbor(nodeV6)
		return err == nil && n.BGPState != "Established", fmt.Sprintf("%+v %v", n, err)
	})
	if n, err := f.Neighbor(nodeV4); err != nil || !sameSession(before, n) {
		t.Errorf("IPv4 session after removing the IPv6 peer: %+v %v, want the session of %+v", n, err, before)
	}
}

// sameSession reports whether FRR still has the session it had: established, no connection
// made or dropped since, and up since the same moment. FRR derives that moment as now minus
// the uptime in whole seconds, so it may move by a second without any reset.
func sameSession(before, after neighbor) bool {
	d := after.UpEpoch - before.UpEpoch
	return after.BGPState == "Established" && after.ConnectionsEstablished == before.ConnectionsEstablished &&
		after.ConnectionsDropped == before.ConnectionsDropped && d >= -1 && d <= 1
}

// (d) TCP MD5: a wrong password never establishes; correcting it (a changed peer, so
// deleted and added again) does.
func TestMD5(t *testing.T) {
	t.Parallel()
	const password = "s3cret-ferrolb"
	f, sp := lab(t, password)
	wrong := routerPeer(routerV4)
	wrong.Password = "wrong"
	sp.SetPeers(wrong)

	// GoBGP's first attempt comes 1.5-2 s after the peer is added, and with this peer's
	// connect-retry (0: GoBGP's 120 s) there is no second one in 8 s: the router's kernel drops
	// that attempt's SYNs, each of them, for the bad signature, and the session must not come up.
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		n, err := f.Neighbor(nodeV4)
		if err != nil {
			t.Fatal(err)
		}
		if n.BGPState == "Established" || n.ConnectionsEstablished != 0 {
			t.Fatalf("session with the wrong MD5 password came up: %+v", n)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if st := sp.PeerStates(); len(st) != 1 || st[0].Established() {
		t.Fatalf("PeerStates with the wrong password = %+v", st)
	}

	right := routerPeer(routerV4)
	right.Password = password
	sp.SetPeers(right)
	f.waitEstablished(nodeV4)
}
