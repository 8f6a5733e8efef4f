package bgp

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	labfrr "github.com/ferrolb/ferrolb/internal/lab/frr"
	"github.com/ferrolb/ferrolb/internal/lab/netns"
)

// frrConfWith is the router's bgpd configuration: the node's IPv4 address as an eBGP
// neighbour and its IPv6 address as an iBGP one (the speaker presents the router's own AS
// on that session), both families active on both, plus extra lines per neighbour.
func frrConfWith(extra map[string][]string, global ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "frr defaults traditional\nhostname router\nlog stdout\n!\n")
	fmt.Fprintf(&b, "router bgp %d\n bgp router-id %s\n no bgp ebgp-requires-policy\n", routerASN, routerV4)
	for _, g := range global {
		fmt.Fprintf(&b, " %s\n", g)
	}
	fmt.Fprintf(&b, " neighbor %s remote-as %d\n neighbor %s remote-as %d\n", nodeV4, nodeASN, nodeV6, routerASN)
	for n, lines := range extra {
		for _, l := range lines {
			fmt.Fprintf(&b, " neighbor %s %s\n", n, l)
		}
	}
	for _, af := range []string{"ipv4", "ipv6"} {
		fmt.Fprintf(&b, " address-family %s unicast\n  neighbor %s activate\n  neighbor %s activate\n exit-address-family\n", af, nodeV4, nodeV6)
	}
	return b.String()
}

// pathFrom returns FRR's path for prefix learnt from peer (the node's address), if any.
func pathFrom(f *frr, prefix, peer string) (route, bool, error) {
	rs, err := f.Routes(prefix)
	if err != nil {
		return route{}, false, err
	}
	for _, r := range rs {
		if r.Peer.PeerID == peer {
			return r, true, nil
		}
	}
	return route{}, false, nil
}

// waitPath waits until FRR's path for prefix from peer satisfies check ("" when it does);
// check gets ok=false when there is no such path.
func waitPath(f *frr, prefix, peer string, check func(r route, ok bool) string) {
	f.t.Helper()
	f.waitFor(fmt.Sprintf("%s from %s", prefix, peer), func() (bool, string) {
		r, ok, err := pathFrom(f, prefix, peer)
		if err != nil {
			return false, err.Error()
		}
		why := check(r, ok)
		return why == "", why
	})
}

