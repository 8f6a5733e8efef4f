package ndp

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
)

// Frame layout: the responder reads and writes whole Ethernet frames (see conn.go for why).
const (
	ethHeaderLen  = 14
	ipv6HeaderLen = 40
	etherTypeIPv6 = 0x86dd
	protoICMPv6   = 58
	// icmpOffset is where the ICMPv6 message starts in an untagged Ethernet frame.
	icmpOffset = ethHeaderLen + ipv6HeaderLen
	// nsLen is the fixed part of a Neighbor Solicitation (RFC 4861 4.3): type, code,
	// checksum, reserved and the 16-byte target.
	nsLen = 24
)

var (
	// allNodes is ff02::1, where unsolicited advertisements and answers to DAD probes go.
	allNodes = netip.MustParseAddr("ff02::1")
	// allNodesMAC is the Ethernet group address of ff02::1 (RFC 2464 section 7).
	allNodesMAC = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
)

// dropReason says why an incoming frame got no answer. dropNone means it was answered.
// Every path through decide ends in exactly one reason, so each is table-tested.
type dropReason int

const (
	dropNone         dropReason = iota // answered
	dropMalformed                      // not a well-formed IPv6/ICMPv6/NDP frame
	dropOwnFrame                       // sent by this interface (a looped-back copy)
	dropNotNS                          // a well-formed packet, but not a Neighbor Solicitation
	dropHopLimit                       // hop limit != 255: not from a neighbour on this link (RFC 4861 7.1.1)
	dropChecksum                       // ICMPv6 checksum wrong
	dropInvalid                        // fails another RFC 4861 7.1.1 check, or an odd destination
	dropNotAnnounced                   // the target is not an address we announce
)

func (d dropReason) String() string {
	switch d {
	case dropNone:
		return "none"
	case dropMalformed:
		return "malformed"
	case dropOwnFrame:
		return "own-frame"
	case dropNotNS:
		return "not-neighbor-solicitation"
	case dropHopLimit:
		return "hop-limit"
	case dropChecksum:
		return "checksum"
	case dropInvalid:
		return "invalid"
	case dropNotAnnounced:
		return "not-announced"
	}
	return fmt.Sprintf("dropReason(%d)", int(d))
}

// reply is a Neighbor Advertisement ready to be framed: from src (the announced address) to
// dst at Ethernet address dstMAC.
type reply struct {
	dstMAC   net.HardwareAddr
	src, dst netip.Addr
	na       *ndp.NeighborAdvertisement
}

// decide classifies one received Ethernet frame and, when it is a valid Neighbor
// Solicitation for an address announced(target) reports true, returns the answer. It is pure
// (no sockets, no clock, no locks) so the table tests and the fuzz test drive it directly;
// the caller holds whatever lock protects announced.
func decide(b []byte, own net.HardwareAddr, announced func(netip.Addr) bool) (reply, dropReason) {
	if len(b) < icmpOffset || binary.BigEndian.Uint16(b[12:14]) != etherTypeIPv6 {
		return reply{}, dropMalformed
	}
	ethSrc := net.HardwareAddr(b[6:12])
	if string(ethSrc) == string(own) {
		return reply{}, dropOwnFrame
	}
	ip := b[ethHeaderLen:]
	if ip[0]>>4 != 6 {
		return reply{}, dropMalformed
	}
	// Ethernet pads short frames, so the IPv6 payload length, not the frame, says where the
	// message ends. A zero length would be a jumbogram, which Ethernet cannot carry.
	plen := int(binary.BigEndian.Uint16(ip[4:6]))
	if plen == 0 || ipv6HeaderLen+plen > len(ip) {
		return reply{}, dropMalformed
	}
	// NDP messages carry no extension headers in practice; anything else is not ours.
	if ip[6] != protoICMPv6 {
		return reply{}, dropNotNS
	}
	hopLimit := ip[7]
	src := netip.AddrFrom16([16]byte(ip[8:24]))
	dst := netip.AddrFrom16([16]byte(ip[24:40]))
	msg := ip[ipv6HeaderLen : ipv6HeaderLen+plen]
	if ipv6.ICMPType(msg[0]) != ipv6.ICMPTypeNeighborSolicitation {
		return reply{}, dropNotNS
	}
	// Nothing below may index msg before this: a solicitation shorter than its fixed part
	// (type, code, checksum, reserved, target) is malformed, and a 1-byte message whose
	// checksum sums to zero once took every speaker down (msg[1]).
	if len(msg) < nsLen {
		return reply{}, dropMalformed
	}
	// RFC 4861 7.1.1: a hop limit of 255 proves the sender is on this link (a router would
	// have decremented it), so nobody off-link can make us advertise.
	if hopLimit != ndp.HopLimit {
		return reply{}, dropHopLimit
	}
	// A packet socket sees frames before the kernel's ICMPv6 checks, so verify here.
	if checksum(src, dst, msg) != 0 {
		return reply{}, dropChecksum
	}
	// The ICMP code must be 0 (RFC 4861 7.1.1); ndp.ParseMessage does not look at it.
	if msg[1] != 0 {
		return reply{}, dropMalformed
	}
	m, err := ndp.ParseMessage(msg)
	if err != nil {
		return reply{}, dropMalformed
	}
	ns, ok := m.(*ndp.NeighborSolicitation)
	if !ok { // the type byte said NS, so this cannot happen; stay safe anyway
		return reply{}, dropNotNS
	}
	target := ns.TargetAddress
	if target.IsMulticast() || src.IsMulticast() {
		return reply{}, dropInvalid
	}
	snm, err := ndp.SolicitedNodeMulticast(target)
	if err != nil {
		return reply{}, dropMalformed
	}
	// A solicitation goes to the target's solicited-node group (address resolution, DAD) or to
	// the target itself (unreachability detection, RFC 4861 7.2.2 and 7.3.1). Anything else is
	// not a question about the target.
	if dst != snm && dst != target {
		return reply{}, dropInvalid
	}
	sll := sourceLinkLayer(ns.Options)
	// RFC 4861 7.1.1: a DAD probe (unspecified source) goes to the solicited-node group and
	// carries no source link-layer address.
	if src.IsUnspecified() && (dst != snm || sll != nil) {
		return reply{}, dropInvalid
	}
	if !announced(target) {
		return reply{}, dropNotAnnounced
	}
	// From here on everything is about target, which is announced: nothing is ever built for
	// an address we do not announce.
	if src.IsUnspecified() {
		// RFC 4861 7.2.4: answer a DAD probe to all nodes with Solicited clear. This defends
		// the address: the prober's DAD fails and it does not take our service address.
		return reply{dstMAC: allNodesMAC, src: target, dst: allNodes, na: advertisement(target, false, own)}, dropNone
	}
	// Answer on the link, to the Ethernet address the solicitor named, falling back to the
	// frame's sender for unicast probes that omit it (allowed by RFC 4861 4.3).
	mac := sll
	if mac == nil {
		mac = append(net.HardwareAddr(nil), ethSrc...)
	}
	return reply{dstMAC: mac, src: target, dst: src, na: advertisement(target, true, own)}, dropNone
}

