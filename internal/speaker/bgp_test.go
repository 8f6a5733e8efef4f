package speaker_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	labfrr "github.com/ferrolb/ferrolb/internal/lab/frr"
	"github.com/ferrolb/ferrolb/internal/lab/netns"
	"github.com/ferrolb/ferrolb/internal/speaker"
)

// GoBGP opens its sockets from its own goroutines, so a speaker that runs BGP must run
// wholly inside its node's namespace (internal/bgp's helper_test.go explains why): the test
// binary, re-executed under `ip netns exec` with childEnv naming the node, runs
// speaker.Run there. It reaches the test's API server, which listens on the host's
// loopback, through netns.Forward.
const (
	childEnv       = "FERROLB_SPEAKER_CHILD"
	childKubconfig = "FERROLB_SPEAKER_KUBECONFIG"
	childStateDir  = "FERROLB_SPEAKER_STATE_DIR"
)

// childMetrics is where a child serves metrics, on its namespace's own loopback.
const childMetrics = "127.0.0.1:7474"

// scrape reads a child's metrics from inside its namespace.
func scrape(t *testing.T, ns *netns.NS) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	text, err := ns.Get(ctx, "http://"+childMetrics+"/metrics", 1<<24)
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// waitMetrics waits until every line of want is in the child's metrics.
func waitMetrics(t *testing.T, ns *netns.NS, want ...string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := scrape(t, ns)
		missing := slices.DeleteFunc(slices.Clone(want), func(w string) bool {
			return slices.Contains(strings.Split(got, "\n"), w)
		})
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics lack %q; have:\n%s", missing, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// metricValue is the value of the series named by series (name and labels).
func metricValue(t *testing.T, ns *netns.NS, series string) int {
	t.Helper()
	for _, l := range strings.Split(scrape(t, ns), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return n
		}
	}
	t.Fatalf("no series %s", series)
	return 0
}

// runChild is the child's main: the speaker, until SIGTERM.
func runChild() int {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr)))
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv(childKubconfig))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	err = speaker.Run(ctx, cfg, speaker.Options{
		NodeName: os.Getenv(childEnv), MetricsAddr: childMetrics, HealthAddr: "0", Namespace: "ferrolb-system",
		StateDir: os.Getenv(childStateDir), FallbackAfter: 2 * time.Second,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "speaker:", err)
		return 1
	}
	return 0
}

// childSpeaker is a speaker process inside a node namespace.
type childSpeaker struct {
	t      testing.TB
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan struct{}
}

func (c *childSpeaker) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stderr.Write(p)
}

// startChild registers node (with labels) and starts its speaker in ns; it stops when the
// test ends.
func startChild(t testing.TB, name, ip string, labels map[string]string, ns *netns.NS) *childSpeaker {
	t.Helper()
	registerNode(t, name, ip, labels)
	u, err := url.Parse(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	stopFwd, err := ns.Forward(context.Background(), u.Host, u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopFwd)
	return spawnChild(t, name, ns, "")
}

// spawnChild starts the speaker process of a registered node whose namespace reaches the
// API server (or should), with its state file in stateDir ("": none).
func spawnChild(t testing.TB, name string, ns *netns.NS, stateDir string) *childSpeaker {
	t.Helper()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := env.WriteKubeconfig(kubeconfig); err != nil {
		t.Fatal(err)
	}

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := &childSpeaker{t: t, cmd: ns.Command(exe), done: make(chan struct{})}
	c.cmd.Env = append(os.Environ(), childStateDir+"="+stateDir, childEnv+"="+name, childKubconfig+"="+kubeconfig)
	c.cmd.Stderr = c
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(c.stop)
	return c
}

// kill ends the speaker at once (SIGKILL): it sends no Cease, as when it crashes.
func (c *childSpeaker) kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
}

func (c *childSpeaker) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
		c.t.Error("speaker did not stop within 15s of SIGTERM; killed")
	}
	if c.t.Failed() {
		c.mu.Lock()
		c.t.Logf("speaker %s stderr:\n%s", c.cmd.Env[len(c.cmd.Env)-2], c.stderr.String())
		c.mu.Unlock()
	}
}

func bgpRouterConf(password string, v4nodes, v6nodes []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "frr defaults traditional\nhostname router\nlog stdout\n!\n")
	fmt.Fprintf(&b, "router bgp 64512\n bgp router-id 192.0.2.1\n no bgp ebgp-requires-policy\n")
	for _, n := range v4nodes {
		fmt.Fprintf(&b, " neighbor %s remote-as 64513\n neighbor %s password %s\n neighbor %s bfd\n neighbor %s bfd profile fast\n", n, n, password, n, n)
	}
	for _, n := range v6nodes {
		fmt.Fprintf(&b, " neighbor %s remote-as 64513\n", n)
	}
	// FRR helps a restarting peer by default (graceful restart helper mode).
	for _, af := range []struct {
		name  string
		nodes []string
	}{{"ipv4", v4nodes}, {"ipv6", v6nodes}} {
		fmt.Fprintf(&b, " address-family %s unicast\n  maximum-paths 4\n", af.name)
		for _, n := range af.nodes {
			fmt.Fprintf(&b, "  neighbor %s activate\n", n)
		}
		fmt.Fprintf(&b, " exit-address-family\n")
	}
	return b.String()
}

