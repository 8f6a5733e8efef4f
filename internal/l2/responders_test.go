package l2_test

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferrolb/ferrolb/internal/l2"
	"github.com/ferrolb/ferrolb/internal/lab/netns"
	"github.com/ferrolb/ferrolb/internal/testrun"
)

// These tests run Responders in a node's network namespace (Config.Do) and ask from a
// client's namespace with the kernel's own tools (arping, ndisc6). The node's interfaces
// have no address of their own on the service subnet: every answer comes from a responder.

var (
	vip4 = netip.MustParseAddr("192.0.2.100")
	vip6 = netip.MustParseAddr("2001:db8::100")
)

// newNS creates a namespace removed when the test ends, whose interfaces skip duplicate
// address detection (they copy "default" when created), so IPv6 link-local addresses are
// usable at once.
func newNS(t *testing.T, prefix string) *netns.NS {
	t.Helper()
	ns := netns.ForTest(t, "fla-"+prefix)
	ns.MustRun(t, "sysctl", "-q", "-w", "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0")
	return ns
}

// veth links client's cname to node's nname and gives the client's end addr (IPv4, /24).
func veth(t *testing.T, client *netns.NS, cname string, node *netns.NS, nname, addr string) {
	t.Helper()
	if err := netns.Veth(client, cname, node, nname); err != nil {
		t.Fatal(err)
	}
	client.MustRun(t, "ip", "addr", "add", addr+"/24", "dev", cname)
}

// startResponders runs Responders whose sockets live in ns until stop is called or the test
// ends. Its cleanup is registered after the namespace's, so it runs first.
func startResponders(t *testing.T, ns *netns.NS) (r *l2.Responders, stop func()) {
	t.Helper()
	r = l2.NewResponders(l2.Config{Do: ns.Do})
	return r, testrun.Background(t, "Responders.Run", r.Run)
}

// arping asks for addr once from the client's interface ifc, with source address src, and
// returns the MAC that answered, or "" if none did within wait. The arping installed is
// Thomas Habets' (-i for the interface); -C 1 returns at the first answer, -r prints only
// the MAC.
func arping(client *netns.NS, ifc, src string, addr netip.Addr, wait time.Duration) string {
	out, err := client.Run("arping", "-c", "1", "-C", "1", "-w", strconv.FormatFloat(wait.Seconds(), 'f', -1, 64),
		"-r", "-i", ifc, "-S", src, addr.String())
	if err != nil {
		return "" // arping exits 1 when nothing answered
	}
	return strings.TrimSpace(out)
}

// ndisc6 asks for target on dev the way a host resolves a neighbour and returns the MAC
// that answered, or "" when none did.
func ndisc6(client *netns.NS, target netip.Addr, dev string) string {
	out, err := client.Run("ndisc6", "-q", "-1", "-r", "2", "-w", "300", target.String(), dev)
	if err != nil {
		return ""
	}
	return strings.ToLower(strings.TrimSpace(out))
}

// macOf is the MAC of ifname in ns.
func macOf(t *testing.T, ns *netns.NS, ifname string) string {
	t.Helper()
	return strings.TrimSpace(ns.MustRun(t, "cat", "/sys/class/net/"+ifname+"/address"))
}

func apply(t *testing.T, r *l2.Responders, want map[netip.Addr][]string) {
	t.Helper()
	if err := r.Apply(t.Context(), want); err != nil {
		t.Fatalf("Apply(%v): %v", want, err)
	}
}

func checkAnnounced(t *testing.T, r *l2.Responders, want map[netip.Addr][]string) {
	t.Helper()
	got := r.Announced()
	for _, ifs := range got {
		slices.Sort(ifs)
	}
	if !maps.EqualFunc(got, want, slices.Equal) {
		t.Errorf("Announced() = %v, want %v", got, want)
	}
}

