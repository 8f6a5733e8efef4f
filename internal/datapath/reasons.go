package datapath

import (
	"errors"
	"fmt"
)

// Reason is why the XDP program did not forward a packet: it passed it to the kernel's
// stack (which may well carry it: kube-proxy is there) or dropped it. The program counts
// each reason per CPU; ReasonCounts sums them. Packets that are for no Service, the
// common case on a node, are passed without being counted.
type Reason uint32

// The reasons, as enum reason in bpf/lb.c (bpf2go generates its values).
const (
	// ReasonFragment: an IPv4 fragment, or an IPv6 packet with a Fragment header, to a
	// Service address. XDP cannot reassemble; the stack can (and kube-proxy's
	// conntrack balances the reassembled packet).
	ReasonFragment = Reason(lbReasonREASON_FRAGMENT)
	// ReasonIPOptions: IPv4 options or an IPv6 extension header (hop-by-hop, routing,
	// destination options, ...), to a Service address.
	ReasonIPOptions = Reason(lbReasonREASON_IP_OPTIONS)
	// ReasonMalformed: a header cut short, or a length field that disagrees with the
	// headers or the frame, to a Service address; the stack drops it and counts it too.
	// (Packets too short to hold an IP address are not counted: they name no Service.)
	ReasonMalformed = Reason(lbReasonREASON_MALFORMED)
	// ReasonTTLExpired: TTL or hop limit 1 or 0 on a packet the program would have
	// forwarded (a Service's, or a SNAT reply), left to the stack to answer with ICMP
	// time exceeded.
	ReasonTTLExpired = Reason(lbReasonREASON_TTL_EXPIRED)
	// ReasonNoBackend: a new flow to a Service this node programs without backends (no
	// ready endpoint, or with externalTrafficPolicy Local none on this node).
	ReasonNoBackend = Reason(lbReasonREASON_NO_BACKEND)
	// ReasonNoNexthop: a flow to a backend whose next hop (the neighbour's MAC, the
	// interface) is not resolved yet, or whose interface is gone.
	ReasonNoNexthop = Reason(lbReasonREASON_NO_NEXTHOP)
	// ReasonStackEndpoint: a flow to a backend the kernel carries by design: the node
	// itself (a host-network endpoint) or one behind an interface the program is not
	// attached to (a pod on this node, an overlay). Every packet of such flows counts.
	ReasonStackEndpoint = Reason(lbReasonREASON_STACK_ENDPOINT)
	// ReasonSNATNoFlow: a packet to the node's SNAT address and port range that no SNAT
	// flow holds: a backend's reply after its flow's port was taken back (idle past its
	// timeout), or the node's own traffic if its local port range overlaps the SNAT range.
	ReasonSNATNoFlow = Reason(lbReasonREASON_SNAT_NO_FLOW)
	// ReasonSNATPortsExhausted (dropped): a new SNAT flow found no free port towards its
	// backend in 8 probes.
	ReasonSNATPortsExhausted = Reason(lbReasonREASON_SNAT_PORTS_EXHAUSTED)
	// ReasonEncapFailed (dropped): DSR could not make room for the outer header
	// (bpf_xdp_adjust_head failed: the driver left no headroom).
	ReasonEncapFailed = Reason(lbReasonREASON_ENCAP_FAILED)
)

// reasonNames are the reasons' names, the label values of the speaker's metrics: fixed,
// so the series are bounded.
var reasonNames = map[Reason]string{
	ReasonFragment:           "fragment",
	ReasonIPOptions:          "ip-options",
	ReasonMalformed:          "malformed",
	ReasonTTLExpired:         "ttl-expired",
	ReasonNoBackend:          "no-backend",
	ReasonNoNexthop:          "no-nexthop",
	ReasonStackEndpoint:      "stack-endpoint",
	ReasonSNATNoFlow:         "snat-no-flow",
	ReasonSNATPortsExhausted: "snat-ports-exhausted",
	ReasonEncapFailed:        "encap-failed",
}

// Reasons are every reason the program counts, in the order of bpf/lb.c.
func Reasons() []Reason {
	out := make([]Reason, 0, len(reasonNames))
	for r := ReasonFragment; r < Reason(lbReasonREASON_MAX); r++ {
		out = append(out, r)
	}
	return out
}

// String is the reason's name ("snat-ports-exhausted").
func (r Reason) String() string {
	if n, ok := reasonNames[r]; ok {
		return n
	}
	return fmt.Sprintf("reason-%d", uint32(r))
}

// Dropped reports whether packets of this reason are dropped (XDP_DROP) rather than
// passed to the stack.
func (r Reason) Dropped() bool {
	return r == ReasonSNATPortsExhausted || r == ReasonEncapFailed
}

// ReasonCount is how many packets the program did not forward for one reason, summed over
// CPUs, since the Datapath was loaded.
type ReasonCount struct {
	Reason  Reason
	Packets uint64
}

// ReasonCounts reports every reason's count (zeros included), in the order of Reasons.
func (d *Datapath) ReasonCounts() ([]ReasonCount, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errors.New("datapath: closed")
	}
	out := make([]ReasonCount, 0, len(reasonNames))
	for _, r := range Reasons() {
		var per []uint64
		if err := d.objs.ReasonStats.Lookup(uint32(r), &per); err != nil {
			return nil, fmt.Errorf("datapath: reason %s: %w", r, err)
		}
		c := ReasonCount{Reason: r}
		for _, n := range per {
			c.Packets += n
		}
		out = append(out, c)
	}
	return out, nil
}
