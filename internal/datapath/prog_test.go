package datapath

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/ferrolb/ferrolb/internal/lab/netns"
	"github.com/ferrolb/ferrolb/internal/maglev"
)

const (
	xdpDrop     = 1
	xdpPass     = 2
	xdpTX       = 3
	xdpRedirect = 4
)

var (
	vip4    = netip.MustParseAddr("192.0.2.10")
	vip6    = netip.MustParseAddr("2001:db8::10")
	client4 = netip.MustParseAddr("198.51.100.7")
	client6 = netip.MustParseAddr("2001:db8:c::7")
	node4   = netip.MustParseAddr("10.0.0.2")
	node6   = netip.MustParseAddr("fd00::2")
)

func be4(i int) netip.Addr { return netip.MustParseAddr(fmt.Sprintf("10.0.0.%d", 10+i)) }
func be6(i int) netip.Addr { return netip.MustParseAddr(fmt.Sprintf("fd00::%d", 10+i)) }
func beMAC(i int) [6]byte  { return [6]byte{0x02, 0, 0, 0, 1, byte(i)} }

// newProgDatapath builds a Datapath in a fresh namespace whose interface n0 has the node
// addresses and permanent neighbour entries for backends 1..8 of both families, so that
// next hops resolve without traffic. It is never attached: tests drive it with prog.Run.
func newProgDatapath(t testing.TB) *Datapath {
	t.Helper()
	d, _ := newProgDatapathNS(t, Config{})
	return d
}

func newProgDatapathNS(t testing.TB, cfg Config) (*Datapath, *netns.NS) {
	t.Helper()
	node := netns.ForTest(t, "dpnode")
	peer := netns.ForTest(t, "dppeer")
	if err := netns.Veth(node, "n0", peer, "p0"); err != nil {
		t.Fatal(err)
	}
	node.MustRun(t, "ip", "addr", "add", "10.0.0.2/24", "dev", "n0")
	node.MustRun(t, "ip", "-6", "addr", "add", "fd00::2/64", "dev", "n0", "nodad")
	for i := 1; i <= 8; i++ {
		m := beMAC(i)
		mac := fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
		node.MustRun(t, "ip", "neigh", "add", be4(i).String(), "lladdr", mac, "dev", "n0", "nud", "permanent")
		node.MustRun(t, "ip", "-6", "neigh", "add", be6(i).String(), "lladdr", mac, "dev", "n0", "nud", "permanent")
	}
	var d *Datapath
	if err := node.Do(func() (err error) {
		cfg.Interface = "n0"
		d, err = New(cfg)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d, node
}

func run(t testing.TB, d *Datapath, in []byte) (uint32, []byte) {
	t.Helper()
	opts := &ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+128)}
	ret, err := d.objs.XdpLb.Run(opts)
	if err != nil {
		t.Fatal(err)
	}
	return ret, opts.DataOut
}

func backends(vip netip.Addr, idx ...int) []Backend {
	var out []Backend
	for _, i := range idx {
		a := be4(i)
		if vip.Is6() {
			a = be6(i)
		}
		out = append(out, Backend{Addr: a, Port: 8080, Weight: 1})
	}
	return out
}

// backendIndex says which backend a rewritten packet goes to, by destination MAC.
func backendIndex(p parsed) int { return int(p.dmac[5]) }

func TestRewrite(t *testing.T) {
	d := newProgDatapath(t)
	for _, fam := range []struct {
		name        string
		vip, client netip.Addr
		node        netip.Addr
		be          func(int) netip.Addr
	}{{"v4", vip4, client4, node4, be4}, {"v6", vip6, client6, node6, be6}} {
		for _, proto := range []Protocol{TCP, UDP} {
			for _, mode := range []Mode{SNAT, DSR} {
				name := fmt.Sprintf("%s/%d/mode%d", fam.name, proto, mode)
				t.Run(name, func(t *testing.T) {
					port := 80 + 10*uint16(mode)
					svcs := []Service{{VIP: fam.vip, Port: port, Protocol: proto, Mode: mode,
						Backends: backends(fam.vip, 1, 2, 3), TableSize: maglev.SmallSize}}
					if err := d.SetServices(svcs); err != nil {
						t.Fatal(err)
					}
					in := pkt{src: netip.AddrPortFrom(fam.client, 40000), dst: netip.AddrPortFrom(fam.vip, port),
						proto: proto, payload: []byte("hello, backend")}
					ret, out := run(t, d, in.build())
					if ret != xdpRedirect {
						t.Fatalf("verdict %d, want redirect", ret)
					}
					p := parse(out)
					i := backendIndex(p)
					if i < 1 || i > 3 || p.dmac != beMAC(i) || p.smac == [6]byte{} {
						t.Fatalf("MACs %x -> %x", p.smac, p.dmac)
					}
					if !p.ipOK || !p.l4OK {
						t.Fatalf("checksums: ip %v l4 %v: %+v", p.ipOK, p.l4OK, p)
					}
					if mode == DSR {
						if p.outer == nil || p.outer.src.Addr() != fam.node || p.outer.dst.Addr() != fam.be(i) || !p.outer.ipOK {
							t.Fatalf("outer header %+v", p.outer)
						}
						if p.src != in.src || p.dst != in.dst {
							t.Fatalf("inner %v -> %v changed", p.src, p.dst)
						}
						return
					}
					if p.outer != nil || p.dst != netip.AddrPortFrom(fam.be(i), 8080) || p.src.Addr() != fam.node ||
						p.src.Port() < 61000 || p.ttl != 63 {
						t.Fatalf("SNAT rewrite %v -> %v", p.src, p.dst)
					}
					// The backend's reply comes back to the node's SNAT port and leaves
					// for the client from the VIP.
					reply := pkt{src: p.dst, dst: p.src, proto: proto, payload: []byte("hi"), tcpFlags: 0x12,
						smac: beMAC(i), dmac: nodeMAC}
					ret, out = run(t, d, reply.build())
					// prog.Run has no ingress interface: the reply "leaves where it came in".
					if ret != xdpTX {
						t.Fatalf("reply verdict %d", ret)
					}
					r := parse(out)
					if r.src != in.dst || r.dst != in.src || r.dmac != clientMAC || r.smac != nodeMAC || !r.ipOK || !r.l4OK || r.ttl != 63 {
						t.Fatalf("reverse NAT: %+v", r)
					}
					// A reply to a port nobody holds goes to the stack.
					reply.dst = netip.AddrPortFrom(reply.dst.Addr(), 61000+(reply.dst.Port()-61000+1)%4536)
					if ret, _ := run(t, d, reply.build()); ret != xdpPass {
						t.Fatalf("unknown reply verdict %d", ret)
					}
				})
			}
		}
	}
	t.Run("v4/udp-no-checksum", func(t *testing.T) {
		if err := d.SetServices([]Service{{VIP: vip4, Port: 53, Protocol: UDP, Backends: backends(vip4, 1)}}); err != nil {
			t.Fatal(err)
		}
		in := pkt{src: netip.AddrPortFrom(client4, 1), dst: netip.AddrPortFrom(vip4, 53), proto: UDP, udpNoCsum: true}
		ret, out := run(t, d, in.build())
		p := parse(out)
		if ret != xdpRedirect || p.l4csum != 0 || !p.ipOK {
			t.Fatalf("verdict %d, %+v", ret, p)
		}
	})
}

