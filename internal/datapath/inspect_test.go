package datapath

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/ferrolb/ferrolb/internal/maglev"
)

// TestLabInspect checks what Services and Conntrack report on the lab's real datapath
// after real connections: the Services (one without backends), their backends' Maglev
// entries adding up to the table size, next hops and counters; every open connection's
// conntrack entry, with its backend and established SNAT port; the filters; and a removed
// backend listed as draining, with its flow.
func TestLabInspect(t *testing.T) {
	l := newLab(t)
	svcs := append(labServices(labVIP4, SNAT, 1, 2, 3), labServices(labVIP6, SNAT, 1, 2)...)
	svcs = append(svcs, Service{VIP: labVIP4, Port: 81, Protocol: TCP})
	if err := l.d.SetServices(svcs); err != nil {
		t.Fatal(err)
	}
	l.waitNexthops(t)
	conns := map[bool]map[string]*conn{false: l.connectEach(t, labVIP4, 3), true: l.connectEach(t, labVIP6, 2)}
	if len(conns[false]) != 3 || len(conns[true]) != 2 {
		t.Fatalf("connections reached %d and %d backends", len(conns[false]), len(conns[true]))
	}
	backendOf := func(name string, v6 bool) netip.AddrPort {
		var i int
		if _, err := fmt.Sscanf(name, "bk%d", &i); err != nil {
			t.Fatal(err)
		}
		return netip.AddrPortFrom(labBackend(i, v6), 8080)
	}

	infos, err := l.d.Services()
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		vip      netip.Addr
		port     uint16
		backends int
	}{{labVIP4, 80, 3}, {labVIP4, 81, 0}, {labVIP6, 80, 2}}
	if len(infos) != len(want) {
		t.Fatalf("%d services: %+v", len(infos), infos)
	}
	for i, w := range want {
		s := infos[i]
		if s.VIP != w.vip || s.Port != w.port || s.Protocol != TCP || s.Mode != SNAT || len(s.Backends) != w.backends {
			t.Fatalf("service %d: %+v, want %v:%d with %d backends", i, s, w.vip, w.port, w.backends)
		}
		if w.backends == 0 {
			if s.TableSize != 0 || s.Packets != 0 {
				t.Errorf("%v:%d without backends: table %d, %d packets", s.VIP, s.Port, s.TableSize, s.Packets)
			}
			continue
		}
		sum, packets := 0, uint64(0)
		for _, b := range s.Backends {
			sum += b.Entries
			packets += b.Packets
			if b.Weight != 1 || b.Draining || b.Entries == 0 || b.NextHop.Interface != "n1" || len(b.NextHop.MAC) != 6 || b.NextHop.Stack {
				t.Errorf("%v:%d backend %+v", s.VIP, s.Port, b)
			}
			if b.Packets == 0 || b.Bytes == 0 {
				t.Errorf("%v:%d backend %v: no traffic counted, a connection reached it", s.VIP, s.Port, b.Addr)
			}
		}
		if s.TableSize != maglev.DefaultSize || sum != s.TableSize {
			t.Errorf("%v:%d: table %d, backends' entries add up to %d", s.VIP, s.Port, s.TableSize, sum)
		}
		if s.Packets != packets {
			t.Errorf("%v:%d: %d packets, its backends %d", s.VIP, s.Port, s.Packets, packets)
		}
	}

	all, err := l.d.Conntrack(FlowFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if all.IPv4 < 3 || all.IPv6 < 2 || len(all.Flows) != all.IPv4+all.IPv6 {
		t.Fatalf("conntrack: %d IPv4, %d IPv6 entries, %d flows", all.IPv4, all.IPv6, len(all.Flows))
	}
	byClient := map[netip.AddrPort]Flow{}
	for _, f := range all.Flows {
		byClient[f.Client] = f
	}
	for v6, cs := range conns {
		for name, c := range cs {
			client := c.LocalAddr().(*net.TCPAddr).AddrPort()
			client = netip.AddrPortFrom(client.Addr().Unmap(), client.Port())
			f, ok := byClient[client]
			if !ok {
				t.Fatalf("no conntrack entry for %v's connection from %v", name, client)
			}
			vip := map[bool]netip.Addr{false: labVIP4, true: labVIP6}[v6]
			if f.VIP != netip.AddrPortFrom(vip, 80) || f.Protocol != TCP || f.Mode != SNAT || f.Backend != backendOf(name, v6) ||
				f.NATPort < 61000 || f.State != FlowEstablished {
				t.Errorf("connection from %v to %s: %+v", client, name, f)
			}
		}
	}

	count := func(f FlowFilter) int {
		t.Helper()
		d, err := l.d.Conntrack(f)
		if err != nil {
			t.Fatal(err)
		}
		if d.IPv4 != all.IPv4 || d.IPv6 != all.IPv6 {
			t.Fatalf("filter %+v: table sizes %d, %d, were %d, %d", f, d.IPv4, d.IPv6, all.IPv4, all.IPv6)
		}
		for _, fl := range d.Flows {
			if !f.match(&fl) {
				t.Fatalf("filter %+v let %+v through", f, fl)
			}
		}
		return len(d.Flows)
	}
	bk1 := labBackend(1, false)
	bk1Flows := 0
	for _, f := range all.Flows {
		if f.Backend.Addr() == bk1 {
			bk1Flows++
		}
	}
	for _, c := range []struct {
		name string
		f    FlowFilter
		want int
	}{
		{"the client's IPv4 address", FlowFilter{Client: netip.MustParseAddr("10.0.0.1")}, all.IPv4},
		{"the client's IPv6 address", FlowFilter{Client: netip.MustParseAddr("fd00::1")}, all.IPv6},
		{"another client", FlowFilter{Client: netip.MustParseAddr("10.0.0.99")}, 0},
		{"the IPv6 VIP", FlowFilter{VIP: labVIP6}, all.IPv6},
		{"the IPv4 VIP and port", FlowFilter{VIP: labVIP4, Port: 80, Protocol: TCP}, all.IPv4},
		{"the Service without backends", FlowFilter{VIP: labVIP4, Port: 81}, 0},
		{"UDP", FlowFilter{Protocol: UDP}, 0},
		{"backend bk1", FlowFilter{Backend: bk1}, bk1Flows},
	} {
		if got := count(c.f); got != c.want {
			t.Errorf("flows of %s: %d, want %d", c.name, got, c.want)
		}
	}
	if bk1Flows == 0 {
		t.Fatal("no flow to bk1")
	}

	// bk2 leaves the IPv4 Service: it drains, with its flow and counters.
	svcs[0] = labServices(labVIP4, SNAT, 1, 3)[0]
	if err := l.d.SetServices(svcs); err != nil {
		t.Fatal(err)
	}
	conns[false]["bk2"].echo(t, "draining")
	infos, err = l.d.Services()
	if err != nil {
		t.Fatal(err)
	}
	s := infos[0]
	bk2 := backendOf("bk2", false)
	if len(s.Backends) != 3 || !s.Backends[2].Draining || s.Backends[2].Addr != bk2 || s.Backends[2].Entries != 0 ||
		s.Backends[2].Packets == 0 || s.Backends[0].Entries+s.Backends[1].Entries != s.TableSize {
		t.Fatalf("after bk2 left: %+v", s)
	}
	d, err := l.d.Conntrack(FlowFilter{Backend: bk2.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	client := conns[false]["bk2"].LocalAddr().(*net.TCPAddr).AddrPort()
	found := false
	for _, f := range d.Flows {
		found = found || (f.Client.Port() == client.Port() && f.State == FlowEstablished)
	}
	if !found {
		t.Fatalf("the draining backend's connection from port %d is not among its flows: %+v", client.Port(), d.Flows)
	}
}

// TestConntrackDumpLarge: a dump reads every entry of tables larger than a batch, each
// once, whatever the filter.
func TestConntrackDumpLarge(t *testing.T) {
	d := newProgDatapath(t)
	// DSR, so that 10,000 flows to one backend do not run out of SNAT ports.
	if err := d.SetServices([]Service{{VIP: vip4, Port: 80, Protocol: UDP, Mode: DSR, Backends: backends(vip4, 1), TableSize: maglev.SmallSize}}); err != nil {
		t.Fatal(err)
	}
	// 10,000 flows through the program, from 10,000 client ports.
	for port := range 10000 {
		in := pkt{src: netip.AddrPortFrom(client4, uint16(1024+port)), dst: netip.AddrPortFrom(vip4, 80), proto: UDP}
		if ret, _ := run(t, d, in.build()); ret != xdpRedirect {
			t.Fatalf("port %d: verdict %d", port, ret)
		}
	}
	all, err := d.Conntrack(FlowFilter{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[netip.AddrPort]bool{}
	for _, f := range all.Flows {
		if seen[f.Client] || f.Backend != netip.AddrPortFrom(be4(1), 8080) || f.Mode != DSR {
			t.Fatalf("flow %+v (seen before %v)", f, seen[f.Client])
		}
		seen[f.Client] = true
	}
	if all.IPv4 != 10000 || all.IPv6 != 0 || len(seen) != 10000 {
		t.Fatalf("%d IPv4 entries, %d IPv6, %d distinct flows; want 10000 flows", all.IPv4, all.IPv6, len(seen))
	}
	one, err := d.Conntrack(FlowFilter{Client: client4, VIP: vip4, Port: 80, Protocol: UDP, Backend: be4(1)})
	if err != nil {
		t.Fatal(err)
	}
	if one.IPv4 != 10000 || len(one.Flows) != 10000 {
		t.Fatalf("filtered: %d entries, %d flows", one.IPv4, len(one.Flows))
	}
}
