package speaker_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"iter"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/ferrolb/ferrolb/internal/datapath"
	"github.com/ferrolb/ferrolb/internal/lab/netns"
	"github.com/ferrolb/ferrolb/internal/speaker"
	"github.com/ferrolb/ferrolb/internal/testrun"
)

// TestDatapathHealthCheck: a Service with ferrolb.io/health-check, carried by the XDP
// datapath to three backends. When a backend stops answering its check, new connections
// stop going to it within 3 intervals, while a connection established to it before keeps
// working (it still answers there); when it answers again, it is back after the healthy
// threshold. Twice: an HTTP check whose health endpoint hangs (accepts, never answers), and
// a TCP check of a backend whose SYNs are dropped (nftables).
func TestDatapathHealthCheck(t *testing.T) {
	const interval = 2 * time.Second
	ctx := context.Background()
	l := &lab{t: t, sw: netns.ForTest(t, "flh-sw")}
	l.sw.MustRun(t, "ip", "link", "add", "lan", "type", "bridge")
	l.sw.MustRun(t, "ip", "link", "set", "lan", "up")
	client := l.host("flh-c")
	nodeNS := l.host("flh-n")
	l.join(client, "eth0", "lan", "10.78.0.100/24")
	nodePort := l.join(nodeNS, "eth0", "lan", "10.78.0.1/24")
	vip := netip.MustParseAddr("192.0.2.91")
	client.MustRun(t, "ip", "route", "add", vip.String()+"/32", "via", "10.78.0.1")
	client.MustRun(t, "ethtool", "-K", "eth0", "tx", "off")
	xdpPass(t, l.sw, nodePort)
	nodeNS.MustRun(t, "sysctl", "-qw", "net.ipv4.ip_forward=0")

	// Three backends; each answers its name on /, and 200 on /healthz unless told to hang
	// there (accept the request and never answer, as a backend stuck on a dependency).
	var (
		backends []*netns.NS
		addrs    []string
		hang     [3]atomic.Bool
	)
	release := make(chan struct{})
	for i := range 3 {
		b := l.host(fmt.Sprintf("flh-b%d", i+1))
		addr := fmt.Sprintf("10.78.0.%d", 11+i)
		l.join(b, "eth0", "lan", addr+"/24")
		b.MustRun(t, "ethtool", "-K", "eth0", "tx", "off")
		backends, addrs = append(backends, b), append(addrs, addr)
		name := fmt.Sprintf("backend-%d", i+1)
		if err := b.Do(func() error {
			ln, err := net.Listen("tcp", ":8080")
			if err != nil {
				return err
			}
			srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/healthz" && hang[i].Load() {
					select {
					case <-r.Context().Done():
					case <-release:
					}
					return
				}
				_, _ = io.WriteString(w, name)
			})}
			go func() { _ = srv.Serve(ln) }()
			t.Cleanup(func() { _ = srv.Close() })
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})

	const namespace, name = "flh-health", "web"
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Annotations: map[string]string{
			"ferrolb.io/health-check": "http", "ferrolb.io/health-check-path": "/healthz",
			"ferrolb.io/health-check-interval": interval.String(), "ferrolb.io/health-check-timeout": "300ms",
		}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer,
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}},
	}
	if err := env.Client.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: vip.String()}}
	if err := env.Client.Status().Update(ctx, svc); err != nil {
		t.Fatal(err)
	}
	createReadySlice(t, namespace, name, 8080, addrs...)
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "flh-node"}}
	if err := env.Client.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), n) })
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.78.0.1"}}
	if err := env.Client.Status().Update(ctx, n); err != nil {
		t.Fatal(err)
	}
	testrun.Background(t, "speaker flh-node", func(ctx context.Context) error {
		return speaker.Run(ctx, env.Config, speaker.Options{NodeName: "flh-node", MetricsAddr: "0", HealthAddr: "0",
			Netns: nodeNS.Do, Restartable: true, Datapath: datapath.XDP, InspectSocket: "0"})
	})
	waitBackends(t, client, vip, []string{"backend-1", "backend-2", "backend-3"})

	// HTTP: backend-2's health endpoint hangs; it still answers on /.
	held := holdConnection(t, client, vip, "backend-2")
	hang[1].Store(true)
	detected := waitWithout(t, client, vip, "backend-2", interval)
	t.Logf("http check, health endpoint hangs: new connections avoid backend-2 %v after it stopped answering (interval %v, timeout 300ms, unhealthy threshold 2)",
		detected.Round(time.Millisecond), interval)
	if detected > 3*interval {
		t.Errorf("detected after %v, more than 3 intervals (%v)", detected, 3*interval)
	}
	for range 3 {
		if got, err := held.get(); got != "backend-2" {
			t.Fatalf("the connection established to backend-2 before: %q, %v", got, err)
		}
	}
	if h := healthy(t, namespace+"/"+name); h["10.78.0.12:8080"] != 0 || h["10.78.0.11:8080"] != 1 || h["10.78.0.13:8080"] != 1 {
		t.Errorf("ferrolb_datapath_backend_healthy: %v", h)
	}
	hang[1].Store(false)
	close(release)
	back := waitBack(t, client, vip, "backend-2")
	t.Logf("http check: backend-2 gets new connections again %v after it answers (healthy threshold 2)", back.Round(time.Millisecond))
	held.close()

	// TCP: backend-3's SYNs are dropped; its established connection goes on.
	updateService(t, namespace, name, func(s *corev1.Service) {
		s.Annotations["ferrolb.io/health-check"] = "tcp"
		delete(s.Annotations, "ferrolb.io/health-check-path")
	})
	// The speaker has read the change once it makes TCP probes.
	for deadline := time.Now().Add(3 * interval); probes(t, "tcp", "success") < 3; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no TCP probes %v after the Service asked for them", 3*interval)
		}
	}
	held = holdConnection(t, client, vip, "backend-3")
	defer held.close()
	backends[2].MustRun(t, "nft", "add", "table", "inet", "flh")
	backends[2].MustRun(t, "nft", "add", "chain", "inet", "flh", "input", "{ type filter hook input priority 0 ; }")
	backends[2].MustRun(t, "nft", "add", "rule", "inet", "flh", "input", "tcp", "dport", "8080", "tcp", "flags", "&", "(syn|ack)", "==", "syn", "drop")
	detected = waitWithout(t, client, vip, "backend-3", interval)
	t.Logf("tcp check, SYNs dropped: new connections avoid backend-3 %v after it stopped answering", detected.Round(time.Millisecond))
	if detected > 3*interval {
		t.Errorf("detected after %v, more than 3 intervals (%v)", detected, 3*interval)
	}
	for range 3 {
		if got, err := held.get(); got != "backend-3" {
			t.Fatalf("the connection established to backend-3 before its SYNs were dropped: %q, %v", got, err)
		}
	}
	backends[2].MustRun(t, "nft", "delete", "table", "inet", "flh")
	back = waitBack(t, client, vip, "backend-3")
	t.Logf("tcp check: backend-3 gets new connections again %v after it answers", back.Round(time.Millisecond))
}

