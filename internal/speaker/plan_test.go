package speaker

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/config"
	"github.com/ferrolb/ferrolb/internal/l2"
)

// The plans are pure: these tests run them on plain objects, with no API server, namespace
// or socket. What the reconciles apply from them is tested against real ones in l2_test.go
// and bgp_test.go.

func planNode(name, ip string, labels map[string]string) corev1.Node {
	return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}}}
}

func planService(name string, local bool, ingress []string, external ...string) corev1.Service {
	s := corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ExternalIPs: external}}
	if local {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	for _, ip := range ingress {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	return s
}

// clusterIPService is a ClusterIP Service with external IPs, as in Cilium's layer 2
// announcement example: FerroLB allocates nothing for it and may announce its external IPs.
func clusterIPService(name string, external ...string) corev1.Service {
	return corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.10", ExternalIPs: external}}
}

func readyOn(svc string, nodes ...string) discoveryv1.EndpointSlice {
	s := discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: svc + "-x",
		Labels: map[string]string{discoveryv1.LabelServiceName: svc}}}
	for _, n := range nodes {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{NodeName: ptr.To(n), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	return s
}

func mustSnapshot(t *testing.T, r config.Resources) config.Snapshot {
	t.Helper()
	s, problems := config.For(r)
	if len(problems) > 0 {
		t.Fatalf("configuration problems: %v", problems)
	}
	return s
}

func TestPlanL2(t *testing.T) {
	pools := []v1.IPPool{
		{ObjectMeta: metav1.ObjectMeta{Name: "lan"}, Spec: v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "192.0.2.0/24"}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "dmz"}, Spec: v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "198.51.100.0/24"}}}},
	}
	nodes := []corev1.Node{
		planNode("n1", "10.0.0.1", map[string]string{"zone": "a"}),
		planNode("n2", "10.0.0.2", map[string]string{"zone": "a"}),
		planNode("n3", "10.0.0.3", map[string]string{"zone": "b", LabelExcludeFromLB: ""}),
		planNode("n4", "10.0.0.4", map[string]string{"zone": "b"}),
	}
	in := l2Input{node: "n1", class: config.LoadBalancerClass, memberPort: 7946, interfaces: []string{"eth0", "eth1", "bond0"}}
	render := func(p l2Plan) []string {
		var out []string
		for _, s := range p.services {
			for _, e := range s.entries {
				out = append(out, fmt.Sprintf("%s %s by %v on %v", s.svc.Name, e.Addr, e.Candidates, e.Interfaces))
			}
			for _, r := range s.refused {
				out = append(out, fmt.Sprintf("%s refused %s", s.svc.Name, r))
			}
		}
		return out
	}
	for _, tt := range []struct {
		name     string
		policies []v1.L2Policy
		svcs     []corev1.Service
		eps      []discoveryv1.EndpointSlice
		want     []string
		wantIfs  []string
	}{
		{
			name:     "every node but the excluded one, on the interfaces the policy names",
			policies: []v1.L2Policy{{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: v1.L2PolicySpec{Interfaces: []string{"eth.*"}}}},
			svcs:     []corev1.Service{planService("web", false, []string{"192.0.2.10"})},
			want:     []string{"web 192.0.2.10 by [n1 n2 n4] on [eth0 eth1]"},
			wantIfs:  []string{"eth0", "eth1"},
		},
		{
			name: "node selector and pools",
			policies: []v1.L2Policy{{ObjectMeta: metav1.ObjectMeta{Name: "zone-a-lan"}, Spec: v1.L2PolicySpec{
				Pools: []string{"lan"}, NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"zone": "a"}}}}},
			svcs:    []corev1.Service{planService("web", false, []string{"192.0.2.10", "198.51.100.10"})},
			want:    []string{"web 192.0.2.10 by [n1 n2] on [eth0 eth1 bond0]"},
			wantIfs: []string{"eth0", "eth1", "bond0"},
		},
		{
			name:     "Local: only nodes with a ready endpoint; none ready, nobody",
			policies: []v1.L2Policy{{ObjectMeta: metav1.ObjectMeta{Name: "p"}}},
			svcs:     []corev1.Service{planService("here", true, []string{"192.0.2.10"}), planService("nowhere", true, []string{"192.0.2.11"})},
			eps:      []discoveryv1.EndpointSlice{readyOn("here", "n2", "n3")},
			want:     []string{"here 192.0.2.10 by [n2] on [eth0 eth1 bond0]", "nowhere 192.0.2.11 by [] on [eth0 eth1 bond0]"},
			wantIfs:  []string{"eth0", "eth1", "bond0"},
		},
		{
			name: "external IPs only inside the policy's pools",
			policies: []v1.L2Policy{{ObjectMeta: metav1.ObjectMeta{Name: "ext"}, Spec: v1.L2PolicySpec{
				ExternalIPs: true, LoadBalancerIPs: ptr.To(false), Interfaces: []string{"bond0"}}}},
			svcs: []corev1.Service{planService("web", false, []string{"192.0.2.10"}, "198.51.100.7", "10.0.0.254")},
			want: []string{"web 198.51.100.7 by [n1 n2 n4] on [bond0]",
				"web refused 10.0.0.254 (spec.externalIPs: in no IPPool of L2Policy ext)"},
			wantIfs: []string{"bond0"},
		},
		{
			name: "ClusterIP and NodePort Services' external IPs under a policy that announces them; not headless ones",
			policies: []v1.L2Policy{{ObjectMeta: metav1.ObjectMeta{Name: "ext"}, Spec: v1.L2PolicySpec{
				ExternalIPs: true, Interfaces: []string{"bond0"}}}},
			svcs: []corev1.Service{
				clusterIPService("cip", "198.51.100.7", "10.0.0.254"),
				func() corev1.Service {
					s := clusterIPService("np", "198.51.100.8")
					s.Spec.Type = corev1.ServiceTypeNodePort
					return s
				}(),
				func() corev1.Service {
					s := clusterIPService("headless", "198.51.100.9")
					s.Spec.ClusterIP = corev1.ClusterIPNone
					return s
				}(),
				func() corev1.Service {
					// A stale status address of a Service that was a LoadBalancer once is not announced.
					s := clusterIPService("was-lb", "198.51.100.10")
					s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.10"}}
					return s
				}(),
			},
			want: []string{"cip 198.51.100.7 by [n1 n2 n4] on [bond0]",
				"cip refused 10.0.0.254 (spec.externalIPs: in no IPPool of L2Policy ext)",
				"np 198.51.100.8 by [n1 n2 n4] on [bond0]",
				"was-lb 198.51.100.10 by [n1 n2 n4] on [bond0]"},
			wantIfs: []string{"bond0"},
		},
		{
			name: "a ClusterIP Service's external IPs are not announced by a policy without externalIPs",
			policies: []v1.L2Policy{{ObjectMeta: metav1.ObjectMeta{Name: "lb-only"}, Spec: v1.L2PolicySpec{
				Interfaces: []string{"bond0"}}}},
			svcs:    []corev1.Service{clusterIPService("cip", "198.51.100.7")},
			want:    nil,
			wantIfs: []string{"bond0"},
		},
		{
			name:    "no policy: nothing, and the node has no interface to lose",
			svcs:    []corev1.Service{planService("web", false, []string{"192.0.2.10"})},
			want:    nil,
			wantIfs: nil,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			snap := mustSnapshot(t, config.Resources{Pools: pools, L2Policies: tt.policies})
			plan := planL2(snap, cluster{services: tt.svcs, nodes: nodes, slices: tt.eps}, in)
			if got := render(plan); !slices.Equal(got, tt.want) {
				t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if !slices.Equal(plan.state.Interfaces, tt.wantIfs) {
				t.Errorf("interfaces %v, want %v", plan.state.Interfaces, tt.wantIfs)
			}
			if plan.state.Policies != len(tt.policies) || len(plan.state.Peers) != len(nodes) {
				t.Errorf("state has %d policies and %d peers, want %d and %d", plan.state.Policies, len(plan.state.Peers), len(tt.policies), len(nodes))
			}
			for _, e := range plan.state.Entries {
				if len(e.Candidates) == 0 {
					t.Errorf("the state file keeps %v, an address nobody may announce", e.Addr)
				}
			}
		})
	}
}

