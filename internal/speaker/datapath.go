package speaker

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/ferrolb/ferrolb/internal/config"
	"github.com/ferrolb/ferrolb/internal/datapath"
)

// defaultAffinityTimeout is Kubernetes' default for ClientIP session affinity (3 hours).
const defaultAffinityTimeout = 10800 * time.Second

// datapathReconciler programs the node's XDP load balancer with every served Service that
// has addresses, and its ready endpoints. It is level-triggered: each reconcile hands the
// whole set to the datapath, which applies only the difference.
type datapathReconciler struct {
	client client.Client
	node   string
	class  string
	mode   datapath.Mode // the node's default: --datapath-dsr
	dp     *datapath.Datapath
	health *datapathHealth // active health checks (health.go); nil: none
	// decap strips the DSR packets other nodes send to this node's endpoints.
	decap    *datapath.Decapsulator
	reporter *reporter

	mu    sync.Mutex
	names map[serviceKey]string // Service name per programmed (VIP, port, protocol), for metrics
}

type serviceKey struct {
	vip   netip.Addr
	port  uint16
	proto datapath.Protocol
}

func (r *datapathReconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	var (
		svcs corev1.ServiceList
		eps  discoveryv1.EndpointSliceList
	)
	for _, l := range []client.ObjectList{&svcs, &eps} {
		if err := r.client.List(ctx, l); err != nil {
			return ctrl.Result{}, err
		}
	}
	progs, names, notes := planDatapath(svcs.Items, eps.Items, r.node, r.class, r.mode)
	for _, n := range notes {
		logf.FromContext(ctx).Info(n)
	}
	if r.reporter != nil {
		r.reporter.report("datapath", datapathProblems(svcs.Items, progs, names, r.class, r.mode))
	}
	progs = r.health.filter(ctx, svcs.Items, progs, names)
	// The endpoints here first: a balancer may send their DSR packets as soon as it sees
	// them.
	if err := r.decap.SetPairs(planDecap(svcs.Items, eps.Items, r.node, r.class)); err != nil {
		return ctrl.Result{}, fmt.Errorf("program the decapsulator: %w", err)
	}
	if err := r.dp.SetServices(progs); err != nil {
		return ctrl.Result{}, fmt.Errorf("program the datapath: %w", err)
	}
	r.mu.Lock()
	r.names = names
	r.mu.Unlock()
	return ctrl.Result{}, nil
}

// planDatapath is the datapath's plan, pure like the others: the Services and their
// EndpointSlices as the datapath's services, one per (address, port, protocol), with the
// ready endpoints of the address's family (only this node's with externalTrafficPolicy
// Local). A Service port without a ready endpoint is programmed without backends: its
// packets go on to the kernel, where kube-proxy answers as it would without FerroLB, and
// the datapath counts them (no-backend). notes say what was changed from what was asked.
func planDatapath(svcs []corev1.Service, eps []discoveryv1.EndpointSlice, node, class string, mode datapath.Mode) (
	[]datapath.Service, map[serviceKey]string, []string) {
	var (
		out   []datapath.Service
		names = map[serviceKey]string{}
		index = map[serviceKey]int{} // in out
		notes []string
	)
	slices.SortFunc(svcs, func(a, b corev1.Service) int { return strings.Compare(config.Key(&a), config.Key(&b)) })
	for i := range svcs {
		svc := &svcs[i]
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || !config.Served(svc, class) {
			continue
		}
		var affinity time.Duration
		if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
			affinity = defaultAffinityTimeout
			if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
				affinity = time.Duration(*c.ClientIP.TimeoutSeconds) * time.Second
			}
		}
		local := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
		svcMode, _ := serviceMode(svc, mode)
		for _, vip := range config.Ingress(svc) {
			for _, sp := range svc.Spec.Ports {
				proto, ok := protocolOf(sp.Protocol)
				if !ok || sp.Port <= 0 || sp.Port > 65535 {
					continue // SCTP: left to kube-proxy; an invalid port cannot be in a stored Service
				}
				port := uint16(sp.Port)
				backends := endpointsFor(svc, sp, vip.Is4(), eps, node, local)
				m := svcMode
				if m == datapath.DSR && slices.ContainsFunc(backends, func(b datapath.Backend) bool { return b.Port != port }) {
					// DSR leaves the packet as the client sent it, so a backend must listen
					// on the Service's own port.
					m = datapath.SNAT
					notes = append(notes, fmt.Sprintf("Service %s port %d: targetPort differs from port, so SNAT instead of DSR", config.Key(svc), sp.Port))
				}
				k := serviceKey{vip: vip, port: port, proto: proto}
				ds := datapath.Service{VIP: vip, Port: port, Protocol: proto, Mode: m, Backends: backends, Affinity: affinity}
				if prev, dup := names[k]; dup {
					// The first Service with endpoints has the address and port; one
					// without only while no other has any.
					if i := index[k]; len(out[i].Backends) == 0 && len(backends) > 0 {
						out[i] = ds
						names[k] = config.Key(svc)
						notes = append(notes, fmt.Sprintf("Service %s: %s port %d goes to %s, which has ready endpoints (a shared address); not programmed twice", prev, vip, sp.Port, config.Key(svc)))
						continue
					}
					notes = append(notes, fmt.Sprintf("Service %s: %s port %d is %s's already (a shared address); not programmed twice", config.Key(svc), vip, sp.Port, prev))
					continue
				}
				names[k] = config.Key(svc)
				index[k] = len(out)
				out = append(out, ds)
			}
		}
	}
	return out, names, notes
}

