package arp_test

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrolb/ferrolb/internal/l2/arp"
	"github.com/ferrolb/ferrolb/internal/lab/netns"
	"github.com/ferrolb/ferrolb/internal/testrun"
)

// These tests put the responder on real interfaces in network namespaces and ask the
// kernel's own clients (arping, and the neighbour resolution behind ping) in another
// namespace. The node interfaces have no IPv4 address, so the node's kernel never answers
// ARP itself: every answer comes from the responder.

var vip = netip.MustParseAddr("192.0.2.100")

// startResponder opens a responder on ifname inside ns (the socket keeps that namespace)
// and runs it until the test ends.
func startResponder(t *testing.T, ns *netns.NS, ifname string) *arp.Responder {
	t.Helper()
	var r *arp.Responder
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		r, err = arp.New(ifi)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Its cleanup is registered after the namespaces', so it runs before them.
	testrun.Background(t, "Run on "+ifname, r.Run)
	return r
}

// arping asks for addr once from the client's interface ifc and returns the MAC that
// answered, or "" if none did within wait. The arping installed is Thomas Habets' (-i for
// the interface, not iputils' -I); -C 1 makes it return at the first answer.
func arping(t *testing.T, client *netns.NS, ifc string, addr netip.Addr, wait time.Duration, extra ...string) string {
	t.Helper()
	args := append([]string{"-c", "1", "-C", "1", "-w", strconv.FormatFloat(wait.Seconds(), 'f', -1, 64),
		"-r", "-i", ifc}, extra...)
	out, err := client.Run("arping", append(args, addr.String())...)
	if err != nil {
		return "" // arping exits 1 when nothing answered
	}
	return strings.TrimSpace(out)
}

// neighbour is the MAC the client's kernel has for addr on ifc, or "" if none.
func neighbour(t *testing.T, client *netns.NS, ifc string, addr netip.Addr) string {
	t.Helper()
	out := client.MustRun(t, "ip", "neigh", "show", addr.String(), "dev", ifc)
	f := strings.Fields(out)
	for i := range f[:max(len(f)-1, 0)] {
		if f[i] == "lladdr" {
			return f[i+1]
		}
	}
	return ""
}

// resolve makes the client's kernel resolve addr and returns the MAC it learned, or "" if
// it learned none within 3 s. The ping only starts resolution: it gets no echo, as the VIP
// is assigned nowhere.
func resolve(t *testing.T, client *netns.NS, ifc string, addr netip.Addr) string {
	t.Helper()
	_, _ = client.Run("ping", "-c", "1", "-W", "0.3", "-I", ifc, addr.String())
	return poll(func() string { return neighbour(t, client, ifc, addr) }, func(mac string) bool { return mac != "" })
}

// poll calls get until done accepts its result or 3 s have passed, and returns the last
// result.
func poll(get func() string, done func(string) bool) string {
	deadline := time.Now().Add(3 * time.Second)
	for {
		got := get()
		if done(got) || time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestVeth: one node, one client, a veth between them; the node's interface has no IPv4
// address of its own.
func TestVeth(t *testing.T) {
	t.Parallel()
	client := netns.ForTest(t, "arpc")
	node := netns.ForTest(t, "arpn")
	if err := netns.Veth(client, "c0", node, "n0"); err != nil {
		t.Fatal(err)
	}
	client.MustRun(t, "ip", "addr", "add", "192.0.2.1/24", "dev", "c0")
	r := startResponder(t, node, "n0")
	mac := r.HardwareAddr().String()

	if err := r.Announce(vip); err != nil {
		t.Fatal(err)
	}
	// The kernel first: arping's answer must not be what fills its neighbour table (it
	// would not, with arp_accept=0, but the order makes that moot).
	if got := resolve(t, client, "c0", vip); got != mac {
		t.Errorf("client kernel resolved %v to %q, want the node's %s", vip, got, mac)
	}
	if got := arping(t, client, "c0", vip, 2*time.Second); got != mac {
		t.Errorf("arping %v answered by %q, want the node's %s", vip, got, mac)
	}
	notAnnounced := netip.MustParseAddr("192.0.2.101")
	if got := arping(t, client, "c0", notAnnounced, time.Second); got != "" {
		t.Errorf("arping %v (not announced) answered by %s", notAnnounced, got)
	}

	r.Withdraw(vip)
	if got := arping(t, client, "c0", vip, time.Second); got != "" {
		t.Errorf("arping %v after Withdraw answered by %s", vip, got)
	}
	st := r.Stats()
	if st.RequestsAnswered < 2 || st.GratuitousSent == 0 || st.RequestsIgnored < 2 {
		t.Errorf("stats %+v: want at least 2 answered (arping, kernel), some gratuitous, 2 ignored", st)
	}
}

// TestTakeover: a client and two nodes on a bridge. The client resolves the VIP to node1;
// node1 withdraws and node2 announces; the client's existing neighbour entry moves to node2
// by node2's gratuitous ARP alone (the client sends nothing in between). node2 has a second
// interface, towards the client on another segment, that its responder was not given: no
// answer ever comes from there.
func TestTakeover(t *testing.T) {
	t.Parallel()
	sw := netns.ForTest(t, "arps")
	client := netns.ForTest(t, "arpc")
	node1 := netns.ForTest(t, "arpn1")
	node2 := netns.ForTest(t, "arpn2")
	sw.MustRun(t, "ip", "link", "add", "br0", "type", "bridge")
	sw.MustRun(t, "ip", "link", "set", "br0", "up")
	for _, p := range []struct {
		ns          *netns.NS
		port, inner string
	}{{client, "pc", "c0"}, {node1, "p1", "n1"}, {node2, "p2", "n2"}} {
		if err := netns.Veth(sw, p.port, p.ns, p.inner); err != nil {
			t.Fatal(err)
		}
		sw.MustRun(t, "ip", "link", "set", p.port, "master", "br0")
	}
	// The second segment: client c1 <-> node2 n2b, no bridge, no responder on n2b.
	if err := netns.Veth(client, "c1", node2, "n2b"); err != nil {
		t.Fatal(err)
	}
	client.MustRun(t, "ip", "addr", "add", "192.0.2.1/24", "dev", "c0")

	r1 := startResponder(t, node1, "n1")
	r2 := startResponder(t, node2, "n2")
	mac1, mac2 := r1.HardwareAddr().String(), r2.HardwareAddr().String()

	if err := r1.Announce(vip); err != nil {
		t.Fatal(err)
	}
	if got := resolve(t, client, "c0", vip); got != mac1 {
		t.Fatalf("client resolved %v to %q, want node1's %s", vip, got, mac1)
	}

	r1.Withdraw(vip)
	if err := r2.Announce(vip); err != nil {
		t.Fatal(err)
	}
	got := poll(func() string { return neighbour(t, client, "c0", vip) }, func(mac string) bool { return mac == mac2 })
	if got != mac2 {
		t.Errorf("after the takeover the client's entry for %v is %q, want node2's %s", vip, got, mac2)
	}
	if got := arping(t, client, "c0", vip, 2*time.Second); got != mac2 {
		t.Errorf("arping %v after the takeover answered by %q, want node2's %s", vip, got, mac2)
	}

	// n2b is up and in node2's namespace, on a segment where the request arrives; only
	// n2 was given to the responder.
	if got := arping(t, client, "c1", vip, time.Second, "-S", "192.0.2.1"); got != "" {
		t.Errorf("arping %v on the segment of n2b (no responder) answered by %s", vip, got)
	}
}
