package packet

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Documentation addresses only (RFC 5737, RFC 3849, RFC 6333 §5.7).
var (
	hostV4   = [4]byte{192, 0, 2, 10}   // a customer's public IPv4 address
	peerV4   = [4]byte{198, 51, 100, 7} // a server on the IPv4 Internet
	routerV4 = [4]byte{203, 0, 113, 1}  // a router that originates ICMP errors
	b4WKA    = [4]byte{192, 0, 0, 2}    // the B4's well-known address
	aftrWKA  = [4]byte{192, 0, 0, 1}    // the AFTR's well-known address
	b4V6     = netip.MustParseAddr("2001:db8:1::2").As16()
	aftrV6   = netip.MustParseAddr("2001:db8::1").As16()
	otherV6  = netip.MustParseAddr("2001:db8:ffff::9").As16()
)

// onesSum is the RFC 1071 one's-complement sum of the concatenation of bs,
// written the slow obvious way so it checks the package's checksums
// independently of gvisor's optimised one.
func onesSum(bs ...[]byte) uint16 {
	var all []byte
	for _, b := range bs {
		all = append(all, b...)
	}
	if len(all)%2 == 1 {
		all = append(all, 0)
	}
	var s uint64
	for i := 0; i < len(all); i += 2 {
		s += uint64(all[i])<<8 | uint64(all[i+1])
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// pseudoHdr4 and pseudoHdr6 are the pseudo-headers of RFC 768 and RFC 8200
// §8.1, laid out as bytes.
func pseudoHdr4(src, dst [4]byte, proto uint8, length int) []byte {
	b := make([]byte, 12)
	copy(b, src[:])
	copy(b[4:], dst[:])
	b[9] = proto
	binary.BigEndian.PutUint16(b[10:], uint16(length))
	return b
}

func pseudoHdr6(src, dst [16]byte, proto uint8, length int) []byte {
	b := make([]byte, 40)
	copy(b, src[:])
	copy(b[16:], dst[:])
	binary.BigEndian.PutUint32(b[32:], uint32(length))
	b[39] = proto
	return b
}

// checkIPv4Header fails t unless b's IPv4 header checksum verifies, both by
// gvisor and from scratch (RFC 791 §3.1, RFC 1071).
func checkIPv4Header(t *testing.T, b []byte) {
	t.Helper()
	if !header.IPv4(b).IsChecksumValid() {
		t.Errorf("gvisor: IPv4 header checksum %#04x invalid", binary.BigEndian.Uint16(b[10:]))
	}
	if s := onesSum(b[:int(b[0]&0xf)*4]); s != 0xffff {
		t.Errorf("IPv4 header sums to %#04x, want 0xffff", s)
	}
}

// checkICMPv6 fails t unless the ICMPv6 message in the IPv6 packet b (no
// extension headers) has the checksum gvisor computes (RFC 4443 §2.3).
func checkICMPv6(t *testing.T, b []byte) {
	t.Helper()
	h := header.IPv6(b)
	m := header.ICMPv6(h.Payload())
	want := header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
		Header: m,
		Src:    h.SourceAddress(),
		Dst:    h.DestinationAddress(),
	})
	if got := m.Checksum(); got != want {
		t.Errorf("ICMPv6 checksum %#04x, gvisor computes %#04x", got, want)
	}
	if s := onesSum(pseudoHdr6([16]byte(b[8:24]), [16]byte(b[24:40]), ProtoICMPv6, len(m)), m); s != 0xffff {
		t.Errorf("ICMPv6 message sums to %#04x, want 0xffff", s)
	}
}

// mkIPv4 builds an IPv4 packet with a 20-octet header around l4.
func mkIPv4(tos, ttl, proto uint8, src, dst [4]byte, l4 []byte) []byte {
	b := make([]byte, IPv4HeaderLen+len(l4))
	PutIPv4Header(b, tos, len(b), 0x1234, true, ttl, proto, src, dst)
	copy(b[IPv4HeaderLen:], l4)
	return b
}

