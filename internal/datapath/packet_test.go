package datapath

import (
	"encoding/binary"
	"net/netip"
)

// Hand-built packets for prog.Run tests: Ethernet, IPv4 (no options) or IPv6, TCP or UDP,
// with valid checksums.

var (
	clientMAC = [6]byte{0x02, 0, 0, 0, 0, 0x01}
	nodeMAC   = [6]byte{0x02, 0, 0, 0, 0, 0x02}
)

type pkt struct {
	src, dst   netip.AddrPort
	proto      Protocol
	payload    []byte
	frag       bool // IPv4: set MF
	ipOptions  bool // IPv4: one NOP-padded option word
	hopByHop   bool // IPv6: a hop-by-hop extension header before L4
	udpNoCsum  bool
	smac, dmac [6]byte
	tcpFlags   byte
	seq, ack   uint32 // TCP sequence and acknowledgment numbers
	ttl        byte   // 0: 64
}

func csumAdd(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

func csumFold(sum uint32) uint16 {
	for sum>>16 != 0 {
		sum = (sum & 0xffff) + (sum >> 16)
	}
	return ^uint16(sum)
}

func pseudo(src, dst netip.Addr, proto byte, l4len int) uint32 {
	s := csumAdd(0, src.AsSlice())
	s = csumAdd(s, dst.AsSlice())
	return s + uint32(proto) + uint32(l4len)
}

func (p pkt) hops() byte {
	if p.ttl == 0 {
		return 64
	}
	return p.ttl
}

// TCP flags.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

func (p pkt) build() []byte {
	var l4 []byte
	if p.proto == TCP {
		l4 = make([]byte, 20+len(p.payload))
		binary.BigEndian.PutUint16(l4[0:], p.src.Port())
		binary.BigEndian.PutUint16(l4[2:], p.dst.Port())
		binary.BigEndian.PutUint32(l4[4:], p.seq)
		binary.BigEndian.PutUint32(l4[8:], p.ack)
		l4[12] = 5 << 4
		l4[13] = p.tcpFlags
		if l4[13] == 0 {
			l4[13] = tcpSYN
		}
		binary.BigEndian.PutUint16(l4[14:], 65535)
		copy(l4[20:], p.payload)
	} else {
		l4 = make([]byte, 8+len(p.payload))
		binary.BigEndian.PutUint16(l4[0:], p.src.Port())
		binary.BigEndian.PutUint16(l4[2:], p.dst.Port())
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		copy(l4[8:], p.payload)
	}
	cs := csumFold(csumAdd(pseudo(p.src.Addr(), p.dst.Addr(), byte(p.proto), len(l4)), l4))
	if p.proto == TCP {
		binary.BigEndian.PutUint16(l4[16:], cs)
	} else if !p.udpNoCsum {
		if cs == 0 {
			cs = 0xffff
		}
		binary.BigEndian.PutUint16(l4[6:], cs)
	}
	smac, dmac := p.smac, p.dmac
	if smac == [6]byte{} {
		smac = clientMAC
	}
	if dmac == [6]byte{} {
		dmac = nodeMAC
	}
	b := append([]byte{}, dmac[:]...)
	b = append(b, smac[:]...)
	if p.src.Addr().Is4() {
		b = append(b, 0x08, 0x00)
		hl := 20
		if p.ipOptions {
			hl = 24
		}
		ip := make([]byte, hl)
		ip[0] = 0x40 | byte(hl/4)
		binary.BigEndian.PutUint16(ip[2:], uint16(hl+len(l4)))
		if p.frag {
			ip[6] = 0x20
		}
		ip[8] = p.hops()
		ip[9] = byte(p.proto)
		copy(ip[12:], p.src.Addr().AsSlice())
		copy(ip[16:], p.dst.Addr().AsSlice())
		if p.ipOptions {
			ip[20], ip[21], ip[22], ip[23] = 1, 1, 1, 0 // NOP NOP NOP EOL
		}
		binary.BigEndian.PutUint16(ip[10:], csumFold(csumAdd(0, ip)))
		b = append(b, ip...)
	} else {
		b = append(b, 0x86, 0xdd)
		ip := make([]byte, 40)
		ip[0] = 0x60
		next := byte(p.proto)
		var ext []byte
		if p.hopByHop {
			ext = []byte{next, 0, 1, 4, 0, 0, 0, 0} // PadN
			next = 0
		}
		binary.BigEndian.PutUint16(ip[4:], uint16(len(ext)+len(l4)))
		ip[6] = next
		ip[7] = p.hops()
		copy(ip[8:], p.src.Addr().AsSlice())
		copy(ip[24:], p.dst.Addr().AsSlice())
		b = append(b, ip...)
		b = append(b, ext...)
	}
	return append(b, l4...)
}

// parsed is what a test reads back from a packet the program returned.
type parsed struct {
	dmac, smac [6]byte
	src, dst   netip.AddrPort
	proto      byte
	ttl        byte
	ipOK, l4OK bool
	outer      *parsed // set when the packet is IPIP / IP6IP6: the outer header, inner in the rest
	l4csum     uint16
}

func parse(b []byte) parsed {
	var p parsed
	if len(b) < 14 {
		return p
	}
	copy(p.dmac[:], b[0:6])
	copy(p.smac[:], b[6:12])
	eth := binary.BigEndian.Uint16(b[12:])
	ip := b[14:]
	var src, dst netip.Addr
	var l4 []byte
	switch eth {
	case 0x0800:
		hl := int(ip[0]&0xf) * 4
		p.ipOK = csumFold(csumAdd(0, ip[:hl])) == 0
		src = netip.AddrFrom4([4]byte(ip[12:16]))
		dst = netip.AddrFrom4([4]byte(ip[16:20]))
		p.proto = ip[9]
		p.ttl = ip[8]
		l4 = ip[hl:int(binary.BigEndian.Uint16(ip[2:]))]
		if p.proto == 4 {
			inner := parse(append(append([]byte{}, b[:12]...), append([]byte{0x08, 0}, l4...)...))
			inner.outer = &parsed{src: netip.AddrPortFrom(src, 0), dst: netip.AddrPortFrom(dst, 0), proto: 4, ipOK: p.ipOK, dmac: p.dmac, smac: p.smac}
			return inner
		}
	case 0x86dd:
		p.ipOK = true
		src = netip.AddrFrom16([16]byte(ip[8:24]))
		dst = netip.AddrFrom16([16]byte(ip[24:40]))
		p.proto = ip[6]
		p.ttl = ip[7]
		l4 = ip[40 : 40+int(binary.BigEndian.Uint16(ip[4:]))]
		if p.proto == 41 {
			inner := parse(append(append([]byte{}, b[:12]...), append([]byte{0x86, 0xdd}, l4...)...))
			inner.outer = &parsed{src: netip.AddrPortFrom(src, 0), dst: netip.AddrPortFrom(dst, 0), proto: 41, ipOK: true, dmac: p.dmac, smac: p.smac}
			return inner
		}
	default:
		return p
	}
	sp, dp := binary.BigEndian.Uint16(l4[0:]), binary.BigEndian.Uint16(l4[2:])
	p.src, p.dst = netip.AddrPortFrom(src, sp), netip.AddrPortFrom(dst, dp)
	if p.proto == 17 {
		p.l4csum = binary.BigEndian.Uint16(l4[6:])
	} else {
		p.l4csum = binary.BigEndian.Uint16(l4[16:])
	}
	p.l4OK = csumFold(csumAdd(pseudo(src, dst, p.proto, len(l4)), l4)) == 0 || (p.proto == 17 && p.l4csum == 0 && src.Is4())
	return p
}
