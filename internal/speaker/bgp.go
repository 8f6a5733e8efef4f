package speaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/bgp"
	"github.com/ferrolb/ferrolb/internal/config"
)

// PasswordKey is the key of a BGPPeer's Secret that holds the MD5 password.
const PasswordKey = "password"

// bgpReconciler recomputes, from the whole cache, which BGP sessions this node opens and
// which paths it sends on each, and hands both to the embedded BGP speaker, which applies
// only the difference. Like the layer 2 reconcile, it is level-triggered.
type bgpReconciler struct {
	client    client.Client
	recorder  events.EventRecorder
	node      string
	class     string
	namespace string // where peers' Secrets live
	runner    *bgpRunner
	status    *bgpStatus
	fallback  *fallback
	store     *stateStore
}

func (r *bgpReconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	var (
		svcs     corev1.ServiceList
		nodes    corev1.NodeList
		eps      discoveryv1.EndpointSliceList
		bpeers   v1.BGPPeerList
		ads      v1.BGPAdvertisementList
		profiles v1.BFDProfileList
		pools    v1.IPPoolList
	)
	for _, l := range []client.ObjectList{&svcs, &nodes, &eps, &bpeers, &ads, &profiles, &pools} {
		if err := r.client.List(ctx, l); err != nil {
			return ctrl.Result{}, err
		}
	}
	var me *corev1.Node
	for i := range nodes.Items {
		if nodes.Items[i].Name == r.node {
			me = &nodes.Items[i]
		}
	}
	if me == nil {
		return ctrl.Result{}, fmt.Errorf("node %q not found", r.node)
	}
	// From here on the cache decides: the state file's sessions and paths step aside.
	r.fallback.takeOver(partBGP)

	peers, byName, routerID, reports := r.peers(ctx, me, bpeers.Items, profiles.Items)
	if len(peers) == 0 {
		r.status.set(reports)
		r.store.setBGP(bgpState{})
		return ctrl.Result{}, r.runner.apply(netip.Addr{}, 0, nil, nil)
	}
	if !routerID.IsValid() {
		routerID = nodeIPv4(me)
	}
	if !routerID.IsValid() {
		err := errors.New("no BGP router ID: the node has no IPv4 InternalIP; set spec.routerID on its BGPPeers")
		r.recorder.Eventf(me, nil, corev1.EventTypeWarning, "InvalidConfiguration", "BGP", "%v", err)
		for name := range byName {
			reports[name] = peerReport{why: err.Error()}
		}
		r.status.set(reports)
		r.store.setBGP(bgpState{})
		return ctrl.Result{}, r.runner.apply(netip.Addr{}, 0, nil, nil)
	}
	r.status.set(reports)
	asn := peers[0].LocalASN
	for _, p := range peers {
		asn = min(asn, p.LocalASN)
	}

	var paths []bgp.Path
	// An excluded node keeps its sessions (routers see it healthy) but sends no paths.
	if _, excluded := me.Labels[LabelExcludeFromLB]; !excluded {
		var cads []config.BGPAdvertisement
		slices.SortFunc(ads.Items, func(a, b v1.BGPAdvertisement) int { return strings.Compare(a.Name, b.Name) })
		for i := range ads.Items {
			a, err := config.ParseBGPAdvertisement(&ads.Items[i])
			if err != nil {
				// The controller says so in the object's Valid condition and an Event, once
				// for the cluster rather than once per node.
				log.Error(err, "BGPAdvertisement ignored", "advertisement", ads.Items[i].Name)
				continue
			}
			cads = append(cads, a)
		}
		var cpools []config.Pool
		for i := range pools.Items {
			if p, err := config.ParsePool(&pools.Items[i]); err == nil {
				cpools = append(cpools, p)
			}
		}
		paths = r.paths(svcs.Items, eps.Items, me, cads, cpools, peers, byName)
	}
	r.store.setBGP(bgpState{RouterID: routerID, ASN: asn, Peers: peers, Paths: paths})
	if err := r.runner.apply(routerID, asn, peers, paths); err != nil {
		// GoBGP refused part of it; what it refused is retried on the next event, and
		// the error is the log's, not a reason to hammer the API server with requeues.
		log.Error(err, "applying BGP configuration")
	}
	return ctrl.Result{}, nil
}

