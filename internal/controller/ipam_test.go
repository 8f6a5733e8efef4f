package controller_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/config"
	"github.com/ferrolb/ferrolb/internal/controller"
	"github.com/ferrolb/ferrolb/internal/testrun"
)

var nsSeq atomic.Int64

// startController runs a controller until the test ends, or until the returned stop is
// called.
func startController(t *testing.T) (stop func()) {
	t.Helper()
	return testrun.Background(t, "controller", func(ctx context.Context) error {
		return controller.Run(ctx, env.Config, controller.Options{MetricsAddr: "0", HealthAddr: "0", Restartable: true})
	})
}

// newNamespace creates a namespace of its own for one test.
func newNamespace(t *testing.T, prefix string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d", prefix, nsSeq.Add(1))
	if err := env.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
	return name
}

// createPool creates a pool that the test deletes when it ends (pools are cluster-scoped and
// would serve other tests' Services).
func createPool(t *testing.T, name string, spec v1.IPPoolSpec) *v1.IPPool {
	t.Helper()
	p := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
	if err := env.Client.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Client.Delete(context.Background(), p); client.IgnoreNotFound(err) != nil {
			t.Error(err)
		}
	})
	return p
}

func blocks(s ...string) []v1.IPBlock {
	var out []v1.IPBlock
	for _, b := range s {
		if from, to, ok := strings.Cut(b, "-"); ok {
			out = append(out, v1.IPBlock{Start: from, Stop: to})
		} else {
			out = append(out, v1.IPBlock{CIDR: b})
		}
	}
	return out
}

func createService(t *testing.T, ns, name string, mod func(*corev1.Service)) *corev1.Service {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
			Selector: map[string]string{"app": name},
		},
	}
	if mod != nil {
		mod(svc)
	}
	if err := env.Client.Create(context.Background(), svc); err != nil {
		t.Fatal(err)
	}
	return svc
}

func getService(t *testing.T, ns, name string) *corev1.Service {
	t.Helper()
	svc := &corev1.Service{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, svc); err != nil {
		t.Fatal(err)
	}
	return svc
}

func ingressIPs(svc *corev1.Service) []string {
	var out []string
	for _, in := range svc.Status.LoadBalancer.Ingress {
		out = append(out, in.IP)
	}
	return out
}

// waitIngress waits until the Service's status holds exactly want, in order.
func waitIngress(t *testing.T, ns, name string, want ...string) *corev1.Service {
	t.Helper()
	var svc *corev1.Service
	poll(t, func() string {
		svc = getService(t, ns, name)
		if got := ingressIPs(svc); !slices.Equal(got, want) {
			return fmt.Sprintf("%s/%s ingress = %v, want %v; condition: %+v", ns, name, got, want,
				meta.FindStatusCondition(svc.Status.Conditions, controller.ConditionAllocated))
		}
		return ""
	})
	return svc
}

// waitCondition waits until the Service's Allocated condition satisfies ok.
func waitCondition(t *testing.T, ns, name string, ok func(*metav1.Condition) bool) *metav1.Condition {
	t.Helper()
	var c *metav1.Condition
	poll(t, func() string {
		c = meta.FindStatusCondition(getService(t, ns, name).Status.Conditions, controller.ConditionAllocated)
		if c == nil || !ok(c) {
			return fmt.Sprintf("%s/%s: condition %+v does not satisfy the test", ns, name, c)
		}
		return ""
	})
	return c
}

// eventsFor lists the notes of the Events about a Service with the given reason.
func eventsFor(t *testing.T, ns, name, reason string) []string {
	t.Helper()
	var list eventsv1.EventList
	if err := env.Client.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range list.Items {
		if e.Regarding.Name == name && e.Reason == reason {
			out = append(out, e.Note)
		}
	}
	return out
}

