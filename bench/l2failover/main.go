// Command l2failover measures Layer 2 failover end to end: in network namespaces on this
// machine, three nodes run FerroLB's speaker (in process, against a real kube-apiserver and
// etcd built by hack/envtest.sh) and serve a UDP echo on a Service address; a client on the
// same Ethernet segment probes that address every 5 ms. The announcing node then dies, and
// the program measures, from that instant (t0):
//
//   - neighbour flip: until the client's neighbour entry for the address holds the new
//     announcer's MAC (the gratuitous ARP arrived);
//   - traffic restored: until the first probe that the new node answers was sent;
//   - probes lost: probes sent in between that nobody answered;
//   - last heartbeat->flip: from the moment the new announcer received the old one's last
//     heartbeat (captured on its eth0) to the flip: detection plus reaction.
//
// The client's neighbour entry is followed through netlink (change notifications, and a poll
// of the table every 10 ms in case one is lost), the equivalent of `ip neigh show`.
//
// A crash is simulated by cancelling the announcing speaker's context (its ARP responder
// stops and it stops heartbeating, which is all its peers see of a crash) and, with
// -crash=node (the default), by also cutting its switch port, so the dead node no longer
// answers the traffic that still reaches its MAC. With -crash=speaker the node itself stays
// on the segment and keeps answering until the client's entry moves.
//
// Run as root: go run ./bench/l2failover [-runs 7] [-crash node|speaker] [-timeout 10s] [-v]
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/kubetest"
	"github.com/ferrolb/ferrolb/internal/l2"
	"github.com/ferrolb/ferrolb/internal/lab/netns"
	"github.com/ferrolb/ferrolb/internal/speaker"
)

const (
	clientIP  = "192.0.2.1/24"
	port      = 9999
	probeGap  = 5 * time.Millisecond
	namespace = "l2failover"
	policy    = "l2failover"
	target    = time.Second
)

var (
	vip     = netip.MustParseAddr("192.0.2.100")
	nodeIPs = []string{"192.0.2.11", "192.0.2.12", "192.0.2.13"}
)