// mkIPv4Opts builds an IPv4 packet whose header carries 4 octets of options
// (three NOPs and an End of Option List, RFC 791 §3.1): IHL 6.
func mkIPv4Opts(proto uint8, src, dst [4]byte, l4 []byte) []byte {
	b := make([]byte, 24+len(l4))
	PutIPv4Header(b, 0, len(b), 7, false, 64, proto, src, dst)
	b[0] = 0x46
	copy(b[20:], []byte{1, 1, 1, 0})
	copy(b[24:], l4)
	SetIPv4HeaderChecksum(b)
	return b
}

// withFrag sets the flags and fragment offset of an IPv4 packet (in place)
// and fixes its checksum.
func withFrag(b []byte, mf bool, offset8 uint16) []byte {
	v := offset8 & 0x1fff
	if mf {
		v |= 0x2000
	}
	binary.BigEndian.PutUint16(b[6:], v)
	SetIPv4HeaderChecksum(b)
	return b
}

// mkTCP is a 20-octet TCP header (RFC 9293 §3.1) with no checksum: the
// functions under test never look past the ports.
func mkTCP(sport, dport uint16) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b, sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	b[12] = 5 << 4
	b[13] = 0x02 // SYN
	return b
}

// mkUDP is a UDP datagram (RFC 768) with the checksum left 0.
func mkUDP(sport, dport uint16, data []byte) []byte {
	b := make([]byte, UDPHeaderLen+len(data))
	binary.BigEndian.PutUint16(b, sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)))
	copy(b[8:], data)
	return b
}

// mkICMPv4 is an ICMPv4 message (RFC 792) with a valid checksum; rest is the
// second 32-bit word (identifier and sequence for an echo).
func mkICMPv4(typ, code uint8, rest uint32, body []byte) []byte {
	b := make([]byte, 8+len(body))
	b[0], b[1] = typ, code
	binary.BigEndian.PutUint32(b[4:], rest)
	copy(b[8:], body)
	binary.BigEndian.PutUint16(b[2:], ^onesSum(b))
	return b
}

// mkIPv6 builds an IPv6 packet: the fixed header, then exts (already
// chained: each one's first octet names the next), then payload. nh is the
// next header of the fixed header.
func mkIPv6(tc uint8, nh, hopLimit uint8, src, dst [16]byte, exts [][]byte, payload []byte) []byte {
	n := 0
	for _, e := range exts {
		n += len(e)
	}
	b := make([]byte, IPv6HeaderLen, IPv6HeaderLen+n+len(payload))
	PutIPv6Header(b, tc, n+len(payload), nh, hopLimit, src, dst)
	for _, e := range exts {
		b = append(b, e...)
	}
	return append(b, payload...)
}

// hopByHop is an 8-octet Hop-by-Hop Options header holding one PadN option
// (RFC 8200 §4.2, §4.3).
func hopByHop(next uint8) []byte { return []byte{next, 0, 1, 4, 0, 0, 0, 0} }

// tunnelEncapLimit is a 16-octet Destination Options header holding the
// Tunnel Encapsulation Limit option of RFC 2473 §4.1.1 (type 4, limit 4) and
// padding: the option a tunnel entry point puts in front of the inner packet.
func tunnelEncapLimit(next uint8) []byte {
	return []byte{next, 1, 4, 1, 4, 1, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0}
}

// routingHdr is an 8-octet-plus-address Routing header of type 3 (RPL, RFC
// 6554 shape) with segments left 0, which a node walks past.
func routingHdr(next uint8) []byte {
	b := make([]byte, 24)
	b[0], b[1], b[2], b[3] = next, 2, 3, 0
	return b
}

// fragmentHdr is an IPv6 Fragment header (RFC 8200 §4.5), first fragment.
func fragmentHdr(next uint8) []byte { return []byte{next, 0, 0, 1, 0, 0, 0, 42} }

func addr6(a [16]byte) tcpip.Address { return tcpip.AddrFrom16(a) }