func waitEvent(t *testing.T, ns, name, reason, substr string) {
	t.Helper()
	poll(t, func() string {
		notes := eventsFor(t, ns, name, reason)
		if !slices.ContainsFunc(notes, func(n string) bool { return strings.Contains(n, substr) }) {
			return fmt.Sprintf("no %s Event on %s/%s containing %q; have %q", reason, ns, name, substr, notes)
		}
		return ""
	})
}

func onlyNamespace(ns string) []string { return []string{ns} }

func TestAllocateAndRelease(t *testing.T) {
	ns := newNamespace(t, "alloc")
	startController(t)
	createPool(t, "alloc-pool", v1.IPPoolSpec{Blocks: blocks("10.10.0.0/30"), Namespaces: onlyNamespace(ns)})

	createService(t, ns, "a", nil)
	svc := waitIngress(t, ns, "a", "10.10.0.0")
	c := meta.FindStatusCondition(svc.Status.Conditions, controller.ConditionAllocated)
	if c.Status != metav1.ConditionTrue || c.Reason != controller.ReasonAllocated || !strings.Contains(c.Message, "10.10.0.0 from pool alloc-pool") {
		t.Errorf("condition = %+v, want True/Allocated naming the address and pool", c)
	}
	waitEvent(t, ns, "a", "IPAllocated", "assigned 10.10.0.0 from pool alloc-pool")
	createService(t, ns, "b", nil)
	waitIngress(t, ns, "b", "10.10.0.1")

	// A speaker's Announced condition (written as the speakers do, by server-side apply under
	// their own field manager) goes with the controller's when the Service stops being served.
	announced := corev1ac.Service("a", ns).WithStatus(corev1ac.ServiceStatus().WithConditions(
		metav1ac.Condition().WithType(config.ConditionAnnounced).WithStatus(metav1.ConditionTrue).WithReason("Layer2").
			WithMessage("announced: 10.10.0.0 by n1 (layer 2)").WithLastTransitionTime(metav1.Now())))
	if err := env.Client.Status().Apply(context.Background(), announced, client.FieldOwner("ferrolb-speaker"), client.ForceOwnership); err != nil {
		t.Fatal(err)
	}
	advertised := corev1ac.Service("a", ns).WithStatus(corev1ac.ServiceStatus().WithConditions(
		metav1ac.Condition().WithType(config.ConditionAdvertised).WithStatus(metav1.ConditionTrue).WithReason("BGP").
			WithMessage("advertised: 10.10.0.0 by n1 to r1").WithLastTransitionTime(metav1.Now())))
	if err := env.Client.Status().Apply(context.Background(), advertised, client.FieldOwner("ferrolb-speaker-bgp"), client.ForceOwnership); err != nil {
		t.Fatal(err)
	}
	// A Service that stops being a LoadBalancer releases its address and its status.
	svc = getService(t, ns, "a")
	svc.Spec.Type = corev1.ServiceTypeClusterIP
	svc.Spec.AllocateLoadBalancerNodePorts = nil
	for i := range svc.Spec.Ports {
		svc.Spec.Ports[i].NodePort = 0
	}
	if err := env.Client.Update(context.Background(), svc); err != nil {
		t.Fatal(err)
	}
	// (The API server itself clears status.loadBalancer on such a change; the controller
	// removes its condition.)
	waitIngress(t, ns, "a")
	poll(t, func() string {
		for _, typ := range []string{controller.ConditionAllocated, config.ConditionAnnounced, config.ConditionAdvertised} {
			if c := meta.FindStatusCondition(getService(t, ns, "a").Status.Conditions, typ); c != nil {
				return fmt.Sprintf("condition %+v left on a ClusterIP Service", c)
			}
		}
		return ""
	})
	// The freed address is handed out again; b's is untouched.
	createService(t, ns, "c", nil)
	waitIngress(t, ns, "c", "10.10.0.0")
	waitIngress(t, ns, "b", "10.10.0.1")

	// A deleted Service releases its address.
	if err := env.Client.Delete(context.Background(), getService(t, ns, "c")); err != nil {
		t.Fatal(err)
	}
	createService(t, ns, "d", nil)
	waitIngress(t, ns, "d", "10.10.0.0")
}