func TestPlanL2Elect(t *testing.T) {
	nodes := []corev1.Node{planNode("n1", "10.0.0.1", nil), planNode("n2", "10.0.0.2", nil)}
	snap := mustSnapshot(t, config.Resources{
		Pools:      []v1.IPPool{{ObjectMeta: metav1.ObjectMeta{Name: "lan"}, Spec: v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "192.0.2.0/24"}}}}},
		L2Policies: []v1.L2Policy{{ObjectMeta: metav1.ObjectMeta{Name: "p"}}},
	})
	addr := netip.MustParseAddr("192.0.2.10")
	svcs := []corev1.Service{planService("web", false, []string{addr.String()})}
	plan := planL2(snap, cluster{services: svcs, nodes: nodes}, l2Input{node: "n1", class: config.LoadBalancerClass, interfaces: []string{"eth0", "eth1"}})
	winner, _ := l2.Announcer(addr, []string{"n1", "n2"})
	loser := map[string]string{"n1": "n2", "n2": "n1"}[winner]

	// Both alive: only the winner answers, on its usable interfaces, and writes the condition.
	want, writes := plan.elect(winner, []string{"n1", "n2"}, []string{"eth1"})
	if !slices.Equal(want[addr], []string{"eth1"}) || len(want) != 1 {
		t.Errorf("winner %s answers %v, want %s on eth1 only (eth0 is not usable)", winner, want, addr)
	}
	if len(writes) != 1 || !strings.Contains(writes[0].cond.Message, addr.String()+" by "+winner+" (layer 2 on eth1)") {
		t.Errorf("winner's condition writes %+v", writes)
	}
	want, writes = plan.elect(loser, []string{"n1", "n2"}, []string{"eth0", "eth1"})
	if len(want) != 0 || len(writes) != 0 {
		t.Errorf("the other node answers %v and writes %d conditions, want nothing", want, len(writes))
	}
	// The winner dead: the other takes over.
	if want, _ = plan.elect(loser, []string{loser}, []string{"eth0"}); !slices.Equal(want[addr], []string{"eth0"}) {
		t.Errorf("with %s dead, %s answers %v", winner, loser, want)
	}
	// A condition already as it should be is not written again.
	c := writes0(t, plan, winner)
	svcs[0].Status.Conditions = []metav1.Condition{*c}
	if _, writes = plan.elect(winner, []string{"n1", "n2"}, []string{"eth1"}); len(writes) != 0 {
		t.Errorf("an unchanged condition is written again: %+v", writes)
	}
}

