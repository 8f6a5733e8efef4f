package controller

// The controller's permissions for the Valid condition of L2Policies and BGPAdvertisements
// (policy.go); `make generate` adds these markers to config/rbac/controller/role.yaml.
//
// +kubebuilder:rbac:groups=ferrolb.io,resources=l2policies;bgpadvertisements,verbs=list;watch
// +kubebuilder:rbac:groups=ferrolb.io,resources=l2policies/status;bgpadvertisements/status,verbs=patch
