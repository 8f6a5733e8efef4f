package speaker_test

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/ferrolb/ferrolb/internal/datapath"
	"github.com/ferrolb/ferrolb/internal/datapath/inspect"
	"github.com/ferrolb/ferrolb/internal/lab/netns"
	"github.com/ferrolb/ferrolb/internal/speaker"
	"github.com/ferrolb/ferrolb/internal/testrun"
)

// TestDatapathXDP: with --datapath=xdp the speaker programs the node's XDP load balancer
// from Services and EndpointSlices, and it alone carries the traffic: the node namespace
// neither forwards nor holds the address, and runs no kube-proxy. A client's connections
// reach every ready backend (SNAT: replies come back through the node); a backend marked
// not ready stops getting new connections; the per-backend counters are exported.
func TestDatapathXDP(t *testing.T) {
	ctx := context.Background()
	l := newLab(t, "lan")
	client := l.host("dpc")
	nodeNS := l.host("dpn")
	l.join(client, "eth0", "lan", "10.77.0.100/24")
	nodePort := l.join(nodeNS, "eth0", "lan", "10.77.0.1/24")
	vip := netip.MustParseAddr("192.0.2.77")
	client.MustRun(t, "ip", "route", "add", vip.String()+"/32", "via", "10.77.0.1")
	idleVIP := netip.MustParseAddr("192.0.2.78") // a Service without endpoints
	client.MustRun(t, "ip", "route", "add", idleVIP.String()+"/32", "via", "10.77.0.1")
	// A local stack leaves partial checksums that XDP cannot fix up incrementally (a NIC
	// would deliver full ones): turn the offload off where packets start.
	client.MustRun(t, "ethtool", "-K", "eth0", "tx", "off")
	// XDP_TX into a veth needs an XDP program on its peer (a NIC needs nothing).
	xdpPass(t, l.sw, nodePort)
	nodeNS.MustRun(t, "sysctl", "-qw", "net.ipv4.ip_forward=0")

	var backends []string
	for i := 1; i <= 3; i++ {
		b := l.host(fmt.Sprintf("dpb%d", i))
		addr := fmt.Sprintf("10.77.0.%d", 10+i)
		l.join(b, "eth0", "lan", addr+"/24")
		b.MustRun(t, "ethtool", "-K", "eth0", "tx", "off")
		backends = append(backends, addr)
		name := fmt.Sprintf("backend-%d", i)
		if err := b.Do(func() error {
			ln, err := net.Listen("tcp", ":8080")
			if err != nil {
				return err
			}
			srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = io.WriteString(w, name)
			})}
			go func() { _ = srv.Serve(ln) }()
			t.Cleanup(func() { _ = srv.Close() })
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}

	// The Service, its address (as the controller would write it) and its endpoints.
	const namespace, name = "dp-xdp", "web"
	createService(t, namespace, name, vip)
	idle := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "idle"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer,
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}}
	if err := env.Client.Create(ctx, idle); err != nil {
		t.Fatal(err)
	}
	idle.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: idleVIP.String()}}
	if err := env.Client.Status().Update(ctx, idle); err != nil {
		t.Fatal(err)
	}
	eps := createReadySlice(t, namespace, name, 8080, backends...)

	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "dp-node"}}
	if err := env.Client.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), n) })
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.77.0.1"}}
	if err := env.Client.Status().Update(ctx, n); err != nil {
		t.Fatal(err)
	}
	// Before the speaker runs, nothing answers for the address.
	if got := get(client, vip); got != "" {
		t.Fatalf("before the datapath runs, %s answered %q", vip, got)
	}
	testrun.Background(t, "speaker dp-node", func(ctx context.Context) error {
		return speaker.Run(ctx, env.Config, speaker.Options{NodeName: "dp-node", MetricsAddr: "0", HealthAddr: "0",
			Netns: nodeNS.Do, Restartable: true, Datapath: datapath.XDP})
	})

	seen := waitBackends(t, client, vip, []string{"backend-1", "backend-2", "backend-3"})
	t.Logf("new connections reached %v", seen)

	// backend-2 is no longer ready: new connections go to the others only.
	eps.Endpoints[1].Conditions.Ready = ptr.To(false)
	if err := env.Client.Update(ctx, eps); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := map[string]int{}
		for range 30 {
			got[get(client, vip)]++
		}
		if got["backend-2"] == 0 && got["backend-1"] > 0 && got["backend-3"] > 0 && got[""] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after backend-2 turned not ready, 30 connections went to %v", got)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Nothing answers for the Service without endpoints: its packets go to the node's
	// stack, which neither holds the address nor forwards, counted as no-backend.
	if got := get(client, idleVIP); got != "" {
		t.Fatalf("%s without endpoints answered %q", idleVIP, got)
	}

	// The counters are exported per Service and backend.
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	perBackend := map[string]float64{}
	xdpMode := map[string]string{} // interface: mode, from ferrolb_datapath_xdp_mode
	for _, f := range families {
		if f.GetName() == "ferrolb_datapath_xdp_mode" {
			for _, m := range f.GetMetric() {
				xdpMode[m.GetLabel()[0].GetValue()] = m.GetLabel()[1].GetValue()
			}
		}
		if f.GetName() != "ferrolb_datapath_packets_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["service"] != namespace+"/"+name || labels["address"] != vip.String() || labels["port"] != "80" {
				continue
			}
			if labels["backend"] == "" {
				total = m.GetCounter().GetValue()
			} else {
				perBackend[labels["backend"]] = m.GetCounter().GetValue()
			}
		}
	}
	if total == 0 || perBackend["10.77.0.11:8080"] == 0 || perBackend["10.77.0.13:8080"] == 0 {
		t.Fatalf("ferrolb_datapath_packets_total: service total %v, per backend %v", total, perBackend)
	}
	// The default mode, auto, chose native on the veth.
	if !maps.Equal(xdpMode, map[string]string{"eth0": "native"}) {
		t.Errorf("ferrolb_datapath_xdp_mode: %v, want eth0 native", xdpMode)
	}
	// Every reason of the packets not forwarded has its series, from the start; the
	// connection to the Service without endpoints counted.
	reasons, noBackend := map[string]int{}, 0.0
	for _, f := range families {
		if n := f.GetName(); n == "ferrolb_datapath_packets_passed_total" || n == "ferrolb_datapath_packets_dropped_total" {
			reasons[n] = len(f.GetMetric())
			for _, m := range f.GetMetric() {
				if m.GetLabel()[0].GetValue() == "no-backend" {
					noBackend = m.GetCounter().GetValue()
				}
			}
		}
	}
	if reasons["ferrolb_datapath_packets_passed_total"] != 8 || reasons["ferrolb_datapath_packets_dropped_total"] != 2 || noBackend == 0 {
		t.Fatalf("series of the packets not forwarded: %v; no-backend %v", reasons, noBackend)
	}

	checkInspect(t, nodeNS, vip, namespace+"/"+name, idleVIP)
}

