package ndp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

// conn is what the Responder needs from the network; the unit tests put a fake behind it.
type conn interface {
	// readFrame reads one Ethernet frame into b. It returns net.ErrClosed (wrapped) after
	// close.
	readFrame(b []byte) (int, error)
	// writeFrame sends a complete Ethernet frame whose destination is dst.
	writeFrame(b []byte, dst net.HardwareAddr) error
	// joinGroup and leaveGroup make the interface receive an IPv6 multicast group.
	joinGroup(group netip.Addr) error
	leaveGroup(group netip.Addr) error
	close() error
}

// sysConn is the real conn: two sockets on one interface, both in the network namespace of
// the thread that opened them.
//
// Solicitations are read and advertisements written on an AF_PACKET socket rather than on
// the ICMPv6 socket of ndp.Listen, because the kernel's IPv6 layer stands in the way of a
// node answering for an address it does not hold:
//   - Unreachability probes are unicast to the service address. The kernel drops (or
//     forwards) them as not local before any ICMPv6 socket sees them, so clients' probes
//     would go unanswered and their entries would fail, dropping traffic for seconds each
//     time (the symptom of metallb/metallb#2920).
//   - An answer from an IPv6 socket is routed: with no on-link route to the solicitor it
//     fails, and with only a default route it would go to the router. On a packet socket
//     the answer goes to the solicitor's link-layer address, whatever the routing table.
//   - Sending from the service address through IPv6 sockets needs
//     net.ipv6.ip_nonlocal_bind=1, which relaxes binding for every process in the
//     namespace (the host's, for the speaker); a packet socket needs nothing.
//   - No link-local address is needed, so New works on an interface that just came up or
//     whose link-local is still tentative (metallb/metallb#248).
//
// Group membership goes through an IPv6 socket, not PACKET_ADD_MEMBERSHIP: only the IPv6
// join sends MLD reports, and switches that snoop MLD (including Linux bridges with a
// querier) forward solicited-node traffic only to ports that reported the group.
type sysConn struct {
	pc  *packet.Conn
	grp *ipv6.PacketConn
	ifi *net.Interface
}

// solicitationFilter is a classic BPF program for the packet socket: keep frames addressed to
// this host (unicast, broadcast or multicast; not copies of our own sends, not other hosts'
// frames seen by flooding) that carry an ICMPv6 Neighbor Solicitation right after the IPv6
// header. It runs in the kernel so the responder does not wake up for every IPv6 frame;
// decide checks everything again.
var solicitationFilter = []bpf.Instruction{
	bpf.LoadExtension{Num: bpf.ExtType},                                 // packet type
	bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: 2, SkipTrue: 7},          // > PACKET_MULTICAST: drop
	bpf.LoadAbsolute{Off: 12, Size: 2},                                  // EtherType
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: etherTypeIPv6, SkipTrue: 5}, //
	bpf.LoadAbsolute{Off: ethHeaderLen + 6, Size: 1},                    // next header
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: protoICMPv6, SkipTrue: 3},   //
	bpf.LoadAbsolute{Off: icmpOffset, Size: 1},                          // ICMPv6 type
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(ipv6.ICMPTypeNeighborSolicitation), SkipTrue: 1},
	bpf.RetConstant{Val: 1 << 16}, // keep (up to 64 KiB)
	bpf.RetConstant{Val: 0},       // drop
}

func openConn(ifi *net.Interface) (*sysConn, error) {
	prog, err := bpf.Assemble(solicitationFilter)
	if err != nil {
		return nil, fmt.Errorf("assemble BPF filter: %w", err)
	}
	// The filter is attached at creation (packet.Config), so no unfiltered frame is queued.
	pc, err := packet.Listen(ifi, packet.Raw, etherTypeIPv6, &packet.Config{Filter: prog})
	if err != nil {
		return nil, fmt.Errorf("open packet socket on %s: %w", ifi.Name, err)
	}
	ic, err := icmp.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		return nil, errors.Join(fmt.Errorf("open ICMPv6 socket for group membership: %w", err), pc.Close())
	}
	grp := ic.IPv6PacketConn()
	// This socket exists only to hold memberships; block every ICMPv6 type so the kernel
	// never queues anything on it.
	var f ipv6.ICMPFilter
	f.SetAll(true)
	if err := grp.SetICMPFilter(&f); err != nil {
		return nil, errors.Join(fmt.Errorf("set ICMPv6 filter: %w", err), grp.Close(), pc.Close())
	}
	return &sysConn{pc: pc, grp: grp, ifi: ifi}, nil
}

func (c *sysConn) readFrame(b []byte) (int, error) {
	n, _, err := c.pc.ReadFrom(b)
	return n, err
}

func (c *sysConn) writeFrame(b []byte, dst net.HardwareAddr) error {
	_, err := c.pc.WriteTo(b, &packet.Addr{HardwareAddr: dst})
	return err
}

func (c *sysConn) joinGroup(group netip.Addr) error {
	return c.grp.JoinGroup(c.ifi, &net.IPAddr{IP: group.AsSlice()})
}

func (c *sysConn) leaveGroup(group netip.Addr) error {
	return c.grp.LeaveGroup(c.ifi, &net.IPAddr{IP: group.AsSlice()})
}

func (c *sysConn) close() error {
	return errors.Join(c.pc.Close(), c.grp.Close())
}

// isTransient reports read errors that do not end the responder. The kernel reports ENETDOWN
// once on a packet socket when the link goes down; the socket works again when it comes up.
func isTransient(err error) bool {
	return errors.Is(err, syscall.ENETDOWN)
}