// peers are the sessions this node opens, each with its MD5 password and BFD settings,
// the peers' addresses by BGPPeer name, the router ID the first of them asks for, and a
// report per BGPPeer meant for this node (for its status). A BGPPeer that cannot be set
// up as written is left out, with an Event and its report saying why.
func (r *bgpReconciler) peers(ctx context.Context, me *corev1.Node, items []v1.BGPPeer, profiles []v1.BFDProfile) (
	[]bgp.Peer, map[string]netip.Addr, netip.Addr, map[string]peerReport) {
	log := logf.FromContext(ctx)
	slices.SortFunc(items, func(a, b v1.BGPPeer) int { return strings.Compare(a.Name, b.Name) })
	var out []bgp.Peer
	byName := map[string]netip.Addr{}
	reports := map[string]peerReport{}
	var routerID netip.Addr
	for i := range items {
		obj := &items[i]
		reject := func(err error) {
			log.Error(err, "BGPPeer not set up", "peer", obj.Name)
			r.recorder.Eventf(obj, nil, corev1.EventTypeWarning, "InvalidConfiguration", "Peer", "node %s: not set up: %v", r.node, err)
			reports[obj.Name] = peerReport{why: err.Error()}
		}
		cp, err := config.ParseBGPPeer(obj)
		if err != nil {
			reject(err)
			continue
		}
		if !cp.MatchesNode(me.Labels) {
			continue
		}
		if cp.BFDProfile != "" {
			i := slices.IndexFunc(profiles, func(p v1.BFDProfile) bool { return p.Name == cp.BFDProfile })
			if i < 0 {
				reject(config.FieldError{Field: "spec.bfdProfile", Reason: fmt.Sprintf("BFDProfile %q does not exist", cp.BFDProfile)})
				continue
			}
			if cp.Peer.BFD, err = config.ParseBFDProfile(&profiles[i]); err != nil {
				reject(fmt.Errorf("BFDProfile %q: %w", cp.BFDProfile, err))
				continue
			}
		}
		if ref := cp.PasswordSecret; ref.Name != "" {
			if cp.Peer.Password, err = r.password(ctx, ref); err != nil {
				reject(config.FieldError{Field: "spec.passwordSecretRef", Reason: err.Error()})
				continue
			}
		}
		if slices.ContainsFunc(out, func(p bgp.Peer) bool { return p.Address == cp.Peer.Address }) {
			reject(config.FieldError{Field: "spec.peerAddress", Reason: fmt.Sprintf("%v is already the address of another BGPPeer for this node", cp.Peer.Address)})
			continue
		}
		if !routerID.IsValid() {
			routerID = cp.RouterID
		}
		out = append(out, cp.Peer)
		byName[cp.Name] = cp.Peer.Address
		reports[cp.Name] = peerReport{addr: cp.Peer.Address}
	}
	return out, byName, routerID, reports
}

func (r *bgpReconciler) password(ctx context.Context, ref v1.SecretReference) (string, error) {
	ns := ref.Namespace
	if ns == "" {
		ns = r.namespace
	}
	if ns != r.namespace {
		return "", fmt.Errorf("secret %s/%s: the speaker reads Secrets only in its own namespace, %s", ns, ref.Name, r.namespace)
	}
	var s corev1.Secret
	if err := r.client.Get(ctx, client.ObjectKey{Namespace: ns, Name: ref.Name}, &s); err != nil {
		return "", fmt.Errorf("secret %s/%s: %w", ns, ref.Name, err)
	}
	pw, ok := s.Data[PasswordKey]
	if !ok || len(pw) == 0 {
		return "", fmt.Errorf("secret %s/%s has no %q key", ns, ref.Name, PasswordKey)
	}
	return string(pw), nil
}

// attrSet is what one peer is sent with one prefix, merged over the advertisements that
// select it: communities add up; the first advertisement (by name) with a local
// preference sets it.
type attrSet struct {
	communities []uint32
	large       [][3]uint32
	localPref   *uint32
}

func (a attrSet) key() string {
	lp := "-"
	if a.localPref != nil {
		lp = fmt.Sprint(*a.localPref)
	}
	return fmt.Sprint(a.communities, a.large, lp)
}

