package arp

import (
	"bytes"
	"net"
	"net/netip"

	mdarp "github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
)

// dropReason says why a received frame was not answered (MetalLB's pattern: each path of
// the decision has a name, so each is tested by name).
type dropReason int

const (
	// dropReasonNone: the frame was a request for an announced address and was answered.
	dropReasonNone dropReason = iota
	// dropReasonMalformed: not an Ethernet frame carrying an ARP packet that parses.
	dropReasonMalformed
	// dropReasonVLAN: the frame carries an 802.1Q tag; answering untagged would answer on
	// the wrong segment.
	dropReasonVLAN
	// dropReasonNotEthernetIPv4: ARP for another hardware or protocol type (or with
	// address lengths other than 6 and 4).
	dropReasonNotEthernetIPv4
	// dropReasonNotRequest: a reply (or an unknown operation). Replies are never answered.
	dropReasonNotRequest
	// dropReasonNotForUs: sent to a unicast MAC not ours (seen when the interface is
	// promiscuous, a bridge port for instance); the addressee answers it.
	dropReasonNotForUs
	// dropReasonFromUs: sent by us (our MAC as Ethernet source or ARP sender).
	dropReasonFromUs
	// dropReasonBadSender: the sender MAC is all-zero, broadcast or multicast: there is
	// nobody to answer to.
	dropReasonBadSender
	// dropReasonGratuitous: a gratuitous request (sender IP = target IP): an announcement by
	// another host, not a question; nobody waits for an answer, and answering one for our
	// address would contest a takeover by another node.
	dropReasonGratuitous
	// dropReasonNotAnnounced: a request for an address we do not announce.
	dropReasonNotAnnounced
	// dropReasonSendError: to be answered, but the socket refused the answer.
	dropReasonSendError
)

func (d dropReason) String() string {
	switch d {
	case dropReasonNone:
		return "answered"
	case dropReasonMalformed:
		return "malformed"
	case dropReasonVLAN:
		return "VLAN-tagged"
	case dropReasonNotEthernetIPv4:
		return "not Ethernet/IPv4"
	case dropReasonNotRequest:
		return "not a request"
	case dropReasonNotForUs:
		return "not for us"
	case dropReasonFromUs:
		return "from us"
	case dropReasonBadSender:
		return "bad sender"
	case dropReasonGratuitous:
		return "gratuitous"
	case dropReasonNotAnnounced:
		return "not announced"
	case dropReasonSendError:
		return "send error"
	}
	return "dropReason(?)"
}

// hardwareTypeEthernet is ARP's hardware type for Ethernet.
const hardwareTypeEthernet = 1

// decide parses one frame and says whether it is an ARP request to answer. It returns the
// request when the reason is dropReasonNone. It reads r.addrs: the caller holds r.mu.
func (r *Responder) decide(frame []byte) (*mdarp.Packet, dropReason) {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(frame); err != nil {
		return nil, dropReasonMalformed
	}
	if f.VLAN != nil || f.ServiceVLAN != nil {
		return nil, dropReasonVLAN
	}
	if f.EtherType != ethernet.EtherTypeARP || len(f.Payload) < 8 {
		return nil, dropReasonMalformed
	}
	// Check the header before mdlayher/arp parses the addresses: it accepts any lengths
	// (and IPv6-sized protocol addresses).
	p := f.Payload
	if htype, ptype := uint16(p[0])<<8|uint16(p[1]), uint16(p[2])<<8|uint16(p[3]); htype != hardwareTypeEthernet ||
		ptype != uint16(ethernet.EtherTypeIPv4) || p[4] != 6 || p[5] != 4 {
		return nil, dropReasonNotEthernetIPv4
	}
	var req mdarp.Packet
	if err := req.UnmarshalBinary(p); err != nil || !req.SenderIP.Is4() || !req.TargetIP.Is4() {
		return nil, dropReasonMalformed
	}
	if req.Operation != mdarp.OperationRequest {
		return nil, dropReasonNotRequest
	}
	if !isBroadcast(f.Destination) && !bytes.Equal(f.Destination, r.hw) {
		return nil, dropReasonNotForUs
	}
	if bytes.Equal(f.Source, r.hw) || bytes.Equal(req.SenderHardwareAddr, r.hw) {
		return nil, dropReasonFromUs
	}
	if isZero(req.SenderHardwareAddr) || req.SenderHardwareAddr[0]&1 == 1 {
		return nil, dropReasonBadSender
	}
	if req.SenderIP == req.TargetIP {
		return nil, dropReasonGratuitous
	}
	if _, ok := r.addrs[req.TargetIP]; !ok {
		return nil, dropReasonNotAnnounced
	}
	return &req, dropReasonNone
}

// replyFrame is the answer to req from us (hw): sender = our MAC and the address asked for,
// target = the requester, sent to the requester's MAC (as the kernel does). An RFC 5227
// probe (sender IP 0.0.0.0) gets the same answer, to 0.0.0.0, which is what it waits for.
func replyFrame(hw net.HardwareAddr, req *mdarp.Packet) ([]byte, error) {
	return frameBytes(mdarp.OperationReply, hw, req.TargetIP, req.SenderHardwareAddr, req.SenderIP, req.SenderHardwareAddr)
}

// gratuitousFrame announces addr at hw in the form every Linux client accepts: a broadcast
// request with sender IP = target IP = addr and target MAC all-zero. Linux ignores a
// gratuitous *reply* to ff:ff:ff:ff:ff:ff within the neighbour locktime (1 s) of the entry's
// last update, but always takes such a request (it counts as a gratuitous ARP). Clients
// with arp_accept=0 only update entries they have, which is what a takeover needs.
func gratuitousFrame(hw net.HardwareAddr, addr netip.Addr) ([]byte, error) {
	return frameBytes(mdarp.OperationRequest, hw, addr, make(net.HardwareAddr, 6), addr, ethernet.Broadcast)
}

// frameBytes marshals an ARP packet from hw in an Ethernet frame to dst (padded to the
// 60-byte minimum by mdlayher/ethernet).
func frameBytes(op mdarp.Operation, hw net.HardwareAddr, senderIP netip.Addr, targetHW net.HardwareAddr, targetIP netip.Addr, dst net.HardwareAddr) ([]byte, error) {
	p, err := mdarp.NewPacket(op, hw, senderIP, targetHW, targetIP)
	if err != nil {
		return nil, err
	}
	pb, err := p.MarshalBinary()
	if err != nil {
		return nil, err
	}
	f := ethernet.Frame{Destination: dst, Source: hw, EtherType: ethernet.EtherTypeARP, Payload: pb}
	return f.MarshalBinary()
}

func isBroadcast(mac net.HardwareAddr) bool { return bytes.Equal(mac, ethernet.Broadcast) }

func isZero(mac net.HardwareAddr) bool {
	for _, b := range mac {
		if b != 0 {
			return false
		}
	}
	return true
}
