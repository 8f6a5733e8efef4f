// Package lab builds FerroLB's whole system on one machine, with nothing faked (DESIGN.md
// section 6): a real kube-apiserver and etcd, network namespaces for a router running FRR,
// three nodes, two clients and one backend pod per node; the controller, one speaker and one
// kube-proxy per node; sample pools, an L2Policy, BGP peers and two Services whose backends
// answer HTTP. `ferrolb-lab up` (cmd/ferrolb-lab; Up, Serve and Down) runs it in the
// background; the e2e tests drive it.
//
// Traffic from the announcing node to the backends goes through kube-proxy (built from the
// Kubernetes module like the API server, nftables mode) in each node's namespace: FerroLB's
// speaker makes the address reach the node, kube-proxy carries it to a pod, as in a cluster
// without FerroLB's datapath.
package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/config"
	"github.com/ferrolb/ferrolb/internal/controller"
	"github.com/ferrolb/ferrolb/internal/datapath"
	"github.com/ferrolb/ferrolb/internal/kubetest"
	labfrr "github.com/ferrolb/ferrolb/internal/lab/frr"
	"github.com/ferrolb/ferrolb/internal/lab/netns"
)

// Namespace is the lab's FerroLB namespace (MD5 Secrets would live there).
const Namespace = "ferrolb-system"

// Prefix starts the name of every namespace `ferrolb-lab` creates, so Down finds them
// all; the e2e tests use their own, so that they can run beside a lab.
const Prefix = "flb-"

// Node is one of the lab's nodes.
type Node struct {
	Name   string
	NS     *netns.NS
	IPv4   string // on the LAN
	IPv6   string
	PodNS  *netns.NS
	PodV4  string
	PodV6  string
	index  int
	procs  map[string]*process // "speaker", "kube-proxy", "backend"
	fwStop func()
}

// Lab is a running lab.
type Lab struct {
	Env        *kubetest.Env
	Dir        string // kubeconfig, logs
	Router     *netns.NS
	FRR        *labfrr.Router
	Switch     *netns.NS
	Client     *netns.NS // on the nodes' LAN
	WAN        *netns.NS // behind the router
	Nodes      []*Node
	Kubeconfig string

	exe        string
	prefix     string
	proxyBin   string
	kubectl    string // built by hack/envtest.sh when asked (make lab does)
	mu         sync.Mutex
	ctrlCancel context.CancelFunc
	ctrlDone   chan error
	namespaces []*netns.NS
	datapath   datapath.Kind // the speakers' --datapath
	xdp        []io.Closer
}

// Addresses of the lab (documentation and private ranges; nothing leaves the namespaces).
const (
	RouterLAN4 = "192.168.50.1"
	RouterLAN6 = "fd00:50::1"
	RouterWAN4 = "172.31.0.1"
	RouterWAN6 = "fd00:31::1"
	ClientIP4  = "192.168.50.100"
	ClientIP6  = "fd00:50::100"
	WANIP4     = "172.31.0.2"
	WANIP6     = "fd00:31::2"
	RouterASN  = 64512
	NodeASN    = 64513
)

// Options configure Start.
type Options struct {
	// Dir receives the kubeconfig and the processes' logs.
	Dir string
	// Logf reports progress; nil is silent.
	Logf func(format string, args ...any)
	// Prefix starts every namespace's name; default Prefix.
	Prefix string
	// Datapath is the speakers' --datapath: "none" (the default: kube-proxy carries
	// Service traffic) or "xdp" (FerroLB's XDP load balancer on each node's eth0).
	Datapath datapath.Kind
}

