package packet

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// IP protocol numbers used across lw4o6.
const (
	ProtoICMP   = 1
	ProtoIPIP   = 4 // IPv4 in IPv6 (RFC 2473), next header of a softwire packet
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
)

// IPv4HeaderLen is the length of an IPv4 header without options.
const IPv4HeaderLen = 20

// Errors returned by the parsers; each names a counted drop reason.
var (
	ErrShort       = errors.New("packet: truncated")
	ErrVersion     = errors.New("packet: wrong IP version")
	ErrIPv4Header  = errors.New("packet: malformed IPv4 header")
	ErrIPv4Csum    = errors.New("packet: bad IPv4 header checksum")
	ErrIPv6Header  = errors.New("packet: malformed IPv6 header")
	ErrNotIPIP     = errors.New("packet: IPv6 payload is not IPv4 (next header 4)")
	ErrFragment    = errors.New("packet: fragment")
	ErrNoPorts     = errors.New("packet: no port-bearing transport header")
	ErrExtHeader   = errors.New("packet: malformed IPv6 extension header")
	ErrNoHeadroom  = errors.New("packet: not enough headroom")
	ErrTTLExceeded = errors.New("packet: TTL exceeded")
)

// IPv4 is a view of an IPv4 packet. Methods assume the packet passed
// ParseIPv4 (or was built by this package).
type IPv4 []byte

// ParseIPv4 validates the IPv4 header of b (version, IHL, total length,
// header checksum) and returns b cut to the total length.
func ParseIPv4(b []byte) (IPv4, error) {
	if len(b) < IPv4HeaderLen {
		return nil, ErrShort
	}
	if b[0]>>4 != 4 {
		return nil, ErrVersion
	}
	ihl := int(b[0]&0xf) * 4
	tl := int(binary.BigEndian.Uint16(b[2:]))
	if ihl < IPv4HeaderLen || tl < ihl || tl > len(b) {
		return nil, ErrIPv4Header
	}
	if checksum.Checksum(b[:ihl], 0) != 0xffff {
		return nil, ErrIPv4Csum
	}
	return IPv4(b[:tl]), nil
}

// HeaderLen is the IHL in bytes.
func (p IPv4) HeaderLen() int { return int(p[0]&0xf) * 4 }

// TOS is the type-of-service (DSCP and ECN) octet.
func (p IPv4) TOS() uint8 { return p[1] }

// TotalLen is the total length field.
func (p IPv4) TotalLen() int { return int(binary.BigEndian.Uint16(p[2:])) }

// ID is the identification field.
func (p IPv4) ID() uint16 { return binary.BigEndian.Uint16(p[4:]) }

// DF reports whether Don't Fragment is set.
func (p IPv4) DF() bool { return p[6]&0x40 != 0 }

// MF reports whether More Fragments is set.
func (p IPv4) MF() bool { return p[6]&0x20 != 0 }

// FragOffset is the fragment offset in 8-octet units.
func (p IPv4) FragOffset() int { return int(binary.BigEndian.Uint16(p[6:]) & 0x1fff) }

// IsFragment reports whether p is any fragment of a larger datagram.
func (p IPv4) IsFragment() bool { return p.MF() || p.FragOffset() != 0 }

// TTL is the time-to-live.
func (p IPv4) TTL() uint8 { return p[8] }

// Protocol is the transport protocol number.
func (p IPv4) Protocol() uint8 { return p[9] }

// Src is the source address.
func (p IPv4) Src() [4]byte { return [4]byte(p[12:16]) }

// Dst is the destination address.
func (p IPv4) Dst() [4]byte { return [4]byte(p[16:20]) }

// SrcAddr is the source as a netip.Addr.
func (p IPv4) SrcAddr() netip.Addr { return netip.AddrFrom4(p.Src()) }

// DstAddr is the destination as a netip.Addr.
func (p IPv4) DstAddr() netip.Addr { return netip.AddrFrom4(p.Dst()) }

// Payload is the transport part.
func (p IPv4) Payload() []byte { return p[p.HeaderLen():] }

// SetTOS rewrites the TOS octet, keeping the header checksum right (RFC 1624).
func (p IPv4) SetTOS(tos uint8) {
	old := binary.BigEndian.Uint16(p[0:])
	p[1] = tos
	p.updateCsum16(old, binary.BigEndian.Uint16(p[0:]))
}

// DecTTL decrements the TTL as a router does, with an incremental checksum
// update; it returns ErrTTLExceeded (and changes nothing) when the TTL is
// already 0 or 1.
func (p IPv4) DecTTL() error {
	if p[8] <= 1 {
		return ErrTTLExceeded
	}
	old := binary.BigEndian.Uint16(p[8:])
	p[8]--
	p.updateCsum16(old, binary.BigEndian.Uint16(p[8:]))
	return nil
}

func (p IPv4) updateCsum16(old, new uint16) {
	binary.BigEndian.PutUint16(p[10:], UpdateChecksum16(binary.BigEndian.Uint16(p[10:]), old, new))
}

// UpdateChecksum16 adjusts a stored Internet checksum for a 16-bit field that
// changed from old to new (RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')).
func UpdateChecksum16(csum, old, new uint16) uint16 {
	s := uint32(^csum) + uint32(^old) + uint32(new)
	s = (s & 0xffff) + (s >> 16)
	s = (s & 0xffff) + (s >> 16)
	return ^uint16(s)
}

// SetIPv4HeaderChecksum recomputes the header checksum of b from scratch.
func SetIPv4HeaderChecksum(b []byte) {
	ihl := int(b[0]&0xf) * 4
	b[10], b[11] = 0, 0
	binary.BigEndian.PutUint16(b[10:], ^checksum.Checksum(b[:ihl], 0))
}

// PutIPv4Header writes a 20-octet IPv4 header into b[:20] with a valid
// checksum.
func PutIPv4Header(b []byte, tos uint8, totalLen int, id uint16, df bool, ttl, proto uint8, src, dst [4]byte) {
	b[0] = 0x45
	b[1] = tos
	binary.BigEndian.PutUint16(b[2:], uint16(totalLen))
	binary.BigEndian.PutUint16(b[4:], id)
	b[6], b[7] = 0, 0
	if df {
		b[6] = 0x40
	}
	b[8] = ttl
	b[9] = proto
	copy(b[12:16], src[:])
	copy(b[16:20], dst[:])
	SetIPv4HeaderChecksum(b)
}
