package datapath

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/ferrolb/ferrolb/internal/maglev"
)

// TestReasonNames: every reason of bpf/lb.c's enum (bpf2go generates the values) has a
// name of its own, so the speaker's metrics have a fixed set of label values.
func TestReasonNames(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Reasons() {
		n, ok := reasonNames[r]
		if !ok || seen[n] {
			t.Errorf("reason %d: name %q (named %v, given twice %v)", uint32(r), n, ok, seen[n])
		}
		seen[n] = true
	}
	if len(seen) != len(reasonNames) {
		t.Errorf("%d reasons in the program, %d named", len(seen), len(reasonNames))
	}
}

// TestReasons sends through the program a packet for each reason it does not forward one,
// and checks that the verdict is the reason's (pass or drop) and that exactly that
// reason's count rose by one. Packets for no service (another port, another protocol, or
// fragments and options to an address that is no VIP) pass without being counted.
// ReasonEncapFailed is not among them: BPF_PROG_TEST_RUN always gives a frame headroom
// enough for the outer header.
func TestReasons(t *testing.T) {
	// One SNAT port: the second flow to a backend finds none.
	d, _ := newProgDatapathNS(t, Config{SNATPortMin: 61000, SNATPortMax: 61000})
	unresolved := netip.MustParseAddr("10.0.0.99") // on n0's subnet, no neighbour entry
	if err := d.SetServices([]Service{
		{VIP: vip4, Port: 80, Protocol: TCP, Backends: backends(vip4, 1), TableSize: maglev.SmallSize},
		{VIP: vip6, Port: 80, Protocol: UDP, Backends: backends(vip6, 1), TableSize: maglev.SmallSize},
		{VIP: vip4, Port: 81, Protocol: TCP}, // no backends
		{VIP: vip4, Port: 82, Protocol: TCP, Backends: []Backend{{Addr: unresolved, Port: 8080}}},
		{VIP: vip4, Port: 83, Protocol: TCP, Backends: []Backend{{Addr: node4, Port: 8080}}}, // the node itself
	}); err != nil {
		t.Fatal(err)
	}
	counts := func() map[Reason]uint64 {
		t.Helper()
		cs, err := d.ReasonCounts()
		if err != nil {
			t.Fatal(err)
		}
		out := map[Reason]uint64{}
		for _, c := range cs {
			out[c.Reason] = c.Packets
		}
		if len(out) != len(Reasons()) {
			t.Fatalf("counts of %d reasons: %v", len(out), cs)
		}
		return out
	}
	syn := func(client netip.Addr, cport uint16, vip netip.Addr, port uint16) pkt {
		return pkt{src: netip.AddrPortFrom(client, cport), dst: netip.AddrPortFrom(vip, port), proto: TCP, tcpFlags: tcpSYN}
	}
	udp6 := pkt{src: netip.AddrPortFrom(client6, 5000), dst: netip.AddrPortFrom(vip6, 80), proto: UDP, payload: []byte("x")}
	mod := func(p pkt, f func(*pkt)) pkt { f(&p); return p }
	bytesOf := func(p pkt, f func(b []byte)) []byte {
		b := p.build()
		f(b)
		return b
	}
	v6Fragment := func(p pkt) []byte { // a Fragment header where the hop-by-hop one is
		p.hopByHop = true
		return bytesOf(p, func(b []byte) { b[14+6] = 44 })
	}
	reply := func(from netip.Addr, nport uint16, ttl byte) pkt {
		return pkt{src: netip.AddrPortFrom(from, 8080), dst: netip.AddrPortFrom(node4, nport), proto: TCP,
			tcpFlags: tcpSYN | tcpACK, smac: beMAC(1), dmac: nodeMAC, ttl: ttl}
	}

	steps := []struct {
		name    string
		pkt     []byte
		verdict uint32
		reason  Reason // 0: none counted
	}{
		{"a flow takes the only SNAT port", syn(client4, 1000, vip4, 80).build(), xdpRedirect, 0},
		{"another flow finds no port", syn(client4, 1001, vip4, 80).build(), xdpDrop, ReasonSNATPortsExhausted},
		{"the first flow's reply", reply(be4(1), 61000, 0).build(), xdpTX, 0},
		{"its reply with TTL 1", reply(be4(1), 61000, 1).build(), xdpPass, ReasonTTLExpired},
		{"a reply from a backend no flow holds the port for", reply(be4(2), 61000, 0).build(), xdpPass, ReasonSNATNoFlow},
		{"an established flow's packet with TTL 1",
			mod(syn(client4, 1000, vip4, 80), func(p *pkt) { p.tcpFlags, p.ttl = tcpACK, 1 }).build(), xdpPass, ReasonTTLExpired},
		{"a new flow's SYN with TTL 1", mod(syn(client4, 1002, vip4, 80), func(p *pkt) { p.ttl = 1 }).build(), xdpPass, ReasonTTLExpired},
		{"a v6 packet with hop limit 1", mod(udp6, func(p *pkt) { p.ttl = 1 }).build(), xdpPass, ReasonTTLExpired},
		{"a v4 fragment to a VIP", mod(syn(client4, 1003, vip4, 80), func(p *pkt) { p.frag = true }).build(), xdpPass, ReasonFragment},
		{"a v4 fragment to another address", mod(syn(client4, 1003, node4, 80), func(p *pkt) { p.frag = true }).build(), xdpPass, 0},
		{"a v6 Fragment header to a VIP", v6Fragment(udp6), xdpPass, ReasonFragment},
		{"v4 options to a VIP", mod(syn(client4, 1004, vip4, 443), func(p *pkt) { p.ipOptions = true }).build(), xdpPass, ReasonIPOptions},
		{"v4 options to another address", mod(syn(client4, 1004, node4, 80), func(p *pkt) { p.ipOptions = true }).build(), xdpPass, 0},
		{"a v6 hop-by-hop header to a VIP", mod(udp6, func(p *pkt) { p.hopByHop = true }).build(), xdpPass, ReasonIPOptions},
		{"a v6 hop-by-hop header to another address",
			mod(udp6, func(p *pkt) { p.hopByHop, p.dst = true, netip.AddrPortFrom(node6, 80) }).build(), xdpPass, 0},
		{"a TCP data offset of 4 to a VIP",
			bytesOf(syn(client4, 1005, vip4, 80), func(b []byte) { b[14+20+12] = 4 << 4 }), xdpPass, ReasonMalformed},
		{"a v4 total length past the frame to a VIP",
			bytesOf(syn(client4, 1005, vip4, 80), func(b []byte) { binary.BigEndian.PutUint16(b[14+2:], 1000) }), xdpPass, ReasonMalformed},
		{"a v6 UDP length past the packet to a VIP",
			bytesOf(udp6, func(b []byte) { binary.BigEndian.PutUint16(b[14+40+4:], 100) }), xdpPass, ReasonMalformed},
		{"a TCP data offset of 4 to another address",
			bytesOf(syn(client4, 1005, node4, 80), func(b []byte) { b[14+20+12] = 4 << 4 }), xdpPass, 0},
		{"a truncated IPv4 header", syn(client4, 1005, vip4, 80).build()[:14+12], xdpPass, 0},
		{"a Service without backends", syn(client4, 1006, vip4, 81).build(), xdpPass, ReasonNoBackend},
		{"a backend whose neighbour is unresolved", syn(client4, 1007, vip4, 82).build(), xdpPass, ReasonNoNexthop},
		{"a new flow to the node itself", syn(client4, 1008, vip4, 83).build(), xdpPass, ReasonStackEndpoint},
		{"that flow's next packet",
			mod(syn(client4, 1008, vip4, 83), func(p *pkt) { p.tcpFlags = tcpACK }).build(), xdpPass, ReasonStackEndpoint},
		{"another port of a VIP", syn(client4, 1009, vip4, 99).build(), xdpPass, 0},
		{"another protocol to a VIP", mod(syn(client4, 1009, vip4, 80), func(p *pkt) { p.proto = 1 }).build(), xdpPass, 0},
		{"another address", syn(client4, 1009, node4, 80).build(), xdpPass, 0},
	}
	for _, s := range steps {
		before := counts()
		ret, _ := run(t, d, s.pkt)
		after := counts()
		if ret != s.verdict {
			t.Errorf("%s: verdict %d, want %d", s.name, ret, s.verdict)
		}
		if s.reason != 0 && s.reason.Dropped() != (s.verdict == xdpDrop) {
			t.Errorf("%s: %s counts as dropped %v, the verdict is %d", s.name, s.reason, s.reason.Dropped(), s.verdict)
		}
		for _, r := range Reasons() {
			want := before[r]
			if r == s.reason {
				want++
			}
			if after[r] != want {
				t.Errorf("%s: %s went from %d to %d, want %d", s.name, r, before[r], after[r], want)
			}
		}
	}
	// A Service removed: its address no longer counts what the program cannot parse.
	if err := d.SetServices([]Service{{VIP: vip6, Port: 80, Protocol: UDP, Backends: backends(vip6, 1)}}); err != nil {
		t.Fatal(err)
	}
	before := counts()
	if ret, _ := run(t, d, mod(syn(client4, 1010, vip4, 80), func(p *pkt) { p.frag = true }).build()); ret != xdpPass {
		t.Fatalf("fragment to a former VIP: verdict %d", ret)
	}
	if after := counts(); after[ReasonFragment] != before[ReasonFragment] {
		t.Fatalf("a fragment to a former VIP counted")
	}
}
