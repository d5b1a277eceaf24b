package packet

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// ICMPv6 types and codes the twins send and receive (RFC 4443 §3).
const (
	ICMPv6DstUnreachable = 1
	ICMPv6PacketTooBig   = 2
	ICMPv6TimeExceeded   = 3
	ICMPv6ParamProblem   = 4
	ICMPv6EchoRequest    = 128
	ICMPv6EchoReply      = 129

	// ICMPv6CodeSourcePolicy is "source address failed ingress/egress
	// policy": the lwAFTR's "no binding" answer (RFC 7596 §5.1, §6.2).
	ICMPv6CodeSourcePolicy = 5
)

// Sizes of ICMP errors: RFC 4443 §2.4(c) (as much of the invoking packet as
// fits in the IPv6 minimum MTU) and RFC 1812 §4.3.2.3 (576 for IPv4).
const (
	MaxICMPv6Error = 1280
	MaxICMPv4Error = 576
)

// ICMPv6Error builds a whole IPv6 packet carrying an ICMPv6 error of the given
// type and code about invoking, truncated so the packet is at most maxLen
// octets. param is the 32-bit field after the checksum (MTU, pointer or 0).
func ICMPv6Error(typ, code uint8, param uint32, src, dst [16]byte, hopLimit uint8, invoking []byte, maxLen int) []byte {
	n := max(0, min(len(invoking), maxLen-IPv6HeaderLen-8)) // a maxLen below the headers embeds nothing
	b := make([]byte, IPv6HeaderLen+8+n)
	PutIPv6Header(b, 0, 8+n, ProtoICMPv6, hopLimit, src, dst)
	m := b[IPv6HeaderLen:]
	m[0], m[1] = typ, code
	binary.BigEndian.PutUint32(m[4:], param)
	copy(m[8:], invoking[:n])
	binary.BigEndian.PutUint16(m[2:], ^checksum.Checksum(m, pseudo6(src, dst, len(m), ProtoICMPv6)))
	return b
}

// pseudo6 is the checksum of the IPv6 pseudo-header (RFC 8200 §8.1).
func pseudo6(src, dst [16]byte, length int, proto uint8) uint16 {
	var ph [40]byte
	copy(ph[0:], src[:])
	copy(ph[16:], dst[:])
	binary.BigEndian.PutUint32(ph[32:], uint32(length))
	ph[39] = proto
	return checksum.Checksum(ph[:], 0)
}

// pseudo4 is the checksum of the IPv4 pseudo-header (RFC 768, RFC 9293).
func pseudo4(src, dst [4]byte, length int, proto uint8) uint16 {
	var ph [12]byte
	copy(ph[0:], src[:])
	copy(ph[4:], dst[:])
	ph[9] = proto
	binary.BigEndian.PutUint16(ph[10:], uint16(length))
	return checksum.Checksum(ph[:], 0)
}

// ICMPv6 is a parsed ICMPv6 message.
type ICMPv6 struct {
	Type, Code uint8
	Param      uint32
	Body       []byte // after the 8-octet header: the invoking packet for errors
}

// ParseICMPv6 validates the checksum of the ICMPv6 message in p.Payload.
func ParseICMPv6(p *IPv6, m *ICMPv6) error {
	b := p.Payload
	if p.NextHeader != ProtoICMPv6 || len(b) < 8 {
		return ErrShort
	}
	if checksum.Checksum(b, pseudo6(p.Src, p.Dst, len(b), ProtoICMPv6)) != 0xffff {
		return ErrBadChecksum
	}
	m.Type, m.Code = b[0], b[1]
	m.Param = binary.BigEndian.Uint32(b[4:])
	m.Body = b[8:]
	return nil
}

// ICMPv4Error builds a whole IPv4 packet carrying an ICMPv4 error about
// invoking, at most maxLen octets long. rest is the 32-bit field after the
// checksum (for "fragmentation needed", the next-hop MTU in its low half).
func ICMPv4Error(typ, code uint8, rest uint32, src, dst [4]byte, ttl uint8, invoking []byte, maxLen int) []byte {
	n := max(0, min(len(invoking), maxLen-IPv4HeaderLen-8))
	b := make([]byte, IPv4HeaderLen+8+n)
	PutIPv4Header(b, 0, len(b), 0, false, ttl, ProtoICMP, src, dst)
	m := b[IPv4HeaderLen:]
	m[0], m[1] = typ, code
	binary.BigEndian.PutUint32(m[4:], rest)
	copy(m[8:], invoking[:n])
	binary.BigEndian.PutUint16(m[2:], ^checksum.Checksum(m, 0))
	return b
}

// ICMPv6Echo builds a whole IPv6 packet carrying an echo request or reply;
// idSeq is the identifier and sequence number as one 32-bit field.
func ICMPv6Echo(typ uint8, src, dst [16]byte, hopLimit uint8, idSeq uint32, data []byte) []byte {
	b := make([]byte, IPv6HeaderLen+8+len(data))
	PutIPv6Header(b, 0, 8+len(data), ProtoICMPv6, hopLimit, src, dst)
	m := b[IPv6HeaderLen:]
	m[0] = typ
	binary.BigEndian.PutUint32(m[4:], idSeq)
	copy(m[8:], data)
	binary.BigEndian.PutUint16(m[2:], ^checksum.Checksum(m, pseudo6(src, dst, len(m), ProtoICMPv6)))
	return b
}
