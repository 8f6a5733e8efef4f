// Package controller is FerroLB's cluster controller: it gives LoadBalancer Services
// addresses from IPPools and records them in the Services' status. One replica at a time
// works, chosen by a Lease.
package controller

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	ferrolbv1alpha1 "github.com/ferrolb/ferrolb/api/v1alpha1"
)

// Options configure the controller.
type Options struct {
	// MetricsAddr serves Prometheus metrics at /metrics; "0" turns it off.
	MetricsAddr string
	// HealthAddr serves /healthz and /readyz; "0" turns it off.
	HealthAddr string
	// LeaderElection makes replicas take turns through a Lease; off only for a single replica.
	LeaderElection bool
	// LeaseNamespace holds the Lease.
	LeaseNamespace string
}

// leaseName is the Lease replicas of the controller compete for.
const leaseName = "ferrolb-controller"

// Scheme returns the kinds the controller reads and writes.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := ferrolbv1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

// Run runs the controller until ctx ends. It returns only after its goroutines have exited.
func Run(ctx context.Context, cfg *rest.Config, opts Options) error {
	scheme, err := Scheme()
	if err != nil {
		return err
	}
	renew, lease := 10*time.Second, 15*time.Second
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsserver.Options{BindAddress: opts.MetricsAddr},
		HealthProbeBindAddress:        opts.HealthAddr,
		LeaderElection:                opts.LeaderElection,
		LeaderElectionID:              leaseName,
		LeaderElectionNamespace:       opts.LeaseNamespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &lease,
		RenewDeadline:                 &renew,
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	if err := addHealthChecks(mgr); err != nil {
		return err
	}
	return mgr.Start(ctx)
}
