package datapath

import (
	"errors"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"
)

// Counter is the traffic of a Service (Backend zero) or of one of its backends, summed
// over CPUs, since the Service (or backend) was programmed. Only the client-to-backend
// direction is counted.
type Counter struct {
	VIP      netip.Addr
	Port     uint16
	Protocol Protocol
	Backend  netip.AddrPort
	Packets  uint64
	Bytes    uint64
}

// Counters reports packets and bytes per programmed Service and per current backend.
func (d *Datapath) Counters() ([]Counter, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errors.New("datapath: closed")
	}
	var out []Counter
	totals := map[svcID]*Counter{}
	for k, st := range d.services {
		totals[k] = &Counter{VIP: k.vip, Port: k.port, Protocol: k.proto,
			Packets: st.retired.Packets, Bytes: st.retired.Bytes}
		for ap, be := range st.backends {
			p, b, err := d.sumCounter(be.slot)
			if err != nil {
				return nil, err
			}
			out = append(out, Counter{VIP: k.vip, Port: k.port, Protocol: k.proto, Backend: ap, Packets: p, Bytes: b})
		}
	}
	for slot, o := range d.slotOwner {
		t := totals[o.key]
		if t == nil || d.services[o.key].id != o.id {
			continue
		}
		p, b, err := d.sumCounter(slot)
		if err != nil {
			return nil, err
		}
		t.Packets += p
		t.Bytes += b
	}
	for _, t := range totals {
		out = append(out, *t)
	}
	slices.SortFunc(out, func(a, b Counter) int {
		if c := a.VIP.Compare(b.VIP); c != 0 {
			return c
		}
		if a.Port != b.Port {
			return int(a.Port) - int(b.Port)
		}
		if a.Protocol != b.Protocol {
			return int(a.Protocol) - int(b.Protocol)
		}
		return a.Backend.Compare(b.Backend)
	})
	return out, nil
}

// sumCounter is a backend slot's packets and bytes summed over CPUs.
func (d *Datapath) sumCounter(slot uint32) (packets, bytes uint64, err error) {
	var per []lbCounter
	if err := d.objs.BeStats.Lookup(slot, &per); err != nil {
		return 0, 0, err
	}
	for _, c := range per {
		packets += c.Packets
		bytes += c.Bytes
	}
	return packets, bytes, nil
}

// zeroCounter zeroes entry idx of a per-CPU counter map on every CPU.
func (d *Datapath) zeroCounter(m *ebpf.Map, idx uint32) error {
	zeros := make([]lbCounter, ebpf.MustPossibleCPU())
	return m.Update(idx, zeros, ebpf.UpdateAny)
}

// retireSlot adds the traffic counted so far on a slot about to be reused to the total of
// the service it was last allocated to, if that service is still programmed: the program
// counts per slot only, and the slot's counter is about to restart for its new backend.
func (d *Datapath) retireSlot(slot uint32) {
	prev, ok := d.slotOwner[slot]
	if !ok {
		return
	}
	ps := d.services[prev.key]
	if ps == nil || ps.id != prev.id {
		return
	}
	if p, by, err := d.sumCounter(slot); err == nil {
		ps.retired.Packets += p
		ps.retired.Bytes += by
	}
}
