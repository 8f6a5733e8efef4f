package arp

import (
	"bytes"
	"net/netip"
	"testing"

	mdarp "github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
)

// FuzzProcessRequest feeds arbitrary frames through the parse-and-decide path with one
// address announced: it must not panic, must answer only with a reply for the announced
// address, from our MAC, to the requester, and must send nothing for a frame it drops.
func FuzzProcessRequest(f *testing.F) {
	ok := request(vip)
	f.Add(ok.bytes())
	f.Add(with(ok, func(a *arpFrame) { a.padTo = 60 }).bytes())
	f.Add(request(netip.MustParseAddr("192.0.2.7")).bytes())
	f.Add(with(ok, func(a *arpFrame) { a.op = 2 }).bytes())
	f.Add(with(ok, func(a *arpFrame) { a.vlan = true }).bytes())
	f.Add(with(ok, func(a *arpFrame) { a.plen, a.spa, a.tpa = 16, make([]byte, 16), make([]byte, 16) }).bytes())
	f.Add(ok.bytes()[:20])
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, frame []byte) {
		r, conn := newTestResponder(t, vip)
		reason := r.processRequest(frame)
		sent := conn.sent()
		if reason != dropReasonNone {
			if len(sent) != 0 {
				t.Fatalf("dropped (%v) but sent %d frames", reason, len(sent))
			}
			return
		}
		if len(sent) != 1 {
			t.Fatalf("answered but sent %d frames, want 1", len(sent))
		}
		var eth ethernet.Frame
		if err := eth.UnmarshalBinary(sent[0].frame); err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
		var reply mdarp.Packet
		if err := reply.UnmarshalBinary(eth.Payload); err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
		if reply.Operation != mdarp.OperationReply || reply.SenderIP != vip ||
			!bytes.Equal(reply.SenderHardwareAddr, ourMAC()) || !bytes.Equal(eth.Source, ourMAC()) {
			t.Fatalf("answer %+v is not a reply from us for %v", reply, vip)
		}
		var req ethernet.Frame
		if err := req.UnmarshalBinary(frame); err != nil {
			t.Fatalf("answered a frame that does not parse: %v", err)
		}
		if !bytes.Equal(eth.Destination, reply.TargetHardwareAddr) || !bytes.Equal(sent[0].to, eth.Destination) ||
			eth.Destination[0]&1 == 1 {
			t.Fatalf("reply sent to %v (frame to %v), target MAC %v: want the requester's unicast MAC",
				sent[0].to, eth.Destination, reply.TargetHardwareAddr)
		}
	})
}