// Start builds the lab and returns once every Service answers through it. On error it
// removes what it built.
func Start(ctx context.Context, opts Options) (l *Lab, err error) {
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the lab needs root: it creates network namespaces")
	}
	if err := labfrr.Installed(); err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, err
	}
	// The speakers' state files of an earlier lab describe objects this one does not have.
	if err := os.RemoveAll(filepath.Join(opts.Dir, "state")); err != nil {
		return nil, err
	}
	if opts.Prefix == "" {
		opts.Prefix = Prefix
	}
	// Checked here, not only by the speakers: a wrong value would otherwise show as a lab
	// whose Services never answer.
	if opts.Datapath, err = datapath.ParseKind(string(opts.Datapath)); err != nil {
		return nil, err
	}
	l = &Lab{Dir: opts.Dir, exe: exe, prefix: opts.Prefix, datapath: opts.Datapath}
	defer func() {
		if err != nil {
			err = errors.Join(err, l.Stop())
			l = nil
		}
	}()

	logf("API server: kube-apiserver and etcd (built on first use, about 5 minutes)")
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		_ = os.Setenv("WITH_KUBE_PROXY", "1")
	}
	if l.Env, err = kubetest.Start(); err != nil {
		return l, err
	}
	root, _ := kubetest.RepoRoot()
	assets, err := kubetest.Assets(root)
	if err != nil {
		return l, err
	}
	l.proxyBin = filepath.Join(assets, "kube-proxy")
	l.kubectl = "kubectl"
	if _, err := os.Stat(filepath.Join(assets, "kubectl")); err == nil {
		l.kubectl = filepath.Join(assets, "kubectl")
	}
	if _, err := os.Stat(l.proxyBin); err != nil {
		return l, fmt.Errorf("kube-proxy: %w (build it: WITH_KUBE_PROXY=1 bash hack/envtest.sh)", err)
	}
	l.Kubeconfig = filepath.Join(l.Dir, "kubeconfig")
	if err := l.Env.WriteKubeconfig(l.Kubeconfig); err != nil {
		return l, err
	}

	logf("network: router, switch, 3 nodes with a pod each, 2 clients")
	if err := l.buildNetwork(); err != nil {
		return l, err
	}
	logf("router: FRR (zebra, bfdd, bgpd), AS %d", RouterASN)
	if l.FRR, err = labfrr.Start(l.Router, frrConf(l.Nodes, false)); err != nil {
		return l, err
	}
	logf("cluster objects: nodes, pools, L2Policy, BGP peers, Services, EndpointSlices")
	if err := l.createObjects(ctx); err != nil {
		return l, err
	}
	logf("processes: controller; per node a speaker (datapath %s) and kube-proxy; per pod a web server", l.datapath)
	if err := l.StartController(); err != nil {
		return l, err
	}
	for _, n := range l.Nodes {
		if err := l.startNode(n); err != nil {
			return l, err
		}
	}
	logf("waiting for the Services to answer")
	if err := l.waitReady(ctx); err != nil {
		return l, err
	}
	return l, nil
}

func (l *Lab) newNS(name string) (*netns.NS, error) {
	ns, err := netns.Named(l.prefix + name)
	if err != nil {
		return nil, err
	}
	l.namespaces = append(l.namespaces, ns)
	// Addresses are usable at once (no duplicate address detection delay), and the
	// namespace forwards (nodes and the router route; the others do not mind).
	for _, s := range []string{"net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0",
		"net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"} {
		if _, err := ns.Run("sysctl", "-qw", s); err != nil {
			return nil, err
		}
	}
	return ns, nil
}

