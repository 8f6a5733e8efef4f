// Package metricsserving is how FerroLB's controller and speaker serve /metrics. The API
// calls that the secure mode makes need RBAC, which each component grants itself with
// markers of its own (internal/controller/rbac.go, internal/speaker/rbac_metrics.go).
package metricsserving

import (
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// Options serve /metrics at addr: plain HTTP, or with secure HTTPS (a self-signed
// certificate unless one is mounted) where only callers whose token the API server accepts
// (a TokenReview) and who may GET the non-resource URL /metrics (a SubjectAccessReview) are
// served, as controller-runtime's authenticated metrics do.
func Options(addr string, secure bool) metricsserver.Options {
	o := metricsserver.Options{BindAddress: addr}
	if secure {
		o.SecureServing = true
		o.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	return o
}
