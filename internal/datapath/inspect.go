package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ServiceInfo is a programmed Service as the Datapath holds it: what `ferrolb inspect`
// lists.
type ServiceInfo struct {
	VIP      netip.Addr
	Port     uint16
	Protocol Protocol
	Mode     Mode
	Affinity time.Duration
	// TableSize is the Maglev table's size M; 0 for a Service without backends, which
	// has no table (its packets pass: ReasonNoBackend).
	TableSize int
	// Packets and Bytes are the Service's traffic as Counters reports it: its backends',
	// those removed since included.
	Packets, Bytes uint64
	// Backends are the current backends, by address, then the draining ones.
	Backends []BackendInfo
}

// BackendInfo is one backend of a programmed Service.
type BackendInfo struct {
	Addr   netip.AddrPort
	Weight uint32
	// Entries is how many entries of the Service's Maglev table name the backend: its
	// share of new flows is Entries / TableSize. The entries of a Service's backends add
	// up to its TableSize.
	Entries int
	// Draining: removed from the Service, the backend keeps its flows in conntrack until
	// its slot is reused; no new flow goes to it (Weight and Entries are 0).
	Draining bool
	NextHop  NextHop
	// Packets and Bytes the program sent to the backend since it was added.
	Packets, Bytes uint64
}

// NextHop is where the program sends a backend's packets.
type NextHop struct {
	// Stack: the backend is the node itself or behind an interface the program is not
	// attached to; the kernel carries its flows (ReasonStackEndpoint).
	Stack bool
	// Interface and MAC are the egress interface and the next hop's MAC; empty while the
	// neighbour is not resolved (new flows pass: ReasonNoNexthop).
	Interface string
	MAC       net.HardwareAddr
}

// Services reports every programmed Service with its backends, their Maglev entries,
// next hops and counters, sorted by address, port and protocol. It reads the Datapath's
// own record of what it wrote, under the lock SetServices takes, so a Service is never
// seen half applied; the counters are the kernel's.
func (d *Datapath) Services() ([]ServiceInfo, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errors.New("datapath: closed")
	}
	ifnames := map[uint32]string{}
	ifname := func(i uint32) string {
		if n, ok := ifnames[i]; ok {
			return n
		}
		n := fmt.Sprintf("ifindex %d", i)
		if l, err := d.nl.LinkByIndex(int(i)); err == nil {
			n = l.Attrs().Name
		}
		ifnames[i] = n
		return n
	}
	var out []ServiceInfo
	for k, st := range d.services {
		si := ServiceInfo{VIP: k.vip, Port: k.port, Protocol: k.proto, Mode: st.svc.Mode, Affinity: st.svc.Affinity,
			TableSize: st.size, Packets: st.retired.Packets, Bytes: st.retired.Bytes}
		entries := map[uint32]int{}
		for _, slot := range st.entries {
			entries[slot]++
		}
		weights := backendWeights(st.svc.Backends)
		current := map[uint32]int{} // slot -> index in si.Backends
		for ap, b := range st.backends {
			current[b.slot] = len(si.Backends)
			bi := BackendInfo{Addr: ap, Weight: weights[ap], Entries: entries[b.slot], NextHop: NextHop{Stack: b.nh.stack}}
			if b.nh.valid() {
				bi.NextHop.Interface, bi.NextHop.MAC = ifname(b.nh.ifindex), slices.Clone(b.nh.dmac)
			}
			si.Backends = append(si.Backends, bi)
		}
		for slot, o := range d.slotOwner {
			if o.key != k || o.id != st.id {
				continue
			}
			p, by, err := d.sumCounter(slot)
			if err != nil {
				return nil, err
			}
			si.Packets += p
			si.Bytes += by
			if i, ok := current[slot]; ok {
				si.Backends[i].Packets, si.Backends[i].Bytes = p, by
				continue
			}
			// A slot the service no longer uses: draining while its entry keeps its
			// generation (a service that lost all its backends cleared them).
			var be lbBackend
			if err := d.objs.Backends.Lookup(slot, &be); err != nil {
				return nil, fmt.Errorf("datapath: backend slot %d: %w", slot, err)
			}
			if be.Gen == 0 {
				continue
			}
			bi := BackendInfo{Addr: netip.AddrPortFrom(wordsAddr(be.Addr.W, be.Family), ntohs(be.Port)), Draining: true,
				NextHop: NextHop{Stack: be.Flags&beStack != 0}, Packets: p, Bytes: by}
			if be.Flags&beNexthop != 0 {
				bi.NextHop.Interface, bi.NextHop.MAC = ifname(be.Ifindex), net.HardwareAddr(slices.Clone(be.Dmac[:]))
			}
			si.Backends = append(si.Backends, bi)
		}
		slices.SortFunc(si.Backends, func(a, b BackendInfo) int {
			if a.Draining != b.Draining {
				if a.Draining {
					return 1
				}
				return -1
			}
			return a.Addr.Compare(b.Addr)
		})
		out = append(out, si)
	}
	slices.SortFunc(out, func(a, b ServiceInfo) int {
		if c := a.VIP.Compare(b.VIP); c != 0 {
			return c
		}
		if a.Port != b.Port {
			return int(a.Port) - int(b.Port)
		}
		return int(a.Protocol) - int(b.Protocol)
	})
	return out, nil
}