func main() {
	runs := flag.Int("runs", 7, "failovers to measure (the median needs at least 5)")
	timeout := flag.Duration("timeout", 10*time.Second, "give up a run when the set-up or the failover takes longer")
	verbose := flag.Bool("v", false, "print the speakers' errors as they happen")
	crash := flag.String("crash", "node", "what dies: node (speaker cancelled and switch port cut) or speaker (speaker cancelled only)")
	flag.Parse()
	if *runs < 1 || (*crash != "node" && *crash != "speaker") {
		flag.Usage()
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "error: creating network namespaces needs root")
		os.Exit(1)
	}
	// Speakers log errors only; their info logs would bury the table.
	speakerErrors.verbose = *verbose
	ctrl.SetLogger(logr.New(errorSink{}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, *runs, *timeout, *crash == "node")
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, runs int, timeout time.Duration, cutPort bool) (err error) {
	env, err := kubetest.Start()
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, env.Stop()) }()
	c := env.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		return err
	}
	if err := c.Create(ctx, &v1.L2Policy{ObjectMeta: metav1.ObjectMeta{Name: policy}, Spec: v1.L2PolicySpec{Interfaces: []string{"eth0"}}}); err != nil {
		return err
	}

	what := "announcing node dies: speaker cancelled, switch port cut"
	if !cutPort {
		what = "announcing speaker dies: cancelled, its node stays on the segment"
	}
	fmt.Printf("FerroLB Layer 2 failover: 3 speakers (heartbeat 100 ms x 3), client probing %s:%d every %v; %s\n\n", vip, port, probeGap, what)
	fmt.Printf("%-4s %-10s %-10s %20s %22s %12s %26s\n", "run", "old node", "new node", "neighbour flip (ms)", "traffic restored (ms)", "probes lost", "last heartbeat->flip (ms)")
	var flips, restores, sinceHB []time.Duration
	var failed []error
	for i := 1; i <= runs; i++ {
		if ctx.Err() != nil {
			break
		}
		r, err := failover(ctx, env, i, timeout, cutPort)
		if err != nil {
			fmt.Printf("%-4d %-10s %-10s %s\n", i, r.old, r.new, "FAILED: "+err.Error())
			failed = append(failed, fmt.Errorf("run %d: %w", i, err))
			continue
		}
		flips, restores, sinceHB = append(flips, r.flip), append(restores, r.restored), append(sinceHB, r.sinceHeartbeat)
		fmt.Printf("%-4d %-10s %-10s %20.1f %22.1f %12d %26.1f\n", i, r.old, r.new, ms(r.flip), ms(r.restored), r.lost, ms(r.sinceHeartbeat))
	}
	if err := ctx.Err(); err != nil && !errors.Is(errors.Join(failed...), err) {
		failed = append(failed, err) // interrupted between runs
	}
	if len(restores) > 0 {
		slices.Sort(flips)
		slices.Sort(restores)
		slices.Sort(sinceHB)
		fmt.Println()
		for _, row := range []struct {
			label string
			at    func([]time.Duration) time.Duration
		}{
			{fmt.Sprintf("median of %d", len(restores)), median},
			{"min", func(d []time.Duration) time.Duration { return d[0] }},
			{"max", func(d []time.Duration) time.Duration { return d[len(d)-1] }},
		} {
			fmt.Printf("%-26s %20.1f %22.1f %12s %26.1f\n", row.label, ms(row.at(flips)), ms(row.at(restores)), "", ms(row.at(sinceHB)))
		}
		verdict := "met"
		if median(restores) >= target {
			verdict = "NOT met"
		}
		fmt.Printf("\ntarget: traffic restored under %v (median): %s\n", target, verdict)
		if len(restores) < 5 {
			fmt.Println("(fewer than 5 successful runs: the median is indicative only)")
		}
	}
	reportSpeakerErrors()
	return errors.Join(failed...)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median(sorted []time.Duration) time.Duration {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// result is one failover.
type result struct {
	old, new string
	flip     time.Duration // t0 -> the client's neighbour entry holds the new MAC
	restored time.Duration // t0 -> sending of the first probe the new node answered
	lost     int           // probes sent in between that nobody answered
	// sinceHeartbeat: the new announcer received the old one's last heartbeat -> flip.
	sinceHeartbeat time.Duration
}

// failover builds the lab, runs three speakers, kills the announcer and measures. Everything
// it creates (namespaces, speakers, servers, API objects) is gone when it returns.
func failover(ctx context.Context, env *kubetest.Env, runNo int, timeout time.Duration, cutPort bool) (res result, err error) {
	var cleanups []func() error
	defer func() {
		for _, f := range slices.Backward(cleanups) {
			err = errors.Join(err, f())
		}
	}()
	newNS := func(prefix string) (*netns.NS, error) {
		ns, err := netns.New(prefix)
		if err == nil {
			cleanups = append(cleanups, ns.Close)
		}
		return ns, err
	}

	// The segment: a bridge in a switch namespace, the client and three nodes on it.
	sw, err := newNS("l2fo-sw")
	if err != nil {
		return res, err
	}
	if err := runAll(sw, [][]string{{"ip", "link", "add", "br0", "type", "bridge"}, {"ip", "link", "set", "br0", "up"}}); err != nil {
		return res, err
	}
	join := func(ns *netns.NS, swPort, addr string) error {
		if err := netns.Veth(ns, "eth0", sw, swPort); err != nil {
			return err
		}
		if _, err := sw.Run("ip", "link", "set", swPort, "master", "br0"); err != nil {
			return err
		}
		_, err := ns.Run("ip", "addr", "add", addr, "dev", "eth0")
		return err
	}
	cl, err := newNS("l2fo-cl")
	if err != nil {
		return res, err
	}
	if err := join(cl, "swcl", clientIP); err != nil {
		return res, err
	}

	names := make([]string, len(nodeIPs))
	nodeNS := map[string]*netns.NS{}
	swPort := map[string]string{}
	macs := map[string]string{}
	for i, ip := range nodeIPs {
		name := fmt.Sprintf("r%d-node-%c", runNo, 'a'+i)
		names[i] = name
		ns, err := newNS(fmt.Sprintf("l2fo-n%c", 'a'+i))
		if err != nil {
			return res, err
		}
		nodeNS[name], swPort[name] = ns, fmt.Sprintf("sw%c", 'a'+i)
		if err := join(ns, swPort[name], ip+"/24"); err != nil {
			return res, err
		}
		// The node holds the address itself (as kube-proxy's IPVS mode would) so it accepts
		// the traffic, but its kernel never answers ARP for it: only FerroLB's responder does.
		if err := runAll(ns, [][]string{
			{"ip", "addr", "add", vip.String() + "/32", "dev", "lo"},
			{"sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1"},
			{"sysctl", "-qw", "net.ipv4.conf.eth0.arp_ignore=1"},
		}); err != nil {
			return res, err
		}
		out, err := ns.Run("cat", "/sys/class/net/eth0/address")
		if err != nil {
			return res, err
		}
		macs[name] = strings.TrimSpace(out)
		stopServer, err := serve(ns, name)
		if err != nil {
			return res, err
		}
		cleanups = append(cleanups, stopServer)
	}
	old, _ := l2.Announcer(vip, names)
	res.old = old
	var survivors []string
	for _, n := range names {
		if n != old {
			survivors = append(survivors, n)
		}
	}
	res.new, _ = l2.Announcer(vip, survivors)

	// The cluster: three Nodes, a Service whose address the controller would have written.
	c := env.Client
	for i, name := range names {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if err := c.Create(ctx, n); err != nil {
			return res, err
		}
		cleanups = append(cleanups, func() error { return client.IgnoreNotFound(c.Delete(context.Background(), n)) })
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: nodeIPs[i]}}
		if err := c.Status().Update(ctx, n); err != nil {
			return res, err
		}
	}
	svcName := fmt.Sprintf("web-%d", runNo)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: svcName},
		Spec: corev1.ServiceSpec{
			Type:                          corev1.ServiceTypeLoadBalancer,
			AllocateLoadBalancerNodePorts: ptr.To(false),
			Ports:                         []corev1.ServicePort{{Port: port, TargetPort: intstr.FromInt32(port), Protocol: corev1.ProtocolUDP}},
		},
	}
	if err := c.Create(ctx, svc); err != nil {
		return res, err
	}
	cleanups = append(cleanups, func() error { return client.IgnoreNotFound(c.Delete(context.Background(), svc)) })
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: vip.String()}}
	if err := c.Status().Update(ctx, svc); err != nil {
		return res, err
	}

	// The speakers. Each is stopped (and waited for) at the end; the announcer's is cancelled
	// early, which is the crash.
	kill := map[string]context.CancelFunc{}
	for _, name := range names {
		cancel, wait := startSpeaker(ctx, env, name, nodeNS[name])
		kill[name] = cancel
		cleanups = append(cleanups, func() error { cancel(); return wait(15 * time.Second) })
	}
	setupBy := time.Now().Add(timeout)
	if err := waitAnnounced(ctx, env, svcName, old, setupBy); err != nil {
		return res, err
	}
	// Until the speakers hear each other's heartbeats, each thinks it is alone and announces
	// everything: let that settle before the client resolves the address for the first time.
	if err := sleep(ctx, time.Second); err != nil {
		return res, err
	}

	// The client: probes, and a watch on its neighbour entry.
	watch, err := watchNeighbour(cl)
	if err != nil {
		return res, err
	}
	cleanups = append(cleanups, watch.stop)
	p, err := startProbes(cl)
	if err != nil {
		return res, err
	}
	cleanups = append(cleanups, p.stop)
	for watch.current() != macs[old] || p.streak(old) < 40 {
		if time.Now().After(setupBy) || ctx.Err() != nil {
			return res, fmt.Errorf("before the failover, the client's entry for %s is %q (want %s of %s) and %d consecutive probes were answered by %s: gave up after %v",
				vip, watch.current(), macs[old], old, p.streak(old), old, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The survivor's view of the old announcer's heartbeats: detection starts at the last.
	oldIP := nodeIPs[slices.Index(names, old)]
	hb, err := sniffHeartbeats(nodeNS[res.new], netip.MustParseAddr(oldIP))
	if err != nil {
		return res, fmt.Errorf("watch heartbeats on %s: %w", res.new, err)
	}
	cleanups = append(cleanups, hb.stop)
	if err := sleep(ctx, 300*time.Millisecond); err != nil { // a few heartbeats in
		return res, err
	}

	// The crash.
	t0 := time.Now()
	kill[old]()
	if cutPort {
		if _, err := sw.Run("ip", "link", "set", swPort[old], "down"); err != nil {
			return res, err
		}
	}
	deadline := t0.Add(timeout)
	for {
		flipAt, flipped := watch.changedTo(macs[res.new], t0)
		firstSeq, answered := p.firstAnsweredBy(res.new, t0)
		if flipped && answered {
			// Let the probes in flight come back before counting the lost ones.
			if err := sleep(ctx, 50*time.Millisecond); err != nil {
				return res, err
			}
			lastHB, err := hb.lastBefore(flipAt)
			if err != nil {
				return res, err
			}
			res.flip = flipAt.Sub(t0)
			res.sinceHeartbeat = flipAt.Sub(lastHB)
			res.restored = p.sentAt(firstSeq).Sub(t0)
			res.lost = p.unanswered(t0, firstSeq)
			if stray := p.answeredByOthers(t0, old, res.new); stray > 0 {
				return res, fmt.Errorf("%d probes after t0 were answered by neither %s nor %s", stray, old, res.new)
			}
			return res, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return res, fmt.Errorf("no failover from %s to %s within %v: client's entry %q (want %s), last probe answered by %q",
				old, res.new, timeout, watch.current(), macs[res.new], p.lastAnswer())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// runAll runs commands (each given as argv) in ns, stopping at the first failure.
func runAll(ns *netns.NS, argvs [][]string) error {
	for _, a := range argvs {
		if _, err := ns.Run(a[0], a[1:]...); err != nil {
			return err
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// serve answers every datagram to vip:port in ns with the datagram's first 8 bytes (the
// probe's sequence number) followed by the node's name, until stopped.
func serve(ns *netns.NS, name string) (stop func() error, err error) {
	var conn net.PacketConn
	if err := ns.Do(func() (err error) {
		conn, err = net.ListenPacket("udp4", netip.AddrPortFrom(vip, port).String())
		return err
	}); err != nil {
		return nil, fmt.Errorf("UDP server of %s: %w", name, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return // closed
			}
			if n < 8 {
				continue
			}
			_, _ = conn.WriteTo(append(buf[:8:8], name...), from)
		}
	}()
	return func() error {
		err := conn.Close()
		<-done
		return err
	}, nil
}

func startSpeaker(ctx context.Context, env *kubetest.Env, name string, ns *netns.NS) (cancel context.CancelFunc, wait func(time.Duration) error) {
	ctx, cancel = context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- speaker.Run(ctx, env.Config, speaker.Options{
			NodeName: name, MetricsAddr: "0", HealthAddr: "0", Netns: ns.Do, Restartable: true,
		})
	}()
	var once sync.Once
	var result error
	return cancel, func(limit time.Duration) error {
		once.Do(func() {
			select {
			case err := <-done:
				if err != nil {
					result = fmt.Errorf("speaker %s: %w", name, err)
				}
			case <-time.After(limit):
				result = fmt.Errorf("speaker %s did not stop within %v", name, limit)
			}
		})
		return result
	}
}

// waitAnnounced waits until the Service's Announced condition names node as the announcer of
// vip: that speaker has synced its caches and answers for the address.
func waitAnnounced(ctx context.Context, env *kubetest.Env, svcName, node string, deadline time.Time) error {
	want := fmt.Sprintf("%s by %s", vip, node)
	for {
		svc := &corev1.Service{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: svcName}, svc); err != nil {
			return err
		}
		c := meta.FindStatusCondition(svc.Status.Conditions, speaker.ConditionAnnounced)
		if c != nil && strings.Contains(c.Message, want) {
			return nil
		}
		if time.Now().After(deadline) {
			msg := "none"
			if c != nil {
				msg = c.Message
			}
			return fmt.Errorf("the speakers did not announce %s within the set-up time: Announced condition %q, want %q", vip, msg, want)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// probes sends a numbered datagram to vip:port every probeGap from the client's namespace and
// records who answered each.
type probes struct {
	conn net.PacketConn
	done chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	sent    []time.Time // by sequence number
	by      map[int]string
	streaks map[string]int // consecutive answers from each node, latest last
	last    string
}

func startProbes(ns *netns.NS) (*probes, error) {
	p := &probes{done: make(chan struct{}), by: map[int]string{}, streaks: map[string]int{}}
	if err := ns.Do(func() (err error) {
		p.conn, err = net.ListenPacket("udp4", netip.MustParsePrefix(clientIP).Addr().String()+":0")
		return err
	}); err != nil {
		return nil, fmt.Errorf("client socket: %w", err)
	}
	dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(vip, port))
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(probeGap)
		defer tick.Stop()
		b := make([]byte, 8)
		for {
			p.mu.Lock()
			seq := len(p.sent)
			p.sent = append(p.sent, time.Now())
			p.mu.Unlock()
			binary.BigEndian.PutUint64(b, uint64(seq))
			// A send that fails (no neighbour yet) is a probe lost like any other.
			_, _ = p.conn.WriteTo(b, dst)
			select {
			case <-p.done:
				return
			case <-tick.C:
			}
		}
	}()
	go func() {
		defer p.wg.Done()
		buf := make([]byte, 64)
		for {
			n, _, err := p.conn.ReadFrom(buf)
			if err != nil {
				return // closed
			}
			if n < 8 {
				continue
			}
			seq, name := int(binary.BigEndian.Uint64(buf[:8])), string(buf[8:n]) //nolint:gosec // our own numbers
			p.mu.Lock()
			if _, dup := p.by[seq]; !dup && seq < len(p.sent) {
				p.by[seq] = name
				for n := range p.streaks {
					if n != name {
						p.streaks[n] = 0
					}
				}
				p.streaks[name]++
				p.last = name
			}
			p.mu.Unlock()
		}
	}()
	return p, nil
}

func (p *probes) stop() error {
	close(p.done)
	err := p.conn.Close()
	p.wg.Wait()
	return err
}

func (p *probes) streak(node string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.streaks[node]
}

func (p *probes) lastAnswer() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

func (p *probes) sentAt(seq int) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent[seq]
}

// firstAnsweredBy returns the first probe sent after t0 that node answered.
func (p *probes) firstAnsweredBy(node string, t0 time.Time) (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for seq := p.firstAfter(t0); seq < len(p.sent); seq++ {
		if p.by[seq] == node {
			return seq, true
		}
	}
	return 0, false
}

// unanswered counts the probes sent from t0 up to (not including) seq that nobody answered.
func (p *probes) unanswered(t0 time.Time, seq int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	lost := 0
	for s := p.firstAfter(t0); s < seq; s++ {
		if _, ok := p.by[s]; !ok {
			lost++
		}
	}
	return lost
}

// answeredByOthers counts the probes sent after t0 answered by a node other than old and new.
func (p *probes) answeredByOthers(t0 time.Time, old, new string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for s := p.firstAfter(t0); s < len(p.sent); s++ {
		if by, ok := p.by[s]; ok && by != old && by != new {
			n++
		}
	}
	return n
}

// firstAfter is the first sequence number sent at or after t; call with mu held.
func (p *probes) firstAfter(t time.Time) int {
	seq, _ := slices.BinarySearchFunc(p.sent, t, func(s, t time.Time) int { return s.Compare(t) })
	return seq
}

// neighbourWatch follows the client's neighbour entry for vip on eth0: every change the
// kernel reports (a netlink subscription, timestamped as it arrives), and a poll every 10 ms
// in case a report is lost.
type neighbourWatch struct {
	done chan struct{}
	wg   sync.WaitGroup
	h    *netlink.Handle

	mu      sync.Mutex
	mac     string
	changes []neighChange
}

type neighChange struct {
	at  time.Time
	mac string
}

func watchNeighbour(ns *netns.NS) (*neighbourWatch, error) {
	nsh, err := vnetns.GetFromName(ns.Name)
	if err != nil {
		return nil, err
	}
	defer func() { _ = nsh.Close() }()
	h, err := netlink.NewHandleAt(nsh, syscall.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	link, err := h.LinkByName("eth0")
	if err != nil {
		h.Close()
		return nil, err
	}
	w := &neighbourWatch{done: make(chan struct{}), h: h}
	updates := make(chan netlink.NeighUpdate, 256)
	if err := netlink.NeighSubscribeWithOptions(updates, w.done, netlink.NeighSubscribeOptions{Namespace: &nsh}); err != nil {
		h.Close()
		return nil, fmt.Errorf("subscribe to the client's neighbour table: %w", err)
	}
	ifindex := link.Attrs().Index
	w.wg.Add(2)
	go func() {
		defer w.wg.Done()
		for {
			select {
			case <-w.done:
				return
			case u, ok := <-updates:
				if !ok {
					return
				}
				if u.LinkIndex == ifindex && u.IP.Equal(vip.AsSlice()) {
					w.observe(macOf(&u.Neigh, u.Type == syscall.RTM_DELNEIGH))
				}
			}
		}
	}()
	go func() {
		defer w.wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.done:
				return
			case <-tick.C:
			}
			list, err := h.NeighList(ifindex, netlink.FAMILY_V4)
			if err != nil {
				continue
			}
			mac := ""
			for i := range list {
				if list[i].IP.Equal(vip.AsSlice()) {
					mac = macOf(&list[i], false)
				}
			}
			w.observe(mac)
		}
	}()
	return w, nil
}

// macOf is the MAC a neighbour entry resolves to, or "" while it resolves nothing.
func macOf(n *netlink.Neigh, deleted bool) string {
	if deleted || n.State&(netlink.NUD_INCOMPLETE|netlink.NUD_FAILED|netlink.NUD_NONE) != 0 || len(n.HardwareAddr) != 6 {
		return ""
	}
	return n.HardwareAddr.String()
}

func (w *neighbourWatch) observe(mac string) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if mac != w.mac {
		w.mac = mac
		w.changes = append(w.changes, neighChange{at: now, mac: mac})
	}
}

func (w *neighbourWatch) current() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mac
}

// changedTo returns when the entry first held mac after t0.
func (w *neighbourWatch) changedTo(mac string, t0 time.Time) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.changes {
		if c.mac == mac && !c.at.Before(t0) {
			return c.at, true
		}
	}
	return time.Time{}, false
}

func (w *neighbourWatch) stop() error {
	close(w.done)
	w.wg.Wait()
	w.h.Close()
	return nil
}

// errorSink is a logr sink for the speakers that counts errors (printing them with -v) and
// drops everything else.
type errorSink struct {
	name string
	kv   []any
}

var runNumber = regexp.MustCompile(`\b(web-|r)\d+(-node-[a-c])?\b`)

var speakerErrors struct {
	sync.Mutex
	verbose bool
	count   map[string]int // by message and error, without the per-reconcile values
}

func (errorSink) Init(logr.RuntimeInfo)    {}
func (errorSink) Enabled(int) bool         { return false }
func (errorSink) Info(int, string, ...any) {}

func (s errorSink) WithName(n string) logr.LogSink {
	if s.name != "" {
		n = s.name + "." + n
	}
	return errorSink{name: n, kv: s.kv}
}

func (s errorSink) WithValues(kv ...any) logr.LogSink {
	return errorSink{name: s.name, kv: append(slices.Clip(s.kv), kv...)}
}

func (s errorSink) Error(err error, msg string, kv ...any) {
	speakerErrors.Lock()
	defer speakerErrors.Unlock()
	if speakerErrors.count == nil {
		speakerErrors.count = map[string]int{}
	}
	// One line per kind of error, not per run: the runs' Services differ by number.
	speakerErrors.count[runNumber.ReplaceAllString(fmt.Sprintf("%s: %v", msg, err), "${1}N$2")]++
	if speakerErrors.verbose {
		fmt.Fprintf(os.Stderr, "%s speaker error: %s: %v %v\n", time.Now().Format("15:04:05.000"), msg, err, append(slices.Clip(s.kv), kv...))
	}
}

// reportSpeakerErrors prints how many errors the speakers logged, most frequent first.
func reportSpeakerErrors() {
	speakerErrors.Lock()
	defer speakerErrors.Unlock()
	if len(speakerErrors.count) == 0 {
		return
	}
	msgs := slices.Collect(maps.Keys(speakerErrors.count))
	slices.SortFunc(msgs, func(a, b string) int { return speakerErrors.count[b] - speakerErrors.count[a] })
	total := 0
	for _, m := range msgs {
		total += speakerErrors.count[m]
	}
	fmt.Printf("\nthe speakers logged %d errors (-v prints them as they happen):\n", total)
	for _, m := range msgs {
		fmt.Printf("  %4d x %s\n", speakerErrors.count[m], m)
	}
}
