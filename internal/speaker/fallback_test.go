package speaker_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/l2"
	labfrr "github.com/ferrolb/ferrolb/internal/lab/frr"
	"github.com/ferrolb/ferrolb/internal/lab/netns"
	"github.com/ferrolb/ferrolb/internal/speaker"
	"github.com/ferrolb/ferrolb/internal/testrun"
)

// apiProxy relays TCP to the test's API server from a port of its own on the host's
// loopback, so that one speaker can lose the API server while the others keep it. Cut closes
// the listener and every relayed connection (new ones are refused, as when the API server or
// its load balancer is down); Restore listens again on the same port.
type apiProxy struct {
	t      testing.TB
	addr   string
	target string

	mu    sync.Mutex
	l     net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newAPIProxy(t testing.TB) *apiProxy {
	t.Helper()
	u, err := url.Parse(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	p := &apiProxy{t: t, addr: "127.0.0.1:0", target: u.Host, conns: map[net.Conn]struct{}{}}
	p.Restore()
	t.Cleanup(p.Cut)
	return p
}

// config is the test API server's, reached through the proxy. The serving certificate
// names 127.0.0.1, whatever the port.
func (p *apiProxy) config() *rest.Config {
	c := rest.CopyConfig(env.Config)
	c.Host = "https://" + p.addr
	return c
}

func (p *apiProxy) Restore() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l != nil {
		return
	}
	l, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.l, p.addr = l, l.Addr().String()
	p.wg.Go(func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.relay(in) })
		}
	})
}

func (p *apiProxy) relay(in net.Conn) {
	out, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = in.Close()
		return
	}
	p.mu.Lock()
	if p.l == nil { // cut meanwhile
		p.mu.Unlock()
		_, _ = in.Close(), out.Close()
		return
	}
	p.conns[in], p.conns[out] = struct{}{}, struct{}{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range [][2]net.Conn{{in, out}, {out, in}} {
		wg.Go(func() {
			_, _ = io.Copy(c[0], c[1])
			_, _ = c[0].Close(), c[1].Close()
		})
	}
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, in)
	delete(p.conns, out)
	p.mu.Unlock()
}

func (p *apiProxy) Cut() {
	p.mu.Lock()
	if p.l != nil {
		_ = p.l.Close()
		p.l = nil
	}
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// registerNode creates a Node with an InternalIP, deleted when the test ends.
func registerNode(t testing.TB, name, ip string, labels map[string]string) {
	t.Helper()
	ctx := context.Background()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if err := env.Client.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}
	if err := env.Client.Status().Update(ctx, n); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), n) })
}

// stateHas waits until the state file in dir mentions s (has is true) or does not. It waits
// up to 90 s: after the API server comes back, a speaker's informers reconnect with
// client-go's backoff (up to 30 s, doubled by jitter), and only then does its file follow.
func stateHas(t *testing.T, dir, s string, has bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "speaker.json"))
		if err == nil && strings.Contains(string(b), `"`+s+`"`) == has {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("state file in %s: %s (%v); want it to mention %s: %v", dir, b, err, s, has)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// onlyAnswer waits until exactly want answers ARP for vip (over three requests), then checks
// it again: the steady state, not a hand-over's moment.
func onlyAnswer(t *testing.T, client *netns.NS, vip netip.Addr, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for ok := 0; ok < 2; {
		macs := answering(client, vip)
		switch {
		case len(macs) == 1 && macs[want]:
			ok++
		case ok > 0:
			t.Fatalf("arping for %s answered by %v after it was answered by %s alone", vip, macs, want)
		case time.Now().After(deadline):
			t.Fatalf("arping for %s answered by %v, want only %s", vip, macs, want)
		}
	}
}

// TestLayer2RestartWithoutAPIServer: speakers that lose the API server keep answering from
// their caches; speakers that restart while it is unreachable answer from their state files,
// where exactly one node (the elected one) answers and the election still follows the
// heartbeats; when the API server is back the reconcile takes over and the file follows
// it. Without the state file both restarted speakers stop at their Node's fetch and the
// address has no answer.
func TestLayer2RestartWithoutAPIServer(t *testing.T) {
	l := newLab(t, "br0")
	client := l.host("cl")
	l.join(client, "eth0", "br0", "192.0.2.1/24")
	names := []string{"l2-off-a", "l2-off-b"}
	nodeNS, proxy, dir, stop := map[string]*netns.NS{}, map[string]*apiProxy{}, map[string]string{}, map[string]func(){}
	for i, name := range names {
		nodeNS[name] = l.host(fmt.Sprintf("o%d", i))
		ip := fmt.Sprintf("192.0.2.%d", 41+i)
		l.join(nodeNS[name], "eth0", "br0", ip+"/24")
		registerNode(t, name, ip, nil)
		proxy[name], dir[name] = newAPIProxy(t), t.TempDir()
	}
	start := func(name string) {
		stop[name] = testrun.Background(t, "speaker "+name, func(ctx context.Context) error {
			return speaker.Run(ctx, proxy[name].config(), speaker.Options{
				NodeName: name, MetricsAddr: "0", HealthAddr: "0", Netns: nodeNS[name].Do, Restartable: true,
				MemberKey: memberKey, StateDir: dir[name], FallbackAfter: time.Second,
			})
		})
	}
	createPolicy(t, "l2-offline", "eth0")
	vip := netip.MustParseAddr("192.0.2.140")
	createService(t, "l2-offline", "web", vip)
	for _, name := range names {
		start(name)
	}
	winner, _ := l2.Announcer(vip, names)
	other := names[0]
	if other == winner {
		other = names[1]
	}
	waitNeighbour(t, client, vip, mac(t, nodeNS[winner]), true)
	onlyAnswer(t, client, vip, mac(t, nodeNS[winner]))
	for _, name := range names {
		stateHas(t, dir[name], vip.String(), true)
	}

	// The API server becomes unreachable: running speakers keep what their caches hold.
	for _, name := range names {
		proxy[name].Cut()
	}
	onlyAnswer(t, client, vip, mac(t, nodeNS[winner]))

	// Both speakers restart while it is unreachable (the client forgets the address, so the
	// answer it gets is from now).
	for _, name := range names {
		stop[name]()
	}
	client.MustRun(t, "ip", "neigh", "flush", "dev", "eth0")
	for _, name := range names {
		start(name)
	}
	began := time.Now()
	waitNeighbour(t, client, vip, mac(t, nodeNS[winner]), true)
	t.Logf("both speakers restarted without the API server; the client resolves %s to %s after %v", vip, winner, time.Since(began))
	onlyAnswer(t, client, vip, mac(t, nodeNS[winner]))

	// The election runs on the heartbeats: the winner's speaker stops, the other takes over.
	stop[winner]()
	waitNeighbour(t, client, vip, mac(t, nodeNS[other]), false)
	onlyAnswer(t, client, vip, mac(t, nodeNS[other]))

	// The API server is back: the reconciles take over, a change reaches the nodes and the
	// files follow it.
	for _, name := range names {
		proxy[name].Restore()
	}
	start(winner)
	waitNeighbour(t, client, vip, mac(t, nodeNS[winner]), false)
	if err := env.Client.Delete(context.Background(), &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "l2-offline", Name: "web"}}); err != nil {
		t.Fatal(err)
	}
	// The other speaker's informers retry with client-go's backoff (up to 30 s, doubled by
	// jitter) since the cut.
	deadline := time.Now().Add(90 * time.Second)
	for len(answering(client, vip)) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the deleted Service's address is still answered")
		}
	}
	for _, name := range names {
		stateHas(t, dir[name], vip.String(), false)
	}
}

