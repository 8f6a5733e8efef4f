package speaker

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/ferrolb/ferrolb/internal/config"
	"github.com/ferrolb/ferrolb/internal/datapath"
)

// What --datapath=xdp programs, on plain objects: one datapath service per address, port and
// protocol, with the ready endpoints of the address's family.
func TestDatapathServices(t *testing.T) {
	vip4, vip6 := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")
	svc := func(name string, mut func(*corev1.Service)) corev1.Service {
		s := corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer,
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}},
			Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: vip4.String()}}}},
		}
		if mut != nil {
			mut(&s)
		}
		return s
	}
	type ep struct {
		addr                        string
		node                        string
		ready, serving, terminating bool
	}
	slice := func(svcName string, family discoveryv1.AddressType, port int32, eps ...ep) discoveryv1.EndpointSlice {
		s := discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: svcName + "-" + string(family), Labels: map[string]string{discoveryv1.LabelServiceName: svcName}},
			AddressType: family,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}},
		}
		for _, e := range eps {
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{e.addr}, NodeName: ptr.To(e.node),
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(e.ready), Serving: ptr.To(e.serving), Terminating: ptr.To(e.terminating)}})
		}
		return s
	}
	ready := func(addr, node string) ep { return ep{addr: addr, node: node, ready: true, serving: true} }
	be := func(addr string, port uint16) datapath.Backend {
		return datapath.Backend{Addr: netip.MustParseAddr(addr), Port: port, Weight: 1}
	}

	for _, tc := range []struct {
		name  string
		svcs  []corev1.Service
		eps   []discoveryv1.EndpointSlice
		mode  datapath.Mode
		want  []datapath.Service
		notes int
		first string // the first wanted service's Service name, when set
	}{
		{
			name: "ready endpoints only, sorted",
			svcs: []corev1.Service{svc("web", nil)},
			eps: []discoveryv1.EndpointSlice{slice("web", discoveryv1.AddressTypeIPv4, 8080,
				ready("10.0.0.3", "n2"), ready("10.0.0.1", "n1"), ep{addr: "10.0.0.2", node: "n1"})},
			want: []datapath.Service{{VIP: vip4, Port: 80, Protocol: datapath.TCP,
				Backends: []datapath.Backend{be("10.0.0.1", 8080), be("10.0.0.3", 8080)}}},
		},
		{
			name: "no ready endpoint: serving terminating ones, as kube-proxy",
			svcs: []corev1.Service{svc("web", nil)},
			eps: []discoveryv1.EndpointSlice{slice("web", discoveryv1.AddressTypeIPv4, 8080,
				ep{addr: "10.0.0.1", node: "n1", serving: true, terminating: true}, ep{addr: "10.0.0.2", node: "n1", terminating: true})},
			want: []datapath.Service{{VIP: vip4, Port: 80, Protocol: datapath.TCP, Backends: []datapath.Backend{be("10.0.0.1", 8080)}}},
		},
		{
			name: "no endpoint at all: programmed without backends (the kernel gets its packets, counted)",
			svcs: []corev1.Service{svc("web", nil)},
			want: []datapath.Service{{VIP: vip4, Port: 80, Protocol: datapath.TCP}},
		},
		{
			name: "externalTrafficPolicy Local: this node's endpoints only",
			svcs: []corev1.Service{svc("web", func(s *corev1.Service) {
				s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			})},
			eps:  []discoveryv1.EndpointSlice{slice("web", discoveryv1.AddressTypeIPv4, 8080, ready("10.0.0.1", "n1"), ready("10.0.0.2", "n2"))},
			want: []datapath.Service{{VIP: vip4, Port: 80, Protocol: datapath.TCP, Backends: []datapath.Backend{be("10.0.0.1", 8080)}}},
		},
		{
			name: "dual-stack: each address gets its family's endpoints",
			svcs: []corev1.Service{svc("web", func(s *corev1.Service) {
				s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: vip6.String()})
			})},
			eps: []discoveryv1.EndpointSlice{
				slice("web", discoveryv1.AddressTypeIPv4, 8080, ready("10.0.0.1", "n1")),
				slice("web", discoveryv1.AddressTypeIPv6, 8080, ready("fd00::1", "n1")),
			},
			want: []datapath.Service{
				{VIP: vip4, Port: 80, Protocol: datapath.TCP, Backends: []datapath.Backend{be("10.0.0.1", 8080)}},
				{VIP: vip6, Port: 80, Protocol: datapath.TCP, Backends: []datapath.Backend{be("fd00::1", 8080)}},
			},
		},
		{
			name: "ClientIP affinity with Kubernetes' default and a set timeout",
			svcs: []corev1.Service{
				svc("a", func(s *corev1.Service) { s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP }),
				svc("b", func(s *corev1.Service) {
					s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
					s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To(int32(60))}}
					s.Status.LoadBalancer.Ingress[0].IP = "192.0.2.11"
				}),
			},
			eps: []discoveryv1.EndpointSlice{
				slice("a", discoveryv1.AddressTypeIPv4, 8080, ready("10.0.0.1", "n1")),
				slice("b", discoveryv1.AddressTypeIPv4, 8080, ready("10.0.0.2", "n1")),
			},
			want: []datapath.Service{
				{VIP: vip4, Port: 80, Protocol: datapath.TCP, Backends: []datapath.Backend{be("10.0.0.1", 8080)}, Affinity: 3 * time.Hour},
				{VIP: netip.MustParseAddr("192.0.2.11"), Port: 80, Protocol: datapath.TCP, Backends: []datapath.Backend{be("10.0.0.2", 8080)}, Affinity: time.Minute},
			},
		},
		{
			name: "DSR where the backends listen on the Service port; SNAT where they do not",
			mode: datapath.DSR,
			svcs: []corev1.Service{
				svc("same", func(s *corev1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromInt32(80) }),
				svc("other", func(s *corev1.Service) { s.Status.LoadBalancer.Ingress[0].IP = "192.0.2.11" }),
			},
			eps: []discoveryv1.EndpointSlice{
				slice("same", discoveryv1.AddressTypeIPv4, 80, ready("10.0.0.1", "n1")),
				slice("other", discoveryv1.AddressTypeIPv4, 8080, ready("10.0.0.2", "n1")),
			},
			want: []datapath.Service{
				{VIP: netip.MustParseAddr("192.0.2.11"), Port: 80, Protocol: datapath.TCP, Mode: datapath.SNAT, Backends: []datapath.Backend{be("10.0.0.2", 8080)}},
				{VIP: vip4, Port: 80, Protocol: datapath.TCP, Mode: datapath.DSR, Backends: []datapath.Backend{be("10.0.0.1", 80)}},
			},
			notes: 1,
		},
		{
			name: "other class, other type and SCTP are not programmed",
			svcs: []corev1.Service{
				svc("classy", func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr.To("other.io/lb") }),
				svc("cip", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP }),
				svc("sctp", func(s *corev1.Service) { s.Spec.Ports[0].Protocol = corev1.ProtocolSCTP }),
			},
			eps: []discoveryv1.EndpointSlice{
				slice("classy", discoveryv1.AddressTypeIPv4, 8080, ready("10.0.0.1", "n1")),
				slice("cip", discoveryv1.AddressTypeIPv4, 8080, ready("10.0.0.1", "n1")),
			},
		},
		{
			name: "a shared address and port is programmed once",
			svcs: []corev1.Service{svc("a", nil), svc("b", nil)},
			eps: []discoveryv1.EndpointSlice{
				slice("a", discoveryv1.AddressTypeIPv4, 8080, ready("10.0.0.1", "n1")),
				slice("b", discoveryv1.AddressTypeIPv4, 8080, ready("10.0.0.2", "n1")),
			},
			want:  []datapath.Service{{VIP: vip4, Port: 80, Protocol: datapath.TCP, Backends: []datapath.Backend{be("10.0.0.1", 8080)}}},
			notes: 1,
		},
		{
			name: "a shared address and port goes to the Service with endpoints",
			svcs: []corev1.Service{svc("a", nil), svc("b", nil), svc("c", nil)},
			eps: []discoveryv1.EndpointSlice{
				slice("b", discoveryv1.AddressTypeIPv4, 8080, ready("10.0.0.2", "n1")),
				slice("c", discoveryv1.AddressTypeIPv4, 8080, ready("10.0.0.3", "n1")),
			},
			want:  []datapath.Service{{VIP: vip4, Port: 80, Protocol: datapath.TCP, Backends: []datapath.Backend{be("10.0.0.2", 8080)}}},
			notes: 2,
			first: "ns/b",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, names, notes := planDatapath(tc.svcs, tc.eps, "n1", config.LoadBalancerClass, tc.mode)
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("services (-want +got):\n%s", diff)
			}
			if len(notes) != tc.notes {
				t.Errorf("notes %q, want %d", notes, tc.notes)
			}
			if tc.first != "" && names[serviceKey{vip: got[0].VIP, port: got[0].Port, proto: got[0].Protocol}] != tc.first {
				t.Errorf("names %v, want %s first", names, tc.first)
			}
			for _, s := range got {
				if names[serviceKey{vip: s.VIP, port: s.Port, proto: s.Protocol}] == "" {
					t.Errorf("no Service name for %v:%d", s.VIP, s.Port)
				}
			}
		})
	}
}