// TestApply: what Apply is given is answered on the interfaces named and nowhere else; an
// address leaving an interface is withdrawn there; an interface that does not exist costs
// only its own entry; Takeovers counts addresses that go from announced nowhere to announced.
func TestApply(t *testing.T) {
	t.Parallel()
	client, node := newNS(t, "ac"), newNS(t, "an")
	veth(t, client, "c0", node, "n0", "192.0.2.1")
	veth(t, client, "c1", node, "n1", "192.0.2.2")
	client.MustRun(t, "ip", "-6", "addr", "add", "2001:db8::1/64", "dev", "c0")
	mac0, mac1 := macOf(t, node, "n0"), macOf(t, node, "n1")
	r, _ := startResponders(t, node)

	err := r.Apply(t.Context(), map[netip.Addr][]string{vip4: {"n0", "nope"}, vip6: {"n0"}})
	if err == nil || !strings.Contains(err.Error(), "announce "+vip4.String()+" on nope: no such interface") {
		t.Errorf("Apply with a missing interface: error %v, want one naming %s on nope", err, vip4)
	}
	checkAnnounced(t, r, map[netip.Addr][]string{vip4: {"n0"}, vip6: {"n0"}})
	if got := arping(client, "c0", "192.0.2.1", vip4, 2*time.Second); got != mac0 {
		t.Errorf("arping %s on n0's segment answered by %q, want n0's %s", vip4, got, mac0)
	}
	if got := ndisc6(client, vip6, "c0"); got != mac0 {
		t.Errorf("ndisc6 %s on n0's segment answered by %q, want n0's %s", vip6, got, mac0)
	}
	if got := arping(client, "c1", "192.0.2.2", vip4, time.Second); got != "" {
		t.Errorf("arping %s on n1's segment (not announced there) answered by %s", vip4, got)
	}
	if got := r.Takeovers(); got != 2 {
		t.Errorf("Takeovers() = %d after announcing 2 addresses, want 2", got)
	}
	if st := r.Stats(); len(st) != 1 || st[0].Name != "n0" || st[0].ARP.RequestsAnswered == 0 || st[0].NDP.Answered == 0 {
		t.Errorf("Stats() = %+v, want n0's only, with ARP and NDP answers", st)
	}

	// The IPv4 address moves to n1, the IPv6 one goes: not a takeover, a move.
	apply(t, r, map[netip.Addr][]string{vip4: {"n1"}})
	checkAnnounced(t, r, map[netip.Addr][]string{vip4: {"n1"}})
	if got := arping(client, "c1", "192.0.2.2", vip4, 2*time.Second); got != mac1 {
		t.Errorf("arping %s on n1's segment answered by %q, want n1's %s", vip4, got, mac1)
	}
	if got := arping(client, "c0", "192.0.2.1", vip4, time.Second); got != "" {
		t.Errorf("arping %s on n0's segment after it moved answered by %s", vip4, got)
	}
	if got := ndisc6(client, vip6, "c0"); got != "" {
		t.Errorf("ndisc6 %s after it was withdrawn answered by %s", vip6, got)
	}
	if got := r.Takeovers(); got != 2 {
		t.Errorf("Takeovers() = %d after a move, want still 2", got)
	}

	apply(t, r, nil)
	checkAnnounced(t, r, map[netip.Addr][]string{})
	if got := arping(client, "c1", "192.0.2.2", vip4, time.Second); got != "" {
		t.Errorf("arping %s after everything was withdrawn answered by %s", vip4, got)
	}
	apply(t, r, map[netip.Addr][]string{vip4: {"n0"}})
	if got := r.Takeovers(); got != 3 {
		t.Errorf("Takeovers() = %d after announcing again, want 3", got)
	}
}

