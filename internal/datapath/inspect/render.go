package inspect

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Formats are the output formats of the Write functions.
var Formats = []string{"text", "json"}

// CheckFormat fails for a format the Write functions do not know.
func CheckFormat(f string) error {
	for _, k := range Formats {
		if f == k {
			return nil
		}
	}
	return fmt.Errorf("output format %q: want text or json", f)
}

// writeJSON writes v indented, for people and jq alike.
func writeJSON(w io.Writer, v any) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(v)
}

// WriteOverview prints every Service with its backends, then the packets not forwarded.
func WriteOverview(w io.Writer, format string, o Overview) error {
	if format == "json" {
		return writeJSON(w, o)
	}
	attached := "none (the speaker is starting, or the interface is gone)"
	if len(o.Interfaces) > 0 {
		attached = ""
		for i, x := range o.Interfaces {
			if i > 0 {
				attached += ", "
			}
			attached += fmt.Sprintf("%s (%s)", x.Name, x.XDPMode)
		}
	}
	fmt.Fprintf(w, "XDP program on: %s\n\n", attached)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(o.Services) == 0 {
		fmt.Fprintln(tw, "No services programmed.")
	} else {
		fmt.Fprintln(tw, "SERVICE\tNAME\tMODE\tBACKEND\tWEIGHT\tMAGLEV ENTRIES\tNEXT HOP\tPACKETS\tBYTES")
	}
	for _, s := range o.Services {
		mode := s.Mode
		if s.AffinitySeconds > 0 {
			mode += fmt.Sprintf(" (affinity %v)", time.Duration(s.AffinitySeconds*float64(time.Second)))
		}
		active, draining := 0, 0
		for _, b := range s.Backends {
			if b.Draining {
				draining++
			} else {
				active++
			}
		}
		backends := fmt.Sprintf("%d backends", active)
		switch active {
		case 0:
			backends = "none: passed (no-backend)"
		case 1:
			backends = "1 backend"
		}
		if draining > 0 {
			backends += fmt.Sprintf(", %d draining", draining)
		}
		table := "-"
		if s.TableSize > 0 {
			table = fmt.Sprint(s.TableSize)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\t%s\t\t%d\t%d\n", s.Key(), dash(s.Name), mode, backends, table, s.Packets, s.Bytes)
		for _, b := range s.Backends {
			fmt.Fprintf(tw, "\t\t\t%s\t%s\t%s\t%s\t%d\t%d\n", b.Address, weight(b), entries(b.MaglevEntries, s.TableSize),
				b.NextHop, b.Packets, b.Bytes)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nPackets not forwarded, since the speaker started:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REASON\tACTION\tPACKETS")
	for _, r := range o.Reasons {
		fmt.Fprintf(tw, "%s\t%s\t%d\n", r.Reason, r.Action, r.Packets)
	}
	return tw.Flush()
}

// WriteService prints one Service and its Maglev table's share per backend.
func WriteService(w io.Writer, format string, s Service) error {
	if format == "json" {
		return writeJSON(w, s)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Service:\t%s\n", s.Key())
	fmt.Fprintf(tw, "Name:\t%s\n", dash(s.Name))
	mode := s.Mode
	if s.AffinitySeconds > 0 {
		mode += fmt.Sprintf(", ClientIP affinity %v", time.Duration(s.AffinitySeconds*float64(time.Second)))
	}
	fmt.Fprintf(tw, "Mode:\t%s\n", mode)
	if s.TableSize == 0 {
		fmt.Fprintf(tw, "Maglev table:\tnone (no backends: packets pass to the kernel, counted as no-backend)\n")
	} else {
		fmt.Fprintf(tw, "Maglev table:\t%d entries\n", s.TableSize)
	}
	fmt.Fprintf(tw, "Traffic:\t%d packets, %d bytes\n", s.Packets, s.Bytes)
	if s.Flows != nil {
		stale := *s.Flows
		for _, b := range s.Backends {
			if b.Flows != nil {
				stale -= *b.Flows
			}
		}
		if stale > 0 {
			fmt.Fprintf(tw, "Flows:\t%d in conntrack, %d of them stale (their backend is gone: the next packet is a new flow)\n", *s.Flows, stale)
		} else {
			fmt.Fprintf(tw, "Flows:\t%d in conntrack\n", *s.Flows)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(s.Backends) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "BACKEND\tWEIGHT\tENTRIES\tSHARE\tFLOWS\tNEXT HOP\tPACKETS\tBYTES\t")
	sum, flows := 0, 0
	for _, b := range s.Backends {
		sum += b.MaglevEntries
		f := "-"
		if b.Flows != nil {
			f = fmt.Sprint(*b.Flows)
			flows += *b.Flows
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%d\t%d\t\n", b.Address, weight(b), b.MaglevEntries, share(b.MaglevEntries, s.TableSize),
			f, b.NextHop, b.Packets, b.Bytes)
	}
	fmt.Fprintf(tw, "total\t\t%d\t%s\t%d\t\t\t\t\n", sum, share(sum, s.TableSize), flows)
	return tw.Flush()
}

// WriteConntrack prints the conntrack tables' size and the flows selected.
func WriteConntrack(w io.Writer, format string, c Conntrack) error {
	if format == "json" {
		return writeJSON(w, c)
	}
	fmt.Fprintf(w, "Conntrack: %d IPv4 and %d IPv6 entries; %d match.\n", c.IPv4Entries, c.IPv6Entries, c.Matched)
	if len(c.Flows) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT\tSERVICE\tPROTO\tMODE\tBACKEND\tNAT PORT\tSTATE\tIDLE")
	for _, f := range c.Flows {
		nport, idle := "-", "-"
		if f.Mode == "snat" {
			nport = fmt.Sprint(f.NATPort)
			if f.State != "port-lost" {
				idle = time.Duration(f.IdleSeconds * float64(time.Second)).Round(time.Second).String()
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Client, f.Service, f.Protocol, f.Mode,
			dashOr(f.Backend, "stale"), nport, dash(f.State), idle)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if n := c.Matched - len(c.Flows); n > 0 {
		fmt.Fprintf(w, "... and %d more (--limit).\n", n)
	}
	return nil
}

func dash(s string) string { return dashOr(s, "-") }

func dashOr(s, or string) string {
	if s == "" {
		return or
	}
	return s
}

func weight(b Backend) string {
	if b.Draining {
		return "draining"
	}
	return fmt.Sprint(b.Weight)
}

func share(n, of int) string {
	if of == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(of))
}

func entries(n, of int) string {
	if of == 0 {
		return "-"
	}
	return fmt.Sprintf("%d (%s)", n, share(n, of))
}