// FlowFilter selects conntrack entries; zero fields match any.
type FlowFilter struct {
	Client   netip.Addr
	VIP      netip.Addr
	Port     uint16 // the VIP's port
	Protocol Protocol
	Backend  netip.Addr
}

func (f FlowFilter) match(fl *Flow) bool {
	return (!f.Client.IsValid() || f.Client.Unmap() == fl.Client.Addr()) &&
		(!f.VIP.IsValid() || f.VIP.Unmap() == fl.VIP.Addr()) &&
		(f.Port == 0 || f.Port == fl.VIP.Port()) &&
		(f.Protocol == 0 || f.Protocol == fl.Protocol) &&
		(!f.Backend.IsValid() || f.Backend.Unmap() == fl.Backend.Addr())
}

// The states of a SNAT flow's port (Flow.State).
const (
	// FlowNew: the backend has not answered (UDP: no reply is tracked, only Idle).
	FlowNew = "new"
	// FlowSYNACK: TCP, the backend sent its SYN-ACK; the client has not ACKed it yet.
	FlowSYNACK = "syn-ack"
	// FlowEstablished: TCP, the client ACKed the backend's SYN-ACK: the port is held for
	// SNATIdleTCP.
	FlowEstablished = "established"
	// FlowClosing: the backend sent FIN or RST: the port is held for SNATIdleClosed.
	FlowClosing = "closing"
	// FlowPortLost: the flow's port went to another flow (its conntrack entry outlived
	// it); the flow's next packet takes a new port.
	FlowPortLost = "port-lost"
)

// Flow is one conntrack entry: a client's flow to a Service and where it goes.
type Flow struct {
	Client, VIP netip.AddrPort
	Protocol    Protocol
	// Mode is SNAT or DSR, or Stack for a flow the kernel carries.
	Mode Mode
	// Backend is where the flow goes; zero when the entry is stale (its backend's slot was
	// reused, or cleared because the Service was removed or lost its backends): the
	// flow's next packet is handled as a new flow's.
	Backend netip.AddrPort
	// NATPort is the node's source port of a SNAT flow.
	NATPort uint16
	// State is a SNAT flow's, from its port's reverse entry: FlowNew, FlowSYNACK,
	// FlowEstablished, FlowClosing or FlowPortLost; empty for other modes.
	State string
	// Idle is how long since the backend's last reply to a SNAT flow (or its start), to
	// the program's 1.07 s clock.
	Idle time.Duration
}

// ConntrackDump is the conntrack tables' size and the entries a filter selected.
type ConntrackDump struct {
	// IPv4 and IPv6 are how many entries each family's table holds, whatever the filter.
	IPv4, IPv6 int
	// Flows are the entries that match, sorted by Service, then client.
	Flows []Flow
}

