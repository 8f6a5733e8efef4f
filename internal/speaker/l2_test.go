package speaker_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/kubetest"
	"github.com/ferrolb/ferrolb/internal/l2"
	"github.com/ferrolb/ferrolb/internal/lab/netns"
	"github.com/ferrolb/ferrolb/internal/speaker"
)

var env *kubetest.Env

func TestMain(m *testing.M) {
	var err error
	env, err = kubetest.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

// segment is one Ethernet segment: a bridge in a switch namespace, with a client and nodes.
type segment struct {
	t      *testing.T
	sw     *netns.NS
	client *netns.NS
	ports  int
}

func newSegment(t *testing.T) *segment {
	sw := netns.ForTest(t, "sw")
	sw.MustRun(t, "ip", "link", "add", "br0", "type", "bridge")
	sw.MustRun(t, "ip", "link", "set", "br0", "up")
	s := &segment{t: t, sw: sw}
	s.client = s.attach("cl", "192.0.2.1/24", "2001:db8::1/64")
	return s
}

// attach adds a namespace with eth0 on the bridge and the given addresses.
func (s *segment) attach(prefix string, addrs ...string) *netns.NS {
	ns := netns.ForTest(s.t, prefix)
	// Interfaces copy the default settings when created: no duplicate address detection delay.
	ns.MustRun(s.t, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")
	s.ports++
	port := fmt.Sprintf("sw%d", s.ports)
	if err := netns.Veth(ns, "eth0", s.sw, port); err != nil {
		s.t.Fatal(err)
	}
	s.sw.MustRun(s.t, "ip", "link", "set", port, "master", "br0")
	for _, a := range addrs {
		ns.MustRun(s.t, "ip", "addr", "add", a, "dev", "eth0")
	}
	return ns
}

func mac(t *testing.T, ns *netns.NS) string {
	return strings.TrimSpace(ns.MustRun(t, "cat", "/sys/class/net/eth0/address"))
}

// node registers a Node object and runs its speaker, with sockets in ns, until stop.
func node(t *testing.T, name, ip string, ns *netns.NS) (stop func()) {
	t.Helper()
	ctx := context.Background()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := env.Client.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}
	if err := env.Client.Status().Update(ctx, n); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), n) })
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- speaker.Run(runCtx, env.Config, speaker.Options{
			NodeName: name, MetricsAddr: "0", HealthAddr: "0", Netns: ns.Do, Restartable: true,
		})
	}()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("speaker %s: %v", name, err)
		}
	}
	t.Cleanup(stop)
	return stop
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
	ctx := context.Background()
	seg := newSegment(t)
	nodeNS := map[string]*netns.NS{
		"l2-node-a": seg.attach("na", "192.0.2.11/24"),
		"l2-node-b": seg.attach("nb", "192.0.2.12/24"),
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "l2-failover"}}
	if err := env.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	pol := &v1.L2Policy{ObjectMeta: metav1.ObjectMeta{Name: "l2-failover"}, Spec: v1.L2PolicySpec{Interfaces: []string{"eth0"}}}
	if err := env.Client.Create(ctx, pol); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), pol) })
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "web"},
		Spec: corev1.ServiceSpec{
			Type:           corev1.ServiceTypeLoadBalancer,
			IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicyPreferDualStack),
			Ports:          []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
		},
	}
	if err := env.Client.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	v4, v6 := netip.MustParseAddr("192.0.2.100"), netip.MustParseAddr("2001:db8::100")
	// The controller's part, written directly: this test is about the speaker.
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: v4.String()}, {IP: v6.String()}}
	if err := env.Client.Status().Update(ctx, svc); err != nil {
		t.Fatal(err)
	}

	stops := map[string]func(){}
	for name, ip := range map[string]string{"l2-node-a": "192.0.2.11", "l2-node-b": "192.0.2.12"} {
		stops[name] = node(t, name, ip, nodeNS[name])
	}
	both := []string{"l2-node-a", "l2-node-b"}
	for _, vip := range []netip.Addr{v4, v6} {
		winner, _ := l2.Announcer(vip, both)
		waitNeighbour(t, seg.client, vip, mac(t, nodeNS[winner]), true)
	}
	first, _ := l2.Announcer(v4, both)
	waitAnnounced(t, ns.Name, svc.Name, fmt.Sprintf("%s by %s (layer 2 on eth0)", v4, first))

	// The announcer of the IPv4 address dies; the other node takes both addresses, and the
	// client's existing entries move to it without waiting for them to expire.
	stops[first]()
	survivor := both[0]
	if survivor == first {
		survivor = both[1]
	}
	for _, vip := range []netip.Addr{v4, v6} {
		waitNeighbour(t, seg.client, vip, mac(t, nodeNS[survivor]), false)
	}
	waitAnnounced(t, ns.Name, svc.Name, fmt.Sprintf("%s by %s (layer 2 on eth0)", v4, survivor))
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