func TestLoadBalancerClass(t *testing.T) {
	ns := newNamespace(t, "class")
	startController(t)
	createPool(t, "class-pool", v1.IPPoolSpec{Blocks: blocks("10.11.0.0/30"), Namespaces: onlyNamespace(ns)})
	createService(t, ns, "other", func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr.To("example.com/other") })
	createService(t, ns, "ours", func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr.To("ferrolb.io/ferrolb") })
	waitIngress(t, ns, "ours", "10.11.0.0")
	// By the time "ours" is served, "other" has been seen and must have been left alone.
	if svc := getService(t, ns, "other"); len(svc.Status.LoadBalancer.Ingress) > 0 || len(svc.Status.Conditions) > 0 {
		t.Errorf("Service of another class was touched: %+v", svc.Status)
	}
}

// TestCiliumServiceYellow is Cilium's documented LB-IPAM example: requested addresses that no
// pool serving the Service holds are refused with reasons, and the rest are granted. The
// Service gets two IPv4 addresses, which needs a pool that allows a Service two
// (maxAddressesPerService): pool-primary, whose address is the second.
func TestCiliumServiceYellow(t *testing.T) {
	ns := newNamespace(t, "tenant-c")
	startController(t)
	createPool(t, "pool-primary", v1.IPPoolSpec{Blocks: blocks("60.0.10.0/24"), ServiceSelector: &metav1.LabelSelector{
		MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "color", Operator: metav1.LabelSelectorOpIn, Values: []string{"yellow", "red", "blue"}}},
	}, MaxAddressesPerService: ptr.To[int32](2)})
	createPool(t, "pool-green", v1.IPPoolSpec{Blocks: blocks("40.0.10.0/24"), ServiceSelector: &metav1.LabelSelector{
		MatchLabels: map[string]string{"color": "green"},
	}})
	createPool(t, "pool-yellow", v1.IPPoolSpec{Blocks: blocks("50.0.10.0/24"), ServiceSelector: &metav1.LabelSelector{
		MatchLabels: map[string]string{"io.kubernetes.service.namespace": ns},
	}})
	createService(t, ns, "service-yellow", func(s *corev1.Service) {
		s.Labels = map[string]string{"color": "yellow"}
		s.Annotations = map[string]string{"io.cilium/lb-ipam-ips": "30.0.10.100,40.0.10.100,50.0.10.100,60.0.10.100"}
	})
	svc := waitIngress(t, ns, "service-yellow", "50.0.10.100", "60.0.10.100")
	c := meta.FindStatusCondition(svc.Status.Conditions, controller.ConditionAllocated)
	if c.Reason != controller.ReasonPartiallyAllocated {
		t.Errorf("reason = %s, want %s", c.Reason, controller.ReasonPartiallyAllocated)
	}
	for _, want := range []string{"refused 30.0.10.100: no pool holds it", "40.0.10.100: pool pool-green holds it but does not serve this Service"} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("condition message %q does not contain %q", c.Message, want)
		}
	}
	waitEvent(t, ns, "service-yellow", "AllocationFailed", "40.0.10.100")
	waitEvent(t, ns, "service-yellow", "AllocationFailed", "30.0.10.100")
}

