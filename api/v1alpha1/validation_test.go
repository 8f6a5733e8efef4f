package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/kubetest"
)

var env *kubetest.Env

func TestMain(m *testing.M) {
	os.Exit(kubetest.Run(m, &env))
}

var seq atomic.Int64

// name gives every object a fresh name: the kinds are cluster-scoped and share one API server.
func name() metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: fmt.Sprintf("obj-%d", seq.Add(1))}
}

func TestCRDsInstalled(t *testing.T) {
	got := installedCRDs()
	want := []string{
		"bfdprofiles.ferrolb.io", "bgpadvertisements.ferrolb.io", "bgppeers.ferrolb.io",
		"ippools.ferrolb.io", "l2policies.ferrolb.io",
	}
	if diff := cmp.Diff(want, got, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("installed CRDs (-want +got):\n%s", diff)
	}
	// Each kind is served: listing it through the typed client works.
	ctx := context.Background()
	for _, l := range []client.ObjectList{
		&v1.IPPoolList{}, &v1.L2PolicyList{}, &v1.BGPPeerList{}, &v1.BGPAdvertisementList{}, &v1.BFDProfileList{},
	} {
		if err := env.Client.List(ctx, l); err != nil {
			t.Errorf("list %T: %v", l, err)
		}
	}
}

// validationCase is one object sent to the API server. An empty want means it must be
// accepted; otherwise it must be rejected as Invalid with a message containing every string
// in want (the field path and the reason).
type validationCase struct {
	name string
	obj  client.Object
	want []string
}