// quickGet is get with a short timeout, so that connections to a backend whose SYNs are
// dropped fail fast.
func quickGet(ns *netns.NS, vip netip.Addr) string {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	body, _ := ns.Get(ctx, "http://"+net.JoinHostPort(vip.String(), "80")+"/", 4096)
	return strings.TrimSpace(body)
}

// waitWithout makes new connections until 30 in a row reach a backend other than gone, and
// returns the time from the call to the start of that run (a connection that fails or
// reaches gone before it means gone was still in).
func waitWithout(t *testing.T, client *netns.NS, vip netip.Addr, gone string, interval time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var runStart time.Time
	run := 0
	for run < 30 {
		if time.Since(start) > 10*interval {
			t.Fatalf("new connections still reach %s (or fail) %v after it stopped answering", gone, time.Since(start))
		}
		at := time.Now()
		if got := quickGet(client, vip); got == "" || got == gone {
			run = 0
			continue
		}
		if run == 0 {
			runStart = at
		}
		run++
	}
	return runStart.Sub(start)
}

// waitBack makes new connections until one reaches back, and returns how long it took.
func waitBack(t *testing.T, client *netns.NS, vip netip.Addr, back string) time.Duration {
	t.Helper()
	start := time.Now()
	for quickGet(client, vip) != back {
		if time.Since(start) > 20*time.Second {
			t.Fatalf("no new connection reached %s 20 s after it answers again", back)
		}
	}
	return time.Since(start)
}

// heldConn is a keep-alive HTTP connection from the client to the Service: one flow, on
// one backend, for as long as it is open.
type heldConn struct {
	conn net.Conn
	r    *bufio.Reader
	host string
}

// holdConnection opens connections to vip:80 until one is answered by want, and keeps it.
func holdConnection(t *testing.T, client *netns.NS, vip netip.Addr, want string) *heldConn {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		var conn net.Conn
		if err := client.Do(func() (err error) {
			conn, err = net.DialTimeout("tcp", net.JoinHostPort(vip.String(), "80"), time.Second)
			return err
		}); err != nil {
			continue
		}
		h := &heldConn{conn: conn, r: bufio.NewReader(conn), host: vip.String()}
		if got, _ := h.get(); got == want {
			return h
		}
		h.close()
	}
	t.Fatalf("no connection to %s reached %s", vip, want)
	return nil
}

// get sends GET / on the held connection and returns the body.
func (h *heldConn) get() (string, error) {
	if err := h.conn.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return "", err
	}
	if _, err := fmt.Fprintf(h.conn, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", h.host); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(h.r, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(body)), err
}

func (h *heldConn) close() { _ = h.conn.Close() }

// healthy reads ferrolb_datapath_backend_healthy for a Service, by backend.
func healthy(t *testing.T, service string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for labels, v := range series(t, "ferrolb_datapath_backend_healthy") {
		if labels["service"] == service {
			out[labels["backend"]] = v
		}
	}
	return out
}

// probes reads ferrolb_datapath_health_probes_total{kind,result}.
func probes(t *testing.T, kind, result string) float64 {
	t.Helper()
	for labels, v := range series(t, "ferrolb_datapath_health_probes_total") {
		if labels["kind"] == kind && labels["result"] == result {
			return v
		}
	}
	return 0
}

// series yields the labels and value of each series of a gauge or counter.
func series(t *testing.T, name string) iter.Seq2[map[string]string, float64] {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return func(yield func(map[string]string, float64) bool) {
		for _, f := range families {
			if f.GetName() != name {
				continue
			}
			for _, m := range f.GetMetric() {
				labels := map[string]string{}
				for _, lp := range m.GetLabel() {
					labels[lp.GetName()] = lp.GetValue()
				}
				if !yield(labels, m.GetGauge().GetValue()+m.GetCounter().GetValue()) {
					return
				}
			}
		}
	}
}
