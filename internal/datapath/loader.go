package datapath

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/ferrolb/ferrolb/internal/maglev"
	"github.com/ferrolb/ferrolb/internal/nsenter"
)

// objects are what a Datapath loads: all maps, and the programs it attaches or the tests
// and benchmarks compare with (not the benchmark-only programs, which would double the
// verification time).
type objects struct {
	lbMaps
	XdpLb   *ebpf.Program `ebpf:"xdp_lb"`
	XdpDrop *ebpf.Program `ebpf:"xdp_drop"`
	// The IPv4 flow cache's epoch (bpf/lb.c, ct4_cache): the tests empty the cache with it.
	CtEpoch *ebpf.Variable `ebpf:"ct_epoch"`
}

// mapByName is the loaded map of a name in the spec, for loading further programs that
// share them.
func (o *objects) mapByName(name string) *ebpf.Map {
	v := reflect.ValueOf(o.lbMaps)
	t := v.Type()
	for i := range t.NumField() {
		if t.Field(i).Tag.Get("ebpf") == name {
			m, _ := v.Field(i).Interface().(*ebpf.Map)
			return m
		}
	}
	return nil
}

// Close frees the programs and maps.
func (o *objects) Close() error {
	var errs []error
	for _, p := range []*ebpf.Program{o.XdpLb, o.XdpDrop} {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	return errors.Join(append(errs, o.lbMaps.Close())...)
}

// New loads the BPF objects and resolves Config defaults in the network namespace of the
// calling thread, which the Datapath keeps using from any goroutine. It does not attach:
// Run does, so that the attachment lives exactly as long as Run.
func New(cfg Config) (*Datapath, error) {
	if cfg.SNATPortMin == 0 && cfg.SNATPortMax == 0 {
		cfg.SNATPortMin, cfg.SNATPortMax = 61000, 65535
	}
	if cfg.SNATPortMin == 0 || cfg.SNATPortMin > cfg.SNATPortMax {
		return nil, fmt.Errorf("datapath: SNAT port range %d-%d", cfg.SNATPortMin, cfg.SNATPortMax)
	}
	if cfg.ConntrackSize == 0 {
		cfg.ConntrackSize = DefaultConntrackSize
	}
	if err := CheckConntrackSize(cfg.ConntrackSize); err != nil {
		return nil, fmt.Errorf("datapath: conntrack size: %w", err)
	}
	if cfg.MaglevTableSize == 0 {
		cfg.MaglevTableSize = maglev.DefaultSize
	}
	if err := maglev.CheckSize(cfg.MaglevTableSize); err != nil {
		return nil, fmt.Errorf("datapath: Maglev table size: %w", err)
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&cfg.SNATIdleTCP, 6 * time.Hour}, {&cfg.SNATIdleOther, time.Minute}, {&cfg.SNATIdleClosed, 10 * time.Second}} {
		if *d.v == 0 {
			*d.v = d.def
		}
		if *d.v < 0 || *d.v > 1000*24*time.Hour {
			return nil, fmt.Errorf("datapath: SNAT idle timeout %v out of range", *d.v)
		}
	}
	var err error
	if cfg.XDPMode, err = ParseXDPMode(string(cfg.XDPMode)); err != nil {
		return nil, fmt.Errorf("datapath: %w", err)
	}
	if cfg.NexthopRefresh == 0 {
		cfg.NexthopRefresh = 5 * time.Second
	}
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("datapath: current netns: %w", err)
	}
	d := &Datapath{cfg: cfg, xdpMode: cfg.XDPMode, ns: ns, services: map[svcID]*svcState{}, slotOwner: map[uint32]owner{},
		vips: map[netip.Addr]bool{}}
	ok := false
	defer func() {
		if !ok {
			d.free()
		}
	}()
	// A handle in the current namespace (which ns is): NewHandleAt would setns into it,
	// which needs CAP_SYS_ADMIN.
	if d.nl, err = netlink.NewHandle(); err != nil {
		return nil, fmt.Errorf("datapath: netlink: %w", err)
	}
	for _, name := range append([]string{cfg.Interface}, cfg.BackendInterfaces...) {
		l, err := d.nl.LinkByName(name)
		if err != nil {
			return nil, fmt.Errorf("datapath: interface %q: %w", name, err)
		}
		if !slices.Contains(d.names, name) {
			d.names = append(d.names, name)
		}
		if !slices.Contains(d.ifindex, l.Attrs().Index) {
			d.ifindex = append(d.ifindex, l.Attrs().Index)
		}
		if name != cfg.Interface {
			continue
		}
		if !d.cfg.SNATv4.IsValid() {
			d.cfg.SNATv4 = d.firstGlobal(l, netlink.FAMILY_V4)
		}
		if !d.cfg.SNATv6.IsValid() {
			d.cfg.SNATv6 = d.firstGlobal(l, netlink.FAMILY_V6)
		}
	}
	if (d.cfg.SNATv4.IsValid() && !d.cfg.SNATv4.Is4()) || (d.cfg.SNATv6.IsValid() && !d.cfg.SNATv6.Is6()) {
		return nil, fmt.Errorf("datapath: SNAT addresses %v, %v of the wrong family", d.cfg.SNATv4, d.cfg.SNATv6)
	}
	spec, err := loadLb()
	if err != nil {
		return nil, fmt.Errorf("datapath: spec: %w", err)
	}
	if err := sizeMaps(spec, d.cfg); err != nil {
		return nil, err
	}
	if err := setVars(spec, d.cfg); err != nil {
		return nil, err
	}
	if err := spec.LoadAndAssign(&d.objs, nil); err != nil {
		return nil, fmt.Errorf("datapath: load: %w", err)
	}
	for i := uint32(0); i < maxServices; i++ {
		d.svcFree = append(d.svcFree, i)
	}
	// Slot 0 stays unused so that a zero value never names a live backend.
	for i := uint32(1); i < maxBackends; i++ {
		d.beFree = append(d.beFree, i)
	}
	ok = true
	return d, nil
}