func runValidation(t *testing.T, cases []validationCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := env.Client.Create(ctx, tc.obj)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("valid object rejected: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("invalid object accepted; want an error containing %q", tc.want)
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("got %v, want an Invalid error", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func pool(blocks ...v1.IPBlock) *v1.IPPool {
	return &v1.IPPool{ObjectMeta: name(), Spec: v1.IPPoolSpec{Blocks: append([]v1.IPBlock{}, blocks...)}}
}

func cidr(c string) v1.IPBlock          { return v1.IPBlock{CIDR: c} }
func rng(start, stop string) v1.IPBlock { return v1.IPBlock{Start: start, Stop: stop} }

func TestIPPoolValidation(t *testing.T) {
	withPriority := pool(cidr("192.0.2.0/24"))
	withPriority.Spec.Priority = ptr.To[int32](-1)
	maxZero := pool(cidr("192.0.2.0/24"))
	maxZero.Spec.MaxAddressesPerService = ptr.To[int32](0)
	maxHigh := pool(cidr("192.0.2.0/24"))
	maxHigh.Spec.MaxAddressesPerService = ptr.To[int32](65)
	badNS := pool(cidr("192.0.2.0/24"))
	badNS.Spec.Namespaces = []string{"tenant-a", "Tenant_B"}
	full := pool(cidr("192.0.2.0/24"), cidr("2001:db8::/64"), rng("198.51.100.10", "198.51.100.20"),
		rng("2001:db8:1::1", "2001:db8:1::ff"), rng("203.0.113.7", "203.0.113.7"))
	full.Spec.AvoidBuggyIPs = true
	full.Spec.Namespaces = []string{"tenant-a"}
	full.Spec.Priority = ptr.To[int32](10)
	full.Spec.MaxAddressesPerService = ptr.To[int32](64)
	full.Spec.ServiceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"color": "blue"}}

	runValidation(t, []validationCase{
		{name: "valid v4 and v6 CIDRs and ranges", obj: full},
		{name: "no blocks", obj: pool(), want: []string{"spec.blocks", "at least 1 item"}},
		{name: "CIDR prefix too long", obj: pool(cidr("192.0.2.0/33")), want: []string{"spec.blocks[0].cidr", "must be a CIDR"}},
		{name: "CIDR not an address", obj: pool(cidr("2001:db8::/64"), cidr("pool-a")), want: []string{"spec.blocks[1].cidr", "must be a CIDR"}},
		{name: "CIDR with host bits", obj: pool(cidr("192.0.2.1/24")), want: []string{"spec.blocks[0].cidr", "host bits set"}},
		{name: "CIDR and range in one block", obj: pool(v1.IPBlock{CIDR: "192.0.2.0/24", Start: "192.0.2.1", Stop: "192.0.2.9"}), want: []string{"spec.blocks[0]", "either a cidr or a start/stop range"}},
		{name: "start without stop", obj: pool(v1.IPBlock{Start: "192.0.2.1"}), want: []string{"spec.blocks[0]", "start and stop go together"}},
		{name: "start not an address", obj: pool(rng("192.0.2.300", "192.0.2.310")), want: []string{"spec.blocks[0].start", "must be an IPv4 or IPv6 address"}},
		{name: "range of two families", obj: pool(rng("192.0.2.1", "2001:db8::1")), want: []string{"spec.blocks[0]", "one address family"}},
		{name: "IPv4 start above stop", obj: pool(rng("192.0.2.20", "192.0.2.10")), want: []string{"spec.blocks[0]", "start must not be above stop"}},
		{name: "IPv4 start above stop in a higher octet", obj: pool(rng("10.1.0.0", "10.0.255.255")), want: []string{"spec.blocks[0]", "start must not be above stop"}},
		{name: "negative priority", obj: withPriority, want: []string{"spec.priority", "greater than or equal to 0"}},
		{name: "maxAddressesPerService 0", obj: maxZero, want: []string{"spec.maxAddressesPerService", "greater than or equal to 1"}},
		{name: "maxAddressesPerService above 64", obj: maxHigh, want: []string{"spec.maxAddressesPerService", "less than or equal to 64"}},
		{name: "namespace not a DNS label", obj: badNS, want: []string{"spec.namespaces[1]"}},
	})
}

func TestIPPoolDefaults(t *testing.T) {
	p := pool(cidr("192.0.2.0/24"))
	if err := env.Client.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if p.Spec.AutoAssign == nil || !*p.Spec.AutoAssign {
		t.Errorf("autoAssign = %v, want the default true", p.Spec.AutoAssign)
	}
}

func TestL2PolicyValidation(t *testing.T) {
	l2 := func(s v1.L2PolicySpec) *v1.L2Policy { return &v1.L2Policy{ObjectMeta: name(), Spec: s} }
	many := make([]string, 65)
	for i := range many {
		many[i] = fmt.Sprintf("eth%d", i)
	}
	runValidation(t, []validationCase{
		{name: "valid", obj: l2(v1.L2PolicySpec{
			Interfaces:      []string{"eth0", "bond[0-9]+", `vlan\.100`},
			Pools:           []string{"pool-a"},
			NodeSelector:    &metav1.LabelSelector{MatchLabels: map[string]string{"role": "edge"}},
			ServiceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			ExternalIPs:     true,
		})},
		{name: "valid empty", obj: l2(v1.L2PolicySpec{})},
		{name: "interface regex does not compile", obj: l2(v1.L2PolicySpec{Interfaces: []string{"eth0", "eth(0"}}), want: []string{"spec.interfaces", "valid regular expression"}},
		{name: "interface regex with bad repetition", obj: l2(v1.L2PolicySpec{Interfaces: []string{"*eth"}}), want: []string{"spec.interfaces", "valid regular expression"}},
		{name: "pool named twice", obj: l2(v1.L2PolicySpec{Pools: []string{"a", "a"}}), want: []string{"spec.pools[1]", "Duplicate value"}},
		{name: "too many interfaces", obj: l2(v1.L2PolicySpec{Interfaces: many}), want: []string{"spec.interfaces", "at most 64 items"}},
	})
}

func TestL2PolicyDefaults(t *testing.T) {
	p := &v1.L2Policy{ObjectMeta: name()}
	if err := env.Client.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if p.Spec.LoadBalancerIPs == nil || !*p.Spec.LoadBalancerIPs {
		t.Errorf("loadBalancerIPs = %v, want the default true", p.Spec.LoadBalancerIPs)
	}
}

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

func TestBGPPeerValidation(t *testing.T) {
	peer := func(mod func(*v1.BGPPeerSpec)) *v1.BGPPeer {
		s := v1.BGPPeerSpec{PeerAddress: "192.0.2.1", PeerASN: 64512, LocalASN: 64513}
		mod(&s)
		return &v1.BGPPeer{ObjectMeta: name(), Spec: s}
	}
	runValidation(t, []validationCase{
		{name: "valid minimal", obj: peer(func(*v1.BGPPeerSpec) {})},
		{name: "valid full", obj: peer(func(s *v1.BGPPeerSpec) {
			s.PeerAddress = "2001:db8::1"
			s.PeerASN, s.LocalASN = 4200000000, 4294967295
			s.PeerPort = 1179
			s.RouterID = "10.0.0.1"
			s.SourceAddress = "2001:db8::2"
			s.HoldTime, s.KeepaliveTime, s.ConnectTime = dur(9*time.Second), dur(3*time.Second), dur(2*time.Second)
			s.PasswordSecretRef = &v1.SecretReference{Name: "bgp-md5", Namespace: "ferrolb-system"}
			s.GracefulRestart = &v1.GracefulRestart{Enabled: true, RestartTime: dur(2 * time.Minute)}
			s.Families = []v1.AddressFamily{v1.IPv4Unicast, v1.IPv6Unicast}
			s.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "a"}}
			s.BFDProfile = "fast"
		})},
		{name: "valid multihop", obj: peer(func(s *v1.BGPPeerSpec) { s.EBGPMultihop = true })},
		{name: "multihop BFD", obj: peer(func(s *v1.BGPPeerSpec) { s.EBGPMultihop, s.BFDProfile = true, "fast" }),
			want: []string{"spec", "multihop BFD (RFC 5883) is not supported"}},
		{name: "peer ASN zero", obj: peer(func(s *v1.BGPPeerSpec) { s.PeerASN = 0 }), want: []string{"spec.peerASN", "greater than or equal to 1"}},
		{name: "local ASN above 32 bits", obj: peer(func(s *v1.BGPPeerSpec) { s.LocalASN = 4294967296 }), want: []string{"spec.localASN", "less than or equal to 4294967295"}},
		{name: "peer address not an address", obj: peer(func(s *v1.BGPPeerSpec) { s.PeerAddress = "10.0.0.300" }), want: []string{"spec.peerAddress", "must be an IPv4 or IPv6 address"}},
		{name: "port out of range", obj: peer(func(s *v1.BGPPeerSpec) { s.PeerPort = 70000 }), want: []string{"spec.peerPort", "less than or equal to 65535"}},
		{name: "router ID is IPv6", obj: peer(func(s *v1.BGPPeerSpec) { s.RouterID = "2001:db8::1" }), want: []string{"spec.routerID", "must be an IPv4 address"}},
		{name: "hold time below 3s", obj: peer(func(s *v1.BGPPeerSpec) { s.HoldTime = dur(2 * time.Second) }), want: []string{"spec.holdTime", "between 3s and 65535s"}},
		{name: "keepalive not below hold", obj: peer(func(s *v1.BGPPeerSpec) {
			s.HoldTime, s.KeepaliveTime = dur(9*time.Second), dur(9*time.Second)
		}), want: []string{"spec", "keepaliveTime must be shorter than holdTime"}},
		{name: "connect time zero", obj: peer(func(s *v1.BGPPeerSpec) { s.ConnectTime = dur(0) }), want: []string{"spec.connectTime", "between 1s and 65535s"}},
		{name: "graceful restart time too long", obj: peer(func(s *v1.BGPPeerSpec) {
			s.GracefulRestart = &v1.GracefulRestart{Enabled: true, RestartTime: dur(4096 * time.Second)}
		}), want: []string{"spec.gracefulRestart.restartTime", "between 1s and 4095s"}},
		{name: "unknown family", obj: peer(func(s *v1.BGPPeerSpec) { s.Families = []v1.AddressFamily{"ipv4-multicast"} }), want: []string{"spec.families[0]", "Unsupported value"}},
		{name: "secret without a name", obj: peer(func(s *v1.BGPPeerSpec) { s.PasswordSecretRef = &v1.SecretReference{} }), want: []string{"spec.passwordSecretRef.name"}},
	})
}