// TestInterfaceReplaced: responders follow their interface. Given another MAC (a bond whose
// first port changed), the next Apply answers with the new one; deleted and created again
// under the same name (a new index), the next Apply answers on the new interface. Kept
// responders would answer with the old MAC, or on a socket bound to the dead interface.
func TestInterfaceReplaced(t *testing.T) {
	t.Parallel()
	client, node := newNS(t, "rc"), newNS(t, "rn")
	veth(t, client, "c0", node, "n0", "192.0.2.1")
	r, _ := startResponders(t, node)
	want := map[netip.Addr][]string{vip4: {"n0"}}
	apply(t, r, want)
	old := macOf(t, node, "n0")
	if got := arping(client, "c0", "192.0.2.1", vip4, 2*time.Second); got != old {
		t.Fatalf("arping %s answered by %q, want n0's %s", vip4, got, old)
	}

	const newMAC = "02:00:00:00:fa:01"
	node.MustRun(t, "ip", "link", "set", "n0", "address", newMAC)
	// Until the next Apply the old responder answers with the MAC it was made with: that is
	// what replacing it is for.
	if got := arping(client, "c0", "192.0.2.1", vip4, 2*time.Second); got != old {
		t.Fatalf("before Apply, arping %s answered by %q, want the old responder's %s", vip4, got, old)
	}
	apply(t, r, want)
	if got := arping(client, "c0", "192.0.2.1", vip4, 2*time.Second); got != newMAC {
		t.Errorf("after a MAC change and Apply, arping %s answered by %q, want %s", vip4, got, newMAC)
	}

	// Deleting either end of a veth deletes both.
	client.MustRun(t, "ip", "link", "del", "c0")
	veth(t, client, "c0", node, "n0", "192.0.2.1")
	apply(t, r, want)
	if got, mac := arping(client, "c0", "192.0.2.1", vip4, 2*time.Second), macOf(t, node, "n0"); got != mac {
		t.Errorf("after n0 was created again and Apply, arping %s answered by %q, want the new n0's %s", vip4, got, mac)
	}
	checkAnnounced(t, r, want)
	if st := r.Stats(); len(st) != 1 || st[0].Name != "n0" {
		t.Errorf("Stats() = %+v, want one entry, n0", st)
	}
	if got := r.Takeovers(); got != 1 {
		t.Errorf("Takeovers() = %d, want 1: the address was announced throughout", got)
	}
}

// TestApplyBeforeRun: Apply waits for Run to start (or its context to end); once Run has
// returned it fails at once; Run runs once.
func TestApplyBeforeRun(t *testing.T) {
	t.Parallel()
	client, node := newNS(t, "bc"), newNS(t, "bn")
	veth(t, client, "c0", node, "n0", "192.0.2.1")
	r := l2.NewResponders(l2.Config{Do: node.Do})
	want := map[netip.Addr][]string{vip4: {"n0"}}

	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := r.Apply(ctx, want); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Apply before Run with a context that ends: %v, want %v", err, context.DeadlineExceeded)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("Apply before Run returned after %v, before its context ended", d)
	}

	applied := make(chan error, 1)
	go func() { applied <- r.Apply(t.Context(), want) }()
	select {
	case err := <-applied:
		t.Fatalf("Apply before Run returned (%v) before Run started", err)
	case <-time.After(300 * time.Millisecond):
	}
	stop := testrun.Background(t, "Responders.Run", r.Run)
	select {
	case err := <-applied:
		if err != nil {
			t.Fatalf("Apply waiting for Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Apply did not return within 10 s of Run starting")
	}
	checkAnnounced(t, r, want)
	if got, mac := arping(client, "c0", "192.0.2.1", vip4, 2*time.Second), macOf(t, node, "n0"); got != mac {
		t.Errorf("arping %s answered by %q, want n0's %s", vip4, got, mac)
	}
	if err := r.Run(t.Context()); err == nil {
		t.Error("a second Run returned nil, want an error")
	}

	stop()
	ctx, cancel = context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := r.Apply(ctx, want); !errors.Is(err, l2.ErrStopped) {
		t.Errorf("Apply after Run returned: %v, want %v", err, l2.ErrStopped)
	}
}

// sockets counts, in ns, the packet sockets (the ARP and NDP responders read frames from
// them), the raw ICMPv6 sockets (NDP joins solicited-node groups through one) and the
// netlink route sockets of a process that subscribed to link changes (group RTNLGRP_LINK;
// the kernel's own have port 0).
func sockets(t *testing.T, ns *netns.NS) (packet, raw6, linkSubs int) {
	t.Helper()
	rows := func(file string) [][]string {
		lines := strings.Split(strings.TrimSpace(ns.MustRun(t, "cat", file)), "\n")
		var out [][]string
		for _, l := range lines[1:] { // the header
			out = append(out, strings.Fields(l))
		}
		return out
	}
	packet, raw6 = len(rows("/proc/net/packet")), len(rows("/proc/net/raw6"))
	for _, f := range rows("/proc/net/netlink") {
		// sk Eth Pid Groups ...: Eth 0 is NETLINK_ROUTE.
		if len(f) < 4 || f[1] != "0" || f[2] == "0" {
			continue
		}
		if groups, err := strconv.ParseUint(f[3], 16, 32); err == nil && groups&1 != 0 {
			linkSubs++
		}
	}
	return packet, raw6, linkSubs
}

