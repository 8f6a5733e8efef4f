package status

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/apischeme"
	"github.com/ferrolb/ferrolb/internal/config"
)

// Where the speakers run, as the chart and deploy/ferrolb.yaml install them.
const (
	DefaultNamespace = "ferrolb-system"
	DaemonSetName    = "ferrolb-speaker"
)

// The Service conditions a report shows. ConditionAnnounced is the speakers' (internal/config);
// these two are written elsewhere and only read here.
const (
	// ConditionAllocated is the controller's: which address from which pool, or why none.
	ConditionAllocated = "ferrolb.io/Allocated"
	// ConditionAdvertised is the speakers': which nodes advertise the Service's addresses
	// to which BGPPeers (internal/speaker writes it under this name).
	ConditionAdvertised = config.ConditionAdvertised
)

// speakerLabels select the speaker pods when the DaemonSet itself cannot be read: the
// chart's selector labels.
var speakerLabels = labels.Set{"app.kubernetes.io/name": "ferrolb", "app.kubernetes.io/component": "speaker"}

// Source is where a Report is read from.
type Source struct {
	// Reader reads IPPools, BGPPeers and Services across the cluster: the API server
	// (ferrolb status) or the controller's informer cache (the status page).
	Reader client.Reader
	// SpeakerReader reads the speaker DaemonSet and its pods in Namespace; nil: Reader.
	SpeakerReader client.Reader
	// Namespace holds the speaker DaemonSet ferrolb-speaker; default ferrolb-system.
	Namespace string
	// LoadBalancerClass: Services with this spec.loadBalancerClass, or none, are FerroLB's;
	// default ferrolb.io/ferrolb.
	LoadBalancerClass string
	// Server names the API server in errors (its URL); optional.
	Server string
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Gather reads a Report. It fails when the pools, the Services or the BGPPeers cannot be read,
// with an error that says what is missing: the CRDs, a permission (naming the resource and
// the verb), or the API server itself. What it cannot read of the speakers (the DaemonSet
// or its pods) is said in the report's Speakers.Problems instead.
func (s Source) Gather(ctx context.Context) (*Report, error) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	r := &Report{Format: Format, Time: now().UTC().Truncate(time.Second),
		Pools: []Pool{}, Services: []Service{}, Peers: []Peer{}}

	var pools v1.IPPoolList
	if err := s.Reader.List(ctx, &pools); err != nil {
		return nil, s.explain(err, "list", "ippools.ferrolb.io", "")
	}
	var peers v1.BGPPeerList
	if err := s.Reader.List(ctx, &peers); err != nil {
		return nil, s.explain(err, "list", "bgppeers.ferrolb.io", "")
	}
	var svcs corev1.ServiceList
	if err := s.Reader.List(ctx, &svcs); err != nil {
		return nil, s.explain(err, "list", "services", "")
	}

	var parsed []config.Pool
	for i := range pools.Items {
		r.Pools = append(r.Pools, pool(&pools.Items[i]))
		if p, err := config.ParsePool(&pools.Items[i]); err == nil {
			parsed = append(parsed, p)
		}
	}
	slices.SortFunc(r.Pools, func(a, b Pool) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(parsed, func(a, b config.Pool) int { return cmp.Compare(a.Name, b.Name) })

	class := cmp.Or(s.LoadBalancerClass, config.LoadBalancerClass)
	for i := range svcs.Items {
		if svc := &svcs.Items[i]; config.Served(svc, class) {
			r.Services = append(r.Services, service(svc, parsed))
		}
	}
	slices.SortFunc(r.Services, func(a, b Service) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})

	for i := range peers.Items {
		r.Peers = append(r.Peers, peer(&peers.Items[i]))
	}
	slices.SortFunc(r.Peers, func(a, b Peer) int { return cmp.Compare(a.Name, b.Name) })

	r.Speakers = s.speakers(ctx)
	return r, nil
}