// waitNexthops waits until the router's kernel route for prefix goes via exactly want.
func waitNexthops(t testing.TB, router *netns.NS, prefix string, want ...string) time.Duration {
	t.Helper()
	start := time.Now()
	slices.Sort(want)
	deadline := start.Add(30 * time.Second)
	for {
		got, err := labfrr.KernelNexthops(router, prefix)
		slices.Sort(got)
		if err == nil && slices.Equal(got, want) {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("router's route for %s goes via %v (%v), want %v", prefix, got, err, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBGP runs two nodes' speakers against FRR: a dual-stack Service's addresses reach the
// router's kernel as ECMP routes over both nodes, over an MD5-signed IPv4 session with BFD
// and a plain IPv6 one, with the advertisement's community; with externalTrafficPolicy
// Local only the node with a ready endpoint advertises; cutting a node's traffic (carrier
// up) removes its next hop through BFD; deleting the Service withdraws its routes.
func TestBGP(t *testing.T) {
	ctx := context.Background()
	l := newLab(t, "br0")
	router := l.host("rt")
	l.join(router, "eth0", "br0", "192.0.2.1/24", "2001:db8::1/64")
	names := []string{"bgp-node-a", "bgp-node-b"}
	v4 := []string{"192.0.2.21", "192.0.2.22"}
	v6 := []string{"2001:db8::21", "2001:db8::22"}
	nodeNS := map[string]*netns.NS{}
	for i, name := range names {
		nodeNS[name] = l.host(fmt.Sprintf("bn%d", i))
		l.join(nodeNS[name], "eth0", "br0", v4[i]+"/24", v6[i]+"/64")
	}
	const password = "md5-s3cret"
	frr := labfrr.ForTest(t, router, bgpRouterConf(password, v4, v6))

	mustCreate := func(o client.Object) {
		t.Helper()
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), o) })
	}
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ferrolb-system"}}); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
	mustCreate(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ferrolb-system", Name: "bgp-md5"},
		Data: map[string][]byte{speaker.PasswordKey: []byte(password)}})
	mustCreate(&v1.BFDProfile{ObjectMeta: metav1.ObjectMeta{Name: "bgp-fast"},
		Spec: v1.BFDProfileSpec{ReceiveInterval: 100, TransmitInterval: 100, DetectMultiplier: 3}})
	testNodes := &metav1.LabelSelector{MatchLabels: map[string]string{"bgp-test": "true"}}
	hold, keepalive := metav1.Duration{Duration: 9 * time.Second}, metav1.Duration{Duration: 3 * time.Second}
	mustCreate(&v1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "router-v4"}, Spec: v1.BGPPeerSpec{
		PeerAddress: "192.0.2.1", PeerASN: 64512, LocalASN: 64513, NodeSelector: testNodes,
		HoldTime: &hold, KeepaliveTime: &keepalive,
		PasswordSecretRef: &v1.SecretReference{Name: "bgp-md5"}, BFDProfile: "bgp-fast",
	}})
	mustCreate(&v1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "router-v6"}, Spec: v1.BGPPeerSpec{
		PeerAddress: "2001:db8::1", PeerASN: 64512, LocalASN: 64513, NodeSelector: testNodes,
		HoldTime: &hold, KeepaliveTime: &keepalive,
		GracefulRestart: &v1.GracefulRestart{Enabled: true},
	}})
	// A peer whose MD5 Secret does not exist: no session, and its status says why.
	noSecret := &v1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "router-nosecret"}, Spec: v1.BGPPeerSpec{
		PeerAddress: "192.0.2.99", PeerASN: 64512, LocalASN: 64513, NodeSelector: testNodes,
		PasswordSecretRef: &v1.SecretReference{Name: "bgp-md5-missing"},
	}}
	mustCreate(noSecret)
	mustCreate(&v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "bgp-pool"}, Spec: v1.IPPoolSpec{
		Blocks: []v1.IPBlock{{CIDR: "198.51.100.0/24"}, {CIDR: "2001:db8:100::/64"}}}})
	mustCreate(&v1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "bgp-test"}, Spec: v1.BGPAdvertisementSpec{
		Pools: []string{"bgp-pool"}, Communities: []string{"64513:100"}}})

	children := map[string]*childSpeaker{}
	for i, name := range names {
		children[name] = startChild(t, name, v4[i], map[string]string{"bgp-test": "true"}, nodeNS[name])
	}
	vip4, vip6 := netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("2001:db8:100::10")
	createService(t, "bgp", "web", vip4, vip6)
	took := waitNexthops(t, router, "198.51.100.10/32", v4...)
	t.Logf("IPv4 ECMP route over both nodes %v after the Service", took)
	waitNexthops(t, router, "2001:db8:100::10/128", v6...)
	waitMetrics(t, nodeNS["bgp-node-b"],
		`ferrolb_bgp_session_up{bgppeer="router-v4",peer="192.0.2.1"} 1`, `ferrolb_bgp_session_up{bgppeer="router-v6",peer="2001:db8::1"} 1`,
		`ferrolb_bgp_advertised_prefixes{bgppeer="router-v4",peer="192.0.2.1"} 1`, `ferrolb_bgp_advertised_prefixes{bgppeer="router-v6",peer="2001:db8::1"} 1`,
		`ferrolb_bfd_session_up{bgppeer="router-v4",peer="192.0.2.1"} 1`)
	// One node says in the Service's Advertised condition which nodes send each address to
	// which BGPPeers (router-nosecret cannot be set up: nobody sends to it).
	waitCondition(t, "bgp", "web", speaker.ConditionAdvertised, metav1.ConditionTrue,
		"198.51.100.10 by bgp-node-a, bgp-node-b to router-v4", "2001:db8:100::10 by bgp-node-a, bgp-node-b to router-v6")
	// Each node reports its sessions in the BGPPeers' status.
	for _, c := range []struct{ peer, bfd string }{{"router-v4", "Up"}, {"router-v6", ""}} {
		waitPeerStatus(t, c.peer, func(st map[string]v1.BGPSessionStatus) string {
			for _, n := range names {
				e := st[n]
				if e.Session != "Established" || e.BFD != c.bfd || e.Advertised != 1 || e.LastTransitionTime.IsZero() {
					return fmt.Sprintf("%s: %+v, want Established, BFD %q, 1 prefix", n, e, c.bfd)
				}
			}
			return ""
		})
	}
	waitPeerStatus(t, "router-nosecret", func(st map[string]v1.BGPSessionStatus) string {
		for _, n := range names {
			if e := st[n]; e.Session != speaker.SessionNotConfigured || !strings.Contains(e.Message, "spec.passwordSecretRef") ||
				!strings.Contains(e.Message, "bgp-md5-missing") {
				return fmt.Sprintf("%s: %+v, want NotConfigured naming the field and the Secret", n, e)
			}
		}
		return ""
	})
	// A peer no longer meant for the nodes loses their entries.
	// (A merge patch of the spec: the speakers' status writes move the resourceVersion.)
	before := noSecret.DeepCopy()
	noSecret.Spec.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"bgp-test": "nobody"}}
	if err := env.Client.Patch(ctx, noSecret, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
	waitPeerStatus(t, "router-nosecret", func(st map[string]v1.BGPSessionStatus) string {
		if len(st) != 0 {
			return fmt.Sprintf("%+v, want no entries", st)
		}
		return ""
	})

	// FRR may signal BFD Down once at first establishment (before its BFD session is up):
	// that counts, so the cut below is measured from here.
	downBefore := metricValue(t, nodeNS["bgp-node-b"], `ferrolb_bfd_session_down_total{bgppeer="router-v4",peer="192.0.2.1"}`)
	rs, err := frr.Routes("198.51.100.10/32")
	if err != nil || len(rs) != 2 || rs[0].Community.String != "64513:100" || rs[1].Community.String != "64513:100" {
		t.Errorf("FRR's paths for 198.51.100.10/32: %+v %v; want two, each with community 64513:100", rs, err)
	}

	// externalTrafficPolicy Local: only the node with a ready endpoint advertises.
	createLocalService(t, "bgp-local", "web", "bgp-node-a", netip.MustParseAddr("198.51.100.11"), netip.MustParseAddr("2001:db8:100::11"))
	waitNexthops(t, router, "198.51.100.11/32", v4[0])
	waitNexthops(t, router, "2001:db8:100::11/128", v6[0])
	waitCondition(t, "bgp-local", "web", speaker.ConditionAdvertised, metav1.ConditionTrue,
		"advertised: 198.51.100.11 by bgp-node-a to router-v4; 2001:db8:100::11 by bgp-node-a to router-v6")

	// Node a's speaker crashes. The IPv6 session negotiated graceful restart: the router
	// keeps a's route, marked stale, until the speaker is back. The IPv4 session runs BFD,
	// whose Down FRR treats as a failure of the node, not of its control plane: that route
	// goes at once, which is what BFD is for.
	children["bgp-node-a"].kill()
	waitNexthops(t, router, "198.51.100.11/32")
	waitStale := func(want bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			rs, err := frr.Routes("2001:db8:100::11/128")
			if err == nil && len(rs) == 1 && rs[0].Stale == want && rs[0].Valid {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("FRR's paths for 2001:db8:100::11/128: %+v %v; want one, stale=%v", rs, err, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitStale(true)
	waitNexthops(t, router, "2001:db8:100::11/128", v6[0])
	children["bgp-node-a"] = spawnChild(t, "bgp-node-a", nodeNS["bgp-node-a"], "")
	waitStale(false)
	waitNexthops(t, router, "198.51.100.11/32", v4[0])
	waitNexthops(t, router, "2001:db8:100::11/128", v6[0])

	// Node b's traffic is cut with its carrier up: BFD (100 ms x 3) notices, FRR drops b's
	// next hop; the hold time (9 s) would take much longer.
	cut(t, nodeNS["bgp-node-b"])
	took = waitNexthops(t, router, "198.51.100.10/32", v4[0])
	t.Logf("node b's next hop removed %v after its traffic was cut", took)
	if took > 3*time.Second {
		t.Errorf("next hop removed after %v: BFD should take well under a second", took)
	}
	uncut(t, nodeNS["bgp-node-b"])
	waitNexthops(t, router, "198.51.100.10/32", v4...)
	waitMetrics(t, nodeNS["bgp-node-b"], `ferrolb_bfd_session_up{bgppeer="router-v4",peer="192.0.2.1"} 1`,
		fmt.Sprintf(`ferrolb_bfd_session_down_total{bgppeer="router-v4",peer="192.0.2.1"} %d`, downBefore+1))

	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "bgp", Name: "web"}}
	if err := env.Client.Delete(ctx, svc); err != nil {
		t.Fatal(err)
	}
	waitNexthops(t, router, "198.51.100.10/32")
	waitNexthops(t, router, "2001:db8:100::10/128")
	waitNexthops(t, router, "198.51.100.11/32", v4[0]) // the other Service stays

	// A speaker that stops takes its entries with it; the other node's stay.
	children["bgp-node-b"].stop()
	waitPeerStatus(t, "router-v6", func(st map[string]v1.BGPSessionStatus) string {
		if _, ok := st["bgp-node-b"]; ok || st["bgp-node-a"].Session != "Established" {
			return fmt.Sprintf("%+v, want only bgp-node-a's entry", st)
		}
		return ""
	})
}

// waitPeerStatus waits until check, given the BGPPeer's status entries by node, returns "".
func waitPeerStatus(t *testing.T, name string, check func(map[string]v1.BGPSessionStatus) string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var p v1.BGPPeer
		why := ""
		if err := env.Client.Get(context.Background(), client.ObjectKey{Name: name}, &p); err != nil {
			why = err.Error()
		} else {
			st := map[string]v1.BGPSessionStatus{}
			for _, e := range p.Status.Nodes {
				st[e.Node] = e
			}
			why = check(st)
		}
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("BGPPeer %s status: %s", name, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func cut(t *testing.T, ns *netns.NS) {
	t.Helper()
	ns.MustRun(t, "nft", "add", "table", "inet", "cut")
	ns.MustRun(t, "nft", "add", "chain", "inet", "cut", "in", "{ type filter hook input priority 0 ; policy drop ; }")
	ns.MustRun(t, "nft", "add", "chain", "inet", "cut", "out", "{ type filter hook output priority 0 ; policy drop ; }")
}

func uncut(t *testing.T, ns *netns.NS) {
	t.Helper()
	ns.MustRun(t, "nft", "delete", "table", "inet", "cut")
}

// createLocalService creates a Service with externalTrafficPolicy Local, its addresses in
// its status, and an EndpointSlice with one ready endpoint on node.
func createLocalService(t *testing.T, namespace, name, node string, vips ...netip.Addr) {
	t.Helper()
	ctx := context.Background()
	createService(t, namespace, name, vips...)
	updateService(t, namespace, name, func(svc *corev1.Service) {
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	})
	eps := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name + "-1",
			Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.244.0.5"}, NodeName: ptr.To(node),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
	}
	if err := env.Client.Create(ctx, eps); err != nil {
		t.Fatal(err)
	}
}

// waitCondition waits for a Service condition of this type and status whose message holds
// every one of want.
func waitCondition(t *testing.T, ns, name, typ string, status metav1.ConditionStatus, want ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		svc := &corev1.Service{}
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, svc); err != nil {
			t.Fatal(err)
		}
		c := meta.FindStatusCondition(svc.Status.Conditions, typ)
		if c != nil && c.Status == status && !slices.ContainsFunc(want, func(w string) bool { return !strings.Contains(c.Message, w) }) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s condition = %+v, want %s with %q", typ, c, status, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