func TestBGPPeerDurationSyntax(t *testing.T) {
	// A duration Go cannot parse must be refused by the schema, not fail later in the speaker.
	// Typed clients cannot send one, so send it unstructured.
	u := &unstructured.Unstructured{}
	err := u.UnmarshalJSON([]byte(fmt.Sprintf(`{"apiVersion":"ferrolb.io/v1alpha1","kind":"BGPPeer",
		"metadata":{"name":%q},
		"spec":{"peerAddress":"192.0.2.1","peerASN":64512,"localASN":64513,"holdTime":"90 seconds"}}`, name().Name)))
	if err != nil {
		t.Fatal(err)
	}
	err = env.Client.Create(context.Background(), u)
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.holdTime") {
		t.Fatalf("got %v, want an Invalid error naming spec.holdTime", err)
	}
}

func TestBGPPeerDefaults(t *testing.T) {
	p := &v1.BGPPeer{ObjectMeta: name(), Spec: v1.BGPPeerSpec{PeerAddress: "192.0.2.1", PeerASN: 64512, LocalASN: 64512}}
	if err := env.Client.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if p.Spec.PeerPort != 179 {
		t.Errorf("peerPort = %d, want the default 179", p.Spec.PeerPort)
	}
}

func TestBGPAdvertisementValidation(t *testing.T) {
	adv := func(s v1.BGPAdvertisementSpec) *v1.BGPAdvertisement {
		return &v1.BGPAdvertisement{ObjectMeta: name(), Spec: s}
	}
	runValidation(t, []validationCase{
		{name: "valid", obj: adv(v1.BGPAdvertisementSpec{
			Pools:               []string{"pool-a"},
			Peers:               []string{"tor-1", "tor-2"},
			Communities:         []string{"65000:100", "0:65535", "no-export"},
			LargeCommunities:    []string{"4294967295:1:2"},
			LocalPref:           ptr.To[int64](150),
			AggregationLength:   ptr.To[int32](24),
			AggregationLengthV6: ptr.To[int32](64),
			NodeSelector:        &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "a"}},
		})},
		{name: "community part above 16 bits", obj: adv(v1.BGPAdvertisementSpec{Communities: []string{"65536:1"}}), want: []string{"spec.communities", "ASN:value with both parts 0 to 65535"}},
		{name: "community not a pair", obj: adv(v1.BGPAdvertisementSpec{Communities: []string{"no-such-name"}}), want: []string{"spec.communities", "ASN:value"}},
		{name: "large community of two parts", obj: adv(v1.BGPAdvertisementSpec{LargeCommunities: []string{"1:2"}}), want: []string{"spec.largeCommunities", "global:local1:local2"}},
		{name: "large community part above 32 bits", obj: adv(v1.BGPAdvertisementSpec{LargeCommunities: []string{"1:4294967296:2"}}), want: []string{"spec.largeCommunities", "global:local1:local2"}},
		{name: "IPv4 aggregation beyond /32", obj: adv(v1.BGPAdvertisementSpec{AggregationLength: ptr.To[int32](33)}), want: []string{"spec.aggregationLength", "less than or equal to 32"}},
		{name: "IPv6 aggregation beyond /128", obj: adv(v1.BGPAdvertisementSpec{AggregationLengthV6: ptr.To[int32](129)}), want: []string{"spec.aggregationLengthV6", "less than or equal to 128"}},
		{name: "negative local-pref", obj: adv(v1.BGPAdvertisementSpec{LocalPref: ptr.To[int64](-1)}), want: []string{"spec.localPref", "greater than or equal to 0"}},
	})
}

