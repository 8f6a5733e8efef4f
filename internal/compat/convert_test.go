package compat_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/compat"
)

func convert(t *testing.T, in string) compat.Result {
	t.Helper()
	srcs, err := compat.Decode(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	return compat.Convert(srcs)
}

// only returns the single output of a conversion, failing the test if there is not exactly one.
func only[T client.Object](t *testing.T, res compat.Result) T {
	t.Helper()
	if len(res.Outputs) != 1 {
		t.Fatalf("got %d outputs, want 1; errors %v", len(res.Outputs), res.Errors)
	}
	o, ok := res.Outputs[0].Object.(T)
	if !ok {
		t.Fatalf("output is a %T", res.Outputs[0].Object)
	}
	return o
}

// fields lists "field: message" for each warning, to compare against wants of substrings.
func hasWarning(res compat.Result, field, substr string) bool {
	for _, w := range res.Warnings {
		if w.Field == field && strings.Contains(w.Message, substr) {
			return true
		}
	}
	return false
}

func hasError(res compat.Result, field, substr string) bool {
	for _, e := range res.Errors {
		if e.Field == field && strings.Contains(e.Message, substr) {
			return true
		}
	}
	return false
}

const mlbPool = `apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: p, namespace: metallb-system, labels: {tier: gold}}
spec:
`

func TestMetalLBPool(t *testing.T) {
	tests := []struct {
		name      string
		spec      string
		want      v1.IPPoolSpec
		warnField string // a warning on this field is expected; "" for none at all
		warnText  string
	}{
		{
			name: "ascending blocks, no warning",
			spec: "  addresses: [10.0.0.0/30, 10.0.1.1-10.0.1.3]",
			want: v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "10.0.0.0/30"}, {Start: "10.0.1.1", Stop: "10.0.1.3"}}},
		},
		{
			name: "host bits cleared, as MetalLB does",
			spec: "  addresses: [198.51.100.10/24]",
			want: v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "198.51.100.0/24"}}},
		},
		{
			name: "IPv4-mapped CIDR written as IPv4 (the CRD refuses the mapped form)",
			spec: "  addresses: ['::ffff:10.0.2.0/120']",
			want: v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "10.0.2.0/24"}}},
		},
		{
			name: "range with spaces",
			spec: "  addresses: ['10.0.0.1 - 10.0.0.9']",
			want: v1.IPPoolSpec{Blocks: []v1.IPBlock{{Start: "10.0.0.1", Stop: "10.0.0.9"}}},
		},
		{
			name:      "descending blocks with avoidBuggyIPs: first addresses skip .0",
			spec:      "  addresses: [10.0.1.0/24, 10.0.0.0/24]\n  avoidBuggyIPs: true",
			want:      v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "10.0.1.0/24"}, {CIDR: "10.0.0.0/24"}}, AvoidBuggyIPs: true},
			warnField: "spec.addresses", warnText: "(first 10.0.1.1); FerroLB hands out the lowest free address of the pool (first 10.0.0.1)",
		},
		{
			name: "pinned to a namespace without priority: after prioritised pinned pools",
			spec: "  addresses: [10.0.0.0/24]\n  serviceAllocation: {namespaces: [a]}",
			want: v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "10.0.0.0/24"}}, Namespaces: []string{"a"}, Priority: ptr.To(int32(2147483647))},
		},
		{
			name:      "serviceAllocation with priority only: never auto-assigned in MetalLB",
			spec:      "  addresses: [10.0.0.0/24]\n  serviceAllocation: {priority: 5}",
			want:      v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "10.0.0.0/24"}}, Priority: ptr.To(int32(5)), AutoAssign: ptr.To(false)},
			warnField: "spec.serviceAllocation", warnText: "converted as autoAssign: false",
		},
		{
			name:      "namespace selectors only: kept from serving every namespace",
			spec:      "  addresses: [10.0.0.0/24]\n  serviceAllocation: {namespaceSelectors: [{matchLabels: {team: x}}]}",
			want:      v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "10.0.0.0/24"}}, Priority: ptr.To(int32(2147483647)), AutoAssign: ptr.To(false)},
			warnField: "spec.serviceAllocation.namespaceSelectors", warnText: "autoAssign: false",
		},
		{
			name: "service selectors on one label merge into In",
			spec: "  addresses: [10.0.0.0/24]\n  serviceAllocation:\n    serviceSelectors: [{matchLabels: {app: a}}, {matchLabels: {app: b}}]",
			want: v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "10.0.0.0/24"}}, Priority: ptr.To(int32(2147483647)),
				ServiceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{"a", "b"}}}}},
		},
		{
			name: "service selectors that cannot merge: first kept",
			spec: "  addresses: [10.0.0.0/24]\n  serviceAllocation:\n    serviceSelectors: [{matchLabels: {app: a}}, {matchLabels: {tier: b}}]",
			want: v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "10.0.0.0/24"}}, Priority: ptr.To(int32(2147483647)),
				ServiceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"}}},
			warnField: "spec.serviceAllocation.serviceSelectors", warnText: "only the first",
		},
		{
			name: "autoAssign true is the default and not written",
			spec: "  addresses: [10.0.0.0/24]\n  autoAssign: true",
			want: v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "10.0.0.0/24"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := convert(t, mlbPool+tt.spec)
			p := only[*v1.IPPool](t, res)
			if diff := cmp.Diff(tt.want, p.Spec); diff != "" {
				t.Errorf("spec (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(map[string]string{"tier": "gold"}, p.Labels); diff != "" {
				t.Errorf("labels (-want +got):\n%s", diff)
			}
			switch {
			case tt.warnField == "" && len(res.Warnings) > 0:
				t.Errorf("unexpected warnings: %v", res.Warnings)
			case tt.warnField != "" && !hasWarning(res, tt.warnField, tt.warnText):
				t.Errorf("no warning on %s containing %q; got %v", tt.warnField, tt.warnText, res.Warnings)
			}
		})
	}
}