// explain turns a failed read into an error that says what is missing. scope is the
// namespace, "" for a cluster-wide read.
func (s Source) explain(err error, verb, resource, scope string) error {
	where := "cluster-wide"
	if scope != "" {
		where = "in namespace " + scope
	}
	switch {
	case meta.IsNoMatchError(err) || apierrors.IsNotFound(err) && strings.HasSuffix(resource, "."+v1.GroupVersion.Group):
		return &crdsMissing{resource: resource, server: s.at(), err: err}
	case apierrors.IsForbidden(err):
		return fmt.Errorf("not allowed to %s %s %s (RBAC): %w", verb, resource, where, err)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("the API server%s refused the credentials: %w", s.at(), err)
	case isAPIStatus(err):
		return fmt.Errorf("%s %s %s: %w", verb, resource, where, err)
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s %s: %w", verb, resource, err)
	default:
		return fmt.Errorf("cannot reach the API server%s: %w", s.at(), err)
	}
}

// crdsMissing is the error of a read of FerroLB's kinds from an API server that does not
// serve them. Its cause (the REST mapper's "no matches for ...") is kept for errors.Is, not
// shown.
type crdsMissing struct {
	resource, server string
	err              error
}

func (e *crdsMissing) Error() string {
	return fmt.Sprintf("the %s CRDs are not installed: the API server%s does not serve %s/%s; "+
		"install them with the chart (charts/ferrolb) or deploy/ferrolb.yaml", v1.GroupVersion.Group, e.server, e.resource, v1.GroupVersion.Version)
}

func (e *crdsMissing) Unwrap() error { return e.err }

func (s Source) at() string {
	if s.Server == "" {
		return ""
	}
	return " at " + s.Server
}

// isAPIStatus tells whether the API server answered (with an error status), as opposed to
// not being reached.
func isAPIStatus(err error) bool {
	var st apierrors.APIStatus
	return errors.As(err, &st)
}

func pool(p *v1.IPPool) Pool {
	out := Pool{Name: p.Name, State: "Unknown"}
	if c := meta.FindStatusCondition(p.Status.Conditions, "Ready"); c != nil {
		switch {
		case c.Status == metav1.ConditionTrue:
			out.State = "Ready"
		case c.Reason != "":
			out.State, out.Message = c.Reason, c.Message
		default:
			out.State, out.Message = "NotReady", c.Message
		}
	}
	if c := meta.FindStatusCondition(p.Status.Conditions, "Conflict"); c != nil && c.Status == metav1.ConditionTrue {
		out.Conflict = c.Message
	}
	count := func(c *v1.AddressCount) *Count {
		if c == nil {
			return nil
		}
		return &Count{Total: c.Total, Used: c.Used, Free: c.Free}
	}
	out.IPv4, out.IPv6 = count(p.Status.IPv4), count(p.Status.IPv6)
	return out
}

func service(svc *corev1.Service, pools []config.Pool) Service {
	out := Service{Namespace: svc.Namespace, Name: svc.Name, Addresses: []Address{}}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		a := Address{IP: in.IP}
		if in.IP == "" {
			a.IP = in.Hostname
		}
		if ip, err := netip.ParseAddr(in.IP); err == nil {
			a.Pool = config.PoolOf(pools, ip.Unmap())
		}
		out.Addresses = append(out.Addresses, a)
	}
	cond := func(typ string) *Condition {
		c := meta.FindStatusCondition(svc.Status.Conditions, typ)
		if c == nil {
			return nil
		}
		return &Condition{Status: string(c.Status), Reason: c.Reason, Message: c.Message, Since: c.LastTransitionTime.UTC()}
	}
	out.Allocated = cond(ConditionAllocated)
	out.Layer2 = cond(config.ConditionAnnounced)
	out.BGP = cond(ConditionAdvertised)
	if len(out.Addresses) == 0 {
		out.Pending = out.Allocated
		if out.Pending == nil {
			out.Pending = &Condition{Status: string(metav1.ConditionUnknown), Reason: "NotAllocated",
				Message: "no " + ConditionAllocated + " condition: the controller has not handled this Service (is it running?)",
				Since:   svc.CreationTimestamp.UTC()}
		}
	}
	return out
}