// setVars sets the program's constants (volatile const in bpf/lb.c) from the resolved
// Config: the SNAT addresses, port range and idle timeouts. They are fixed at load.
// sizeMaps sets the sizes of the maps that depend on cfg or the machine: the conntrack LRUs,
// and ct4_cache, one part per possible CPU (each CPU indexes its own, see bpf/lb.c).
func sizeMaps(spec *ebpf.CollectionSpec, cfg Config) error {
	size := cfg.ConntrackSize // New checked it against MaxConntrackSize
	// snat_rev holds one entry per SNAT flow, of either family: sized like conntrack so
	// that a node tracking more flows does not evict the ports of live ones.
	for _, m := range []string{"conntrack4", "conntrack6", "snat_rev"} {
		spec.Maps[m].MaxEntries = uint32(size) //nolint:gosec // checked by New
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("datapath: possible CPUs: %w", err)
	}
	lines := ct4CacheLines(size, cpus)
	spec.Maps["ct4_cache"].MaxEntries = lines * uint32(cpus) //nolint:gosec // a few thousand CPUs at most
	if err := spec.Variables["ct4_cache_lines"].Set(lines); err != nil {
		return fmt.Errorf("datapath: set ct4_cache_lines: %w", err)
	}
	return nil
}

// ct4CacheLines is the number of 64-byte lines of ct4_cache per CPU: a power of two, about
// two per flow a CPU's share of conntrack holds (three fit a line), from 1,024 to 65,536.
// The cache's memory is so about 32 bytes per conntrack entry, 8 MB at the default size,
// whatever the number of CPUs.
func ct4CacheLines(conntrack, cpus int) uint32 {
	lines := uint32(1024)
	for lines < 65536 && int(lines) < conntrack/(2*max(cpus, 1)) {
		lines *= 2
	}
	return lines
}

func setVars(spec *ebpf.CollectionSpec, cfg Config) error {
	var s4 uint32
	var s6 [4]uint32
	if cfg.SNATv4.IsValid() {
		s4 = addrWords(cfg.SNATv4)[0]
	}
	if cfg.SNATv6.IsValid() {
		s6 = addrWords(cfg.SNATv6)
	}
	for name, v := range map[string]any{"snat4": s4, "snat6": s6,
		"snat_port_min": cfg.SNATPortMin, "snat_port_max": cfg.SNATPortMax,
		"snat_idle_tcp": ticks(cfg.SNATIdleTCP), "snat_idle_other": ticks(cfg.SNATIdleOther),
		"snat_idle_closed": ticks(cfg.SNATIdleClosed)} {
		if err := spec.Variables[name].Set(v); err != nil {
			return fmt.Errorf("datapath: set %s: %w", name, err)
		}
	}
	return nil
}

// ticks is d in the program's clock ticks (2^30 ns), rounded up.
func ticks(d time.Duration) uint32 {
	return uint32((d + 1<<30 - 1) >> 30) //nolint:gosec // New bounds d to 1000 days
}

