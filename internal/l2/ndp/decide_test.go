package ndp

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/ndp"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

var (
	ownMAC    = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	clientMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	vip       = netip.MustParseAddr("2001:db8::100")
	client    = netip.MustParseAddr("2001:db8::1")
	vipSNM    = mustSNM(vip)
)

func mustSNM(a netip.Addr) netip.Addr {
	g, err := ndp.SolicitedNodeMulticast(a)
	if err != nil {
		panic(err)
	}
	return g
}

// multicastMAC is the Ethernet group address of an IPv6 multicast address (RFC 2464).
func multicastMAC(a netip.Addr) net.HardwareAddr {
	b := a.As16()
	return net.HardwareAddr{0x33, 0x33, b[12], b[13], b[14], b[15]}
}

// pkt describes a frame to build; the zero values of a field take the defaults of nsPkt.
type pkt struct {
	ethSrc, ethDst net.HardwareAddr
	hop            uint8
	src, dst       netip.Addr
	msg            ndp.Message // marshalled with a correct checksum
	raw            []byte      // ICMPv6 bytes used as they are instead of msg (checksum fixed unless badSum)
	badSum         bool
	edit           func(b []byte) []byte // applied to the finished frame
}

// nsPkt is a valid address-resolution solicitation from the client for target.
func nsPkt(target netip.Addr) pkt {
	return pkt{
		ethSrc: clientMAC, ethDst: multicastMAC(mustSNM(target)), hop: 255,
		src: client, dst: mustSNM(target),
		msg: &ndp.NeighborSolicitation{TargetAddress: target, Options: []ndp.Option{
			&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: clientMAC},
		}},
	}
}

func (p pkt) bytes(t testing.TB) []byte {
	t.Helper()
	msg := p.raw
	if p.msg != nil {
		var err error
		msg, err = ndp.MarshalMessage(p.msg)
		if err != nil {
			t.Fatal(err)
		}
	}
	msg = append([]byte(nil), msg...)
	switch {
	case len(msg) >= 4:
		msg[2], msg[3] = 0, 0
		binary.BigEndian.PutUint16(msg[2:4], checksum(p.src, p.dst, msg))
		if p.badSum {
			msg[3] ^= 0xff
		}
	case !p.badSum:
		// Too short to hold a checksum field: make the sum come out right anyway, as an
		// attacker can, by choosing the last 16 bits of the source address (the checksum of
		// the sum with them zero is the value that completes it to all ones).
		s := p.src.As16()
		s[14], s[15] = 0, 0
		binary.BigEndian.PutUint16(s[14:], checksum(netip.AddrFrom16(s), p.dst, msg))
		p.src = netip.AddrFrom16(s)
	}
	b := make([]byte, icmpOffset, icmpOffset+len(msg))
	copy(b[0:6], p.ethDst)
	copy(b[6:12], p.ethSrc)
	binary.BigEndian.PutUint16(b[12:14], etherTypeIPv6)
	ip := b[ethHeaderLen:]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(msg)))
	ip[6] = protoICMPv6
	ip[7] = p.hop
	s, d := p.src.As16(), p.dst.As16()
	copy(ip[8:24], s[:])
	copy(ip[24:40], d[:])
	b = append(b, msg...)
	if p.edit != nil {
		b = p.edit(b)
	}
	return b
}

func onlyVIP(a netip.Addr) bool { return a == vip }

