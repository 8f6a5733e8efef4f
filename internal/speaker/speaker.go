// Package speaker is FerroLB's node agent. It runs on every node (host network) and makes the
// addresses the controller allocated reachable: by Layer 2 (ARP/NDP) or BGP.
//
// Today it connects to the API server, checks that its Node exists and serves health and
// metrics; announcing lands with the Layer 2 and BGP work (see docs/architecture.md).
package speaker

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/ferrolb/ferrolb/internal/controller"
)

// Options configure the speaker.
type Options struct {
	// NodeName is the Node this speaker runs on (the downward API's spec.nodeName).
	NodeName string
	// MetricsAddr serves Prometheus metrics at /metrics; "0" turns it off.
	MetricsAddr string
	// HealthAddr serves /healthz and /readyz; "0" turns it off.
	HealthAddr string
}

// Run runs the speaker until ctx ends. It returns only after its goroutines have exited.
func Run(ctx context.Context, cfg *rest.Config, opts Options) error {
	if opts.NodeName == "" {
		return errors.New("node name is empty: set --node-name (in a DaemonSet, from spec.nodeName)")
	}
	scheme, err := controller.Scheme()
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: opts.MetricsAddr},
		HealthProbeBindAddress: opts.HealthAddr,
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	// An uncached read: the cache is not running yet.
	reader := mgr.GetAPIReader()
	if err := reader.Get(ctx, types.NamespacedName{Name: opts.NodeName}, &corev1.Node{}); err != nil {
		return fmt.Errorf("node %q: %w", opts.NodeName, err)
	}
	return mgr.Start(ctx)
}
