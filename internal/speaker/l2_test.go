package speaker_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/kubetest"
	"github.com/ferrolb/ferrolb/internal/l2"
	"github.com/ferrolb/ferrolb/internal/lab/netns"
	"github.com/ferrolb/ferrolb/internal/speaker"
	"github.com/ferrolb/ferrolb/internal/testrun"
)

var env *kubetest.Env

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	os.Exit(kubetest.Run(m, &env))
}

// lab is a switch namespace with bridges (Ethernet segments) that namespaces join.
type lab struct {
	t     testing.TB
	sw    *netns.NS
	ports int
}

func newLab(t testing.TB, bridges ...string) *lab {
	l := &lab{t: t, sw: netns.ForTest(t, "sw")}
	for _, b := range bridges {
		l.sw.MustRun(t, "ip", "link", "add", b, "type", "bridge")
		l.sw.MustRun(t, "ip", "link", "set", b, "up")
	}
	return l
}

// host creates a namespace without duplicate address detection delays.
func (l *lab) host(prefix string) *netns.NS {
	ns := netns.ForTest(l.t, prefix)
	// Interfaces copy the default settings when created.
	ns.MustRun(l.t, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")
	return ns
}

// join links ns to a bridge through interface ifname with the given addresses, and returns
// the switch-side port (cut it to take the carrier away from ifname).
func (l *lab) join(ns *netns.NS, ifname, bridge string, addrs ...string) string {
	l.ports++
	port := fmt.Sprintf("sw%d", l.ports)
	if err := netns.Veth(ns, ifname, l.sw, port); err != nil {
		l.t.Fatal(err)
	}
	l.sw.MustRun(l.t, "ip", "link", "set", port, "master", bridge)
	for _, a := range addrs {
		ns.MustRun(l.t, "ip", "addr", "add", a, "dev", ifname)
	}
	return port
}

func mac(t *testing.T, ns *netns.NS) string {
	return strings.TrimSpace(ns.MustRun(t, "cat", "/sys/class/net/eth0/address"))
}

// createService creates a LoadBalancer Service and writes its addresses to its status, as the
// controller would: these tests are about the speaker.
func createService(t *testing.T, namespace, name string, vips ...netip.Addr) {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if err := env.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.ServiceSpec{
			Type:           corev1.ServiceTypeLoadBalancer,
			IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicyPreferDualStack),
			Ports:          []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
		},
	}
	if err := env.Client.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	for _, v := range vips {
		svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: v.String()})
	}
	if err := env.Client.Status().Update(ctx, svc); err != nil {
		t.Fatal(err)
	}
}

func createPolicy(t *testing.T, name string, interfaces ...string) {
	t.Helper()
	pol := &v1.L2Policy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.L2PolicySpec{Interfaces: interfaces}}
	if err := env.Client.Create(context.Background(), pol); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), pol) })
}

var memberKey = []byte("a heartbeat key for the tests, 32")

// node registers a Node object and runs its speaker, with sockets in ns, until stop.
func node(t *testing.T, name, ip string, ns *netns.NS) (stop func()) {
	t.Helper()
	registerNode(t, name, ip, nil)
	return testrun.Background(t, "speaker "+name, func(ctx context.Context) error {
		return speaker.Run(ctx, env.Config, speaker.Options{
			NodeName: name, MetricsAddr: "0", HealthAddr: "0", Netns: ns.Do, Restartable: true,
			MemberKey: memberKey, // signed heartbeats here; the lab's speakers run unsigned
		})
	})
}

// neighbour makes the client's kernel resolve vip (ping) and returns the MAC in its
// neighbour table, or "".
func neighbour(client *netns.NS, vip netip.Addr, resolve bool) string {
	if resolve {
		_, _ = client.Run("ping", "-c", "1", "-W", "0.3", vip.String()) // an echo is not needed
	}
	out, _ := client.Run("ip", "neigh", "show", vip.String(), "dev", "eth0")
	for f := range strings.FieldsSeq(out) {
		if strings.Count(f, ":") == 5 {
			return f
		}
	}
	return ""
}