func TestMetalLBPoolErrors(t *testing.T) {
	tests := []struct {
		name, spec, field, text string
	}{
		{"not an address", "  addresses: [10.0.0.300/24]", "spec.addresses[0]", "not a CIDR"},
		{"range backwards", "  addresses: [10.0.0.9-10.0.0.1]", "spec.addresses[0]", "is above"},
		{"mixed families", "  addresses: ['10.0.0.1-fd00::1']", "spec.addresses[0]", "different families"},
		{"bare address", "  addresses: [10.0.0.1]", "spec.addresses[0]", "not a CIDR"},
		{"no addresses", "  addresses: []", "spec.addresses", "at least one"},
		{"IPv4-mapped CIDR beyond the mapped range", "  addresses: ['::ffff:0.0.0.0/95']", "spec.addresses[0]", "IPv4-mapped CIDR shorter than /96"},
		{"wrong type", "  addresses: [10.0.0.0/24]\n  autoAssign: 'no'", "spec.autoAssign", `is the string "no", want true or false`},
		{"bad namespace", "  addresses: [10.0.0.0/24]\n  serviceAllocation: {namespaces: [Not_OK]}", "", "spec.namespaces[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := convert(t, mlbPool+tt.spec)
			if len(res.Outputs) != 0 {
				t.Errorf("got outputs %v, want none", res.Outputs)
			}
			if !hasError(res, tt.field, tt.text) {
				t.Errorf("no error on %q containing %q; got %v", tt.field, tt.text, res.Errors)
			}
		})
	}
}

func TestMetalLBAdvertisementPoolSelectors(t *testing.T) {
	in := mlbPool + "  addresses: [10.0.0.0/24]\n" + `---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: q, labels: {tier: silver}}
spec: {addresses: [10.0.1.0/24]}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: l2}
spec:
  ipAddressPoolSelectors: [{matchLabels: {tier: gold}}]
`
	res := convert(t, in)
	if len(res.Outputs) != 3 {
		t.Fatalf("got %d outputs, want 3; errors %v", len(res.Outputs), res.Errors)
	}
	l2 := res.Outputs[2].Object.(*v1.L2Policy)
	if diff := cmp.Diff([]string{"p"}, l2.Spec.Pools); diff != "" {
		t.Errorf("pools (-want +got):\n%s", diff)
	}
	if !hasWarning(res, "spec.ipAddressPoolSelectors", "pools created later") {
		t.Errorf("no warning about the static resolution; got %v", res.Warnings)
	}
}

const mlbPeer = `apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: peer, namespace: metallb-system}
spec:
  myASN: 64512
  peerAddress: 192.0.2.1
`

func TestMetalLBPeer(t *testing.T) {
	sec := func(d string) *metav1.Duration {
		x, err := time.ParseDuration(d)
		if err != nil {
			t.Fatal(err)
		}
		return &metav1.Duration{Duration: x}
	}
	base := v1.BGPPeerSpec{PeerAddress: "192.0.2.1", LocalASN: 64512, PeerASN: 64513}
	tests := []struct {
		name      string
		spec      string
		want      func(*v1.BGPPeerSpec)
		warnField string
		warnText  string
	}{
		{
			name: "keepalive alone: hold written as 3 x keepalive, as MetalLB derives it",
			spec: "  peerASN: 64513\n  keepaliveTime: 10s",
			want: func(s *v1.BGPPeerSpec) { s.KeepaliveTime, s.HoldTime = sec("10s"), sec("30s") },
		},
		{
			name:      "fractional seconds truncated",
			spec:      "  peerASN: 64513\n  holdTime: 9500ms",
			want:      func(s *v1.BGPPeerSpec) { s.HoldTime = sec("9s") },
			warnField: "spec.holdTime", warnText: "whole seconds",
		},
		{
			name: "dynamicASN internal is iBGP",
			spec: "  dynamicASN: internal",
			want: func(s *v1.BGPPeerSpec) { s.PeerASN = 64512 },
		},
		{
			name: "inline password: a Secret to create",
			spec: "  peerASN: 64513\n  password: s3cret",
			want: func(s *v1.BGPPeerSpec) {
				s.PasswordSecretRef = &v1.SecretReference{Name: "peer-bgp-password", Namespace: "ferrolb-system"}
			},
			warnField: "spec.password", warnText: "kubectl -n ferrolb-system create secret generic peer-bgp-password",
		},
		{
			name: "password Secret: a copy in the speaker's namespace",
			spec: "  peerASN: 64513\n  passwordSecret: {name: bgp}",
			want: func(s *v1.BGPPeerSpec) {
				s.PasswordSecretRef = &v1.SecretReference{Name: "bgp", Namespace: "ferrolb-system"}
			},
			warnField: "spec.passwordSecret", warnText: "kubectl -n metallb-system get secret bgp -o json",
		},
		{
			name: "port, multihop, graceful restart",
			spec: "  peerASN: 64513\n  peerPort: 1179\n  ebgpMultiHop: true\n  enableGracefulRestart: true",
			want: func(s *v1.BGPPeerSpec) {
				s.PeerPort, s.EBGPMultihop = 1179, true
				s.GracefulRestart = &v1.GracefulRestart{Enabled: true}
			},
		},
		{
			name:      "disableMP",
			spec:      "  peerASN: 64513\n  disableMP: true",
			want:      func(*v1.BGPPeerSpec) {},
			warnField: "spec.disableMP", warnText: "one multiprotocol session",
		},
		{
			name:      "a field of a newer MetalLB",
			spec:      "  peerASN: 64513\n  dualStackAddressFamily: true",
			want:      func(*v1.BGPPeerSpec) {},
			warnField: "spec.dualStackAddressFamily", warnText: "not known",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := convert(t, mlbPeer+tt.spec)
			p := only[*v1.BGPPeer](t, res)
			want := *base.DeepCopy()
			tt.want(&want)
			if diff := cmp.Diff(want, p.Spec); diff != "" {
				t.Errorf("spec (-want +got):\n%s", diff)
			}
			switch {
			case tt.warnField == "" && len(res.Warnings) > 0:
				t.Errorf("unexpected warnings: %v", res.Warnings)
			case tt.warnField != "" && !hasWarning(res, tt.warnField, tt.warnText):
				t.Errorf("no warning on %s containing %q; got %v", tt.warnField, tt.warnText, res.Warnings)
			}
		})
	}
}

