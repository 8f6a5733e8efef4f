package compat

import (
	"fmt"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferrolb/ferrolb/internal/datapath"
	"github.com/ferrolb/ferrolb/internal/maglev"
)

// ciliumConfigMap is Cilium's agent configuration, the ConfigMap cilium-config that its Helm
// chart renders (kube-system by default). Its data are the agent's flags by name. Data values
// are read leniently (Cilium's own documentation writes `enable-l2-announcements: true`
// unquoted), as the conversion only gives hints from them.
type ciliumConfigMap struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Data            map[string]any    `json:"data"`
	BinaryData      map[string]any    `json:"binaryData"`
	Immutable       *bool             `json:"immutable"`
}

// ciliumConfigName is the name of Cilium's ConfigMap.
const ciliumConfigName = "cilium-config"

// ciliumConfig reads the load-balancing settings of Cilium's agent. None of them is an object
// FerroLB has: they say who carries Service traffic on the nodes and how, which FerroLB sets
// with the speaker's flags (the chart's speaker values). So each setting that asks for more
// than kube-proxy does is a warning naming the flags that come closest; the rest of the
// ConfigMap (the CNI's own settings) is not FerroLB's concern and is left alone. Nothing is
// written.
func (c *converter) ciliumConfig(src Source, cm *ciliumConfigMap) {
	data := map[string]string{}
	for k, v := range cm.Data {
		if v != nil {
			data[k] = strings.ToLower(strings.TrimSpace(fmt.Sprint(v)))
		}
	}
	// lookup returns the first of keys that is set: Cilium's current name first, then the
	// names it had before 1.10 (node-port-*), then loadbalancer-*, which guides write for
	// the Helm values loadBalancer.mode and loadBalancer.algorithm.
	lookup := func(keys ...string) (key, value string) {
		for _, k := range keys {
			if v, ok := data[k]; ok && v != "" {
				return k, v
			}
		}
		return "", ""
	}
	field := func(key string) string { return "data." + key }
	alias := func(key, current string) string {
		if key == current {
			return ""
		}
		return fmt.Sprintf(" (%s is read here as %s, Cilium's current name for it)", key, current)
	}

	const xdp = "ferrolb speaker --datapath=xdp (the chart's speaker.datapath=xdp)"
	const kubeProxy = "kube-proxy (or Cilium, while its kube-proxy replacement runs)"

	if k, v := lookup("kube-proxy-replacement"); v != "" && v != "false" && v != "disabled" {
		c.warn(src, field(k), "%q: Cilium carries Service traffic on the nodes in place of kube-proxy. FerroLB assigns "+
			"and announces the addresses and by default leaves their traffic to kube-proxy or the CNI (ferrolb speaker "+
			"--datapath=none): keep Cilium's kube-proxy replacement running (it serves load balancer addresses "+
			"whoever announces them), or run kube-proxy before Cilium goes. With %s, FerroLB carries load balancer "+
			"traffic to the endpoints it reaches through its interface itself, and still leaves the rest (ClusterIPs, "+
			"NodePorts, endpoints on the node itself or behind an overlay) to kube-proxy or the CNI", v, xdp)
	}

	if k, v := lookup("bpf-lb-mode", "node-port-mode", "loadbalancer-mode"); v != "" {
		why := alias(k, "bpf-lb-mode")
		switch v {
		case "snat":
		case "dsr":
			dispatch := "opt"
			if _, d := lookup("bpf-lb-dsr-dispatch"); d != "" {
				dispatch = d
			}
			theirs := fmt.Sprintf("Cilium's DSR dispatch here is %s", dispatch)
			if dispatch == "opt" || dispatch == "geneve" {
				theirs = fmt.Sprintf("which Cilium's DSR (dispatch %s) leaves to Cilium on the endpoint's node", dispatch)
			}
			c.warn(src, field(k), "dsr%s: Cilium forwards load balancer traffic to endpoints on other nodes without "+
				"SNAT, and they answer clients directly. FerroLB does so with %s and --datapath-dsr "+
				"(speaker.datapathDSR=true), sending each packet to the endpoint in IPIP (IP6IP6 for IPv6): the "+
				"endpoint must decapsulate it and hold the Service address itself, %s. Services whose targetPort "+
				"differs from their port get SNAT. Without these flags FerroLB only announces, and %s carries the "+
				"traffic", why, xdp, theirs, kubeProxy)
		case "hybrid":
			c.warn(src, field(k), "hybrid%s: Cilium uses DSR for TCP and SNAT for UDP. FerroLB's datapath, %s, uses "+
				"one mode for both: SNAT by default, DSR with --datapath-dsr (speaker.datapathDSR=true; endpoints must "+
				"decapsulate IPIP and hold the Service address). Without it FerroLB only announces, and %s carries the "+
				"traffic", why, xdp, kubeProxy)
		case "annotation":
			c.warn(src, field(k), "annotation%s: Cilium picks SNAT or DSR per Service (service.cilium.io/forwarding-mode); "+
				"FerroLB's datapath (%s) uses one mode for every Service, DSR with --datapath-dsr", why, xdp)
		default:
			c.warn(src, field(k), "%q%s is not a mode ferrolb convert knows (snat, dsr, hybrid); FerroLB's datapath is "+
				"%s, SNAT by default, DSR with --datapath-dsr (speaker.datapathDSR=true)", v, why, xdp)
		}
	}
	if k, v := lookup("bpf-lb-mode-annotation"); v == "true" {
		c.warn(src, field(k), "Cilium picks SNAT or DSR per Service (service.cilium.io/forwarding-mode); FerroLB's "+
			"datapath (%s) uses one mode for every Service, DSR with --datapath-dsr (speaker.datapathDSR=true)", xdp)
	}

	if k, v := lookup("bpf-lb-algorithm", "node-port-algorithm", "loadbalancer-algorithm"); v != "" {
		why := alias(k, "bpf-lb-algorithm")
		switch v {
		case "random":
		case "maglev":
			c.warn(src, field(k), "maglev%s: Cilium picks endpoints by Maglev consistent hashing. FerroLB's datapath "+
				"always does: %s. Without it FerroLB only announces, and %s picks the endpoints", why, xdp, kubeProxy)
		default:
			c.warn(src, field(k), "%q%s is not an algorithm ferrolb convert knows (random, maglev); FerroLB's "+
				"datapath (%s) picks endpoints by Maglev", v, why, xdp)
		}
	}
	if k, v := lookup("bpf-lb-maglev-table-size"); v != "" {
		if n, err := strconv.Atoi(v); err != nil || maglev.CheckSize(n) != nil {
			c.warn(src, field(k), "%q is not a Maglev table size: FerroLB's --datapath-maglev-table-size "+
				"(speaker.datapathMaglevTableSize) takes a prime from %d to %d, by default %d", v, maglev.MinSize, maglev.MaxSize, maglev.DefaultSize)
		} else {
			c.warn(src, field(k), "%d: ferrolb speaker --datapath-maglev-table-size=%d (the chart's "+
				"speaker.datapathMaglevTableSize=%d), with %s", n, n, n, xdp)
		}
	}
	if k, v := lookup("bpf-lb-maglev-hash-seed"); v != "" {
		c.warn(src, field(k), "FerroLB's datapath seeds its Maglev tables itself (the same on every node); not converted")
	}
	c.ciliumConntrack(src, lookup, xdp)
	if k, v := lookup("bpf-lb-algorithm-annotation"); v == "true" {
		c.warn(src, field(k), "Cilium picks the algorithm per Service (service.cilium.io/lb-algorithm); FerroLB's "+
			"datapath (%s) uses Maglev for every Service", xdp)
	}

	if k, v := lookup("bpf-lb-acceleration", "node-port-acceleration"); v != "" && v != "disabled" && v != "none" {
		why := alias(k, "bpf-lb-acceleration")
		devices := ""
		if _, d := lookup("devices"); d != "" {
			devices = fmt.Sprintf(" (Cilium's devices: %s)", d)
		}
		mode, note := "", ""
		switch v {
		case "native":
			mode, note = "native", "; an interface without native XDP is then an error, as in Cilium"
		case "best-effort":
			mode, note = "auto", "; where Cilium's best-effort leaves a device without native XDP to its tc "+
				"programs, FerroLB's auto runs the program in generic mode on all the node's interfaces"
		case "generic":
			mode = "generic"
		}
		if mode == "" {
			c.warn(src, field(k), "%q%s is not an acceleration ferrolb convert knows (native, best-effort, generic); "+
				"FerroLB's XDP datapath (%s) is attached in native, generic or auto mode: --datapath-xdp-mode "+
				"(speaker.datapathXDPMode)", v, why, xdp)
		} else {
			c.warn(src, field(k), "%s%s: Cilium runs its load balancer in XDP on the nodes' devices%s. FerroLB's "+
				"equivalent is %s --datapath-xdp-mode=%s (speaker.datapathXDPMode=%s), on one interface per node: "+
				"--datapath-interface (speaker.datapathInterface), by default the one holding the node's InternalIP%s",
				v, why, devices, xdp, mode, mode, note)
		}
	}

	if k, v := lookup("enable-l2-announcements"); v == "true" {
		leases := ""
		for _, key := range []string{"l2-announcements-lease-duration", "l2-announcements-renew-deadline", "l2-announcements-retry-period"} {
			if _, lv := lookup(key); lv != "" {
				leases = "; its lease settings (l2-announcements-lease-duration, -renew-deadline, -retry-period) have " +
					"no equivalent: FerroLB's speakers elect by heartbeats (ferrolb speaker --member-interval, 100 ms; " +
					"a node missing 3 is dead)"
				break
			}
		}
		c.warn(src, field(k), "Cilium answers ARP for Service addresses: convert its CiliumL2AnnouncementPolicies "+
			"(L2Policies), and turn this off (Helm l2announcements.enabled=false) before FerroLB's speakers start, "+
			"as two systems must not answer for one address%s", leases)
	}
	if k, v := lookup("enable-bgp-control-plane"); v == "true" {
		c.warn(src, field(k), "Cilium's BGP control plane advertises Service addresses: convert its BGP objects "+
			"(BGPPeers, BGPAdvertisements), and turn it off (Helm bgpControlPlane.enabled=false) before FerroLB's "+
			"speakers peer with the same routers from the same nodes")
	}
	if k, v := lookup("enable-lb-ipam"); v == "true" {
		c.warn(src, field(k), "Cilium's operator assigns Service addresses from CiliumLoadBalancerIPPools: convert the "+
			"pools (IPPools), and set this to false (Helm enableLBIPAM=false) before FerroLB's controller assigns "+
			"addresses, as two allocators must never serve the same Services")
	}
}