func (l *Lab) buildNetwork() error {
	var err error
	must := func(ns *netns.NS, args ...string) {
		if err == nil {
			_, err = ns.Run(args[0], args[1:]...)
		}
	}
	if l.Switch, err = l.newNS("switch"); err != nil {
		return err
	}
	must(l.Switch, "ip", "link", "add", "lan", "type", "bridge")
	must(l.Switch, "ip", "link", "set", "lan", "up")
	port := 0
	join := func(ns *netns.NS, ifname string, addrs ...string) {
		if err != nil {
			return
		}
		port++
		sw := fmt.Sprintf("p%d", port)
		if err = netns.Veth(ns, ifname, l.Switch, sw); err != nil {
			return
		}
		must(l.Switch, "ip", "link", "set", sw, "master", "lan")
		for _, a := range addrs {
			must(ns, "ip", "addr", "add", a, "dev", ifname)
		}
	}
	if l.Router, err = l.newNS("router"); err != nil {
		return err
	}
	join(l.Router, "eth0", RouterLAN4+"/24", RouterLAN6+"/64")
	// ECMP spreads flows by their ports too, as routers in front of load balancers do;
	// Linux's default hashes addresses only, which sends one client to one node.
	must(l.Router, "sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1")
	must(l.Router, "sysctl", "-qw", "net.ipv6.fib_multipath_hash_policy=1")
	if l.WAN, err = l.newNS("wan"); err != nil {
		return err
	}
	if err = netns.Veth(l.Router, "eth1", l.WAN, "eth0"); err != nil {
		return err
	}
	must(l.Router, "ip", "addr", "add", RouterWAN4+"/24", "dev", "eth1")
	must(l.Router, "ip", "addr", "add", RouterWAN6+"/64", "dev", "eth1")
	// Where packets start (clients, pods), checksums are computed in full: the stack would
	// leave partial ones for a NIC to finish, which XDP cannot update incrementally.
	must(l.WAN, "ethtool", "-K", "eth0", "tx", "off")
	must(l.WAN, "ip", "addr", "add", WANIP4+"/24", "dev", "eth0")
	must(l.WAN, "ip", "addr", "add", WANIP6+"/64", "dev", "eth0")
	must(l.WAN, "ip", "route", "add", "default", "via", RouterWAN4)
	must(l.WAN, "ip", "-6", "route", "add", "default", "via", RouterWAN6)
	if l.Client, err = l.newNS("client"); err != nil {
		return err
	}
	join(l.Client, "eth0", ClientIP4+"/24", ClientIP6+"/64")
	must(l.Client, "ethtool", "-K", "eth0", "tx", "off")
	must(l.Client, "ip", "route", "add", "default", "via", RouterLAN4)
	must(l.Client, "ip", "-6", "route", "add", "default", "via", RouterLAN6)

	for i, name := range []string{"node-a", "node-b", "node-c"} {
		n := &Node{Name: name, index: i + 1, procs: map[string]*process{},
			IPv4: fmt.Sprintf("192.168.50.%d", 11+i), IPv6: fmt.Sprintf("fd00:50::%d", 11+i),
			PodV4: fmt.Sprintf("10.244.%d.10", i+1), PodV6: fmt.Sprintf("fd00:244:%d::10", i+1)}
		if n.NS, err = l.newNS(name); err != nil {
			return err
		}
		join(n.NS, "eth0", n.IPv4+"/24", n.IPv6+"/64")
		// The node's XDP datapath sends packets back out of eth0 (XDP_TX): the switch's
		// end of the veth must run an XDP program to take them.
		if err == nil {
			var pass io.Closer
			if pass, err = l.Switch.XDPPass(fmt.Sprintf("p%d", port)); err == nil {
				l.xdp = append(l.xdp, pass)
			}
		}
		must(n.NS, "ip", "route", "add", "default", "via", RouterLAN4)
		must(n.NS, "ip", "-6", "route", "add", "default", "via", RouterLAN6)
		if n.PodNS, err = l.newNS("pod-" + name[len("node-"):]); err != nil {
			return err
		}
		if err = netns.Veth(n.NS, "pod0", n.PodNS, "eth0"); err != nil {
			return err
		}
		must(n.NS, "ip", "addr", "add", fmt.Sprintf("10.244.%d.1/24", n.index), "dev", "pod0")
		must(n.NS, "ip", "addr", "add", fmt.Sprintf("fd00:244:%d::1/64", n.index), "dev", "pod0")
		must(n.PodNS, "ethtool", "-K", "eth0", "tx", "off")
		must(n.PodNS, "ip", "addr", "add", n.PodV4+"/24", "dev", "eth0")
		must(n.PodNS, "ip", "addr", "add", n.PodV6+"/64", "dev", "eth0")
		must(n.PodNS, "ip", "route", "add", "default", "via", fmt.Sprintf("10.244.%d.1", n.index))
		must(n.PodNS, "ip", "-6", "route", "add", "default", "via", fmt.Sprintf("fd00:244:%d::1", n.index))
		l.Nodes = append(l.Nodes, n)
	}
	// Each node reaches the other nodes' pods through them (what a CNI would set up).
	for _, n := range l.Nodes {
		for _, o := range l.Nodes {
			if o != n {
				must(n.NS, "ip", "route", "add", fmt.Sprintf("10.244.%d.0/24", o.index), "via", o.IPv4)
				must(n.NS, "ip", "-6", "route", "add", fmt.Sprintf("fd00:244:%d::/64", o.index), "via", o.IPv6)
			}
		}
	}
	return err
}