// serviceMode is a Service's datapath mode: its ferrolb.io/datapath-mode annotation, else
// the node's default. problem says why an annotation present was not used ("" if it was).
func serviceMode(svc *corev1.Service, def datapath.Mode) (m datapath.Mode, problem string) {
	v, ok := svc.Annotations[config.AnnotationDatapathMode]
	if !ok {
		return def, ""
	}
	switch v {
	case "dsr":
		return datapath.DSR, ""
	case "snat":
		return datapath.SNAT, ""
	}
	return def, fmt.Sprintf("annotation %s: %q is neither dsr nor snat; this node's default (%s) is used", config.AnnotationDatapathMode, v, def)
}

// datapathProblems are what the datapath did not do as a Service asked, for the reporter
// (logged and evented on the Service once): an annotation it could not read, and a DSR
// Service port programmed as SNAT because its endpoints listen on another port.
func datapathProblems(svcs []corev1.Service, progs []datapath.Service, names map[serviceKey]string, class string, mode datapath.Mode) []nodeProblem {
	fellBack := map[string][]string{} // Service: its ports programmed SNAT
	for _, p := range progs {
		if p.Mode == datapath.SNAT {
			name := names[serviceKey{vip: p.VIP, port: p.Port, proto: p.Protocol}]
			port := fmt.Sprintf("%d/%s", p.Port, p.Protocol)
			if !slices.Contains(fellBack[name], port) {
				fellBack[name] = append(fellBack[name], port)
			}
		}
	}
	var out []nodeProblem
	for i := range svcs {
		svc := &svcs[i]
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || !config.Served(svc, class) {
			continue
		}
		m, problem := serviceMode(svc, mode)
		if problem != "" {
			out = append(out, nodeProblem{obj: svc, kind: "Service", event: true, reason: "InvalidDatapathMode",
				msg: fmt.Sprintf("Service %s: %s", config.Key(svc), problem)})
		}
		if ports := fellBack[config.Key(svc)]; m == datapath.DSR && len(ports) > 0 {
			slices.Sort(ports)
			out = append(out, nodeProblem{obj: svc, kind: "Service", event: true, reason: "DSRNotPossible",
				msg: fmt.Sprintf("Service %s port %s: its endpoints listen on another port (targetPort), and DSR does not translate ports: SNAT instead of DSR",
					config.Key(svc), strings.Join(ports, ", "))})
		}
	}
	return out
}

