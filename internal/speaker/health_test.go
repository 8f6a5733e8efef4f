package speaker

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/ferrolb/ferrolb/internal/config"
	"github.com/ferrolb/ferrolb/internal/datapath"
	"github.com/ferrolb/ferrolb/internal/healthcheck"
)

// Active health checks on plain objects: the endpoints that fail their Service's check
// leave its datapath services, every checked endpoint stays a target (so it can come back),
// and nothing changes for a Service without checks or with an invalid annotation.
func TestDatapathHealth(t *testing.T) {
	vip := netip.MustParseAddr("192.0.2.10")
	svc := func(name, ip string, ann map[string]string) corev1.Service {
		return corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Annotations: ann},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP},
				{Name: "dns", Port: 53, TargetPort: intstr.FromInt32(53), Protocol: corev1.ProtocolUDP},
			}},
			Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: ip}}}},
		}
	}
	slice := func(name string, addrs ...string) discoveryv1.EndpointSlice {
		s := discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports: []discoveryv1.EndpointPort{
				{Name: ptr.To("http"), Port: ptr.To(int32(8080)), Protocol: ptr.To(corev1.ProtocolTCP)},
				{Name: ptr.To("dns"), Port: ptr.To(int32(53)), Protocol: ptr.To(corev1.ProtocolUDP)},
			},
		}
		for _, a := range addrs {
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
		}
		return s
	}
	http := map[string]string{"ferrolb.io/health-check": "http", "ferrolb.io/health-check-path": "/healthz"}
	check := healthcheck.Default(healthcheck.HTTP)
	check.Path = "/healthz"
	target := func(addr string, port uint16) healthcheck.Target {
		return healthcheck.Target{Addr: netip.AddrPortFrom(netip.MustParseAddr(addr), port), Check: check}
	}
	addrs := func(bs []datapath.Backend) []string {
		var out []string
		for _, b := range bs {
			out = append(out, netip.AddrPortFrom(b.Addr, b.Port).String())
		}
		return out
	}
	eps := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}

	for _, tc := range []struct {
		name    string
		ann     map[string]string
		down    map[healthcheck.Target]string
		want    map[uint16][]string // backends by Service port
		targets []healthcheck.Target
		// unhealthy: the endpoints the metric says fail (each Service port's)
		unhealthy []string
		notes     []string // substrings, one per note
	}{
		{
			name: "no checks: every ready endpoint, no target",
			down: map[healthcheck.Target]string{target("10.0.0.2", 8080): "HTTP 500"},
			want: map[uint16][]string{80: {"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"}, 53: {"10.0.0.1:53", "10.0.0.2:53", "10.0.0.3:53"}},
		},
		{
			name: "the unhealthy endpoint leaves the port it failed on, and stays a target",
			ann:  http,
			down: map[healthcheck.Target]string{target("10.0.0.2", 8080): "HTTP 500"},
			want: map[uint16][]string{80: {"10.0.0.1:8080", "10.0.0.3:8080"}, 53: {"10.0.0.1:53", "10.0.0.2:53", "10.0.0.3:53"}},
			targets: []healthcheck.Target{target("10.0.0.1", 8080), target("10.0.0.2", 8080), target("10.0.0.3", 8080),
				target("10.0.0.1", 53), target("10.0.0.2", 53), target("10.0.0.3", 53)},
			unhealthy: []string{"10.0.0.2:8080"},
		},
		{
			name:      "a check port: one probe per address decides for every port",
			ann:       map[string]string{"ferrolb.io/health-check": "http", "ferrolb.io/health-check-path": "/healthz", "ferrolb.io/health-check-port": "9090"},
			down:      map[healthcheck.Target]string{target("10.0.0.3", 9090): "connect: no answer within 2s"},
			want:      map[uint16][]string{80: {"10.0.0.1:8080", "10.0.0.2:8080"}, 53: {"10.0.0.1:53", "10.0.0.2:53"}},
			targets:   []healthcheck.Target{target("10.0.0.1", 9090), target("10.0.0.2", 9090), target("10.0.0.3", 9090)},
			unhealthy: []string{"10.0.0.3:8080", "10.0.0.3:53"},
		},
		{
			name:      "every endpoint fails: all kept, and said",
			ann:       map[string]string{"ferrolb.io/health-check": "http", "ferrolb.io/health-check-path": "/healthz", "ferrolb.io/health-check-port": "9090"},
			down:      map[healthcheck.Target]string{target("10.0.0.1", 9090): "HTTP 404", target("10.0.0.2", 9090): "HTTP 404", target("10.0.0.3", 9090): "HTTP 404"},
			want:      map[uint16][]string{80: {"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"}, 53: {"10.0.0.1:53", "10.0.0.2:53", "10.0.0.3:53"}},
			targets:   []healthcheck.Target{target("10.0.0.1", 9090), target("10.0.0.2", 9090), target("10.0.0.3", 9090)},
			unhealthy: []string{"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080", "10.0.0.1:53", "10.0.0.2:53", "10.0.0.3:53"},
			notes:     []string{"every endpoint of 192.0.2.10:80/TCP fails", "every endpoint of 192.0.2.10:53/UDP fails"},
		},
		{
			name:  "an invalid value: no checks, every endpoint, the problem noted",
			ann:   map[string]string{"ferrolb.io/health-check": "http", "ferrolb.io/health-check-interval": "often"},
			down:  map[healthcheck.Target]string{target("10.0.0.2", 8080): "HTTP 500"},
			want:  map[uint16][]string{80: {"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"}, 53: {"10.0.0.1:53", "10.0.0.2:53", "10.0.0.3:53"}},
			notes: []string{`Service ns/web: metadata.annotations[ferrolb.io/health-check-interval]: "often" is not a duration`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svcs := []corev1.Service{svc("web", vip.String(), tc.ann)}
			progs, names, _ := planDatapath(svcs, []discoveryv1.EndpointSlice{slice("web", eps...)}, "n1", config.LoadBalancerClass, datapath.SNAT)
			before := cmp.Diff(nil, progs) // planHealth must not change its input
			out, targets, status, notes := planHealth(svcs, progs, names, tc.down)
			if cmp.Diff(nil, progs) != before {
				t.Error("planHealth changed planDatapath's result")
			}
			got := map[uint16][]string{}
			for _, s := range out {
				got[s.Port] = addrs(s.Backends)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("backends (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.targets, targets, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("targets (-want +got):\n%s", diff)
			}
			var unhealthy []string
			for _, b := range status {
				if b.service != "ns/web" {
					t.Errorf("status of %q", b.service)
				}
				if !b.healthy {
					unhealthy = append(unhealthy, b.backend.String())
				}
			}
			if checked := 6 * min(1, len(tc.targets)); len(status) != checked || !cmp.Equal(unhealthy, tc.unhealthy, cmpopts.EquateEmpty()) {
				t.Errorf("%d endpoints checked, want %d; unhealthy %v, want %v", len(status), checked, unhealthy, tc.unhealthy)
			}
			if len(notes) != len(tc.notes) {
				t.Fatalf("notes %q, want %q", notes, tc.notes)
			}
			for i, n := range notes {
				if !strings.Contains(n, tc.notes[i]) {
					t.Errorf("note %q, want %q", n, tc.notes[i])
				}
			}
		})
	}

	// A shared address: the datapath service belongs to the Service planDatapath gave it,
	// and that Service's check decides.
	t.Run("shared address", func(t *testing.T) {
		a, b := svc("a", vip.String(), nil), svc("b", vip.String(), http)
		b.Spec.Ports = b.Spec.Ports[:1]
		b.Spec.Ports[0].Port = 8443
		svcs := []corev1.Service{a, b}
		progs, names, _ := planDatapath(svcs, []discoveryv1.EndpointSlice{slice("a", eps...), slice("b", eps...)}, "n1", config.LoadBalancerClass, datapath.SNAT)
		out, targets, _, _ := planHealth(svcs, progs, names, map[healthcheck.Target]string{target("10.0.0.1", 8080): "HTTP 500"})
		for _, s := range out {
			want := 3
			if s.Port == 8443 {
				want = 2
			}
			if len(s.Backends) != want {
				t.Errorf("port %d: %v", s.Port, addrs(s.Backends))
			}
		}
		if len(targets) != 3 {
			t.Errorf("targets %v", targets)
		}
	})
}