// frrConf is the router's bgpd configuration; graceful adds graceful restart's restarting
// side (the router keeps forwarding through its own restart and waits for the nodes'
// End-of-RIB before it chooses new paths). FRR is a helper for restarting nodes either way.
func frrConf(nodes []*Node, graceful bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "frr defaults traditional\nhostname router\nlog stdout\n!\nrouter bgp %d\n bgp router-id %s\n no bgp ebgp-requires-policy\n", RouterASN, RouterLAN4)
	if graceful {
		b.WriteString(" bgp graceful-restart\n bgp graceful-restart preserve-fw-state\n")
	}
	for _, n := range nodes {
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n neighbor %s bfd\n neighbor %s bfd profile fast\n", n.IPv4, NodeASN, n.IPv4, n.IPv4)
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n", n.IPv6, NodeASN)
	}
	for _, af := range []string{"ipv4", "ipv6"} {
		fmt.Fprintf(&b, " address-family %s unicast\n  maximum-paths 8\n", af)
		for _, n := range nodes {
			addr := n.IPv4
			if af == "ipv6" {
				addr = n.IPv6
			}
			fmt.Fprintf(&b, "  neighbor %s activate\n", addr)
		}
		fmt.Fprintf(&b, " exit-address-family\n")
	}
	return b.String()
}

// The lab's Services: one announced by layer 2 on the LAN, one by BGP to the router.
const (
	ServiceL2  = "web-l2"
	ServiceBGP = "web-bgp"
)

func (l *Lab) createObjects(ctx context.Context) error {
	c := l.Env.Client
	create := func(o client.Object) error {
		if err := c.Create(ctx, o); err != nil {
			return fmt.Errorf("create %T %s: %w", o, o.GetName(), err)
		}
		return nil
	}
	if err := create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}); err != nil {
		return err
	}
	for _, n := range l.Nodes {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: map[string]string{"kubernetes.io/hostname": n.Name}},
			Spec: corev1.NodeSpec{PodCIDRs: []string{fmt.Sprintf("10.244.%d.0/24", n.index), fmt.Sprintf("fd00:244:%d::/64", n.index)}}}
		node.Spec.PodCIDR = node.Spec.PodCIDRs[0]
		if err := create(node); err != nil {
			return err
		}
		node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.IPv4}, {Type: corev1.NodeInternalIP, Address: n.IPv6}}
		node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
		if err := c.Status().Update(ctx, node); err != nil {
			return err
		}
	}
	no := false
	for _, o := range []client.Object{
		&v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "lab-l2"}, Spec: v1.IPPoolSpec{AutoAssign: &no,
			Blocks: []v1.IPBlock{{Start: "192.168.50.200", Stop: "192.168.50.220"}}}},
		&v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "lab-bgp"}, Spec: v1.IPPoolSpec{AutoAssign: &no,
			Blocks: []v1.IPBlock{{Start: "198.51.100.10", Stop: "198.51.100.30"}, {Start: "2001:db8:100::10", Stop: "2001:db8:100::30"}}}},
		&v1.L2Policy{ObjectMeta: metav1.ObjectMeta{Name: "lab"}, Spec: v1.L2PolicySpec{Pools: []string{"lab-l2"}, Interfaces: []string{"eth0"}}},
		&v1.BFDProfile{ObjectMeta: metav1.ObjectMeta{Name: "fast"}, Spec: v1.BFDProfileSpec{ReceiveInterval: 100, TransmitInterval: 100, DetectMultiplier: 3}},
		&v1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "router-v4"}, Spec: v1.BGPPeerSpec{PeerAddress: RouterLAN4, PeerASN: RouterASN, LocalASN: NodeASN,
			HoldTime: &metav1.Duration{Duration: 9 * time.Second}, KeepaliveTime: &metav1.Duration{Duration: 3 * time.Second}, BFDProfile: "fast"}},
		&v1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "router-v6"}, Spec: v1.BGPPeerSpec{PeerAddress: RouterLAN6, PeerASN: RouterASN, LocalASN: NodeASN,
			HoldTime: &metav1.Duration{Duration: 9 * time.Second}, KeepaliveTime: &metav1.Duration{Duration: 3 * time.Second}}},
		&v1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "lab"}, Spec: v1.BGPAdvertisementSpec{Pools: []string{"lab-bgp"}, Communities: []string{"64513:100"}}},
	} {
		if err := create(o); err != nil {
			return err
		}
	}
	if err := l.CreateService(ctx, ServiceL2, "lab-l2", false); err != nil {
		return err
	}
	return l.CreateService(ctx, ServiceBGP, "lab-bgp", true)
}

