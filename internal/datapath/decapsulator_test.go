package datapath

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// encap wraps a built packet (Ethernet first) in the outer header FerroLB's DSR writes:
// IPIP from src to dst for IPv4, IP6IP6 for IPv6.
func encap(in []byte, src, dst netip.Addr) []byte {
	b := append([]byte{}, in[:12]...)
	inner := in[14:]
	if src.Is4() {
		b = append(b, 0x08, 0x00)
		ip := make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(inner)))
		ip[8], ip[9] = 64, 4
		copy(ip[12:], src.AsSlice())
		copy(ip[16:], dst.AsSlice())
		binary.BigEndian.PutUint16(ip[10:], csumFold(csumAdd(0, ip)))
		b = append(b, ip...)
	} else {
		b = append(b, 0x86, 0xdd)
		ip := make([]byte, 40)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(len(inner)))
		ip[6], ip[7] = 41, 64
		copy(ip[8:], src.AsSlice())
		copy(ip[24:], dst.AsSlice())
		b = append(b, ip...)
	}
	return append(b, inner...)
}

// newDecapProg loads the decapsulator without attaching it (the tests run it on packets).
func newDecapProg(t *testing.T) *Decapsulator {
	t.Helper()
	x, err := NewDecapsulator(DecapConfig{Interfaces: []string{"lo"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = x.objs.Close()
		x.nl.Close()
		_ = x.ns.Close()
	})
	return x
}

const tcxNext = 0xffffffff // TCX_NEXT (-1) as the run's return value

func runDecap(t *testing.T, x *Decapsulator, in []byte) []byte {
	t.Helper()
	opts := &ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+256)}
	ret, err := x.objs.TcxDecap.Run(opts)
	if err != nil {
		t.Fatal(err)
	}
	if ret != tcxNext {
		t.Fatalf("returned %d, want TCX_NEXT: the packet must go on to the stack and other programs", int32(ret))
	}
	return opts.DataOut
}