// TestBGPRestartWithoutAPIServer: a speaker killed while the API server is unreachable, and
// started again before it is back, sends its paths again from its state file: the router,
// which kept the route stale (graceful restart), gets it fresh with End-of-RIB, and traffic
// never loses it. Without the state file the speaker cannot start and the route stays stale
// until the restart time runs out (then it is withdrawn). When the API server is back, the
// reconcile takes over: a deleted Service's route is withdrawn.
func TestBGPRestartWithoutAPIServer(t *testing.T) {
	ctx := context.Background()
	l := newLab(t, "br0")
	router := l.host("rt")
	l.join(router, "eth0", "br0", "192.0.2.1/24", "2001:db8::1/64")
	const name, v4, v6 = "bgp-off-a", "192.0.2.51", "2001:db8::51"
	ns := l.host("bo")
	l.join(ns, "eth0", "br0", v4+"/24", v6+"/64")
	frr := labfrr.ForTest(t, router, bgpRouterConf("", nil, []string{v6}))
	mustCreate := func(o client.Object) {
		t.Helper()
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), o) })
	}
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"bgp-offline": "true"}}
	mustCreate(&v1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "router-offline"}, Spec: v1.BGPPeerSpec{
		PeerAddress: "2001:db8::1", PeerASN: 64512, LocalASN: 64513, NodeSelector: sel,
		HoldTime: &metav1.Duration{Duration: 9 * time.Second}, KeepaliveTime: &metav1.Duration{Duration: 3 * time.Second},
		GracefulRestart: &v1.GracefulRestart{Enabled: true},
	}})
	mustCreate(&v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "bgp-offline"}, Spec: v1.IPPoolSpec{
		Blocks: []v1.IPBlock{{CIDR: "2001:db8:200::/64"}}}})
	mustCreate(&v1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "bgp-offline"}, Spec: v1.BGPAdvertisementSpec{
		Pools: []string{"bgp-offline"}, NodeSelector: sel}})
	registerNode(t, name, v4, map[string]string{"bgp-offline": "true"})
	u, err := url.Parse(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	relay := func() func() {
		stop, err := ns.Forward(context.Background(), u.Host, u.Host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
		return stop
	}
	cutAPI := relay()
	dir := t.TempDir()
	child := spawnChild(t, name, ns, dir)
	vip := netip.MustParseAddr("2001:db8:200::20")
	createService(t, "bgp-offline", "web", vip)
	prefix := vip.String() + "/128"
	waitNexthops(t, router, prefix, v6)
	stateHas(t, dir, prefix, true)
	stale := func(want bool, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			rs, err := frr.Routes(prefix)
			if err == nil && len(rs) == 1 && rs[0].Valid && rs[0].Stale == want {
				return time.Since(start)
			}
			if time.Since(start) > within {
				t.Fatalf("FRR's paths for %s: %+v %v; want one, stale=%v", prefix, rs, err, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// The API server becomes unreachable and the speaker crashes: the router keeps the
	// route, stale.
	cutAPI()
	child.kill()
	stale(true, 15*time.Second)
	spawnChild(t, name, ns, dir) // stopped when the test ends
	took := stale(false, 20*time.Second)
	t.Logf("restarted without the API server; the router has the route fresh again after %v", took)
	waitNexthops(t, router, prefix, v6)

	// The API server is back: the reconcile takes over (once the informers' backoff lets them
	// try again) and a deleted Service's route goes.
	relay()
	if err := env.Client.Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "bgp-offline", Name: "web"}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		nh, err := labfrr.KernelNexthops(router, prefix)
		if err == nil && len(nh) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("route for the deleted Service's %s still via %v (%v)", prefix, nh, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	stateHas(t, dir, prefix, false)
}
