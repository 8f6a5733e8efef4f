package config_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/config"
	"github.com/ferrolb/ferrolb/internal/ipam"
)

func mustPool(t *testing.T, name string, spec v1.IPPoolSpec) config.Pool {
	t.Helper()
	p, err := config.ParsePool(&v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParsePool(t *testing.T) {
	tests := []struct {
		name    string
		spec    v1.IPPoolSpec
		want    []ipam.Range
		wantErr string
	}{
		{name: "cidr and range", spec: v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "192.0.2.0/30"}, {Start: "2001:db8::1", Stop: "2001:db8::9"}}},
			want: []ipam.Range{
				{From: netip.MustParseAddr("192.0.2.0"), To: netip.MustParseAddr("192.0.2.3")},
				{From: netip.MustParseAddr("2001:db8::1"), To: netip.MustParseAddr("2001:db8::9")},
			}},
		{name: "IPv4-mapped start counts as IPv4", spec: v1.IPPoolSpec{Blocks: []v1.IPBlock{{Start: "::ffff:192.0.2.1", Stop: "192.0.2.2"}}},
			want: []ipam.Range{{From: netip.MustParseAddr("192.0.2.1"), To: netip.MustParseAddr("192.0.2.2")}}},
		{name: "IPv6 range backwards", spec: v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "192.0.2.0/30"}, {Start: "2001:db8::9", Stop: "2001:db8::1"}}},
			wantErr: "spec.blocks[1]: range 2001:db8::9-2001:db8::1: start is above stop"},
		{name: "host bits", spec: v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "192.0.2.1/24"}}},
			wantErr: "spec.blocks[0]: cidr \"192.0.2.1/24\" has host bits set (the network is 192.0.2.0/24)"},
		{name: "zone", spec: v1.IPPoolSpec{Blocks: []v1.IPBlock{{Start: "fe80::1%eth0", Stop: "fe80::2"}}},
			wantErr: "spec.blocks[0]: start: \"fe80::1%eth0\": a Service address has no zone"},
		{name: "half a range", spec: v1.IPPoolSpec{Blocks: []v1.IPBlock{{Start: "192.0.2.1"}}},
			wantErr: "spec.blocks[0]: a block needs a cidr, or both start and stop"},
		{name: "no blocks", spec: v1.IPPoolSpec{}, wantErr: "spec.blocks: a pool needs at least one block"},
		{name: "maxAddressesPerService 0", spec: v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "192.0.2.0/30"}}, MaxAddressesPerService: ptr.To[int32](0)},
			wantErr: "spec.maxAddressesPerService: 0 is not 1 to 64"},
		{name: "maxAddressesPerService 65", spec: v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "192.0.2.0/30"}}, MaxAddressesPerService: ptr.To[int32](65)},
			wantErr: "spec.maxAddressesPerService: 65 is not 1 to 64"},
		{name: "bad selector", spec: v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "192.0.2.0/30"}}, ServiceSelector: &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Near"}}}},
			wantErr: "spec.serviceSelector"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := config.ParsePool(&v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: tt.spec})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, p.Ranges, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
				t.Errorf("ranges (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParsePoolDefaults(t *testing.T) {
	p := mustPool(t, "p", v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "192.0.2.0/30"}}})
	if !p.AutoAssign {
		t.Error("autoAssign unset should mean true")
	}
	q := mustPool(t, "q", v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "192.0.2.0/30"}}, Priority: ptr.To[int32](5)})
	if q.Priority >= p.Priority {
		t.Errorf("a pool with priority 5 (%d) must come before one without (%d)", q.Priority, p.Priority)
	}
	if p.MaxPerService != 0 {
		t.Errorf("maxAddressesPerService unset: MaxPerService = %d, want 0 (one per family)", p.MaxPerService)
	}
	if m := mustPool(t, "m", v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "192.0.2.0/30"}}, MaxAddressesPerService: ptr.To[int32](3)}); m.MaxPerService != 3 {
		t.Errorf("maxAddressesPerService 3: MaxPerService = %d", m.MaxPerService)
	}
}

