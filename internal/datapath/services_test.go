package datapath

import (
	"net/netip"
	"testing"

	"github.com/ferrolb/ferrolb/internal/maglev"
)

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