// advertisement is an NA for target with our MAC as target link-layer address. Override is
// always set: we want clients to replace whatever they cached (another node's MAC after a
// failover). Router is clear: a service address is not a router.
func advertisement(target netip.Addr, solicited bool, own net.HardwareAddr) *ndp.NeighborAdvertisement {
	return &ndp.NeighborAdvertisement{
		Solicited:     solicited,
		Override:      true,
		TargetAddress: target,
		Options: []ndp.Option{&ndp.LinkLayerAddress{
			Direction: ndp.Target,
			Addr:      append(net.HardwareAddr(nil), own...),
		}},
	}
}

// sourceLinkLayer returns the source link-layer address option of a solicitation, or nil.
func sourceLinkLayer(opts []ndp.Option) net.HardwareAddr {
	for _, o := range opts {
		if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Source {
			return append(net.HardwareAddr(nil), lla.Addr...)
		}
	}
	return nil
}

// frame builds the Ethernet frame of r, sent from own.
func (r reply) frame(own net.HardwareAddr) ([]byte, error) {
	msg, err := ndp.MarshalMessageChecksum(r.na, r.src, r.dst)
	if err != nil {
		return nil, err
	}
	b := make([]byte, icmpOffset+len(msg))
	copy(b[0:6], r.dstMAC)
	copy(b[6:12], own)
	binary.BigEndian.PutUint16(b[12:14], etherTypeIPv6)
	ip := b[ethHeaderLen:]
	// Version 6, traffic class and flow label 0.
	ip[0] = 6 << 4
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(msg))) //nolint:gosec // an NA with one option is 32 bytes
	ip[6] = protoICMPv6
	ip[7] = ndp.HopLimit
	src, dst := r.src.As16(), r.dst.As16()
	copy(ip[8:24], src[:])
	copy(ip[24:40], dst[:])
	copy(b[icmpOffset:], msg)
	return b, nil
}

// checksum is the ICMPv6 checksum (RFC 4443 2.3) over the IPv6 pseudo-header and msg. Over a
// message whose checksum field is filled in it returns 0 when the checksum is right; over one
// whose field is zero it returns the value to put there.
func checksum(src, dst netip.Addr, msg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for ; len(b) >= 2; b = b[2:] {
			sum += uint32(b[0])<<8 | uint32(b[1])
		}
		if len(b) == 1 {
			sum += uint32(b[0]) << 8
		}
	}
	s, d := src.As16(), dst.As16()
	add(s[:])
	add(d[:])
	n := uint32(len(msg)) //nolint:gosec // bounded by the 16-bit IPv6 payload length
	sum += n>>16 + n&0xffff + protoICMPv6
	add(msg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