func waitNeighbour(t *testing.T, client *netns.NS, vip netip.Addr, want string, resolve bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := neighbour(client, vip, resolve)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("client resolves %s to %q, want %q", vip, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestLayer2Failover: the elected node answers for each address, the client's own kernel
// resolves it there, the Service says who announces it, and when that node's speaker dies
// the other node takes over and the client's neighbour entry follows.
func TestLayer2Failover(t *testing.T) {
	l := newLab(t, "br0")
	client := l.host("cl")
	l.join(client, "eth0", "br0", "192.0.2.1/24", "2001:db8::1/64")
	all := []string{"l2-node-a", "l2-node-b", "l2-node-c"}
	nodeNS := map[string]*netns.NS{}
	for i, name := range all {
		nodeNS[name] = l.host(fmt.Sprintf("n%d", i))
		l.join(nodeNS[name], "eth0", "br0", fmt.Sprintf("192.0.2.%d/24", 11+i))
	}
	createPolicy(t, "l2-failover", "eth0")
	v4, v6 := netip.MustParseAddr("192.0.2.100"), netip.MustParseAddr("2001:db8::100")
	createService(t, "l2-failover", "web", v4, v6)

	stops := map[string]func(){}
	for i, name := range all {
		stops[name] = node(t, name, fmt.Sprintf("192.0.2.%d", 11+i), nodeNS[name])
	}
	for _, vip := range []netip.Addr{v4, v6} {
		winner, _ := l2.Announcer(vip, all)
		waitNeighbour(t, client, vip, mac(t, nodeNS[winner]), true)
	}
	first, _ := l2.Announcer(v4, all)
	waitAnnounced(t, "l2-failover", "web", fmt.Sprintf("%s by %s (layer 2 on eth0)", v4, first))

	// The announcer of the IPv4 address dies; its addresses move to the survivors' winners,
	// and the client's existing entries follow without waiting for them to expire.
	stops[first]()
	rest := slices.DeleteFunc(slices.Clone(all), func(n string) bool { return n == first })
	for _, vip := range []netip.Addr{v4, v6} {
		winner, _ := l2.Announcer(vip, rest)
		waitNeighbour(t, client, vip, mac(t, nodeNS[winner]), false)
	}
	survivor, _ := l2.Announcer(v4, rest)
	waitAnnounced(t, "l2-failover", "web", fmt.Sprintf("%s by %s (layer 2 on eth0)", v4, survivor))
}

func waitAnnounced(t *testing.T, ns, name, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		svc := &corev1.Service{}
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, svc); err != nil {
			t.Fatal(err)
		}
		c := meta.FindStatusCondition(svc.Status.Conditions, speaker.ConditionAnnounced)
		if c != nil && strings.Contains(c.Message, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Announced condition = %+v, want a message containing %q", c, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestLayer2CarrierLoss: the announcing node's service interface loses carrier while its
// heartbeats still flow over another network (a reported Cilium failure: the lease kept
// renewing and nothing failed over). The node must give its address up at once and another
// take over; when the carrier returns, exactly one node answers again.
func TestLayer2CarrierLoss(t *testing.T) {
	l := newLab(t, "svc", "nodes")
	client := l.host("cl")
	l.join(client, "eth0", "svc", "192.0.2.1/24")
	names := []string{"l2-carrier-a", "l2-carrier-b"}
	nodeNS := map[string]*netns.NS{}
	port := map[string]string{}
	for i, name := range names {
		ns := l.host(fmt.Sprintf("c%d", i))
		nodeNS[name] = ns
		// eth0: the service segment, no address of its own. eth1: the node network, which
		// carries the heartbeats.
		port[name] = l.join(ns, "eth0", "svc")
		ip := fmt.Sprintf("198.51.100.%d", 11+i)
		l.join(ns, "eth1", "nodes", ip+"/24")
		node(t, name, ip, ns)
	}
	createPolicy(t, "l2-carrier", "eth0")
	vip := netip.MustParseAddr("192.0.2.110")
	createService(t, "l2-carrier", "web", vip)

	winner, _ := l2.Announcer(vip, names)
	other := names[0]
	if other == winner {
		other = names[1]
	}
	waitNeighbour(t, client, vip, mac(t, nodeNS[winner]), true)

	l.sw.MustRun(t, "ip", "link", "set", port[winner], "down")
	waitNeighbour(t, client, vip, mac(t, nodeNS[other]), false)
	waitAnnounced(t, "l2-carrier", "web", fmt.Sprintf("%s by %s", vip, other))

	// Carrier back: the winner by hash is eligible again and takes the address back; in
	// steady state exactly one node answers.
	l.sw.MustRun(t, "ip", "link", "set", port[winner], "up")
	waitNeighbour(t, client, vip, mac(t, nodeNS[winner]), false)
	// Steady state: exactly one node answers (the hand-over itself may overlap by a few ms).
	deadline := time.Now().Add(10 * time.Second)
	for {
		macs := answering(client, vip)
		if len(macs) == 1 && macs[mac(t, nodeNS[winner])] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("arping for %s still answered by %v, want only %s", vip, macs, mac(t, nodeNS[winner]))
		}
	}
}

// TestLayer2InterfaceChanges: the service interface gets another MAC (as a bond does when
// its first port changes), then is deleted and created again under the same name (a new
// index and MAC, as when a VLAN or bond is rebuilt). Each time the speaker answers with the
// interface's MAC of the moment on both families, and a client's existing entries move to
// it without asking again. Before, the speaker kept answering with the first MAC, and after
// the re-creation not at all (its sockets were bound to the deleted interface).
func TestLayer2InterfaceChanges(t *testing.T) {
	l := newLab(t, "svc", "nodes")
	client := l.host("ic")
	l.join(client, "eth0", "svc", "192.0.2.1/24", "2001:db8::1/64")
	ns := l.host("in")
	l.join(ns, "eth0", "svc")
	// eth1 carries the heartbeats, so they do not stop while eth0 is rebuilt.
	l.join(ns, "eth1", "nodes", "198.51.100.21/24")
	const name = "l2-ifchange"
	node(t, name, "198.51.100.21", ns)
	createPolicy(t, name, "eth0")
	vips := []netip.Addr{netip.MustParseAddr("192.0.2.120"), netip.MustParseAddr("2001:db8::120")}
	createService(t, name, "web", vips...)
	for _, vip := range vips {
		waitNeighbour(t, client, vip, mac(t, ns), true)
	}

	const newMAC = "02:00:5e:00:53:01"
	ns.MustRun(t, "ip", "link", "set", "eth0", "address", newMAC)
	for _, vip := range vips {
		waitNeighbour(t, client, vip, newMAC, false)
	}

	ns.MustRun(t, "ip", "link", "del", "eth0")
	l.join(ns, "eth0", "svc")
	rebuilt := mac(t, ns)
	for _, vip := range vips {
		waitNeighbour(t, client, vip, rebuilt, false)
	}
	// A client that asks afresh is answered with it too.
	client.MustRun(t, "ip", "neigh", "flush", "dev", "eth0")
	for _, vip := range vips {
		waitNeighbour(t, client, vip, rebuilt, true)
	}
}

// TestLayer2Eligibility: only eligible nodes announce. With externalTrafficPolicy Local, a
// node without a ready local endpoint never does; a policy's nodeSelector excludes the
// others; an interface the policy does not select never answers. Each case is set up so that
// the node that wins by hash alone is the ineligible one.
func TestLayer2Eligibility(t *testing.T) {
	ctx := context.Background()
	l := newLab(t, "svc", "other")
	cl := l.host("cl")
	l.join(cl, "eth0", "svc", "192.0.2.1/24")
	probe := l.host("pr") // on a segment no policy selects
	l.join(probe, "eth0", "other", "203.0.113.1/24")
	names := []string{"l2-elig-a", "l2-elig-b"}
	nodeNS := map[string]*netns.NS{}
	for i, name := range names {
		ns := l.host(fmt.Sprintf("e%d", i))
		nodeNS[name] = ns
		ip := fmt.Sprintf("192.0.2.%d", 21+i)
		l.join(ns, "eth0", "svc", ip+"/24")
		l.join(ns, "eth1", "other", fmt.Sprintf("203.0.113.%d/24", 21+i))
		node(t, name, ip, ns)
	}
	// Pick addresses whose hash winner is names[0]; names[1] must announce them instead.
	pick := func(from string) netip.Addr {
		a := netip.MustParseAddr(from)
		for {
			if w, _ := l2.Announcer(a, names); w == names[0] {
				return a
			}
			a = a.Next()
		}
	}
	local, edge := pick("192.0.2.120"), pick("192.0.2.140")

	for _, p := range []*v1.L2Policy{
		{ObjectMeta: metav1.ObjectMeta{Name: "l2-elig-local"}, Spec: v1.L2PolicySpec{
			Interfaces:      []string{"eth0"},
			ServiceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "local"}},
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "l2-elig-edge"}, Spec: v1.L2PolicySpec{
			Interfaces:      []string{"eth0"},
			ServiceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "edge"}},
			NodeSelector:    &metav1.LabelSelector{MatchLabels: map[string]string{"role": "edge"}},
		}},
	} {
		if err := env.Client.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), p) })
	}
	n := &corev1.Node{}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: names[1]}, n); err != nil {
		t.Fatal(err)
	}
	n.Labels = map[string]string{"role": "edge"}
	if err := env.Client.Update(ctx, n); err != nil {
		t.Fatal(err)
	}

	createService(t, "l2-elig-local", "web", local)
	updateService(t, "l2-elig-local", "web", func(svc *corev1.Service) {
		svc.Labels = map[string]string{"app": "local"}
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	})
	eps := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "l2-elig-local", Name: "web-1",
			Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.244.1.5"}, NodeName: ptr.To(names[1]), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
			{Addresses: []string{"10.244.0.5"}, NodeName: ptr.To(names[0]), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
		},
	}
	if err := env.Client.Create(ctx, eps); err != nil {
		t.Fatal(err)
	}

	createService(t, "l2-elig-edge", "web", edge)
	updateService(t, "l2-elig-edge", "web", func(svc *corev1.Service) { svc.Labels = map[string]string{"app": "edge"} })

	for _, vip := range []netip.Addr{local, edge} {
		waitNeighbour(t, cl, vip, mac(t, nodeNS[names[1]]), true)
	}
	waitAnnounced(t, "l2-elig-local", "web", fmt.Sprintf("%s by %s", local, names[1]))
	// eth1 is not selected: nothing answers there, although the node announces the address.
	if out, err := probe.Run("arping", "-c", "2", "-C", "1", "-w", "2", "-i", "eth0", "-S", "203.0.113.1", edge.String()); err == nil {
		t.Errorf("an interface the policy does not select answered for %s:\n%s", edge, out)
	}

	// When nobody may announce, the condition says why (it kept the last announcer before).
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(eps), eps); err != nil {
		t.Fatal(err)
	}
	eps.Endpoints[0].Conditions.Ready = ptr.To(false)
	if err := env.Client.Update(ctx, eps); err != nil {
		t.Fatal(err)
	}
	waitAnnouncedReason(t, "l2-elig-local", "web", speaker.ReasonNoReadyEndpoint)
	if err := env.Client.Get(ctx, client.ObjectKey{Name: names[1]}, n); err != nil {
		t.Fatal(err)
	}
	n.Labels[speaker.LabelExcludeFromLB] = ""
	if err := env.Client.Update(ctx, n); err != nil {
		t.Fatal(err)
	}
	waitAnnouncedReason(t, "l2-elig-edge", "web", speaker.ReasonExcluded)
	for _, vip := range []netip.Addr{local, edge} {
		if got := answering(cl, vip); len(got) > 0 {
			t.Errorf("%s: answered by %v, which no node may announce", vip, got)
		}
	}
}