func writes0(t *testing.T, plan l2Plan, node string) *metav1.Condition {
	t.Helper()
	_, writes := plan.elect(node, []string{"n1", "n2"}, []string{"eth1"})
	if len(writes) != 1 {
		t.Fatalf("%d writes", len(writes))
	}
	return writes[0].cond
}

func TestPlanBGP(t *testing.T) {
	peer := func(name, addr string, mod func(*v1.BGPPeerSpec)) v1.BGPPeer {
		p := v1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.BGPPeerSpec{PeerAddress: addr, PeerASN: 65000, LocalASN: 65010}}
		if mod != nil {
			mod(&p.Spec)
		}
		return p
	}
	secret := corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ferrolb-system", Name: "md5"}, Data: map[string][]byte{PasswordKey: []byte("s3cret")}}
	base := config.Resources{
		Pools:             []v1.IPPool{{ObjectMeta: metav1.ObjectMeta{Name: "lan"}, Spec: v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "192.0.2.0/24"}}}}},
		BGPAdvertisements: []v1.BGPAdvertisement{{ObjectMeta: metav1.ObjectMeta{Name: "all"}}},
		BFDProfiles:       []v1.BFDProfile{{ObjectMeta: metav1.ObjectMeta{Name: "fast"}}},
	}
	svcs := []corev1.Service{planService("web", false, []string{"192.0.2.10"})}
	for _, tt := range []struct {
		name     string
		peers    []v1.BGPPeer
		node     corev1.Node
		routerID string
		asn      uint32
		sessions []string // peer address, password, BFD
		paths    int
		reports  map[string]string // BGPPeer -> address or why
		problems []string
	}{
		{
			name: "sessions with password and BFD; the other rack's peer ignored",
			peers: []v1.BGPPeer{
				peer("tor", "10.0.0.254", func(s *v1.BGPPeerSpec) {
					s.PasswordSecretRef = &v1.SecretReference{Name: "md5"}
					s.BFDProfile = "fast"
				}),
				peer("spine", "10.0.1.254", func(s *v1.BGPPeerSpec) { s.LocalASN = 65001 }),
				peer("other-rack", "10.0.2.254", func(s *v1.BGPPeerSpec) {
					s.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "b"}}
				}),
			},
			node:     planNode("n1", "10.0.0.1", map[string]string{"rack": "a"}),
			routerID: "10.0.0.1", asn: 65001,
			sessions: []string{"10.0.1.254  false", "10.0.0.254 s3cret true"}, // by BGPPeer name
			paths:    1,
			reports:  map[string]string{"tor": "10.0.0.254", "spine": "10.0.1.254"},
		},
		{
			name: "what cannot be set up is reported, the rest runs",
			peers: []v1.BGPPeer{
				peer("a-no-secret", "10.0.0.250", func(s *v1.BGPPeerSpec) { s.PasswordSecretRef = &v1.SecretReference{Name: "missing"} }),
				peer("b-other-ns", "10.0.0.251", func(s *v1.BGPPeerSpec) {
					s.PasswordSecretRef = &v1.SecretReference{Name: "md5", Namespace: "kube-system"}
				}),
				peer("c-no-profile", "10.0.0.252", func(s *v1.BGPPeerSpec) { s.BFDProfile = "slow" }),
				peer("d-ok", "10.0.0.253", nil),
				peer("e-same-address", "10.0.0.253", nil),
				peer("f-bad-asn", "10.0.0.249", func(s *v1.BGPPeerSpec) { s.PeerASN = 0 }),
			},
			node:     planNode("n1", "10.0.0.1", nil),
			routerID: "10.0.0.1", asn: 65010,
			sessions: []string{"10.0.0.253  false"},
			paths:    1,
			reports: map[string]string{
				"a-no-secret":    "spec.passwordSecretRef: secret ferrolb-system/missing: not found",
				"b-other-ns":     "spec.passwordSecretRef: secret kube-system/md5: the speaker reads Secrets only in its own namespace, ferrolb-system",
				"c-no-profile":   `spec.bfdProfile: BFDProfile "slow" does not exist`,
				"d-ok":           "10.0.0.253",
				"e-same-address": "spec.peerAddress: 10.0.0.253 is already the address of another BGPPeer for this node",
				"f-bad-asn":      "spec.peerASN: 0 is not an AS number (1 to 4294967295)",
			},
			problems: []string{"a-no-secret", "b-other-ns", "c-no-profile", "e-same-address", "f-bad-asn"},
		},
		{
			name:     "a BGPPeer's router ID wins over the node's",
			peers:    []v1.BGPPeer{peer("tor", "10.0.0.254", func(s *v1.BGPPeerSpec) { s.RouterID = "192.0.2.1" })},
			node:     planNode("n1", "10.0.0.1", nil),
			routerID: "192.0.2.1", asn: 65010,
			sessions: []string{"10.0.0.254  false"}, paths: 1,
			reports: map[string]string{"tor": "10.0.0.254"},
		},
		{
			name:     "no IPv4 to be the router ID: no sessions, and it says so",
			peers:    []v1.BGPPeer{peer("tor", "2001:db8::1", nil)},
			node:     planNode("n1", "2001:db8::10", nil),
			reports:  map[string]string{"tor": "no BGP router ID: the node has no IPv4 InternalIP; set spec.routerID on its BGPPeers"},
			problems: []string{"no BGP router ID"},
		},
		{
			name:     "an excluded node keeps its sessions and sends nothing",
			peers:    []v1.BGPPeer{peer("tor", "10.0.0.254", nil)},
			node:     planNode("n1", "10.0.0.1", map[string]string{LabelExcludeFromLB: "true"}),
			routerID: "10.0.0.1", asn: 65010,
			sessions: []string{"10.0.0.254  false"}, paths: 0,
			reports: map[string]string{"tor": "10.0.0.254"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := base
			r.BGPPeers = tt.peers
			snap, problems := config.For(r)
			cl := cluster{services: svcs, nodes: []corev1.Node{tt.node}, secrets: []corev1.Secret{secret}, bgpPeers: tt.peers}
			plan := planBGP(snap, problems, cl, bgpInput{node: &tt.node, class: config.LoadBalancerClass, namespace: "ferrolb-system"})
			if got := plan.state.RouterID.String(); tt.routerID != "" && got != tt.routerID || tt.routerID == "" && plan.state.RouterID.IsValid() {
				t.Errorf("router ID %s, want %q", got, tt.routerID)
			}
			if plan.state.ASN != tt.asn {
				t.Errorf("ASN %d, want %d", plan.state.ASN, tt.asn)
			}
			var sessions []string
			for _, p := range plan.state.Peers {
				sessions = append(sessions, fmt.Sprintf("%s %s %v", p.Address, p.Password, p.BFD.Enabled))
			}
			if !slices.Equal(sessions, tt.sessions) {
				t.Errorf("sessions %q, want %q", sessions, tt.sessions)
			}
			if len(plan.state.Paths) != tt.paths {
				t.Errorf("%d paths, want %d: %v", len(plan.state.Paths), tt.paths, plan.state.Paths)
			}
			// Each path here carries the one address of default/web: the metric's view.
			if got := plan.sends.byAddress()[netip.MustParseAddr("192.0.2.10")]; tt.paths > 0 && !slices.Equal(got, []string{"default/web"}) || tt.paths == 0 && len(plan.sends) > 0 {
				t.Errorf("sends %v, want default/web's address only with paths", plan.sends)
			}
			got := map[string]string{}
			for name, r := range plan.reports {
				got[name] = r.why
				if r.why == "" {
					got[name] = r.addr.String()
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.reports) {
				t.Errorf("reports\n%v\nwant\n%v", got, tt.reports)
			}
			var evented []string
			for _, p := range plan.problems {
				if p.event {
					evented = append(evented, p.msg)
				}
			}
			if len(evented) != len(tt.problems) {
				t.Errorf("evented problems %q, want one for each of %q", evented, tt.problems)
			}
			for _, w := range tt.problems {
				if !slices.ContainsFunc(evented, func(m string) bool { return strings.Contains(m, w) }) {
					t.Errorf("no evented problem about %q in %q", w, evented)
				}
			}
		})
	}
}

