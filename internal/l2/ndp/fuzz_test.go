package ndp

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
)

// FuzzDecide feeds arbitrary bytes through the whole receive path (frame checks,
// ndp.ParseMessage, RFC checks, decision) and checks that it never panics and never answers
// for an address that is not announced.
//
// With raw set, data is the whole Ethernet frame. Otherwise data is the ICMPv6 message and
// the harness wraps it in Ethernet and IPv6 headers with the given hop limit and addresses and
// a correct checksum, so mutations reach ndp.ParseMessage instead of dying at the checksum.
// Messages too short to hold a checksum get one that verifies too, through the source
// address, as an attacker would make them: that is how a 1-byte message reached msg[1].
func FuzzDecide(f *testing.F) {
	seed := func(p pkt) {
		b := p.bytes(f)
		f.Add(b[icmpOffset:], uint8(255), b[ethHeaderLen+8:icmpOffset], false)
		f.Add(b, uint8(0), []byte(nil), true)
	}
	seed(nsPkt(vip))
	seed(nsPkt(netip.MustParseAddr("2001:db8::200")))
	dad := nsPkt(vip)
	dad.src = netip.IPv6Unspecified()
	dad.msg = &ndp.NeighborSolicitation{TargetAddress: vip}
	seed(dad)
	nud := nsPkt(vip)
	nud.dst = vip
	seed(nud)
	// The frame that panicked every speaker: a 1-byte message (type 135) whose checksum
	// sums to zero through the source address (see pkt.bytes).
	short := nsPkt(vip)
	short.msg, short.raw = nil, []byte{byte(ipv6.ICMPTypeNeighborSolicitation)}
	seed(short)

	f.Fuzz(func(t *testing.T, data []byte, hop uint8, addrs []byte, raw bool) {
		frame := data
		if !raw {
			var a [32]byte
			copy(a[:], addrs)
			p := pkt{
				ethSrc: clientMAC, ethDst: ownMAC, hop: hop,
				src: netip.AddrFrom16([16]byte(a[:16])), dst: netip.AddrFrom16([16]byte(a[16:])),
				raw: data,
			}
			if len(data) > 0xffff {
				return
			}
			frame = p.bytes(t)
		}
		var asked []netip.Addr
		announced := func(a netip.Addr) bool {
			asked = append(asked, a)
			return a == vip
		}
		rep, why := decide(frame, ownMAC, announced)
		if why != dropNone {
			if rep.na != nil {
				t.Fatalf("dropped (%v) but built a reply", why)
			}
			return
		}
		// An answer is only ever about the announced address, from it, with our MAC.
		if rep.src != vip || rep.na.TargetAddress != vip || len(asked) != 1 || asked[0] != vip {
			t.Fatalf("answered for %s (target %s, asked %v)", rep.src, rep.na.TargetAddress, asked)
		}
		if !rep.na.Override || rep.na.Router {
			t.Fatalf("flags: %+v", rep.na)
		}
		b, err := rep.frame(ownMAC)
		if err != nil {
			t.Fatalf("frame: %v", err)
		}
		ip := b[ethHeaderLen:]
		if ip[7] != 255 || netip.AddrFrom16([16]byte(ip[8:24])) != vip {
			t.Fatalf("header: hop %d, source %x", ip[7], ip[8:24])
		}
		if int(binary.BigEndian.Uint16(ip[4:6])) != len(ip)-ipv6HeaderLen {
			t.Fatal("payload length")
		}
		if checksum(vip, netip.AddrFrom16([16]byte(ip[24:40])), ip[ipv6HeaderLen:]) != 0 {
			t.Fatal("checksum of our answer does not verify")
		}
	})
}