func TestMetalLBPeerErrors(t *testing.T) {
	tests := []struct{ name, spec, field, text string }{
		{"dynamicASN external", "  dynamicASN: external", "spec.dynamicASN", "needs the peer's AS number"},
		{"hold time too short", "  peerASN: 1\n  holdTime: 2s", "spec.holdTime", "3s to 65535s"},
		{"keepalive not below hold", "  peerASN: 1\n  holdTime: 9s\n  keepaliveTime: 9s", "", "keepaliveTime"},
		{"no peer ASN", "  peerASN: 0", "", "peerASN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := convert(t, mlbPeer+tt.spec)
			if len(res.Outputs) != 0 || !hasError(res, tt.field, tt.text) {
				t.Errorf("outputs %d, errors %v; want none, and an error on %q containing %q", len(res.Outputs), res.Errors, tt.field, tt.text)
			}
		})
	}
}

func TestMetalLBCommunities(t *testing.T) {
	in := `apiVersion: metallb.io/v1beta1
kind: Community
metadata: {name: c}
spec:
  communities:
  - {name: big, value: "large:64512:1:2"}
  - {name: small, value: "64512:7"}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: a}
spec:
  communities: [big, small, "65000:1", "large:1:2:3", unknown-alias]
  localPref: 0
  aggregationLength: 32
  aggregationLengthV6: 64
`
	res := convert(t, in)
	a := only[*v1.BGPAdvertisement](t, res)
	want := v1.BGPAdvertisementSpec{
		Communities:         []string{"64512:7", "65000:1"},
		LargeCommunities:    []string{"64512:1:2", "1:2:3"},
		AggregationLengthV6: ptr.To(int32(64)),
	}
	if diff := cmp.Diff(want, a.Spec); diff != "" {
		t.Errorf("spec (-want +got):\n%s", diff)
	}
	if !hasWarning(res, "spec.communities[4]", "not converted") {
		t.Errorf("no warning about the unknown alias; got %v", res.Warnings)
	}
}

func TestMetalLBAdvertisementNodeSelectorsSplit(t *testing.T) {
	in := `apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: a}
spec:
  nodeSelectors: [{matchLabels: {rack: r1}}, {matchLabels: {zone: z2}}]
`
	res := convert(t, in)
	if len(res.Outputs) != 2 {
		t.Fatalf("got %d outputs, want 2 (one per node selector); errors %v", len(res.Outputs), res.Errors)
	}
	for i, want := range []string{"rack", "zone"} {
		a := res.Outputs[i].Object.(*v1.BGPAdvertisement)
		if _, ok := a.Spec.NodeSelector.MatchLabels[want]; !ok || a.Name != "a-"+string(rune('0'+i)) {
			t.Errorf("output %d: %s with node selector %v", i, a.Name, a.Spec.NodeSelector)
		}
	}
	if len(res.Warnings) != 0 {
		t.Errorf("splitting is exact for BGP; got warnings %v", res.Warnings)
	}
}

func TestMetalLBBFD(t *testing.T) {
	in := `apiVersion: metallb.io/v1beta1
kind: BFDProfile
metadata: {name: b}
spec: {echoMode: true, echoInterval: 20, passiveMode: true, minimumTtl: 10, detectMultiplier: 5}
---
apiVersion: metallb.io/v1beta1
kind: BFDProfile
metadata: {name: c}
spec: {echoInterval: 20, minimumTtl: 254}
`
	res := convert(t, in)
	if len(res.Outputs) != 2 {
		t.Fatalf("got %d outputs; errors %v", len(res.Outputs), res.Errors)
	}
	b := res.Outputs[0].Object.(*v1.BFDProfile)
	if diff := cmp.Diff(v1.BFDProfileSpec{DetectMultiplier: 5}, b.Spec); diff != "" {
		t.Errorf("b (-want +got):\n%s", diff)
	}
	for _, f := range []string{"spec.echoMode", "spec.passiveMode", "spec.minimumTtl", "spec.echoInterval"} {
		if !hasWarning(res, f, "not converted") {
			t.Errorf("no warning on %s; got %v", f, res.Warnings)
		}
	}
	// minimumTtl 254 is FerroLB's default, left to the API server.
	if c := res.Outputs[1].Object.(*v1.BFDProfile); c.Spec != (v1.BFDProfileSpec{}) {
		t.Errorf("c: %+v; want echoInterval dropped and nothing else set", c.Spec)
	}
}

func TestMetalLBMultihopBFD(t *testing.T) {
	res := convert(t, mlbPeer+"  peerASN: 64513\n  ebgpMultiHop: true\n  bfdProfile: fast")
	p := only[*v1.BGPPeer](t, res)
	if !p.Spec.EBGPMultihop || p.Spec.BFDProfile != "" || !hasWarning(res, "spec.bfdProfile", "without BFD") {
		t.Errorf("spec %+v, warnings %v; want multihop kept, BFD dropped with a warning", p.Spec, res.Warnings)
	}
}

