package datapath

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Limits of the BPF maps; they match bpf/lb.c.
const (
	maxServices = 4096
	maxBackends = 16384
)

// Protocol is an IP protocol number.
type Protocol uint8

// The protocols the datapath balances.
const (
	TCP Protocol = 6
	UDP Protocol = 17
)

// String is the protocol's name as Kubernetes writes it: "TCP" or "UDP".
func (p Protocol) String() string {
	switch p {
	case TCP:
		return "TCP"
	case UDP:
		return "UDP"
	}
	return fmt.Sprintf("protocol-%d", uint8(p))
}

// Mode is how a Service's packets reach the backend.
type Mode uint8

const (
	// SNAT rewrites the destination to the backend and the source to the node's SNAT
	// address and a port of its own, so replies come back through the node, which
	// reverses both. Backends need nothing special.
	SNAT Mode = iota
	// DSR encapsulates the client's packet in IPIP (IPv4) or IP6IP6 (IPv6) to the
	// backend, whose node strips the outer header (Decapsulator) and delivers the client's
	// packet, which the backend answers straight to the client. There is no port translation: Backend.Port is
	// ignored and the backend listens on the service's port.
	DSR
	// Stack is no Service's mode: it is the mode of a conntrack entry (Flow) whose
	// packets the program passes to the kernel, which carries them (a backend on this
	// node or behind an interface the program is not attached to).
	Stack
)

// String is the mode's name: "snat", "dsr" or "stack".
func (m Mode) String() string {
	switch m {
	case SNAT:
		return "snat"
	case DSR:
		return "dsr"
	case Stack:
		return "stack"
	}
	return fmt.Sprintf("mode-%d", uint8(m))
}

// Backend is one ready endpoint of a Service.
type Backend struct {
	Addr netip.Addr
	Port uint16
	// Weight is the backend's share of new flows relative to the others; 0 counts as 1
	// because callers that do not weigh backends leave it unset.
	Weight uint32
}

// Service is one VIP, port and protocol balanced over Backends.
type Service struct {
	VIP      netip.Addr
	Port     uint16
	Protocol Protocol
	Mode     Mode
	// Backends are the ready backends only, of the VIP's address family. With none, the
	// Service's packets go on to the kernel (XDP_PASS), so kube-proxy or the stack
	// answers; the program counts them (ReasonNoBackend).
	Backends []Backend
	// Affinity is the ClientIP session affinity timeout; 0 turns affinity off. A client's
	// new flows go to the backend of its previous new flow if that was less than Affinity
	// ago.
	Affinity time.Duration
	// TableSize is the Maglev table size M; 0 means Config.MaglevTableSize.
	TableSize int
}

// Config configures a Datapath.
type Config struct {
	// Interface is the node's ingress interface, where the XDP program is attached.
	Interface string
	// XDPMode is how the program is attached to Interface and BackendInterfaces: native,
	// generic, or auto (the zero value): native where the driver supports it, else generic.
	XDPMode XDPMode
	// BackendInterfaces are further interfaces that lead to backends: SNAT replies come
	// back on them, so the same program is attached there too. Backends behind Interface
	// need nothing here.
	BackendInterfaces []string
	// SNATv4 and SNATv6 are the node's source addresses for SNAT mode and the outer
	// source of DSR encapsulation. Zero: the first global address of that family on
	// Interface. Backends must route them back through the node.
	SNATv4, SNATv6 netip.Addr
	// SNATPortMin and SNATPortMax bound the node's source ports for SNAT flows; zero:
	// 61000-65535, above the kernel's default ip_local_port_range so that the node's own
	// connections do not collide with them.
	SNATPortMin, SNATPortMax uint16
	// A SNAT port goes back to the pool when its flow has been idle (no reply from the
	// backend) this long. SNATIdleTCP: an established TCP flow, one whose client ACKed
	// the backend's SYN-ACK; zero: 6 h. SNATIdleOther: UDP, and TCP flows whose
	// handshake has not completed, answered or not (so that SYNs that never complete,
	// to a dead backend or from a SYN flood, do not hold ports for hours); zero: 60 s.
	// SNATIdleClosed: after the backend sent FIN or RST; zero: 10 s. The program's clock
	// ticks every 1.07 s.
	SNATIdleTCP, SNATIdleOther, SNATIdleClosed time.Duration
	// ConntrackSize is the number of flows each conntrack LRU (one per address family)
	// holds, and the SNAT port table (both families', one entry per SNAT flow): zero:
	// DefaultConntrackSize, else in [MinConntrackSize, MaxConntrackSize]. The per-CPU LRU
	// divides it among the CPUs. It also sizes the IPv4 flow
	// cache in front of conntrack4 (about 32 bytes per entry, 8 MB at 262144). Memory:
	// docs/performance.md.
	ConntrackSize int
	// MaglevTableSize is the Maglev table size M of a Service whose TableSize is 0: zero:
	// maglev.DefaultSize, else a prime in [maglev.MinSize, maglev.MaxSize]. Each Service
	// with backends has a table of M entries (8 bytes each in the kernel).
	MaglevTableSize int
	// Log gets a line per attachment, with the mode chosen; the zero Logger discards them.
	Log logr.Logger
	// NexthopRefresh is how often Run re-resolves every backend's next hop besides
	// reacting to neighbour updates; zero: 5 s.
	NexthopRefresh time.Duration
}

// Bounds of Config.ConntrackSize, those of Cilium's bpf-ct-global-*-max: below a
// thousand flows the table is a misconfiguration, and above 16 Mi one table takes
// gigabytes.
const (
	DefaultConntrackSize = 262144
	MinConntrackSize     = 1 << 10
	MaxConntrackSize     = 1 << 24
)

// CheckConntrackSize fails unless n is a valid Config.ConntrackSize other than zero.
func CheckConntrackSize(n int) error {
	if n < MinConntrackSize || n > MaxConntrackSize {
		return fmt.Errorf("%d entries: want %d to %d", n, MinConntrackSize, MaxConntrackSize)
	}
	return nil
}

// ErrInvalidService is wrapped by SetServices errors about the services given.
var ErrInvalidService = errors.New("datapath: invalid service")

// Datapath is the XDP load balancer of one node. Its methods are safe for concurrent use.
type Datapath struct {
	cfg      Config
	objs     objects
	ns       netns.NsHandle
	nl       *netlink.Handle
	names    []string     // the interfaces to attach to: Config.Interface, BackendInterfaces
	ifindex  []int        // their indexes now; guarded by mu once Run runs
	attached []Attachment // what attach last attached; guarded by mu
	// xdpMode is the mode attach asks for: Config.XDPMode until auto met an interface
	// without native XDP, generic from then on. Run's alone.
	xdpMode XDPMode

	mu        sync.Mutex
	services  map[svcID]*svcState
	svcFree   []uint32 // FIFO of free service slots
	beFree    []uint32 // FIFO of free backend slots: reuse as late as possible
	gen       uint32
	filter    [1024]uint64        // the vip_filter map as written
	vips      map[netip.Addr]bool // the vip_addrs map as written
	slotOwner map[uint32]owner
	closed    bool
	ran       bool
}
