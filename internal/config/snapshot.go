package config

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/bgp"
)

// Resources are FerroLB's objects as a cache lists them: the input of For.
type Resources struct {
	Pools             []v1.IPPool
	L2Policies        []v1.L2Policy
	BGPPeers          []v1.BGPPeer
	BGPAdvertisements []v1.BGPAdvertisement
	BFDProfiles       []v1.BFDProfile
}

// Snapshot is one reading of Resources, every object parsed and checked once: what the
// speaker's plans and the controller's allocator work from. Each list holds the objects that
// are valid, sorted by name, so that every node reads the same configuration in the same
// order.
type Snapshot struct {
	Pools             []Pool
	L2Policies        []L2Policy
	BGPAdvertisements []BGPAdvertisement
	// BGPPeers are the peers whose own spec is valid. A peer whose BFDProfile is missing or
	// invalid is here too, with BFDError set: the nodes it selects say why they open no
	// session to it (the BGPPeer's status is per node), the others ignore it.
	BGPPeers []BGPPeer
}

// Problem is an object For left out (or, for a BGPPeer, could not complete), and why.
type Problem struct {
	// Object is the object as listed, for an Event or a condition.
	Object client.Object
	// Kind is Object's kind (Objects listed from a cache carry no TypeMeta).
	Kind string
	Err  error
}

func (p Problem) Error() string {
	return fmt.Sprintf("%s %s: %v", p.Kind, p.Object.GetName(), p.Err)
}

// For parses every object of r. What is invalid is left out of the snapshot and comes back as
// a Problem naming the object, the field and the reason; the rest is unaffected. It is pure:
// the same resources give the same snapshot.
func For(r Resources) (Snapshot, []Problem) {
	var (
		s        Snapshot
		problems []Problem
	)
	for i := range r.Pools {
		p, err := ParsePool(&r.Pools[i])
		if err != nil {
			problems = append(problems, Problem{&r.Pools[i], "IPPool", err})
			continue
		}
		s.Pools = append(s.Pools, p)
	}
	for i := range r.L2Policies {
		p, err := ParseL2Policy(&r.L2Policies[i])
		if err != nil {
			problems = append(problems, Problem{&r.L2Policies[i], "L2Policy", err})
			continue
		}
		s.L2Policies = append(s.L2Policies, p)
	}
	for i := range r.BGPAdvertisements {
		a, err := ParseBGPAdvertisement(&r.BGPAdvertisements[i])
		if err != nil {
			problems = append(problems, Problem{&r.BGPAdvertisements[i], "BGPAdvertisement", err})
			continue
		}
		s.BGPAdvertisements = append(s.BGPAdvertisements, a)
	}
	profiles := map[string]bgp.BFD{}
	profileErrs := map[string]error{}
	for i := range r.BFDProfiles {
		b, err := ParseBFDProfile(&r.BFDProfiles[i])
		if err != nil {
			problems = append(problems, Problem{&r.BFDProfiles[i], "BFDProfile", err})
			profileErrs[r.BFDProfiles[i].Name] = err
			continue
		}
		profiles[r.BFDProfiles[i].Name] = b
	}
	for i := range r.BGPPeers {
		obj := &r.BGPPeers[i]
		p, err := ParseBGPPeer(obj)
		if err != nil {
			problems = append(problems, Problem{obj, "BGPPeer", err})
			continue
		}
		if name := p.BFDProfile; name != "" {
			var ok bool
			switch p.Peer.BFD, ok = profiles[name]; {
			case profileErrs[name] != nil:
				p.BFDError = fmt.Errorf("BFDProfile %q: %w", name, profileErrs[name])
			case !ok:
				p.BFDError = FieldError{Field: "spec.bfdProfile", Reason: fmt.Sprintf("BFDProfile %q does not exist", name)}
			}
			if p.BFDError != nil {
				problems = append(problems, Problem{obj, "BGPPeer", p.BFDError})
			}
		}
		s.BGPPeers = append(s.BGPPeers, p)
	}
	slices.SortFunc(s.Pools, func(a, b Pool) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(s.L2Policies, func(a, b L2Policy) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(s.BGPAdvertisements, func(a, b BGPAdvertisement) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(s.BGPPeers, func(a, b BGPPeer) int { return cmp.Compare(a.Name, b.Name) })
	return s, problems
}

// PoolOf names the pool whose blocks hold addr, or "".
func (s Snapshot) PoolOf(addr netip.Addr) string { return PoolOf(s.Pools, addr) }

// PoolOf names the first of pools whose blocks hold addr, or "".
func PoolOf(pools []Pool, addr netip.Addr) string {
	for _, p := range pools {
		for _, r := range p.Ranges {
			if r.Contains(addr) {
				return p.Name
			}
		}
	}
	return ""
}

// Ingress are the addresses in a Service's status.loadBalancer.ingress, IPv4-mapped ones as
// IPv4; entries that are not addresses (a hostname) are skipped.
func Ingress(svc *corev1.Service) []netip.Addr {
	var out []netip.Addr
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(in.IP); err == nil {
			out = append(out, a.Unmap())
		}
	}
	return out
}

// InternalIPs are a Node's InternalIP addresses, in the order its status lists them.
func InternalIPs(n *corev1.Node) []netip.Addr {
	var out []netip.Addr
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			out = append(out, ip.Unmap())
		}
	}
	return out
}