// Paths go to the peers they name, with each peer's own attributes: an eBGP peer and an
// iBGP peer (a per-peer local AS) get one prefix with different communities, local-pref
// reaches the iBGP peer, an IPv4 prefix over the IPv6 session carries the node's IPv4
// address as next hop, and changing who gets what re-sends paths without resetting
// either session.
func TestPerPeerExport(t *testing.T) {
	t.Parallel()
	f, sp, _, _ := labConf(t, frrConfWith(nil))
	ebgp := Peer{Address: netip.MustParseAddr(routerV4), ASN: routerASN, HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second}
	ibgp := Peer{Address: netip.MustParseAddr(routerV6), ASN: routerASN, LocalASN: routerASN,
		HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second, IPv4: true, IPv6: true}
	a, b := ebgp.Address, ibgp.Address
	lp := uint32(250)
	p1 := Path{Prefix: netip.MustParsePrefix("198.51.100.1/32"), Communities: []uint32{nodeASN<<16 | 1}, Peers: []netip.Addr{a}}
	p2a := Path{Prefix: netip.MustParsePrefix("198.51.100.2/32"), Communities: []uint32{nodeASN<<16 | 2}, Peers: []netip.Addr{a}}
	p2b := Path{Prefix: netip.MustParsePrefix("198.51.100.2/32"), Communities: []uint32{nodeASN<<16 | 22}, LocalPref: &lp, Peers: []netip.Addr{b}}
	p3 := Path{Prefix: netip.MustParsePrefix("2001:db8:100::3/128")} // every peer; only b carries IPv6
	sp.SetPaths(p1, p2a, p2b, p3)
	sp.SetPeers(ebgp, ibgp)
	f.waitEstablished(nodeV4)
	f.waitEstablished(nodeV6)

	waitPath(f, "198.51.100.1/32", nodeV4, func(r route, ok bool) string {
		if !ok || r.Community.String != "64513:1" {
			return fmt.Sprintf("want community 64513:1, got %+v (present %v)", r, ok)
		}
		return ""
	})
	waitPath(f, "198.51.100.2/32", nodeV4, func(r route, ok bool) string {
		if !ok || r.Community.String != "64513:2" {
			return fmt.Sprintf("want community 64513:2, got %+v (present %v)", r, ok)
		}
		return ""
	})
	waitPath(f, "198.51.100.2/32", nodeV6, func(r route, ok bool) string {
		if !ok || r.Community.String != "64513:22" || r.LocPrf != 250 || !hasNexthop(r, nodeV4) {
			return fmt.Sprintf("want community 64513:22, local-pref 250, next hop %s; got %+v (present %v)", nodeV4, r, ok)
		}
		return ""
	})
	waitPath(f, "2001:db8:100::3/128", nodeV6, func(r route, ok bool) string {
		if !ok || !hasNexthop(r, nodeV6) {
			return fmt.Sprintf("want next hop %s, got %+v (present %v)", nodeV6, r, ok)
		}
		return ""
	})
	if _, ok, err := pathFrom(f, "198.51.100.1/32", nodeV6); err != nil || ok {
		t.Errorf("198.51.100.1/32 reached the peer it was not meant for (%v)", err)
	}
	beforeA, errA := f.Neighbor(nodeV4)
	beforeB, errB := f.Neighbor(nodeV6)
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}

	// p1 to every peer now, p2 to b only: a path already in the RIB changes hands.
	p1.Peers = nil
	sp.SetPaths(p1, p2b, p3)
	waitPath(f, "198.51.100.1/32", nodeV6, func(r route, ok bool) string {
		if !ok || r.Community.String != "64513:1" || !hasNexthop(r, nodeV4) {
			return fmt.Sprintf("want community 64513:1 via %s, got %+v (present %v)", nodeV4, r, ok)
		}
		return ""
	})
	waitPath(f, "198.51.100.2/32", nodeV4, func(_ route, ok bool) string {
		if ok {
			return "still there"
		}
		return ""
	})
	if r, ok, err := pathFrom(f, "198.51.100.2/32", nodeV6); err != nil || !ok || r.Community.String != "64513:22" {
		t.Errorf("iBGP path of 198.51.100.2/32 after a's share was withdrawn: %+v %v %v", r, ok, err)
	}
	afterA, _ := f.Neighbor(nodeV4)
	afterB, _ := f.Neighbor(nodeV6)
	if !sameSession(beforeA, afterA) || !sameSession(beforeB, afterB) {
		t.Errorf("a session was reset: eBGP %+v -> %+v, iBGP %+v -> %+v", beforeA, afterA, beforeB, afterB)
	}
	var states []PeerState
	f.waitFor("advertised counts", func() (bool, string) {
		states = sp.PeerStates()
		return len(states) == 2 && states[0].Advertised == 1 && states[1].Advertised == 3, fmt.Sprintf("%+v", states)
	})
}

// cut drops every packet into and out of ns while its links keep carrier: a node that
// hangs, or a link that fails without the kernel noticing.
func cut(t testing.TB, ns *netns.NS) {
	t.Helper()
	ns.MustRun(t, "nft", "add", "table", "inet", "cut")
	ns.MustRun(t, "nft", "add", "chain", "inet", "cut", "in", "{ type filter hook input priority 0 ; policy drop ; }")
	ns.MustRun(t, "nft", "add", "chain", "inet", "cut", "out", "{ type filter hook output priority 0 ; policy drop ; }")
}

func uncut(t testing.TB, ns *netns.NS) {
	t.Helper()
	ns.MustRun(t, "nft", "delete", "table", "inet", "cut")
}

// kernelRoute reports whether ns's kernel has a route for prefix (FRR installed it).
func kernelRoute(ns *netns.NS, prefix string) (bool, error) {
	nh, err := labfrr.KernelNexthops(ns, prefix)
	return len(nh) > 0, err
}

var fastBFD = BFD{Enabled: true, TransmitInterval: 100 * time.Millisecond, ReceiveInterval: 100 * time.Millisecond, DetectMultiplier: 3}

