package ndp

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ferrolb/ferrolb/internal/lab/netns"
	"github.com/ferrolb/ferrolb/internal/testrun"
)

// These tests put the responder in one network namespace and the kernel's own NDP clients
// (ndisc6, and the neighbour resolution behind ping) in another.

// newNS creates a namespace whose interfaces skip duplicate address detection, so addresses
// (link-local ones included) are usable at once. It must run before the interfaces exist:
// they copy "default" when created.
func newNS(t *testing.T, prefix string) *netns.NS {
	t.Helper()
	ns := netns.ForTest(t, prefix)
	ns.MustRun(t, "sysctl", "-q", "-w", "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0")
	return ns
}

// startResponder opens a responder on ifname inside ns and runs it until the test ends.
func startResponder(t *testing.T, ns *netns.NS, ifname string) (*Responder, net.HardwareAddr) {
	t.Helper()
	var r *Responder
	var mac net.HardwareAddr
	if err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		mac = ifi.HardwareAddr
		r, err = New(ifi)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// Its cleanup is registered after the namespace's, so it runs first: the responder stops
	// before its namespace goes.
	testrun.Background(t, "Run on "+ifname, r.Run)
	return r, mac
}

// waitAddrsReady waits until no address on dev is tentative.
func waitAddrsReady(t *testing.T, ns *netns.NS, dev string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out := ns.MustRun(t, "ip", "-6", "addr", "show", "dev", dev, "tentative")
		if strings.TrimSpace(out) == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: addresses still tentative:\n%s", dev, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ndisc6 asks for target on dev the way a host resolves a neighbour and returns the MAC it
// accepted, or the error when nothing acceptable came back.
func ndisc6(ns *netns.NS, target netip.Addr, dev string) (string, error) {
	out, err := ns.Run("ndisc6", "-q", "-1", "-r", "2", "-w", "300", target.String(), dev)
	return strings.TrimSpace(out), err
}

// neighMAC returns the link-layer address of target in ns's neighbour table, or "".
func neighMAC(t *testing.T, ns *netns.NS, target netip.Addr, dev string) string {
	t.Helper()
	f := strings.Fields(ns.MustRun(t, "ip", "-6", "neigh", "show", target.String(), "dev", dev))
	for i := range f {
		if f[i] == "lladdr" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

// waitNeighMAC polls the neighbour table until target maps to want.
func waitNeighMAC(t *testing.T, ns *netns.NS, target netip.Addr, dev, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := neighMAC(t, ns, target, dev)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("neighbour %s on %s is %q, want %s\n%s", target, dev, got, want,
				ns.MustRun(t, "ip", "-6", "neigh", "show", "dev", dev))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ping sends one echo request so that the client's kernel resolves target. No reply comes
// (the node does not hold the address), so its failure is expected and ignored.
func ping(ns *netns.NS, target netip.Addr) {
	_, _ = ns.Run("ping", "-6", "-c1", "-W1", target.String())
}

func TestNetnsVeth(t *testing.T) {
	t.Parallel()
	cl := newNS(t, "ndpc")
	node := newNS(t, "ndpn")
	if err := netns.Veth(cl, "c0", node, "n0"); err != nil {
		t.Fatal(err)
	}
	// The client has an address on the service subnet; the node has none of its own there
	// (only its link-local one), as with a VIP pool outside the node's addresses.
	cl.MustRun(t, "ip", "-6", "addr", "add", "2001:db8::1/64", "dev", "c0")
	waitAddrsReady(t, cl, "c0")

	r, nodeMAC := startResponder(t, node, "n0")
	vip := netip.MustParseAddr("2001:db8::100")
	other := netip.MustParseAddr("2001:db8::200")
	if err := r.Announce(vip); err != nil {
		t.Fatal(err)
	}

	got, err := ndisc6(cl, vip, "c0")
	if err != nil || !strings.EqualFold(got, nodeMAC.String()) {
		t.Fatalf("ndisc6 %s: %q, %v; want %s", vip, got, err, nodeMAC)
	}
	// The kernel's own resolution: the client's neighbour table learns the node's MAC.
	ping(cl, vip)
	waitNeighMAC(t, cl, vip, "c0", nodeMAC.String())

	// Unreachability detection: make the entry stale and probe at once. In PROBE state the
	// client unicasts its solicitation to the VIP at the node's MAC; the node's kernel drops
	// that packet (the VIP is not local), and only an answer read off the packet socket makes
	// the entry REACHABLE again (without one it would end FAILED).
	cl.MustRun(t, "sysctl", "-q", "-w", "net.ipv6.neigh.c0.delay_first_probe_time=0")
	cl.MustRun(t, "ip", "-6", "neigh", "change", vip.String(), "dev", "c0", "lladdr", nodeMAC.String(), "nud", "stale")
	before := r.Stats().Answered
	ping(cl, vip)
	if out := cl.MustRun(t, "ip", "-6", "neigh", "show", vip.String(), "dev", "c0"); !strings.Contains(out, "REACHABLE") {
		t.Errorf("after a unicast probe the entry is not REACHABLE: %s", out)
	}
	if r.Stats().Answered == before {
		t.Error("the unicast probe was not answered")
	}

	if got, err := ndisc6(cl, other, "c0"); err == nil {
		t.Errorf("ndisc6 %s (not announced) answered: %q", other, got)
	}
	if err := r.Withdraw(vip); err != nil {
		t.Fatal(err)
	}
	if got, err := ndisc6(cl, vip, "c0"); err == nil {
		t.Errorf("ndisc6 %s after Withdraw answered: %q", vip, got)
	}
	st := r.Stats()
	if st.Answered == 0 || st.Unsolicited == 0 || st.NotAnnounced == 0 || st.SendErrors != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

// TestNetnsTakeover: a client and two nodes on a bridge. When node1 withdraws and node2
// announces, node2's unsolicited advertisement (Override set) moves the client's existing
// neighbour entry to node2's MAC without the client asking.
func TestNetnsTakeover(t *testing.T) {
	t.Parallel()
	sw := newNS(t, "ndps")
	cl := newNS(t, "ndpc")
	n1 := newNS(t, "ndp1")
	n2 := newNS(t, "ndp2")
	sw.MustRun(t, "ip", "link", "add", "br0", "type", "bridge")
	sw.MustRun(t, "ip", "link", "set", "br0", "up")
	for _, l := range []struct {
		ns        *netns.NS
		dev, port string
	}{{cl, "c0", "pc"}, {n1, "n0", "p1"}, {n2, "n0", "p2"}} {
		if err := netns.Veth(l.ns, l.dev, sw, l.port); err != nil {
			t.Fatal(err)
		}
		sw.MustRun(t, "ip", "link", "set", l.port, "master", "br0")
	}
	cl.MustRun(t, "ip", "-6", "addr", "add", "2001:db8::1/64", "dev", "c0")
	waitAddrsReady(t, cl, "c0")

	r1, mac1 := startResponder(t, n1, "n0")
	r2, mac2 := startResponder(t, n2, "n0")
	vip := netip.MustParseAddr("2001:db8::100")
	if err := r1.Announce(vip); err != nil {
		t.Fatal(err)
	}
	ping(cl, vip)
	waitNeighMAC(t, cl, vip, "c0", mac1.String())

	if err := r1.Withdraw(vip); err != nil {
		t.Fatal(err)
	}
	if err := r2.Announce(vip); err != nil {
		t.Fatal(err)
	}
	waitNeighMAC(t, cl, vip, "c0", mac2.String())
	// And a fresh resolution finds node2 only.
	if got, err := ndisc6(cl, vip, "c0"); err != nil || !strings.EqualFold(got, mac2.String()) {
		t.Errorf("ndisc6 after takeover: %q, %v; want %s", got, err, mac2)
	}
}
