package status

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/yaml"
)

// The output formats of Write.
const (
	FormatText = "text"
	FormatJSON = "json"
	FormatYAML = "yaml"
)

// Formats lists the formats Write knows.
var Formats = []string{FormatText, FormatJSON, FormatYAML}

// Write renders r in format: text (one screen for people), json or yaml (the Report itself).
func Write(w io.Writer, r *Report, format string) error {
	switch format {
	case FormatText, "":
		return WriteText(w, r)
	case FormatJSON:
		b, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return err
		}
		_, err = w.Write(append(b, '\n'))
		return err
	case FormatYAML:
		b, err := yaml.Marshal(r)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	default:
		return fmt.Errorf("unknown output format %q: use %s", format, strings.Join(Formats, ", "))
	}
}

// Summary is the report in one line: counts of pools, Services, sessions and speakers.
func (r *Report) Summary() string {
	parts := []string{plural(len(r.Pools), "pool")}
	svc := plural(len(r.Services), "Service")
	if n := r.PendingCount(); n > 0 {
		svc += fmt.Sprintf(" (%d pending)", n)
	}
	parts = append(parts, svc)
	sessions, up := 0, 0
	for _, p := range r.Peers {
		for _, s := range p.Sessions {
			sessions++
			if s.State == "Established" {
				up++
			}
		}
	}
	parts = append(parts, fmt.Sprintf("%s (%d/%d sessions established)", plural(len(r.Peers), "BGP peer"), up, sessions))
	parts = append(parts, "speakers "+r.Speakers.Readiness())
	return strings.Join(parts, ", ")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// Readiness is "ready/desired ready", or what is known of it.
func (s Speakers) Readiness() string {
	if s.Desired != nil && s.Ready != nil {
		return fmt.Sprintf("%d/%d ready", *s.Ready, *s.Desired)
	}
	ready := 0
	for _, p := range s.Pods {
		if p.Ready {
			ready++
		}
	}
	if len(s.Problems) > 0 && len(s.Pods) == 0 {
		return "unknown"
	}
	return fmt.Sprintf("%d/%d pods ready (DaemonSet unread)", ready, len(s.Pods))
}

// Age is how long before the report's time t was, as kubectl prints ages; "" for no time.
func (r *Report) Age(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return duration.HumanDuration(r.Time.Sub(t))
}

// Counts is "used/free" of a family, or "-".
func (c *Count) String() string {
	if c == nil {
		return "-"
	}
	return fmt.Sprintf("%d/%s", c.Used, c.Free)
}

// Line is a condition in one line: the message of a True one, "Reason: message" otherwise.
func (c *Condition) Line() string {
	if c == nil {
		return ""
	}
	if c.Status == "True" {
		return c.Message
	}
	if c.Message == "" {
		return c.Reason
	}
	return c.Reason + ": " + c.Message
}

// Notes are a Service's lines below its addresses: how it is announced, what is pending or
// partly refused. Each is a label and a text.
func (s Service) Notes() [][2]string {
	var out [][2]string
	if s.Pending != nil {
		out = append(out, [2]string{"pending", s.Pending.Line()})
	} else if s.Allocated != nil && s.Allocated.Reason != "Allocated" && s.Allocated.Status == "True" {
		out = append(out, [2]string{"allocated", s.Allocated.Reason + ": " + s.Allocated.Message})
	}
	if s.BGP != nil {
		out = append(out, [2]string{"BGP", s.BGP.Line()})
	}
	if s.Layer2 != nil {
		out = append(out, [2]string{"layer 2", s.Layer2.Line()})
	}
	return out
}

// AddressList is the addresses with their pools, "ip (pool p), ...".
func (s Service) AddressList() string {
	var parts []string
	for _, a := range s.Addresses {
		if a.Pool != "" {
			parts = append(parts, fmt.Sprintf("%s (pool %s)", a.IP, a.Pool))
		} else {
			parts = append(parts, a.IP+" (in no pool)")
		}
	}
	return strings.Join(parts, ", ")
}

// WriteText renders r for people: a summary line, then pools, Services, BGP sessions and
// speakers, each a block.
func WriteText(w io.Writer, r *Report) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "FerroLB at %s: %s\n", r.Time.Format("2006-01-02 15:04:05 MST"), r.Summary())

	b.WriteString("\nPOOLS\n")
	if len(r.Pools) == 0 {
		b.WriteString("  (no IPPool: Services stay pending until one exists)\n")
	} else {
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  NAME\tSTATE\tIPv4 USED/FREE\tIPv6 USED/FREE\tNOTE")
		for _, p := range r.Pools {
			var note []string
			if p.Message != "" {
				note = append(note, p.Message)
			}
			if p.Conflict != "" {
				note = append(note, "conflict: "+p.Conflict)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", p.Name, p.State, p.IPv4, p.IPv6, strings.Join(note, "; "))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	b.WriteString("\nSERVICES\n")
	if len(r.Services) == 0 {
		b.WriteString("  (no LoadBalancer Service)\n")
	}
	for _, s := range r.Services {
		addrs := s.AddressList()
		if addrs == "" {
			addrs = "(no address)"
		}
		fmt.Fprintf(&b, "  %s/%s  %s\n", s.Namespace, s.Name, addrs)
		for _, n := range s.Notes() {
			fmt.Fprintf(&b, "    %-8s %s\n", n[0], n[1])
		}
	}

	b.WriteString("\nBGP SESSIONS\n")
	if len(r.Peers) == 0 {
		b.WriteString("  (no BGPPeer)\n")
	} else {
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  PEER\tADDRESS\tNODE\tSESSION\tBFD\tPREFIXES\tSINCE\tNOTE")
		for _, p := range r.Peers {
			if len(p.Sessions) == 0 {
				fmt.Fprintf(tw, "  %s\t%s\t-\t-\t-\t-\t-\tno node reports a session\n", p.Name, p.Address)
			}
			for _, s := range p.Sessions {
				bfd := s.BFD
				if bfd == "" {
					bfd = "-"
				}
				if p.BFDProfile == "" {
					bfd = "off"
				}
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", p.Name, p.Address, s.Node, s.State, bfd, s.Advertised,
					or(r.Age(s.Since), "-"), s.Message)
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	sp := r.Speakers
	fmt.Fprintf(&b, "\nSPEAKERS (DaemonSet %s/%s): %s\n", sp.Namespace, sp.DaemonSet, sp.Readiness())
	for _, p := range sp.Pods {
		if !p.Ready {
			fmt.Fprintf(&b, "  not ready: %s on %s (%s)\n", p.Name, or(p.Node, "no node"), or(p.Reason, "unknown"))
		}
	}
	for _, p := range sp.Problems {
		fmt.Fprintf(&b, "  could not read: %s\n", p)
	}
	// The tables pad their last cells; lines end with their text.
	lines := strings.Split(b.String(), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	_, err := io.WriteString(w, strings.Join(lines, "\n"))
	return err
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
