// Package inspect shows what a node's XDP datapath holds: the Services it programs with
// their backends, Maglev entries and counters, its conntrack entries, and the packets it
// did not forward, by reason. The speaker serves it (Handler) on an abstract Unix socket
// in the node's network namespace (Listen); `ferrolb inspect` reads it (Client) and
// prints it (the Write functions), as text or JSON.
//
// Why a socket of the speaker's rather than the kernel's maps read from outside (pinned,
// or found through the attached program): the maps say what was written, not which
// Service it was for, which backends are draining or what their weights are; a reader
// outside would see a Service half applied while SetServices writes it, and pinned maps
// outlive a speaker that crashed. The speaker answers from its own record under the lock
// SetServices holds, with the kernel's counters and conntrack entries, and its Service
// names. The socket is abstract, so it belongs to the network namespace (the node's:
// `kubectl exec` into the speaker, which runs in the host network, reaches it as well as
// a root shell on the node) and leaves no file behind; only root and the speaker's own
// user are answered.
package inspect

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/ferrolb/ferrolb/internal/datapath"
)

// DefaultSocket is the abstract Unix socket (a leading @) the speaker listens on.
const DefaultSocket = "@ferrolb-inspect"

// Overview is what `ferrolb inspect` prints: every programmed Service and the packets not
// forwarded, by reason.
type Overview struct {
	// Interfaces are where the XDP program is attached, and how.
	Interfaces []Interface `json:"interfaces"`
	Services   []Service   `json:"services"`
	Reasons    []Reason    `json:"notForwarded"`
}

// Interface is one interface the XDP program is attached to.
type Interface struct {
	Name string `json:"name"`
	// XDPMode is native or generic: what --datapath-xdp-mode=auto chose, or was told.
	XDPMode string `json:"xdpMode"`
}

// Service is one programmed Service address, port and protocol.
type Service struct {
	// Name is the Kubernetes Service's namespace/name, when the speaker knows it.
	Name     string `json:"name,omitempty"`
	Address  string `json:"address"`
	Port     uint16 `json:"port"`
	Protocol string `json:"protocol"`
	// Mode is snat or dsr.
	Mode string `json:"mode"`
	// AffinitySeconds is the ClientIP affinity timeout; 0: none.
	AffinitySeconds float64 `json:"affinitySeconds,omitempty"`
	// TableSize is the Maglev table's size; 0: no backends (packets pass: no-backend).
	TableSize int    `json:"tableSize"`
	Packets   uint64 `json:"packets"`
	Bytes     uint64 `json:"bytes"`
	// Flows are the Service's conntrack entries (ferrolb inspect service only).
	Flows    *int      `json:"flows,omitempty"`
	Backends []Backend `json:"backends"`
}

// Key is the Service's VIP:PORT/PROTO, as `ferrolb inspect service` takes it.
func (s Service) Key() string {
	a, err := netip.ParseAddr(s.Address)
	if err != nil {
		return s.Address
	}
	return netip.AddrPortFrom(a, s.Port).String() + "/" + s.Protocol
}