// TestRunStopsEverything: once Run returns, a client gets no more answers, every socket it
// opened in the node's namespace is closed, and every goroutine it started has exited. Not
// parallel: the goroutine check sees the whole process.
func TestRunStopsEverything(t *testing.T) {
	client, node := newNS(t, "sc"), newNS(t, "sn")
	veth(t, client, "c0", node, "n0", "192.0.2.1")
	veth(t, client, "c1", node, "n1", "192.0.2.2")
	mac0 := macOf(t, node, "n0")
	ignore := goleak.IgnoreCurrent()

	r, stop := startResponders(t, node)
	want := map[netip.Addr][]string{vip4: {"n0"}, vip6: {"n0", "n1"}}
	apply(t, r, want)
	if got := arping(client, "c0", "192.0.2.1", vip4, 2*time.Second); got != mac0 {
		t.Fatalf("arping %s answered by %q, want n0's %s", vip4, got, mac0)
	}
	// Two interfaces, each an ARP and an NDP responder: 4 packet sockets, 2 ICMPv6 ones.
	if p, r6, l := sockets(t, node); p != 4 || r6 != 2 || l != 1 {
		t.Fatalf("while running: %d packet, %d raw ICMPv6, %d link subscription sockets in the node; want 4, 2, 1", p, r6, l)
	}

	stop()
	if got := arping(client, "c0", "192.0.2.1", vip4, time.Second); got != "" {
		t.Errorf("arping %s after Run returned answered by %s", vip4, got)
	}
	if p, r6, l := sockets(t, node); p != 0 || r6 != 0 || l != 0 {
		t.Errorf("after Run returned: %d packet, %d raw ICMPv6, %d link subscription sockets left in the node; want none", p, r6, l)
	}
	checkAnnounced(t, r, map[netip.Addr][]string{})
	if st := r.Stats(); len(st) != 0 {
		t.Errorf("Stats() after Run returned = %+v, want none", st)
	}
	if got := r.Takeovers(); got != 2 {
		t.Errorf("Takeovers() after Run returned = %d, want the 2 counted before", got)
	}
	goleak.VerifyNone(t, ignore)
}

// TestLinkChanges: Changed signals a link losing carrier (its peer set down) and an
// interface deleted, and Interfaces reports what is usable: up and with carrier.
func TestLinkChanges(t *testing.T) {
	t.Parallel()
	client, node := newNS(t, "lc"), newNS(t, "ln")
	veth(t, client, "c0", node, "n0", "192.0.2.1")
	veth(t, client, "c1", node, "n1", "192.0.2.2")
	r, _ := startResponders(t, node)
	// Apply returns once Run's loop serves requests, which is after it subscribed.
	apply(t, r, nil)

	// waitInterfaces polls Interfaces until it reports wantAll and wantUsable: carrier
	// follows a link change by a few milliseconds.
	waitInterfaces := func(wantAll, wantUsable []string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			all, usable, err := r.Interfaces()
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, ifi := range all {
				names = append(names, ifi.Name)
			}
			slices.Sort(names)
			slices.Sort(usable)
			if slices.Equal(names, wantAll) && slices.Equal(usable, wantUsable) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("Interfaces() = %v, usable %v; want %v, usable %v", names, usable, wantAll, wantUsable)
			}
		}
	}
	// quiet drains a pending signal and checks that no other comes within a while: the
	// signal expected next is then the change's, not one from before.
	quiet := func() {
		t.Helper()
		select {
		case <-r.Changed():
		default:
		}
		select {
		case <-r.Changed():
			t.Fatal("Changed signalled with no link changing")
		case <-time.After(300 * time.Millisecond):
		}
	}
	signalled := func(what string) {
		t.Helper()
		select {
		case <-r.Changed():
		case <-time.After(5 * time.Second):
			t.Fatalf("Changed not signalled within 5 s of %s", what)
		}
	}
	// Both veths come up with carrier (signalled too), before the changes under test.
	waitInterfaces([]string{"n0", "n1"}, []string{"n0", "n1"})

	quiet()
	client.MustRun(t, "ip", "link", "set", "c0", "down")
	signalled("n0's peer going down")
	waitInterfaces([]string{"n0", "n1"}, []string{"n1"})

	quiet()
	node.MustRun(t, "ip", "link", "del", "n1")
	signalled("n1 being deleted")
	waitInterfaces([]string{"n0"}, nil)
}