// waitAnnouncedReason waits for a False Announced condition with this reason.
func waitAnnouncedReason(t *testing.T, ns, name, reason string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		svc := &corev1.Service{}
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, svc); err != nil {
			t.Fatal(err)
		}
		c := meta.FindStatusCondition(svc.Status.Conditions, speaker.ConditionAnnounced)
		if c != nil && c.Status == metav1.ConditionFalse && c.Reason == reason {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Announced condition = %+v, want False %s", c, reason)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// answering returns the MACs that answer ARP for vip on the client's eth0.
func answering(client *netns.NS, vip netip.Addr) map[string]bool {
	out, _ := client.Run("arping", "-c", "3", "-i", "eth0", "-S", "192.0.2.1", vip.String())
	macs := map[string]bool{}
	for f := range strings.FieldsSeq(strings.ToLower(out)) {
		if strings.Count(f, ":") == 5 {
			macs[f] = true
		}
	}
	return macs
}

// TestLayer2PartitionHeals: when the speakers cannot hear each other but clients reach both
// (heartbeats dropped), each believes the other dead and both answer: without a quorum, no
// design avoids that. When the partition heals, they must converge to exactly one answering
// node, the one the election picks.
func TestLayer2PartitionHeals(t *testing.T) {
	l := newLab(t, "br0")
	client := l.host("cl")
	l.join(client, "eth0", "br0", "192.0.2.1/24")
	names := []string{"l2-part-a", "l2-part-b"}
	nodeNS := map[string]*netns.NS{}
	for i, name := range names {
		nodeNS[name] = l.host(fmt.Sprintf("p%d", i))
		ip := fmt.Sprintf("192.0.2.%d", 31+i)
		l.join(nodeNS[name], "eth0", "br0", ip+"/24")
		node(t, name, ip, nodeNS[name])
	}
	createPolicy(t, "l2-partition", "eth0")
	vip := netip.MustParseAddr("192.0.2.130")
	createService(t, "l2-partition", "web", vip)
	winner, _ := l2.Announcer(vip, names)
	waitNeighbour(t, client, vip, mac(t, nodeNS[winner]), true)

	// Partition: every node drops incoming heartbeats.
	for _, name := range names {
		nodeNS[name].MustRun(t, "nft", "add table inet part; add chain inet part in { type filter hook input priority 0; }; add rule inet part in udp dport 7946 drop")
	}
	deadline := time.Now().Add(15 * time.Second)
	for len(answering(client, vip)) != 2 {
		if time.Now().After(deadline) {
			t.Fatal("during the partition the two nodes never both answered: the partition did not take")
		}
	}
	// Heal: exactly one node answers again, and it is the elected one.
	for _, name := range names {
		nodeNS[name].MustRun(t, "nft", "delete table inet part")
	}
	deadline = time.Now().Add(15 * time.Second)
	for {
		got := answering(client, vip)
		if len(got) == 1 && got[mac(t, nodeNS[winner])] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the partition healed, %v answer for %s; want only %s", got, vip, mac(t, nodeNS[winner]))
		}
	}
	waitNeighbour(t, client, vip, mac(t, nodeNS[winner]), false)
}