func TestDecide(t *testing.T) {
	solicited := func(dstMAC net.HardwareAddr, dst netip.Addr) *reply {
		return &reply{dstMAC: dstMAC, src: vip, dst: dst, na: advertisement(vip, true, ownMAC)}
	}
	tests := []struct {
		name string
		pkt  pkt
		want dropReason
		rep  *reply // when want is dropNone
	}{
		{
			name: "address resolution: answer to the solicitor's link-layer address",
			pkt:  nsPkt(vip), want: dropNone, rep: solicited(clientMAC, client),
		},
		{
			name: "Ethernet padding after the message is ignored",
			pkt: func() pkt {
				p := nsPkt(vip)
				p.edit = func(b []byte) []byte { return append(b, make([]byte, 20)...) }
				return p
			}(),
			want: dropNone, rep: solicited(clientMAC, client),
		},
		{
			name: "unreachability probe unicast to the address",
			pkt: func() pkt {
				p := nsPkt(vip)
				p.ethDst, p.dst = ownMAC, vip
				return p
			}(),
			want: dropNone, rep: solicited(clientMAC, client),
		},
		{
			name: "unicast probe without source link-layer option: answer the frame's sender",
			pkt: func() pkt {
				p := nsPkt(vip)
				p.ethSrc = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x09}
				p.ethDst, p.dst = ownMAC, vip
				p.msg = &ndp.NeighborSolicitation{TargetAddress: vip}
				return p
			}(),
			want: dropNone, rep: solicited(net.HardwareAddr{0x02, 0, 0, 0, 0, 0x09}, client),
		},
		{
			name: "DAD probe: defend the address to all nodes, Solicited clear",
			pkt: func() pkt {
				p := nsPkt(vip)
				p.src = netip.IPv6Unspecified()
				p.msg = &ndp.NeighborSolicitation{TargetAddress: vip}
				return p
			}(),
			want: dropNone,
			rep:  &reply{dstMAC: allNodesMAC, src: vip, dst: allNodes, na: advertisement(vip, false, ownMAC)},
		},
		{
			name: "DAD probe with a source link-layer option",
			pkt: func() pkt {
				p := nsPkt(vip)
				p.src = netip.IPv6Unspecified()
				return p
			}(),
			want: dropInvalid,
		},
		{
			name: "DAD probe unicast",
			pkt: func() pkt {
				p := nsPkt(vip)
				p.src, p.dst = netip.IPv6Unspecified(), vip
				p.msg = &ndp.NeighborSolicitation{TargetAddress: vip}
				return p
			}(),
			want: dropInvalid,
		},
		{name: "target not announced", pkt: nsPkt(netip.MustParseAddr("2001:db8::200")), want: dropNotAnnounced},
		{
			name: "target not announced in a group we joined (same low 24 bits)",
			pkt: func() pkt {
				p := nsPkt(netip.MustParseAddr("2001:db8:1::100"))
				if p.dst != vipSNM {
					panic("test addresses must share a solicited-node group")
				}
				return p
			}(),
			want: dropNotAnnounced,
		},
		{name: "hop limit 254 (routed)", pkt: func() pkt { p := nsPkt(vip); p.hop = 254; return p }(), want: dropHopLimit},
		{name: "hop limit 1", pkt: func() pkt { p := nsPkt(vip); p.hop = 1; return p }(), want: dropHopLimit},
		{name: "bad checksum", pkt: func() pkt { p := nsPkt(vip); p.badSum = true; return p }(), want: dropChecksum},
		{name: "own frame looped back", pkt: func() pkt { p := nsPkt(vip); p.ethSrc = ownMAC; return p }(), want: dropOwnFrame},
		{
			name: "neighbor advertisement",
			pkt: func() pkt {
				p := nsPkt(vip)
				p.msg = advertisement(vip, false, clientMAC)
				return p
			}(),
			want: dropNotNS,
		},
		{
			name: "router solicitation",
			pkt:  func() pkt { p := nsPkt(vip); p.msg = &ndp.RouterSolicitation{}; return p }(),
			want: dropNotNS,
		},
		{
			name: "echo request",
			pkt:  func() pkt { p := nsPkt(vip); p.msg = nil; p.raw = []byte{128, 0, 0, 0, 0, 1, 0, 1}; return p }(),
			want: dropNotNS,
		},
		{
			name: "UDP, not ICMPv6",
			pkt: func() pkt {
				p := nsPkt(vip)
				p.edit = func(b []byte) []byte { b[ethHeaderLen+6] = 17; return b }
				return p
			}(),
			want: dropNotNS,
		},
		{
			name: "ICMP code not zero",
			pkt: func() pkt {
				p := nsPkt(vip)
				b, _ := ndp.MarshalMessage(p.msg)
				b[1] = 1
				p.msg, p.raw = nil, b
				return p
			}(),
			want: dropMalformed,
		},
		{
			name: "solicitation too short for a target",
			pkt: func() pkt {
				p := nsPkt(vip)
				p.msg = nil
				p.raw = []byte{135, 0, 0, 0, 0, 0, 0, 0, 0x20, 0x01}
				return p
			}(),
			want: dropMalformed,
		},
		{
			name: "option of length zero",
			pkt: func() pkt {
				p := nsPkt(vip)
				b, _ := ndp.MarshalMessage(&ndp.NeighborSolicitation{TargetAddress: vip})
				p.msg, p.raw = nil, append(append([]byte(nil), b...), 1, 0, 0, 0, 0, 0, 0, 0)
				return p
			}(),
			want: dropMalformed,
		},
		{
			name: "multicast target",
			pkt: func() pkt {
				p := nsPkt(vip)
				p.msg = &ndp.NeighborSolicitation{TargetAddress: allNodes}
				return p
			}(),
			want: dropInvalid,
		},
		{
			name: "multicast source",
			pkt:  func() pkt { p := nsPkt(vip); p.src = allNodes; return p }(),
			want: dropInvalid,
		},
		{
			name: "destination neither the group nor the target",
			pkt:  func() pkt { p := nsPkt(vip); p.dst = netip.MustParseAddr("2001:db8::7"); return p }(),
			want: dropInvalid,
		},
		{
			name: "destination another solicited-node group",
			pkt:  func() pkt { p := nsPkt(vip); p.dst = mustSNM(netip.MustParseAddr("2001:db8::7")); return p }(),
			want: dropInvalid,
		},
		{
			name: "empty frame",
			pkt:  func() pkt { p := nsPkt(vip); p.edit = func([]byte) []byte { return nil }; return p }(),
			want: dropMalformed,
		},
		{
			name: "truncated IPv6 header",
			pkt:  func() pkt { p := nsPkt(vip); p.edit = func(b []byte) []byte { return b[:icmpOffset-1] }; return p }(),
			want: dropMalformed,
		},
		{
			name: "not IPv6 EtherType",
			pkt: func() pkt {
				p := nsPkt(vip)
				p.edit = func(b []byte) []byte { b[12], b[13] = 0x08, 0x00; return b }
				return p
			}(),
			want: dropMalformed,
		},
		{
			name: "IP version 4",
			pkt: func() pkt {
				p := nsPkt(vip)
				p.edit = func(b []byte) []byte { b[ethHeaderLen] = 0x45; return b }
				return p
			}(),
			want: dropMalformed,
		},
		{
			name: "payload length beyond the frame",
			pkt: func() pkt {
				p := nsPkt(vip)
				p.edit = func(b []byte) []byte { b[ethHeaderLen+5]++; return b }
				return p
			}(),
			want: dropMalformed,
		},
		{
			name: "payload length zero (jumbogram)",
			pkt: func() pkt {
				p := nsPkt(vip)
				p.edit = func(b []byte) []byte { b[ethHeaderLen+4], b[ethHeaderLen+5] = 0, 0; return b }
				return p
			}(),
			want: dropMalformed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, got := decide(tt.pkt.bytes(t), ownMAC, onlyVIP)
			if got != tt.want {
				t.Fatalf("decide = %v, want %v", got, tt.want)
			}
			if tt.want != dropNone {
				if rep.na != nil {
					t.Errorf("dropped (%v) but built a reply %+v", got, rep)
				}
				return
			}
			if diff := cmp.Diff(*tt.rep, rep, cmp.AllowUnexported(reply{}), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDecideShortSolicitation sends what an attacker on the segment can: a solicitation of
// every length shorter than its fixed 24 bytes, with hop limit 255 and a checksum that
// verifies (for lengths under 4 through the choice of source address), padded by Ethernet to
// the 60-byte minimum frame. Each must be dropped as malformed; the 1-byte one once panicked
// every speaker (decide indexed msg[1]).
func TestDecideShortSolicitation(t *testing.T) {
	full, err := ndp.MarshalMessage(&ndp.NeighborSolicitation{TargetAddress: vip})
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n < nsLen; n++ {
		p := nsPkt(vip)
		p.msg, p.raw = nil, full[:n]
		p.edit = func(b []byte) []byte {
			if len(b) < 60 {
				b = append(b, make([]byte, 60-len(b))...)
			}
			return b
		}
		b := p.bytes(t)
		ip := b[ethHeaderLen:]
		msg := ip[ipv6HeaderLen : ipv6HeaderLen+n]
		if checksum(netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40])), msg) != 0 {
			t.Fatalf("%d bytes: the test frame's checksum does not verify", n)
		}
		if rep, why := decide(b, ownMAC, onlyVIP); why != dropMalformed || rep.na != nil {
			t.Errorf("%d-byte solicitation: decide = %v, want %v", n, why, dropMalformed)
		}
	}
}

