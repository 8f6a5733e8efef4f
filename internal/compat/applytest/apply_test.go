// Package applytest_test applies the converted documentation examples of internal/compat to a
// real API server, runs FerroLB's controller on them and checks that Services get the
// addresses MetalLB or Cilium would give them. It is a package of its own so that the
// conversion's unit, golden and fuzz tests run without an API server.
package applytest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferrolb/ferrolb/internal/compat"
	"github.com/ferrolb/ferrolb/internal/controller"
	"github.com/ferrolb/ferrolb/internal/kubetest"
	"github.com/ferrolb/ferrolb/internal/testrun"
)

var env *kubetest.Env

func TestMain(m *testing.M) {
	os.Exit(kubetest.Run(m, &env))
}

// service is a Service created in a scenario, and the addresses it must get.
type service struct {
	// name of the Service: one of the input's Services when fromInput, otherwise one made here
	// with a single TCP port 80.
	name      string
	fromInput bool
	namespace string // for Services made here; default "apply"
	labels    map[string]string
	// annotations of a Service made here, such as MetalLB's or Cilium's pool requests.
	annotations map[string]string

	// want is the ingress FerroLB gives, in order; empty: none (the Service is refused).
	want []string
	// original is what MetalLB or Cilium gives, when it differs from want; the conversion must
	// then have warned, with a message containing because.
	original []string
	because  string
	// unknown says why the original system's address cannot be stated (random allocation).
	unknown string
}

// namespaceLabels are the labels of the namespaces scenarios create, where they matter.
var namespaceLabels = map[string]map[string]string{
	"namespace-c": {"foo": "bar"}, // matched by the MetalLB example's namespaceSelectors
}

// scenarios are the Services of each example; examples without an entry (announcement only)
// are still converted and applied.
var scenarios = map[string][]service{
	"metallb/first-pool.yaml": {
		{name: "web", want: []string{"192.168.9.1"}, original: []string{"192.168.10.0"}, because: "in the order listed"},
	},
	"metallb/l2.yaml":          {{name: "web", want: []string{"192.168.1.240"}}},
	"metallb/l2-pools.yaml":    {{name: "web", want: []string{"192.168.1.240"}}},
	"metallb/bgp.yaml":         {{name: "web", want: []string{"192.168.1.240"}}},
	"metallb/bgp-pools.yaml":   {{name: "web", want: []string{"192.168.1.240"}}},
	"metallb/aggregation.yaml": {{name: "web", want: []string{"198.51.100.0"}}},
	"metallb/auto-assign.yaml": {
		{name: "web", want: []string{"192.168.10.0"}},
		{name: "paid", annotations: map[string]string{"metallb.universe.tf/address-pool": "expensive"}, want: []string{"42.176.25.64"}},
	},
	"metallb/service-allocation.yaml": {
		{name: "bar", namespace: "namespace-a", labels: map[string]string{"app": "bar"}, want: []string{"192.168.20.1"}},
		{name: "unlabelled", namespace: "namespace-a"},
		{name: "bar", namespace: "namespace-c", labels: map[string]string{"app": "bar"},
			original: []string{"192.168.20.2"}, because: "selects namespaces by name only"},
	},
	"metallb/usage-ips.yaml":     {{name: "nginx", fromInput: true, want: []string{"192.168.1.100"}}},
	"metallb/usage-pool.yaml":    {{name: "nginx", fromInput: true, want: []string{"203.0.113.16"}}},
	"metallb/usage-sharing.yaml": {{name: "dns-service-tcp", fromInput: true, want: []string{"1.2.3.4"}}, {name: "dns-service-udp", fromInput: true, want: []string{"1.2.3.4"}}},

	"cilium/pool-blocks.yaml": {
		{name: "web", want: []string{"1.2.3.4"}, original: []string{"10.0.10.1"}, because: "in the order listed"},
	},
	"cilium/pool-cidrs.yaml": {
		{name: "web", want: []string{"10.0.10.1"}, unknown: "Cilium 1.13 and 1.14 allocate at random"},
	},
	"cilium/service-selectors.yaml": {
		{name: "blue", labels: map[string]string{"color": "blue"}, original: []string{"20.0.10.1"}, because: "overlaps pool"},
		{name: "red", labels: map[string]string{"color": "red"}}, // red-pool conflicts in Cilium too
	},
	"cilium/namespace-selector.yaml": {
		{name: "web", namespace: "tenant-a", want: []string{"20.0.10.1"}},
		{name: "web", namespace: "tenant-b"},
	},
	"cilium/disabled.yaml": {{name: "web"}},
	"cilium/requested-ips.yaml": {{name: "service-blue", fromInput: true, want: []string{"20.0.10.100"},
		original: []string{"20.0.10.100", "20.0.10.200"}, because: "one address per family"}},
	"cilium/sharing-key.yaml": {
		{name: "service-blue", fromInput: true, want: []string{"20.0.10.0"}},
		{name: "service-red", fromInput: true, want: []string{"20.0.10.0"}},
	},
}

