package controller_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/controller"
)

// addrList is "prefix0, prefix1, ..." for n addresses: the shape of the report's annotation,
// which listed a whole pool.
func addrList(prefix string, from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, from+i)
	}
	return out
}

// TestRequestLimit: a Service that lists many addresses gets one per family, and its
// condition and an Event say why the rest are refused; one whose annotation is far too long
// (the report's 250 KB) is refused whole, unread, with the annotation named.
func TestRequestLimit(t *testing.T) {
	ns := newNamespace(t, "limit")
	startController(t)
	createPool(t, "limit-pool", v1.IPPoolSpec{Blocks: blocks("10.30.0.0/24", "2001:db8:30::/120"), Namespaces: onlyNamespace(ns)})

	// 64 entries (the most read), v4 and v6 interleaved, for a dual-stack Service.
	var ips []string
	for i, a := range addrList("10.30.0.", 10, 32) {
		ips = append(ips, a, addrList("2001:db8:30::", 10+i, 1)[0])
	}
	createService(t, ns, "many", func(s *corev1.Service) {
		s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyPreferDualStack)
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
		s.Annotations = map[string]string{"ferrolb.io/ips": strings.Join(ips, ",")}
	})
	svc := waitIngress(t, ns, "many", "10.30.0.10", "2001:db8:30::10")
	c := meta.FindStatusCondition(svc.Status.Conditions, controller.ConditionAllocated)
	if c.Reason != controller.ReasonPartiallyAllocated {
		t.Errorf("reason = %s, want %s", c.Reason, controller.ReasonPartiallyAllocated)
	}
	for _, want := range []string{
		"refused 10.30.0.11: a Service gets one IPv4 address, and this one holds 10.30.0.10",
		"refused 2001:db8:30::41: a Service gets one IPv6 address, and this one holds 2001:db8:30::10",
		"maxAddressesPerService",
	} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("condition message %q does not contain %q", c.Message, want)
		}
	}
	// The Event is cut to what the API server takes (1024 bytes), and says so.
	waitEvent(t, ns, "many", "AllocationFailed", "refused 10.30.0.11: a Service gets one IPv4 address")
	waitEvent(t, ns, "many", "AllocationFailed", "; 2001:db8:30::11: a Service gets one IPv6 address")
	waitEvent(t, ns, "many", "AllocationFailed", "more (condition ferrolb.io/Allocated lists them)")
	waitPool(t, "limit-pool", func(st v1.IPPoolStatus) bool {
		return st.IPv4 != nil && st.IPv4.Used == 1 && st.IPv6 != nil && st.IPv6.Used == 1
	})

	// The report's annotation: 21,833 addresses, about 250 KB, on a single-stack Service. It
	// is refused unread: the Service gets nothing (not an address it did not ask for).
	parts := make([]string, 21833)
	for i := range parts {
		parts[i] = fmt.Sprintf("10.0.%d.%d", i/256, i%256)
	}
	huge := strings.Join(parts, ",")
	createService(t, ns, "huge", func(s *corev1.Service) {
		s.Annotations = map[string]string{"ferrolb.io/ips": huge}
	})
	c = waitCondition(t, ns, "huge", func(c *metav1.Condition) bool { return c.Reason == controller.ReasonNoAddress })
	want := fmt.Sprintf("metadata.annotations[ferrolb.io/ips]: refused unread: %d bytes, more than the 4096", len(huge))
	if !strings.Contains(c.Message, want) {
		t.Errorf("condition message %q does not contain %q", c.Message, want)
	}
	waitEvent(t, ns, "huge", "InvalidConfiguration", "metadata.annotations[ferrolb.io/ips]: refused unread")
	if got := ingressIPs(getService(t, ns, "huge")); len(got) != 0 {
		t.Errorf("Service with a %d-byte annotation holds %v, want nothing", len(huge), got)
	}
}

// TestRequestLimitKeepsHeld: a Service holding more addresses of a family than it would be
// given now (from before the limit) keeps them across a controller restart, when it asks for
// one more (refused), and when its annotation becomes too long to read; it gives them up
// only by asking for fewer.
func TestRequestLimitKeepsHeld(t *testing.T) {
	ns := newNamespace(t, "limit-held")
	createPool(t, "limit-held-pool", v1.IPPoolSpec{Blocks: blocks("10.32.0.0/24"), Namespaces: onlyNamespace(ns)})
	held := addrList("10.32.0.", 1, 3)

	// What an older controller left: three addresses of one family in the Service's status.
	svc := createService(t, ns, "old", func(s *corev1.Service) {
		s.Annotations = map[string]string{"ferrolb.io/ips": strings.Join(held, ",")}
	})
	for _, a := range held {
		svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress,
			corev1.LoadBalancerIngress{IP: a, IPMode: ptr.To(corev1.LoadBalancerIPModeVIP)})
	}
	if err := env.Client.Status().Update(context.Background(), svc); err != nil {
		t.Fatal(err)
	}
	stop := startController(t)
	// A Service created after it, asking for one of them, does not get it.
	createService(t, ns, "thief", func(s *corev1.Service) {
		s.Annotations = map[string]string{"ferrolb.io/ips": held[1]}
	})
	waitCondition(t, ns, "thief", func(c *metav1.Condition) bool {
		return c.Reason == controller.ReasonNoAddress && strings.Contains(c.Message, "held by "+ns+"/old")
	})
	waitCondition(t, ns, "old", func(c *metav1.Condition) bool { return c.Reason == controller.ReasonAllocated })
	waitIngress(t, ns, "old", held...)

	// One more: refused, the three kept.
	setAnnotation(t, ns, "old", strings.Join(append(slices.Clone(held), "10.32.0.4"), ","))
	c := waitCondition(t, ns, "old", func(c *metav1.Condition) bool { return c.Reason == controller.ReasonPartiallyAllocated })
	if !strings.Contains(c.Message, "refused 10.32.0.4: a Service gets one IPv4 address") {
		t.Errorf("condition message %q does not refuse 10.32.0.4 for the limit", c.Message)
	}
	waitIngress(t, ns, "old", held...)

	// Restarted again, with an annotation too long to read: all kept, and said why.
	stop()
	setAnnotation(t, ns, "old", strings.Join(append(slices.Clone(held), addrList("10.32.1.", 0, 500)...), ","))
	startController(t)
	c = waitCondition(t, ns, "old", func(c *metav1.Condition) bool { return strings.Contains(c.Message, "refused unread") })
	if c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "the Service keeps the addresses it holds") {
		t.Errorf("condition = %+v, want True, saying the Service keeps its addresses", c)
	}
	waitIngress(t, ns, "old", held...)

	// Asking for one of them gives the others up.
	setAnnotation(t, ns, "old", held[2])
	waitIngress(t, ns, "old", held[2])
	waitEvent(t, ns, "old", "IPReleased", "10.32.0.1: no longer requested")
}

func setAnnotation(t *testing.T, ns, name, ips string) {
	t.Helper()
	svc := getService(t, ns, name)
	svc.Annotations["ferrolb.io/ips"] = ips
	if err := env.Client.Update(context.Background(), svc); err != nil {
		t.Fatal(err)
	}
}