// TestReplyFrame checks the bytes that go on the wire: Ethernet and IPv6 headers, hop limit
// 255, source the announced address, a checksum that verifies, and an NA that parses back.
func TestReplyFrame(t *testing.T) {
	rep, why := decide(nsPkt(vip).bytes(t), ownMAC, onlyVIP)
	if why != dropNone {
		t.Fatal(why)
	}
	b, err := rep.frame(ownMAC)
	if err != nil {
		t.Fatal(err)
	}
	if got := net.HardwareAddr(b[0:6]); got.String() != clientMAC.String() {
		t.Errorf("Ethernet destination %s, want %s", got, clientMAC)
	}
	if got := net.HardwareAddr(b[6:12]); got.String() != ownMAC.String() {
		t.Errorf("Ethernet source %s, want %s", got, ownMAC)
	}
	ip := b[ethHeaderLen:]
	src := netip.AddrFrom16([16]byte(ip[8:24]))
	dst := netip.AddrFrom16([16]byte(ip[24:40]))
	if ip[0]>>4 != 6 || ip[6] != protoICMPv6 || ip[7] != 255 || src != vip || dst != client {
		t.Errorf("IPv6 header: version %d next %d hop %d %s -> %s", ip[0]>>4, ip[6], ip[7], src, dst)
	}
	msg := ip[ipv6HeaderLen:]
	if int(binary.BigEndian.Uint16(ip[4:6])) != len(msg) {
		t.Errorf("payload length %d, message %d bytes", binary.BigEndian.Uint16(ip[4:6]), len(msg))
	}
	if c := checksum(src, dst, msg); c != 0 {
		t.Errorf("checksum does not verify (%#x)", c)
	}
	m, err := ndp.ParseMessage(msg)
	if err != nil {
		t.Fatal(err)
	}
	want := &ndp.NeighborAdvertisement{Solicited: true, Override: true, TargetAddress: vip, Options: []ndp.Option{
		&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: ownMAC},
	}}
	if diff := cmp.Diff(want, m, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("advertisement (-want +got):\n%s", diff)
	}
	// Our own advertisement, looped back to us, is never answered.
	if _, why := decide(b, net.HardwareAddr{2, 9, 9, 9, 9, 9}, onlyVIP); why != dropNotNS {
		t.Errorf("our NA classified %v, want %v", why, dropNotNS)
	}
}

