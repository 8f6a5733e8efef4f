package controller_test

import (
	"context"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/controller"
	"github.com/ferrolb/ferrolb/internal/testrun"
)

// With --compat, MetalLB's and Cilium's pools as they are in the cluster give Services
// their addresses, as the old system would: a MetalLB pool named by the Service's
// metallb.io/address-pool annotation, a Cilium pool by its serviceSelector. Without their
// CRDs the controller runs all the same.
func TestCompatPools(t *testing.T) {
	ctx := context.Background()
	run := func() func() {
		return testrun.Background(t, "controller --compat", func(ctx context.Context) error {
			return controller.Run(ctx, env.Config, controller.Options{MetricsAddr: "0", HealthAddr: "0", Restartable: true,
				Compat: []string{"metallb", "cilium"}})
		})
	}
	// No CRDs yet: the controller starts and serves FerroLB's own pools.
	stop := run()
	ns := newNamespace(t, "compat")
	createPool(t, "compat-native", v1.IPPoolSpec{Blocks: blocks("192.0.2.160/30")})
	createService(t, ns, "native", func(s *corev1.Service) { s.Annotations = map[string]string{"ferrolb.io/pool": "compat-native"} })
	waitIngress(t, ns, "native", "192.0.2.160")
	stop()

	if _, err := envtest.InstallCRDs(env.Config, envtest.CRDInstallOptions{Paths: []string{filepath.Join("testdata", "compat-crds.yaml")}}); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "metallb-system"}}); err != nil {
		t.Fatal(err)
	}
	mlb := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
		"metadata": map[string]any{"name": "mlb-cheap", "namespace": "metallb-system"},
		"spec":     map[string]any{"addresses": []any{"192.0.2.170-192.0.2.172"}, "autoAssign": false},
	}}
	cil := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cilium.io/v2", "kind": "CiliumLoadBalancerIPPool",
		"metadata": map[string]any{"name": "cilium-blue"},
		"spec": map[string]any{"blocks": []any{map[string]any{"cidr": "192.0.2.180/30"}},
			"serviceSelector": map[string]any{"matchLabels": map[string]any{"color": "compat-blue"}}},
	}}
	for _, o := range []*unstructured.Unstructured{mlb, cil} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), o) })
	}
	run()
	createService(t, ns, "from-metallb", func(s *corev1.Service) { s.Annotations = map[string]string{"metallb.io/address-pool": "mlb-cheap"} })
	waitIngress(t, ns, "from-metallb", "192.0.2.170")
	createService(t, ns, "from-cilium", func(s *corev1.Service) { s.Labels = map[string]string{"color": "compat-blue"} })
	// A cilium.io/v2 pool without allowFirstLastIPs hands out its CIDR's first address, as
	// Cilium 1.16 and later do.
	waitIngress(t, ns, "from-cilium", "192.0.2.180")
	waitIngress(t, ns, "native", "192.0.2.160") // untouched by the restart

	// Editing the old system's pool takes effect without a restart; what a Service holds
	// stays with it.
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(mlb), mlb); err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedStringSlice(mlb.Object, []string{"192.0.2.174-192.0.2.176"}, "spec", "addresses"); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Update(ctx, mlb); err != nil {
		t.Fatal(err)
	}
	createService(t, ns, "from-metallb-2", func(s *corev1.Service) { s.Annotations = map[string]string{"metallb.io/address-pool": "mlb-cheap"} })
	waitIngress(t, ns, "from-metallb-2", "192.0.2.174")
	waitIngress(t, ns, "from-metallb", "192.0.2.170")
}
