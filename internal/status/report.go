// Package status reads what FerroLB is doing from the API server alone (pools, LoadBalancer
// Services and how each is announced, BGP sessions, the speakers) into a Report, and renders
// it: as text for `ferrolb status`, as JSON or YAML for scripts, and as the controller's
// status web page. It reads, never writes, and reads nothing from Secrets.
package status

import "time"

// Format names the schema of the JSON and YAML forms of a Report. It changes only when a
// field is removed or changes meaning; fields may be added within one format.
const Format = "ferrolb.io/status/v1"

// Report is one reading of the cluster: what `ferrolb status -o json|yaml` prints and the
// status page's status.json serves. Its field names are the stable interface for scripts
// (see Format); lists are sorted by name, and are empty lists, not null, when there is
// nothing.
type Report struct {
	// Format is always the Format constant.
	Format string `json:"format"`
	// Time is when the report was read.
	Time time.Time `json:"time"`
	// Pools are the IPPools, by name.
	Pools []Pool `json:"pools"`
	// Services are the LoadBalancer Services FerroLB serves (no spec.loadBalancerClass, or
	// FerroLB's), by namespace and name.
	Services []Service `json:"services"`
	// Peers are the BGPPeers with each node's session, by name.
	Peers []Peer `json:"bgpPeers"`
	// Speakers are the speaker DaemonSet's pods.
	Speakers Speakers `json:"speakers"`
}

// Pool is an IPPool as the controller last reported it in its status.
type Pool struct {
	Name string `json:"name"`
	// State is the Ready condition: "Ready", "Disabled" (no new allocations), "Invalid" (the
	// pool hands out nothing; Message says why), or "Unknown" while the controller has not
	// written it.
	State string `json:"state"`
	// Message is the Ready condition's message when the pool is not Ready.
	Message string `json:"message,omitempty"`
	// Conflict is the Conflict condition's message when the pool overlaps another (the
	// overlapping addresses are handed out by neither); empty otherwise.
	Conflict string `json:"conflict,omitempty"`
	// IPv4 and IPv6 count the pool's addresses of each family; absent when it has none.
	IPv4 *Count `json:"ipv4,omitempty"`
	IPv6 *Count `json:"ipv6,omitempty"`
}

// Count is how many addresses of one family a pool holds. Total and Free are decimal strings:
// an IPv6 pool can hold more than an int64 counts.
type Count struct {
	Total string `json:"total"`
	Used  int64  `json:"used"`
	Free  string `json:"free"`
}

// Service is one LoadBalancer Service.
type Service struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Addresses are those in status.loadBalancer.ingress, each with the pool that holds it.
	Addresses []Address `json:"addresses"`
	// Pending is set when the Service has no address: why (the Allocated condition, or that
	// the controller has not written one).
	Pending *Condition `json:"pending,omitempty"`
	// Allocated is the controller's ferrolb.io/Allocated condition: which address came from
	// which pool, what was refused and why. Absent until the controller has seen the Service.
	Allocated *Condition `json:"allocated,omitempty"`
	// Layer2 is the speakers' ferrolb.io/Announced condition: which node answers ARP/NDP
	// for each address, or (False) why none does. Absent when no speaker has said anything.
	Layer2 *Condition `json:"layer2,omitempty"`
	// BGP is the speakers' ferrolb.io/Advertised condition: which nodes advertise the
	// addresses to which BGPPeers. Absent when no speaker has written it.
	BGP *Condition `json:"bgp,omitempty"`
}

// Address is one of a Service's addresses.
type Address struct {
	IP string `json:"ip"`
	// Pool is the IPPool whose blocks hold the address; empty when none does (an address
	// kept after its pool changed).
	Pool string `json:"pool,omitempty"`
}

// Condition is a Service condition as written.
type Condition struct {
	// Status is "True", "False" or "Unknown".
	Status  string    `json:"status"`
	Reason  string    `json:"reason"`
	Message string    `json:"message,omitempty"`
	Since   time.Time `json:"since,omitzero"`
}

// Peer is a BGPPeer and the sessions the speakers report with it.
type Peer struct {
	Name     string `json:"name"`
	Address  string `json:"address"`
	PeerASN  int64  `json:"peerASN"`
	LocalASN int64  `json:"localASN"`
	// BFDProfile names the peer's BFDProfile; empty without BFD.
	BFDProfile string `json:"bfdProfile,omitempty"`
	// Established is the controller's summary, e.g. "2/3"; empty until it writes one.
	Established string `json:"established,omitempty"`
	// Sessions has one entry per node whose speaker is meant to open the session, by node.
	Sessions []Session `json:"sessions"`
}

// Session is one node's session with a peer.
type Session struct {
	Node string `json:"node"`
	// State is the BGP state (Idle, Connect, Active, OpenSent, OpenConfirm, Established), or
	// NotConfigured when the speaker could not set the session up (Message says why).
	State string `json:"state"`
	// BFD is the BFD session's state (Up, Down, Init, AdminDown); empty without BFD.
	BFD string `json:"bfd,omitempty"`
	// Advertised is how many prefixes the node sends the peer.
	Advertised int64     `json:"advertised"`
	Message    string    `json:"message,omitempty"`
	Since      time.Time `json:"since,omitzero"`
}

// Speakers is the speaker DaemonSet and its pods, as far as they could be read.
type Speakers struct {
	Namespace string `json:"namespace"`
	DaemonSet string `json:"daemonSet"`
	// Desired and Ready are the DaemonSet's desired and ready pod counts; absent when the
	// DaemonSet could not be read (Problems says why).
	Desired *int32 `json:"desired,omitempty"`
	Ready   *int32 `json:"ready,omitempty"`
	// Pods are the speaker pods, by node.
	Pods []SpeakerPod `json:"pods"`
	// Problems are what could not be read, and why (not found, forbidden).
	Problems []string `json:"problems,omitempty"`
}

// SpeakerPod is one speaker pod.
type SpeakerPod struct {
	Name  string `json:"name"`
	Node  string `json:"node"`
	Ready bool   `json:"ready"`
	// Reason is why a pod is not ready, when its containers say (CrashLoopBackOff,
	// ImagePullBackOff, ...) or else its phase.
	Reason string `json:"reason,omitempty"`
}

// PendingCount is how many Services have no address.
func (r *Report) PendingCount() int {
	n := 0
	for _, s := range r.Services {
		if s.Pending != nil {
			n++
		}
	}
	return n
}