// BFD at 100 ms x 3 comes up with FRR's bfdd; when the node's traffic is cut (carrier up)
// FRR drops the session and removes the route from its kernel long before the hold time
// (9 s); when traffic flows again BFD and the session come back with the route.
func TestBFD(t *testing.T) {
	t.Parallel()
	const vip = "198.51.100.7/32"
	f, sp, router, node := labConf(t, frrConfWith(map[string][]string{nodeV4: {"bfd", "bfd profile fast"}}))
	peer := routerPeer(routerV4)
	peer.BFD = fastBFD
	sp.SetPaths(Path{Prefix: netip.MustParsePrefix(vip)})
	sp.SetPeers(peer)
	f.waitEstablished(nodeV4)
	f.waitFor("BFD up on both sides", func() (bool, string) {
		st, err := f.BFDStatus(nodeV4)
		ps := sp.PeerStates()
		return err == nil && st == "up" && len(ps) == 1 && ps[0].BFD == "Up", fmt.Sprintf("FRR %q %v, speaker %+v", st, err, ps)
	})
	f.waitFor("kernel route", func() (bool, string) {
		ok, err := kernelRoute(router, vip)
		return ok, fmt.Sprint(err)
	})

	cut(t, node)
	start := time.Now()
	f.waitFor("route removed after the cut", func() (bool, string) {
		ok, err := kernelRoute(router, vip)
		return err == nil && !ok, fmt.Sprint(ok, err)
	})
	took := time.Since(start)
	t.Logf("cut to route removed: %v", took)
	// The hold time is 9 s: only BFD can have been this fast. (The figure itself is a
	// benchmark's: BenchmarkBFDDetection.)
	if took > 5*time.Second {
		t.Errorf("route removed %v after the cut: not by BFD", took)
	}

	uncut(t, node)
	f.waitEstablished(nodeV4)
	f.waitFor("BFD up again and the route back", func() (bool, string) {
		st, _ := f.BFDStatus(nodeV4)
		ok, _ := kernelRoute(router, vip)
		return st == "up" && ok, fmt.Sprintf("BFD %q, route %v", st, ok)
	})
	f.waitFor("speaker counts the failure", func() (bool, string) {
		ps := sp.PeerStates()
		return len(ps) == 1 && ps[0].BFD == "Up" && ps[0].BFDFailures >= 1, fmt.Sprintf("%+v", ps)
	})
}

// Graceful restart: when the speaker dies without a word (SIGKILL), FRR keeps its route,
// marked stale, in its kernel, and traffic to the address keeps flowing; the restarted
// speaker sends the route again and it is no longer stale.
func TestGracefulRestart(t *testing.T) {
	t.Parallel()
	const vip = "198.51.100.8"
	f, sp, router, node := labConf(t, frrConfWith(nil))
	node.MustRun(t, "ip", "addr", "add", vip+"/32", "dev", "lo")
	peer := routerPeer(routerV4)
	peer.GracefulRestart = 120 * time.Second
	path := Path{Prefix: netip.MustParsePrefix(vip + "/32")}
	sp.SetPaths(path)
	sp.SetPeers(peer)
	f.waitEstablished(nodeV4)
	f.waitFor("kernel route", func() (bool, string) {
		ok, err := kernelRoute(router, vip+"/32")
		return ok, fmt.Sprint(err)
	})

	sp.kill()
	f.waitFor("route stale", func() (bool, string) {
		r, ok, err := pathFrom(f, vip+"/32", nodeV4)
		return err == nil && ok && r.Stale, fmt.Sprintf("%+v %v %v", r, ok, err)
	})
	if n, err := f.Neighbor(nodeV4); err != nil || n.BGPState == "Established" {
		t.Fatalf("session still up after the kill: %+v %v", n, err)
	}
	if ok, err := kernelRoute(router, vip+"/32"); err != nil || !ok {
		t.Fatalf("kernel route gone while the speaker is down: %v %v", ok, err)
	}
	router.MustRun(t, "ping", "-c", "1", "-W", "2", vip)

	sp2 := startRemoteSpeaker(t, node)
	sp2.SetPaths(path)
	sp2.SetPeers(peer)
	f.waitEstablished(nodeV4)
	waitPath(f, vip+"/32", nodeV4, func(r route, ok bool) string {
		if !ok || r.Stale || !r.Valid {
			return fmt.Sprintf("want a fresh valid path, got %+v (present %v)", r, ok)
		}
		return ""
	})
	if ok, err := kernelRoute(router, vip+"/32"); err != nil || !ok {
		t.Fatalf("kernel route after the restart: %v %v", ok, err)
	}
}