func TestReporterOncePerProblem(t *testing.T) {
	var lines []string
	r := newReporter(funcLogger(func(msg string) { lines = append(lines, msg) }), nil, "n1")
	pool := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "broken"}}
	bad := nodeProblem{obj: pool, kind: "IPPool", reason: "InvalidConfiguration", msg: "IPPool broken: spec.blocks: a pool needs at least one block: ignored"}
	r.report("layer2", []nodeProblem{bad})
	r.report("bgp", []nodeProblem{bad})
	r.report("layer2", []nodeProblem{bad})
	if len(lines) != 1 {
		t.Fatalf("logged %d times while it lasted, want once: %q", len(lines), lines)
	}
	if got := problemCounts(t, r)["IPPool"]; got != 1 {
		t.Errorf("ferrolb_speaker_config_problems{kind=IPPool} = %v while both reconciles have it, want 1", got)
	}
	r.report("layer2", nil)
	r.report("bgp", nil)
	if got := problemCounts(t, r)["IPPool"]; got != 0 {
		t.Errorf("ferrolb_speaker_config_problems{kind=IPPool} = %v once fixed, want 0", got)
	}
	r.report("layer2", []nodeProblem{bad})
	if len(lines) != 2 {
		t.Fatalf("a problem that went away and came back is logged %d times in all, want 2", len(lines))
	}
}