func TestPassAndMalformed(t *testing.T) {
	d := newProgDatapath(t)
	if err := d.SetServices([]Service{
		{VIP: vip4, Port: 80, Protocol: TCP, Backends: backends(vip4, 1, 2)},
		{VIP: vip6, Port: 80, Protocol: UDP, Backends: backends(vip6, 1, 2)},
		{VIP: vip4, Port: 81, Protocol: TCP}, // no backends: not programmed
	}); err != nil {
		t.Fatal(err)
	}
	ok4 := pkt{src: netip.AddrPortFrom(client4, 5000), dst: netip.AddrPortFrom(vip4, 80), proto: TCP}
	ok6 := pkt{src: netip.AddrPortFrom(client6, 5000), dst: netip.AddrPortFrom(vip6, 80), proto: UDP}
	if ret, _ := run(t, d, ok4.build()); ret != xdpRedirect {
		t.Fatalf("baseline v4 verdict %d", ret)
	}
	if ret, _ := run(t, d, ok6.build()); ret != xdpRedirect {
		t.Fatalf("baseline v6 verdict %d", ret)
	}
	mod := func(p pkt, f func(*pkt)) pkt { f(&p); return p }
	cases := map[string][]byte{
		"other port":       mod(ok4, func(p *pkt) { p.dst = netip.AddrPortFrom(vip4, 443) }).build(),
		"other protocol":   mod(ok4, func(p *pkt) { p.proto = UDP }).build(),
		"other VIP":        mod(ok4, func(p *pkt) { p.dst = netip.AddrPortFrom(node4, 80) }).build(),
		"no backends":      mod(ok4, func(p *pkt) { p.dst = netip.AddrPortFrom(vip4, 81) }).build(),
		"v4 options":       mod(ok4, func(p *pkt) { p.ipOptions = true }).build(),
		"v4 fragment":      mod(ok4, func(p *pkt) { p.frag = true }).build(),
		"v6 hop-by-hop":    mod(ok6, func(p *pkt) { p.hopByHop = true }).build(),
		"v4 TTL 1":         mod(ok4, func(p *pkt) { p.ttl = 1 }).build(),
		"v6 hop limit 1":   mod(ok6, func(p *pkt) { p.ttl = 1 }).build(),
		"v6 other family":  mod(ok6, func(p *pkt) { p.dst = netip.AddrPortFrom(vip6, 81) }).build(),
		"arp":              append(append(append([]byte{}, nodeMAC[:]...), clientMAC[:]...), 0x08, 0x06, 0, 1),
		"empty":            {},
		"ethernet only v4": append(append(append([]byte{}, nodeMAC[:]...), clientMAC[:]...), 0x08, 0x00),
	}
	for _, full := range [][]byte{ok4.build(), ok6.build()} {
		for n := 0; n < len(full); n++ {
			cases[fmt.Sprintf("truncated %d/%d", n, len(full))] = full[:n]
		}
	}
	for name, b := range cases {
		if len(b) < 14 {
			continue // BPF_PROG_TEST_RUN refuses frames shorter than Ethernet
		}
		if ret, _ := run(t, d, b); ret != xdpPass {
			t.Errorf("%s: verdict %d, want pass", name, ret)
		}
	}
}

