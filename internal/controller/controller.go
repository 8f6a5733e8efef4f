// Package controller is FerroLB's cluster controller: it gives LoadBalancer Services
// addresses from IPPools and records them in the Services' status. One replica at a time
// works, chosen by a Lease.
package controller

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	ferrolbv1alpha1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/apischeme"
	"github.com/ferrolb/ferrolb/internal/config"
	"github.com/ferrolb/ferrolb/internal/eventnote"
	"github.com/ferrolb/ferrolb/internal/metricsserving"
)

// Options configure the controller.
type Options struct {
	// MetricsAddr serves Prometheus metrics at /metrics; "0" turns it off.
	MetricsAddr string
	// MetricsSecure serves them over HTTPS to authenticated, authorised callers only (see
	// internal/metricsserving).
	MetricsSecure bool
	// HealthAddr serves /healthz and /readyz; "0" turns it off.
	HealthAddr string
	// LeaderElection makes replicas take turns through a Lease; off only for a single replica.
	LeaderElection bool
	// LeaseNamespace holds the Lease.
	LeaseNamespace string
	// Namespace is the controller's own namespace, where it makes MemberSecret.
	Namespace string
	// MemberSecret names the Secret holding the key the speakers sign heartbeats with (key
	// "key"): when it does not exist in Namespace, the leader creates it with a random key.
	// One that exists is never changed. Empty: none is made.
	MemberSecret string
	// LoadBalancerClass is the spec.loadBalancerClass served besides none; default
	// ferrolb.io/ferrolb.
	LoadBalancerClass string
	// QPS and Burst limit the controller's requests to the API server; zero keeps
	// client-go's defaults.
	QPS   float32
	Burst int
	// Workers is how many Services are reconciled at once; default 4.
	Workers int
	// Compat lists other systems whose pools are read besides IPPools: "metallb"
	// (IPAddressPool), "cilium" (CiliumLoadBalancerIPPool). Off by default.
	Compat []string
	// StatusAddr serves the status page (the same as `ferrolb status`, as HTML, and as JSON
	// at /status.json), read-only; "" or "0" turns it off (the default).
	StatusAddr string
	// SpeakerNamespace is where the status page looks for the speaker DaemonSet; default
	// LeaseNamespace (both are the release's namespace in the chart).
	SpeakerNamespace string
	// Restartable lets one process run the controller more than once (tests do);
	// controller-runtime otherwise refuses a second controller of the same name, whose
	// metrics would collide.
	Restartable bool
}

// leaseName is the Lease replicas of the controller compete for.
const leaseName = "ferrolb-controller"

// Run runs the controller until ctx ends. It returns only after its goroutines have exited.
func Run(ctx context.Context, cfg *rest.Config, opts Options) error {
	scheme, err := apischeme.New()
	if err != nil {
		return err
	}
	cfg = rest.CopyConfig(cfg)
	if opts.QPS > 0 {
		cfg.QPS, cfg.Burst = opts.QPS, opts.Burst
	}
	renew, lease := 10*time.Second, 15*time.Second
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsserving.Options(opts.MetricsAddr, opts.MetricsSecure),
		HealthProbeBindAddress:        opts.HealthAddr,
		LeaderElection:                opts.LeaderElection,
		LeaderElectionID:              leaseName,
		LeaderElectionNamespace:       opts.LeaseNamespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &lease,
		RenewDeadline:                 &renew,
		Controller:                    ctrlconfig.Controller{SkipNameValidation: &opts.Restartable},
		// The other systems' pools (--compat) are read as unstructured objects; cache them
		// like the rest instead of listing them from the API server on every reconcile.
		Client: client.Options{Cache: &client.CacheOptions{Unstructured: len(opts.Compat) > 0}},
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	if err := addHealthChecks(mgr); err != nil {
		return err
	}
	invalid := newInvalidObjects()
	if err := metricsserving.Register(invalid); err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	if err := setupIPAM(ctx, mgr, opts, invalid); err != nil {
		return err
	}
	if err := setupPeerStatus(mgr); err != nil {
		return fmt.Errorf("bgppeer-status controller: %w", err)
	}
	if err := setupPolicyStatus(mgr, invalid); err != nil {
		return err
	}
	if opts.MemberSecret != "" {
		if opts.Namespace == "" {
			return fmt.Errorf("the heartbeat Secret %s needs the controller's namespace", opts.MemberSecret)
		}
		err := mgr.Add(&memberSecret{reader: mgr.GetAPIReader(), writer: mgr.GetClient(),
			namespace: opts.Namespace, name: opts.MemberSecret, retry: time.Second})
		if err != nil {
			return err
		}
	}
	if err := addStatusPage(mgr, opts); err != nil {
		return err
	}
	return mgr.Start(ctx)
}

// setupIPAM registers the Service and IPPool reconcilers, which share one allocation.
func setupIPAM(ctx context.Context, mgr ctrl.Manager, opts Options, invalid *invalidObjects) error {
	class := opts.LoadBalancerClass
	if class == "" {
		class = config.LoadBalancerClass
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = 4
	}
	m, err := newIPAMMetrics()
	if err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	invalid.addKind(ipPoolKind)
	state := newAllocation(class)
	if state.compat, err = compatKinds(ctx, mgr.GetRESTMapper(), opts.Compat); err != nil {
		return err
	}
	poolEvents := make(chan event.GenericEvent, 1024)
	retry := make(chan event.GenericEvent, 1024)
	svcs := &serviceReconciler{
		client:     mgr.GetClient(),
		recorder:   eventnote.Recorder(mgr.GetEventRecorder("ferrolb-controller")),
		state:      state,
		poolEvents: poolEvents,
		retry:      retry,
		metrics:    m,
	}
	// Any change to a pool re-evaluates every Service FerroLB serves: a pending one may now
	// get an address, a held one may now be in no pool.
	allServices := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		var list corev1.ServiceList
		if err := mgr.GetClient().List(ctx, &list); err != nil {
			logf.FromContext(ctx).Error(err, "list Services after a pool change")
			return nil
		}
		var out []reconcile.Request
		for i := range list.Items {
			if config.Served(&list.Items[i], class) {
				out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
			}
		}
		return out
	})
	b := ctrl.NewControllerManagedBy(mgr).
		Named("service").
		For(&corev1.Service{}).
		Watches(&ferrolbv1alpha1.IPPool{}, allServices, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(source.Channel(retry, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers})
	for _, gvk := range state.compat {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(gvk)
		b = b.Watches(u, allServices, builder.WithPredicates(predicate.GenerationChangedPredicate{}))
	}
	err = b.Complete(svcs)
	if err != nil {
		return fmt.Errorf("service controller: %w", err)
	}
	err = ctrl.NewControllerManagedBy(mgr).
		Named("ippool").
		For(&ferrolbv1alpha1.IPPool{}).
		WatchesRawSource(source.Channel(poolEvents, &handler.EnqueueRequestForObject{})).
		Complete(&poolReconciler{client: mgr.GetClient(), state: state, metrics: m, invalid: invalid, countInterval: time.Second, lastWrite: map[string]time.Time{}})
	if err != nil {
		return fmt.Errorf("ippool controller: %w", err)
	}
	return nil
}