func peer(p *v1.BGPPeer) Peer {
	out := Peer{Name: p.Name, Address: p.Spec.PeerAddress, PeerASN: p.Spec.PeerASN, LocalASN: p.Spec.LocalASN,
		BFDProfile: p.Spec.BFDProfile, Established: p.Status.Established, Sessions: []Session{}}
	for _, n := range p.Status.Nodes {
		out.Sessions = append(out.Sessions, Session{Node: n.Node, State: n.Session, BFD: n.BFD,
			Advertised: n.Advertised, Message: n.Message, Since: n.LastTransitionTime.UTC()})
	}
	slices.SortFunc(out.Sessions, func(a, b Session) int { return cmp.Compare(a.Node, b.Node) })
	return out
}

// speakers reads the DaemonSet and its pods; what it cannot read goes to Problems.
func (s Source) speakers(ctx context.Context) Speakers {
	rd := s.SpeakerReader
	if rd == nil {
		rd = s.Reader
	}
	out := Speakers{Namespace: cmp.Or(s.Namespace, DefaultNamespace), DaemonSet: DaemonSetName, Pods: []SpeakerPod{}}
	sel := labels.SelectorFromSet(speakerLabels)
	var ds appsv1.DaemonSet
	switch err := rd.Get(ctx, client.ObjectKey{Namespace: out.Namespace, Name: out.DaemonSet}, &ds); {
	case err == nil:
		out.Desired, out.Ready = &ds.Status.DesiredNumberScheduled, &ds.Status.NumberReady
		if ds.Spec.Selector != nil {
			if ls, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector); err == nil {
				sel = ls
			}
		}
	case apierrors.IsNotFound(err):
		out.Problems = append(out.Problems, fmt.Sprintf("no DaemonSet %s in namespace %s (is the speaker installed in another namespace?)", out.DaemonSet, out.Namespace))
	default:
		out.Problems = append(out.Problems, "DaemonSet: "+s.explain(err, "get", "daemonsets.apps", out.Namespace).Error())
	}
	var pods corev1.PodList
	if err := rd.List(ctx, &pods, client.InNamespace(out.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		out.Problems = append(out.Problems, "pods: "+s.explain(err, "list", "pods", out.Namespace).Error())
		return out
	}
	for i := range pods.Items {
		out.Pods = append(out.Pods, speakerPod(&pods.Items[i]))
	}
	slices.SortFunc(out.Pods, func(a, b SpeakerPod) int { return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.Name, b.Name)) })
	return out
}

func speakerPod(p *corev1.Pod) SpeakerPod {
	out := SpeakerPod{Name: p.Name, Node: p.Spec.NodeName}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			out.Ready = true
		}
	}
	if out.Ready {
		return out
	}
	out.Reason = string(p.Status.Phase)
	for _, c := range p.Status.ContainerStatuses {
		switch {
		case c.State.Waiting != nil && c.State.Waiting.Reason != "":
			return SpeakerPod{Name: out.Name, Node: out.Node, Reason: c.State.Waiting.Reason}
		case c.State.Terminated != nil && c.State.Terminated.Reason != "":
			return SpeakerPod{Name: out.Name, Node: out.Node, Reason: c.State.Terminated.Reason}
		}
	}
	if p.DeletionTimestamp != nil {
		out.Reason = "Terminating"
	}
	return out
}

// ForConfig is a Source that reads from the API server cfg reaches, directly (no cache):
// what ferrolb status uses. A cfg without a timeout gets 15 s, so an API server that does not
// answer is reported rather than waited for.
func ForConfig(cfg *rest.Config) (Source, error) {
	scheme, err := apischeme.New()
	if err != nil {
		return Source{}, err
	}
	cfg = rest.CopyConfig(cfg)
	if cfg.Timeout == 0 {
		cfg.Timeout = 15 * time.Second
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return Source{}, fmt.Errorf("client for the API server at %s: %w", cfg.Host, err)
	}
	return Source{Reader: c, Server: cfg.Host}, nil
}
