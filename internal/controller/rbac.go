package controller

// The controller's permissions; `make generate` turns these markers into
// config/rbac/controller/role.yaml: a ClusterRole for what it does across the cluster, and a
// Role in ferrolb-system (the namespace the manifests run it in and --lease-namespace's
// default) for its Lease, the Events leader election records about that Lease, and the
// heartbeat Secret. Each verb
// is one the code uses; test/rbac runs the controller against these roles and fails on a
// request they refuse and on a verb nothing uses.
//
// Services, Nodes and the pools are read through the informer cache (list, watch; never
// get). Service and IPPool status are written with Update (optimistic concurrency on the
// allocation record), BGPPeer status with a merge patch. Its own Events go through
// events.k8s.io in each Service's namespace: create only, as each is recorded once per
// revision of its Service (every one follows a status write), so client-go never folds two
// into a series, which it would patch.
//
// +kubebuilder:rbac:groups="",resources=services,verbs=list;watch
// +kubebuilder:rbac:groups="",resources=services/status,verbs=update
// +kubebuilder:rbac:groups="",resources=nodes,verbs=list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create
// +kubebuilder:rbac:groups=ferrolb.io,resources=ippools;bgppeers,verbs=list;watch
// +kubebuilder:rbac:groups=ferrolb.io,resources=ippools/status,verbs=update
// +kubebuilder:rbac:groups=ferrolb.io,resources=bgppeers/status,verbs=patch
//
// Leader election (client-go's LeaseLock) gets, creates and updates the Lease
// ferrolb-controller, and records core/v1 Events about it ("became leader", "stopped
// leading"; each names the replica, so none repeats and none is patched).
//
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=ferrolb-system,resources=leases,verbs=get;create;update
// +kubebuilder:rbac:groups="",namespace=ferrolb-system,resources=events,verbs=create
//
// The heartbeat Secret (memberkey.go): the leader gets it by name and creates it when it is
// absent; no list or watch, so the controller reads no other Secret (the speakers' BGP MD5
// passwords live in the same namespace). Create cannot be limited to a name (the API server
// authorizes a create before the object's name is settled), so it is granted on Secrets in
// ferrolb-system; get only on ferrolb-memberlist (the chart puts its
// speaker.memberlist.secretName there).
//
// +kubebuilder:rbac:groups="",namespace=ferrolb-system,resources=secrets,verbs=create
// +kubebuilder:rbac:groups="",namespace=ferrolb-system,resources=secrets,resourceNames=ferrolb-memberlist,verbs=get

// The status page (--status-bind-address, off by default; internal/status) shows the speaker
// DaemonSet's readiness and its pods, read from the API server in the controller's own
// namespace only (the rest of the page comes from the cache above).
//
// +kubebuilder:rbac:groups=apps,namespace=ferrolb-system,resources=daemonsets,verbs=get
// +kubebuilder:rbac:groups="",namespace=ferrolb-system,resources=pods,verbs=list
//
// Authenticated metrics serving (--metrics-secure; internal/metricsserving) reviews the
// scraper's bearer token (TokenReview) and its right to GET /metrics (SubjectAccessReview).
//
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create