// Conntrack reads the conntrack tables (the kernel's, as the program sees them) and
// returns the entries f selects. Flows start and end while it reads: the dump is not a
// snapshot of one instant.
func (d *Datapath) Conntrack(f FlowFilter) (ConntrackDump, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var dump ConntrackDump
	if d.closed {
		return dump, errors.New("datapath: closed")
	}
	r := flowReader{d: d, backends: map[uint32]*lbBackend{}, now: nowTicks()}
	err := batchRead(d.objs.Conntrack4, func(k *lbCt4Key, v *lbCtVal) error {
		dump.IPv4++
		fl := Flow{Client: netip.AddrPortFrom(wordsAddr([4]uint32{k.Saddr}, 4), ntohs(k.Sport)),
			VIP: netip.AddrPortFrom(wordsAddr([4]uint32{k.Daddr}, 4), ntohs(k.Dport)), Protocol: Protocol(k.Proto)}
		return r.add(&dump, f, &fl, v)
	})
	if err != nil {
		return dump, fmt.Errorf("datapath: conntrack4: %w", err)
	}
	err = batchRead(d.objs.Conntrack6, func(k *lbCtKey, v *lbCtVal) error {
		dump.IPv6++
		fl := Flow{Client: netip.AddrPortFrom(wordsAddr(k.Saddr.W, 6), ntohs(k.Sport)),
			VIP: netip.AddrPortFrom(wordsAddr(k.Daddr.W, 6), ntohs(k.Dport)), Protocol: Protocol(k.Proto)}
		return r.add(&dump, f, &fl, v)
	})
	if err != nil {
		return dump, fmt.Errorf("datapath: conntrack6: %w", err)
	}
	slices.SortFunc(dump.Flows, func(a, b Flow) int {
		if c := a.VIP.Compare(b.VIP); c != 0 {
			return c
		}
		if a.Protocol != b.Protocol {
			return int(a.Protocol) - int(b.Protocol)
		}
		return a.Client.Compare(b.Client)
	})
	return dump, nil
}

// flowReader completes conntrack entries with their backend and SNAT state.
type flowReader struct {
	d        *Datapath
	backends map[uint32]*lbBackend // slot -> entry, read once per dump
	now      uint32
}

func (r *flowReader) add(dump *ConntrackDump, f FlowFilter, fl *Flow, v *lbCtVal) error {
	fl.Mode = Mode(v.Mode)
	be, ok := r.backends[v.Backend]
	if !ok {
		var e lbBackend
		if err := r.d.objs.Backends.Lookup(v.Backend, &e); err == nil {
			be = &e
		}
		r.backends[v.Backend] = be
	}
	if be != nil && be.Gen != 0 && be.Gen == v.Gen {
		fl.Backend = netip.AddrPortFrom(wordsAddr(be.Addr.W, be.Family), ntohs(be.Port))
	}
	if !f.match(fl) {
		return nil
	}
	if fl.Mode == SNAT {
		fl.NATPort = ntohs(v.NatPort)
		if fl.Backend.IsValid() {
			r.snatState(fl, be)
		}
	}
	dump.Flows = append(dump.Flows, *fl)
	return nil
}

// snatState reads the flow's port in snat_rev: its state and idle time.
func (r *flowReader) snatState(fl *Flow, be *lbBackend) {
	var k lbRevKey
	k.Baddr.W = be.Addr.W
	k.Bport = be.Port
	k.Nport = htons(fl.NATPort)
	k.Proto = uint8(fl.Protocol)
	k.Family = be.Family
	var v lbRevVal
	fam := family(fl.Client.Addr())
	if err := r.d.objs.SnatRev.Lookup(&k, &v); err != nil ||
		wordsAddr(v.Client.W, fam) != fl.Client.Addr() || ntohs(v.Cport) != fl.Client.Port() ||
		wordsAddr(v.Vip.W, fam) != fl.VIP.Addr() || ntohs(v.Vport) != fl.VIP.Port() {
		fl.State = FlowPortLost
		return
	}
	fl.Idle = time.Duration(r.now-v.Seen) << 30
	switch {
	case v.Closing != 0:
		fl.State = FlowClosing
	case v.Established != 0:
		fl.State = FlowEstablished
	case v.Synack != 0:
		fl.State = FlowSYNACK
	default:
		fl.State = FlowNew
	}
}

// nowTicks is the program's clock (now_ticks in bpf/lb.c): the coarse monotonic clock in
// units of 2^30 ns.
func nowTicks() uint32 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts); err != nil {
		return 0
	}
	return uint32(ts.Nano() >> 30) //nolint:gosec // the program's clock wraps the same way
}

// batchRead calls f with every entry of a hash map, read a batch at a time: the kernel
// walks its buckets, so entries added or deleted meanwhile make no restart or duplicate,
// as a key-by-key walk would on a busy LRU.
func batchRead[K, V any](m *ebpf.Map, f func(*K, *V) error) error {
	const batch = 4096
	keys, vals := make([]K, batch), make([]V, batch)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			if ferr := f(&keys[i], &vals[i]); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// wordsAddr is addrWords' inverse: an address of family 4 or 6 from the BPF side's words.
func wordsAddr(w [4]uint32, fam uint8) netip.Addr {
	var b [16]byte
	for i, x := range w {
		binary.NativeEndian.PutUint32(b[4*i:], x)
	}
	if fam == 4 {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16(b)
}

// ntohs is htons' inverse (the same swap).
func ntohs(p uint16) uint16 { return htons(p) }
