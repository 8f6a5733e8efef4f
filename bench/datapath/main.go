// Command datapath measures the packet rate FerroLB's XDP load balancer delivers, against the
// alternatives, in one topology of network namespaces on this machine:
//
//	generator [veth] node [veth] backend 0..N-1
//
// A generator written here (AF_PACKET, sendmmsg, resending what a full veth refuses) sends
// 64-byte UDP frames of many flows (sources spread over 172.16.0.0/16 and ports, destinations
// over -services service addresses) to the node, which hands them to the backends. An XDP
// program on each backend counts and drops what arrives. The generator runs on CPU
// -gen-cpu; the node's and the backends' receive work (threaded NAPI) on -node-cpu.
//
// Rows (each: warm-up, then -duration counted, -runs times; the median is reported):
//
//   - drop-only: an XDP program on the node's link counts and drops; it is the generator's
//     ceiling (the rate is counted at the node, not at the backends). A soft one: the
//     generator's own rate depends on how the node drains the veth, and a busier node
//     (fewer wake-ups) can let it send faster, so a row above 1.00 means that, not that
//     balancing beats dropping;
//   - probe-one-line: drop-only plus what any conntrack lookup costs at least: the 5-tuple
//     parsed and hashed, one 64-byte line read per flow at the hashed index of a 4 MB array
//     (the size of the conntrack's table); counted at the node too;
//   - forward: plain IP forwarding at the node, every packet routed to backend 0;
//   - ferrolb-snat: FerroLB's XDP program (internal/datapath), SNAT/DNAT to the backends;
//   - ferrolb-dsr: FerroLB's XDP program in DSR mode (IPIP to the backends), counted as the
//     encapsulated packets arrive at the backends;
//   - ferrolb-dsr-decap: the same, but the backends run FerroLB's decapsulation
//     (datapath.AttachDecap, XDP) and count in tcx ingress after it: the backends' cost of
//     building an skb for each packet is included (and runs on the node's CPU here);
//   - iptables-nft, iptables-legacy: kube-proxy's iptables mode (KUBE-SERVICES -> KUBE-EXT ->
//     KUBE-SVC with statistic-mode-random jumps -> KUBE-SEP DNAT, masquerade) for -services
//     services with one endpoint per backend, loaded with iptables-nft and iptables-legacy;
//   - ipvs: kube-proxy's IPVS mode, where the kernel has IPVS.
//
// Columns: kpps delivered (median of the runs, and their range), its ratio to drop-only and
// to iptables-nft; ns/pkt, the node's XDP program's own cost per packet (run_time_ns /
// run_cnt of the kernel's BPF statistics, from one extra run with statistics on, whose rate
// is not reported); sent, the rate the generator got out; refused, the share of its
// sendmmsg calls the node's full veth ring refused (back-pressure: near 0 the generator is
// the limit, near 100% the node); per backend and arrived as, checks of the last run: each
// backend's share of the packets, and the share addressed to the backend itself (DNAT or
// SNAT done) or IPIP (DSR). A line per FerroLB mode then marks its targets met or not:
// >= 95% of drop-only, >= 1.7x iptables-nft, cost per packet <= 2.5x drop-only's.
//
// To measure the node rather than the machine's other tenants, the generator's thread and the
// NAPI threads run at nice -20 (-nice), the CPUs poll instead of sleeping when idle (PM QoS,
// /dev/cpu_dma_latency), and the node's NAPI coalesces (-coalesce): it polls again 50 µs
// after its ring runs empty instead of sleeping until the generator wakes it. Only one run
// of this benchmark proceeds at a time on the machine (a lock in /run). On a shared
// machine the runs still vary: read the min-max column, and raise -runs.
//
// Everything runs in namespaces this program creates (dpb-gen-PID-N, dpb-node-..., dpb-beK-...)
// and deletes on exit, Ctrl-C included; no packet leaves them.
//
// The cost per packet against the floor of any conntrack (docs/performance.md, "Cost per
// packet against one cache line per flow"): with -only probe-one-line,ferrolb-snat,ferrolb-dsr
// -flows 256,16384,65536 a last table gives, per flow count, the median ns/pkt of the probe
// (probe-one-line: drop-only plus parsing the 5-tuple, hashing it and reading one 64-byte line
// per flow in a 4 MB array) and of FerroLB, and their ratio (target: at most 1.3x).
//
// Run as root: go run ./bench/datapath [-runs 3] [-duration 3s] [-services 100] [-flows 16384] [-only drop-only,ferrolb-snat]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	runs := flag.Int("runs", 3, "measurements per mode (the median is reported)")
	duration := flag.Duration("duration", 3*time.Second, "counted time of one measurement")
	warmup := flag.Duration("warmup", time.Second, "traffic before counting starts")
	services := flag.Int("services", 100, "services (iptables chains, FerroLB services)")
	backends := flag.Int("backends", 4, "backend namespaces (endpoints per service)")
	flowList := flag.String("flows", "16384", "distinct flows (source address and port) the generator cycles through; a comma-separated list runs the modes once per count")
	only := flag.String("only", "", "comma-separated modes to run (default all): "+modeNames())
	genCPU := flag.Int("gen-cpu", 0, "CPU of the generator")
	nodeCPU := flag.Int("node-cpu", 1, "CPU of the node's and backends' NAPI threads")
	coalesce := flag.Duration("coalesce", 50*time.Microsecond, "the node's NAPI polls again after this long instead of sleeping (gro_flush_timeout with napi_defer_hard_irqs); 0: off")
	flag.IntVar(&niceness, "nice", niceness, "nice value of the generator and the NAPI threads (the machine may be shared)")
	flag.Parse()
	selected, err := selectModes(*only)
	var flows []int
	if err == nil {
		flows, err = parseFlows(*flowList)
	}
	if err != nil || *runs < 1 || *services < 1 || *services > 60000 || *backends < 1 || *backends > 250 {
		if err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
		}
		flag.Usage()
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "error: creating network namespaces and loading XDP needs root")
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, selected, *services, *backends, flows, *genCPU, *coalesce, settings{runs: *runs, warmup: *warmup, duration: *duration, nodeCPU: *nodeCPU})
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func modeNames() string {
	var n []string
	for _, m := range modes {
		n = append(n, m.name)
	}
	return strings.Join(n, ",")
}

