package main

import (
	"context"
	"errors"
	"os"
	"os/exec"

	"github.com/cilium/ebpf"
)

// notAvailable is a mode this machine cannot run; its row says why.
type notAvailable string

func (n notAvailable) Error() string { return "not available: " + string(n) }

// env is what the modes work with.
type env struct {
	topo     *topology
	services int
	drop     *xdpCounter   // the node's drop-only program
	counts   []*xdpCounter // the backends' counters, one per backend
}

// mode is one row: setup configures the node, returns how to undo it and, for an XDP mode,
// the node's program (for its per-packet cost).
type mode struct {
	name, what string
	setup      func(ctx context.Context, e *env) (teardown func() error, prog *ebpf.Program, err error)
}

// modes in the order they run: the iptables modes last, since the legacy nat table (and the
// conntrack hooks it brings) cannot be removed from a namespace once loaded.
var modes = []mode{
	{"drop-only", "XDP at the node counts and drops: the generator's ceiling", setupDrop},
	{"probe-one-line", "drop-only plus the least a conntrack must do: parse the 5-tuple, hash it and read one 64-byte line at that index in a 4 MB array (counter.c, count_probe)", setupProbe},
	{"forward", "plain IP forwarding at the node to one backend", setupForward},
	{"ferrolb-snat", "FerroLB XDP, SNAT/DNAT to the backends", setupFerroLBSNAT},
	{"ferrolb-dsr", "FerroLB XDP, DSR: IPIP to the backends (counted as they arrive, before decapsulation)", setupFerroLBDSR},
	{"ferrolb-dsr-decap", "as ferrolb-dsr, the backends decapsulate (datapath.AttachDecap) and count after it, in tcx: includes the backends' stack, on the node's CPU", setupFerroLBDecap},
	{"iptables-nft", "kube-proxy iptables DNAT chains, iptables-nft", func(_ context.Context, e *env) (func() error, *ebpf.Program, error) {
		return setupIptables(e, "nft")
	}},
	{"iptables-legacy", "kube-proxy iptables DNAT chains, iptables-legacy", func(_ context.Context, e *env) (func() error, *ebpf.Program, error) {
		return setupIptables(e, "legacy")
	}},
	{"ipvs", "kube-proxy IPVS mode (masquerade)", setupIPVS},
}

func setupDrop(_ context.Context, e *env) (func() error, *ebpf.Program, error) {
	detach, err := attachXDP(e.topo.node, e.topo.nodeIf, e.drop.objs.CountDrop)
	if err != nil {
		return nil, nil, err
	}
	return detach, e.drop.objs.CountDrop, nil
}

func setupProbe(_ context.Context, e *env) (func() error, *ebpf.Program, error) {
	detach, err := attachXDP(e.topo.node, e.topo.nodeIf, e.drop.objs.CountProbe)
	if err != nil {
		return nil, nil, err
	}
	return detach, e.drop.objs.CountProbe, nil
}

func setupForward(_ context.Context, e *env) (func() error, *ebpf.Program, error) {
	if _, err := e.topo.node.Run("ip", "route", "add", vipNet.String(), "via", backendAddr(0).String()); err != nil {
		return nil, nil, err
	}
	return func() error {
		_, err := e.topo.node.Run("ip", "route", "del", vipNet.String(), "via", backendAddr(0).String())
		return err
	}, nil, nil
}

func setupIptables(e *env, variant string) (func() error, *ebpf.Program, error) {
	if _, err := exec.LookPath("iptables-" + variant + "-restore"); err != nil {
		return nil, nil, notAvailable("iptables-" + variant + "-restore is not installed")
	}
	remove, err := installIptables(e.topo.node, variant, e.services, len(e.topo.backends))
	return remove, nil, err
}

// setupIPVS configures one IPVS virtual service per service, masquerading to the backends,
// where the kernel has IPVS (built in or loadable) and ipvsadm is installed.
func setupIPVS(_ context.Context, e *env) (func() error, *ebpf.Program, error) {
	if _, err := os.Stat("/proc/net/ip_vs"); err != nil {
		if _, err := os.Stat("/proc/modules"); errors.Is(err, os.ErrNotExist) {
			return nil, nil, notAvailable("kernel has no IPVS (not built in, and no loadable modules)")
		}
		if out, err := exec.Command("modprobe", "ip_vs").CombinedOutput(); err != nil {
			return nil, nil, notAvailable("kernel has no IPVS (modprobe ip_vs: " + string(out) + ")")
		}
	}
	if _, err := exec.LookPath("ipvsadm"); err != nil {
		return nil, nil, notAvailable("ipvsadm is not installed")
	}
	n := e.topo.node
	var cmds [][]string
	for i := range e.services {
		v := vip(i).String() + ":8000"
		// IPVS serves addresses local to the node (kube-proxy puts them on kube-ipvs0).
		cmds = append(cmds, []string{"ip", "addr", "add", vip(i).String() + "/32", "dev", "lo"},
			[]string{"ipvsadm", "-A", "-u", v, "-s", "rr"})
		for k := range e.topo.backends {
			cmds = append(cmds, []string{"ipvsadm", "-a", "-u", v, "-r", backendAddr(k).String() + ":8000", "-m"})
		}
	}
	teardown := func() error {
		err := runAll(n, [][]string{{"ipvsadm", "-C"}})
		for i := range e.services {
			_, _ = n.Run("ip", "addr", "del", vip(i).String()+"/32", "dev", "lo")
		}
		return err
	}
	if err := runAll(n, cmds); err != nil {
		return nil, nil, errors.Join(err, teardown())
	}
	return teardown, nil, nil
}
