package speaker_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/config"
	"github.com/ferrolb/ferrolb/internal/controller"
	labfrr "github.com/ferrolb/ferrolb/internal/lab/frr"
	"github.com/ferrolb/ferrolb/internal/testrun"
)

// BenchmarkServiceToRoute measures, with the controller and two nodes' speakers running and
// their sessions established, the time from creating a LoadBalancer Service to the router's
// kernel holding its ECMP route over both nodes: allocation, status write, both speakers'
// watch and reconcile, BGP UPDATE, FRR's best path and zebra's install. Run with a fixed
// count: go test -run XXX -bench ServiceToRoute -benchtime 10x ./internal/speaker/
func BenchmarkServiceToRoute(b *testing.B) {
	ctx := context.Background()
	l := newLab(b, "br0")
	router := l.host("rt")
	l.join(router, "eth0", "br0", "192.0.2.1/24")
	v4 := []string{"192.0.2.31", "192.0.2.32"}
	frr := labfrr.ForTest(b, router, "frr defaults traditional\nhostname router\n!\nrouter bgp 64512\n"+
		" bgp router-id 192.0.2.1\n no bgp ebgp-requires-policy\n"+
		" neighbor 192.0.2.31 remote-as 64513\n neighbor 192.0.2.32 remote-as 64513\n"+
		" address-family ipv4 unicast\n  maximum-paths 4\n exit-address-family\n")
	mustCreate := func(o client.Object) {
		if err := env.Client.Create(ctx, o); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = env.Client.Delete(context.Background(), o) })
	}
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"bgp-bench": "true"}}
	mustCreate(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bgp-bench"}})
	mustCreate(&v1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "bench-router"}, Spec: v1.BGPPeerSpec{
		PeerAddress: "192.0.2.1", PeerASN: 64512, LocalASN: 64513, NodeSelector: sel}})
	mustCreate(&v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "bench-pool"}, Spec: v1.IPPoolSpec{
		Blocks: []v1.IPBlock{{CIDR: "203.0.113.0/24"}}}})
	mustCreate(&v1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "bench"}, Spec: v1.BGPAdvertisementSpec{
		Pools: []string{"bench-pool"}}})
	testrun.Background(b, "controller", func(ctx context.Context) error {
		return controller.Run(ctx, env.Config, controller.Options{MetricsAddr: "0", HealthAddr: "0", Restartable: true})
	})
	for i, name := range []string{"bench-node-a", "bench-node-b"} {
		ns := l.host(fmt.Sprintf("bb%d", i))
		l.join(ns, "eth0", "br0", v4[i]+"/24")
		startChild(b, name, v4[i], map[string]string{"bgp-bench": "true"}, ns)
	}
	// The sessions come up first: that is not part of the figure.
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range v4 {
		for {
			st, err := frr.Neighbor(n)
			if err == nil && st.BGPState == "Established" {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("session with %s: %+v %v", n, st, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	var took []time.Duration
	i := 0
	for b.Loop() {
		i++
		vip := fmt.Sprintf("203.0.113.%d", 10+i%200)
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "bgp-bench", Name: fmt.Sprintf("svc-%d", i),
				Annotations: map[string]string{config.AnnotationIPs: vip}},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer,
				Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(80), Protocol: corev1.ProtocolTCP}}},
		}
		start := time.Now()
		if err := env.Client.Create(ctx, svc); err != nil {
			b.Fatal(err)
		}
		waitNexthops(b, router, vip+"/32", v4...)
		took = append(took, time.Since(start))
		if err := env.Client.Delete(ctx, svc); err != nil {
			b.Fatal(err)
		}
		waitNexthops(b, router, vip+"/32")
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2])/float64(time.Millisecond), "ms-median")
	b.ReportMetric(float64(took[len(took)-1])/float64(time.Millisecond), "ms-max")
	b.ReportMetric(0, "ns/op")
}