// checkInspect reads the speaker's datapath as `ferrolb inspect` does, over its socket in
// the node's namespace: the Service by name with its backends (backend-2 not ready:
// draining), their Maglev entries adding up to the table, the client's flows.
func checkInspect(t *testing.T, nodeNS *netns.NS, vip netip.Addr, name string, idleVIP netip.Addr) {
	t.Helper()
	ctx := context.Background()
	c := inspect.NewClient("").Within(nodeNS.Do)
	o, err := c.Overview(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	if err := inspect.WriteOverview(&text, "text", o); err != nil {
		t.Fatal(err)
	}
	t.Logf("ferrolb inspect:\n%s", text.String())
	if !slices.Equal(o.Interfaces, []inspect.Interface{{Name: "eth0", XDPMode: "native"}}) {
		t.Errorf("interfaces: %+v, want eth0 native", o.Interfaces)
	}
	// The package's other tests leave Services of their own in the API server: look for
	// this test's two by address.
	web := slices.IndexFunc(o.Services, func(s inspect.Service) bool { return s.Address == vip.String() })
	idle := slices.IndexFunc(o.Services, func(s inspect.Service) bool { return s.Address == idleVIP.String() })
	if web < 0 || idle < 0 || o.Services[web].Name != name || o.Services[web].Packets == 0 ||
		len(o.Services[idle].Backends) != 0 || o.Services[idle].TableSize != 0 {
		t.Fatalf("services: %+v", o.Services)
	}
	for _, r := range o.Reasons {
		if (r.Reason == "no-backend") != (r.Packets > 0) {
			t.Errorf("%s: %d packets", r.Reason, r.Packets)
		}
	}
	s, err := c.Service(ctx, inspect.ServiceKey{VIP: vip, Port: 80, Proto: datapath.TCP})
	if err != nil {
		t.Fatal(err)
	}
	text.Reset()
	if err := inspect.WriteService(&text, "text", s); err != nil {
		t.Fatal(err)
	}
	t.Logf("ferrolb inspect service %s:80/TCP:\n%s", vip, text.String())
	entries, draining := 0, []string{}
	for _, b := range s.Backends {
		entries += b.MaglevEntries
		if b.Draining {
			draining = append(draining, b.Address)
		}
	}
	if s.TableSize == 0 || entries != s.TableSize || len(s.Backends) != 3 || !slices.Equal(draining, []string{"10.77.0.12:8080"}) ||
		s.Flows == nil || *s.Flows == 0 {
		t.Fatalf("service: %+v, entries add up to %d, draining %v", s, entries, draining)
	}
	ct, err := c.Conntrack(ctx, inspect.Query{Client: netip.MustParseAddr("10.77.0.100"), Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	text.Reset()
	if err := inspect.WriteConntrack(&text, "text", ct); err != nil {
		t.Fatal(err)
	}
	t.Logf("ferrolb inspect conntrack --client 10.77.0.100 --limit 5:\n%s", text.String())
	if ct.Matched == 0 || ct.Matched != ct.IPv4Entries || len(ct.Flows) != min(5, ct.Matched) {
		t.Fatalf("the client's flows: %+v", ct)
	}
	if ct, err := c.Conntrack(ctx, inspect.Query{Client: netip.MustParseAddr("10.77.0.99")}); err != nil || ct.Matched != 0 {
		t.Fatalf("another client's flows: %+v, %v", ct, err)
	}
}

// get makes one HTTP request to vip:80 from ns on a new connection and returns the body,
// or "" on failure.
func get(ns *netns.NS, vip netip.Addr) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	body, _ := ns.Get(ctx, "http://"+net.JoinHostPort(vip.String(), "80")+"/", 4096)
	return strings.TrimSpace(body)
}

// waitBackends makes new connections until each of want has answered.
func waitBackends(t *testing.T, ns *netns.NS, vip netip.Addr, want []string) []string {
	t.Helper()
	var seen []string
	deadline := time.Now().Add(15 * time.Second)
	for {
		if got := get(ns, vip); got != "" && !slices.Contains(seen, got) {
			seen = append(seen, got)
		}
		if len(seen) == len(want) {
			slices.Sort(seen)
			return seen
		}
		if time.Now().After(deadline) {
			t.Fatalf("connections to %s reached %v, want %v", vip, seen, want)
		}
	}
}

// xdpPass attaches an XDP program that passes every packet to ifname in ns, for the
// kernel's veth to accept frames another XDP program sends it with XDP_TX.
func xdpPass(t *testing.T, ns *netns.NS, ifname string) {
	t.Helper()
	pass, err := ns.XDPPass(ifname)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pass.Close() })
}

// createReadySlice creates the EndpointSlice of Service namespace/name: its unnamed TCP
// port is port on every one of the IPv4 addrs, all ready. It returns the slice as created.
func createReadySlice(t *testing.T, namespace, name string, port int32, addrs ...string) *discoveryv1.EndpointSlice {
	t.Helper()
	eps := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: namespace, Name: name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(""), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for _, a := range addrs {
		eps.Endpoints = append(eps.Endpoints, discoveryv1.Endpoint{Addresses: []string{a},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	if err := env.Client.Create(context.Background(), eps); err != nil {
		t.Fatal(err)
	}
	return eps
}
