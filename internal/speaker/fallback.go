package speaker

import (
	"context"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/ferrolb/ferrolb/internal/bgp"
	"github.com/ferrolb/ferrolb/internal/l2"
	"github.com/ferrolb/ferrolb/internal/l2/member"
)

// part is a half of what the speaker announces: each reconcile takes its own over from the
// fallback on its first run.
type part int

const (
	partL2 part = iota
	partBGP
)

// fallback announces what the state file says while the speaker's caches have not synced,
// because the API server could not be reached at start. It waits until after; if by then a
// reconcile has not taken its part over, it gives the BGP speaker the file's sessions and
// paths (peers added by a starting speaker carry graceful restart's R bit, so routers keep
// the stale routes until these arrive), and runs the layer 2 election over the file's peers
// and entries on every change of the live set or the links, as the online reconcile would.
//
// Safe on layer 2: heartbeats run as always, to the file's peers from the first one (Run sets
// them before the tracker starts, so its warm-up hears every live peer before it counts
// itself alive, as on any start), so this speaker is alive to the others and they to it, and
// every speaker elects from the same eligible sets with the same function: only the node
// they all elect answers. (Peers given only later would be newcomers to a warm tracker, and
// for a detection time each node would believe itself alone and answer for every address.) A speaker restarting offline is as good as one that kept
// running on its cache; both go wrong only where the cluster changed and this node's view
// did not (a node added while it could not see the API server is not a peer it hears).
type fallback struct {
	st      state
	node    string
	after   time.Time
	log     logr.Logger
	tracker *member.Tracker
	ann     *l2.Responders
	speaker *bgp.Speaker

	kicks chan struct{}

	mu     sync.Mutex
	online [2]bool // by part: a reconcile has taken it over
	done   chan struct{}
}

func newFallback(st state, after time.Time, log logr.Logger, tracker *member.Tracker, ann *l2.Responders, sp *bgp.Speaker) *fallback {
	return &fallback{st: st, node: st.Node, after: after, log: log, tracker: tracker, ann: ann, speaker: sp,
		kicks: make(chan struct{}, 1), done: make(chan struct{})}
}

// takeOver is called by a reconcile before it applies anything: from then on the part is
// the reconcile's, and the fallback never touches it again. When it returns, the fallback
// is not in the middle of applying the part.
func (f *fallback) takeOver(p part) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.online[p] {
		return
	}
	f.online[p] = true
	if f.online[partL2] && f.online[partBGP] {
		close(f.done)
	}
}

// kick asks for the layer 2 election to run again (the live set or a link changed).
func (f *fallback) kick() {
	if f == nil {
		return
	}
	select {
	case f.kicks <- struct{}{}:
	default:
	}
}

// Run is a manager runnable: it returns when ctx ends or both reconciles have taken over.
func (f *fallback) Run(ctx context.Context) error {
	wait := time.NewTimer(time.Until(f.after))
	defer wait.Stop()
	select {
	case <-ctx.Done():
		return nil
	case <-f.done:
		return nil
	case <-wait.C:
	}
	f.mu.Lock()
	f.log.Info("caches not synced (is the API server reachable?): announcing from the state file until they are",
		"l2Addresses", len(f.st.L2.Entries), "l2Peers", len(f.st.L2.Peers), "bgpPeers", len(f.st.BGP.Peers), "bgpPaths", len(f.st.BGP.Paths),
		"l2Online", f.online[partL2], "bgpOnline", f.online[partBGP])
	if !f.online[partBGP] {
		b := f.st.BGP
		if err := f.speaker.Apply(bgp.Identity{RouterID: b.RouterID, ASN: b.ASN}, b.Peers, b.Paths); err != nil {
			f.log.Error(err, "BGP from the state file")
		}
	}
	f.mu.Unlock()
	// The election runs now and again whenever the live set or a link changes (the
	// speaker's recompute kicks both it and the reconcile).
	for f.electL2(ctx) {
		select {
		case <-ctx.Done():
			return nil
		case <-f.done:
			return nil
		case <-f.kicks:
		}
	}
	return nil
}

// electL2 runs the layer 2 election over the state file's entries and announces this node's
// share; false once the reconcile has taken layer 2 over.
func (f *fallback) electL2(ctx context.Context) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.online[partL2] {
		return false
	}
	_, usable, err := f.ann.Interfaces()
	if err != nil {
		f.log.Error(err, "layer 2 from the state file: list interfaces")
		return true
	}
	f.tracker.SetDown(f.st.L2.down(usable))
	want := l2Want(f.st.L2.Entries, f.node, f.tracker.Alive(), usable)
	if err := f.ann.Apply(ctx, want); err != nil {
		f.log.Error(err, "layer 2 from the state file")
	}
	return true
}