// Backend is one backend of a Service.
type Backend struct {
	Address string `json:"address"`
	Weight  uint32 `json:"weight"`
	// MaglevEntries is how many table entries name the backend: its share of new flows
	// is MaglevEntries / TableSize.
	MaglevEntries int `json:"maglevEntries"`
	// Draining: removed from the Service; its established flows still go to it.
	Draining bool `json:"draining,omitempty"`
	// NextHop is "INTERFACE MAC", "stack" (the kernel carries its flows) or "unresolved".
	NextHop string `json:"nextHop"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
	// Flows are the backend's conntrack entries (ferrolb inspect service only).
	Flows *int `json:"flows,omitempty"`
}

// Reason is the count of packets not forwarded for one reason.
type Reason struct {
	Reason string `json:"reason"`
	// Action is "drop" or "pass" (to the kernel's stack).
	Action  string `json:"action"`
	Packets uint64 `json:"packets"`
}

// Conntrack is the conntrack tables' size and the flows a query selected.
type Conntrack struct {
	IPv4Entries int `json:"ipv4Entries"`
	IPv6Entries int `json:"ipv6Entries"`
	// Matched is how many entries the filter selected; Flows holds them, or the first
	// Limit of them.
	Matched int    `json:"matched"`
	Flows   []Flow `json:"flows"`
}

// Flow is one conntrack entry.
type Flow struct {
	Client   string `json:"client"`
	Service  string `json:"service"`
	Protocol string `json:"protocol"`
	// Mode is snat, dsr or stack (the kernel carries the flow).
	Mode string `json:"mode"`
	// Backend is where the flow goes; empty when the entry is stale (its next packet is
	// a new flow's).
	Backend string `json:"backend,omitempty"`
	NATPort uint16 `json:"natPort,omitempty"`
	// State is a SNAT flow's: new, syn-ack, established, closing or port-lost.
	State       string  `json:"state,omitempty"`
	IdleSeconds float64 `json:"idleSeconds,omitempty"`
}

// Query selects conntrack entries: each set field must match.
type Query struct {
	Client  netip.Addr
	VIP     netip.Addr
	Port    uint16
	Proto   datapath.Protocol
	Backend netip.Addr
	// Limit bounds the flows returned (Matched still counts them all); 0: no limit.
	Limit int
	// CountOnly returns the counts without flows.
	CountOnly bool
}

// ServiceKey is a Service as `ferrolb inspect service` names it: VIP:PORT/PROTO, the
// protocol TCP (the default) or UDP, an IPv6 VIP in brackets.
type ServiceKey struct {
	VIP   netip.Addr
	Port  uint16
	Proto datapath.Protocol
}

// ParseServiceKey parses VIP:PORT[/PROTO]: 192.0.2.10:80/TCP, [2001:db8::10]:53/udp.
func ParseServiceKey(s string) (ServiceKey, error) {
	addr, proto, _ := strings.Cut(s, "/")
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || ap.Port() == 0 {
		return ServiceKey{}, fmt.Errorf("%q: want VIP:PORT/PROTO, e.g. 192.0.2.10:80/TCP or [2001:db8::10]:53/UDP", s)
	}
	k := ServiceKey{VIP: ap.Addr().Unmap(), Port: ap.Port(), Proto: datapath.TCP}
	switch strings.ToUpper(proto) {
	case "", "TCP":
	case "UDP":
		k.Proto = datapath.UDP
	default:
		return ServiceKey{}, fmt.Errorf("%q: protocol %q is neither TCP nor UDP", s, proto)
	}
	return k, nil
}

func (k ServiceKey) String() string {
	return netip.AddrPortFrom(k.VIP, k.Port).String() + "/" + k.Proto.String()
}

func parseProto(s string) (datapath.Protocol, error) {
	switch strings.ToUpper(s) {
	case "":
		return 0, nil
	case "TCP":
		return datapath.TCP, nil
	case "UDP":
		return datapath.UDP, nil
	}
	return 0, fmt.Errorf("protocol %q is neither TCP nor UDP", s)
}

func optAddr(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	return a.Unmap(), nil
}

func optUint(s string, bits int) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	return strconv.ParseUint(s, 10, bits)
}

// QueryFlags are a conntrack query as `ferrolb inspect conntrack` takes it: addresses
// and the protocol as text.
type QueryFlags struct {
	Client, VIP, Backend, Protocol string
	Port                           uint16
	Limit                          int
	CountOnly                      bool
}

// Query parses the flags; an error names the flag.
func (f QueryFlags) Query() (Query, error) {
	q := Query{Port: f.Port, Limit: f.Limit, CountOnly: f.CountOnly}
	var err error
	var errs []error
	if q.Client, err = optAddr(f.Client); err != nil {
		errs = append(errs, fmt.Errorf("--client: %w", err))
	}
	if q.VIP, err = optAddr(f.VIP); err != nil {
		errs = append(errs, fmt.Errorf("--vip: %w", err))
	}
	if q.Backend, err = optAddr(f.Backend); err != nil {
		errs = append(errs, fmt.Errorf("--backend: %w", err))
	}
	if q.Proto, err = parseProto(f.Protocol); err != nil {
		errs = append(errs, fmt.Errorf("--protocol: %w", err))
	}
	if f.Limit < 0 {
		errs = append(errs, fmt.Errorf("--limit %d: negative", f.Limit))
	}
	return q, errors.Join(errs...)
}