// planDecap is what this node decapsulates, pure like the plans: for every Service port
// that a balancer may send by DSR, the pairs of its ready endpoints on this node (the outer
// destination) and its addresses (the inner one). That is every served Service not
// annotated snat, whatever this node's own default: the balancer's default decides, and
// it may differ from ours (a rollout of --datapath-dsr), so a Service is never sent by DSR
// to a node that would not take it. Only endpoints that listen on the Service's own port:
// no balancer sends DSR to the others.
func planDecap(svcs []corev1.Service, eps []discoveryv1.EndpointSlice, node, class string) []datapath.DecapPair {
	var out []datapath.DecapPair
	for i := range svcs {
		svc := &svcs[i]
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || !config.Served(svc, class) {
			continue
		}
		if svc.Annotations[config.AnnotationDatapathMode] == "snat" {
			continue
		}
		for _, vip := range config.Ingress(svc) {
			for _, sp := range svc.Spec.Ports {
				proto, ok := protocolOf(sp.Protocol)
				if !ok || sp.Port <= 0 || sp.Port > 65535 {
					continue
				}
				for _, b := range endpointsFor(svc, sp, vip.Is4(), eps, node, true) {
					p := datapath.DecapPair{Backend: b.Addr, VIP: vip, Port: uint16(sp.Port), Protocol: proto}
					if b.Port == p.Port && !slices.Contains(out, p) {
						out = append(out, p)
					}
				}
			}
		}
	}
	return out
}

func protocolOf(p corev1.Protocol) (datapath.Protocol, bool) {
	switch p {
	case corev1.ProtocolTCP, "":
		return datapath.TCP, true
	case corev1.ProtocolUDP:
		return datapath.UDP, true
	}
	return 0, false
}

// endpointsFor are the backends of one Service port in one family: the ready endpoints,
// or, when none is ready, the serving ones that are terminating (as kube-proxy does, so a
// rollout's last connections are not refused).
func endpointsFor(svc *corev1.Service, sp corev1.ServicePort, v4 bool, eps []discoveryv1.EndpointSlice, node string, local bool) []datapath.Backend {
	family := discoveryv1.AddressTypeIPv6
	if v4 {
		family = discoveryv1.AddressTypeIPv4
	}
	var ready, terminating []datapath.Backend
	for _, s := range eps {
		if !sliceOf(&s, svc) || s.AddressType != family {
			continue
		}
		port, ok := slicePort(s.Ports, sp)
		if !ok {
			continue
		}
		for _, e := range s.Endpoints {
			if local && (e.NodeName == nil || *e.NodeName != node) {
				continue
			}
			c := e.Conditions
			isReady := endpointReady(e)
			isServingTerminating := !isReady && (c.Serving != nil && *c.Serving) && (c.Terminating != nil && *c.Terminating)
			if !isReady && !isServingTerminating {
				continue
			}
			for _, a := range e.Addresses {
				addr, err := netip.ParseAddr(a)
				if err != nil {
					continue
				}
				b := datapath.Backend{Addr: addr.Unmap(), Port: port, Weight: 1}
				if isReady {
					ready = appendUnique(ready, b)
				} else {
					terminating = appendUnique(terminating, b)
				}
			}
		}
	}
	if len(ready) == 0 {
		ready = terminating
	}
	sort.Slice(ready, func(i, j int) bool {
		if c := ready[i].Addr.Compare(ready[j].Addr); c != 0 {
			return c < 0
		}
		return ready[i].Port < ready[j].Port
	})
	return ready
}

// slicePort is the endpoint port of a Service port in a slice: matched by name (the
// EndpointSlice controller copies the Service port's name) and protocol.
func slicePort(ports []discoveryv1.EndpointPort, sp corev1.ServicePort) (uint16, bool) {
	for _, p := range ports {
		name, proto := "", corev1.ProtocolTCP
		if p.Name != nil {
			name = *p.Name
		}
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		want := sp.Protocol
		if want == "" {
			want = corev1.ProtocolTCP
		}
		if name == sp.Name && proto == want && p.Port != nil && *p.Port > 0 && *p.Port < 65536 {
			return uint16(*p.Port), true
		}
	}
	return 0, false
}

func appendUnique(bs []datapath.Backend, b datapath.Backend) []datapath.Backend {
	if slices.Contains(bs, b) {
		return bs
	}
	return append(bs, b)
}

