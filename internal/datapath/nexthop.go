package datapath

import (
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// nexthop is where the program sends a backend's packets: the egress interface and the
// MACs to write.
type nexthop struct {
	ifindex uint32
	smac    net.HardwareAddr
	dmac    net.HardwareAddr
	// stack: the backend is reached through an interface the program is not attached to
	// (a pod's veth or a bridge on this node) or is the node itself. Sending there would
	// need an XDP program in the pod, and SNAT replies would not come back through us, so
	// the program passes these flows to the stack, where kube-proxy carries them.
	stack bool
}

// valid reports whether the next hop is resolved: the program can send to it.
func (n nexthop) valid() bool { return n.ifindex != 0 && len(n.smac) == 6 && len(n.dmac) == 6 }

// equal reports whether two next hops would be written the same.
func (n nexthop) equal(o nexthop) bool {
	return n.ifindex == o.ifindex && string(n.smac) == string(o.smac) && string(n.dmac) == string(o.dmac) &&
		n.stack == o.stack
}

// refresh re-resolves every backend's next hop and rewrites the entries that changed.
func (d *Datapath) refresh() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	for _, s := range d.services {
		for _, b := range s.backends {
			nh := d.resolve(b.addr.Addr())
			if !nh.equal(b.nh) {
				b.nh = nh
				_ = d.writeBackend(s.id, b)
			}
		}
	}
}

// resolve finds the egress interface and MACs towards a, from the routing and neighbour
// tables. When the neighbour is unknown it asks the kernel to resolve it (a managed
// neighbour entry) and returns an invalid next hop: the program passes such flows to the
// stack until Run's next refresh. A backend behind an interface the program is not
// attached to, or on the node itself, gets a stack next hop.
func (d *Datapath) resolve(a netip.Addr) nexthop {
	routes, err := d.nl.RouteGet(a.AsSlice())
	if err != nil || len(routes) == 0 {
		return nexthop{}
	}
	r := routes[0]
	if r.Type == unix.RTN_LOCAL || !slices.Contains(d.ifindex, r.LinkIndex) {
		return nexthop{stack: true}
	}
	via := a
	if gw, ok := netip.AddrFromSlice(r.Gw); ok && gw.IsValid() && !gw.IsUnspecified() {
		via = gw.Unmap()
	}
	l, err := d.nl.LinkByIndex(r.LinkIndex)
	if err != nil || len(l.Attrs().HardwareAddr) != 6 {
		return nexthop{}
	}
	fam := netlink.FAMILY_V4
	if via.Is6() {
		fam = netlink.FAMILY_V6
	}
	neighs, err := d.nl.NeighList(r.LinkIndex, fam)
	if err == nil {
		for _, n := range neighs {
			ip, ok := netip.AddrFromSlice(n.IP)
			if !ok || ip.Unmap() != via || len(n.HardwareAddr) != 6 {
				continue
			}
			if n.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE|netlink.NUD_PERMANENT|netlink.NUD_NOARP) == 0 {
				continue
			}
			return nexthop{ifindex: uint32(r.LinkIndex), smac: slices.Clone(l.Attrs().HardwareAddr), //nolint:gosec // ifindex is positive
				dmac: slices.Clone(n.HardwareAddr)}
		}
	}
	_ = d.nl.NeighAdd(&netlink.Neigh{LinkIndex: r.LinkIndex, Family: fam, IP: via.AsSlice(),
		State: netlink.NUD_NONE, FlagsExt: netlink.NTF_EXT_MANAGED})
	return nexthop{}
}