// TestDecapPackets runs the decapsulator on crafted packets: it strips exactly the pairs
// the speaker allowed, and leaves an attacker's tunnel packets (to an internal address, to
// another port or protocol, to an address that is not this node's endpoint) and every
// malformed one untouched, where an unchecked decapsulator (lb.c's xdp_decap) strips
// them all.
func TestDecapPackets(t *testing.T) {
	x := newDecapProg(t)
	var (
		node4, node6 = netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("fd00::2")
		pod4, pod6   = netip.MustParseAddr("10.244.2.10"), netip.MustParseAddr("fd00:244:2::10")
		vip4, vip6   = netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("2001:db8:100::10")
		cl4, cl6     = netip.MustParseAddr("172.31.0.2"), netip.MustParseAddr("fd00:31::2")
	)
	if err := x.SetPairs([]DecapPair{
		{Backend: pod4, VIP: vip4, Port: 8080, Protocol: TCP},
		{Backend: pod6, VIP: vip6, Port: 8080, Protocol: TCP},
		{Backend: pod4, VIP: vip4, Port: 53, Protocol: UDP},
	}); err != nil {
		t.Fatal(err)
	}
	tcp := func(cl, vip netip.Addr, port uint16) []byte {
		return pkt{src: netip.AddrPortFrom(cl, 40000), dst: netip.AddrPortFrom(vip, port), proto: TCP, payload: []byte("GET / HTTP/1.1\r\n")}.build()
	}
	udp := func(cl, vip netip.Addr, port uint16) []byte {
		return pkt{src: netip.AddrPortFrom(cl, 40000), dst: netip.AddrPortFrom(vip, port), proto: UDP, payload: []byte("q")}.build()
	}
	for _, c := range []struct {
		name string
		in   []byte
		out  []byte // nil: untouched
		want DecapResult
	}{
		{"v4/allowed", encap(tcp(cl4, vip4, 8080), node4, pod4), tcp(cl4, vip4, 8080), DecapOK},
		{"v4/allowed-udp", encap(udp(cl4, vip4, 53), node4, pod4), udp(cl4, vip4, 53), DecapOK},
		{"v6/allowed", encap(tcp(cl6, vip6, 8080), node6, pod6), tcp(cl6, vip6, 8080), DecapOK},
		// An attacker reaching the node (or the pod's address through it) with a tunnel
		// packet whose inner destination is something internal.
		{"v4/inner-internal-address", encap(tcp(cl4, netip.MustParseAddr("10.96.0.1"), 443), node4, pod4), nil, DecapNotAllowed},
		{"v4/inner-node-itself", encap(tcp(cl4, node4, 10250), node4, node4), nil, DecapNotAllowed},
		{"v6/inner-internal-address", encap(tcp(cl6, netip.MustParseAddr("fd00:96::1"), 443), node6, pod6), nil, DecapNotAllowed},
		{"v4/other-port", encap(tcp(cl4, vip4, 22), node4, pod4), nil, DecapNotAllowed},
		{"v4/other-protocol", encap(udp(cl4, vip4, 8080), node4, pod4), nil, DecapNotAllowed},
		{"v4/outer-not-an-endpoint", encap(tcp(cl4, vip4, 8080), node4, netip.MustParseAddr("10.244.2.11")), nil, DecapNotAllowed},
		{"v6/outer-not-an-endpoint", encap(tcp(cl6, vip6, 8080), node6, netip.MustParseAddr("fd00:244:2::11")), nil, DecapNotAllowed},
		{"v4/truncated-inner", encap(tcp(cl4, vip4, 8080), node4, pod4)[:14+20+10], nil, DecapMalformed},
		{"v4/no-inner-ports", encap(tcp(cl4, vip4, 8080), node4, pod4)[:14+20+20+2], nil, DecapMalformed},
		{"v6/truncated-inner", encap(tcp(cl6, vip6, 8080), node6, pod6)[:14+40+30], nil, DecapMalformed},
		{"v4/outer-length-past-frame", mutate(encap(tcp(cl4, vip4, 8080), node4, pod4), func(b []byte) { addU16(b, 14+2, 100); addU16(b, 14+20+2, 100) }), nil, DecapMalformed},
		{"v4/outer-length-disagrees", mutate(encap(tcp(cl4, vip4, 8080), node4, pod4), func(b []byte) { addU16(b, 14+2, 4) }), nil, DecapMalformed},
		{"v6/outer-length-disagrees", mutate(encap(tcp(cl6, vip6, 8080), node6, pod6), func(b []byte) { addU16(b, 14+4, 8) }), nil, DecapMalformed},
		{"v4/inner-version-6", mutate(encap(tcp(cl4, vip4, 8080), node4, pod4), func(b []byte) { b[14+20] = 0x65 }), nil, DecapMalformed},
		{"v6/inner-version-4", mutate(encap(tcp(cl6, vip6, 8080), node6, pod6), func(b []byte) { b[14+40] = 0x40 }), nil, DecapMalformed},
		{"v4/outer-options", mutate(encap(tcp(cl4, vip4, 8080), node4, pod4), func(b []byte) { b[14] = 0x46 }), nil, DecapMalformed},
		{"v4/outer-fragment", mutate(encap(tcp(cl4, vip4, 8080), node4, pod4), func(b []byte) { b[14+6] = 0x20 }), nil, DecapMalformed},
		{"v4/inner-fragment", mutate(encap(tcp(cl4, vip4, 8080), node4, pod4), func(b []byte) { b[14+20+6] = 0x20 }), nil, DecapMalformed},
		{"v4/inner-options", mutate(encap(tcp(cl4, vip4, 8080), node4, pod4), func(b []byte) { b[14+20] = 0x46 }), nil, DecapMalformed},
		{"v6/inner-extension-header", encap(pkt{src: netip.AddrPortFrom(cl6, 1), dst: netip.AddrPortFrom(vip6, 8080), proto: TCP, hopByHop: true}.build(), node6, pod6), nil, DecapMalformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := decapCounts(t, x)
			got := runDecap(t, x, c.in)
			want := c.out
			if want == nil {
				want = c.in
			}
			if !bytes.Equal(got[:len(want)], want) || (c.out != nil && len(got) > len(want) && got[len(want)] != 0) {
				t.Errorf("got\n%x\nwant\n%x", got, want)
			}
			after := decapCounts(t, x)
			for r := range decapResults {
				d := after[r] - before[r]
				if (r == c.want) != (d == 1) || d > 1 {
					t.Errorf("%v counted %d", r, d)
				}
			}
		})
	}
	// Traffic that is not a tunnel goes on uncounted: the program runs on all of the
	// node's ingress traffic.
	before := decapCounts(t, x)
	for _, in := range [][]byte{tcp(cl4, vip4, 8080), tcp(cl6, vip6, 8080), udp(cl4, pod4, 53), make([]byte, 14)} {
		if got := runDecap(t, x, in); !bytes.Equal(got[:len(in)], in) {
			t.Errorf("changed a packet that is no tunnel: %x", in)
		}
	}
	if after := decapCounts(t, x); after[DecapOK]+after[DecapNotAllowed]+after[DecapMalformed] != before[DecapOK]+before[DecapNotAllowed]+before[DecapMalformed] {
		t.Errorf("counted packets that are no tunnel: %v -> %v", before, after)
	}
	// A pair taken back is no longer decapsulated.
	if err := x.SetPairs([]DecapPair{{Backend: pod6, VIP: vip6, Port: 8080, Protocol: TCP}}); err != nil {
		t.Fatal(err)
	}
	in := encap(tcp(cl4, vip4, 8080), node4, pod4)
	if got := runDecap(t, x, in); !bytes.Equal(got[:len(in)], in) {
		t.Error("a removed pair is still decapsulated")
	}
}

