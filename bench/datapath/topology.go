package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ferrolb/ferrolb/internal/lab/netns"
)

// Addresses of the topology. The generator's frames carry sources from srcNet and
// destinations from vipNet, so they never match anything outside the namespaces.
var (
	genAddr  = netip.MustParseAddr("10.200.0.1")
	nodeAddr = netip.MustParseAddr("10.200.0.2")
	srcNet   = netip.MustParsePrefix("172.16.0.0/16")
	vipNet   = netip.MustParsePrefix("198.18.0.0/16")
)

const (
	svcPort     = 8000
	backendPort = 10000 // + service index: each service's endpoints listen on their own port
)

// backendAddr is backend k's address; the node's end of its link is .1 of the same /24.
func backendAddr(k int) netip.Addr { return netip.AddrFrom4([4]byte{10, 201, byte(k & 0xff), 2}) }
func nodeSideAddr(k int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 201, byte(k & 0xff), 1})
}

// vip is service i's address.
func vip(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18, byte((i / 250) & 0xff), byte((i%250 + 1) & 0xff)})
}

// topology is the generator, the node and the backends, linked by veths:
//
//	gen [G] ---- [I] node [N0] ---- [B0] backend 0
//	                      [N1] ---- [B1] backend 1 ...
//
// Interface names carry a per-process prefix so the node's NAPI threads ("napi/<if>-<id>")
// can be told apart from anyone else's.
type topology struct {
	gen, node *netns.NS
	backends  []*netns.NS

	genIf, nodeIf string   // the generator's link: genIf in gen, nodeIf in node
	nodeBe, beIf  []string // node's end, backend's end of each backend link
	genMAC        net.HardwareAddr
	nodeMAC       net.HardwareAddr
	beMAC         []net.HardwareAddr

	nsList []*netns.NS // everything to delete, in creation order
}

func newTopology(nBackends int, coalesce time.Duration) (t *topology, err error) {
	p := fmt.Sprintf("d%03x", os.Getpid()&0xfff)
	t = &topology{genIf: p + "g", nodeIf: p + "i"}
	defer func() {
		if err != nil {
			err = errors.Join(err, t.Close())
			t = nil
		}
	}()
	newNS := func(prefix string) (*netns.NS, error) {
		ns, err := netns.New(prefix)
		if err == nil {
			t.nsList = append(t.nsList, ns)
		}
		return ns, err
	}
	if t.gen, err = newNS("dpb-gen"); err != nil {
		return t, err
	}
	if t.node, err = newNS("dpb-node"); err != nil {
		return t, err
	}
	if err := netns.Veth(t.gen, t.genIf, t.node, t.nodeIf); err != nil {
		return t, err
	}
	for k := range nBackends {
		be, err := newNS(fmt.Sprintf("dpb-be%d", k))
		if err != nil {
			return t, err
		}
		t.backends = append(t.backends, be)
		n, b := fmt.Sprintf("%sn%d", p, k), fmt.Sprintf("%sb%d", p, k)
		t.nodeBe, t.beIf = append(t.nodeBe, n), append(t.beIf, b)
		if err := netns.Veth(t.node, n, be, b); err != nil {
			return t, err
		}
	}
	if t.genMAC, err = mac(t.gen, t.genIf); err != nil {
		return t, err
	}
	if t.nodeMAC, err = mac(t.node, t.nodeIf); err != nil {
		return t, err
	}

	// The node: a router with static neighbours (bpf_fib_lookup needs them; no ARP during
	// the measurement), no reverse-path filter, and a route back to the sources.
	node := [][]string{
		{"sysctl", "-qw", "net.ipv4.ip_forward=1"},
		{"sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"},
		{"sysctl", "-qw", "net.ipv4.conf.default.rp_filter=0"},
		{"sysctl", "-qw", "net.ipv4.conf." + t.nodeIf + ".rp_filter=0"},
		{"ip", "addr", "add", nodeAddr.String() + "/24", "dev", t.nodeIf},
		{"ip", "neigh", "replace", genAddr.String(), "lladdr", t.genMAC.String(), "dev", t.nodeIf, "nud", "permanent"},
		{"ip", "route", "add", srcNet.String(), "via", genAddr.String()},
	}
	// No TSO on the generator's link: veth hands a packet to its peer's NAPI (the node's
	// thread) only when the sender cannot build TSO packets; otherwise the node's receive
	// work would run in the generator's own context.
	gen := [][]string{
		{"ip", "addr", "add", genAddr.String() + "/24", "dev", t.genIf},
		{"ethtool", "-K", t.genIf, "tso", "off", "gso", "off"},
	}
	if err := runAll(t.gen, gen); err != nil {
		return t, err
	}
	for k, be := range t.backends {
		m, err := mac(be, t.beIf[k])
		if err != nil {
			return t, err
		}
		t.beMAC = append(t.beMAC, m)
		if err := runAll(be, [][]string{
			{"ip", "addr", "add", backendAddr(k).String() + "/24", "dev", t.beIf[k]},
			{"ip", "route", "add", "default", "via", nodeSideAddr(k).String()},
			{"sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"},
		}); err != nil {
			return t, err
		}
		node = append(node,
			[]string{"sysctl", "-qw", "net.ipv4.conf." + t.nodeBe[k] + ".rp_filter=0"},
			[]string{"ip", "addr", "add", nodeSideAddr(k).String() + "/24", "dev", t.nodeBe[k]},
			[]string{"ip", "neigh", "replace", backendAddr(k).String(), "lladdr", m.String(), "dev", t.nodeBe[k], "nud", "permanent"})
	}
	if err := runAll(t.node, node); err != nil {
		return t, err
	}

	// NAPI on every receiving veth (GRO on: veth then polls even without XDP), threaded, so
	// the node's receive work runs in kthreads that can be pinned away from the generator.
	if err := threadedNAPI(t.node, t.nodeIf); err != nil {
		return t, err
	}
	// Interrupt coalescing, as a NIC would do it: once its ring is empty the node's NAPI
	// stays scheduled and polls again after the timeout instead of sleeping until the
	// generator's next packet wakes it. Without it each wake-up (an IPI, a VM exit on a
	// virtual machine) is paid by the generator, and the lightest mode gets the slowest
	// generator.
	if coalesce > 0 {
		if err := runAll(t.node, [][]string{
			{"sh", "-c", "echo 1000 > /sys/class/net/" + t.nodeIf + "/napi_defer_hard_irqs"},
			{"sh", "-c", fmt.Sprintf("echo %d > /sys/class/net/%s/gro_flush_timeout", coalesce.Nanoseconds(), t.nodeIf)},
		}); err != nil {
			return t, err
		}
	}
	// The backends' links poll in softirq context instead, right after the node's thread hands
	// them packets (on the node's CPU): as kthreads of their own they would wait their turn
	// behind the node's and overflow their rings.
	for k, be := range t.backends {
		if _, err := be.Run("ethtool", "-K", t.beIf[k], "gro", "on"); err != nil {
			return t, err
		}
	}
	return t, nil
}

