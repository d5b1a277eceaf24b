package packet

import (
	"encoding/binary"
	"errors"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// ErrBadChecksum reports a transport checksum that does not verify.
var ErrBadChecksum = errors.New("packet: bad transport checksum")

// UDPHeaderLen is the UDP header length.
const UDPHeaderLen = 8

// UDP is a parsed UDP datagram.
type UDP struct {
	SrcPort, DstPort uint16
	Data             []byte
}

// ParseUDP4 validates the UDP datagram carried by an IPv4 packet: length and,
// when present, checksum (RFC 768).
func ParseUDP4(p IPv4, u *UDP) error {
	if p.Protocol() != ProtoUDP || p.IsFragment() {
		return ErrNoPorts
	}
	b := p.Payload()
	if len(b) < UDPHeaderLen {
		return ErrShort
	}
	ul := int(binary.BigEndian.Uint16(b[4:]))
	if ul < UDPHeaderLen || ul > len(b) {
		return ErrShort
	}
	b = b[:ul]
	if binary.BigEndian.Uint16(b[6:]) != 0 &&
		checksum.Checksum(b, pseudo4(p.Src(), p.Dst(), ul, ProtoUDP)) != 0xffff {
		return ErrBadChecksum
	}
	u.SrcPort = binary.BigEndian.Uint16(b)
	u.DstPort = binary.BigEndian.Uint16(b[2:])
	u.Data = b[UDPHeaderLen:]
	return nil
}

// AppendUDP4 appends to dst a whole IPv4 packet carrying a UDP datagram with
// data, checksummed. headroom zero octets are left in front of it (for the
// IPv6 header of a softwire); the IPv4 packet starts at len(dst)+headroom.
func AppendUDP4(dst []byte, headroom int, src, dstAddr [4]byte, sport, dport uint16, ttl uint8, data []byte) []byte {
	start := len(dst) + headroom
	total := IPv4HeaderLen + UDPHeaderLen + len(data)
	dst = append(dst, make([]byte, headroom+total)...)
	b := dst[start:]
	PutIPv4Header(b, 0, total, 0, false, ttl, ProtoUDP, src, dstAddr)
	u := b[IPv4HeaderLen:]
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(UDPHeaderLen+len(data)))
	copy(u[UDPHeaderLen:], data)
	cs := ^checksum.Checksum(u, pseudo4(src, dstAddr, len(u), ProtoUDP))
	if cs == 0 {
		cs = 0xffff // RFC 768: a computed 0 is sent as all ones
	}
	binary.BigEndian.PutUint16(u[6:], cs)
	return dst
}

// ParseUDP6 validates the UDP datagram an IPv6 packet carries: length and
// checksum, which IPv6 makes mandatory (RFC 8200 §8.1: a zero checksum is
// discarded).
func ParseUDP6(p *IPv6, u *UDP) error {
	if p.NextHeader != ProtoUDP {
		return ErrNoPorts
	}
	b := p.Payload
	if len(b) < UDPHeaderLen {
		return ErrShort
	}
	ul := int(binary.BigEndian.Uint16(b[4:]))
	if ul < UDPHeaderLen || ul > len(b) {
		return ErrShort
	}
	b = b[:ul]
	if binary.BigEndian.Uint16(b[6:]) == 0 || checksum.Checksum(b, pseudo6(p.Src, p.Dst, ul, ProtoUDP)) != 0xffff {
		return ErrBadChecksum
	}
	u.SrcPort = binary.BigEndian.Uint16(b)
	u.DstPort = binary.BigEndian.Uint16(b[2:])
	u.Data = b[UDPHeaderLen:]
	return nil
}

// UDP6 builds a whole IPv6 packet carrying a UDP datagram with data,
// checksummed (RFC 8200 §8.1).
func UDP6(src, dst [16]byte, sport, dport uint16, hopLimit uint8, data []byte) []byte {
	b := make([]byte, IPv6HeaderLen+UDPHeaderLen+len(data))
	PutIPv6Header(b, 0, UDPHeaderLen+len(data), ProtoUDP, hopLimit, src, dst)
	u := b[IPv6HeaderLen:]
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	copy(u[UDPHeaderLen:], data)
	cs := ^checksum.Checksum(u, pseudo6(src, dst, len(u), ProtoUDP))
	if cs == 0 {
		cs = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], cs)
	return b
}
