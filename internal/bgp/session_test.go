package bgp

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	labfrr "github.com/ferrolb/ferrolb/internal/lab/frr"
	"github.com/ferrolb/ferrolb/internal/lab/netns"
)

// Session-level tests of the Peer fields a BGPPeer sets besides address and AS: Port
// (spec.peerPort), Source (spec.sourceAddress), EBGPMultihop (spec.ebgpMultihop) and
// ConnectRetry (spec.connectTime). Each lab is built so that the field decides: without
// it the speaker's connection attempts, counted by nft where they arrive, get nowhere;
// with it the session establishes and the route arrives.

// frrConfFor is a bgpd configuration with a single eBGP neighbour, the node at neighbor,
// plus extra lines for it.
func frrConfFor(routerID, neighbor string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "frr defaults traditional\nhostname router\nlog stdout\n!\n")
	fmt.Fprintf(&b, "router bgp %d\n bgp router-id %s\n no bgp ebgp-requires-policy\n", routerASN, routerID)
	fmt.Fprintf(&b, " neighbor %s remote-as %d\n", neighbor, nodeASN)
	for _, l := range extra {
		fmt.Fprintf(&b, " neighbor %s %s\n", neighbor, l)
	}
	fmt.Fprintf(&b, " address-family ipv4 unicast\n  neighbor %s activate\n exit-address-family\n", neighbor)
	return b.String()
}

var (
	counterSeq atomic.Int64
	packetsRe  = regexp.MustCompile(`packets (\d+)`)
)

// synCounter counts the TCP connection attempts (SYN without ACK) matching match (an nft
// expression) as they arrive in ns, before routing: those ns forwards as well as its own.
// A retransmitted SYN counts again.
func synCounter(t testing.TB, ns *netns.NS, match string) func() int {
	t.Helper()
	name := fmt.Sprintf("syn%d", counterSeq.Add(1))
	ns.MustRun(t, "nft", "add table inet syns")
	ns.MustRun(t, "nft", "add chain inet syns pre { type filter hook prerouting priority -300 ; }")
	ns.MustRun(t, "nft", "add counter inet syns "+name)
	ns.MustRun(t, "nft", "add rule inet syns pre "+match+" tcp flags & (syn | ack) == syn counter name "+name)
	return func() int {
		t.Helper()
		out := ns.MustRun(t, "nft", "list counter inet syns "+name)
		m := packetsRe.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no packet count in %q", out)
		}
		n, err := strconv.Atoi(m[1])
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
}

// dialsGetNowhere waits until attempts (a synCounter's count of the speaker's connection
// attempts) reaches n, failing the test if meanwhile FRR's session with addr (the node's
// address as FRR knows it) came up, or the speaker reports its one session established.
// A second attempt is only made once the first has failed.
func dialsGetNowhere(f *frr, sp *remoteSpeaker, addr string, attempts func() int, n int) {
	f.t.Helper()
	start := time.Now()
	var got int
	check := func() {
		f.t.Helper()
		nb, err := f.Neighbor(addr)
		if err != nil {
			f.t.Fatal(err)
		}
		if nb.BGPState == "Established" || nb.ConnectionsEstablished != 0 {
			f.t.Fatalf("FRR's session with %s came up (%+v): the lab does not depend on the field under test", addr, nb)
		}
		if st := sp.PeerStates(); len(st) != 1 || st[0].Established() {
			f.t.Fatalf("speaker's sessions %+v: want one, not established", st)
		}
	}
	f.waitFor(fmt.Sprintf("%d connection attempts", n), func() (bool, string) {
		check()
		got = attempts()
		return got >= n, fmt.Sprintf("%d attempts", got)
	})
	check()
	f.t.Logf("%d connection attempts in %v, none got through", got, time.Since(start).Round(time.Millisecond))
}

// waitUp waits until FRR's session with addr is established, the speaker says so too,
// and FRR holds a valid path for prefix from addr with next hop nh.
func waitUp(f *frr, sp *remoteSpeaker, addr, prefix, nh string) {
	f.t.Helper()
	f.waitEstablished(addr)
	waitPath(f, prefix, addr, func(r route, ok bool) string {
		if !ok || !r.Valid || !hasNexthop(r, nh) {
			return fmt.Sprintf("want a valid path via %s, got %+v (present %v)", nh, r, ok)
		}
		return ""
	})
	f.waitFor("speaker reports the session established", func() (bool, string) {
		st := sp.PeerStates()
		return len(st) == 1 && st[0].Established(), fmt.Sprintf("%+v", st)
	})
}