func TestCiliumPool(t *testing.T) {
	tests := []struct {
		name, in  string
		want      []v1.IPBlock
		warnField string
	}{
		{
			name: "No: first and last reserved",
			in:   "apiVersion: cilium.io/v2\nspec: {allowFirstLastIPs: 'No', blocks: [{cidr: 10.0.0.0/24}, {cidr: 10.0.1.0/31}, {cidr: 'fd00::/127'}]}",
			want: []v1.IPBlock{{Start: "10.0.0.1", Stop: "10.0.0.254"}, {CIDR: "10.0.1.0/31"}, {CIDR: "fd00::/127"}},
		},
		{
			name: "v2 unset: handed out, as current Cilium does",
			in:   "apiVersion: cilium.io/v2\nspec: {blocks: [{cidr: 10.0.0.0/24}]}",
			want: []v1.IPBlock{{CIDR: "10.0.0.0/24"}},
		},
		{
			name: "v2alpha1 Yes",
			in:   "apiVersion: cilium.io/v2alpha1\nspec: {allowFirstLastIPs: 'Yes', blocks: [{cidr: 10.0.0.0/24}]}",
			want: []v1.IPBlock{{CIDR: "10.0.0.0/24"}},
		},
		{
			name:      "v2alpha1 unset: reserved, with a warning",
			in:        "apiVersion: cilium.io/v2alpha1\nspec: {blocks: [{cidr: 10.0.0.0/30}]}",
			want:      []v1.IPBlock{{Start: "10.0.0.1", Stop: "10.0.0.2"}},
			warnField: "spec.allowFirstLastIPs",
		},
		{
			name: "v2alpha1 unset with only ranges: nothing to reserve, no warning",
			in:   "apiVersion: cilium.io/v2alpha1\nspec: {blocks: [{start: 10.0.0.1, stop: 10.0.0.5}, {start: 10.0.0.9}]}",
			want: []v1.IPBlock{{Start: "10.0.0.1", Stop: "10.0.0.5"}, {Start: "10.0.0.9", Stop: "10.0.0.9"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := convert(t, tt.in+"\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: p}\n")
			p := only[*v1.IPPool](t, res)
			if diff := cmp.Diff(tt.want, p.Spec.Blocks); diff != "" {
				t.Errorf("blocks (-want +got):\n%s", diff)
			}
			switch {
			case tt.warnField == "" && len(res.Warnings) > 0:
				t.Errorf("unexpected warnings: %v", res.Warnings)
			case tt.warnField != "" && !hasWarning(res, tt.warnField, ""):
				t.Errorf("no warning on %s; got %v", tt.warnField, res.Warnings)
			}
		})
	}
}

func TestCiliumL2(t *testing.T) {
	in := `apiVersion: cilium.io/v2alpha1
kind: CiliumL2AnnouncementPolicy
metadata: {name: p}
spec:
  interfaces: ['^eth[0-9]+', 'bond0$', 'eth0|eth1', '^exact$', 'vlan', 'x\$']
`
	res := convert(t, in)
	p := only[*v1.L2Policy](t, res)
	want := []string{"^eth[0-9]+.*", ".*bond0$", ".*(?:eth0|eth1).*", "^exact$", ".*vlan.*", `.*x\$.*`}
	if diff := cmp.Diff(want, p.Spec.Interfaces); diff != "" {
		t.Errorf("interfaces (-want +got):\n%s", diff)
	}
	if p.Spec.LoadBalancerIPs == nil || *p.Spec.LoadBalancerIPs || p.Spec.ExternalIPs {
		t.Errorf("loadBalancerIPs %v, externalIPs %v; want both false, Cilium's defaults", p.Spec.LoadBalancerIPs, p.Spec.ExternalIPs)
	}
}

func TestCiliumPeer(t *testing.T) {
	in := `apiVersion: cilium.io/v2alpha1
kind: CiliumBGPPeeringPolicy
metadata: {name: p}
spec:
  virtualRouters:
  - localASN: 64512
    neighbors:
    - peerAddress: 'fd00::1/128'
      peerASN: 65000
      eBGPMultihopTTL: 4
      holdTimeSeconds: 9
      keepAliveTimeSeconds: 9
      connectRetryTimeSeconds: 100000
      families: [{afi: ipv6, safi: unicast}, {afi: l2vpn, safi: evpn}]
`
	res := convert(t, in)
	p := only[*v1.BGPPeer](t, res)
	want := v1.BGPPeerSpec{
		PeerAddress: "fd00::1", LocalASN: 64512, PeerASN: 65000, EBGPMultihop: true,
		HoldTime: &metav1.Duration{Duration: 9e9}, KeepaliveTime: &metav1.Duration{Duration: 3e9},
		ConnectTime: &metav1.Duration{Duration: 65535e9}, Families: []v1.AddressFamily{v1.IPv6Unicast},
	}
	if diff := cmp.Diff(want, p.Spec); diff != "" {
		t.Errorf("spec (-want +got):\n%s", diff)
	}
	if p.Name != "p-64512-fd00--1" {
		t.Errorf("name %q", p.Name)
	}
	for _, f := range []string{
		"spec.virtualRouters[0].neighbors[0].eBGPMultihopTTL",
		"spec.virtualRouters[0].neighbors[0].keepAliveTimeSeconds",
		"spec.virtualRouters[0].neighbors[0].connectRetryTimeSeconds",
		"spec.virtualRouters[0].neighbors[0].families[1]",
	} {
		if !hasWarning(res, f, "") {
			t.Errorf("no warning on %s; got %v", f, res.Warnings)
		}
	}
}

func TestCiliumV2MissingPeerConfig(t *testing.T) {
	in := `apiVersion: cilium.io/v2
kind: CiliumBGPClusterConfig
metadata: {name: c}
spec:
  bgpInstances:
  - name: i
    localASN: 65000
    peers:
    - {name: a, peerAddress: 192.0.2.1, peerASN: 65001, peerConfigRef: {name: missing}}
    - {name: b, peerAddress: 192.0.2.2}
`
	res := convert(t, in)
	p := only[*v1.BGPPeer](t, res)
	if p.Name != "a" || !hasWarning(res, "spec.bgpInstances[0].peers[0].peerConfigRef", "not in this input") {
		t.Errorf("peer %s, warnings %v", p.Name, res.Warnings)
	}
	if !hasError(res, "spec.bgpInstances[0].peers[1].peerASN", "needs the peer's AS number") {
		t.Errorf("errors %v", res.Errors)
	}
}

func TestCiliumCommunities(t *testing.T) {
	in := `apiVersion: cilium.io/v2
kind: CiliumBGPClusterConfig
metadata: {name: c}
spec:
  bgpInstances:
  - name: i
    localASN: 65000
    peers: [{name: a, peerAddress: 192.0.2.1, peerASN: 65001, peerConfigRef: {name: pc}}]
---
apiVersion: cilium.io/v2
kind: CiliumBGPPeerConfig
metadata: {name: pc}
spec:
  families: [{afi: ipv4, safi: unicast, advertisements: {matchLabels: {adv: x}}}]
---
apiVersion: cilium.io/v2
kind: CiliumBGPAdvertisement
metadata: {name: ad, labels: {adv: x}}
spec:
  advertisements:
  - advertisementType: Service
    service: {addresses: [LoadBalancerIP]}
    selector: {}
    attributes:
      communities:
        standard: ["4294967042", "64512:1"]
        wellKnown: [no-export, planned-shut, llgr-stale]
        large: ["1:2:3"]
`
	res := convert(t, in)
	if len(res.Outputs) != 2 {
		t.Fatalf("got %d outputs; errors %v", len(res.Outputs), res.Errors)
	}
	a := res.Outputs[1].Object.(*v1.BGPAdvertisement)
	want := v1.BGPAdvertisementSpec{
		Peers:            []string{"a"},
		ServiceSelector:  &metav1.LabelSelector{},
		Communities:      []string{"65535:65282", "64512:1", "no-export", "65535:0", "65535:6"},
		LargeCommunities: []string{"1:2:3"},
	}
	if diff := cmp.Diff(want, a.Spec); diff != "" {
		t.Errorf("spec (-want +got):\n%s", diff)
	}
	if !res.Clean() {
		t.Errorf("warnings %v, errors %v; want none", res.Warnings, res.Errors)
	}
}

func TestServiceChecks(t *testing.T) {
	in := `apiVersion: v1
kind: Service
metadata:
  name: s
  namespace: web
  annotations:
    lbipam.cilium.io/sharing-cross-namespace: "*"
    io.cilium/lb-ipam-sharing-key: k
    metallb.io/ip-allocated-from-pool: p
    metallb.io/loadBalancerIPs: 192.0.2.1
    service.cilium.io/global: "true"
spec:
  type: LoadBalancer
  loadBalancerClass: io.cilium/l2-announcer
`
	res := convert(t, in)
	if len(res.Outputs) != 0 {
		t.Errorf("Services produce no output; got %v", res.Outputs)
	}
	for _, f := range []string{
		"spec.loadBalancerClass",
		"metadata.annotations[lbipam.cilium.io/sharing-cross-namespace]",
		"metadata.annotations[io.cilium/lb-ipam-sharing-key]",
	} {
		if !hasWarning(res, f, "") {
			t.Errorf("no warning on %s; got %v", f, res.Warnings)
		}
	}
	if len(res.Warnings) != 3 {
		t.Errorf("got %d warnings, want 3: %v", len(res.Warnings), res.Warnings)
	}
}

func TestDuplicateNames(t *testing.T) {
	in := mlbPool + "  addresses: [10.0.0.0/24]\n---\n" + strings.Replace(mlbPool, "metallb-system", "other", 1) + "  addresses: [10.0.1.0/24]\n"
	res := convert(t, in)
	if len(res.Outputs) != 1 || !hasError(res, "metadata.name", "rename one") {
		t.Errorf("outputs %d, errors %v; want the second pool refused", len(res.Outputs), res.Errors)
	}
}

func TestDecodeList(t *testing.T) {
	in := `# kubectl get -o yaml
apiVersion: v1
kind: List
items:
- apiVersion: metallb.io/v1beta1
  kind: IPAddressPool
  metadata: {name: a, namespace: metallb-system, uid: x, resourceVersion: "1", creationTimestamp: "2024-01-01T00:00:00Z", managedFields: [{manager: kubectl}]}
  spec: {addresses: [10.0.0.0/24], autoAssign: true, avoidBuggyIPs: false}
  status: {assignedIPv4: 0}
---
---
{"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": "b"}, "spec": {"addresses": ["10.0.1.0/24"]}}
`
	res := convert(t, in)
	if len(res.Outputs) != 2 || !res.Clean() {
		t.Fatalf("outputs %d, warnings %v, errors %v; want 2 clean", len(res.Outputs), res.Warnings, res.Errors)
	}
	if p := res.Outputs[0].Object.(*v1.IPPool); p.UID != "" || p.ResourceVersion != "" || p.Namespace != "" {
		t.Errorf("server-set metadata carried over: %+v", p.ObjectMeta)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, in := range []string{
		"a: [",
		"- just\n- a list",
		"kind: IPAddressPool",
		"apiVersion: v1\nkind: List\nitems: [1]",
		"apiVersion: v1\nkind: List\nitems: 3",
	} {
		if _, err := compat.Decode(strings.NewReader("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n" + in)); err == nil ||
			!strings.Contains(err.Error(), "document 2") {
			t.Errorf("Decode(%q) = %v, want an error naming document 2", in, err)
		}
	}
}

func TestCiliumBGPPseudoLabels(t *testing.T) {
	in := `apiVersion: cilium.io/v2alpha1
kind: CiliumBGPPeeringPolicy
metadata: {name: p}
spec:
  virtualRouters:
  - localASN: 64512
    serviceSelector: {matchLabels: {io.kubernetes.service.namespace: prod}}
    neighbors: [{peerAddress: 10.0.0.1/32, peerASN: 64512}]
`
	res := convert(t, in)
	if len(res.Outputs) != 2 || !hasWarning(res, "spec.virtualRouters[0].serviceSelector", "pseudo-labels") {
		t.Errorf("outputs %d, warnings %v", len(res.Outputs), res.Warnings)
	}
}

// errorFields lists the fields of the errors, to compare against a want.
func errorFields(res compat.Result) []string {
	var out []string
	for _, e := range res.Errors {
		out = append(out, e.Field)
	}
	return out
}

// TestEveryTypeError: every field of the wrong type is reported in one run, and the fields
// of the right type are still checked (issue 18: fix echoInterval, run again, then learn about
// receiveInterval).
func TestEveryTypeError(t *testing.T) {
	in := `apiVersion: metallb.io/v1beta1
kind: BFDProfile
metadata: {name: fast}
spec:
  echoInterval: {ms: 50}
  receiveInterval: "300"
  transmitInterval: [270]
  detectMultiplier: 1
  passiveMode: true
`
	res := convert(t, in)
	if len(res.Outputs) != 0 {
		t.Fatalf("outputs %v, want none", res.Outputs)
	}
	want := []string{"spec.detectMultiplier", "spec.echoInterval", "spec.receiveInterval", "spec.transmitInterval"}
	if diff := cmp.Diff(want, errorFields(res)); diff != "" {
		t.Errorf("error fields (-want +got):\n%s\n%v", diff, res.Errors)
	}
	for field, text := range map[string]string{
		"spec.echoInterval":     "is an object, want a number of milliseconds, such as 300; not converted",
		"spec.receiveInterval":  `is the string "300", want a number of milliseconds, such as 300 (write the number without quotes)`,
		"spec.transmitInterval": "is a list, want a number",
		"spec.detectMultiplier": "1 is not 2 to 255",
	} {
		if !hasError(res, field, text) {
			t.Errorf("no error on %s containing %q; got %v", field, text, res.Errors)
		}
	}
	// Warnings about the fields that decoded still come: passiveMode has no equivalent.
	if !hasWarning(res, "spec.passiveMode", "always sends first") {
		t.Errorf("warnings %v", res.Warnings)
	}
}

func TestTypeErrorWording(t *testing.T) {
	tests := []struct{ name, in, field, text string }{
		{"a string for a list", mlbPool + "  addresses: 10.0.0.0/24", "spec.addresses", `is the string "10.0.0.0/24", want a list`},
		{"a list for a string", mlbPeer + "  peerASN: 1\n  routerID: [10.0.0.1]", "spec.routerID", "is a list, want a string"},
		{"an object for a string", mlbPeer + "  peerASN: 1\n  vrf: {name: red}", "spec.vrf", "is an object, want a string"},
		{"a number for a duration", mlbPeer + "  peerASN: 1\n  holdTime: 90", "spec.holdTime", "is the number 90, want a duration such as 90s"},
		{"not a duration", mlbPeer + "  peerASN: 1\n  holdTime: 90 seconds", "spec.holdTime", `is the string "90 seconds", want a duration`},
		{"out of range", mlbPeer + "  peerASN: 1\n  peerPort: 70000", "spec.peerPort", "is the number 70000, want a number from 0 to 65535"},
		{"a fraction", mlbPeer + "  peerASN: 1.5", "spec.peerASN", "is the number 1.5, want a whole number"},
		{"a boolean for a string", mlbPeer + "  peerASN: 1\n  interface: no", "spec.interface", "YAML reads unquoted yes, no"},
		{"a number for a string", mlbPeer + "  peerASN: 1\n  vrf: 10", "spec.vrf", "is the number 10, want a string (quote the value)"},
		{"a label", strings.Replace(mlbPool, "tier: gold", "tier: true", 1) + "  addresses: [10.0.0.0/24]",
			"metadata.labels.tier", "is the boolean true, want a string"},
		{"a name", "apiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {name: 12}\n", "metadata.name", "is the number 12, want a string"},
		{"a Community's entries in an advertisement", `apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: a}
spec:
  communities:
  - {name: vpn-only, value: '1234:1'}
`, "spec.communities[0]", `is an object, want a string: a community (64512:100, or large:64512:1:2) or the name of an alias ` +
			`that a Community object defines; name/value pairs belong in a Community (kind Community, metallb.io/v1beta1, ` +
			`converted in the same run): write the alias's name here, "vpn-only"; not converted`},
		{"Cilium", "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: p}\nspec:\n  blocks: {cidr: 10.0.0.0/24}\n",
			"spec.blocks", "is an object, want a list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := convert(t, tt.in)
			if len(res.Outputs) != 0 || !hasError(res, tt.field, tt.text) {
				t.Errorf("outputs %d, errors %v; want none, and an error on %q containing %q", len(res.Outputs), res.Errors, tt.field, tt.text)
			}
			if tt.field != "metadata.name" && hasError(res, "metadata.name", "missing") {
				t.Errorf("an error about the name: %v", res.Errors)
			}
		})
	}
}

// TestBrokenObjectChecked: an object with a field of the wrong type is still checked as a
// whole, without reporting again the fields that the error left empty.
func TestBrokenObjectChecked(t *testing.T) {
	res := convert(t, `apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: peer}
spec:
  myASN: "64512"
  peerASN: 64513
  peerAddress: [192.0.2.1]
  routerID: fd00::1
  keepaliveTime: 500ms
  holdTime: [90s]
  Password: s3cret
`)
	want := []string{"", "spec.holdTime", "spec.keepaliveTime", "spec.myASN", "spec.peerAddress"}
	if diff := cmp.Diff(want, errorFields(res)); diff != "" {
		t.Errorf("error fields (-want +got):\n%s\n%v", diff, res.Errors)
	}
	// The router ID is checked as the speaker would (internal/config), with the missing
	// address and AS number filled in.
	if !hasError(res, "", `spec.routerID: "fd00::1" is not an IPv4 address`) {
		t.Errorf("errors %v", res.Errors)
	}
	// encoding/json would take Password for password; MetalLB (the API server) would not.
	if !hasWarning(res, "spec.Password", "case-sensitive, this one is spelt password") || hasWarning(res, "spec.password", "") {
		t.Errorf("warnings %v", res.Warnings)
	}
}

func TestEveryValueError(t *testing.T) {
	tests := []struct {
		name, in string
		fields   []string
	}{
		{"pool addresses", mlbPool + "  addresses: [10.0.0.300/24, 10.0.0.0/24, 10.0.0.9-10.0.0.1]",
			[]string{"spec.addresses[0]", "spec.addresses[2]"}},
		{"peer timers", mlbPeer + "  dynamicASN: external\n  holdTime: 2s\n  connectTime: 0s",
			[]string{"spec.connectTime", "spec.dynamicASN", "spec.holdTime"}},
		{"Cilium pool", "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: p}\nspec:\n  allowFirstLastIPs: maybe\n" +
			"  blocks: [{cidr: 10.0.0.0/33}, {start: 10.0.0.1}, {stop: 10.0.0.1}]\n",
			[]string{"spec.allowFirstLastIPs", "spec.blocks[0]", "spec.blocks[2]"}},
		{"Cilium neighbor", `apiVersion: cilium.io/v2alpha1
kind: CiliumBGPPeeringPolicy
metadata: {name: p}
spec:
  virtualRouters:
  - localASN: 0
    neighbors:
    - {peerAddress: 10.0.0.0/24, peerASN: 65000, holdTimeSeconds: 2, connectRetryTimeSeconds: 0}
`, []string{"spec.virtualRouters[0].localASN", "spec.virtualRouters[0].neighbors[0].connectRetryTimeSeconds",
			"spec.virtualRouters[0].neighbors[0].holdTimeSeconds", "spec.virtualRouters[0].neighbors[0].peerAddress"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := convert(t, tt.in)
			if len(res.Outputs) != 0 {
				t.Errorf("outputs %v, want none", res.Outputs)
			}
			if diff := cmp.Diff(tt.fields, errorFields(res)); diff != "" {
				t.Errorf("error fields (-want +got):\n%s\n%v", diff, res.Errors)
			}
		})
	}
}

// TestBFDProfileNotConverted: a converted BGPPeer whose BFDProfile is not converted would come
// up NotConfigured on every node: a warning names both.
func TestBFDProfileNotConverted(t *testing.T) {
	const profile = "---\napiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {name: fast}\nspec:\n"
	tests := []struct{ name, in, text string }{
		{"invalid", profile + "  receiveInterval: 5", `BFDProfile "fast" was not converted (see its errors): FerroLB's speaker opens no session to BGPPeer "peer"`},
		{"mistyped", profile + "  receiveInterval: 5ms", `BFDProfile "fast" was not converted`},
		{"missing", "", `BFDProfile "fast" is not in this input`},
		{"converted", profile + "  receiveInterval: 50", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := convert(t, mlbPeer+"  peerASN: 64513\n  bfdProfile: fast\n"+tt.in)
			var peer *v1.BGPPeer
			for _, o := range res.Outputs {
				if p, ok := o.Object.(*v1.BGPPeer); ok {
					peer = p
				}
			}
			if peer == nil || peer.Spec.BFDProfile != "fast" {
				t.Fatalf("the peer is converted with its profile, as in MetalLB; got outputs %v", res.Outputs)
			}
			switch {
			case tt.text == "" && hasWarning(res, "spec.bfdProfile", ""):
				t.Errorf("warnings %v", res.Warnings)
			case tt.text != "" && !hasWarning(res, "spec.bfdProfile", tt.text):
				t.Errorf("no warning on spec.bfdProfile containing %q; got %v", tt.text, res.Warnings)
			}
		})
	}
}

