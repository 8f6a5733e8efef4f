package main

import (
	"fmt"
	"slices"
	"strings"
)

// Targets for FerroLB's XDP program.
const (
	targetOfCeiling  = 0.95 // of the drop-only rate
	targetVsIptables = 1.7  // times iptables-nft's rate
	targetCost       = 2.5  // times the drop-only program's cost per packet
	targetVsProbe    = 1.3  // times probe-one-line's cost per packet, at the same flow count
)

// printCosts prints, per flow count, the cost per packet of FerroLB against the probe's.
func printCosts(flows []int, rows map[int][]row) {
	find := func(rs []row, name string) *row {
		for i := range rs {
			if rs[i].mode.name == name && rs[i].measured && rs[i].nsPerPkt > 0 {
				return &rs[i]
			}
		}
		return nil
	}
	fmt.Printf("cost per packet against the probe (ns/pkt, median of the statistics runs, and their range; target FerroLB <= %.1fx probe-one-line)\n", targetVsProbe)
	fmt.Printf("%8s %22s %22s %10s %22s %10s\n", "flows", "probe-one-line", "ferrolb-snat", "SNAT/probe", "ferrolb-dsr", "DSR/probe")
	cell := func(r *row) string {
		if r == nil {
			return "-"
		}
		return fmt.Sprintf("%.1f (%.1f-%.1f)", r.nsPerPkt, slices.Min(r.nsRuns), slices.Max(r.nsRuns))
	}
	ratio := func(r, p *row) string {
		if r == nil || p == nil {
			return "-"
		}
		v := r.nsPerPkt / p.nsPerPkt
		return fmt.Sprintf("%.2fx %s", v, map[bool]string{true: "met", false: "NOT"}[v <= targetVsProbe])
	}
	for _, n := range flows {
		p, s, d := find(rows[n], "probe-one-line"), find(rows[n], "ferrolb-snat"), find(rows[n], "ferrolb-dsr")
		fmt.Printf("%8d %22s %22s %10s %22s %10s\n", n, cell(p), cell(s), ratio(s, p), cell(d), ratio(d, p))
	}
}

func printTable(rows []row) {
	if len(rows) == 0 {
		return
	}
	find := func(name string) *row {
		for i := range rows {
			if rows[i].mode.name == name && rows[i].measured {
				return &rows[i]
			}
		}
		return nil
	}
	ceiling, ipt := find("drop-only"), find("iptables-nft")
	ratio := func(r *row, base *row) string {
		if base == nil || base.median() == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", r.median()/base.median())
	}
	fmt.Printf("%-17s %11s %13s %12s %15s %7s %10s %8s  %-13s %-26s %s\n", "mode", "kpps (med)", "runs min-max", "vs drop-only", "vs iptables-nft",
		"ns/pkt", "sent kpps", "refused", "per backend %", "arrived as", "what")
	fmt.Println(strings.Repeat("-", 180))
	for i := range rows {
		r := &rows[i]
		if !r.measured {
			fmt.Printf("%-17s %s\n", r.mode.name, r.note)
			continue
		}
		lo, hi := r.kpps[0], r.kpps[0]
		for _, v := range r.kpps {
			lo, hi = min(lo, v), max(hi, v)
		}
		ns := "-"
		if r.nsPerPkt >= 0 {
			ns = fmt.Sprintf("%.1f", r.nsPerPkt)
		}
		what := r.mode.what
		if r.note != "" {
			what += " (" + r.note + ")"
		}
		spread, arrived := "-", "-"
		if len(r.seen.per) > 1 && r.seen.all > 0 {
			var p []string
			for _, n := range r.seen.per {
				p = append(p, fmt.Sprintf("%.0f", 100*float64(n)/float64(r.seen.all)))
			}
			spread = strings.Join(p, "/")
			arrived = fmt.Sprintf("dst=be %.0f%% IPIP %.0f%%", 100*float64(r.seen.toBackend)/float64(r.seen.all), 100*float64(r.seen.ipip)/float64(r.seen.all))
			if r.seen.toVIP > 0 {
				arrived = fmt.Sprintf("decapsulated, dst=VIP %.0f%%", 100*float64(r.seen.toVIP)/float64(r.seen.all))
			}
		}
		fmt.Printf("%-17s %11.0f %13s %12s %15s %7s %10.0f %7.0f%%  %-13s %-26s %s\n", r.mode.name, r.median(), fmt.Sprintf("%.0f-%.0f", lo, hi),
			ratio(r, ceiling), ratio(r, ipt), ns, median(r.sentKpps), r.retryShare*100, spread, arrived, what)
	}
	fmt.Println("(sent: frames the generator got out; refused: share of its sendmmsg calls the veth refused, i.e. back-pressure from the node;")
	fmt.Println(" per backend, arrived as: of the last run's packets at the backends, each backend's share, and the share addressed to the backend itself or IPIP)")
	fmt.Println()
	for _, name := range []string{"ferrolb-snat", "ferrolb-dsr"} {
		r := find(name)
		if r == nil {
			continue
		}
		var parts []string
		if ceiling != nil {
			v := r.median() / ceiling.median()
			parts = append(parts, fmt.Sprintf(">= %.0f%% of drop-only: %.1f%% %s", targetOfCeiling*100, v*100, verdict(v >= targetOfCeiling)))
		} else {
			parts = append(parts, fmt.Sprintf(">= %.0f%% of drop-only: not measured", targetOfCeiling*100))
		}
		if ipt != nil {
			v := r.median() / ipt.median()
			parts = append(parts, fmt.Sprintf(">= %.1fx iptables DNAT (nft): %.2fx %s", targetVsIptables, v, verdict(v >= targetVsIptables)))
		} else {
			parts = append(parts, fmt.Sprintf(">= %.1fx iptables DNAT (nft): not measured", targetVsIptables))
		}
		if ceiling != nil && ceiling.nsPerPkt > 0 && r.nsPerPkt >= 0 {
			v := r.nsPerPkt / ceiling.nsPerPkt
			parts = append(parts, fmt.Sprintf("cost <= %.1fx drop-only: %.2fx %s", targetCost, v, verdict(v <= targetCost)))
		} else {
			parts = append(parts, fmt.Sprintf("cost <= %.1fx drop-only: not measured", targetCost))
		}
		fmt.Printf("targets %s: %s\n", name, strings.Join(parts, "; "))
	}
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}