// TestSelectorValidation: every label selector of every kind refuses an operator other than
// In, NotIn, Exists and DoesNotExist (the report: "operator: in" was accepted, and the
// speakers dropped the whole policy), values missing for In and NotIn and values given for
// Exists and DoesNotExist, each with the field's path.
func TestSelectorValidation(t *testing.T) {
	fields := []struct {
		path string
		obj  func(*metav1.LabelSelector) client.Object
	}{
		{"spec.serviceSelector", func(s *metav1.LabelSelector) client.Object {
			p := pool(cidr("192.0.2.0/24"))
			p.Spec.ServiceSelector = s
			return p
		}},
		{"spec.serviceSelector", func(s *metav1.LabelSelector) client.Object {
			return &v1.L2Policy{ObjectMeta: name(), Spec: v1.L2PolicySpec{ServiceSelector: s}}
		}},
		{"spec.nodeSelector", func(s *metav1.LabelSelector) client.Object {
			return &v1.L2Policy{ObjectMeta: name(), Spec: v1.L2PolicySpec{NodeSelector: s}}
		}},
		{"spec.nodeSelector", func(s *metav1.LabelSelector) client.Object {
			return &v1.BGPPeer{ObjectMeta: name(), Spec: v1.BGPPeerSpec{PeerAddress: "192.0.2.1", PeerASN: 64512, LocalASN: 64513, NodeSelector: s}}
		}},
		{"spec.serviceSelector", func(s *metav1.LabelSelector) client.Object {
			return &v1.BGPAdvertisement{ObjectMeta: name(), Spec: v1.BGPAdvertisementSpec{ServiceSelector: s}}
		}},
		{"spec.nodeSelector", func(s *metav1.LabelSelector) client.Object {
			return &v1.BGPAdvertisement{ObjectMeta: name(), Spec: v1.BGPAdvertisementSpec{NodeSelector: s}}
		}},
	}
	expr := func(op metav1.LabelSelectorOperator, values ...string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}, MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "zone", Operator: metav1.LabelSelectorOpIn, Values: []string{"a"}},
			{Key: "rack", Operator: op, Values: values},
		}}
	}
	for _, f := range fields {
		kind := fmt.Sprintf("%T", f.obj(nil))[len("*v1alpha1."):]
		t.Run(kind+"/"+f.path, func(t *testing.T) {
			runValidation(t, []validationCase{
				{name: "In", obj: f.obj(expr(metav1.LabelSelectorOpIn, "a", "b"))},
				{name: "NotIn", obj: f.obj(expr(metav1.LabelSelectorOpNotIn, "a"))},
				{name: "Exists", obj: f.obj(expr(metav1.LabelSelectorOpExists))},
				{name: "DoesNotExist", obj: f.obj(expr(metav1.LabelSelectorOpDoesNotExist))},
				{name: "empty", obj: f.obj(&metav1.LabelSelector{})},
				{name: "lower-case in", obj: f.obj(expr("in", "a")),
					want: []string{f.path + ": Invalid value: every matchExpressions operator must be In, NotIn, Exists or DoesNotExist (operators are case-sensitive)"}},
				{name: "unknown operator", obj: f.obj(expr("Equals", "a")),
					want: []string{f.path + ": Invalid value: every matchExpressions operator must be In, NotIn, Exists"}},
				{name: "In without values", obj: f.obj(expr(metav1.LabelSelectorOpIn)),
					want: []string{f.path + ": Invalid value: matchExpressions with operator In or NotIn need at least one value"}},
				{name: "NotIn with an empty list", obj: f.obj(&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: "rack", Operator: metav1.LabelSelectorOpNotIn, Values: []string{}}}}),
					want: []string{f.path + ": Invalid value: matchExpressions with operator In or NotIn need at least one value"}},
				{name: "Exists with values", obj: f.obj(expr(metav1.LabelSelectorOpExists, "a")),
					want: []string{f.path + ": Invalid value: matchExpressions with operator Exists or DoesNotExist take no values"}},
				{name: "DoesNotExist with values", obj: f.obj(expr(metav1.LabelSelectorOpDoesNotExist, "a")),
					want: []string{f.path + ": Invalid value: matchExpressions with operator Exists or DoesNotExist take no values"}},
			})
		})
	}
}