func mutate(b []byte, f func([]byte)) []byte {
	f(b)
	return b
}

func addU16(b []byte, off int, v uint16) {
	binary.BigEndian.PutUint16(b[off:], binary.BigEndian.Uint16(b[off:])+v)
}

func decapCounts(t *testing.T, x *Decapsulator) map[DecapResult]uint64 {
	t.Helper()
	c, err := x.Counts()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDecapPairsInvalid(t *testing.T) {
	x := newDecapProg(t)
	v4, v6 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")
	for _, p := range []DecapPair{
		{Backend: v4, VIP: v6, Port: 80, Protocol: TCP},
		{VIP: v4, Port: 80, Protocol: TCP},
		{Backend: v4, VIP: v4, Protocol: TCP},
		{Backend: v4, VIP: v4, Port: 80, Protocol: 132},
	} {
		if err := x.SetPairs([]DecapPair{p}); err == nil {
			t.Errorf("%+v accepted", p)
		}
	}
}

// BenchmarkDecap reports the decapsulator's kernel-measured run time per packet
// ("prog-ns/op"): a packet that is no tunnel (what every packet the node receives pays),
// a DSR packet it strips, and a tunnel packet it refuses. Repeat 1, because a stripped
// packet would be another packet on the next run; a single run's measure includes the
// kernel's timing overhead, which no-tunnel-x1000 (1,000 runs per measure) leaves out:
// the difference between the two no-tunnel figures is that overhead.
func BenchmarkDecap(b *testing.B) {
	x, err := NewDecapsulator(DecapConfig{Interfaces: []string{"lo"}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = x.objs.Close()
		x.nl.Close()
		_ = x.ns.Close()
	})
	node, pod := netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.244.2.10")
	vip, cl := netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("172.31.0.2")
	if err := x.SetPairs([]DecapPair{{Backend: pod, VIP: vip, Port: 80, Protocol: TCP}}); err != nil {
		b.Fatal(err)
	}
	plain := pkt{src: netip.AddrPortFrom(cl, 1234), dst: netip.AddrPortFrom(vip, 80), proto: TCP}.build()
	other := pkt{src: netip.AddrPortFrom(cl, 1234), dst: netip.AddrPortFrom(vip, 22), proto: TCP}.build()
	for _, c := range []struct {
		name   string
		pkt    []byte
		repeat int
	}{{"no-tunnel-x1000", plain, 1000}, {"no-tunnel", plain, 1}, {"decapsulated", encap(plain, node, pod), 1}, {"not-allowed", encap(other, node, pod), 1}} {
		b.Run(c.name, func(b *testing.B) {
			var total time.Duration
			for b.Loop() {
				_, dur, err := x.objs.TcxDecap.Benchmark(c.pkt, c.repeat, nil)
				if err != nil {
					b.Fatal(err)
				}
				total += dur
			}
			b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "prog-ns/op")
		})
	}
}
