package datapath

import (
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/ferrolb/ferrolb/internal/maglev"
)

// BenchmarkProg reports the kernel-measured run time of the LB program per 64-byte packet
// of an established flow (conntrack hit), next to the drop-only program on the same
// packet. Each iteration is one BPF_PROG_TEST_RUN with repeat 1 because the program
// rewrites the packet in place: repeating on the same buffer would measure a different
// packet from the second run on. The "prog-ns/op" metric is the kernel's own measure of
// the program; ns/op includes the syscall.
func BenchmarkProg(b *testing.B) {
	d := newProgDatapath(b)
	var svcs []Service
	for _, vip := range []netip.Addr{vip4, vip6} {
		for _, mode := range []Mode{SNAT, DSR} {
			svcs = append(svcs, Service{VIP: vip, Port: 80 + uint16(mode), Protocol: UDP, Mode: mode,
				Backends: backends(vip, 1, 2, 3, 4, 5, 6, 7, 8), TableSize: maglev.DefaultSize})
		}
	}
	if err := d.SetServices(svcs); err != nil {
		b.Fatal(err)
	}
	payload := func(ip netip.Addr) []byte {
		n := 64 - 14 - 20 - 8 - 4 // 64-byte frame including the FCS, as on the wire
		if ip.Is6() {
			n = 0
		}
		return make([]byte, n)
	}
	type tc struct {
		name string
		prog *ebpf.Program
		pkt  []byte
	}
	cases := []tc{
		{"drop", d.objs.XdpDrop, pkt{src: netip.AddrPortFrom(client4, 1234), dst: netip.AddrPortFrom(vip4, 80), proto: UDP, payload: payload(vip4)}.build()},
		{"pass-no-service", d.objs.XdpLb, pkt{src: netip.AddrPortFrom(client4, 1234), dst: netip.AddrPortFrom(vip4, 99), proto: UDP, payload: payload(vip4)}.build()},
	}
	for _, s := range svcs {
		name := "v4"
		client := client4
		if s.VIP.Is6() {
			name, client = "v6", client6
		}
		if s.Mode == DSR {
			name += "-dsr"
		} else {
			name += "-snat"
		}
		cases = append(cases, tc{name, d.objs.XdpLb, pkt{src: netip.AddrPortFrom(client, 1234),
			dst: netip.AddrPortFrom(s.VIP, s.Port), proto: UDP, payload: payload(s.VIP)}.build()})
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if _, _, err := c.prog.Benchmark(c.pkt, 1, nil); err != nil { // warm: the flow enters conntrack
				b.Fatal(err)
			}
			var total time.Duration
			for b.Loop() {
				_, dur, err := c.prog.Benchmark(c.pkt, 1, nil)
				if err != nil {
					b.Fatal(err)
				}
				total += dur
			}
			b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "prog-ns/op")
		})
	}
}
