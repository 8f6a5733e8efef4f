package controller

// The controller's permissions; `make generate` turns these markers into
// config/rbac/controller/role.yaml.
//
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups="",resources=services/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=ferrolb.io,resources=ippools,verbs=get;list;watch
// +kubebuilder:rbac:groups=ferrolb.io,resources=ippools/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=ferrolb.io,resources=bgppeers,verbs=get;list;watch
// +kubebuilder:rbac:groups=ferrolb.io,resources=bgppeers/status,verbs=get;patch