// TestRestart: a restarted controller rebuilds from the Services' status before it allocates:
// a Service created while it was down does not get an address another Service holds, and no
// address moves because of the restart or because another Service was deleted.
func TestRestart(t *testing.T) {
	ns := newNamespace(t, "restart")
	createPool(t, "restart-pool", v1.IPPoolSpec{Blocks: blocks("10.12.0.1-10.12.0.2"), Namespaces: onlyNamespace(ns)})
	stop := startController(t)
	createService(t, ns, "a", nil)
	waitIngress(t, ns, "a", "10.12.0.1")
	createService(t, ns, "b", nil)
	waitIngress(t, ns, "b", "10.12.0.2")
	// Free the lowest address so a naive allocator would hand it to the next Service.
	if err := env.Client.Delete(context.Background(), getService(t, ns, "a")); err != nil {
		t.Fatal(err)
	}
	createService(t, ns, "c", nil)
	waitIngress(t, ns, "c", "10.12.0.1")
	stop()

	// While the controller is down: d is pending; the pool is full.
	createService(t, ns, "d", nil)
	startController(t)
	waitCondition(t, ns, "d", func(c *metav1.Condition) bool { return c.Reason == controller.ReasonNoAddress })
	for name, want := range map[string]string{"b": "10.12.0.2", "c": "10.12.0.1"} {
		if got := ingressIPs(getService(t, ns, name)); !slices.Equal(got, []string{want}) {
			t.Errorf("after restart %s holds %v, want [%s]", name, got, want)
		}
	}
	// Deleting b gives d b's address; c is untouched.
	if err := env.Client.Delete(context.Background(), getService(t, ns, "b")); err != nil {
		t.Fatal(err)
	}
	waitIngress(t, ns, "d", "10.12.0.2")
	waitIngress(t, ns, "c", "10.12.0.1")
}

func TestSharing(t *testing.T) {
	ns := newNamespace(t, "share")
	startController(t)
	createPool(t, "share-pool", v1.IPPoolSpec{Blocks: blocks("10.13.0.0/30"), Namespaces: onlyNamespace(ns)})
	shared := func(port int32) func(*corev1.Service) {
		return func(s *corev1.Service) {
			s.Annotations = map[string]string{"ferrolb.io/sharing-key": "web"}
			s.Spec.Ports[0].Port = port
		}
	}
	createService(t, ns, "http", shared(80))
	waitIngress(t, ns, "http", "10.13.0.0")
	createService(t, ns, "https", shared(443))
	waitIngress(t, ns, "https", "10.13.0.0")
	// Same key, colliding port: a different address.
	createService(t, ns, "http2", shared(80))
	waitIngress(t, ns, "http2", "10.13.0.1")
	// A Service without a key never shares.
	createService(t, ns, "plain", nil)
	waitIngress(t, ns, "plain", "10.13.0.2")
	// MetalLB's annotation shares too.
	metallb := func(port int32) func(*corev1.Service) {
		return func(s *corev1.Service) {
			s.Annotations = map[string]string{"metallb.universe.tf/allow-shared-ip": "web"}
			s.Spec.Ports[0].Port = port
		}
	}
	createService(t, ns, "m1", metallb(8080))
	waitIngress(t, ns, "m1", "10.13.0.3")
	createService(t, ns, "m2", metallb(8081))
	waitIngress(t, ns, "m2", "10.13.0.3")
	// Six Services hold four addresses: an address counts once however many share it, so
	// the pool is full, not over full.
	waitGauge(t, "ferrolb_pool_used_addresses", map[string]string{"pool": "share-pool", "family": "IPv4"}, 4)
	waitGauge(t, "ferrolb_pool_capacity_addresses", map[string]string{"pool": "share-pool", "family": "IPv4"}, 4)
}

func TestDualStack(t *testing.T) {
	ns := newNamespace(t, "dual")
	startController(t)
	// Each family from a different pool.
	createPool(t, "dual-v4", v1.IPPoolSpec{Blocks: blocks("10.14.0.0/30"), Namespaces: onlyNamespace(ns)})
	createPool(t, "dual-v6", v1.IPPoolSpec{Blocks: blocks("2001:db8:14::/126"), Namespaces: onlyNamespace(ns)})
	createService(t, ns, "prefer", func(s *corev1.Service) {
		s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyPreferDualStack)
	})
	waitIngress(t, ns, "prefer", "10.14.0.0", "2001:db8:14::")
	createService(t, ns, "v6only", func(s *corev1.Service) {
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol}
	})
	waitIngress(t, ns, "v6only", "2001:db8:14::1")
	createService(t, ns, "require", func(s *corev1.Service) {
		s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyRequireDualStack)
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
	})
	waitIngress(t, ns, "require", "2001:db8:14::2", "10.14.0.1")
}