// TestHeaderLengths: packets whose length fields disagree with their headers or their
// frame (IPv4 total length, IPv6 payload length and version, TCP data offset, UDP length)
// pass to the stack untouched, which drops them, in both directions and for SNAT and DSR:
// the program must not read a header the packet does not have, nor forward a rewritten
// copy (DSR's outer length is computed from the inner one). Ethernet padding after the
// IP packet is no error.
func TestHeaderLengths(t *testing.T) {
	d := newProgDatapath(t)
	if err := d.SetServices([]Service{
		{VIP: vip4, Port: 80, Protocol: TCP, Backends: backends(vip4, 1)},
		{VIP: vip4, Port: 90, Protocol: UDP, Mode: DSR, Backends: backends(vip4, 1)},
		{VIP: vip6, Port: 80, Protocol: UDP, Backends: backends(vip6, 1)},
		{VIP: vip6, Port: 90, Protocol: TCP, Mode: DSR, Backends: backends(vip6, 1)},
	}); err != nil {
		t.Fatal(err)
	}
	tcp4 := pkt{src: netip.AddrPortFrom(client4, 5000), dst: netip.AddrPortFrom(vip4, 80), proto: TCP}
	udp4 := pkt{src: netip.AddrPortFrom(client4, 5000), dst: netip.AddrPortFrom(vip4, 90), proto: UDP, payload: []byte("x")}
	udp6 := pkt{src: netip.AddrPortFrom(client6, 5000), dst: netip.AddrPortFrom(vip6, 80), proto: UDP, payload: []byte("x")}
	tcp6 := pkt{src: netip.AddrPortFrom(client6, 5000), dst: netip.AddrPortFrom(vip6, 90), proto: TCP}
	// The SNAT flows' replies, on the ports they got.
	reply := map[Protocol]pkt{}
	for _, p := range []pkt{tcp4, udp6} {
		ret, out := run(t, d, p.build())
		if ret != xdpRedirect {
			t.Fatalf("%v: verdict %d", p.dst, ret)
		}
		o := parse(out)
		reply[p.proto] = pkt{src: o.dst, dst: o.src, proto: p.proto, tcpFlags: tcpSYN | tcpACK, payload: []byte("y"),
			smac: beMAC(1), dmac: nodeMAC}
	}
	// Ethernet padding: a 60-byte frame around a 54-byte IPv4 TCP packet (and for DSR, a
	// 43-byte UDP one) is balanced, and the padding is not counted in the IP length.
	for _, p := range []pkt{tcp4, udp4} {
		b := append(p.build(), make([]byte, 60)...)[:60]
		ret, out := run(t, d, b)
		o := parse(out)
		if ret != xdpRedirect || !o.ipOK || !o.l4OK || (o.outer != nil) != (p.proto == UDP) {
			t.Fatalf("padded %v: verdict %d, %+v", p.dst, ret, o)
		}
	}
	setLen := func(b []byte, n int) { binary.BigEndian.PutUint16(b, uint16(n)) }
	// v4 and v6 build p and let f change its IP header and what follows; v4 then fixes
	// the header checksum, so that only the change is wrong.
	v4 := func(p pkt, f func(ip, l4 []byte)) []byte {
		b := p.build()
		ip := b[14:34]
		f(ip, b[34:])
		setLen(ip[10:], 0)
		setLen(ip[10:], int(csumFold(csumAdd(0, ip))))
		return b
	}
	v6 := func(p pkt, f func(ip, l4 []byte)) []byte {
		b := p.build()
		f(b[14:54], b[54:])
		return b
	}
	cases := map[string][]byte{
		"v4 total length 0":                          v4(tcp4, func(ip, _ []byte) { setLen(ip[2:], 0) }),
		"v4 total length 20, a TCP header after":     v4(tcp4, func(ip, _ []byte) { setLen(ip[2:], 20) }),
		"v4 total length cuts the TCP header":        v4(tcp4, func(ip, _ []byte) { setLen(ip[2:], 39) }),
		"v4 total length past the frame":             v4(tcp4, func(ip, _ []byte) { setLen(ip[2:], 41) }),
		"v4 total length 65535, DSR":                 v4(udp4, func(ip, _ []byte) { setLen(ip[2:], 65535) }),
		"v4 total length cuts the UDP header, DSR":   v4(udp4, func(ip, _ []byte) { setLen(ip[2:], 27) }),
		"v4 TCP data offset 4":                       v4(tcp4, func(_, l4 []byte) { l4[12] = 4 << 4 }),
		"v4 TCP data offset 0":                       v4(tcp4, func(_, l4 []byte) { l4[12] = 0 }),
		"v4 TCP data offset past the packet":         v4(tcp4, func(_, l4 []byte) { l4[12] = 6 << 4 }),
		"v4 UDP length 7, DSR":                       v4(udp4, func(_, l4 []byte) { setLen(l4[4:], 7) }),
		"v4 UDP length past the packet, DSR":         v4(udp4, func(_, l4 []byte) { setLen(l4[4:], 10) }),
		"v6 version 4":                               v6(udp6, func(ip, _ []byte) { ip[0] = 0x40 }),
		"v6 payload length 0":                        v6(udp6, func(ip, _ []byte) { setLen(ip[4:], 0) }),
		"v6 payload length cuts the UDP header":      v6(udp6, func(ip, _ []byte) { setLen(ip[4:], 7) }),
		"v6 payload length past the frame":           v6(udp6, func(ip, _ []byte) { setLen(ip[4:], 10) }),
		"v6 payload length cuts the TCP header, DSR": v6(tcp6, func(ip, _ []byte) { setLen(ip[4:], 19) }),
		"v6 payload length 65535, DSR":               v6(tcp6, func(ip, _ []byte) { setLen(ip[4:], 65535) }),
		"v6 TCP data offset 4, DSR":                  v6(tcp6, func(_, l4 []byte) { l4[12] = 4 << 4 }),
		"v6 UDP length 0":                            v6(udp6, func(_, l4 []byte) { setLen(l4[4:], 0) }),
		"v6 UDP length past the packet":              v6(udp6, func(_, l4 []byte) { setLen(l4[4:], 10) }),
		"v4 reply total length 20":                   v4(reply[TCP], func(ip, _ []byte) { setLen(ip[2:], 20) }),
		"v4 reply TCP data offset 4":                 v4(reply[TCP], func(_, l4 []byte) { l4[12] = 4 << 4 }),
		"v6 reply payload length past the frame":     v6(reply[UDP], func(ip, _ []byte) { setLen(ip[4:], 10) }),
		"v6 reply UDP length 7":                      v6(reply[UDP], func(_, l4 []byte) { setLen(l4[4:], 7) }),
	}
	for name, b := range cases {
		ret, out := run(t, d, b)
		if ret != xdpPass || !bytes.Equal(out[:len(b)], b) {
			t.Errorf("%s: verdict %d (want pass), packet changed %v", name, ret, !bytes.Equal(out[:len(b)], b))
		}
	}
}