func TestPoolServes(t *testing.T) {
	p := mustPool(t, "p", v1.IPPoolSpec{
		Blocks:     []v1.IPBlock{{CIDR: "192.0.2.0/30"}},
		Namespaces: []string{"tenant-a", "tenant-b"},
		ServiceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{
			"color": "blue", config.LabelServiceName: "web",
		}},
	})
	tests := []struct {
		ns, name string
		labels   map[string]string
		want     bool
	}{
		{"tenant-a", "web", map[string]string{"color": "blue"}, true},
		{"tenant-c", "web", map[string]string{"color": "blue"}, false},
		{"tenant-a", "api", map[string]string{"color": "blue"}, false},
		{"tenant-a", "web", map[string]string{"color": "red"}, false},
		// A real label cannot impersonate the pseudo-label.
		{"tenant-a", "api", map[string]string{"color": "blue", config.LabelServiceName: "web"}, false},
	}
	for _, tt := range tests {
		if got := p.Serves(tt.ns, tt.name, tt.labels); got != tt.want {
			t.Errorf("Serves(%s, %s, %v) = %v, want %v", tt.ns, tt.name, tt.labels, got, tt.want)
		}
	}
}

func service(ns, name string, ann map[string]string, mod func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: ann},
		Spec: corev1.ServiceSpec{
			Type:       corev1.ServiceTypeLoadBalancer,
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
			Ports:      []corev1.ServicePort{{Port: 443, Protocol: corev1.ProtocolTCP}},
		},
	}
	if mod != nil {
		mod(s)
	}
	return s
}

