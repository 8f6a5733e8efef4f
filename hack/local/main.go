// Command local runs FerroLB's controller against a real kube-apiserver and etcd started on
// this machine (built from Go modules by hack/envtest.sh), with the CRDs and the sample pools
// of config/samples applied. It writes a kubeconfig so you can poke at it with kubectl, and
// stops everything on Ctrl-C. `make run` starts it.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/ferrolb/ferrolb/internal/controller"
	"github.com/ferrolb/ferrolb/internal/kubetest"
)

func main() {
	cache, _ := os.UserCacheDir()
	kubeconfig := flag.String("kubeconfig-out", filepath.Join(cache, "ferrolb", "local", "kubeconfig"), "where to write the kubeconfig")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, *kubeconfig)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, kubeconfig string) (err error) {
	ctrl.SetLogger(zap.New())
	fmt.Println("starting kube-apiserver and etcd (the first run builds them: about 5 minutes)...")
	env, err := kubetest.Start()
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, env.Stop()) }()
	if err := env.WriteKubeconfig(kubeconfig); err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ferrolb-system"}}
	if err := env.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	root, err := kubetest.RepoRoot()
	if err != nil {
		return err
	}
	samples, err := applyDir(ctx, env.Client, filepath.Join(root, "config", "samples"))
	if err != nil {
		return err
	}
	fmt.Printf(`
API server: %s
kubeconfig: %s
applied:    %v

Try:
  export KUBECONFIG=%s
  kubectl get ippools
  kubectl create service loadbalancer demo --tcp=80:8080
  kubectl get service demo -w

The controller runs below; Ctrl-C stops it and the API server.
`, env.Config.Host, kubeconfig, samples, kubeconfig)
	return controller.Run(ctx, env.Config, controller.Options{
		MetricsAddr: "127.0.0.1:7472", HealthAddr: "127.0.0.1:7473",
		LeaderElection: true, LeaseNamespace: ns.Name,
	})
}

// applyDir creates every object in the YAML files of dir and returns their names.
func applyDir(ctx context.Context, c client.Client, dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, f := range files {
		data, err := os.ReadFile(f) //nolint:gosec // the sample files of this repository
		if err != nil {
			return nil, err
		}
		dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			u := &unstructured.Unstructured{}
			if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			if len(u.Object) == 0 {
				continue
			}
			if err := c.Create(ctx, u); err != nil && !apierrors.IsAlreadyExists(err) {
				return nil, fmt.Errorf("%s: %s %s: %w", f, u.GetKind(), u.GetName(), err)
			}
			names = append(names, u.GetKind()+"/"+u.GetName())
		}
	}
	return names, nil
}