// CreateService creates a LoadBalancer Service in the default namespace with its addresses
// from pool, port 80 to the pods' 8080, and EndpointSlices listing every node's pod.
func (l *Lab) CreateService(ctx context.Context, name, pool string, dualStack bool) error {
	return l.CreateServiceWith(ctx, name, pool, ServiceOptions{DualStack: dualStack})
}

// PodPort is where the lab's pods serve HTTP.
const PodPort = 8080

// ServiceOptions shape the Service CreateServiceWith makes.
type ServiceOptions struct {
	DualStack bool
	// Port is the Service's port, to the pods' PodPort; 0: 80. DSR needs PodPort: it does
	// not translate ports.
	Port int32
	// Annotations are added to the pool's.
	Annotations map[string]string
}

// CreateServiceWith is CreateService with the Service's port and annotations chosen.
func (l *Lab) CreateServiceWith(ctx context.Context, name, pool string, o ServiceOptions) error {
	c := l.Env.Client
	if o.Port == 0 {
		o.Port = 80
	}
	ann := map[string]string{config.AnnotationPool: pool}
	for k, v := range o.Annotations {
		ann[k] = v
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Annotations: ann},
		Spec: corev1.ServiceSpec{
			Type:  corev1.ServiceTypeLoadBalancer,
			Ports: []corev1.ServicePort{{Name: "http", Port: o.Port, TargetPort: intstr.FromInt32(PodPort), Protocol: corev1.ProtocolTCP}},
		},
	}
	families := []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4}
	if o.DualStack {
		svc.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyRequireDualStack)
		svc.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
		families = append(families, discoveryv1.AddressTypeIPv6)
	}
	if err := c.Create(ctx, svc); err != nil {
		return fmt.Errorf("create Service %s: %w", name, err)
	}
	for _, fam := range families {
		eps := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("%s-%s", name, strings.ToLower(string(fam))),
				Labels: map[string]string{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "ferrolb-lab"}},
			AddressType: fam,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](PodPort), Protocol: ptr.To(corev1.ProtocolTCP)}},
		}
		for _, n := range l.Nodes {
			ip := n.PodV4
			if fam == discoveryv1.AddressTypeIPv6 {
				ip = n.PodV6
			}
			eps.Endpoints = append(eps.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, NodeName: ptr.To(n.Name),
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
		}
		if err := c.Create(ctx, eps); err != nil {
			return fmt.Errorf("create EndpointSlice %s: %w", eps.Name, err)
		}
	}
	return nil
}

// DeleteService deletes a Service CreateService made, and its EndpointSlices.
func (l *Lab) DeleteService(ctx context.Context, name string) error {
	c := l.Env.Client
	err := client.IgnoreNotFound(c.Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}))
	return errors.Join(err, c.DeleteAllOf(ctx, &discoveryv1.EndpointSlice{}, client.InNamespace("default"),
		client.MatchingLabels{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "ferrolb-lab"}))
}

// SetEndpointsReady marks the lab's endpoints on node ready or not, in every Service's
// EndpointSlices: what Kubernetes does to a dead node's pods once its node lifecycle
// controller gives up on the node.
func (l *Lab) SetEndpointsReady(ctx context.Context, node string, ready bool) error {
	var list discoveryv1.EndpointSliceList
	if err := l.Env.Client.List(ctx, &list, client.MatchingLabels{discoveryv1.LabelManagedBy: "ferrolb-lab"}); err != nil {
		return err
	}
	for i := range list.Items {
		s := &list.Items[i]
		changed := false
		for j := range s.Endpoints {
			e := &s.Endpoints[j]
			if e.NodeName != nil && *e.NodeName == node && (e.Conditions.Ready == nil || *e.Conditions.Ready != ready) {
				e.Conditions.Ready = ptr.To(ready)
				changed = true
			}
		}
		if !changed {
			continue
		}
		if err := l.Env.Client.Update(ctx, s); err != nil {
			return fmt.Errorf("EndpointSlice %s: %w", s.Name, err)
		}
	}
	return nil
}

