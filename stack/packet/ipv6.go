package packet

import (
	"encoding/binary"
	"net/netip"
)

// IPv6HeaderLen is the length of the fixed IPv6 header.
const IPv6HeaderLen = 40

// IPv6 extension header numbers walked by ParseIPv6.
const (
	ipv6HopByHop = 0
	ipv6Routing  = 43
	ipv6Fragment = 44
	ipv6DestOpts = 60
	ipv6NoNext   = 59
)

// IPv6 is a parsed IPv6 packet: the fixed header fields the twins use and
// the upper-layer payload found after walking the extension headers.
type IPv6 struct {
	Src, Dst     [16]byte
	TrafficClass uint8
	HopLimit     uint8
	// NextHeader is the upper-layer protocol (after extension headers).
	NextHeader uint8
	// Payload is the upper-layer payload.
	Payload []byte
	// Packet is the whole packet cut to its payload length.
	Packet []byte
}

// SrcAddr is the source as a netip.Addr.
func (p *IPv6) SrcAddr() netip.Addr { return netip.AddrFrom16(p.Src) }

// DstAddr is the destination as a netip.Addr.
func (p *IPv6) DstAddr() netip.Addr { return netip.AddrFrom16(p.Dst) }

// ParseIPv6 validates b's fixed header and walks hop-by-hop, routing and
// destination-options headers (RFC 8200 §4) to the upper-layer header. A
// fragment header gives ErrFragment: reassembly happens before this.
func ParseIPv6(b []byte, p *IPv6) error {
	if len(b) < IPv6HeaderLen {
		return ErrShort
	}
	if b[0]>>4 != 6 {
		return ErrVersion
	}
	pl := int(binary.BigEndian.Uint16(b[4:]))
	if IPv6HeaderLen+pl > len(b) {
		return ErrIPv6Header
	}
	b = b[:IPv6HeaderLen+pl]
	p.Packet = b
	p.TrafficClass = uint8(binary.BigEndian.Uint16(b[0:]) >> 4)
	p.HopLimit = b[7]
	p.Src = [16]byte(b[8:24])
	p.Dst = [16]byte(b[24:40])
	nh := b[6]
	rest := b[IPv6HeaderLen:]
	for {
		switch nh {
		case ipv6HopByHop, ipv6Routing, ipv6DestOpts:
			if len(rest) < 8 {
				return ErrExtHeader
			}
			n := (int(rest[1]) + 1) * 8
			if n > len(rest) {
				return ErrExtHeader
			}
			nh, rest = rest[0], rest[n:]
		case ipv6Fragment:
			return ErrFragment
		default:
			p.NextHeader = nh
			p.Payload = rest
			return nil
		}
	}
}

// PutIPv6Header writes a fixed IPv6 header into b[:40].
func PutIPv6Header(b []byte, tc uint8, payloadLen int, nextHeader, hopLimit uint8, src, dst [16]byte) {
	binary.BigEndian.PutUint32(b[0:], 6<<28|uint32(tc)<<20) // flow label 0 (RFC 2473 §6.5)
	binary.BigEndian.PutUint16(b[4:], uint16(payloadLen))
	b[6] = nextHeader
	b[7] = hopLimit
	copy(b[8:24], src[:])
	copy(b[24:40], dst[:])
}

// Decapsulate parses a softwire packet: an IPv6 packet whose upper layer is
// IPv4 (next header 4, RFC 2473 §3). It returns the outer header and the
// validated inner IPv4 packet, which aliases b.
func Decapsulate(b []byte, outer *IPv6) (IPv4, error) {
	if err := ParseIPv6(b, outer); err != nil {
		return nil, err
	}
	if outer.NextHeader != ProtoIPIP {
		return nil, ErrNotIPIP
	}
	return ParseIPv4(outer.Payload)
}

// Encapsulate prepends an IPv6 header to the IPv4 packet buf[off:], writing
// it into the headroom buf[off-40:off] so the packet is not copied. The
// traffic class is the inner TOS (RFC 6333 §7.1: MUST copy); the flow label
// is 0 and the hop limit is the tunnel's own (RFC 2473 §6.3). When off < 40
// a new buffer is allocated.
func Encapsulate(buf []byte, off int, src, dst [16]byte, hopLimit uint8) []byte {
	inner := buf[off:]
	var out []byte
	if off >= IPv6HeaderLen {
		out = buf[off-IPv6HeaderLen:]
	} else {
		out = make([]byte, IPv6HeaderLen+len(inner))
		copy(out[IPv6HeaderLen:], inner)
	}
	var tos uint8
	if len(inner) > 1 {
		tos = inner[1]
	}
	PutIPv6Header(out, tos, len(inner), ProtoIPIP, hopLimit, src, dst)
	return out
}