func TestBFDProfileValidation(t *testing.T) {
	bfd := func(s v1.BFDProfileSpec) *v1.BFDProfile { return &v1.BFDProfile{ObjectMeta: name(), Spec: s} }
	runValidation(t, []validationCase{
		{name: "valid", obj: bfd(v1.BFDProfileSpec{ReceiveInterval: 100, TransmitInterval: 100, DetectMultiplier: 3})},
		{name: "echo mode", obj: bfd(v1.BFDProfileSpec{EchoMode: true, EchoInterval: ptr.To[int32](50)}), want: []string{"spec", "echoMode is not supported"}},
		{name: "passive mode", obj: bfd(v1.BFDProfileSpec{PassiveMode: true}), want: []string{"spec", "passiveMode is not supported"}},
		{name: "minimum TTL 250", obj: bfd(v1.BFDProfileSpec{MinimumTTL: 250}), want: []string{"spec", "minimumTTL applies to multihop BFD"}},
		{name: "receive interval too short", obj: bfd(v1.BFDProfileSpec{ReceiveInterval: 5}), want: []string{"spec.receiveInterval", "greater than or equal to 10"}},
		{name: "transmit interval negative", obj: bfd(v1.BFDProfileSpec{TransmitInterval: -100}), want: []string{"spec.transmitInterval", "greater than or equal to 10"}},
		{name: "detect multiplier one", obj: bfd(v1.BFDProfileSpec{DetectMultiplier: 1}), want: []string{"spec.detectMultiplier", "greater than or equal to 2"}},
		{name: "minimum TTL 255", obj: bfd(v1.BFDProfileSpec{MinimumTTL: 255}), want: []string{"spec.minimumTTL", "less than or equal to 254"}},
		{name: "echo interval without echo mode", obj: bfd(v1.BFDProfileSpec{EchoInterval: ptr.To[int32](50)}), want: []string{"spec", "echoInterval needs echoMode"}},
	})
}

