package speaker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/netip"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/bgp"
)

// SessionNotConfigured is a BGPPeer status entry's session when this node's speaker could
// not set the session up; the entry's message says why.
const SessionNotConfigured = "NotConfigured"

// bgpStatus writes this node's entry in the status of each BGPPeer it is meant to open a
// session to: the session's state, BFD's, how many prefixes it sends, or why it could not
// set the session up. Each period it compares what should be there with what the cached
// BGPPeers hold and writes only entries that differ, by server-side apply under a field
// manager of this node's own, so that the speakers of different nodes never conflict and
// none rewrites another's entry. Comparing with the objects rather than with what it last
// wrote, it also puts back an entry someone else removed.
type bgpStatus struct {
	client  client.Client
	node    string
	speaker *bgp.Speaker
	period  time.Duration

	mu      sync.Mutex
	serving map[string]peerReport // by BGPPeer name, as the last reconcile decided
	// written is when each BGPPeer's entry was last written; only Run's goroutine uses it.
	written map[string]time.Time
}

// countEvery is how often at most a change in the number of prefixes alone is written: a
// new Service changes it on every node at once, and the count is for people, not
// failover. Session, BFD and message changes are written at the next period.
const countEvery = 10 * time.Second

// peerReport is what the reconcile decided for one BGPPeer on this node.
type peerReport struct {
	addr netip.Addr // the session's peer address
	why  string     // why the session is not set up; "" when it is
}

func newBGPStatus(c client.Client, node string, sp *bgp.Speaker) *bgpStatus {
	return &bgpStatus{client: c, node: node, speaker: sp, period: time.Second,
		serving: map[string]peerReport{}, written: map[string]time.Time{}}
}

// set records the reconcile's decision; Run writes it at its next period.
func (s *bgpStatus) set(serving map[string]peerReport) {
	s.mu.Lock()
	s.serving = serving
	s.mu.Unlock()
}

// names are the BGPPeers this node has sessions with, by peer address (for the metrics).
func (s *bgpStatus) names() map[netip.Addr]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[netip.Addr]string, len(s.serving))
	for name, r := range s.serving {
		if r.why == "" {
			out[r.addr] = name
		}
	}
	return out
}

// Run writes entries each period until ctx ends, then removes this node's entries: a
// speaker that stops opens no sessions.
func (s *bgpStatus) Run(ctx context.Context) error {
	t := time.NewTicker(s.period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// The manager's context is over; removal gets a few seconds of its own.
			rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s.sync(rctx, nil)
			return nil
		case <-t.C:
			s.mu.Lock()
			serving := maps.Clone(s.serving)
			s.mu.Unlock()
			s.sync(ctx, serving)
		}
	}
}

// sync makes this node's entries in the BGPPeers' status say what serving and the
// speaker's sessions say, and removes its entries from BGPPeers not in serving.
func (s *bgpStatus) sync(ctx context.Context, serving map[string]peerReport) {
	log := logf.FromContext(ctx)
	var list v1.BGPPeerList
	if err := s.client.List(ctx, &list); err != nil {
		log.Error(err, "BGPPeer status: list BGPPeers")
		return
	}
	states := map[netip.Addr]bgp.PeerState{}
	peerStates, err := s.speaker.PeerStates()
	if err != nil {
		log.Error(err, "BGPPeer status: session states")
	}
	for _, p := range peerStates {
		states[p.Address] = p
	}
	now := metav1.Now()
	for i := range list.Items {
		name := list.Items[i].Name
		var have *v1.BGPSessionStatus
		for j, e := range list.Items[i].Status.Nodes {
			if e.Node == s.node {
				have = &list.Items[i].Status.Nodes[j]
			}
		}
		rep, ok := serving[name]
		if !ok {
			if have != nil {
				if err := s.apply(ctx, name, nil); err != nil {
					log.Error(err, "BGPPeer status", "peer", name)
				}
			}
			delete(s.written, name)
			continue
		}
		want := v1.BGPSessionStatus{Node: s.node, Session: SessionNotConfigured, Message: rep.why}
		if rep.why == "" {
			want.Session = "Idle" // configured, not running yet
			if st, ok := states[rep.addr]; ok {
				want.Session, want.BFD, want.Advertised = st.State.String(), st.BFD, int64(st.Advertised) //nolint:gosec // a prefix count
			}
		}
		// The time moves only with the session's state (and comes back from the API server
		// in whole seconds, so it is copied, not compared).
		want.LastTransitionTime = now
		if have != nil && have.Session == want.Session {
			want.LastTransitionTime = have.LastTransitionTime
		}
		if have != nil && *have == want {
			continue
		}
		if have != nil && countOnly(*have, want) && now.Sub(s.written[name]) < countEvery {
			continue
		}
		if err := s.apply(ctx, name, &want); err != nil {
			log.Error(err, "BGPPeer status", "peer", name)
			continue
		}
		s.written[name] = now.Time
	}
}

// countOnly reports whether two entries differ in the prefix count alone.
func countOnly(a, b v1.BGPSessionStatus) bool {
	a.Advertised = b.Advertised
	return a == b
}

// fieldManager is this node's own server-side apply field manager. The API server takes
// names of at most 128 bytes; a node name may have 253, so a long one is hashed.
func fieldManager(node string) string {
	const prefix = "ferrolb-speaker/"
	if len(prefix)+len(node) <= 128 {
		return prefix + node
	}
	sum := sha256.Sum256([]byte(node))
	return prefix + hex.EncodeToString(sum[:16])
}

// apply writes this node's entry of the BGPPeer's status, or removes it (e nil): applied
// without the entry, this node's field manager gives it up. A deleted BGPPeer needs nothing.
func (s *bgpStatus) apply(ctx context.Context, name string, e *v1.BGPSessionStatus) error {
	nodes := []any{}
	if e != nil {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(e)
		if err != nil {
			return err
		}
		nodes = append(nodes, m)
	}
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(v1.GroupVersion.String())
	u.SetKind("BGPPeer")
	u.SetName(name)
	if err := unstructured.SetNestedSlice(u.Object, nodes, "status", "nodes"); err != nil {
		return err
	}
	err := s.client.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u),
		client.FieldOwner(fieldManager(s.node)), client.ForceOwnership)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("apply status: %w", err)
	}
	return nil
}
