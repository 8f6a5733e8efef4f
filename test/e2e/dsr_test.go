package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferrolb/ferrolb/internal/config"
	"github.com/ferrolb/ferrolb/internal/datapath"
	"github.com/ferrolb/ferrolb/internal/datapath/inspect"
	"github.com/ferrolb/ferrolb/internal/lab"
	"github.com/ferrolb/ferrolb/internal/lab/netns"
)

// TestDSR: with the XDP datapath on (the nodes' default mode SNAT), a Service annotated
// ferrolb.io/datapath-mode=dsr is carried by DSR end to end. Real HTTP connections from
// behind the router (BGP, both families, ECMP over the nodes) and from the LAN (layer 2)
// are answered; every node's datapath sends the flows it balances to the other nodes'
// pods in IPIP / IP6IP6 (inspect: mode dsr; metrics: packets to those pods), and those
// nodes' decapsulators strip them (ferrolb_datapath_decap_packets_total) and hand the
// client's packet to the node's stack, where kube-proxy carries it to a pod and the reply
// leaves from that node straight to the client. A Service without the annotation, on the
// same port, stays SNAT.
//
// MTU: the outer header adds 20 / 40 bytes to what the client sends, and the lab's links
// all have 1500; a client's packets here are small (a GET and ACKs: the replies are what
// is large, and they do not come back through the balancer). rp_filter: the client's
// packet leaves the decapsulator on the node's eth0, the interface its route back to the
// client uses, so strict reverse path filtering passes it.
func TestDSR(t *testing.T) {
	l := getLab(t)
	ctx := t.Context()
	dsr := map[string]string{config.AnnotationDatapathMode: "dsr"}
	for _, s := range []struct {
		name, pool string
		o          lab.ServiceOptions
	}{
		{"web-dsr", "lab-bgp", lab.ServiceOptions{DualStack: true, Port: lab.PodPort, Annotations: dsr}},
		{"web-dsr-l2", "lab-l2", lab.ServiceOptions{Port: lab.PodPort, Annotations: dsr}},
		{"web-plain", "lab-bgp", lab.ServiceOptions{DualStack: true, Port: lab.PodPort}},
		{"web-typo", "lab-bgp", lab.ServiceOptions{Port: lab.PodPort, Annotations: map[string]string{config.AnnotationDatapathMode: "direct"}}},
	} {
		if err := l.CreateServiceWith(ctx, s.name, s.pool, s.o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := l.DeleteService(context.Background(), s.name); err != nil {
				t.Errorf("delete %s: %v", s.name, err)
			}
		})
	}
	if err := l.SetDatapath(ctx, datapath.XDP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.SetDatapath(context.Background(), datapath.None); err != nil {
			t.Errorf("back to kube-proxy: %v", err)
		}
	})
	addrs := map[string][]string{}
	for _, name := range []string{"web-dsr", "web-dsr-l2", "web-plain", "web-typo"} {
		eventually(t, 30*time.Second, name+" gets its addresses", func() (bool, string) {
			a, err := l.Addresses(ctx, name)
			addrs[name] = a
			return err == nil && (len(a) == 2 || ((name == "web-dsr-l2" || name == "web-typo") && len(a) == 1)), fmt.Sprint(a, err)
		})
	}
	decapBefore := decapCounts(t, l)

	// Over BGP the router spreads connections over the three nodes, and each node's
	// Maglev sends two in three of its flows to another node's pod: 40 connections miss
	// DSR entirely with a chance of (1/3)^40. Over layer 2 all go to the announcing node.
	for _, c := range []struct {
		svc  string
		from *netns.NS
	}{{"web-dsr", l.WAN}, {"web-dsr-l2", l.Client}} {
		for _, a := range addrs[c.svc] {
			eventually(t, 30*time.Second, c.svc+" "+a+" answers from "+c.from.Name, func() (bool, string) {
				body, err := lab.GetPort(ctx, c.from, a, lab.PodPort)
				return err == nil && strings.HasPrefix(body, "pod-"), fmt.Sprint(body, err)
			})
			seen := map[string]int{}
			for range 40 {
				body, err := lab.GetPort(ctx, c.from, a, lab.PodPort)
				if err != nil {
					t.Errorf("%s %s: %v", c.svc, a, err)
					continue
				}
				seen[strings.Fields(body)[0]]++
			}
			t.Logf("%s (%s) from %s: %v", a, c.svc, c.from.Name, seen)
		}
	}

	// The balancers: the DSR Service is programmed dsr on every node, the other snat; the
	// DSR flows to other nodes' pods are in conntrack as dsr, and the datapath counted
	// packets sent to those pods.
	dsrToPods := map[string]int{} // pod address: DSR flows to it, over all nodes
	for _, n := range l.Nodes {
		c := inspect.NewClient("").Within(n.NS.Do)
		o, err := c.Overview(ctx)
		if err != nil {
			t.Fatalf("%s: inspect: %v", n.Name, err)
		}
		for svc, want := range map[string]string{"web-dsr": "dsr", "web-dsr-l2": "dsr", "web-plain": "snat", "web-typo": "snat"} {
			for _, a := range addrs[svc] {
				i := slices.IndexFunc(o.Services, func(s inspect.Service) bool { return s.Address == a && s.Port == lab.PodPort })
				if i < 0 || o.Services[i].Mode != want {
					t.Errorf("%s: inspect: %s (%s) not programmed in mode %s: %+v", n.Name, a, svc, want, o.Services)
				}
			}
		}
		for _, a := range append(slices.Clone(addrs["web-dsr"]), addrs["web-dsr-l2"]...) {
			ct, err := c.Conntrack(ctx, inspect.Query{VIP: netip.MustParseAddr(a), Port: lab.PodPort, Proto: datapath.TCP})
			if err != nil {
				t.Fatalf("%s: inspect conntrack: %v", n.Name, err)
			}
			for _, f := range ct.Flows {
				if f.Backend == "" {
					continue // stale: its next packet is a new flow's
				}
				own := strings.HasPrefix(f.Backend, n.PodV4+":") || strings.HasPrefix(f.Backend, "["+n.PodV6+"]:")
				switch {
				case f.Mode == "dsr" && !own:
					ap, err := netip.ParseAddrPort(f.Backend)
					if err != nil {
						t.Fatalf("%s: flow %+v: %v", n.Name, f, err)
					}
					dsrToPods[ap.Addr().String()]++
				case f.Mode == "stack" && own:
				default:
					t.Errorf("%s: flow %+v: want dsr to another node's pod, or stack to its own", n.Name, f)
				}
			}
		}
	}
	t.Logf("DSR flows to each pod, over the nodes' conntrack: %v", dsrToPods)
	sent := map[string]float64{}
	for _, n := range l.Nodes {
		for b, v := range datapathPackets(t, n) {
			sent[b] += v
		}
	}
	decapAfter := decapCounts(t, l)
	t.Logf("decapsulated per node: before %v, after %v", decapBefore, decapAfter)
	for _, n := range l.Nodes {
		got := decapAfter[n.Name] - decapBefore[n.Name]
		if dsrToPods[n.PodV4]+dsrToPods[n.PodV6] > 0 && got == 0 {
			t.Errorf("%s: its pod had DSR flows (%d, %d) but its decapsulator stripped nothing", n.Name, dsrToPods[n.PodV4], dsrToPods[n.PodV6])
		}
		if sent[n.PodV4]+sent[n.PodV6] > 0 && got == 0 {
			t.Errorf("%s: the datapaths sent its pod %v / %v packets, none decapsulated", n.Name, sent[n.PodV4], sent[n.PodV6])
		}
	}
	if len(dsrToPods) < 2 {
		t.Errorf("DSR flows reached %v: want at least two nodes' pods", dsrToPods)
	}
	for _, fam := range []bool{false, true} {
		pods := 0
		for _, n := range l.Nodes {
			p := n.PodV4
			if fam {
				p = n.PodV6
			}
			pods += dsrToPods[p]
		}
		if pods == 0 {
			t.Errorf("no DSR flow in IPv6=%v: %v", fam, dsrToPods)
		}
	}

	// The Service without the annotation stays SNAT: it answers, its flows are snat or
	// stack, and no node decapsulates anything for it.
	for _, a := range addrs["web-plain"] {
		for range 20 {
			if body, err := lab.GetPort(ctx, l.WAN, a, lab.PodPort); err != nil || !strings.HasPrefix(body, "pod-") {
				t.Errorf("web-plain %s: %q %v", a, body, err)
			}
		}
		for _, n := range l.Nodes {
			ct, err := inspect.NewClient("").Within(n.NS.Do).Conntrack(ctx, inspect.Query{VIP: netip.MustParseAddr(a), Port: lab.PodPort, Proto: datapath.TCP})
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range ct.Flows {
				if f.Mode == "dsr" {
					t.Errorf("%s: web-plain flow %+v went by DSR", n.Name, f)
				}
			}
		}
	}
	if final := decapCounts(t, l); !mapsEqual(final, decapAfter) {
		t.Errorf("SNAT connections were decapsulated: %v, then %v", decapAfter, final)
	}

	// An invalid mode: each node says so on the Service, naming the annotation, and uses
	// its default (SNAT, checked above), which still answers.
	eventually(t, 15*time.Second, "a Warning Event per node on web-typo", func() (bool, string) {
		var evs eventsv1.EventList
		if err := l.Env.Client.List(ctx, &evs, client.InNamespace("default")); err != nil {
			return false, err.Error()
		}
		var notes []string
		for _, e := range evs.Items {
			if e.Regarding.Name == "web-typo" && e.Type == corev1.EventTypeWarning && e.Reason == "InvalidDatapathMode" &&
				strings.Contains(e.Note, config.AnnotationDatapathMode) && strings.Contains(e.Note, `"direct"`) {
				notes = append(notes, e.Note)
			}
		}
		return len(notes) == len(l.Nodes), fmt.Sprint(notes)
	})
	if body, err := lab.GetPort(ctx, l.WAN, addrs["web-typo"][0], lab.PodPort); err != nil || !strings.HasPrefix(body, "pod-") {
		t.Errorf("web-typo: %q %v", body, err)
	}
}

func mapsEqual(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// decapCounts reads every node's ferrolb_datapath_decap_packets_total{result="decapsulated"}.
func decapCounts(t *testing.T, l *lab.Lab) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, n := range l.Nodes {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		text, err := n.NS.Get(ctx, "http://127.0.0.1:7474/metrics", 1<<20)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(text, "\n") {
			if strings.HasPrefix(line, `ferrolb_datapath_decap_packets_total{result="decapsulated"} `) {
				var v float64
				if _, err := fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &v); err != nil {
					t.Fatalf("%s: %q: %v", n.Name, line, err)
				}
				out[n.Name] = v
			}
		}
	}
	return out
}