func TestServiceRequest(t *testing.T) {
	pools := []config.Pool{
		mustPool(t, "a", v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "192.0.2.0/30"}}}),
		mustPool(t, "b", v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "198.51.100.0/30"}}, Namespaces: []string{"other"}}),
	}
	addrs := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, a := range s {
			out = append(out, netip.MustParseAddr(a))
		}
		return out
	}
	tests := []struct {
		name         string
		svc          *corev1.Service
		want         ipam.Request
		wantProblems []string
	}{
		{
			name: "plain",
			svc:  service("ns", "web", nil, nil),
			want: ipam.Request{Service: "ns/web", Families: []ipam.Family{ipam.IPv4}, Pools: []string{"a"},
				Ports: []ipam.Port{{Protocol: "TCP", Number: 443}}},
		},
		{
			name: "ferrolb ips win over MetalLB's and spec.loadBalancerIP",
			svc: service("ns", "web", map[string]string{
				"ferrolb.io/ips":                      "192.0.2.1, 2001:db8::1",
				"metallb.universe.tf/loadBalancerIPs": "192.0.2.2",
			}, func(s *corev1.Service) { s.Spec.LoadBalancerIP = "192.0.2.3" }),
			want: ipam.Request{Service: "ns/web", Families: []ipam.Family{ipam.IPv4}, Pools: []string{"a"},
				Ports: []ipam.Port{{Protocol: "TCP", Number: 443}}, Addresses: addrs("192.0.2.1", "2001:db8::1")},
			wantProblems: []string{
				"metadata.annotations[metallb.universe.tf/loadBalancerIPs]: ignored: ferrolb.io/ips takes precedence",
				"spec.loadBalancerIP: ignored: annotation ferrolb.io/ips takes precedence",
			},
		},
		{
			name: "deprecated spec.loadBalancerIP",
			svc:  service("ns", "web", nil, func(s *corev1.Service) { s.Spec.LoadBalancerIP = "192.0.2.3" }),
			want: ipam.Request{Service: "ns/web", Families: []ipam.Family{ipam.IPv4}, Pools: []string{"a"},
				Ports: []ipam.Port{{Protocol: "TCP", Number: 443}}, Addresses: addrs("192.0.2.3")},
		},
		{
			name: "Cilium ips with a bad entry keep the good ones",
			svc:  service("ns", "web", map[string]string{"lbipam.cilium.io/ips": "192.0.2.1,bogus"}, nil),
			want: ipam.Request{Service: "ns/web", Families: []ipam.Family{ipam.IPv4}, Pools: []string{"a"},
				Ports: []ipam.Port{{Protocol: "TCP", Number: 443}}, Addresses: addrs("192.0.2.1")},
			wantProblems: []string{`metadata.annotations[lbipam.cilium.io/ips]: "bogus" is not an IP address`},
		},
		{
			name: "named pool that does not serve the namespace, and one that does not exist",
			svc:  service("ns", "web", map[string]string{"metallb.universe.tf/address-pool": "b, nope"}, nil),
			want: ipam.Request{Service: "ns/web", Families: []ipam.Family{ipam.IPv4}, NamedPool: true,
				Ports: []ipam.Port{{Protocol: "TCP", Number: 443}}},
			wantProblems: []string{
				`metadata.annotations[metallb.universe.tf/address-pool]: IPPool "b" does not serve this Service (its namespaces or serviceSelector exclude it)`,
				`metadata.annotations[metallb.universe.tf/address-pool]: no IPPool named "nope"`,
			},
		},
		{
			name: "FerroLB sharing key is namespaced",
			svc:  service("ns", "web", map[string]string{"ferrolb.io/sharing-key": "k"}, nil),
			want: ipam.Request{Service: "ns/web", Families: []ipam.Family{ipam.IPv4}, Pools: []string{"a"},
				Ports: []ipam.Port{{Protocol: "TCP", Number: 443}}, SharingKey: "namespace/ns/k"},
		},
		{
			name: "MetalLB sharing key is cluster-wide",
			svc:  service("ns", "web", map[string]string{"metallb.universe.tf/allow-shared-ip": "k"}, nil),
			want: ipam.Request{Service: "ns/web", Families: []ipam.Family{ipam.IPv4}, Pools: []string{"a"},
				Ports: []ipam.Port{{Protocol: "TCP", Number: 443}}, SharingKey: "cluster/k"},
		},
		{
			name: "dual-stack and local traffic",
			svc: service("ns", "web", nil, func(s *corev1.Service) {
				s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
				s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyRequireDualStack)
				s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			}),
			want: ipam.Request{Service: "ns/web", Families: []ipam.Family{ipam.IPv6, ipam.IPv4}, Policy: ipam.RequireDualStack,
				Pools: []string{"a"}, Ports: []ipam.Port{{Protocol: "TCP", Number: 443}}, Local: true},
		},
		{
			name:         "unknown ferrolb annotation",
			svc:          service("ns", "web", map[string]string{"ferrolb.io/sharingkey": "k"}, nil),
			want:         ipam.Request{Service: "ns/web", Families: []ipam.Family{ipam.IPv4}, Pools: []string{"a"}, Ports: []ipam.Port{{Protocol: "TCP", Number: 443}}},
			wantProblems: []string{"metadata.annotations[ferrolb.io/sharingkey]: unknown annotation"},
		},
		{
			name: "health check annotations are known; an invalid one is reported once, by the controller",
			svc: service("ns", "web", map[string]string{"ferrolb.io/health-check": "http", "ferrolb.io/health-check-path": "/healthz",
				"ferrolb.io/health-check-interval": "5 seconds"}, nil),
			want:         ipam.Request{Service: "ns/web", Families: []ipam.Family{ipam.IPv4}, Pools: []string{"a"}, Ports: []ipam.Port{{Protocol: "TCP", Number: 443}}},
			wantProblems: []string{`metadata.annotations[ferrolb.io/health-check-interval]: "5 seconds" is not a duration`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, problems := config.ServiceRequest(tt.svc, pools)
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateComparable(netip.Addr{}), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
			var msgs []string
			for _, p := range problems {
				msgs = append(msgs, p.Error())
			}
			if len(msgs) != len(tt.wantProblems) {
				t.Fatalf("problems = %q, want %d matching %q", msgs, len(tt.wantProblems), tt.wantProblems)
			}
			for _, w := range tt.wantProblems {
				found := false
				for _, m := range msgs {
					found = found || strings.HasPrefix(m, w)
				}
				if !found {
					t.Errorf("problems %q lack %q", msgs, w)
				}
			}
		})
	}
}

