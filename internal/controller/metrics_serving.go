package controller

import (
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// The API calls that authenticated metrics serving makes (--metrics-secure): a TokenReview of
// the scraper's bearer token and a SubjectAccessReview of its right to GET /metrics.
//
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// MetricsServing is how the controller and the speaker serve /metrics at addr: plain HTTP,
// or with secure HTTPS (a self-signed certificate unless one is mounted) where only callers
// whose token the API server accepts and who may GET the non-resource URL /metrics are
// served, as controller-runtime's authenticated metrics do.
func MetricsServing(addr string, secure bool) metricsserver.Options {
	o := metricsserver.Options{BindAddress: addr}
	if secure {
		o.SecureServing = true
		o.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	return o
}
