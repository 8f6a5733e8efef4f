package datapath

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

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
	svcs := benchServices()
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

// xdpMD is struct xdp_md, the context BPF_PROG_TEST_RUN takes for XDP.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// BenchmarkLabStats measures what kernel.bpf_stats_enabled measures, the program's own run
// time per packet, on real traffic: a client in the lab topology sends b.N 64-byte UDP
// packets of one flow to a VIP through the node's XDP program. The drop-only baseline runs
// the drop program on the same packet through BPF_PROG_TEST_RUN in live-frame mode (the
// drop program does not modify the packet, so every frame is the same).
func BenchmarkLabStats(b *testing.B) {
	l := newLab(b)
	// Backends discard UDP on port 9 (SNAT) and on the VIP's port 9 (DSR).
	for _, bk := range l.backends {
		err := bk.Do(func() error {
			pc, err := net.ListenPacket("udp", "[::]:9")
			if err != nil {
				return err
			}
			l.closers = append(l.closers, pc)
			go func() {
				buf := make([]byte, 2048)
				for {
					if _, _, err := pc.ReadFrom(buf); err != nil {
						return
					}
				}
			}()
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Skipf("bpf stats: %v", err)
	}
	defer stats.Close()
	measure := func(b *testing.B, prog *ebpf.Program, send func(n int)) {
		before, err := prog.Stats()
		if err != nil {
			b.Fatal(err)
		}
		send(b.N)
		after, err := prog.Stats()
		if err != nil {
			b.Fatal(err)
		}
		runs := after.RunCount - before.RunCount
		if runs == 0 {
			b.Fatal("no runs counted")
		}
		b.ReportMetric(float64((after.Runtime-before.Runtime).Nanoseconds())/float64(runs), "prog-ns/pkt")
	}
	frame := pkt{src: netip.AddrPortFrom(client4, 1234), dst: netip.AddrPortFrom(vip4, 9), proto: UDP, payload: make([]byte, 18)}.build()
	liveRun := func(prog *ebpf.Program) func(n int) {
		return func(n int) {
			err := l.node.Do(func() error {
				lk, err := netlink.LinkByName("n0")
				if err != nil {
					return err
				}
				_, err = prog.Run(&ebpf.RunOptions{Data: frame, Repeat: uint32(n),
					Flags:   unix.BPF_F_TEST_XDP_LIVE_FRAMES,
					Context: xdpMD{DataEnd: uint32(len(frame)), IngressIfindex: uint32(lk.Attrs().Index)}})
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("drop", func(b *testing.B) { measure(b, l.d.objs.XdpDrop, liveRun(l.d.objs.XdpDrop)) })
	b.Run("pass-no-service", func(b *testing.B) { measure(b, l.d.objs.XdpLb, liveRun(l.d.objs.XdpLb)) })
	for _, vip := range []netip.Addr{labVIP4, labVIP6} {
		for _, mode := range []Mode{SNAT, DSR} {
			b.Run(caseName(vip, mode), func(b *testing.B) {
				if err := l.d.SetServices(udpService(vip, mode, 9, 9)); err != nil {
					b.Fatal(err)
				}
				l.waitNexthops(b)
				var c net.Conn
				if err := l.client.Do(func() (err error) {
					c, err = net.Dial("udp", netip.AddrPortFrom(vip, 9).String())
					return err
				}); err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				payload := make([]byte, 18) // a 64-byte frame on the wire for IPv4
				measure(b, l.d.objs.XdpLb, func(n int) {
					for range n {
						if _, err := c.Write(payload); err != nil {
							b.Fatal(err)
						}
					}
				})
			})
		}
	}
}

// BenchmarkProgHot measures the program's own run time per packet as bpf_stats does,
// robustly under machine load: BPF_PROG_TEST_RUN runs it b.N times in a kernel loop on
// live frames (xdp_lb_bench restores the 64-byte frame from a template before each run,
// see bpf/lb.c). With flows=N each run takes the next of N established flows in a
// scattered order, so N sets how much conntrack state the packets touch: flows=1 is
// all-hot, 16384 is what bench/datapath sends. Reported: "prog-ns/op" of the run
// including the restore, and "lb-ns/op" with the restore's own cost (xdp_restore_bench,
// same flows) taken off; the drop-only program's line is the baseline.
func BenchmarkProgHot(b *testing.B) {
	// A wide SNAT port range, so that 65536 flows over 8 backends all find a port.
	d, node := newProgDatapathNS(b, Config{SNATPortMin: 1024, SNATPortMax: 65535})
	spec, err := loadLb()
	if err != nil {
		b.Fatal(err)
	}
	// The same constants (SNAT address and ports) and map sizes as the datapath's own program.
	if err := sizeMaps(spec, d.cfg); err != nil {
		b.Fatal(err)
	}
	if err := setVars(spec, d.cfg); err != nil {
		b.Fatal(err)
	}
	var bench struct {
		LB      *ebpf.Program `ebpf:"xdp_lb_bench"`
		Restore *ebpf.Program `ebpf:"xdp_restore_bench"`
		Probe   *ebpf.Program `ebpf:"xdp_probe_bench"`
	}
	// The probe's lines span 4 MB, the size of the IPv4 conntrack map's bucket array.
	const probeLines = 65536
	spec.Maps["bench_lines"].MaxEntries = probeLines
	repl := map[string]*ebpf.Map{}
	for name := range spec.Maps {
		if m := d.objs.mapByName(name); m != nil && name != "bench_lines" {
			repl[name] = m
		}
	}
	if err := spec.LoadAndAssign(&bench, &ebpf.CollectionOptions{MapReplacements: repl}); err != nil {
		b.Fatal(err)
	}
	defer bench.LB.Close()
	defer bench.Restore.Close()
	defer bench.Probe.Close()
	svcs := benchServices()
	// And one whose only backend is the node itself: every packet passes to the stack,
	// counted (stack-endpoint), the cost of a counted pass.
	stackSvc := Service{VIP: vip4, Port: 82, Protocol: UDP, Backends: []Backend{{Addr: node4, Port: 8080}}}
	if err := d.SetServices(append(svcs, stackSvc)); err != nil {
		b.Fatal(err)
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Skipf("bpf stats: %v", err)
	}
	defer stats.Close()
	lk, err := d.nl.LinkByName("n0")
	if err != nil {
		b.Fatal(err)
	}
	frame64 := func(p pkt) []byte {
		f := p.build()
		return append(f, make([]byte, 64-len(f))...) // Ethernet padding
	}
	type benchFrame struct {
		Data                 [64]byte
		Flows, N, Lines, Pad uint32
	}
	perRun := func(b *testing.B, prog *ebpf.Program, frame []byte, flows, runs int) float64 {
		tmpl := benchFrame{Flows: uint32(flows), Lines: probeLines}
		copy(tmpl.Data[:], frame)
		if err := d.objs.BenchTmpl.Update(uint32(0), tmpl, ebpf.UpdateAny); err != nil {
			b.Fatal(err)
		}
		before, err := prog.Stats()
		if err != nil {
			b.Fatal(err)
		}
		err = node.Do(func() error {
			_, err := prog.Run(&ebpf.RunOptions{Data: frame, Repeat: uint32(runs),
				Flags:   unix.BPF_F_TEST_XDP_LIVE_FRAMES,
				Context: xdpMD{DataEnd: uint32(len(frame)), IngressIfindex: uint32(lk.Attrs().Index)}})
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		after, err := prog.Stats()
		if err != nil {
			b.Fatal(err)
		}
		return float64((after.Runtime - before.Runtime).Nanoseconds()) / float64(after.RunCount-before.RunCount)
	}
	type tc struct {
		name  string
		frame []byte
	}
	cases := []tc{{"pass-no-service", frame64(pkt{src: netip.AddrPortFrom(client4, 1234), dst: netip.AddrPortFrom(vip4, 99), proto: UDP, payload: make([]byte, 18)})}}
	for _, s := range svcs {
		name, client, pl := "v4", client4, 18
		if s.VIP.Is6() {
			name, client, pl = "v6", client6, 0
		}
		name += map[Mode]string{SNAT: "-snat", DSR: "-dsr"}[s.Mode]
		cases = append(cases, tc{name, frame64(pkt{src: netip.AddrPortFrom(client, 1234),
			dst: netip.AddrPortFrom(s.VIP, s.Port), proto: UDP, payload: make([]byte, pl)})})
	}
	cases = append(cases, tc{"v4-stack-endpoint", frame64(pkt{src: netip.AddrPortFrom(client4, 1234),
		dst: netip.AddrPortFrom(vip4, 82), proto: UDP, payload: make([]byte, 18)})})
	b.Run("drop", func(b *testing.B) {
		b.ReportMetric(perRun(b, d.objs.XdpDrop, cases[0].frame, 1, b.N), "prog-ns/op")
	})
	b.Run("restore-only", func(b *testing.B) {
		b.ReportMetric(perRun(b, bench.Restore, cases[0].frame, 1, b.N), "prog-ns/op")
	})
	balanced := func(b *testing.B) uint64 {
		cs, err := d.Counters()
		if err != nil {
			b.Fatal(err)
		}
		var n uint64
		for _, c := range cs {
			if !c.Backend.IsValid() {
				n += c.Packets
			}
		}
		return n
	}
	for _, flows := range []int{1, 256, 16384, 65536} {
		// One read of a cache line per flow: the floor for any per-flow state.
		b.Run(fmt.Sprintf("probe-one-line/flows=%d", flows), func(b *testing.B) {
			probe := perRun(b, bench.Probe, cases[0].frame, flows, b.N)
			restore := perRun(b, bench.Restore, cases[0].frame, flows, b.N)
			b.ReportMetric(probe, "prog-ns/op")
			b.ReportMetric(probe-restore, "lb-ns/op")
		})
		for _, c := range cases {
			b.Run(fmt.Sprintf("%s/flows=%d", c.name, flows), func(b *testing.B) {
				if c.name != "pass-no-service" {
					perRun(b, bench.LB, c.frame, flows, 2*flows) // every flow enters conntrack
				}
				before, passed := balanced(b), stackPassed(b, d)
				lb := perRun(b, bench.LB, c.frame, flows, b.N)
				// Every run of a service's frame must have been balanced, not passed (or,
				// for the stack endpoint's, passed and counted).
				switch n, p := balanced(b)-before, stackPassed(b, d)-passed; {
				case c.name == "v4-stack-endpoint" && (n != 0 || p != uint64(b.N)):
					b.Fatalf("%d of %d frames counted as stack-endpoint, %d balanced", p, b.N, n)
				case c.name != "pass-no-service" && c.name != "v4-stack-endpoint" && n != uint64(b.N):
					b.Fatalf("%d of %d frames balanced", n, b.N)
				}
				restore := perRun(b, bench.Restore, c.frame, flows, b.N)
				b.ReportMetric(lb, "prog-ns/op")
				b.ReportMetric(lb-restore, "lb-ns/op")
			})
		}
	}
}

// stackPassed is the count of packets passed as stack-endpoint.
func stackPassed(b *testing.B, d *Datapath) uint64 {
	cs, err := d.ReasonCounts()
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range cs {
		if c.Reason == ReasonStackEndpoint {
			return c.Packets
		}
	}
	return 0
}

// benchServices are the prog.Run benchmarks' services: a UDP one per family and mode (port
// 80 SNAT, 81 DSR), 8 backends each.
func benchServices() []Service {
	var svcs []Service
	for _, vip := range []netip.Addr{vip4, vip6} {
		for _, mode := range []Mode{SNAT, DSR} {
			svcs = append(svcs, Service{VIP: vip, Port: 80 + uint16(mode), Protocol: UDP, Mode: mode,
				Backends: backends(vip, 1, 2, 3, 4, 5, 6, 7, 8), TableSize: maglev.DefaultSize})
		}
	}
	return svcs
}