// paths are what this node advertises: every address of every Service it is eligible for
// (with externalTrafficPolicy Local, only if it has a ready endpoint), under every
// advertisement that selects the address's pool, the Service and this node, to the peers
// the advertisement names (all when it names none).
func (r *bgpReconciler) paths(svcs []corev1.Service, eps []discoveryv1.EndpointSlice, me *corev1.Node,
	ads []config.BGPAdvertisement, pools []config.Pool, peers []bgp.Peer, byName map[string]netip.Addr) []bgp.Path {
	all := make([]netip.Addr, 0, len(peers))
	for _, p := range peers {
		all = append(all, p.Address)
	}
	merged := map[netip.Prefix]map[netip.Addr]*attrSet{}
	for i := range svcs {
		svc := &svcs[i]
		if !config.Served(svc, r.class) {
			continue
		}
		if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal &&
			!slices.Contains(readyNodes(svc, eps), r.node) {
			continue
		}
		for _, in := range svc.Status.LoadBalancer.Ingress {
			addr, err := netip.ParseAddr(in.IP)
			if err != nil {
				continue
			}
			addr = addr.Unmap()
			pool := poolOf(pools, addr)
			for _, ad := range ads {
				if (len(ad.Pools) > 0 && !slices.Contains(ad.Pools, pool)) || !ad.MatchesService(svc.Labels) || !ad.MatchesNode(me.Labels) {
					continue
				}
				targets := all
				if len(ad.Peers) > 0 {
					targets = nil
					for _, name := range ad.Peers {
						if a, ok := byName[name]; ok {
							targets = append(targets, a)
						}
					}
				}
				p := ad.Path(addr)
				for _, t := range targets {
					if merged[p.Prefix] == nil {
						merged[p.Prefix] = map[netip.Addr]*attrSet{}
					}
					m := merged[p.Prefix][t]
					if m == nil {
						m = &attrSet{}
						merged[p.Prefix][t] = m
					}
					for _, c := range p.Communities {
						if !slices.Contains(m.communities, c) {
							m.communities = append(m.communities, c)
						}
					}
					for _, c := range p.LargeCommunities {
						if !slices.Contains(m.large, c) {
							m.large = append(m.large, c)
						}
					}
					if m.localPref == nil {
						m.localPref = p.LocalPref
					}
				}
			}
		}
	}
	// One path per prefix and distinct attributes, to the peers that get those.
	var out []bgp.Path
	for pfx, byPeer := range merged {
		groups := map[string]*bgp.Path{}
		for peer, m := range byPeer {
			slices.Sort(m.communities)
			slices.SortFunc(m.large, func(a, b [3]uint32) int { return slices.Compare(a[:], b[:]) })
			k := m.key()
			g := groups[k]
			if g == nil {
				g = &bgp.Path{Prefix: pfx, Communities: m.communities, LargeCommunities: m.large, LocalPref: m.localPref, Peers: []netip.Addr{}}
				groups[k] = g
			}
			g.Peers = append(g.Peers, peer)
		}
		for _, g := range groups {
			slices.SortFunc(g.Peers, netip.Addr.Compare)
			out = append(out, *g)
		}
	}
	return out
}

// nodeIPv4 is the node's first IPv4 InternalIP, the router ID when no BGPPeer sets one.
func nodeIPv4(n *corev1.Node) netip.Addr {
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Unmap().Is4() {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

// bgpRunner owns the node's embedded BGP speaker: it starts one when the node has a peer
// and stops it when it has none left, and replaces it when the router ID changes (GoBGP
// cannot change it while running). Start is its manager runnable and bounds its life.
type bgpRunner struct {
	logger  *slog.Logger
	started chan struct{} // closed by Start

	mu       sync.Mutex
	ctx      context.Context // Start's; nil before
	sp       *bgp.Speaker
	routerID netip.Addr
	cancel   context.CancelFunc
	done     chan struct{}
}

func newBGPRunner(logger *slog.Logger) *bgpRunner {
	return &bgpRunner{logger: logger, started: make(chan struct{})}
}

func (r *bgpRunner) Start(ctx context.Context) error {
	r.mu.Lock()
	r.ctx = ctx
	r.mu.Unlock()
	close(r.started)
	<-ctx.Done()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopLocked()
	r.ctx = nil
	return nil
}

// apply runs a speaker with these settings, or none when peers is empty.
func (r *bgpRunner) apply(routerID netip.Addr, asn uint32, peers []bgp.Peer, paths []bgp.Path) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(peers) == 0 {
		r.stopLocked()
		return nil
	}
	if r.ctx == nil {
		return errors.New("BGP runner not started")
	}
	if r.sp != nil && r.routerID != routerID {
		r.logger.Info("BGP router ID changed: restarting the BGP speaker", "from", r.routerID, "to", routerID)
		r.stopLocked()
	}
	if r.sp == nil {
		sp, err := bgp.New(bgp.Config{RouterID: routerID, ASN: asn, ListenPort: -1, Logger: r.logger})
		if err != nil {
			return err
		}
		// Set before Run: the first sessions then start with every path they are due.
		if err := errors.Join(sp.SetPaths(paths), sp.SetPeers(peers)); err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(r.ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := sp.Run(ctx); err != nil {
				r.logger.Error("BGP speaker", "error", err)
			}
		}()
		r.sp, r.routerID, r.cancel, r.done = sp, routerID, cancel, done
		return nil
	}
	// Paths first: a new peer is then added with its paths already in place.
	return errors.Join(r.sp.SetPaths(paths), r.sp.SetPeers(peers))
}

func (r *bgpRunner) stopLocked() {
	if r.sp == nil {
		return
	}
	r.cancel()
	<-r.done
	r.sp, r.routerID, r.cancel, r.done = nil, netip.Addr{}, nil, nil
}

// PeerStates are the running speaker's sessions; none when there is no speaker.
func (r *bgpRunner) PeerStates() []bgp.PeerState {
	r.mu.Lock()
	sp := r.sp
	r.mu.Unlock()
	if sp == nil {
		return nil
	}
	st, err := sp.PeerStates()
	if err != nil {
		r.logger.Error("BGP peer states", "error", err)
	}
	return st
}