// spec.peerPort: FRR listens on another port than 179. Dialled on 179 the router refuses
// (the attempts reach it); with Port set the session establishes and the route arrives.
func TestPeerPort(t *testing.T) {
	t.Parallel()
	const (
		vip  = "198.51.100.30/32"
		port = 1179
	)
	router, node := labLink(t)
	f := startFRRWith(t, router, frrConf(""), labfrr.Options{BGPPort: port})
	to179 := synCounter(t, router, "ip saddr "+nodeV4+" tcp dport 179")
	sp := startRemoteSpeaker(t, node)
	peer := routerPeer(routerV4)
	peer.ConnectRetry = 2 * time.Second // several attempts within the test
	sp.Apply(nodeIdentity, []Peer{peer}, []Path{{Prefix: netip.MustParsePrefix(vip)}})
	dialsGetNowhere(f, sp, nodeV4, to179, 2)

	peer.Port = port
	sp.SetPeers(peer)
	waitUp(f, sp, nodeV4, vip, nodeV4)
}

// spec.sourceAddress: the node has two addresses on the link and FRR knows it by the
// second only (its neighbor statement names that one). Left to the kernel, the speaker
// connects from the first (the primary) and FRR closes each connection from an address
// it has no neighbour for; bound to the second, the session establishes, and the route's
// next hop (next-hop self) is the second address.
func TestSourceAddress(t *testing.T) {
	t.Parallel()
	const (
		vip    = "198.51.100.31/32"
		second = "192.0.2.3"
	)
	router, node := labLink(t)
	node.MustRun(t, "ip", "addr", "add", second+"/24", "dev", "n0") // a secondary address: the kernel prefers nodeV4
	f := startFRR(t, router, frrConfFor(routerV4, second))
	fromFirst := synCounter(t, router, "ip saddr "+nodeV4+" tcp dport 179")
	sp := startRemoteSpeaker(t, node)
	peer := routerPeer(routerV4)
	peer.ConnectRetry = 2 * time.Second
	sp.Apply(nodeIdentity, []Peer{peer}, []Path{{Prefix: netip.MustParsePrefix(vip)}})
	dialsGetNowhere(f, sp, second, fromFirst, 2)

	peer.Source = netip.MustParseAddr(second)
	sp.SetPeers(peer)
	waitUp(f, sp, second, vip, second)
}