// StartController runs the controller in this process (it needs no namespace of its own).
func (l *Lab) StartController() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ctrlCancel != nil {
		return errors.New("controller already running")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- controller.Run(ctx, l.Env.Config, controller.Options{MetricsAddr: "127.0.0.1:7472", HealthAddr: "0", Restartable: true})
	}()
	l.ctrlCancel, l.ctrlDone = cancel, done
	return nil
}

// StopController stops the controller and waits for it.
func (l *Lab) StopController() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ctrlCancel == nil {
		return nil
	}
	l.ctrlCancel()
	err := <-l.ctrlDone
	l.ctrlCancel, l.ctrlDone = nil, nil
	return err
}

func (l *Lab) startNode(n *Node) error {
	if err := l.RestoreAPI(n); err != nil {
		return err
	}
	if err := l.StartSpeaker(n); err != nil {
		return err
	}
	proxy, err := l.start(n.NS, n.Name+"-kube-proxy", nil, l.proxyBin, "--kubeconfig", l.Kubeconfig,
		"--hostname-override", n.Name, "--proxy-mode", "nftables", "--cluster-cidr", "10.244.0.0/16,fd00:244::/48",
		"--conntrack-max-per-core", "0", "--metrics-bind-address", "127.0.0.1:10249", "--healthz-bind-address", "127.0.0.1:10256")
	if err != nil {
		return err
	}
	n.procs["kube-proxy"] = proxy
	backend, err := l.startChild(n.PodNS, n.Name+"-backend", childSpec{Role: "backend", Node: n.Name,
		Name: "pod-" + n.Name[len("node-"):], Listen: ":8080"})
	if err != nil {
		return err
	}
	n.procs["backend"] = backend
	return nil
}

// CutAPI makes the API server unreachable from node n (its speaker and kube-proxy): the
// relay on the node's loopback stops, closing the connections it carried, and new ones are
// refused, as when the API server or its load balancer is down. RestoreAPI undoes it.
func (l *Lab) CutAPI(n *Node) {
	if n.fwStop != nil {
		n.fwStop()
		n.fwStop = nil
	}
}

// RestoreAPI makes the API server reachable from node n again.
func (l *Lab) RestoreAPI(n *Node) error {
	if n.fwStop != nil {
		return nil
	}
	u, err := url.Parse(l.Env.Config.Host)
	if err != nil {
		return err
	}
	n.fwStop, err = n.NS.Forward(context.Background(), u.Host, u.Host)
	return err
}

// RestartRouter restarts FRR on the router, down for down between stopping and starting.
// graceful: with graceful restart configured and zebra keeping its routes in the kernel when
// it stops, for the restart after this one (the router's forwarding state then survives
// it); not graceful: as the lab starts it.
func (l *Lab) RestartRouter(graceful bool, down time.Duration) error {
	var opts labfrr.Options
	if graceful {
		opts.KeepRoutes = RouterKeepRoutes
	}
	return l.FRR.Restart(frrConf(l.Nodes, graceful), down, opts)
}

// RouterKeepRoutes is how long the router's zebra keeps the routes of its previous run after
// a graceful restart: longer than the nodes take to reconnect (a session that failed to
// connect once waits its BGPPeer's connectTime, GoBGP's 120 s by default).
const RouterKeepRoutes = 180 * time.Second

// StartSpeaker starts node n's speaker (again), with its state file in the lab's directory.
func (l *Lab) StartSpeaker(n *Node) error {
	p, err := l.startChild(n.NS, n.Name+"-speaker", childSpec{Role: "speaker", Node: n.Name, Kubeconfig: l.Kubeconfig, Datapath: l.datapath,
		StateDir: filepath.Join(l.Dir, "state", n.Name)})
	if err != nil {
		return err
	}
	n.procs["speaker"] = p
	return nil
}

// SetDatapath restarts every node's speaker with --datapath=mode and waits until both
// Services answer again on every address.
func (l *Lab) SetDatapath(ctx context.Context, mode datapath.Kind) error {
	l.datapath = mode
	for _, n := range l.Nodes {
		if p := n.procs["speaker"]; p != nil {
			p.stop()
			delete(n.procs, "speaker")
		}
		if err := l.StartSpeaker(n); err != nil {
			return err
		}
	}
	return l.waitReady(ctx)
}