func TestCiliumV2BrokenPeerConfig(t *testing.T) {
	in := `apiVersion: cilium.io/v2
kind: CiliumBGPClusterConfig
metadata: {name: c}
spec:
  bgpInstances:
  - name: i
    localASN: 65000
    peers:
    - {name: a, peerAddress: 192.0.2.1, peerASN: 65001, peerConfigRef: {name: pc}}
---
apiVersion: cilium.io/v2
kind: CiliumBGPPeerConfig
metadata: {name: pc}
spec:
  timers: {holdTimeSeconds: "90", keepAliveTimeSeconds: 0}
`
	res := convert(t, in)
	if len(res.Outputs) != 0 {
		t.Errorf("outputs %v; want none: the peer's settings are not known", res.Outputs)
	}
	want := []string{"spec.bgpInstances[0].peers[0].peerConfigRef", "spec.timers.holdTimeSeconds", "spec.timers.keepAliveTimeSeconds"}
	if diff := cmp.Diff(want, errorFields(res)); diff != "" {
		t.Errorf("error fields (-want +got):\n%s\n%v", diff, res.Errors)
	}
	if hasWarning(res, "spec.bgpInstances[0].peers[0].peerConfigRef", "not in this input") {
		t.Errorf("warnings %v", res.Warnings)
	}
}

