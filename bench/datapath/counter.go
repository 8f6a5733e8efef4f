package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"

	"github.com/ferrolb/ferrolb/internal/lab/netns"
)

// xdpCounter is one loaded instance of count_drop: attached to the backends' links it counts
// what they receive; attached to the node's link it is the drop-only ceiling.
type xdpCounter struct {
	objs counterObjects
}

func newXDPCounter() (*xdpCounter, error) {
	c := &xdpCounter{}
	if err := loadCounterObjects(&c.objs, nil); err != nil {
		return nil, fmt.Errorf("load the counting XDP program: %w", err)
	}
	return c, nil
}

// total sums the per-CPU packet counts.
func (c *xdpCounter) total() (uint64, error) {
	var perCPU []uint64
	if err := c.objs.Packets.Lookup(uint32(0), &perCPU); err != nil {
		return 0, err
	}
	var n uint64
	for _, v := range perCPU {
		n += v
	}
	return n, nil
}

func (c *xdpCounter) Close() error { return c.objs.Close() }

// attachXDP attaches prog in native (driver) mode to ifname inside ns; the returned function
// detaches it.
func attachXDP(ns *netns.NS, ifname string, prog *ebpf.Program) (detach func() error, err error) {
	set := func(fd int) error {
		return ns.Do(func() error {
			link, err := netlink.LinkByName(ifname)
			if err != nil {
				return err
			}
			return netlink.LinkSetXdpFdWithFlags(link, fd, nl.XDP_FLAGS_DRV_MODE)
		})
	}
	if err := set(prog.FD()); err != nil {
		return nil, fmt.Errorf("attach XDP to %s in %s: %w", ifname, ns.Name, err)
	}
	return func() error { return set(-1) }, nil
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
