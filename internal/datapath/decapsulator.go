package datapath

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/ferrolb/ferrolb/internal/nsenter"
)

// DecapPair is one kind of DSR packet a node's Decapsulator strips: sent to Backend (an
// endpoint on this node, the outer destination) for the Service at VIP, Port, Protocol
// (the inner destination).
type DecapPair struct {
	Backend  netip.Addr
	VIP      netip.Addr
	Port     uint16
	Protocol Protocol
}

// DecapResult is what the Decapsulator did with an IPIP / IP6IP6 packet.
type DecapResult uint32

// The results, as bpf/decap.c counts them.
const (
	// DecapOK: the outer header was stripped; the inner packet goes on into the stack.
	DecapOK DecapResult = iota
	// DecapNotAllowed: a well-formed tunnel packet for no allowed pair, left untouched.
	DecapNotAllowed
	// DecapMalformed: truncated, fragmented, with IP options, lengths that disagree or an
	// inner header of the wrong version or protocol; left untouched.
	DecapMalformed
	// DecapFailed: the kernel could not remove the outer header; left untouched.
	DecapFailed
	decapResults
)

// String is the result's name in metrics: "decapsulated", "not-allowed", "malformed",
// "failed".
func (r DecapResult) String() string {
	switch r {
	case DecapOK:
		return "decapsulated"
	case DecapNotAllowed:
		return "not-allowed"
	case DecapMalformed:
		return "malformed"
	case DecapFailed:
		return "failed"
	}
	return fmt.Sprintf("result-%d", uint32(r))
}

// Decapsulator is the backend nodes' side of DSR (bpf/decap.c): a tcx ingress program on
// the node's interfaces that strips the outer header of a DSR packet when its outer
// destination is a local endpoint and its inner destination the address, port and
// protocol of a Service that endpoint serves (SetPairs), and leaves every other packet
// untouched. It runs after the node's own XDP load balancer, which passes tunnel packets
// to the stack. Its methods are safe for concurrent use.
type Decapsulator struct {
	cfg    DecapConfig
	objs   decapObjects
	ns     netns.NsHandle
	nl     *netlink.Handle
	names  []string
	wake   chan struct{} // SetPairs changed whether the program is wanted
	mu     sync.Mutex
	pairs  map[decapDecapKey]bool // the decap_allow map as written
	closed bool
}

// DecapConfig configures a Decapsulator.
type DecapConfig struct {
	// Interfaces are where DSR packets for this node's endpoints arrive.
	Interfaces []string
	// AttachError, if set, is told when the program cannot be attached to an interface
	// (a kernel without tcx, before 6.6), once per distinct error. Run goes on and tries
	// again on the next change: a node that cannot take DSR packets still balances.
	AttachError func(error)
}

// NewDecapsulator loads the program in the calling thread's network namespace. Run
// attaches it while there is a pair to decapsulate.
func NewDecapsulator(cfg DecapConfig) (*Decapsulator, error) {
	if len(cfg.Interfaces) == 0 {
		return nil, errors.New("datapath: decapsulator: no interface")
	}
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("datapath: current netns: %w", err)
	}
	x := &Decapsulator{cfg: cfg, ns: ns, wake: make(chan struct{}, 1), pairs: map[decapDecapKey]bool{}}
	for _, n := range cfg.Interfaces {
		if !slices.Contains(x.names, n) {
			x.names = append(x.names, n)
		}
	}
	if x.nl, err = netlink.NewHandle(); err != nil {
		_ = ns.Close()
		return nil, fmt.Errorf("datapath: netlink: %w", err)
	}
	if err := loadDecapObjects(&x.objs, nil); err != nil {
		x.nl.Close()
		_ = ns.Close()
		return nil, fmt.Errorf("datapath: load decapsulator: %w", err)
	}
	return x, nil
}

func decapKey(p DecapPair) (decapDecapKey, error) {
	var k decapDecapKey
	b, v := p.Backend.Unmap(), p.VIP.Unmap()
	if !b.IsValid() || !v.IsValid() || b.Is4() != v.Is4() || p.Port == 0 || (p.Protocol != TCP && p.Protocol != UDP) {
		return k, fmt.Errorf("%w: decapsulation pair %v -> %v port %d %v: want addresses of one family, a port and TCP or UDP",
			ErrInvalidService, p.Backend, p.VIP, p.Port, p.Protocol)
	}
	k.Outer.W, k.Vip.W = addrWords(b), addrWords(v)
	k.Port = htons(p.Port)
	k.Proto = uint8(p.Protocol)
	k.Family = 6
	if b.Is4() {
		k.Family = 4
	}
	return k, nil
}

