package speaker

// The API calls of authenticated metrics serving (--metrics-secure; see
// internal/metricsserving): a TokenReview of the scraper's token and a SubjectAccessReview
// of its right to GET /metrics.
//
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create