var (
	descDPPackets = prometheus.NewDesc("ferrolb_datapath_packets_total",
		"Packets the XDP datapath sent to a backend (backend=\"\": the Service address's total).",
		[]string{"service", "address", "port", "protocol", "backend"}, nil)
	descDPBytes = prometheus.NewDesc("ferrolb_datapath_bytes_total",
		"Bytes the XDP datapath sent to a backend (backend=\"\": the Service address's total).",
		[]string{"service", "address", "port", "protocol", "backend"}, nil)
	descDPDropped = prometheus.NewDesc("ferrolb_datapath_packets_dropped_total",
		"Packets the XDP datapath dropped, by reason: snat-ports-exhausted (a new SNAT flow found no free port towards its backend), encap-failed (DSR: no headroom for the outer header).",
		[]string{"reason"}, nil)
	descDPPassed = prometheus.NewDesc("ferrolb_datapath_packets_passed_total",
		"Packets for a Service that the XDP datapath passed to the kernel instead of forwarding, by reason: "+
			"fragment, ip-options, malformed, ttl-expired, no-backend, no-nexthop, stack-endpoint, snat-no-flow (README: The XDP datapath).",
		[]string{"reason"}, nil)
)

var descDPDecap = prometheus.NewDesc("ferrolb_datapath_decap_packets_total",
	"DSR packets (IPIP / IP6IP6) that arrived for this node, by what its decapsulator did: decapsulated, "+
		"not-allowed (not for a local endpoint of a Service's address and port: left to the stack), malformed (left to the stack), failed.",
	[]string{"result"}, nil)

// datapathCollector reads the datapath's counters when Prometheus scrapes.
type datapathCollector struct{ r *datapathReconciler }

func (c datapathCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descDPPackets
	ch <- descDPBytes
	ch <- descDPDropped
	ch <- descDPPassed
	ch <- descDPDecap
}

func (c datapathCollector) Collect(ch chan<- prometheus.Metric) {
	// Every reason, zeros included, so that rate() has a start.
	if reasons, err := c.r.dp.ReasonCounts(); err == nil {
		for _, r := range reasons {
			desc := descDPPassed
			if r.Reason.Dropped() {
				desc = descDPDropped
			}
			ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(r.Packets), r.Reason.String())
		}
	}
	if counts, err := c.r.decap.Counts(); err == nil {
		for r, n := range counts {
			ch <- prometheus.MustNewConstMetric(descDPDecap, prometheus.CounterValue, float64(n), r.String())
		}
	}
	counters, err := c.r.dp.Counters()
	if err != nil {
		return
	}
	c.r.mu.Lock()
	names := c.r.names
	c.r.mu.Unlock()
	for _, k := range counters {
		proto := "TCP"
		if k.Protocol == datapath.UDP {
			proto = "UDP"
		}
		backend := ""
		if k.Backend.IsValid() {
			backend = k.Backend.String()
		}
		labels := []string{names[serviceKey{vip: k.VIP, port: k.Port, proto: k.Protocol}], k.VIP.String(), fmt.Sprint(k.Port), proto, backend}
		ch <- prometheus.MustNewConstMetric(descDPPackets, prometheus.CounterValue, float64(k.Packets), labels...)
		ch <- prometheus.MustNewConstMetric(descDPBytes, prometheus.CounterValue, float64(k.Bytes), labels...)
	}
}

// name is the namespace/name of the Service a datapath service belongs to (for `ferrolb
// inspect`), "" when the last reconcile did not program it.
func (r *datapathReconciler) name(vip netip.Addr, port uint16, proto datapath.Protocol) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.names[serviceKey{vip: vip, port: port, proto: proto}]
}

// datapathInterface is the interface holding one of the node's InternalIPs: where traffic
// for the Service addresses arrives when no interface is named.
func datapathInterface(node *corev1.Node) (string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	for _, want := range config.InternalIPs(node) {
		for _, ifc := range ifs {
			addrs, err := ifc.Addrs()
			if err != nil {
				continue
			}
			for _, a := range addrs {
				if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr() == want {
					return ifc.Name, nil
				}
			}
		}
	}
	return "", fmt.Errorf("no interface holds node %s's InternalIP: set --datapath-interface", node.Name)
}