// KillSpeaker ends node n's speaker at once (SIGKILL), as when a node dies: no Cease, no
// withdrawal, no goodbye.
func (l *Lab) KillSpeaker(n *Node) {
	if p := n.procs["speaker"]; p != nil {
		p.kill()
		delete(n.procs, "speaker")
	}
}

func (l *Lab) startChild(ns *netns.NS, logName string, spec childSpec) (*process, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	return l.start(ns, logName, []string{childEnv + "=" + string(b)}, l.exe)
}

// process is a program the lab started inside a namespace.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

func (l *Lab) start(ns *netns.NS, logName string, env []string, name string, args ...string) (*process, error) {
	logf, err := os.Create(filepath.Join(l.Dir, logName+".log")) //nolint:gosec // the lab's own directory
	if err != nil {
		return nil, err
	}
	cmd := ns.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("start %s: %w", logName, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{}), log: logf}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *process) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.kill()
	}
	_ = p.log.Close()
}

func (p *process) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
	_ = p.log.Close()
}

// waitReady waits until both Services have their addresses and answer: the L2 one from the
// client on the LAN, the BGP one from the client behind the router, on both families.
func (l *Lab) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := l.check(ctx)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the lab's Services do not answer after 2 minutes: %w", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (l *Lab) check(ctx context.Context) error {
	for _, c := range []struct {
		svc  string
		from *netns.NS
	}{{ServiceL2, l.Client}, {ServiceBGP, l.WAN}} {
		addrs, err := l.Addresses(ctx, c.svc)
		if err != nil {
			return err
		}
		if len(addrs) == 0 {
			return fmt.Errorf("%s has no address yet", c.svc)
		}
		for _, a := range addrs {
			if _, err := Get(ctx, c.from, a); err != nil {
				return err
			}
			if c.svc != ServiceBGP {
				continue
			}
			// Steady state: every node's next hop is in the router's route.
			nh, err := labfrr.KernelNexthops(l.Router, HostPrefix(a))
			if err != nil {
				return err
			}
			if len(nh) != len(l.Nodes) {
				return fmt.Errorf("the router's route for %s goes via %v, not yet every node", a, nh)
			}
		}
	}
	return nil
}

// HostPrefix is addr as a /32 or /128.
func HostPrefix(addr string) string {
	if strings.Contains(addr, ":") {
		return addr + "/128"
	}
	return addr + "/32"
}

// Addresses returns a Service's addresses from its status.
func (l *Lab) Addresses(ctx context.Context, name string) ([]string, error) {
	svc := &corev1.Service{}
	if err := l.Env.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: name}, svc); err != nil {
		return nil, err
	}
	var out []string
	for _, in := range svc.Status.LoadBalancer.Ingress {
		out = append(out, in.IP)
	}
	return out, nil
}

// Node returns the node named name.
func (l *Lab) Node(name string) *Node {
	i := slices.IndexFunc(l.Nodes, func(n *Node) bool { return n.Name == name })
	if i < 0 {
		return nil
	}
	return l.Nodes[i]
}

// Stop stops every process and removes every namespace the lab made, and the API server.
func (l *Lab) Stop() error {
	var errs []error
	for _, n := range l.Nodes {
		for _, p := range n.procs {
			p.stop()
		}
		n.procs = map[string]*process{}
		if n.fwStop != nil {
			n.fwStop()
			n.fwStop = nil
		}
	}
	if err := l.StopController(); err != nil {
		errs = append(errs, fmt.Errorf("controller: %w", err))
	}
	if l.FRR != nil {
		errs = append(errs, l.FRR.Stop())
		l.FRR = nil
	}
	for _, x := range l.xdp {
		errs = append(errs, x.Close())
	}
	l.xdp = nil
	for _, ns := range slices.Backward(l.namespaces) {
		errs = append(errs, ns.Close())
	}
	l.namespaces = nil
	if l.Env != nil {
		errs = append(errs, l.Env.Stop())
		l.Env = nil
	}
	return errors.Join(errs...)
}