// problemCounts reads ferrolb_speaker_config_problems by kind.
func problemCounts(t *testing.T, r *reporter) map[string]float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, len(configKinds))
	r.Collect(ch)
	close(ch)
	out := map[string]float64{}
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		out[pb.GetLabel()[0].GetValue()] = pb.GetGauge().GetValue()
	}
	if len(out) != len(configKinds) {
		t.Errorf("series for %v, want one per kind of %v", out, configKinds)
	}
	return out
}

// TestPlanL2Unmatched: a policy that selects this node and none of its interfaces is named,
// so that the node says so (an Event on it); one whose nodeSelector leaves the node out is not.
func TestPlanL2Unmatched(t *testing.T) {
	snap := mustSnapshot(t, config.Resources{L2Policies: []v1.L2Policy{
		{ObjectMeta: metav1.ObjectMeta{Name: "bonds"}, Spec: v1.L2PolicySpec{Interfaces: []string{"bond[0-9]+"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "ens"}, Spec: v1.L2PolicySpec{Interfaces: []string{"en[a-z0-9]+"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere"}, Spec: v1.L2PolicySpec{Interfaces: []string{"bond[0-9]+"},
			NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "b"}}}},
	}})
	nodes := []corev1.Node{planNode("n1", "10.0.0.1", map[string]string{"rack": "a"})}
	plan := planL2(snap, cluster{nodes: nodes}, l2Input{node: "n1", class: config.LoadBalancerClass, interfaces: []string{"enp3s0", "veth1a2b"}})
	if !slices.Equal(plan.unmatched, []string{"bonds"}) {
		t.Errorf("unmatched policies %v, want [bonds]", plan.unmatched)
	}
}

