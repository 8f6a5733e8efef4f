package speaker

import (
	"context"
	"maps"
	"slices"
	"sync"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/config"
)

// cluster is what the plans read besides FerroLB's own objects, as the cache lists it.
type cluster struct {
	services []corev1.Service
	nodes    []corev1.Node
	slices   []discoveryv1.EndpointSlice
	// secrets are the Secrets of the speaker's namespace (the only ones it caches): BGPPeers'
	// MD5 passwords.
	secrets []corev1.Secret
	// bgpPeers are the BGPPeers as listed, for the Events about them.
	bgpPeers []v1.BGPPeer
}

// node returns the Node named name, or nil.
func (c cluster) node(name string) *corev1.Node {
	for i := range c.nodes {
		if c.nodes[i].Name == name {
			return &c.nodes[i]
		}
	}
	return nil
}

// bgpPeer returns the BGPPeer named name, or an object with only that name.
func (c cluster) bgpPeer(name string) *v1.BGPPeer {
	for i := range c.bgpPeers {
		if c.bgpPeers[i].Name == name {
			return &c.bgpPeers[i]
		}
	}
	obj := &v1.BGPPeer{}
	obj.Name = name
	return obj
}

// list reads everything a plan needs from the cache, and parses the configuration once.
func list(ctx context.Context, c client.Reader, namespace string) (config.Snapshot, []config.Problem, cluster, error) {
	var (
		svcs     corev1.ServiceList
		nodes    corev1.NodeList
		eps      discoveryv1.EndpointSliceList
		secrets  corev1.SecretList
		pools    v1.IPPoolList
		policies v1.L2PolicyList
		bpeers   v1.BGPPeerList
		ads      v1.BGPAdvertisementList
		profiles v1.BFDProfileList
	)
	for _, l := range []client.ObjectList{&svcs, &nodes, &eps, &pools, &policies, &bpeers, &ads, &profiles} {
		if err := c.List(ctx, l); err != nil {
			return config.Snapshot{}, nil, cluster{}, err
		}
	}
	if err := c.List(ctx, &secrets, client.InNamespace(namespace)); err != nil {
		return config.Snapshot{}, nil, cluster{}, err
	}
	snap, problems := config.For(config.Resources{
		Pools: pools.Items, L2Policies: policies.Items, BGPPeers: bpeers.Items,
		BGPAdvertisements: ads.Items, BFDProfiles: profiles.Items,
	})
	return snap, problems, cluster{services: svcs.Items, nodes: nodes.Items, slices: eps.Items, secrets: secrets.Items, bgpPeers: bpeers.Items}, nil
}

// nodeProblem is a problem a plan found with an object on this node.
type nodeProblem struct {
	obj  client.Object
	kind string // obj's kind, for the metric
	// event: also an Event on the object. Problems of the whole cluster's configuration (an
	// invalid IPPool, L2Policy, BGPAdvertisement or BFDProfile) are the controller's to
	// report, once, in the object's condition and an Event; every node would say the same.
	// What only this node sees (a BGPPeer it cannot set up) is this speaker's.
	event  bool
	reason string
	msg    string
}

// reporter is the speaker's one error policy for configuration: each problem is logged, and
// evented where it is this node's to report, when it appears, not on every reconcile (a
// reconcile runs on every Service change; the same Event from every node each time would be
// a storm). A problem that goes away and comes back is reported again.
type reporter struct {
	log      logr.Logger
	recorder events.EventRecorder
	node     string

	mu   sync.Mutex
	seen map[string]map[string]string // by source (one per reconciler): problems reported, and their kind
}

func newReporter(log logr.Logger, recorder events.EventRecorder, node string) *reporter {
	return &reporter{log: log, recorder: recorder, node: node, seen: map[string]map[string]string{}}
}

// configProblems are config.For's problems with objects of these kinds, as node problems,
// none evented.
func configProblems(problems []config.Problem, kinds ...string) []nodeProblem {
	var out []nodeProblem
	for _, p := range problems {
		if slices.Contains(kinds, p.Kind) {
			out = append(out, nodeProblem{obj: p.Object, kind: p.Kind, reason: "InvalidConfiguration", msg: p.Error() + ": ignored"})
		}
	}
	return out
}

// report logs and events what is new in problems: what no source had in its last report
// (the layer 2 and BGP reconciles both see an invalid IPPool; it is logged once).
func (r *reporter) report(source string, problems []nodeProblem) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := make(map[string]string, len(problems))
	for _, p := range problems {
		key := p.reason + "\x00" + p.msg
		if _, dup := now[key]; dup {
			continue
		}
		now[key] = p.kind
		if slices.ContainsFunc(slices.Collect(maps.Values(r.seen)), func(seen map[string]string) bool { _, ok := seen[key]; return ok }) {
			continue
		}
		r.log.Info("configuration problem", "reconciler", source, "reason", p.reason, "problem", p.msg)
		if p.event && r.recorder != nil {
			r.recorder.Eventf(p.obj, nil, corev1.EventTypeWarning, p.reason, "Configure", "node %s: %s", r.node, p.msg)
		}
	}
	r.seen[source] = now
}

var descConfigProblems = prometheus.NewDesc("ferrolb_speaker_config_problems",
	"Configuration problems this speaker has now, by kind of object: objects it ignores (IPPool, L2Policy, BGPAdvertisement, "+
		"BFDProfile), BGPPeers it cannot set up, and problems with its Node (no router ID, no interface an L2Policy selects), "+
		"and Services whose datapath mode it cannot follow (an invalid ferrolb.io/datapath-mode; DSR to endpoints on another port). "+
		"Should be 0; the log and Events say which and why.",
	[]string{"kind"}, nil)

// configKinds are the kinds ferrolb_speaker_config_problems always reports, 0 included.
var configKinds = []string{"IPPool", "L2Policy", "BGPPeer", "BGPAdvertisement", "BFDProfile", "Node", "Service"}

func (r *reporter) Describe(ch chan<- *prometheus.Desc) { ch <- descConfigProblems }

// Collect counts the problems every reconcile has now, each once.
func (r *reporter) Collect(ch chan<- prometheus.Metric) {
	r.mu.Lock()
	byKind := map[string]int{}
	counted := map[string]bool{}
	for _, seen := range r.seen {
		for key, kind := range seen {
			if !counted[key] {
				counted[key] = true
				byKind[kind]++
			}
		}
	}
	r.mu.Unlock()
	for _, k := range configKinds {
		ch <- prometheus.MustNewConstMetric(descConfigProblems, prometheus.GaugeValue, float64(byKind[k]), k)
	}
}
