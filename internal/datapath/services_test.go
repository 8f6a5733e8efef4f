package datapath

import (
	"net/netip"
	"testing"

	"github.com/ferrolb/ferrolb/internal/maglev"
)

// TestServiceWithoutBackends: a Service that loses every backend stays programmed without
// a table. Its flows in conntrack, a draining backend's included, pass at once (as when a
// Service is removed), and so do new ones, counted as no-backend; its counters carry on.
// When backends come back, new flows are balanced again.
func TestServiceWithoutBackends(t *testing.T) {
	d := newProgDatapath(t)
	svc := Service{VIP: vip4, Port: 80, Protocol: TCP, Backends: backends(vip4, 1, 2, 3), TableSize: maglev.SmallSize}
	if err := d.SetServices([]Service{svc}); err != nil {
		t.Fatal(err)
	}
	flow := func(port uint16, flags byte) []byte {
		return pkt{src: netip.AddrPortFrom(client4, port), dst: netip.AddrPortFrom(vip4, 80), proto: TCP, tcpFlags: flags}.build()
	}
	to := map[uint16]int{}
	for port := uint16(1000); port < 1030; port++ {
		ret, out := run(t, d, flow(port, tcpSYN))
		if ret != xdpRedirect {
			t.Fatalf("SYN from %d: verdict %d", port, ret)
		}
		to[port] = backendIndex(parse(out))
	}
	// Backend 1 leaves: its flows drain on it.
	svc.Backends = backends(vip4, 2, 3)
	if err := d.SetServices([]Service{svc}); err != nil {
		t.Fatal(err)
	}
	drained := 0
	for port, be := range to {
		ret, out := run(t, d, flow(port, tcpACK))
		if ret != xdpRedirect || backendIndex(parse(out)) != be {
			t.Fatalf("flow %d: verdict %d, backend %d (was %d)", port, ret, backendIndex(parse(out)), be)
		}
		if be == 1 {
			drained++
		}
	}
	if drained == 0 {
		t.Fatal("no flow on backend 1")
	}
	noBackend := func() uint64 {
		cs, err := d.ReasonCounts()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			if c.Reason == ReasonNoBackend {
				return c.Packets
			}
		}
		t.Fatal("no no-backend count")
		return 0
	}
	before := noBackend()
	svc.Backends = nil
	if err := d.SetServices([]Service{svc}); err != nil {
		t.Fatal(err)
	}
	for port := range to {
		if ret, _ := run(t, d, flow(port, tcpACK)); ret != xdpPass {
			t.Fatalf("flow %d of a Service without backends: verdict %d", port, ret)
		}
	}
	if ret, _ := run(t, d, flow(2000, tcpSYN)); ret != xdpPass {
		t.Fatalf("new flow to a Service without backends: verdict %d", ret)
	}
	if got := noBackend() - before; got != uint64(len(to))+1 {
		t.Fatalf("no-backend counted %d, want %d", got, len(to)+1)
	}
	// The same again writes nothing; the counters still have the Service's traffic.
	if err := d.SetServices([]Service{svc}); err != nil {
		t.Fatal(err)
	}
	cs, err := d.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].Backend.IsValid() || cs[0].Packets != 60 {
		t.Fatalf("counters of the Service without backends: %+v, want its total of 60 packets", cs)
	}
	infos, err := d.Services()
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || infos[0].TableSize != 0 || len(infos[0].Backends) != 0 {
		t.Fatalf("inspected: %+v", infos)
	}
	svc.Backends = backends(vip4, 4)
	if err := d.SetServices([]Service{svc}); err != nil {
		t.Fatal(err)
	}
	for port := range to {
		ret, out := run(t, d, flow(port, tcpACK))
		if ret != xdpRedirect || backendIndex(parse(out)) != 4 {
			t.Fatalf("flow %d once backend 4 came: verdict %d, backend %d", port, ret, backendIndex(parse(out)))
		}
	}
}

// TestRemovedServiceDrainingBackend: when a Service is removed, the flows of a backend it
// was draining pass as well, even once the Service is back with other backends: a removed
// Service's backend entries are all cleared, not only its current backends'.
func TestRemovedServiceDrainingBackend(t *testing.T) {
	d := newProgDatapath(t)
	svc := Service{VIP: vip4, Port: 80, Protocol: TCP, Backends: backends(vip4, 1), TableSize: maglev.SmallSize}
	if err := d.SetServices([]Service{svc}); err != nil {
		t.Fatal(err)
	}
	flow := func(flags byte) []byte {
		return pkt{src: netip.AddrPortFrom(client4, 1000), dst: netip.AddrPortFrom(vip4, 80), proto: TCP, tcpFlags: flags}.build()
	}
	if ret, _ := run(t, d, flow(tcpSYN)); ret != xdpRedirect {
		t.Fatalf("SYN: verdict %d", ret)
	}
	svc.Backends = backends(vip4, 2)
	if err := d.SetServices([]Service{svc}); err != nil {
		t.Fatal(err)
	}
	if ret, out := run(t, d, flow(tcpACK)); ret != xdpRedirect || backendIndex(parse(out)) != 1 {
		t.Fatalf("draining flow: verdict %d, backend %d", ret, backendIndex(parse(out)))
	}
	if err := d.SetServices(nil); err != nil {
		t.Fatal(err)
	}
	svc.Backends = backends(vip4, 3)
	if err := d.SetServices([]Service{svc}); err != nil {
		t.Fatal(err)
	}
	// The flow's conntrack entry names backend 1's slot: cleared, so the flow is new.
	if ret, out := run(t, d, flow(tcpACK)); ret != xdpRedirect || backendIndex(parse(out)) != 3 {
		t.Fatalf("the removed Service's draining flow: verdict %d, backend %d, want the new backend 3", ret, backendIndex(parse(out)))
	}
}
