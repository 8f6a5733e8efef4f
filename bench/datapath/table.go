package main

import (
	"fmt"
	"strings"
)

// Targets for FerroLB's XDP program.
const (
	targetOfCeiling  = 0.95 // of the drop-only rate
	targetVsIptables = 1.7  // times iptables-nft's rate
	targetCost       = 2.5  // times the drop-only program's cost per packet
)

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
	fmt.Printf("%-16s %11s %17s %12s %14s %9s %10s  %s\n", "mode", "kpps (med)", "runs min-max", "vs drop-only", "vs iptables-nft", "ns/pkt", "sent kpps", "what")
	fmt.Println(strings.Repeat("-", 130))
	for i := range rows {
		r := &rows[i]
		if !r.measured {
			fmt.Printf("%-16s %s\n", r.mode.name, r.note)
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
		fmt.Printf("%-16s %11.0f %17s %12s %14s %9s %10.0f  %s\n", r.mode.name, r.median(), fmt.Sprintf("%.0f-%.0f", lo, hi),
			ratio(r, ceiling), ratio(r, ipt), ns, median(r.sentKpps), what)
	}
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