func TestConntrackKeepsFlows(t *testing.T) {
	d := newProgDatapath(t)
	svc := Service{VIP: vip4, Port: 80, Protocol: TCP, Backends: backends(vip4, 1, 2, 3), TableSize: maglev.SmallSize}
	if err := d.SetServices([]Service{svc}); err != nil {
		t.Fatal(err)
	}
	flow := func(port uint16, flags byte) []byte {
		return pkt{src: netip.AddrPortFrom(client4, port), dst: netip.AddrPortFrom(vip4, 80), proto: TCP,
			tcpFlags: flags}.build()
	}
	first := map[uint16]int{}
	for port := uint16(1000); port < 1200; port++ {
		_, out := run(t, d, flow(port, tcpSYN))
		first[port] = backendIndex(parse(out))
	}
	// Add five backends: Maglev moves many of these flows' entries, conntrack must not.
	svc.Backends = backends(vip4, 1, 2, 3, 4, 5, 6, 7, 8)
	if err := d.SetServices([]Service{svc}); err != nil {
		t.Fatal(err)
	}
	moved := 0
	for port := uint16(1000); port < 1200; port++ {
		_, out := run(t, d, flow(port, tcpACK))
		if got := backendIndex(parse(out)); got != first[port] {
			t.Fatalf("flow %d moved from backend %d to %d", port, first[port], got)
		}
	}
	// New flows do use the new backends.
	for port := uint16(5000); port < 5200; port++ {
		_, out := run(t, d, flow(port, tcpSYN))
		if backendIndex(parse(out)) > 3 {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("no new flow reached the new backends")
	}
	// Removing backend 1 keeps its established flows on it (they drain) while no new
	// flow picks it.
	svc.Backends = backends(vip4, 2, 3, 4, 5, 6, 7, 8)
	if err := d.SetServices([]Service{svc}); err != nil {
		t.Fatal(err)
	}
	for port := uint16(1000); port < 1200; port++ {
		_, out := run(t, d, flow(port, tcpACK))
		if got := backendIndex(parse(out)); got != first[port] {
			t.Fatalf("after removal flow %d moved from backend %d to %d", port, first[port], got)
		}
	}
	for port := uint16(9000); port < 9300; port++ {
		_, out := run(t, d, flow(port, tcpSYN))
		if backendIndex(parse(out)) == 1 {
			t.Fatal("a new flow reached the removed backend")
		}
	}
	// Counters: the service total is the sum of its backends.
	cs, err := d.Counters()
	if err != nil {
		t.Fatal(err)
	}
	var total, sum uint64
	for _, c := range cs {
		if !c.Backend.IsValid() {
			total = c.Packets
		} else {
			sum += c.Packets
		}
	}
	if total != 200+200+200+200+300 || sum == 0 || sum > total {
		t.Fatalf("counters: total %d, backends %d: %+v", total, sum, cs)
	}
	// Once the service is gone its established flows go to the stack too.
	if err := d.SetServices(nil); err != nil {
		t.Fatal(err)
	}
	if ret, _ := run(t, d, flow(1000, tcpACK)); ret != xdpPass {
		t.Fatalf("flow of a removed service: verdict %d", ret)
	}
}

func TestAffinity(t *testing.T) {
	d := newProgDatapath(t)
	bes := backends(vip4, 1, 2, 3, 4, 5)
	twin := Service{VIP: vip4, Port: 81, Protocol: TCP, Backends: bes, TableSize: maglev.SmallSize}
	aff := Service{VIP: vip4, Port: 80, Protocol: TCP, Backends: bes, TableSize: maglev.SmallSize, Affinity: 300 * time.Millisecond}
	if err := d.SetServices([]Service{aff, twin}); err != nil {
		t.Fatal(err)
	}
	to := func(port, sport uint16) int {
		_, out := run(t, d, pkt{src: netip.AddrPortFrom(client4, sport), dst: netip.AddrPortFrom(vip4, port), proto: TCP}.build())
		return backendIndex(parse(out))
	}
	want := to(80, 2000)
	spread := map[int]bool{}
	for sport := uint16(2001); sport < 2100; sport++ {
		if got := to(80, sport); got != want {
			t.Fatalf("source port %d went to backend %d, affinity says %d", sport, got, want)
		}
		spread[to(81, sport)] = true // the twin without affinity spreads the same flows
	}
	if len(spread) < 3 {
		t.Fatalf("without affinity flows reach only %v", spread)
	}
	// Another client is free to go elsewhere; after the timeout this client is too: pick
	// a source port whose Maglev choice (seen through the twin) differs.
	sport := uint16(3000)
	for ; to(81, sport) == want; sport++ {
	}
	time.Sleep(400 * time.Millisecond)
	if got, maglevChoice := to(80, sport), to(81, sport); got != maglevChoice {
		t.Fatalf("after the timeout: backend %d, Maglev says %d", got, maglevChoice)
	}
}

func TestAtomicSwap(t *testing.T) {
	d := newProgDatapath(t)
	// DSR, so that thousands of new flows to one backend do not run out of SNAT ports.
	sets := [][]Service{
		{{VIP: vip4, Port: 80, Protocol: TCP, Mode: DSR, Backends: backends(vip4, 1, 2, 3), TableSize: maglev.SmallSize}},
		{{VIP: vip4, Port: 80, Protocol: TCP, Mode: DSR, Backends: backends(vip4, 2, 3, 4), TableSize: maglev.DefaultSize}},
		{{VIP: vip4, Port: 80, Protocol: TCP, Mode: DSR, Backends: backends(vip4, 5), TableSize: maglev.SmallSize}},
		{{VIP: vip4, Port: 80, Protocol: TCP, Mode: DSR, Backends: backends(vip4, 1, 2, 3, 4, 5, 6, 7, 8), TableSize: maglev.DefaultSize}},
	}
	if err := d.SetServices(sets[0]); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var swaps atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 1; !stop.Load(); i++ {
			if err := d.SetServices(sets[i%len(sets)]); err != nil {
				t.Error(err)
				return
			}
			swaps.Add(1)
		}
	})
	deadline := time.Now().Add(2 * time.Second)
	n := 0
	for ; time.Now().Before(deadline) || swaps.Load() < 20; n++ {
		// A new source port each time: a conntrack miss, so the table is read.
		b := pkt{dst: netip.AddrPortFrom(vip4, 80), proto: TCP}
		b.src = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, byte(n >> 16), byte(n >> 8)}), uint16(n))
		if ret, _ := run(t, d, b.build()); ret != xdpRedirect {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("packet %d: verdict %d during swaps", n, ret)
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d packets during %d swaps", n, swaps.Load())
}

