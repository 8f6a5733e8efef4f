// Package speaker is FerroLB's node agent. It runs on every node (host network) and makes the
// addresses the controller allocated reachable. Layer 2: for each address one live, eligible
// node answers ARP and NDP (internal/l2), chosen the same way by every speaker; speakers learn
// who is alive from each other's heartbeats (internal/l2/member) within 300 ms.
package speaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/apischeme"
	"github.com/ferrolb/ferrolb/internal/bgp"
	"github.com/ferrolb/ferrolb/internal/config"
	"github.com/ferrolb/ferrolb/internal/datapath"
	"github.com/ferrolb/ferrolb/internal/datapath/inspect"
	"github.com/ferrolb/ferrolb/internal/eventnote"
	"github.com/ferrolb/ferrolb/internal/healthcheck"
	"github.com/ferrolb/ferrolb/internal/l2"
	"github.com/ferrolb/ferrolb/internal/l2/member"
	"github.com/ferrolb/ferrolb/internal/metricsserving"
)

// Options configure the speaker.
type Options struct {
	// NodeName is the Node this speaker runs on (the downward API's spec.nodeName).
	NodeName string
	// MetricsAddr serves Prometheus metrics at /metrics; "0" turns it off.
	MetricsAddr string
	// MetricsSecure serves them over HTTPS to authenticated, authorised callers only (see
	// internal/metricsserving).
	MetricsSecure bool
	// HealthAddr serves /healthz and /readyz; "0" turns it off.
	HealthAddr string
	// LoadBalancerClass is the spec.loadBalancerClass served besides none.
	LoadBalancerClass string
	// MemberPort is the UDP port speakers exchange heartbeats on; default 7946.
	MemberPort uint16
	// MemberInterval is the heartbeat interval (default 100 ms); a peer is dead after 3
	// missed.
	MemberInterval time.Duration
	// MemberKey, when set, signs the heartbeats, and only heartbeats signed with it count
	// (member.Config.Key); MemberAcceptUnsigned also counts unsigned ones, for a rollout.
	MemberKey            []byte
	MemberAcceptUnsigned bool
	// Netns runs f in the node's network namespace. Nil in production (the speaker runs in
	// the host's); tests run several nodes in one process.
	Netns func(f func() error) error
	// Restartable lets one process run several speakers (tests); see controller.Options.
	Restartable bool
	// Namespace is where the speaker runs; BGPPeers' MD5 Secrets are read there only (the
	// speaker caches no other Secrets). Default ferrolb-system.
	Namespace string
	// Datapath is datapath.None (default: kube-proxy carries Service traffic) or datapath.XDP
	// (FerroLB's XDP load balancer carries it from DatapathInterface).
	Datapath datapath.Kind
	// DatapathInterface is where the XDP program is attached; default: the interface holding
	// the node's InternalIP.
	DatapathInterface string
	// DatapathXDPMode is how the XDP program is attached (datapath.Config.XDPMode); empty:
	// auto. DatapathConntrackEntries and DatapathMaglevTableSize size its tables
	// (datapath.Config.ConntrackSize, MaglevTableSize); zero: the datapath's defaults.
	DatapathXDPMode          datapath.XDPMode
	DatapathConntrackEntries int
	DatapathMaglevTableSize  int
	// DatapathDSR sends packets to backends by IPIP (direct server return) instead of SNAT,
	// for Services whose backends listen on the Service's own port and decapsulate.
	DatapathDSR bool
	// InspectSocket is the Unix socket (abstract with a leading @, in the node's network
	// namespace) where, with the XDP datapath, `ferrolb inspect` reads it; default
	// inspect.DefaultSocket, "0" turns it off.
	InspectSocket string
	// StateDir holds the state file: what the speaker last announced, written when it
	// changes, and announced again by a speaker that starts while the API server cannot be
	// reached (state.go). Empty keeps no state.
	StateDir string
	// FallbackAfter is how long a starting speaker waits for its Node and its caches before
	// it announces from the state file; default 5 s.
	FallbackAfter time.Duration
}

// cacheSyncTimeout is how long the speaker's controllers wait for their caches: as long as
// it takes. controller-runtime's default (2 minutes) would stop a speaker that starts while
// the API server is down, and with it every announcement it makes from its state file; the
// informers keep retrying meanwhile (client-go's backoff, up to 30 s apart, plus jitter).
const cacheSyncTimeout = 100 * 365 * 24 * time.Hour