// TestChecksumAgainstXNet cross-checks checksum with golang.org/x/net/icmp's implementation,
// for even and odd message lengths.
func TestChecksumAgainstXNet(t *testing.T) {
	for _, data := range [][]byte{nil, {1}, {1, 2, 3, 4, 5, 6, 7}} {
		m := icmp.Message{Type: ipv6.ICMPTypeEchoRequest, Body: &icmp.Echo{ID: 0x1234, Seq: 7, Data: data}}
		b, err := m.Marshal(icmp.IPv6PseudoHeader(client.AsSlice(), vip.AsSlice()))
		if err != nil {
			t.Fatal(err)
		}
		if c := checksum(client, vip, b); c != 0 {
			t.Errorf("data %v: x/net checksum does not verify here (residue %#x)", data, c)
		}
		want := binary.BigEndian.Uint16(b[2:4])
		b[2], b[3] = 0, 0
		if got := checksum(client, vip, b); got != want {
			t.Errorf("data %v: checksum %#x, x/net %#x", data, got, want)
		}
	}
}

func TestCheckAddr(t *testing.T) {
	for _, s := range []string{"192.0.2.1", "::ffff:192.0.2.1", "::", "ff02::1", "::1"} {
		if _, err := checkAddr(netip.MustParseAddr(s)); err == nil {
			t.Errorf("checkAddr(%s) accepted", s)
		}
	}
	if _, err := checkAddr(netip.Addr{}); err == nil {
		t.Error("checkAddr(zero) accepted")
	}
	got, err := checkAddr(netip.MustParseAddr("fe80::1%eth0"))
	if err != nil || got != netip.MustParseAddr("fe80::1") {
		t.Errorf("checkAddr(fe80::1%%eth0) = %v, %v; want fe80::1 without zone", got, err)
	}
}