// TestLayer2ExternalIPs: with externalIPs on, a policy announces a Service's spec.externalIPs
// only inside its pools. Anybody who may create a Service writes that field: announcing
// any address there would let them take the gateway's address on the segment
// (CVE-2020-8554 carried onto layer 2). The gateway keeps its address, the address in the
// pool is announced, and the Service's condition and a Warning Event say what was refused.
func TestLayer2ExternalIPs(t *testing.T) {
	ctx := context.Background()
	l := newLab(t, "br0")
	cl, gw, n := l.host("cl"), l.host("gw"), l.host("ext")
	l.join(cl, "eth0", "br0", "192.0.2.1/24")
	l.join(gw, "eth0", "br0", "192.0.2.254/24")
	l.join(n, "eth0", "br0", "192.0.2.31/24")
	node(t, "l2-ext-a", "192.0.2.31", n)
	pool := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "l2-ext"}, Spec: v1.IPPoolSpec{
		Blocks: []v1.IPBlock{{Start: "192.0.2.150", Stop: "192.0.2.160"}}, AutoAssign: ptr.To(false)}}
	pol := &v1.L2Policy{ObjectMeta: metav1.ObjectMeta{Name: "l2-ext"}, Spec: v1.L2PolicySpec{
		Interfaces: []string{"eth0"}, ExternalIPs: true,
		ServiceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "ext"}}}}
	for _, o := range []client.Object{pool, pol} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), o) })
	}
	createService(t, "l2-ext", "web")
	updateService(t, "l2-ext", "web", func(svc *corev1.Service) {
		svc.Labels = map[string]string{"app": "ext"}
		svc.Spec.ExternalIPs = []string{"192.0.2.254", "192.0.2.150"}
	})

	inPool := netip.MustParseAddr("192.0.2.150")
	waitNeighbour(t, cl, inPool, mac(t, n), true)
	waitAnnounced(t, "l2-ext", "web", "not announced: 192.0.2.254 (spec.externalIPs: in no IPPool of L2Policy l2-ext)")
	got := answering(cl, netip.MustParseAddr("192.0.2.254"))
	if want := mac(t, gw); len(got) != 1 || !got[want] {
		t.Errorf("ARP for the gateway's address is answered by %v, want the gateway (%s) alone", got, want)
	}
	if !warningEvent(t, "l2-ext", "web", "192.0.2.254") {
		t.Error("no Warning Event on the Service names the refused external IP")
	}

	// A ClusterIP Service with an external IP, as in Cilium's layer 2 announcement example:
	// FerroLB allocates nothing for it, but the policy announces its external IP (kube-proxy
	// carries the traffic on the node), with the same pool rule.
	cip := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "l2-ext", Name: "cip", Labels: map[string]string{"app": "ext"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ExternalIPs: []string{"192.0.2.151"},
			Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}}
	if err := env.Client.Create(ctx, cip); err != nil {
		t.Fatal(err)
	}
	waitNeighbour(t, cl, netip.MustParseAddr("192.0.2.151"), mac(t, n), true)
	waitAnnounced(t, "l2-ext", "cip", "announced: 192.0.2.151 by l2-ext-a")
}

// warningEvent reports whether a Warning Event on the Service mentions s.
func warningEvent(t *testing.T, namespace, name, s string) bool {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var evs eventsv1.EventList
		if err := env.Client.List(context.Background(), &evs, client.InNamespace(namespace)); err != nil {
			t.Fatal(err)
		}
		for _, e := range evs.Items {
			if e.Regarding.Name == name && e.Type == corev1.EventTypeWarning && strings.Contains(e.Note, s) {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// updateService changes a Service as mutate says, on its latest version: the controller and
// the speakers write its status meanwhile (the Announced condition as soon as it has an
// address), so an update of an older read can conflict.
func updateService(t *testing.T, namespace, name string, mutate func(*corev1.Service)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		svc := &corev1.Service{}
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: name}, svc); err != nil {
			return err
		}
		mutate(svc)
		return env.Client.Update(context.Background(), svc)
	})
	if err != nil {
		t.Fatal(err)
	}
}