func funcLogger(f func(string)) logr.Logger {
	return funcr.New(func(_, args string) { f(args) }, funcr.Options{})
}

// TestPlanL2Reasons: when nobody announces an address, the Announced condition says why,
// written by one node (the first live one by name, or the elected one, which alone knows its
// interfaces); with no L2Policy in the cluster at all a Service gets no layer 2 condition.
func TestPlanL2Reasons(t *testing.T) {
	pools := []v1.IPPool{{ObjectMeta: metav1.ObjectMeta{Name: "lan"}, Spec: v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "192.0.2.0/24"}}}}}
	nodes := []corev1.Node{
		planNode("n1", "10.0.0.1", nil),
		planNode("n2", "10.0.0.2", map[string]string{"edge": "true", LabelExcludeFromLB: ""}),
	}
	only := func(name string, mod func(*v1.L2PolicySpec)) []v1.L2Policy {
		p := v1.L2Policy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.L2PolicySpec{
			ServiceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"l2": "yes"}}}}
		if mod != nil {
			mod(&p.Spec)
		}
		return []v1.L2Policy{p}
	}
	labelled := func(s corev1.Service) corev1.Service { s.Labels = map[string]string{"l2": "yes"}; return s }
	for _, tt := range []struct {
		name     string
		policies []v1.L2Policy
		svc      corev1.Service
		eps      []discoveryv1.EndpointSlice
		alive    []string
		usable   []string
		writer   string // "" : nobody writes
		status   metav1.ConditionStatus
		reason   string
		message  string
	}{
		{name: "policies exist, none selects the Service", policies: only("p", nil),
			svc: planService("web", false, []string{"192.0.2.10"}), alive: []string{"n1", "n2"}, usable: []string{"eth0"},
			writer: "n1", status: metav1.ConditionFalse, reason: ReasonNoPolicy, message: "no L2Policy selects this Service"},
		{name: "no L2Policy at all: BGP only, no layer 2 condition",
			svc: planService("web", false, []string{"192.0.2.10"}), alive: []string{"n1", "n2"}, usable: []string{"eth0"}},
		{name: "every selected node excluded", policies: only("edge", func(s *v1.L2PolicySpec) {
			s.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"edge": "true"}}
		}), svc: labelled(planService("web", false, []string{"192.0.2.10"})), alive: []string{"n1", "n2"}, usable: []string{"eth0"},
			writer: "n1", status: metav1.ConditionFalse, reason: ReasonExcluded, message: "every node L2Policy edge selects is labelled"},
		{name: "Local without a ready endpoint", policies: only("p", nil),
			svc: labelled(planService("web", true, []string{"192.0.2.10"})), alive: []string{"n1", "n2"}, usable: []string{"eth0"},
			writer: "n1", status: metav1.ConditionFalse, reason: ReasonNoReadyEndpoint, message: "no node L2Policy p selects has a ready endpoint"},
		{name: "the only eligible node is dead", policies: only("p", nil),
			svc: labelled(planService("web", false, []string{"192.0.2.10"})), alive: []string{"n2"}, usable: []string{"eth0"},
			writer: "n2", status: metav1.ConditionFalse, reason: ReasonNoLiveNode, message: "none of the nodes L2Policy p allows (n1) is alive"},
		{name: "elected without an interface up that the policy selects", policies: only("p", func(s *v1.L2PolicySpec) { s.Interfaces = []string{"bond0"} }),
			svc: labelled(planService("web", false, []string{"192.0.2.10"})), alive: []string{"n1", "n2"}, usable: []string{"eth0"},
			writer: "n1", status: metav1.ConditionFalse, reason: ReasonNoInterfaceMatched, message: "n1 is elected and has no interface up that L2Policy p selects"},
		{name: "one address announced, one external IP refused", policies: only("p", func(s *v1.L2PolicySpec) { s.ExternalIPs = true }),
			svc: labelled(planService("web", false, []string{"192.0.2.10"}, "10.9.9.9")), alive: []string{"n1", "n2"}, usable: []string{"eth0"},
			writer: "n1", status: metav1.ConditionTrue, reason: "Layer2",
			message: "announced: 192.0.2.10 by n1 (layer 2 on eth0); not announced: 10.9.9.9 (spec.externalIPs: in no IPPool of L2Policy p)"},
		{name: "a ClusterIP Service's external IP announced", policies: only("p", func(s *v1.L2PolicySpec) { s.ExternalIPs = true }),
			svc: labelled(clusterIPService("cip", "192.0.2.20")), alive: []string{"n1", "n2"}, usable: []string{"eth0"},
			writer: "n1", status: metav1.ConditionTrue, reason: "Layer2", message: "announced: 192.0.2.20 by n1 (layer 2 on eth0)"},
		{name: "a ClusterIP Service with external IPs that no policy announces gets no condition", policies: only("p", nil),
			svc: labelled(clusterIPService("cip", "192.0.2.20")), alive: []string{"n1", "n2"}, usable: []string{"eth0"}},
		{name: "a ClusterIP Service announced before and no longer: told so", policies: only("p", nil),
			svc: func() corev1.Service {
				s := labelled(clusterIPService("cip", "192.0.2.20"))
				s.Status.Conditions = []metav1.Condition{{Type: ConditionAnnounced, Status: metav1.ConditionTrue, Reason: "Layer2"}}
				return s
			}(), alive: []string{"n1", "n2"}, usable: []string{"eth0"},
			writer: "n1", status: metav1.ConditionFalse, reason: ReasonNoPolicy, message: "no L2Policy with externalIPs: true selects this Service"},
		{name: "nobody alive: nobody writes", policies: only("p", nil),
			svc: labelled(planService("web", false, []string{"192.0.2.10"})), usable: []string{"eth0"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			snap := mustSnapshot(t, config.Resources{Pools: pools, L2Policies: tt.policies})
			plan := planL2(snap, cluster{services: []corev1.Service{tt.svc}, nodes: nodes, slices: tt.eps},
				l2Input{node: "n1", class: config.LoadBalancerClass, interfaces: []string{"eth0", "bond0"}})
			for _, n := range []string{"n1", "n2"} {
				_, writes := plan.elect(n, tt.alive, tt.usable)
				if n != tt.writer {
					if len(writes) > 0 {
						t.Errorf("%s writes %+v; want %q to be the only writer", n, writes[0].cond, tt.writer)
					}
					continue
				}
				if len(writes) != 1 {
					t.Fatalf("%s writes %d conditions, want 1", n, len(writes))
				}
				c := writes[0].cond
				if c.Status != tt.status || c.Reason != tt.reason || !strings.Contains(c.Message, tt.message) {
					t.Errorf("condition %s %s %q, want %s %s containing %q", c.Status, c.Reason, c.Message, tt.status, tt.reason, tt.message)
				}
			}
		})
	}
}