// The Service's ferrolb.io/datapath-mode annotation chooses DSR or SNAT over the node's
// default; an invalid value is reported (naming the annotation) and the default used; DSR
// to endpoints on another port falls back to SNAT, reported the same way.
func TestDatapathModeAnnotation(t *testing.T) {
	vip := netip.MustParseAddr("192.0.2.10")
	svc := func(ann string, target int32) corev1.Service {
		s := corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer,
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(target), Protocol: corev1.ProtocolTCP}}},
			Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: vip.String()}}}},
		}
		if ann != "-" {
			s.Annotations = map[string]string{config.AnnotationDatapathMode: ann}
		}
		return s
	}
	slice := func(port int32) discoveryv1.EndpointSlice {
		return discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}},
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{"10.244.1.10"}, NodeName: ptr.To("n1"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
				{Addresses: []string{"10.244.2.10"}, NodeName: ptr.To("n2"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
			},
		}
	}
	for _, tc := range []struct {
		name     string
		ann      string // "-": none
		target   int32
		def      datapath.Mode
		want     datapath.Mode
		problem  string // the reason reported, "" for none
		decapped bool   // n1 decapsulates for its endpoint
	}{
		{name: "no annotation: the node's default, SNAT", ann: "-", target: 80, def: datapath.SNAT, want: datapath.SNAT, decapped: true},
		{name: "no annotation: the node's default, DSR", ann: "-", target: 80, def: datapath.DSR, want: datapath.DSR, decapped: true},
		{name: "dsr over the default", ann: "dsr", target: 80, def: datapath.SNAT, want: datapath.DSR, decapped: true},
		{name: "snat over the default", ann: "snat", target: 80, def: datapath.DSR, want: datapath.SNAT},
		{name: "invalid: reported, the default used", ann: "DSR ", target: 80, def: datapath.SNAT, want: datapath.SNAT, problem: "InvalidDatapathMode", decapped: true},
		{name: "invalid: reported, the default DSR used", ann: "direct", target: 80, def: datapath.DSR, want: datapath.DSR, problem: "InvalidDatapathMode", decapped: true},
		{name: "dsr with another targetPort: SNAT, reported", ann: "dsr", target: 8080, def: datapath.SNAT, want: datapath.SNAT, problem: "DSRNotPossible"},
		{name: "default dsr with another targetPort: SNAT, reported", ann: "-", target: 8080, def: datapath.DSR, want: datapath.SNAT, problem: "DSRNotPossible"},
		{name: "snat with another targetPort: nothing to report", ann: "snat", target: 8080, def: datapath.DSR, want: datapath.SNAT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svcs := []corev1.Service{svc(tc.ann, tc.target)}
			eps := []discoveryv1.EndpointSlice{slice(tc.target)}
			progs, names, _ := planDatapath(svcs, eps, "n1", config.LoadBalancerClass, tc.def)
			if len(progs) != 1 || progs[0].Mode != tc.want {
				t.Fatalf("programmed %+v, want one service in mode %v", progs, tc.want)
			}
			problems := datapathProblems(svcs, progs, names, config.LoadBalancerClass, tc.def)
			var reasons []string
			for _, p := range problems {
				reasons = append(reasons, p.reason)
				if !p.event || p.obj.GetName() != "web" {
					t.Errorf("%+v: want an Event on the Service", p)
				}
				if p.reason == "InvalidDatapathMode" && !strings.Contains(p.msg, config.AnnotationDatapathMode) {
					t.Errorf("%q does not name the annotation", p.msg)
				}
			}
			if want := []string{tc.problem}; (tc.problem == "" && len(reasons) != 0) || (tc.problem != "" && !slices.Equal(reasons, want)) {
				t.Errorf("problems %v, want %v", problems, tc.problem)
			}
			// Node n1 takes DSR packets for its own endpoint only, and only where a
			// balancer may send them.
			pairs := planDecap(svcs, eps, "n1", config.LoadBalancerClass)
			var want []datapath.DecapPair
			if tc.decapped {
				want = []datapath.DecapPair{{Backend: netip.MustParseAddr("10.244.1.10"), VIP: vip, Port: 80, Protocol: datapath.TCP}}
			}
			if diff := cmp.Diff(want, pairs, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("decapsulated (-want +got):\n%s", diff)
			}
		})
	}
}
