package speaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/ferrolb/ferrolb/internal/bgp"
)

// PasswordKey is the key of a BGPPeer's Secret that holds the MD5 password.
const PasswordKey = "password"

// bgpReconciler recomputes, from the whole cache, which BGP sessions this node opens and
// which paths it sends on each, and hands both to the embedded BGP speaker, which applies
// only the difference. Like the layer 2 reconcile, it is level-triggered.
type bgpReconciler struct {
	client    client.Client
	node      string
	class     string
	namespace string // where peers' Secrets live
	runner    *bgpRunner
	status    *bgpStatus
	fallback  *fallback
	store     *stateStore
	reporter  *reporter
}

func (r *bgpReconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	snap, problems, cl, err := list(ctx, r.client, r.namespace)
	if err != nil {
		return ctrl.Result{}, err
	}
	me := cl.node(r.node)
	if me == nil {
		return ctrl.Result{}, fmt.Errorf("node %q not found", r.node)
	}
	// From here on the cache decides: the state file's sessions and paths step aside.
	r.fallback.takeOver(partBGP)
	plan := planBGP(snap, problems, cl, bgpInput{node: me, class: r.class, namespace: r.namespace})
	r.reporter.report("bgp", plan.problems)
	r.status.set(plan.reports)
	r.store.setBGP(plan.state)
	if err := r.runner.apply(plan.state.RouterID, plan.state.ASN, plan.state.Peers, plan.state.Paths); err != nil {
		// GoBGP refused part of it; what it refused is retried on the next event, and
		// the error is the log's, not a reason to hammer the API server with requeues.
		log.Error(err, "applying BGP configuration")
	}
	return ctrl.Result{}, nil
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
