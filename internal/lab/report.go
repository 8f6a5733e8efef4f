package lab

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferrolb/ferrolb/internal/datapath"
	labfrr "github.com/ferrolb/ferrolb/internal/lab/frr"
	"github.com/ferrolb/ferrolb/internal/speaker"
)

// Report is the lab's short account of itself: what runs where, which address each
// Service got, who announces it, what a real request returned, and what to try next, ending
// with down, the command that removes the lab.
func (l *Lab) Report(ctx context.Context, down string) string {
	var b strings.Builder
	host := l.Env.Config.Host
	fmt.Fprintf(&b, "FerroLB lab is up.\n\n")
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "API server\t%s (kube-apiserver and etcd; controller in the lab process)\n", host)
	fmt.Fprintf(w, "router\t%s: FRR, AS %d, LAN %s %s, WAN %s\n", l.Router.Name, RouterASN, RouterLAN4, RouterLAN6, RouterWAN4)
	carrier := "speaker + kube-proxy (nftables)"
	if l.datapath == datapath.XDP {
		carrier = "speaker with the XDP datapath on eth0 (SNAT) + kube-proxy (nftables)"
	}
	for _, n := range l.Nodes {
		fmt.Fprintf(w, "%s\t%s: %s %s, %s; pod %s %s in %s\n", n.Name, n.NS.Name, n.IPv4, n.IPv6, carrier, n.PodV4, n.PodV6, n.PodNS.Name)
	}
	fmt.Fprintf(w, "client\t%s: %s on the nodes' LAN\n", l.Client.Name, ClientIP4)
	fmt.Fprintf(w, "wan\t%s: %s behind the router\n", l.WAN.Name, WANIP4)
	_ = w.Flush()

	fmt.Fprintf(&b, "\nServices (namespace default, port 80):\n")
	w = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, name := range []string{ServiceL2, ServiceBGP} {
		addrs, err := l.Addresses(ctx, name)
		if err != nil {
			fmt.Fprintf(w, "%s\terror: %v\n", name, err)
			continue
		}
		for _, a := range addrs {
			var how string
			from := l.WAN
			if name == ServiceL2 {
				from = l.Client
				how = "layer 2: " + l.announcedBy(ctx, name)
			} else {
				nh, _ := labfrr.KernelNexthops(l.Router, HostPrefix(a))
				how = fmt.Sprintf("BGP: router's route via %s", strings.Join(nh, ", "))
			}
			answer, err := Get(ctx, from, a)
			if err != nil {
				answer = "no answer: " + err.Error()
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s answers: %s\n", name, a, how, strings.TrimPrefix(from.Name, l.prefix), strings.TrimSpace(answer))
		}
	}
	_ = w.Flush()

	fmt.Fprintf(&b, "\nTry next:\n")
	fmt.Fprintf(&b, "  export KUBECONFIG=%s\n", l.Kubeconfig)
	fmt.Fprintf(&b, "  %s get services,ippools,bgppeers   # ESTABLISHED: each node's BGP session\n", l.kubectl)
	fmt.Fprintf(&b, "  %s describe service %s   # the Announced condition: who answers ARP\n", l.kubectl, ServiceL2)
	fmt.Fprintf(&b, "  sudo ip netns exec %s curl -s http://<%s address>/\n", l.WAN.Name, ServiceBGP)
	fmt.Fprintf(&b, "  sudo ip netns exec %s ip route           # the ECMP routes FRR installed\n", l.Router.Name)
	fmt.Fprintf(&b, "  sudo vtysh --vty_socket %s -c 'show bgp summary'\n", l.FRR.Dir)
	if l.datapath == datapath.XDP {
		fmt.Fprintf(&b, "  sudo ip netns exec %s curl -s 127.0.0.1:7474/metrics | grep ferrolb_datapath   # packets per backend\n", l.Nodes[0].NS.Name)
	}
	fmt.Fprintf(&b, "  logs: %s\n", l.Dir)
	fmt.Fprintf(&b, "  sudo %s\n", down)
	return b.String()
}

// announcedBy is the message of the Service's Announced condition (which node answers).
func (l *Lab) announcedBy(ctx context.Context, name string) string {
	svc := &corev1.Service{}
	if err := l.Env.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: name}, svc); err != nil {
		return err.Error()
	}
	c := meta.FindStatusCondition(svc.Status.Conditions, speaker.ConditionAnnounced)
	if c == nil {
		return "not announced yet"
	}
	return strings.TrimPrefix(c.Message, "announced: ")
}