func TestRequireDualStackAllOrNothing(t *testing.T) {
	ns := newNamespace(t, "require")
	startController(t)
	createPool(t, "require-v4", v1.IPPoolSpec{Blocks: blocks("10.15.0.0/30"), Namespaces: onlyNamespace(ns)})
	createService(t, ns, "require", func(s *corev1.Service) {
		s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyRequireDualStack)
	})
	c := waitCondition(t, ns, "require", func(c *metav1.Condition) bool { return c.Reason == controller.ReasonNoAddress })
	if !strings.Contains(c.Message, "IPv6") {
		t.Errorf("message %q does not say the IPv6 address is missing", c.Message)
	}
	if got := ingressIPs(getService(t, ns, "require")); len(got) != 0 {
		t.Errorf("RequireDualStack Service holds %v with only IPv4 available, want nothing", got)
	}
	// The IPv4 address it did not keep is free for others.
	createService(t, ns, "single", nil)
	waitIngress(t, ns, "single", "10.15.0.0")
}

func TestPoolStatus(t *testing.T) {
	ns := newNamespace(t, "status")
	startController(t)
	p := createPool(t, "status-a", v1.IPPoolSpec{Blocks: blocks("10.16.0.0/29", "2001:db8:16::/64"), Namespaces: onlyNamespace(ns)})
	createService(t, ns, "a", nil)
	waitIngress(t, ns, "a", "10.16.0.0")
	want := v1.IPPoolStatus{
		IPv4: &v1.AddressCount{Total: "8", Used: 1, Free: "7"},
		IPv6: &v1.AddressCount{Total: "18446744073709551616", Used: 0, Free: "18446744073709551616"},
	}
	got := waitPool(t, p.Name, func(st v1.IPPoolStatus) bool { return st.IPv4 != nil && st.IPv4.Used == 1 })
	if diff := cmp.Diff(want.IPv4, got.IPv4); diff != "" {
		t.Errorf("ipv4 counts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want.IPv6, got.IPv6); diff != "" {
		t.Errorf("ipv6 counts (-want +got):\n%s", diff)
	}
	if !meta.IsStatusConditionTrue(got.Conditions, controller.ConditionReady) || meta.IsStatusConditionTrue(got.Conditions, controller.ConditionConflict) {
		t.Errorf("conditions = %+v, want Ready and no Conflict", got.Conditions)
	}
	for _, c := range []struct {
		name, family string
		want         float64
	}{
		{"ferrolb_pool_used_addresses", "IPv4", 1},
		{"ferrolb_pool_capacity_addresses", "IPv4", 8},
		{"ferrolb_pool_used_addresses", "IPv6", 0},
		{"ferrolb_pool_capacity_addresses", "IPv6", 1 << 64},
	} {
		if got := gauge(t, c.name, map[string]string{"pool": "status-a", "family": c.family}); got != c.want {
			t.Errorf("%s{pool=status-a,family=%s} = %v, want %v", c.name, c.family, got, c.want)
		}
	}

	// An overlapping pool: both are marked, and neither hands out the overlap (.4-.7).
	createPool(t, "status-b", v1.IPPoolSpec{Blocks: blocks("10.16.0.4-10.16.0.12"), Namespaces: onlyNamespace(ns)})
	for _, name := range []string{"status-a", "status-b"} {
		st := waitPool(t, name, func(st v1.IPPoolStatus) bool {
			return meta.IsStatusConditionTrue(st.Conditions, controller.ConditionConflict)
		})
		c := meta.FindStatusCondition(st.Conditions, controller.ConditionConflict)
		if !strings.Contains(c.Message, "overlaps pool status-") {
			t.Errorf("%s conflict message %q does not name the other pool", name, c.Message)
		}
	}
	var addrs []string
	for i := range 7 {
		name := fmt.Sprintf("s%d", i)
		createService(t, ns, name, nil)
		c := waitCondition(t, ns, name, func(*metav1.Condition) bool { return true })
		addrs = append(addrs, ingressIPs(getService(t, ns, name))...)
		_ = c
	}
	for _, a := range addrs {
		for _, bad := range []string{"10.16.0.4", "10.16.0.5", "10.16.0.6", "10.16.0.7"} {
			if a == bad {
				t.Errorf("address %s in the overlap was handed out (all: %v)", a, addrs)
			}
		}
	}

	// An IPv6 range that runs backwards passes CEL (which cannot compare IPv6 addresses) and is
	// reported by the controller, naming the field.
	createPool(t, "status-bad", v1.IPPoolSpec{Blocks: blocks("2001:db8:17::9-2001:db8:17::1"), Namespaces: onlyNamespace(ns)})
	st := waitPool(t, "status-bad", func(st v1.IPPoolStatus) bool {
		return meta.FindStatusCondition(st.Conditions, controller.ConditionReady) != nil
	})
	c := meta.FindStatusCondition(st.Conditions, controller.ConditionReady)
	if c.Status != metav1.ConditionFalse || c.Reason != "Invalid" || !strings.Contains(c.Message, "spec.blocks[0]") || !strings.Contains(c.Message, "start is above stop") {
		t.Errorf("Ready = %+v, want False/Invalid naming spec.blocks[0]", c)
	}
	// Counted as configuration FerroLB cannot use (the overlapping pools are not: they serve),
	// and it has no address series.
	waitGauge(t, "ferrolb_config_invalid_objects", map[string]string{"kind": "IPPool"}, 1)
	if v, ok := gaugeValue(t, "ferrolb_pool_capacity_addresses", map[string]string{"pool": "status-bad"}); ok {
		t.Errorf("ferrolb_pool_capacity_addresses{pool=status-bad} = %v, want no series for an invalid pool", v)
	}
}

func waitPool(t *testing.T, name string, ok func(v1.IPPoolStatus) bool) v1.IPPoolStatus {
	t.Helper()
	p := &v1.IPPool{}
	poll(t, func() string {
		if err := env.Client.Get(context.Background(), client.ObjectKey{Name: name}, p); err != nil {
			t.Fatal(err)
		}
		if !ok(p.Status) {
			return fmt.Sprintf("pool %s status does not satisfy the test: %+v", name, p.Status)
		}
		return ""
	})
	return p.Status
}

func TestUnknownAnnotationReported(t *testing.T) {
	ns := newNamespace(t, "annot")
	startController(t)
	createPool(t, "annot-pool", v1.IPPoolSpec{Blocks: blocks("10.18.0.0/30"), Namespaces: onlyNamespace(ns)})
	createService(t, ns, "typo", func(s *corev1.Service) {
		s.Annotations = map[string]string{"ferrolb.io/ip": "10.18.0.2", "ferrolb.io/ips": "10.18.0.3, not-an-ip",
			// The speakers' health checks: reported here, once for the cluster.
			"ferrolb.io/health-check": "http", "ferrolb.io/health-check-timeout": "1 second"}
	})
	svc := waitIngress(t, ns, "typo", "10.18.0.3")
	c := meta.FindStatusCondition(svc.Status.Conditions, controller.ConditionAllocated)
	for _, want := range []string{"metadata.annotations[ferrolb.io/ip]: unknown annotation", `metadata.annotations[ferrolb.io/ips]: "not-an-ip" is not an IP address`,
		`metadata.annotations[ferrolb.io/health-check-timeout]: "1 second" is not a duration (such as 5s or 500ms); the Service is served without active health checks`} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("condition message %q does not contain %q", c.Message, want)
		}
	}
	waitEvent(t, ns, "typo", "InvalidConfiguration", "unknown annotation")
	waitEvent(t, ns, "typo", "InvalidConfiguration", "health-check-timeout")
}

