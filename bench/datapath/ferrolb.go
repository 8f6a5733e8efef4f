package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/ferrolb/ferrolb/internal/datapath"
	"github.com/ferrolb/ferrolb/internal/lab/netns"
)

func setupFerroLBSNAT(ctx context.Context, e *env) (func() error, *ebpf.Program, error) {
	return setupFerroLB(ctx, e, datapath.SNAT)
}

// setupFerroLBDSR runs FerroLB in DSR mode. The backends keep the counting program on their
// links, so the encapsulated packets are counted as they arrive, before any decapsulation:
// datapath.AttachDecap would take the XDP slot of the backend's link and hand every packet
// to the backend's stack, whose cost (on the node's CPU here) is not the load balancer's.
func setupFerroLBDSR(ctx context.Context, e *env) (func() error, *ebpf.Program, error) {
	return setupFerroLB(ctx, e, datapath.DSR)
}

// setupFerroLBDecap runs FerroLB in DSR mode with the backends' side as in production: the
// backends' counting XDP program gives way to datapath.AttachDecap, and the same counters
// count in tcx ingress what the decapsulation passed on to the stack.
func setupFerroLBDecap(ctx context.Context, e *env) (teardown func() error, prog *ebpf.Program, err error) {
	t := e.topo
	var undo []func() error
	teardown = func() error {
		var errs []error
		for _, f := range slices.Backward(undo) {
			errs = append(errs, f())
		}
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, teardown())
		}
	}()
	for k, be := range t.backends {
		if err := setXDP(be, t.beIf[k], -1); err != nil {
			return nil, nil, err
		}
		undo = append(undo, func() error { return setXDP(be, t.beIf[k], e.counts[k].objs.CountBackend.FD()) })
		var decap *datapath.Decap
		var tcx link.Link
		if err := be.Do(func() error {
			ifi, err := net.InterfaceByName(t.beIf[k])
			if err != nil {
				return err
			}
			if decap, err = datapath.AttachDecap(t.beIf[k]); err != nil {
				return err
			}
			tcx, err = link.AttachTCX(link.TCXOptions{Interface: ifi.Index, Program: e.counts[k].objs.CountTc, Attach: ebpf.AttachTCXIngress})
			if err != nil {
				return errors.Join(fmt.Errorf("tcx counter on %s: %w", t.beIf[k], err), decap.Close())
			}
			return nil
		}); err != nil {
			return nil, nil, err
		}
		undo = append(undo, decap.Close, tcx.Close)
	}
	down, prog, err := setupFerroLB(ctx, e, datapath.DSR)
	if err != nil {
		return nil, nil, err
	}
	undo = append(undo, down)
	return teardown, prog, nil
}

// setupFerroLB starts FerroLB's datapath on the node's ingress link (and its backend links,
// where SNAT replies would come back) with the benchmark's services, and returns its
// program once attached.
func setupFerroLB(ctx context.Context, e *env, m datapath.Mode) (teardown func() error, prog *ebpf.Program, err error) {
	t := e.topo
	var dp *datapath.Datapath
	if err := t.node.Do(func() (err error) {
		dp, err = datapath.New(datapath.Config{Interface: t.nodeIf, BackendInterfaces: t.nodeBe})
		return err
	}); err != nil {
		return nil, nil, err
	}
	var svcs []datapath.Service
	for i := range e.services {
		s := datapath.Service{VIP: vip(i), Port: svcPort, Protocol: datapath.UDP, Mode: m}
		for k := range t.backends {
			s.Backends = append(s.Backends, datapath.Backend{Addr: backendAddr(k), Port: uint16(backendPort + i)})
		}
		svcs = append(svcs, s)
	}
	if err := dp.SetServices(svcs); err != nil {
		return nil, nil, errors.Join(err, dp.Close())
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- dp.Run(runCtx) }()
	teardown = func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("FerroLB's datapath did not stop within 10 s")
		}
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		if prog, err = xdpProgram(t.node, t.nodeIf); err == nil {
			return teardown, prog, nil
		}
		select {
		case err := <-done:
			cancel()
			return nil, nil, fmt.Errorf("FerroLB's datapath: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, nil, errors.Join(fmt.Errorf("FerroLB's program not attached after 5 s: %w", err), teardown())
		}
	}
}

// xdpProgram returns the XDP program attached to ifname in ns (for its run-time statistics).
func xdpProgram(ns *netns.NS, ifname string) (*ebpf.Program, error) {
	h, err := handle(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	link, err := h.LinkByName(ifname)
	if err != nil {
		return nil, err
	}
	x := link.Attrs().Xdp
	if x == nil || !x.Attached || x.ProgId == 0 {
		return nil, fmt.Errorf("no XDP program on %s in %s", ifname, ns.Name)
	}
	return ebpf.NewProgramFromID(ebpf.ProgramID(x.ProgId))
}