func selectModes(only string) ([]mode, error) {
	if only == "" {
		return modes, nil
	}
	want := strings.Split(only, ",")
	var sel []mode
	for _, m := range modes {
		if slices.Contains(want, m.name) {
			sel = append(sel, m)
		}
	}
	for _, w := range want {
		if !slices.ContainsFunc(modes, func(m mode) bool { return m.name == w }) {
			return nil, fmt.Errorf("unknown mode %q (modes: %s)", w, modeNames())
		}
	}
	return sel, nil
}

// parseFlows reads -flows: counts from 1 to 1<<20.
func parseFlows(list string) ([]int, error) {
	var flows []int
	for f := range strings.SplitSeq(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 1<<20 {
			return nil, fmt.Errorf("-flows: %q is not a count of flows from 1 to 1048576", f)
		}
		flows = append(flows, n)
	}
	return flows, nil
}

func run(ctx context.Context, selected []mode, services, backends int, flowCounts []int, genCPU int, coalesce time.Duration, st settings) (err error) {
	unlock, err := exclusive(ctx)
	if err != nil {
		return err
	}
	defer unlock()

	fmt.Printf("machine: kernel %s, %s, %d CPUs; load average %s; generator on CPU %d, node and backends' NAPI on CPU %d (nice %d)\n",
		kernel(), cpuModel(), runtime.NumCPU(), loadavg(), genCPU, st.nodeCPU, niceness)
	defer func() { fmt.Printf("load average at the end: %s\n", loadavg()) }()
	fmt.Printf("build: %s\n", revision())
	fmt.Printf("traffic: 64-byte UDP, %v flows to %d services, %d backends; %d runs of %v after %v warm-up (and as many with BPF statistics on, for ns/pkt)\n\n",
		flowCounts, services, backends, st.runs, st.duration, st.warmup)

	idle := "CPUs poll when idle"
	if release, err := pollIdle(); err != nil {
		idle = "CPUs may sleep when idle (" + err.Error() + ")"
	} else {
		defer func() { err = errors.Join(err, release()) }()
	}
	fmt.Printf("%s (PM QoS /dev/cpu_dma_latency 0 while the benchmark runs)\n", idle)

	fmt.Printf("node's NAPI: threaded, coalescing %v\n", coalesce)
	topo, err := newTopology(backends, coalesce)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, topo.Close()) }()
	if n, err := topo.pinNAPI(st.nodeCPU); err != nil {
		return err
	} else if n == 0 {
		fmt.Println("warning: found no NAPI threads to pin; the node's work may share the generator's CPU")
	}

	drop, err := newXDPCounter(netip.Addr{})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, drop.Close()) }()
	var counts []*xdpCounter
	for k, be := range topo.backends {
		c, err := newXDPCounter(backendAddr(k))
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, c.Close()) }()
		counts = append(counts, c)
		detach, err := attachXDP(be, topo.beIf[k], c.objs.CountBackend)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, detach()) }()
	}

	e := &env{topo: topo, services: services, drop: drop, counts: counts}
	costs := map[int][]row{}
	for _, flows := range flowCounts {
		rows, err := runFlows(ctx, e, selected, flows, genCPU, st)
		if err != nil {
			return err
		}
		costs[flows] = rows
	}
	printCosts(flowCounts, costs)
	return nil
}

// runFlows runs the selected modes with a generator of this many flows and prints their table.
func runFlows(ctx context.Context, e *env, selected []mode, flows, genCPU int, st settings) (rows []row, err error) {
	t := e.topo
	gen, err := newGenerator(t.gen, t.genIf, t.genMAC, t.nodeMAC, flows, e.services, genCPU)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, gen.Close()) }()
	fmt.Printf("--- %d flows (load average %s)\n", flows, loadavg())
	for _, m := range selected {
		// Drop-only and the probe are counted where they drop, at the node; the rest at the
		// backends.
		delivered := func() (tally, error) { return tallyOf(e.counts) }
		if m.name == "drop-only" || m.name == "probe-one-line" {
			delivered = func() (tally, error) { return tallyOf([]*xdpCounter{e.drop}) }
		}
		r, err := measure(ctx, e, m, gen, delivered, st)
		if err != nil {
			printTable(rows)
			return rows, err
		}
		rows = append(rows, r)
	}
	printTable(rows)
	return rows, nil
}

func kernel() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "?"
	}
	return unix.ByteSliceToString(u.Release[:])
}