// TestInterfaceTypes: addresses are answered with the right MAC on a bond, a bridge and a
// VLAN sub-interface, as users have them. The kernel of the machine kind FerroLB is developed
// on has neither the bond nor the VLAN device type, so there those cases skip, naming the
// missing type; on a kernel with bonding and 802.1Q they run.
func TestInterfaceTypes(t *testing.T) {
	tests := []struct {
		name string
		// node builds the node's announcing interface (named "svc0") on top of eth0/eth1,
		// client the client's side on top of its eth0/eth1 (client address on "cl0").
		node, client [][]string
	}{
		{
			name: "bond",
			node: [][]string{
				{"ip", "link", "add", "svc0", "type", "bond", "mode", "active-backup"},
				{"ip", "link", "set", "eth0", "down"}, {"ip", "link", "set", "eth0", "master", "svc0"},
				{"ip", "link", "set", "eth1", "down"}, {"ip", "link", "set", "eth1", "master", "svc0"},
				{"ip", "link", "set", "svc0", "up"},
			},
			client: [][]string{
				{"ip", "link", "add", "cl0", "type", "bridge"},
				{"ip", "link", "set", "eth0", "master", "cl0"}, {"ip", "link", "set", "eth1", "master", "cl0"},
				{"ip", "link", "set", "cl0", "up"},
			},
		},
		{
			// Hosts whose uplink is enslaved to a Linux bridge (common with VMs beside pods).
			name: "bridge",
			node: [][]string{
				{"ip", "link", "add", "svc0", "type", "bridge"},
				{"ip", "link", "set", "eth0", "master", "svc0"}, {"ip", "link", "set", "svc0", "up"},
			},
			client: [][]string{
				{"ip", "link", "add", "cl0", "type", "bridge"},
				{"ip", "link", "set", "eth0", "master", "cl0"}, {"ip", "link", "set", "cl0", "up"},
			},
		},
		{
			name:   "vlan",
			node:   [][]string{{"ip", "link", "add", "link", "eth0", "name", "svc0", "type", "vlan", "id", "100"}, {"ip", "link", "set", "svc0", "up"}},
			client: [][]string{{"ip", "link", "add", "link", "eth0", "name", "cl0", "type", "vlan", "id", "100"}, {"ip", "link", "set", "cl0", "up"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			client, node := newNS(t, "tc"), newNS(t, "tn")
			for _, name := range []string{"eth0", "eth1"} {
				if err := netns.Veth(client, name, node, name); err != nil {
					t.Fatal(err)
				}
			}
			for _, c := range tt.node {
				if out, err := node.Run(c[0], c[1:]...); err != nil {
					if strings.Contains(err.Error(), "Unknown device type") {
						t.Skipf("this kernel has no %s device type (%v); the test runs where it has one", tt.name, err)
					}
					t.Fatalf("%v: %s", err, out)
				}
			}
			for _, c := range tt.client {
				client.MustRun(t, c[0], c[1:]...)
			}
			client.MustRun(t, "ip", "addr", "add", "192.0.2.1/24", "dev", "cl0")
			want := macOf(t, node, "svc0")

			r, _ := startResponders(t, node)
			apply(t, r, map[netip.Addr][]string{vip4: {"svc0"}})
			if got := arping(client, "cl0", "192.0.2.1", vip4, 2*time.Second); got != want {
				t.Errorf("arping %s on a %s answered by %q, want %s", vip4, tt.name, got, want)
			}
		})
	}
}