func TestServed(t *testing.T) {
	for _, tt := range []struct {
		name  string
		mod   func(*corev1.Service)
		class string
		want  bool
	}{
		{"no class", nil, config.LoadBalancerClass, true},
		{"our class", func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr.To(config.LoadBalancerClass) }, config.LoadBalancerClass, true},
		{"other class", func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr.To("x.io/lb") }, config.LoadBalancerClass, false},
		{"configured class", func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr.To("x.io/lb") }, "x.io/lb", true},
		{"ClusterIP", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP }, config.LoadBalancerClass, false},
	} {
		if got := config.Served(service("ns", "s", nil, tt.mod), tt.class); got != tt.want {
			t.Errorf("%s: Served = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestServiceRequestBounds: an address annotation is read only up to a size; a longer one, or
// one with too many entries, is refused whole with a reason naming it, and the Service keeps
// what it holds (KeepOnly) instead of getting what it listed or an automatic address.
func TestServiceRequestBounds(t *testing.T) {
	pools := []config.Pool{mustPool(t, "a", v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "10.0.0.0/16"}}})}
	list := func(n int) string {
		var b strings.Builder
		for i := range n {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "10.0.%d.%d", i/256, i%256)
		}
		return b.String()
	}
	// The report's annotation: 21,833 addresses in about 250 KB.
	huge := list(21833)
	if len(huge) < 250_000 {
		t.Fatalf("huge annotation is %d bytes", len(huge))
	}
	for _, tt := range []struct {
		name, annotation, value string
		wantAddrs               int
		wantKeepOnly            bool
		wantProblem             string
	}{
		{name: "64 entries are read", annotation: "ferrolb.io/ips", value: list(64), wantAddrs: 64},
		{name: "65 entries are refused", annotation: "ferrolb.io/ips", value: list(65), wantKeepOnly: true,
			wantProblem: "metadata.annotations[ferrolb.io/ips]: refused: 65 entries, more than the 64 an address request may list; the Service keeps the addresses it holds and is given no other"},
		{name: "250 KB refused unread", annotation: "ferrolb.io/ips", value: huge, wantKeepOnly: true,
			wantProblem: fmt.Sprintf("metadata.annotations[ferrolb.io/ips]: refused unread: %d bytes, more than the 4096 an address request may have", len(huge))},
		{name: "MetalLB's annotation too", annotation: "metallb.io/loadBalancerIPs", value: huge, wantKeepOnly: true,
			wantProblem: "metadata.annotations[metallb.io/loadBalancerIPs]: refused unread"},
		{name: "Cilium's annotation too", annotation: "io.cilium/lb-ipam-ips", value: huge, wantKeepOnly: true,
			wantProblem: "metadata.annotations[io.cilium/lb-ipam-ips]: refused unread"},
		// Garbage past the bound is not parsed: one problem, not one per entry.
		{name: "250 KB of garbage: one problem", annotation: "lbipam.cilium.io/ips", value: strings.Repeat("x,", 125_000), wantKeepOnly: true,
			wantProblem: "metadata.annotations[lbipam.cilium.io/ips]: refused unread: 250000 bytes"},
		{name: "4096 bytes with empty entries are read", annotation: "ferrolb.io/ips", value: "10.0.0.1" + strings.Repeat(",", 4088), wantAddrs: 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, problems := config.ServiceRequest(service("ns", "web", map[string]string{tt.annotation: tt.value}, nil), pools)
			if len(req.Addresses) != tt.wantAddrs || req.KeepOnly != tt.wantKeepOnly {
				t.Errorf("request has %d addresses, KeepOnly %v; want %d, %v", len(req.Addresses), req.KeepOnly, tt.wantAddrs, tt.wantKeepOnly)
			}
			var msgs []string
			for _, p := range problems {
				msgs = append(msgs, p.Error())
			}
			switch {
			case tt.wantProblem == "" && len(msgs) != 0:
				t.Errorf("problems %q, want none", msgs)
			case tt.wantProblem != "" && (len(msgs) != 1 || !strings.HasPrefix(msgs[0], tt.wantProblem)):
				t.Errorf("problems %.300q, want one starting %q", msgs, tt.wantProblem)
			}
		})
	}
}
