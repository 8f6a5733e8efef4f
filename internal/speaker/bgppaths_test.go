package speaker

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/bgp"
	"github.com/ferrolb/ferrolb/internal/config"
)

// The selection rules of the BGP reconcile, on plain objects: which addresses this node
// sends to which peer with which attributes.
func TestBGPPaths(t *testing.T) {
	tor, spine := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.254")
	peers := []bgp.Peer{{Address: tor}, {Address: spine}}
	byName := map[string]netip.Addr{"tor": tor, "spine": spine}
	me := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"rack": "a"}}}
	pool := func(name, cidr string) config.Pool {
		p, err := config.ParsePool(&v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: cidr}}}})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	pools := []config.Pool{pool("public", "203.0.113.0/24"), pool("private", "10.10.0.0/24"), pool("v6", "2001:db8:100::/64")}
	ad := func(name string, mod func(*v1.BGPAdvertisementSpec)) config.BGPAdvertisement {
		var s v1.BGPAdvertisementSpec
		mod(&s)
		a, err := config.ParseBGPAdvertisement(&v1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: s})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	svc := func(name string, labels map[string]string, local bool, ips ...string) corev1.Service {
		s := corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Labels: labels},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}}
		if local {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}
		for _, ip := range ips {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
		}
		return s
	}
	endpointOn := func(svcName, node string) discoveryv1.EndpointSlice {
		return discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: svcName + "-x", Labels: map[string]string{discoveryv1.LabelServiceName: svcName}},
			Endpoints:  []discoveryv1.Endpoint{{NodeName: ptr.To(node), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		}
	}
	// render prints paths sorted, one per line: "prefix -> peers [communities] lp".
	render := func(ps []bgp.Path) string {
		var lines []string
		for _, p := range ps {
			l := fmt.Sprintf("%v -> %v %v", p.Prefix, p.Peers, p.Communities)
			if p.LocalPref != nil {
				l += fmt.Sprintf(" lp=%d", *p.LocalPref)
			}
			lines = append(lines, l)
		}
		slices.Sort(lines)
		return strings.Join(lines, "\n")
	}

	for _, tt := range []struct {
		name string
		svcs []corev1.Service
		eps  []discoveryv1.EndpointSlice
		ads  []config.BGPAdvertisement
		want []string
	}{
		{
			name: "every address to every peer",
			svcs: []corev1.Service{svc("web", nil, false, "203.0.113.10", "2001:db8:100::10")},
			ads:  []config.BGPAdvertisement{ad("all", func(*v1.BGPAdvertisementSpec) {})},
			want: []string{"2001:db8:100::10/128 -> [192.0.2.1 192.0.2.254] []", "203.0.113.10/32 -> [192.0.2.1 192.0.2.254] []"},
		},
		{
			name: "pools, peers by name, and communities adding up",
			svcs: []corev1.Service{svc("web", nil, false, "203.0.113.10"), svc("db", nil, false, "10.10.0.5")},
			ads: []config.BGPAdvertisement{
				ad("public-everywhere", func(s *v1.BGPAdvertisementSpec) {
					s.Pools, s.Communities = []string{"public"}, []string{"64513:1"}
				}),
				ad("public-spine", func(s *v1.BGPAdvertisementSpec) {
					s.Pools, s.Peers, s.Communities, s.LocalPref = []string{"public"}, []string{"spine"}, []string{"no-export"}, ptr.To[int64](200)
				}),
				ad("private-tor", func(s *v1.BGPAdvertisementSpec) { s.Pools, s.Peers = []string{"private"}, []string{"tor", "gone"} }),
			},
			want: []string{
				"10.10.0.5/32 -> [192.0.2.1] []",
				"203.0.113.10/32 -> [192.0.2.1] [4227923969]",
				"203.0.113.10/32 -> [192.0.2.254] [4227923969 4294967041] lp=200",
			},
		},
		{
			name: "aggregation merges addresses into one prefix",
			svcs: []corev1.Service{svc("a", nil, false, "203.0.113.10"), svc("b", nil, false, "203.0.113.200")},
			ads:  []config.BGPAdvertisement{ad("agg", func(s *v1.BGPAdvertisementSpec) { s.AggregationLength = ptr.To[int32](24) })},
			want: []string{"203.0.113.0/24 -> [192.0.2.1 192.0.2.254] []"},
		},
		{
			name: "service and node selectors",
			svcs: []corev1.Service{svc("web", map[string]string{"tier": "web"}, false, "203.0.113.10"), svc("db", nil, false, "203.0.113.11")},
			ads: []config.BGPAdvertisement{
				ad("web-only", func(s *v1.BGPAdvertisementSpec) {
					s.ServiceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "web"}}
				}),
				ad("rack-b-only", func(s *v1.BGPAdvertisementSpec) {
					s.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "b"}}
				}),
			},
			want: []string{"203.0.113.10/32 -> [192.0.2.1 192.0.2.254] []"},
		},
		{
			name: "the pseudo-labels select a Service by namespace and name (Cilium's BGP examples)",
			svcs: []corev1.Service{svc("web", nil, false, "203.0.113.10"), svc("db", nil, false, "203.0.113.11")},
			ads: []config.BGPAdvertisement{ad("by-name", func(s *v1.BGPAdvertisementSpec) {
				s.ServiceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{
					config.LabelServiceNamespace: "default", config.LabelServiceName: "web"}}
			})},
			want: []string{"203.0.113.10/32 -> [192.0.2.1 192.0.2.254] []"},
		},
		{
			name: "Local: only with a ready endpoint on this node",
			svcs: []corev1.Service{svc("here", nil, true, "203.0.113.10"), svc("elsewhere", nil, true, "203.0.113.11"), svc("none", nil, true, "203.0.113.12")},
			eps:  []discoveryv1.EndpointSlice{endpointOn("here", "n1"), endpointOn("elsewhere", "n2")},
			ads:  []config.BGPAdvertisement{ad("all", func(*v1.BGPAdvertisementSpec) {})},
			want: []string{"203.0.113.10/32 -> [192.0.2.1 192.0.2.254] []"},
		},
		{
			name: "no advertisement, nothing sent",
			svcs: []corev1.Service{svc("web", nil, false, "203.0.113.10")},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			snap := config.Snapshot{Pools: pools, BGPAdvertisements: tt.ads}
			ps, _ := paths(cluster{services: tt.svcs, slices: tt.eps}, me, config.LoadBalancerClass, snap, peers, byName)
			got := render(ps)
			if want := strings.Join(tt.want, "\n"); got != want {
				t.Errorf("paths:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}
