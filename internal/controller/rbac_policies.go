package controller

// The controller's permissions for the Valid condition and the counts of L2Policies,
// BGPAdvertisements and BFDProfiles (policy.go); `make generate` adds these markers to
// config/rbac/controller/role.yaml. Nodes (the policies' users) and BGPPeers (the
// profiles') are read through the cache rbac.go grants already.
//
// +kubebuilder:rbac:groups=ferrolb.io,resources=l2policies;bgpadvertisements;bfdprofiles,verbs=list;watch
// +kubebuilder:rbac:groups=ferrolb.io,resources=l2policies/status;bgpadvertisements/status;bfdprofiles/status,verbs=patch