// Cilium's conntrack sizes by default (bpf-ct-global-tcp-max, bpf-ct-global-any-max).
const ciliumCTTCPMax, ciliumCTAnyMax = 524288, 262144

// ciliumConntrack hints from Cilium's conntrack sizes. Cilium has a table for TCP and one for
// the rest, each per address family; FerroLB one for both per family, so its size is their
// sum (with Cilium's default for a key not set), within FerroLB's bounds.
func (c *converter) ciliumConntrack(src Source, lookup func(keys ...string) (string, string), xdp string) {
	tk, tv := lookup("bpf-ct-global-tcp-max")
	ak, av := lookup("bpf-ct-global-any-max")
	if tv == "" && av == "" {
		return
	}
	k := tk
	if k == "" {
		k = ak
	}
	sum := 0
	for _, x := range []struct {
		key, value string
		def        int
	}{{"bpf-ct-global-tcp-max", tv, ciliumCTTCPMax}, {"bpf-ct-global-any-max", av, ciliumCTAnyMax}} {
		if x.value == "" {
			sum += x.def
			continue
		}
		n, err := strconv.Atoi(x.value)
		if err != nil || n <= 0 {
			c.warn(src, "data."+x.key, "%q is not a number of entries; FerroLB's conntrack size is "+
				"--datapath-conntrack-entries (speaker.datapathConntrackEntries), %d to %d", x.value,
				datapath.MinConntrackSize, datapath.MaxConntrackSize)
			return
		}
		sum += n
	}
	n := min(max(sum, datapath.MinConntrackSize), datapath.MaxConntrackSize)
	bound := ""
	if n != sum {
		bound = fmt.Sprintf(" (their sum, %d, brought within FerroLB's %d to %d)", sum, datapath.MinConntrackSize, datapath.MaxConntrackSize)
	}
	c.warn(src, "data."+k, "Cilium's conntrack holds bpf-ct-global-tcp-max TCP and bpf-ct-global-any-max other "+
		"flows (by default %d and %d); FerroLB's one table for both (per address family) is "+
		"--datapath-conntrack-entries=%d%s (the chart's speaker.datapathConntrackEntries=%d), with %s",
		ciliumCTTCPMax, ciliumCTAnyMax, n, bound, n, xdp)
}