func threadedNAPI(ns *netns.NS, ifname string) error {
	return runAll(ns, [][]string{
		{"ethtool", "-K", ifname, "gro", "on"},
		{"sh", "-c", "echo 1 > /sys/class/net/" + ifname + "/threaded"},
	})
}

// niceness is the nice value of the generator's thread and the node's NAPI threads: the
// machine may be shared, and other work on these two CPUs would be measured as the node's
// (or the generator's) slowness.
var niceness = -20

// pinNAPI moves the NAPI kthreads of the node's and the backends' receiving interfaces to
// cpu, at niceness; it returns how many it moved.
func (t *topology) pinNAPI(cpu int) (int, error) {
	names := append([]string{t.nodeIf}, t.beIf...)
	comms, err := filepath.Glob("/proc/[0-9]*/comm")
	if err != nil {
		return 0, err
	}
	var set unix.CPUSet
	set.Set(cpu)
	moved := 0
	for _, f := range comms {
		b, err := os.ReadFile(f) //nolint:gosec // G304: a /proc/PID/comm path from the glob above
		if err != nil {
			continue // gone
		}
		comm := strings.TrimSpace(string(b))
		if !strings.HasPrefix(comm, "napi/") {
			continue
		}
		dev, _, _ := strings.Cut(strings.TrimPrefix(comm, "napi/"), "-")
		if !slices.Contains(names, dev) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(pid, &set); err != nil {
			return moved, fmt.Errorf("pin %s (pid %d) to CPU %d: %w", comm, pid, cpu, err)
		}
		if err := unix.Setpriority(unix.PRIO_PROCESS, pid, niceness); err != nil {
			return moved, fmt.Errorf("renice %s (pid %d): %w", comm, pid, err)
		}
		moved++
	}
	return moved, nil
}

// pollIdle keeps the CPUs out of sleep states while the benchmark runs (a PM QoS request of
// 0 µs on /dev/cpu_dma_latency, held until the returned function closes it). On a virtual
// machine an idle vCPU halts, and waking the node's NAPI thread then takes long enough for
// the veth's ring to fill: the lightest modes (drop-only) would measure the wake-up latency,
// not the node.
func pollIdle() (release func() error, err error) {
	f, err := os.OpenFile("/dev/cpu_dma_latency", os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write([]byte{0, 0, 0, 0}); err != nil {
		return nil, errors.Join(err, f.Close())
	}
	return f.Close, nil
}

// handle is a netlink handle inside ns; close it.
func handle(ns *netns.NS) (*netlink.Handle, error) {
	nsh, err := vnetns.GetFromName(ns.Name)
	if err != nil {
		return nil, err
	}
	defer func() { _ = nsh.Close() }()
	return netlink.NewHandleAt(nsh)
}

// flushConntrack empties the node's connection-tracking table, so no mode inherits another's
// NAT bindings.
func (t *topology) flushConntrack() error {
	h, err := handle(t.node)
	if err != nil {
		return err
	}
	defer h.Close()
	return h.ConntrackTableFlush(netlink.ConntrackTable)
}

// Close deletes every namespace (the kernel removes their links, XDP programs detach).
func (t *topology) Close() error {
	var errs []error
	for _, ns := range slices.Backward(t.nsList) {
		errs = append(errs, ns.Close())
	}
	t.nsList = nil
	return errors.Join(errs...)
}

func mac(ns *netns.NS, ifname string) (net.HardwareAddr, error) {
	out, err := ns.Run("cat", "/sys/class/net/"+ifname+"/address")
	if err != nil {
		return nil, err
	}
	return net.ParseMAC(strings.TrimSpace(out))
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