// Run runs the speaker until ctx ends. It returns only after its goroutines have exited.
func Run(ctx context.Context, cfg *rest.Config, opts Options) error {
	if opts.NodeName == "" {
		return errors.New("node name is empty: set --node-name (in a DaemonSet, from spec.nodeName)")
	}
	if opts.LoadBalancerClass == "" {
		opts.LoadBalancerClass = config.LoadBalancerClass
	}
	if opts.MemberPort == 0 {
		opts.MemberPort = 7946
	}
	if opts.Namespace == "" {
		opts.Namespace = "ferrolb-system"
	}
	if opts.FallbackAfter <= 0 {
		opts.FallbackAfter = 5 * time.Second
	}
	fallbackAt := time.Now().Add(opts.FallbackAfter)
	log := ctrl.Log.WithName("speaker").WithValues("node", opts.NodeName)
	var err error
	if opts.Datapath, err = datapath.ParseKind(string(opts.Datapath)); err != nil {
		return err
	}
	if err := checkDatapathOptions(&opts); err != nil {
		return err
	}
	do := opts.Netns
	if do == nil {
		do = func(f func() error) error { return f() }
	}
	scheme, err := apischeme.New()
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserving.Options(opts.MetricsAddr, opts.MetricsSecure),
		HealthProbeBindAddress: opts.HealthAddr,
		MapperProvider:         newMapper, // no API server needed to start (mapper.go)
		Controller:             ctrlconfig.Controller{SkipNameValidation: &opts.Restartable, CacheSyncTimeout: cacheSyncTimeout},
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Namespaces: map[string]cache.Config{opts.Namespace: {}}},
		}},
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	// Ready once the informer caches have synced (a DaemonSet rollout waits for it): before
	// that the speaker would announce from a partial view. Without a check, /readyz, which
	// the flag's help promises, answered 404.
	if err := mgr.AddReadyzCheck("caches", func(req *http.Request) error {
		if !mgr.GetCache().WaitForCacheSync(req.Context()) {
			return errors.New("informer caches not synced")
		}
		return nil
	}); err != nil {
		return err
	}
	// What the speaker last announced, for when the API server cannot be reached.
	var saved state
	found := false
	if opts.StateDir != "" {
		var err error
		if saved, found, err = readState(opts.StateDir, opts.NodeName); err != nil {
			log.Error(err, "state file ignored", "dir", opts.StateDir)
		}
	}
	if !found {
		saved = state{Node: opts.NodeName}
	}
	// An uncached read: the cache is not running yet. A Node that does not exist is a
	// mistake to report; an API server that does not answer in time is what the state file
	// is for, and the caches keep trying.
	node, err := getNode(ctx, mgr.GetAPIReader(), opts.NodeName, fallbackAt)
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("node %q: %w", opts.NodeName, err)
	case ctx.Err() != nil:
		return nil
	case err != nil:
		log.Error(err, "cannot read this node from the API server; the caches keep trying", "stateFile", found)
	}

	var conn net.PacketConn
	if err := do(func() (err error) {
		conn, err = net.ListenPacket("udp", fmt.Sprintf(":%d", opts.MemberPort))
		return err
	}); err != nil {
		return fmt.Errorf("heartbeat socket: %w", err)
	}
	tracker, err := member.New(member.Config{Name: opts.NodeName, Interval: opts.MemberInterval,
		Key: opts.MemberKey, AcceptUnsigned: opts.MemberAcceptUnsigned}, conn)
	if err != nil {
		return errors.Join(err, conn.Close())
	}
	// Heartbeats go to the last known peers from the start, so the warm-up hears them
	// before this speaker counts itself alive, also when the API server does not answer.
	// The reconcile replaces them with the Nodes' once the cache has synced.
	tracker.SetPeers(saved.L2.Peers)
	ann := l2.NewResponders(l2.Config{Do: opts.Netns})
	// One BGP speaker for the process: it runs a GoBGP server while the node has peers, and
	// replaces it when the router ID or AS changes (bgp.Speaker.Apply).
	bgpSpeaker, err := bgp.New(bgp.Config{ListenPort: -1, Logger: slog.New(logr.ToSlogHandler(ctrl.Log.WithName("bgp")))})
	if err != nil {
		return errors.Join(err, conn.Close())
	}
	store := newStateStore(opts.StateDir, log, saved)
	var fb *fallback
	if found {
		fb = newFallback(saved, fallbackAt, log, tracker, ann, bgpSpeaker)
	}
	if err := metricsserving.Register(l2Collector{ann: ann, tracker: tracker}); err != nil {
		return errors.Join(fmt.Errorf("register metrics: %w", err), conn.Close())
	}
	status := newBGPStatus(mgr.GetClient(), opts.NodeName, bgpSpeaker)
	if err := metricsserving.Register(bgpCollector{speaker: bgpSpeaker, status: status}); err != nil {
		return errors.Join(fmt.Errorf("register metrics: %w", err), conn.Close())
	}
	// The live set or a link changing recomputes layer 2; the live set also picks the node
	// that writes the Advertised conditions, so BGP recomputes too.
	changes, bgpChanges := make(chan event.GenericEvent, 1), make(chan event.GenericEvent, 1)
	recompute := func() {
		fb.kick()
		for _, ch := range []chan event.GenericEvent{changes, bgpChanges} {
			select {
			case ch <- event.GenericEvent{Object: &corev1.Node{}}:
			default: // one pending recompute covers any number of changes
			}
		}
	}
	runnables := []manager.RunnableFunc{
		tracker.Run,
		ann.Run,
		bgpSpeaker.Run,
		// The live set changing is an event like any other: recompute. So is a link losing
		// or regaining carrier, or an interface coming or going.
		func(ctx context.Context) error {
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-tracker.Changed():
					recompute()
				case <-ann.Changed():
					recompute()
				}
			}
		},
	}
	if fb != nil {
		runnables = append(runnables, fb.Run)
	}
	for _, r := range runnables {
		if err := mgr.Add(r); err != nil {
			return err
		}
	}

	recorder := eventnote.Recorder(mgr.GetEventRecorder("ferrolb-speaker"))
	reporter := newReporter(log, recorder, opts.NodeName)
	announced := newAnnouncements(opts.NodeName, log)
	for _, c := range []prometheus.Collector{announced, reporter} {
		if err := metricsserving.Register(c); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	r := &l2Reconciler{
		client:     mgr.GetClient(),
		recorder:   recorder,
		node:       opts.NodeName,
		class:      opts.LoadBalancerClass,
		namespace:  opts.Namespace,
		reporter:   reporter,
		announced:  announced,
		memberPort: opts.MemberPort,
		tracker:    tracker,
		announcer:  ann,
		fallback:   fb,
		store:      store,
	}
	// FerroLB's objects carry status the controller and the speakers write (counts,
	// conditions, sessions): only a change of spec is worth a recompute on every node.
	specOnly := builder.WithPredicates(predicate.GenerationChangedPredicate{})
	// Every event maps to one key: the reconcile is a full recomputation.
	all := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: "layer2"}}}
	})
	err = ctrl.NewControllerManagedBy(mgr).
		Named("layer2").
		Watches(&corev1.Service{}, all).
		Watches(&corev1.Node{}, all).
		Watches(&discoveryv1.EndpointSlice{}, all).
		Watches(&v1.L2Policy{}, all, specOnly).
		Watches(&v1.IPPool{}, all, specOnly).
		WatchesRawSource(source.Channel(changes, all)).
		Complete(r)
	if err != nil {
		return fmt.Errorf("layer2 controller: %w", err)
	}
	if err := mgr.Add(manager.RunnableFunc(status.Run)); err != nil {
		return err
	}
	// A BGPPeer's status changes with every session's state on every node: only its spec
	// is worth a recompute.
	err = ctrl.NewControllerManagedBy(mgr).
		Named("bgp").
		Watches(&corev1.Service{}, all).
		Watches(&corev1.Node{}, all).
		Watches(&discoveryv1.EndpointSlice{}, all).
		Watches(&v1.BGPPeer{}, all, specOnly).
		Watches(&v1.BGPAdvertisement{}, all, specOnly).
		Watches(&v1.BFDProfile{}, all, specOnly).
		Watches(&v1.IPPool{}, all, specOnly).
		Watches(&corev1.Secret{}, all).
		WatchesRawSource(source.Channel(bgpChanges, all)).
		Complete(&bgpReconciler{
			tracker:   tracker,
			client:    mgr.GetClient(),
			node:      opts.NodeName,
			reporter:  reporter,
			announced: announced,
			class:     opts.LoadBalancerClass,
			namespace: opts.Namespace,
			speaker:   bgpSpeaker,
			status:    status,
			fallback:  fb,
			store:     store,
		})
	if err != nil {
		return fmt.Errorf("bgp controller: %w", err)
	}
	if opts.Datapath == datapath.XDP {
		if err := setupDatapath(mgr, node, saved.DatapathInterface, store, opts, do, all, reporter); err != nil {
			return err
		}
	}
	return mgr.Start(ctx)
}