// firstGlobal is the first global unicast address of family on l, the default SNAT
// address; zero when there is none.
func (d *Datapath) firstGlobal(l netlink.Link, family int) netip.Addr {
	addrs, err := d.nl.AddrList(l, family)
	if err != nil {
		return netip.Addr{}
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if ok && ip.Unmap().IsGlobalUnicast() {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

// free closes the BPF objects, the netlink handle and the namespace handle.
func (d *Datapath) free() {
	_ = d.objs.Close()
	if d.nl != nil {
		d.nl.Close()
	}
	if d.ns.IsOpen() {
		_ = d.ns.Close()
	}
}

// Close frees the BPF objects of a Datapath whose Run was never called; Run frees them
// itself when it returns.
func (d *Datapath) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || d.ran {
		return nil
	}
	d.closed = true
	d.free()
	return nil
}

// inNS runs f on a thread switched to the Datapath's network namespace, where
// interface indexes and attachments are resolved.
func (d *Datapath) inNS(f func() error) error { return nsenter.Do(d.ns, f) }

// Run attaches the program to Config.Interface and Config.BackendInterfaces, keeps the
// backends' next hops fresh from neighbour updates and a periodic refresh, and detaches
// and frees everything when ctx ends. It can be called once.
func (d *Datapath) Run(ctx context.Context) error {
	d.mu.Lock()
	if d.closed || d.ran {
		d.mu.Unlock()
		return errors.New("datapath: Run called twice or after Close")
	}
	d.ran = true
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.closed = true
		d.free()
		d.mu.Unlock()
	}()

	att := map[string]*attachment{}
	defer func() {
		for _, a := range att {
			_ = a.link.Close()
		}
	}()
	if err := d.attach(att); err != nil {
		return err
	}

	updates := make(chan netlink.NeighUpdate, 256)
	linkUpdates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	// Subscribed from a thread in the namespace (inNS) rather than with the ...At calls,
	// which setns even into the namespace they are in, and so need CAP_SYS_ADMIN.
	if err := d.inNS(func() error { return netlink.NeighSubscribe(updates, done) }); err != nil {
		return fmt.Errorf("datapath: neighbour updates: %w", err)
	}
	if err := d.inNS(func() error { return netlink.LinkSubscribe(linkUpdates, done) }); err != nil {
		return fmt.Errorf("datapath: link updates: %w", err)
	}
	tick := time.NewTicker(d.cfg.NexthopRefresh)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-linkUpdates:
			if !ok {
				linkUpdates = nil
				continue
			}
			// Only our interfaces matter: a busy node creates and deletes pods' veths all
			// the time, and a refresh resolves every backend again.
			ours := d.ours(u, att)
			for drained := false; !drained; {
				select {
				case u := <-linkUpdates:
					ours = ours || d.ours(u, att)
				default:
					drained = true
				}
			}
			if !ours {
				continue
			}
			// An interface deleted and created again (a bond or VLAN rebuilt) has a new
			// index: attach to it, and move the next hops (and a changed MAC) over.
			if err := d.attach(att); err != nil {
				return err
			}
			d.refresh()
		case _, ok := <-updates:
			if !ok {
				updates = nil
				continue
			}
			// Drain a burst of updates into one refresh.
			for drained := false; !drained; {
				select {
				case <-updates:
				default:
					drained = true
				}
			}
			d.refresh()
		case <-tick.C:
			d.refresh()
		}
	}
}

// ours reports whether a link update is about one of the interfaces the program is for,
// by name or by the index it is attached under.
func (d *Datapath) ours(u netlink.LinkUpdate, att map[string]*attachment) bool {
	if u.Link == nil || u.Attrs() == nil {
		return false
	}
	if slices.Contains(d.names, u.Attrs().Name) {
		return true
	}
	for _, a := range att {
		if a.index == u.Attrs().Index {
			return true
		}
	}
	return false
}

// attachment is the program attached to one interface, by index.
type attachment struct {
	index int
	link  link.Link
	mode  XDPMode // native or generic
}

// attach makes the program attached to every configured interface that exists, under the
// index it has now, and sets the indexes that next hops may leave through: an interface
// gone takes its attachment with it (flows to backends behind it pass to the stack), and
// one created again under its name is attached anew, in the mode the others run in.
func (d *Datapath) attach(att map[string]*attachment) error {
	return d.inNS(func() error {
		for _, name := range d.names {
			a := att[name]
			l, err := d.nl.LinkByName(name)
			if err != nil {
				if a != nil {
					_ = a.link.Close()
					delete(att, name)
				}
				continue
			}
			i := l.Attrs().Index
			if a != nil && a.index == i {
				continue
			}
			if a != nil {
				_ = a.link.Close()
				delete(att, name)
			}
			xl, mode, err := d.attachXDP(name, i)
			if err != nil {
				return err
			}
			att[name] = &attachment{index: i, link: xl, mode: mode}
			if d.xdpMode == XDPAuto && mode == XDPGeneric {
				// A program in native mode cannot redirect a packet to an interface without
				// native XDP (the driver has no ndo_xdp_xmit: the packet is dropped), and
				// the program redirects between all its interfaces: all run in generic mode.
				d.xdpMode = XDPGeneric
				if err := d.reattach(att); err != nil {
					return err
				}
			}
		}
		var idx []int
		var shown []Attachment
		for _, name := range d.names {
			if a := att[name]; a != nil && !slices.Contains(idx, a.index) {
				idx = append(idx, a.index)
				shown = append(shown, Attachment{Interface: name, Mode: a.mode})
			}
		}
		d.mu.Lock()
		d.ifindex = idx
		d.attached = shown
		d.mu.Unlock()
		return nil
	})
}

// reattach attaches the program anew, in d.xdpMode, where it runs in another mode. The
// kernel has one mode at a time on an interface, so the old attachment goes first: the
// interface's packets meet no program for that moment, and go to the stack.
func (d *Datapath) reattach(att map[string]*attachment) error {
	for name, a := range att {
		if a.mode == d.xdpMode {
			continue
		}
		_ = a.link.Close()
		delete(att, name)
		xl, mode, err := d.attachXDP(name, a.index)
		if err != nil {
			return err
		}
		att[name] = &attachment{index: a.index, link: xl, mode: mode}
	}
	return nil
}
