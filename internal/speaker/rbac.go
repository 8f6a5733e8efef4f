package speaker

// The speaker's permissions; `make generate` turns these markers into
// config/rbac/speaker/role.yaml.
//
// +kubebuilder:rbac:groups="",resources=services;endpoints;nodes;namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=services/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=ferrolb.io,resources=ippools;l2policies;bgppeers;bgpadvertisements;bfdprofiles,verbs=get;list;watch
// +kubebuilder:rbac:groups=ferrolb.io,resources=bgppeers/status,verbs=get;patch