// spec.ebgpMultihop: the router is two hops away, behind a middle namespace that routes
// between two links (ip_forward on inside it only), and FRR has `ebgp-multihop 2` for the
// node. GoBGP sends eBGP with TTL 1 by default: the middle drops each SYN (the attempts
// reach it with TTL 1, none reaches the router), while a ping (TTL 64) goes through. With
// EBGPMultihop (TTL 255) the session establishes and the route arrives, with the node's
// address as next hop, which FRR resolves through its route to the node's link.
func TestEBGPMultihop(t *testing.T) {
	t.Parallel()
	const (
		vip      = "198.51.100.32/32"
		gateway  = "192.0.2.1" // the middle, on the node's link
		midFar   = "198.18.0.1"
		farRoute = "198.18.0.2" // the router, on the other link
	)
	node := netns.ForTest(t, "bgpn")
	middle := netns.ForTest(t, "bgpm")
	router := netns.ForTest(t, "bgpr")
	if err := netns.Veth(node, "n0", middle, "m0"); err != nil {
		t.Fatal(err)
	}
	if err := netns.Veth(middle, "m1", router, "r0"); err != nil {
		t.Fatal(err)
	}
	node.MustRun(t, "ip", "addr", "add", nodeV4+"/24", "dev", "n0")
	node.MustRun(t, "ip", "route", "add", "198.18.0.0/24", "via", gateway)
	middle.MustRun(t, "ip", "addr", "add", gateway+"/24", "dev", "m0")
	middle.MustRun(t, "ip", "addr", "add", midFar+"/24", "dev", "m1")
	middle.MustRun(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	router.MustRun(t, "ip", "addr", "add", farRoute+"/24", "dev", "r0")
	router.MustRun(t, "ip", "route", "add", "192.0.2.0/24", "via", midFar)
	node.MustRun(t, "ping", "-c", "1", "-W", "2", farRoute)

	f := startFRR(t, router, frrConfFor(farRoute, nodeV4, "ebgp-multihop 2"))
	expired := synCounter(t, middle, "ip saddr "+nodeV4+" ip daddr "+farRoute+" ip ttl 1 tcp dport 179")
	arrived := synCounter(t, router, "ip saddr "+nodeV4+" tcp dport 179")
	sp := startRemoteSpeaker(t, node)
	peer := Peer{Address: netip.MustParseAddr(farRoute), ASN: routerASN, HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second,
		ConnectRetry: 2 * time.Second}
	sp.Apply(nodeIdentity, []Peer{peer}, []Path{{Prefix: netip.MustParsePrefix(vip)}})
	dialsGetNowhere(f, sp, nodeV4, func() int {
		if n := arrived(); n != 0 {
			t.Fatalf("%d SYNs from the node reached the router without multihop: GoBGP did not send TTL 1", n)
		}
		return expired()
	}, 2)

	peer.EBGPMultihop = true
	sp.SetPeers(peer)
	waitUp(f, sp, nodeV4, vip, nodeV4)
}

// spec.connectTime: the router comes up after the speaker's first connection attempt was
// refused. With ConnectRetry 2 s the speaker tries again soon and the session is up within
// a few seconds of bgpd starting; a second session to the same router, over IPv6, with
// GoBGP's default (120 s: its next attempt 90 to 120 s after the first), is still down well
// after that. The bound between the two is loose on purpose: the tests share the machine.
func TestConnectRetry(t *testing.T) {
	t.Parallel()
	const (
		vip   = "198.51.100.33/32"
		bound = 15 * time.Second
	)
	router, node := labLink(t)
	v4 := synCounter(t, router, "ip saddr "+nodeV4+" tcp dport 179")
	v6 := synCounter(t, router, "ip6 saddr "+nodeV6+" tcp dport 179")
	sp := startRemoteSpeaker(t, node)
	fast := routerPeer(routerV4)
	fast.ConnectRetry = 2 * time.Second
	slow := routerPeer(routerV6) // ConnectRetry zero: GoBGP's default
	sp.Apply(nodeIdentity, []Peer{fast, slow}, []Path{{Prefix: netip.MustParsePrefix(vip)}})

	// No bgpd yet: the router's kernel refuses both first attempts (RST).
	deadline := time.Now().Add(waitTimeout)
	for v4() < 1 || v6() < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("no first connection attempts after %v: IPv4 %d, IPv6 %d", waitTimeout, v4(), v6())
		}
		time.Sleep(50 * time.Millisecond)
	}
	refused := time.Now()

	f := startFRR(t, router, frrConf(""))
	ready := time.Now()
	var up time.Duration
	for {
		n, err := f.Neighbor(nodeV4)
		if err != nil {
			t.Fatal(err)
		}
		if n.BGPState == "Established" {
			up = time.Since(ready)
			break
		}
		if time.Since(ready) > bound {
			t.Fatalf("IPv4 session with ConnectRetry 2s not established %v after bgpd started: %+v (attempts %d)", bound, n, v4())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("ConnectRetry 2s: first attempt refused, bgpd up %v later, session established %v after that (%d attempts)",
		ready.Sub(refused).Round(time.Millisecond), up.Round(time.Millisecond), v4())
	waitPath(f, vip, nodeV4, func(r route, ok bool) string {
		if !ok || !r.Valid {
			return fmt.Sprintf("want a valid path, got %+v (present %v)", r, ok)
		}
		return ""
	})

	// The control: the default's session, refused at the same time, is still waiting.
	time.Sleep(time.Until(ready.Add(bound)))
	n, err := f.Neighbor(nodeV6)
	if err != nil {
		t.Fatal(err)
	}
	if n.BGPState == "Established" || n.ConnectionsEstablished != 0 || v6() != 1 {
		t.Errorf("IPv6 session with GoBGP's default connect retry %v after bgpd started: %+v, %d attempts; want down after its one refused attempt (the bound does not tell the two apart)",
			bound, n, v6())
	}
}