// gauge reads one series from the registry the controller's /metrics serves.
func gauge(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	v, ok := gaugeValue(t, name, labels)
	if !ok {
		t.Fatalf("no series %s%v", name, labels)
	}
	return v
}

// waitGauge waits until the first series of name whose labels include labels is want.
func waitGauge(t *testing.T, name string, labels map[string]string, want float64) {
	t.Helper()
	poll(t, func() string {
		got, ok := gaugeValue(t, name, labels)
		if !ok || got != want {
			return fmt.Sprintf("%s%v = %v (present %v), want %v", name, labels, got, ok, want)
		}
		return ""
	})
}

// gaugeValue reads the first series of name whose labels include labels, if there is one.
func gaugeValue(t *testing.T, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue series
				}
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// TestPoolDeletedKeepsAddress: deleting a pool takes no address away; the Service keeps it,
// it is reported, a restart keeps it too, and it is not handed to anyone else.
func TestPoolDeletedKeepsAddress(t *testing.T) {
	ns := newNamespace(t, "orphan")
	stop := startController(t)
	p := createPool(t, "orphan-pool", v1.IPPoolSpec{Blocks: blocks("10.19.0.0/30"), Namespaces: onlyNamespace(ns)})
	createService(t, ns, "a", nil)
	waitIngress(t, ns, "a", "10.19.0.0")
	if err := env.Client.Delete(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	c := waitCondition(t, ns, "a", func(c *metav1.Condition) bool { return strings.Contains(c.Message, "in no pool any more") })
	if c.Status != metav1.ConditionTrue {
		t.Errorf("condition = %+v, want True (the Service still holds its address)", c)
	}
	waitEvent(t, ns, "a", "AddressNotInPool", "10.19.0.0")
	stop()

	// After a restart, with the pool back, the address stays with a and b gets another.
	startController(t)
	createPool(t, "orphan-pool-2", v1.IPPoolSpec{Blocks: blocks("10.19.0.0/30"), Namespaces: onlyNamespace(ns)})
	createService(t, ns, "b", nil)
	waitIngress(t, ns, "b", "10.19.0.1")
	waitIngress(t, ns, "a", "10.19.0.0")
	waitCondition(t, ns, "a", func(c *metav1.Condition) bool { return c.Message == "10.19.0.0 from pool orphan-pool-2" })
}

// TestDisabledPoolBlocksNothing: Cilium's seed keeps a disabled "informational" pool beside
// the live one over the same addresses. The live pool keeps handing them out, and both pools'
// Conflict conditions say how they relate.
func TestDisabledPoolBlocksNothing(t *testing.T) {
	ns := newNamespace(t, "disabled")
	startController(t)
	createPool(t, "disabled-live", v1.IPPoolSpec{Blocks: blocks("10.61.0.0/30"), Namespaces: onlyNamespace(ns)})
	createPool(t, "disabled-info", v1.IPPoolSpec{Blocks: blocks("10.61.0.0/29"), Disabled: true, Namespaces: onlyNamespace(ns)})
	createService(t, ns, "a", nil)
	waitIngress(t, ns, "a", "10.61.0.0")
	for name, want := range map[string]string{
		"disabled-live": "overlaps only disabled pool disabled-info, which does not block it",
		"disabled-info": "overlaps enabled pool disabled-live, which owns the overlapping addresses",
	} {
		st := waitPool(t, name, func(st v1.IPPoolStatus) bool {
			c := meta.FindStatusCondition(st.Conditions, controller.ConditionConflict)
			return c != nil && strings.Contains(c.Message, want)
		})
		if meta.IsStatusConditionTrue(st.Conditions, controller.ConditionConflict) {
			t.Errorf("%s: Conflict is True: %+v; a disabled pool blocks nothing", name, st.Conditions)
		}
	}
	if st := waitPool(t, "disabled-live", func(st v1.IPPoolStatus) bool { return st.IPv4 != nil && st.IPv4.Used == 1 }); st.IPv4.Total != "4" {
		t.Errorf("the live pool can hand out %s addresses, want all 4", st.IPv4.Total)
	}
}
