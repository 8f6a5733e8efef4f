package speaker

// The speaker's permissions; `make generate` turns these markers into
// config/rbac/speaker/role.yaml: a ClusterRole for what it does across the cluster, and a
// Role in ferrolb-system (the namespace the manifests run it in and --namespace's default)
// for the BGPPeers' MD5 Secrets, which it reads there only. Each verb is one the code uses;
// test/rbac runs the speaker against these roles and fails on a request they refuse and on
// a verb nothing uses.
//
// Everything is read through the informer cache (list, watch) except the speaker's own
// Node, which Run gets before the cache starts. Status is written by server-side apply
// (patch): one condition of a Service, one node's entry in a BGPPeer. Events go through
// events.k8s.io (create, and patch for a repeated Event's series).
//
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=services,verbs=list;watch
// +kubebuilder:rbac:groups="",resources=services/status,verbs=patch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=ferrolb.io,resources=ippools;l2policies;bgppeers;bgpadvertisements;bfdprofiles,verbs=list;watch
// +kubebuilder:rbac:groups=ferrolb.io,resources=bgppeers/status,verbs=patch
//
// +kubebuilder:rbac:groups="",namespace=ferrolb-system,resources=secrets,verbs=list;watch