func TestBFDProfileDefaults(t *testing.T) {
	p := &v1.BFDProfile{ObjectMeta: name()}
	if err := env.Client.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	want := v1.BFDProfileSpec{ReceiveInterval: 300, TransmitInterval: 300, DetectMultiplier: 3, MinimumTTL: 254}
	if diff := cmp.Diff(want, p.Spec); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

// TestSamplesAreValid: the examples shipped in config/samples are accepted as written.
func TestSamplesAreValid(t *testing.T) {
	root, err := kubetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "config", "samples", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples found: %v", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range strings.Split(string(data), "\n---\n") {
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			// The samples are applied to this shared API server under their own names.
			u.SetName(name().Name)
			if err := env.Client.Create(context.Background(), u); err != nil {
				t.Errorf("%s document %d (%s): %v", filepath.Base(f), i, u.GetKind(), err)
			}
		}
	}
}

// TestDeployManifest: every object in deploy/ferrolb.yaml, the file users apply, is accepted
// by the API server as written (the Deployment and DaemonSet, the RBAC, the namespace), and
// its CRDs are the ones installed here.
func TestDeployManifest(t *testing.T) {
	root, err := kubetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "deploy", "ferrolb.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kinds := map[string]int{}
	for i, doc := range strings.Split(string(data), "\n---\n") {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		kinds[u.GetKind()]++
		if u.GetKind() == "CustomResourceDefinition" {
			if !slices.Contains(installedCRDs(), u.GetName()) {
				t.Errorf("deploy/ferrolb.yaml has CRD %s, which config/crd/bases does not", u.GetName())
			}
			continue
		}
		if err := env.Client.Create(ctx, u); err != nil {
			t.Errorf("document %d (%s %s): %v", i, u.GetKind(), u.GetName(), err)
		}
	}
	want := map[string]int{"Namespace": 1, "CustomResourceDefinition": 5, "ClusterRole": 2, "Role": 2,
		"ClusterRoleBinding": 2, "RoleBinding": 2, "ServiceAccount": 2, "Deployment": 1, "DaemonSet": 1,
		"Service": 2}
	if diff := cmp.Diff(want, kinds); diff != "" {
		t.Errorf("kinds in deploy/ferrolb.yaml (-want +got):\n%s", diff)
	}
}

func installedCRDs() []string {
	var out []string
	for _, gr := range env.CRDs() {
		out = append(out, gr.String())
	}
	return out
}