func TestCiliumConfig(t *testing.T) {
	const cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cilium-config, namespace: kube-system}\ndata:\n"
	tests := []struct {
		name, data string
		want       map[string]string // field: text
	}{
		{"defaults", "  kube-proxy-replacement: 'false'\n  bpf-lb-mode: snat\n  bpf-lb-algorithm: random\n  bpf-lb-acceleration: disabled\n  debug: 'false'", nil},
		{"dsr and maglev", "  kube-proxy-replacement: 'true'\n  bpf-lb-mode: dsr\n  bpf-lb-algorithm: maglev\n  bpf-lb-maglev-table-size: '65521'", map[string]string{
			"data.kube-proxy-replacement":   "keep Cilium's kube-proxy replacement running",
			"data.bpf-lb-mode":              "--datapath=xdp (the chart's speaker.datapath=xdp) and --datapath-dsr (speaker.datapathDSR=true)",
			"data.bpf-lb-algorithm":         "ferrolb speaker --datapath=xdp",
			"data.bpf-lb-maglev-table-size": "65521: ferrolb speaker --datapath-maglev-table-size=65521 (the chart's speaker.datapathMaglevTableSize=65521)",
		}},
		{"acceleration and sizes", "  bpf-lb-acceleration: best-effort\n  bpf-lb-maglev-table-size: '1000'\n  bpf-lb-maglev-hash-seed: JLfvgnHc2kaSUFaI\n  bpf-ct-global-tcp-max: '1048576'", map[string]string{
			"data.bpf-lb-acceleration":      "--datapath-xdp-mode=auto (speaker.datapathXDPMode=auto)",
			"data.bpf-lb-maglev-table-size": `"1000" is not a Maglev table size: FerroLB's --datapath-maglev-table-size (speaker.datapathMaglevTableSize) takes a prime from 251 to 16777216`,
			"data.bpf-lb-maglev-hash-seed":  "not converted",
			// 1048576 TCP and Cilium's default 262144 others.
			"data.bpf-ct-global-tcp-max": "--datapath-conntrack-entries=1310720 (the chart's speaker.datapathConntrackEntries=1310720)",
		}},
		{"generic, and conntrack sizes past FerroLB's bound", "  bpf-lb-acceleration: generic\n  bpf-ct-global-tcp-max: '16777216'\n  bpf-ct-global-any-max: '8388608'", map[string]string{
			"data.bpf-lb-acceleration":   "--datapath-xdp-mode=generic",
			"data.bpf-ct-global-tcp-max": "--datapath-conntrack-entries=16777216 (their sum, 25165824, brought within FerroLB's 1024 to 16777216)",
		}},
		{"conntrack any only, and a bad acceleration", "  bpf-ct-global-any-max: '2048'\n  bpf-lb-acceleration: turbo", map[string]string{
			"data.bpf-lb-acceleration":   `"turbo" is not an acceleration ferrolb convert knows`,
			"data.bpf-ct-global-any-max": "--datapath-conntrack-entries=526336 ",
		}},
		{"a conntrack size that is no number", "  bpf-ct-global-tcp-max: lots", map[string]string{
			"data.bpf-ct-global-tcp-max": `"lots" is not a number of entries`,
		}},
		{"as guides write it", "  loadbalancer-mode: dsr\n  loadbalancer-algorithm: maglev", map[string]string{
			"data.loadbalancer-mode":      "loadbalancer-mode is read here as bpf-lb-mode",
			"data.loadbalancer-algorithm": "--datapath=xdp",
		}},
		{"before Cilium 1.10", "  node-port-mode: hybrid\n  node-port-acceleration: native\n  devices: eth0", map[string]string{
			"data.node-port-mode":         "one mode for both",
			"data.node-port-acceleration": "(Cilium's devices: eth0). FerroLB's equivalent is ferrolb speaker --datapath=xdp (the chart's speaker.datapath=xdp) --datapath-xdp-mode=native",
		}},
		{"L2, BGP and LB IPAM", "  enable-l2-announcements: true\n  l2-announcements-lease-duration: 3s\n  enable-bgp-control-plane: 'true'\n  enable-lb-ipam: 'true'", map[string]string{
			"data.enable-l2-announcements":  "--member-interval",
			"data.enable-bgp-control-plane": "bgpControlPlane.enabled=false",
			"data.enable-lb-ipam":           "enableLBIPAM=false",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool := "---\n" + mlbPool + "  addresses: [10.0.0.0/24]\n"
			res := convert(t, cm+tt.data+"\n"+pool)
			if len(res.Errors) != 0 || len(res.Outputs) != 1 {
				t.Errorf("errors %v, outputs %d; want none, and the pool", res.Errors, len(res.Outputs))
			}
			if len(res.Warnings) != len(tt.want) {
				t.Errorf("warnings %v, want %d", res.Warnings, len(tt.want))
			}
			for f, text := range tt.want {
				if !hasWarning(res, f, text) {
					t.Errorf("no warning on %s containing %q; got %v", f, text, res.Warnings)
				}
			}
		})
	}
	// Other ConfigMaps are not read.
	res := convert(t, strings.Replace(cm, "cilium-config", "kube-proxy", 1)+"  mode: ipvs\n")
	if !hasWarning(res, "kind", "kind not converted") {
		t.Errorf("warnings %v", res.Warnings)
	}
}

// TestLiveObject: objects read from the API server (ferrolb controller --compat) hold int64
// numbers, not float64 as decoded YAML does.
func TestLiveObject(t *testing.T) {
	src, err := compat.FromObject(map[string]any{
		"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
		"metadata": map[string]any{"name": "p", "namespace": "metallb-system"},
		"spec": map[string]any{
			"addresses":         []any{"10.0.0.0/24"},
			"serviceAllocation": map[string]any{"priority": int64(50), "namespaces": []any{"a"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	res := compat.Convert([]compat.Source{src})
	p := only[*v1.IPPool](t, res)
	if p.Spec.Priority == nil || *p.Spec.Priority != 50 || len(res.Errors) != 0 {
		t.Errorf("priority %v, errors %v", p.Spec.Priority, res.Errors)
	}
}