// SetPairs makes pairs the whole set the node decapsulates, writing only the difference.
// With none the program is detached: a node without DSR endpoints runs nothing.
func (x *Decapsulator) SetPairs(pairs []DecapPair) error {
	want := map[decapDecapKey]bool{}
	for _, p := range pairs {
		k, err := decapKey(p)
		if err != nil {
			return err
		}
		want[k] = true
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return errors.New("datapath: decapsulator closed")
	}
	var errs []error
	one := uint8(1)
	for k := range want {
		if !x.pairs[k] {
			if err := x.objs.DecapAllow.Put(&k, &one); err != nil {
				errs = append(errs, fmt.Errorf("datapath: decap_allow: %w", err))
				continue
			}
			x.pairs[k] = true
		}
	}
	for k := range x.pairs {
		if !want[k] {
			if err := x.objs.DecapAllow.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				errs = append(errs, fmt.Errorf("datapath: decap_allow: %w", err))
				continue
			}
			delete(x.pairs, k)
		}
	}
	select {
	case x.wake <- struct{}{}:
	default:
	}
	return errors.Join(errs...)
}

// Counts are the tunnel packets seen since the program was loaded, by result.
func (x *Decapsulator) Counts() (map[DecapResult]uint64, error) {
	out := map[DecapResult]uint64{}
	for r := range decapResults {
		var per []uint64
		if err := x.objs.DecapStats.Lookup(uint32(r), &per); err != nil {
			return nil, fmt.Errorf("datapath: decap_stats: %w", err)
		}
		var sum uint64
		for _, v := range per {
			sum += v
		}
		out[r] = sum
	}
	return out, nil
}

// Run keeps the program attached to every named interface that exists while there are
// pairs (attaching anew to an interface created again under its name), and detaches it
// and frees everything when ctx ends. It can be called once. A failed attachment goes to
// DecapConfig.AttachError and is tried again on the next change, not returned.
func (x *Decapsulator) Run(ctx context.Context) error {
	att := map[string]*attachment{}
	defer func() {
		for _, a := range att {
			_ = a.link.Close()
		}
		x.mu.Lock()
		x.closed = true
		x.mu.Unlock()
		_ = x.objs.Close()
		x.nl.Close()
		_ = x.ns.Close()
	}()
	linkUpdates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	if err := nsenter.Do(x.ns, func() error { return netlink.LinkSubscribe(linkUpdates, done) }); err != nil {
		return fmt.Errorf("datapath: link updates: %w", err)
	}
	reported := ""
	for {
		if err := x.attach(att); err != nil {
			if err.Error() != reported && x.cfg.AttachError != nil {
				x.cfg.AttachError(err)
			}
			reported = err.Error()
		} else {
			reported = ""
		}
		select {
		case <-ctx.Done():
			return nil
		case <-x.wake:
		case _, ok := <-linkUpdates:
			if !ok {
				return errors.New("datapath: link updates ended")
			}
			for drained := false; !drained; {
				select {
				case <-linkUpdates:
				default:
					drained = true
				}
			}
		}
	}
}

// attach makes the attachments match: on every named interface under its index now
// while there are pairs, nowhere otherwise.
func (x *Decapsulator) attach(att map[string]*attachment) error {
	x.mu.Lock()
	wanted := len(x.pairs) > 0
	x.mu.Unlock()
	return nsenter.Do(x.ns, func() error {
		var errs []error
		for _, name := range x.names {
			a := att[name]
			idx := 0
			if l, err := x.nl.LinkByName(name); err == nil && wanted {
				idx = l.Attrs().Index
			}
			if a != nil && a.index == idx {
				continue
			}
			if a != nil {
				_ = a.link.Close()
				delete(att, name)
			}
			if idx == 0 {
				continue
			}
			l, err := link.AttachTCX(link.TCXOptions{Program: x.objs.TcxDecap, Attach: ebpf.AttachTCXIngress, Interface: idx})
			if err != nil {
				errs = append(errs, fmt.Errorf("datapath: attach the DSR decapsulator (tcx) to %s: %w", name, err))
				continue
			}
			att[name] = &attachment{index: idx, link: l}
		}
		return errors.Join(errs...)
	})
}
