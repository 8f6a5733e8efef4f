package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"

	"github.com/ferrolb/ferrolb/internal/lab/netns"
)

// xdpCounter is one loaded instance of counter.c: its count_backend program, attached to a
// backend's link, counts what the backend receives; its count_drop program, attached to the
// node's link, is the drop-only ceiling.
type xdpCounter struct {
	objs counterObjects
}

// Keys of the packets map (counter.c).
const (
	keyAll = iota
	keyToBackend
	keyIPIP
	keyToVIP
)

// newXDPCounter loads an instance; backend is the address count_backend recognises as the
// backend's own (zero for the node's instance).
func newXDPCounter(backend netip.Addr) (*xdpCounter, error) {
	spec, err := loadCounter()
	if err != nil {
		return nil, err
	}
	if backend.IsValid() {
		a := backend.As4()
		if err := spec.Variables["backend_addr"].Set(binary.NativeEndian.Uint32(a[:])); err != nil {
			return nil, err
		}
	}
	c := &xdpCounter{}
	if err := spec.LoadAndAssign(&c.objs, nil); err != nil {
		return nil, fmt.Errorf("load the counting XDP program: %w", err)
	}
	return c, nil
}

// count sums one key's per-CPU packet counts.
func (c *xdpCounter) count(key uint32) (uint64, error) {
	var perCPU []uint64
	if err := c.objs.Packets.Lookup(key, &perCPU); err != nil {
		return 0, err
	}
	var n uint64
	for _, v := range perCPU {
		n += v
	}
	return n, nil
}

// tally is what the counters saw: at the backends, or dropped at the node.
type tally struct {
	all, toBackend, ipip, toVIP uint64
	per                         []uint64 // all, per backend
}

func (t tally) sub(o tally) tally {
	d := tally{all: t.all - o.all, toBackend: t.toBackend - o.toBackend, ipip: t.ipip - o.ipip, toVIP: t.toVIP - o.toVIP}
	for i := range t.per {
		d.per = append(d.per, t.per[i]-o.per[i])
	}
	return d
}

// tallyOf reads the counters of cs, one per backend.
func tallyOf(cs []*xdpCounter) (tally, error) {
	var t tally
	for _, c := range cs {
		all, err := c.count(keyAll)
		if err != nil {
			return t, err
		}
		to, err := c.count(keyToBackend)
		if err != nil {
			return t, err
		}
		ipip, err := c.count(keyIPIP)
		if err != nil {
			return t, err
		}
		vip, err := c.count(keyToVIP)
		if err != nil {
			return t, err
		}
		t.all, t.toBackend, t.ipip, t.toVIP = t.all+all, t.toBackend+to, t.ipip+ipip, t.toVIP+vip
		t.per = append(t.per, all)
	}
	return t, nil
}

func (c *xdpCounter) Close() error { return c.objs.Close() }

// attachXDP attaches prog in native (driver) mode to ifname inside ns; the returned function
// detaches it.
func attachXDP(ns *netns.NS, ifname string, prog *ebpf.Program) (detach func() error, err error) {
	if err := setXDP(ns, ifname, prog.FD()); err != nil {
		return nil, err
	}
	return func() error { return setXDP(ns, ifname, -1) }, nil
}

// setXDP attaches the program fd (-1: none) to ifname in ns, through netlink.
func setXDP(ns *netns.NS, ifname string, fd int) error {
	err := ns.Do(func() error {
		link, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		return netlink.LinkSetXdpFdWithFlags(link, fd, nl.XDP_FLAGS_DRV_MODE)
	})
	if err != nil {
		return fmt.Errorf("set XDP program %d on %s in %s: %w", fd, ifname, ns.Name, err)
	}
	return nil
}

// progCost is a program's cumulative run time and run count (kernel BPF statistics).
type progCost struct {
	runtime time.Duration
	count   uint64
}

func costOf(p *ebpf.Program) (progCost, error) {
	if p == nil {
		return progCost{}, errors.New("no program")
	}
	s, err := p.Stats()
	if err != nil {
		return progCost{}, err
	}
	return progCost{s.Runtime, s.RunCount}, nil
}

// nsPerPacket is the mean run time per run between two readings, or -1 without runs.
func nsPerPacket(a, b progCost) float64 {
	if b.count <= a.count {
		return -1
	}
	return float64(b.runtime-a.runtime) / float64(b.count-a.count)
}