// TestApplied converts every example, creates the result on the API server (which validates
// it with FerroLB's CRDs: OpenAPI schema and CEL rules), runs the controller and checks the
// Services of the example's scenario.
func TestApplied(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("..", "testdata", "*", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, path := range inputs {
		if strings.HasSuffix(path, ".golden.yaml") {
			continue
		}
		rel, _ := filepath.Rel(filepath.Join("..", "testdata"), path)
		rel = filepath.ToSlash(rel)
		seen[rel] = true
		t.Run(strings.TrimSuffix(rel, ".yaml"), func(t *testing.T) {
			apply(t, path, scenarios[rel])
		})
	}
	for name := range scenarios {
		if !seen[name] {
			t.Errorf("scenario for %s, which is not in testdata", name)
		}
	}
}

func apply(t *testing.T, path string, svcs []service) {
	ctx := context.Background()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	srcs, err := compat.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	res := compat.Convert(srcs)

	// Every converted object is accepted as it is.
	for _, o := range res.Outputs {
		obj := o.Object.DeepCopyObject().(client.Object)
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Errorf("create %s %s (from %s): %v", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName(), o.From, err)
			continue
		}
		t.Cleanup(func() {
			if err := env.Client.Delete(ctx, obj); client.IgnoreNotFound(err) != nil {
				t.Error(err)
			}
		})
	}
	if t.Failed() || len(svcs) == 0 {
		return
	}

	stop := testrun.Background(t, "controller", func(ctx context.Context) error {
		return controller.Run(ctx, env.Config, controller.Options{MetricsAddr: "0", HealthAddr: "0", Restartable: true})
	})
	// Services are created one after another, each waited for: the order decides who gets
	// which address, in MetalLB and Cilium as in FerroLB.
	var created []*corev1.Service
	for _, s := range svcs {
		svc := s.object(t, srcs)
		ensureNamespace(t, svc.Namespace)
		if err := env.Client.Create(ctx, svc); err != nil {
			t.Fatalf("create Service %s/%s: %v", svc.Namespace, svc.Name, err)
		}
		created = append(created, svc)
		got := waitSettled(t, svc.Namespace, svc.Name)
		if !slices.Equal(got, s.want) {
			t.Errorf("Service %s/%s got %v, want %v", svc.Namespace, svc.Name, got, s.want)
		}
		switch {
		case s.unknown != "":
			t.Logf("Service %s/%s: %v; the original system's address is not stated: %s", svc.Namespace, svc.Name, got, s.unknown)
		case s.because != "":
			if slices.Equal(s.want, s.original) {
				t.Errorf("Service %s/%s: original equals want; drop because", svc.Namespace, svc.Name)
			}
			if !slices.ContainsFunc(res.Warnings, func(w compat.Warning) bool { return strings.Contains(w.Message, s.because) }) {
				t.Errorf("Service %s/%s gets %v where the original gives %v, and no warning says %q: %v",
					svc.Namespace, svc.Name, s.want, s.original, s.because, res.Warnings)
			}
		}
	}
	// The next example starts from nothing: a fresh controller over an API server without
	// these Services.
	stop()
	for _, svc := range created {
		if err := env.Client.Delete(ctx, svc); client.IgnoreNotFound(err) != nil {
			t.Error(err)
		}
	}
}

// object is the Service to create: taken from the input, or made here.
func (s service) object(t *testing.T, srcs []compat.Source) *corev1.Service {
	t.Helper()
	if s.fromInput {
		for _, src := range srcs {
			if src.Kind != "Service" || src.Name != s.name {
				continue
			}
			svc := &corev1.Service{}
			if err := json.Unmarshal(src.JSON, svc); err != nil {
				t.Fatal(err)
			}
			if svc.Namespace == "" {
				svc.Namespace = "apply"
			}
			return svc
		}
		t.Fatalf("no Service %q in the input", s.name)
	}
	ns := s.namespace
	if ns == "" {
		ns = "apply"
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: s.name, Labels: s.labels, Annotations: s.annotations},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
			Selector: map[string]string{"app": s.name},
		},
	}
}

func ensureNamespace(t *testing.T, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: namespaceLabels[name]}}
	if err := env.Client.Create(context.Background(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// waitSettled waits until the controller has decided about a Service (its Allocated condition
// is set) and returns its ingress addresses.
func waitSettled(t *testing.T, ns, name string) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		svc := &corev1.Service{}
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, svc); err != nil {
			t.Fatal(err)
		}
		if c := meta.FindStatusCondition(svc.Status.Conditions, controller.ConditionAllocated); c != nil && c.ObservedGeneration == svc.Generation {
			var out []string
			for _, in := range svc.Status.LoadBalancer.Ingress {
				out = append(out, in.IP)
			}
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s, Service %s/%s has no %s condition: %s", ns, name, controller.ConditionAllocated, fmt.Sprint(svc.Status))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