// getNode reads the Node from the API server, trying again until it gets an answer or
// deadline passes (nil then, with the last error).
func getNode(ctx context.Context, c client.Reader, name string, deadline time.Time) (*corev1.Node, error) {
	var node corev1.Node
	for {
		actx, cancel := context.WithDeadline(ctx, deadline)
		err := c.Get(actx, types.NamespacedName{Name: name}, &node)
		cancel()
		if err == nil {
			return &node, nil
		}
		if apierrors.IsNotFound(err) || ctx.Err() != nil || !time.Now().Add(500*time.Millisecond).Before(deadline) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// setupDatapath loads the XDP load balancer (in the node's network namespace) and registers
// its reconcile, its metrics and its Run, which attaches it for the manager's lifetime. The
// interface is --datapath-interface, else the one holding the node's InternalIP, else (no
// Node: the API server did not answer) the one the state file names.
func setupDatapath(mgr manager.Manager, node *corev1.Node, saved string, store *stateStore, opts Options, do func(func() error) error, all handler.EventHandler, reporter *reporter) error {
	var (
		dp    *datapath.Datapath
		decap *datapath.Decapsulator
	)
	err := do(func() error {
		ifname := opts.DatapathInterface
		switch {
		case ifname != "":
		case node != nil:
			var err error
			if ifname, err = datapathInterface(node); err != nil {
				return err
			}
		case saved != "":
			ifname = saved
		default:
			return errors.New("the node is unknown (API server unreachable) and no state file names the interface: set --datapath-interface")
		}
		store.setDatapathInterface(ifname)
		var err error
		cfg := datapathConfig(ifname, opts)
		cfg.Log = ctrl.Log.WithName("speaker").WithName("datapath")
		if dp, err = datapath.New(cfg); err != nil {
			return err
		}
		// Other nodes' DSR packets for this node's endpoints arrive where its own
		// clients' do.
		if decap, err = datapath.NewDecapsulator(datapath.DecapConfig{Interfaces: []string{ifname}, AttachError: func(err error) {
			ctrl.Log.WithName("speaker").WithName("datapath").Error(err,
				"DSR packets for this node's endpoints cannot be decapsulated (tcx needs kernel 6.6); they are dropped, SNAT is unaffected; trying again on the next change")
		}}); err != nil {
			_ = dp.Close()
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("--datapath=xdp: %w", err)
	}
	for _, run := range []manager.RunnableFunc{dp.Run, decap.Run} {
		if err := mgr.Add(run); err != nil {
			return err
		}
	}
	mode := datapath.SNAT
	if opts.DatapathDSR {
		mode = datapath.DSR
	}
	// Active health checks probe from the node's namespace; a verdict that changes
	// reprograms the datapath.
	healthChanges := make(chan event.GenericEvent, 1)
	checker := healthcheck.New(healthcheck.Config{Do: do, OnChange: func() {
		select {
		case healthChanges <- event.GenericEvent{Object: &corev1.Service{}}:
		default: // one pending reconcile covers any number of changes
		}
	}})
	if err := mgr.Add(manager.RunnableFunc(checker.Run)); err != nil {
		return err
	}
	r := &datapathReconciler{client: mgr.GetClient(), node: opts.NodeName, class: opts.LoadBalancerClass, mode: mode, dp: dp,
		health: &datapathHealth{checker: checker}, decap: decap, reporter: reporter}
	if err := metricsserving.Register(datapathCollector{r: r}); err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	if err := metricsserving.Register(xdpModeCollector{attachments: dp.Attachments}); err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	if err := metricsserving.Register(healthCollector{h: r.health}); err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	if opts.InspectSocket != "0" {
		if err := mgr.Add(inspectServer(opts.InspectSocket, inspect.Handler(dp, r.name), do)); err != nil {
			return err
		}
	}
	err = ctrl.NewControllerManagedBy(mgr).
		Named("datapath").
		Watches(&corev1.Service{}, all).
		Watches(&discoveryv1.EndpointSlice{}, all).
		WatchesRawSource(source.Channel(healthChanges, all)).
		Complete(r)
	if err != nil {
		return fmt.Errorf("datapath controller: %w", err)
	}
	return nil
}

// inspectServer serves `ferrolb inspect` on the socket, which it opens in the node's
// network namespace (do). A socket it cannot open (another process holds the name: a
// speaker still stopping) is tried again every 5 s: inspection must never stop the
// speaker.
func inspectServer(name string, h http.Handler, do func(func() error) error) manager.RunnableFunc {
	if name == "" {
		name = inspect.DefaultSocket
	}
	return func(ctx context.Context) error {
		log := ctrl.Log.WithName("speaker").WithName("inspect")
		for logged := false; ; {
			var ln net.Listener
			err := do(func() (err error) {
				ln, err = inspect.Listen(name)
				return err
			})
			if err == nil {
				log.Info("serving ferrolb inspect", "socket", name)
				if err := inspect.Serve(ctx, ln, h); err != nil {
					log.Error(err, "ferrolb inspect")
				}
				return nil
			}
			if !logged {
				log.Error(err, "cannot serve ferrolb inspect; trying again every 5 s")
				logged = true
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(5 * time.Second):
			}
		}
	}
}