// SetServices with the set already programmed changes nothing in the kernel (the speaker
// calls it on every change in the cluster); a changed weight builds and swaps a new table.
func TestSetServicesUnchanged(t *testing.T) {
	d := newProgDatapath(t)
	svcs := []Service{{VIP: vip4, Port: 80, Protocol: TCP, Backends: backends(vip4, 1, 2, 3)}}
	table := func() uint32 {
		t.Helper()
		st := d.services[svcID{vip4, 80, TCP}]
		var id uint32
		if err := d.objs.MaglevOuter.Lookup(st.id, &id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	if err := d.SetServices(svcs); err != nil {
		t.Fatal(err)
	}
	first := table()
	if err := d.SetServices(svcs); err != nil {
		t.Fatal(err)
	}
	if got := table(); got != first {
		t.Fatalf("the same services again swapped the table: map %d, was %d", got, first)
	}
	svcs[0].Backends[0].Weight = 5
	if err := d.SetServices(svcs); err != nil {
		t.Fatal(err)
	}
	if got := table(); got == first {
		t.Fatalf("a changed weight left table map %d in place", got)
	}
}

// TestStackBackend: a backend that is the node itself (a host-network endpoint) is not
// sent anywhere by XDP. Flows that Maglev gives it pass to the stack unchanged, and keep
// doing so when the backend set changes; the other backend's flows are balanced.
func TestStackBackend(t *testing.T) {
	d := newProgDatapath(t)
	for _, fam := range []struct {
		name              string
		vip, client, node netip.Addr
	}{{"v4", vip4, client4, node4}, {"v6", vip6, client6, node6}} {
		t.Run(fam.name, func(t *testing.T) {
			svc := Service{VIP: fam.vip, Port: 80, Protocol: TCP, Mode: SNAT, TableSize: maglev.SmallSize,
				Backends: append(backends(fam.vip, 1), Backend{Addr: fam.node, Port: 8080})}
			if err := d.SetServices([]Service{svc}); err != nil {
				t.Fatal(err)
			}
			verdicts := map[uint32][]uint16{}
			for port := uint16(40000); port < 40064; port++ {
				in := pkt{src: netip.AddrPortFrom(fam.client, port), dst: netip.AddrPortFrom(fam.vip, 80),
					proto: TCP, payload: []byte("x")}.build()
				ret, out := run(t, d, in)
				verdicts[ret] = append(verdicts[ret], port)
				if ret == xdpPass && !bytes.Equal(out[:len(in)], in) {
					t.Fatalf("passed packet was rewritten")
				}
			}
			if len(verdicts[xdpPass]) == 0 || len(verdicts[xdpRedirect]) == 0 || len(verdicts) != 2 {
				t.Fatalf("verdicts by port: %v", verdicts)
			}
			// Without the node as a backend, new flows all go to backend 1, and the ones
			// the stack had stay there.
			svc.Backends = backends(fam.vip, 1)
			if err := d.SetServices([]Service{svc}); err != nil {
				t.Fatal(err)
			}
			for ret, ports := range verdicts {
				for _, port := range ports {
					in := pkt{src: netip.AddrPortFrom(fam.client, port), dst: netip.AddrPortFrom(fam.vip, 80),
						proto: TCP, tcpFlags: tcpACK, payload: []byte("x")}.build()
					if got, _ := run(t, d, in); got != ret {
						t.Fatalf("port %d: verdict %d, was %d", port, got, ret)
					}
				}
			}
			in := pkt{src: netip.AddrPortFrom(fam.client, 50000), dst: netip.AddrPortFrom(fam.vip, 80),
				proto: TCP, payload: []byte("x")}.build()
			if got, _ := run(t, d, in); got != xdpRedirect {
				t.Fatalf("new flow: verdict %d", got)
			}
			if err := d.SetServices(nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestSNATPorts runs a backend's SNAT port range (4 ports here) out and checks that ports
// come back: from flows the backend closed (FIN or RST), from flows it never answered,
// and from UDP flows idle past their timeout; but not from an established TCP flow (the
// client ACKed the SYN-ACK: TestSNATHalfOpen). While all ports are held, a new flow is
// dropped and flows in conntrack carry on.
func TestSNATPorts(t *testing.T) {
	d, _ := newProgDatapathNS(t, Config{SNATPortMin: 61000, SNATPortMax: 61003,
		SNATIdleOther: time.Second, SNATIdleClosed: time.Second})
	svcs := []Service{
		{VIP: vip4, Port: 80, Protocol: TCP, Backends: backends(vip4, 1), TableSize: maglev.SmallSize},
		{VIP: vip4, Port: 53, Protocol: UDP, Backends: backends(vip4, 1), TableSize: maglev.SmallSize},
	}
	if err := d.SetServices(svcs); err != nil {
		t.Fatal(err)
	}
	type flow struct {
		proto Protocol
		port  uint16 // the client's
	}
	// Client packets acknowledge the replies' SYN (sequence number 0).
	send := func(f flow, flags byte) (uint32, uint16) {
		t.Helper()
		ret, out := run(t, d, pkt{src: netip.AddrPortFrom(client4, f.port), dst: netip.AddrPortFrom(vip4, svcPort(f.proto)),
			proto: f.proto, tcpFlags: flags, ack: 1, payload: []byte("x")}.build())
		return ret, parse(out).src.Port()
	}
	reply := func(f flow, nport uint16, flags byte) {
		t.Helper()
		ret, out := run(t, d, pkt{src: netip.AddrPortFrom(be4(1), 8080), dst: netip.AddrPortFrom(node4, nport),
			proto: f.proto, tcpFlags: flags, payload: []byte("y"), smac: beMAC(1), dmac: nodeMAC}.build())
		if p := parse(out); ret != xdpTX || p.dst != netip.AddrPortFrom(client4, f.port) {
			t.Fatalf("reply to %d: verdict %d, %v", nport, ret, p.dst)
		}
	}
	// take opens flows until the range is full and returns their ports.
	take := func(proto Protocol, first uint16) map[flow]uint16 {
		t.Helper()
		held := map[flow]uint16{}
		for p := first; p < first+4; p++ {
			f := flow{proto, p}
			ret, nport := send(f, tcpSYN)
			if ret != xdpRedirect || nport < 61000 || nport > 61003 {
				t.Fatalf("%v: verdict %d, port %d", f, ret, nport)
			}
			held[f] = nport
		}
		if len(distinct(held)) != 4 {
			t.Fatalf("ports given twice: %v", held)
		}
		if ret, _ := send(flow{proto, first + 100}, tcpSYN); ret != xdpDrop {
			t.Fatalf("a fifth flow with every port held: verdict %d", ret)
		}
		for f, nport := range held {
			if ret, got := send(f, tcpACK); ret != xdpRedirect || got != nport {
				t.Fatalf("established %v with every port held: verdict %d, port %d (was %d)", f, ret, got, nport)
			}
		}
		return held
	}
	tcp := take(TCP, 1000)
	udp := take(UDP, 2000)
	answered, closed, reset := flow{TCP, 1000}, flow{TCP, 1001}, flow{TCP, 1002} // 1003: never answered
	reply(answered, tcp[answered], tcpACK|tcpSYN)
	if ret, _ := send(answered, tcpACK); ret != xdpRedirect { // the handshake completes
		t.Fatalf("answered flow's ACK: verdict %d", ret)
	}
	reply(closed, tcp[closed], tcpACK|tcpFIN)
	reply(reset, tcp[reset], tcpRST)
	reply(flow{UDP, 2000}, udp[flow{UDP, 2000}], 0)

	time.Sleep(3300 * time.Millisecond) // more than two ticks of the program's 1.07 s clock

	// TCP: three ports come back, the answered flow keeps its own.
	got := map[uint16]bool{}
	for p := uint16(3000); p < 3003; p++ {
		ret, nport := send(flow{TCP, p}, tcpSYN)
		if ret != xdpRedirect {
			t.Fatalf("new TCP flow %d after the timeouts: verdict %d", p, ret)
		}
		got[nport] = true
	}
	if got[tcp[answered]] || len(got) != 3 {
		t.Fatalf("ports %v given, the answered flow holds %d", got, tcp[answered])
	}
	if ret, _ := send(flow{TCP, 3003}, tcpSYN); ret != xdpDrop {
		t.Fatalf("fourth new TCP flow: verdict %d", ret)
	}
	if ret, nport := send(answered, tcpACK); ret != xdpRedirect || nport != tcp[answered] {
		t.Fatalf("answered flow: verdict %d, port %d", ret, nport)
	}
	// The closed flow's client reuses its port for a new connection: conntrack still
	// names the old SNAT port, now another flow's, so the SYN must not get it. The range
	// is full again: dropped.
	if ret, nport := send(closed, tcpSYN); ret != xdpDrop {
		t.Fatalf("new connection on a closed flow's addresses: verdict %d, port %d (another flow's)", ret, nport)
	}
	// UDP: every flow was idle past its timeout, answered or not.
	for p := uint16(4000); p < 4004; p++ {
		if ret, _ := send(flow{UDP, p}, 0); ret != xdpRedirect {
			t.Fatalf("new UDP flow %d after the timeout: verdict %d", p, ret)
		}
	}
}

// TestSNATTwoVIPs: one client address and port talks to two IPv6 VIPs that differ only in
// their middle words, on the same port and backend. The flows are different ones, so they
// get SNAT ports of their own, and each reply goes back from its own VIP.
func TestSNATTwoVIPs(t *testing.T) {
	d := newProgDatapath(t)
	vips := []netip.Addr{netip.MustParseAddr("2001:db8:0:1::10"), netip.MustParseAddr("2001:db8:0:2:1::10")}
	var svcs []Service
	for _, vip := range vips {
		svcs = append(svcs, Service{VIP: vip, Port: 80, Protocol: TCP, Backends: backends(vip, 1), TableSize: maglev.SmallSize})
	}
	if err := d.SetServices(svcs); err != nil {
		t.Fatal(err)
	}
	client := netip.AddrPortFrom(client6, 40000)
	nport := map[netip.Addr]uint16{}
	for _, vip := range vips {
		ret, out := run(t, d, pkt{src: client, dst: netip.AddrPortFrom(vip, 80), proto: TCP, tcpFlags: tcpSYN}.build())
		if ret != xdpRedirect {
			t.Fatalf("SYN to %v: verdict %d", vip, ret)
		}
		nport[vip] = parse(out).src.Port()
	}
	if nport[vips[0]] == nport[vips[1]] {
		t.Fatalf("both flows got SNAT port %d", nport[vips[0]])
	}
	for _, vip := range vips {
		ret, out := run(t, d, pkt{src: netip.AddrPortFrom(be6(1), 8080), dst: netip.AddrPortFrom(node6, nport[vip]),
			proto: TCP, tcpFlags: tcpSYN | tcpACK, smac: beMAC(1), dmac: nodeMAC}.build())
		if p := parse(out); ret != xdpTX || p.src != netip.AddrPortFrom(vip, 80) || p.dst != client {
			t.Fatalf("reply to port %d: verdict %d, %v -> %v, want %v -> %v", nport[vip], ret, p.src, p.dst,
				netip.AddrPortFrom(vip, 80), client)
		}
	}
}

// TestSNATHalfOpen: a TCP flow holds its SNAT port for SNATIdleTCP only once the client
// has ACKed the backend's SYN-ACK. Handshakes that stop after the SYN-ACK, or whose client
// sends only ACKs that do not acknowledge it, keep SNATIdleOther, so SYNs that never
// complete cannot pin a backend's ports for hours. Two ports here; time passes by ageing
// the snat_rev entries, as the program's clock is the kernel's.
func TestSNATHalfOpen(t *testing.T) {
	for _, fam := range []struct {
		vip, client, node netip.Addr
		be                func(int) netip.Addr
	}{{vip4, client4, node4, be4}, {vip6, client6, node6, be6}} {
		t.Run(caseName(fam.vip), func(t *testing.T) {
			d, _ := newProgDatapathNS(t, Config{SNATPortMin: 61000, SNATPortMax: 61001})
			if err := d.SetServices([]Service{{VIP: fam.vip, Port: 80, Protocol: TCP,
				Backends: backends(fam.vip, 1), TableSize: maglev.SmallSize}}); err != nil {
				t.Fatal(err)
			}
			short, long := ticks(d.cfg.SNATIdleOther), ticks(d.cfg.SNATIdleTCP)
			isn := uint32(0xfffffff0) // the backend's: the ACK of its SYN-ACK wraps around zero
			// send is a client packet; it returns the verdict and the SNAT port used.
			send := func(cport uint16, flags byte, ack uint32) (uint32, uint16) {
				t.Helper()
				ret, out := run(t, d, pkt{src: netip.AddrPortFrom(fam.client, cport), dst: netip.AddrPortFrom(fam.vip, 80),
					proto: TCP, tcpFlags: flags, seq: 7, ack: ack}.build())
				if ret != xdpRedirect {
					return ret, 0
				}
				return ret, parse(out).src.Port()
			}
			// open sends a new flow's SYN, which must get a port.
			open := func(cport uint16) uint16 {
				t.Helper()
				ret, nport := send(cport, tcpSYN, 0)
				if ret != xdpRedirect {
					t.Fatalf("SYN from %d: verdict %d", cport, ret)
				}
				return nport
			}
			refused := func(cport uint16, why string) {
				t.Helper()
				if ret, nport := send(cport, tcpSYN, 0); ret != xdpDrop {
					t.Fatalf("SYN from %d %s: verdict %d, port %d, want drop", cport, why, ret, nport)
				}
			}
			synack := func(cport, nport uint16) {
				t.Helper()
				ret, out := run(t, d, pkt{src: netip.AddrPortFrom(fam.be(1), 8080), dst: netip.AddrPortFrom(fam.node, nport),
					proto: TCP, tcpFlags: tcpSYN | tcpACK, seq: isn, ack: 8, smac: beMAC(1), dmac: nodeMAC}.build())
				if p := parse(out); ret != xdpTX || p.dst != netip.AddrPortFrom(fam.client, cport) {
					t.Fatalf("SYN-ACK to %d: verdict %d, %v", nport, ret, p.dst)
				}
			}
			ack := func(cport, nport uint16, ackNum uint32) {
				t.Helper()
				if ret, got := send(cport, tcpACK, ackNum); ret != xdpRedirect || got != nport {
					t.Fatalf("ACK from %d: verdict %d, port %d (was %d)", cport, ret, got, nport)
				}
			}

			// Two handshakes stop after the SYN-ACK. One client sent ACKs before it (of
			// what the SYN-ACK will carry, and of a sequence number 0, as of an unset
			// one), the other one that does not acknowledge it (a blind guess).
			a, b := open(1000), open(1001)
			if a == b {
				t.Fatalf("both flows got port %d", a)
			}
			ack(1000, a, isn+1)
			ack(1000, a, 1)
			synack(1000, a)
			synack(1001, b)
			ack(1001, b, isn+1+1<<20)
			refused(2000, "with both ports held by fresh handshakes")
			age(t, d, short+1)
			c, dd := open(1002), open(1003)
			if c == dd {
				t.Fatalf("both flows got port %d", c)
			}

			// c completes its handshake, dd is answered only. c's conntrack entry is then
			// evicted: its next packet finds the port it holds, and its state.
			synack(1002, c)
			synack(1003, dd)
			ack(1002, c, isn+1)
			clearConntrack(t, d)
			ack(1002, c, isn+1)
			age(t, d, short+1)
			if e := open(1004); e != dd {
				t.Fatalf("new flow got port %d, want the half-open flow's %d", e, dd)
			}
			refused(2001, "while the established flow holds the other port")
			ack(1002, c, isn+1) // the established flow carries on
			// Idle a little short of SNATIdleTCP, the established flow still holds its
			// port (the never-answered flow's comes back again); past it, the port comes
			// back too.
			age(t, d, long-short-10)
			if f := open(1005); f != dd {
				t.Fatalf("new flow got port %d, want the unanswered flow's %d", f, dd)
			}
			refused(2002, "while the established flow is idle a little short of SNATIdleTCP")
			age(t, d, 20)
			if g := open(1006); g != c {
				t.Fatalf("new flow got port %d, want the established flow's %d, idle past SNATIdleTCP", g, c)
			}
		})
	}
}

// clearConntrack deletes every conntrack entry, as LRU eviction would, and empties the
// IPv4 flow cache in front of conntrack4 (a new ct_epoch), where an evicted flow could
// still be found.
func clearConntrack(t *testing.T, d *Datapath) {
	t.Helper()
	var epoch uint32
	if err := d.objs.CtEpoch.Get(&epoch); err != nil {
		t.Fatal(err)
	}
	if err := d.objs.CtEpoch.Set(epoch + 1); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*ebpf.Map{d.objs.Conntrack4, d.objs.Conntrack6} {
		var keys [][]byte
		k, v := make([]byte, m.KeySize()), make([]byte, m.ValueSize())
		it := m.Iterate()
		for it.Next(&k, &v) {
			keys = append(keys, bytes.Clone(k))
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if err := m.Delete(k); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// age makes every SNAT port's flow look n ticks of the program's clock older.
func age(t *testing.T, d *Datapath, n uint32) {
	t.Helper()
	var (
		k    lbRevKey
		v    lbRevVal
		keys []lbRevKey
		vals []lbRevVal
		it   = d.objs.SnatRev.Iterate()
	)
	for it.Next(&k, &v) {
		keys, vals = append(keys, k), append(vals, v)
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		vals[i].Seen -= n
		if err := d.objs.SnatRev.Update(&keys[i], &vals[i], ebpf.UpdateExist); err != nil {
			t.Fatal(err)
		}
	}
}

func svcPort(p Protocol) uint16 {
	if p == TCP {
		return 80
	}
	return 53
}

func distinct[K comparable](m map[K]uint16) map[uint16]bool {
	out := map[uint16]bool{}
	for _, v := range m {
		out[v] = true
	}
	return out
}

// TestBackendSlotReuse churns more backends through a service than there are backend
// slots, so every slot is reused, one of them after carrying traffic. Nothing runs out,
// and a backend that gets a used slot starts its counters at zero.
func TestBackendSlotReuse(t *testing.T) {
	d := newProgDatapath(t)
	a := Service{VIP: vip4, Port: 80, Protocol: UDP, Backends: backends(vip4, 1), TableSize: maglev.SmallSize}
	sendA := func(n int) {
		t.Helper()
		for i := range n {
			in := pkt{src: netip.AddrPortFrom(client4, uint16(2000+i)), dst: netip.AddrPortFrom(vip4, 80), proto: UDP}
			if ret, _ := run(t, d, in.build()); ret != xdpRedirect {
				t.Fatalf("verdict %d", ret)
			}
		}
	}
	countersOf := func(vip netip.Addr) (total, backends uint64) {
		t.Helper()
		cs, err := d.Counters()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			if c.VIP != vip {
				continue
			}
			if c.Backend.IsValid() {
				backends += c.Packets
			} else {
				total += c.Packets
			}
		}
		return total, backends
	}
	if err := d.SetServices([]Service{a}); err != nil {
		t.Fatal(err)
	}
	sendA(10)
	if total, be := countersOf(vip4); total != 10 || be != 10 {
		t.Fatalf("counters before: total %d, backend %d", total, be)
	}
	// Service b's backends (10.9.0.0/16, unrouted: no next hop, quick to resolve) are
	// replaced 1,000 at a time, 17 times: 17,000 allocations of 16,384 slots.
	vipB := netip.MustParseAddr("192.0.2.99")
	for round := range 17 {
		var bs []Backend
		for i := range 1000 {
			n := round*1000 + i
			bs = append(bs, Backend{Addr: netip.AddrFrom4([4]byte{10, 9, byte(n >> 8), byte(n)}), Port: 80})
		}
		if err := d.SetServices([]Service{{VIP: vipB, Port: 80, Protocol: UDP, Backends: bs}}); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	if total, be := countersOf(vipB); total != 0 || be != 0 {
		t.Fatalf("service b carried no traffic, counted total %d, backends %d", total, be)
	}
	if err := d.SetServices([]Service{a}); err != nil {
		t.Fatal(err)
	}
	if total, be := countersOf(vip4); total != 0 || be != 0 {
		t.Fatalf("service a again: total %d, backend %d (a reused slot kept old counts)", total, be)
	}
	sendA(5)
	if total, be := countersOf(vip4); total != 5 || be != 5 {
		t.Fatalf("counters after: total %d, backend %d", total, be)
	}
}