// TestAdvertisedConditions: from every node's plan, which nodes send each address to which
// BGPPeers, grouped by peers; False when BGP is in use and nobody sends it; nothing without BGP.
func TestAdvertisedConditions(t *testing.T) {
	v4, v6 := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")
	web := planService("web", false, []string{v4.String(), v6.String()})
	lonely := planService("lonely", false, []string{"192.0.2.11"})
	sends := map[string]serviceSends{"n1": {}, "n2": {}, "n3": {}}
	sends["n1"].add("default/web", v4, "tor")
	sends["n2"].add("default/web", v4, "tor")
	sends["n3"].add("default/web", v4, "spine")
	sends["n3"].add("default/web", v4, "tor")
	sends["n1"].add("default/web", v6, "tor6")
	cl := cluster{services: []corev1.Service{web, lonely}}
	writes := advertisedConditions(cl, config.LoadBalancerClass, sends, true)
	if len(writes) != 2 {
		t.Fatalf("%d writes, want one per Service", len(writes))
	}
	for _, w := range writes {
		c := w.cond
		switch w.svc.Name {
		case "web":
			want := "advertised: 192.0.2.10 by n1, n2 to tor; 192.0.2.10 by n3 to spine, tor; 2001:db8::10 by n1 to tor6"
			if c.Status != metav1.ConditionTrue || c.Reason != ReasonBGP || c.Message != want {
				t.Errorf("web: %s %s %q, want True BGP %q", c.Status, c.Reason, c.Message, want)
			}
		case "lonely":
			if c.Status != metav1.ConditionFalse || c.Reason != ReasonNotAdvertised {
				t.Errorf("lonely: %s %s %q, want False NotAdvertised", c.Status, c.Reason, c.Message)
			}
		}
	}
	// Written already: nothing to write.
	cl.services[0].Status.Conditions = []metav1.Condition{*writes[0].cond}
	cl.services[1].Status.Conditions = []metav1.Condition{*writes[1].cond}
	if again := advertisedConditions(cl, config.LoadBalancerClass, sends, true); len(again) != 0 {
		t.Errorf("unchanged conditions written again: %+v", again[0].cond)
	}
	// Without BGP a Service gets no Advertised condition; one that has it is told it is not.
	if got := advertisedConditions(cluster{services: []corev1.Service{planService("web", false, []string{"192.0.2.10"})}}, config.LoadBalancerClass, nil, false); len(got) != 0 {
		t.Errorf("without BGP: %+v", got[0].cond)
	}
	if got := advertisedConditions(cl, config.LoadBalancerClass, nil, false); len(got) != 1 || got[0].cond.Reason != ReasonNotAdvertised {
		t.Errorf("BGP gone: %d writes, want web's to say NotAdvertised", len(got))
	}
}
