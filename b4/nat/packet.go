package nat

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// IP protocol numbers and ICMPv4 types the NAT handles.
const (
	protoICMP = 1
	protoTCP  = 6
	protoUDP  = 17

	icmpEchoReply    = 0
	icmpDestUnreach  = 3
	icmpEchoRequest  = 8
	icmpTimeExceeded = 11
	icmpParamProblem = 12

	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
)

// Protocol indices: each protocol has its own port space (RFC 4787 §4.1,
// RFC 5508 §3: the ICMP identifier is the query's "port").
const (
	iTCP = iota
	iUDP
	iICMP
	nProto
)

func protoIndex(proto uint8) (int, bool) {
	switch proto {
	case protoTCP:
		return iTCP, true
	case protoUDP:
		return iUDP, true
	case protoICMP:
		return iICMP, true
	}
	return 0, false
}

// Offsets in the IPv4 header and transport headers.
const (
	ipChecksum = 10
	ipSrc      = 12
	ipDst      = 16

	tcpChecksum  = 16
	udpChecksum  = 6
	icmpChecksum = 2
	icmpIdent    = 4
)

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }
func be32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }

// valid reports whether b sums to 0xffff, the test for a correct Internet
// checksum over data that includes its checksum field (RFC 1071).
func valid(b []byte) bool { return checksum.Checksum(b, 0) == 0xffff }

// ipv4 is a parsed, validated IPv4 datagram. b is trimmed to the total
// length (link padding beyond it is left alone); l4 is the payload.
type ipv4 struct {
	b        []byte
	l4       []byte
	ihl      int
	proto    uint8
	more     bool // MF: a first fragment (offset ≠ 0 is refused by parse)
	src, dst uint32
}

// parseIPv4 validates the IPv4 header of b: version, IHL, total length
// within b, header checksum. Non-first fragments are refused: they carry no
// transport header, and this package does not reassemble (the caller may, in
// front of the NAT; RFC 4787 REQ-14).
func parseIPv4(b []byte) (ipv4, error) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return ipv4{}, ErrMalformed
	}
	ihl := int(b[0]&0x0f) * 4
	tl := int(be16(b[2:]))
	if ihl < 20 || tl < ihl || tl > len(b) {
		return ipv4{}, ErrMalformed
	}
	if !valid(b[:ihl]) {
		return ipv4{}, ErrChecksum
	}
	ff := be16(b[6:])
	if ff&0x1fff != 0 {
		return ipv4{}, ErrFragment
	}
	b = b[:tl]
	return ipv4{
		b:     b,
		l4:    b[ihl:],
		ihl:   ihl,
		proto: b[9],
		more:  ff&0x2000 != 0,
		src:   be32(b[ipSrc:]),
		dst:   be32(b[ipDst:]),
	}, nil
}

// transport returns the ports (the identifier twice for ICMP queries) and
// TCP flags of a TCP, UDP or ICMP echo packet after checking that the header
// is all there.
func (p *ipv4) transport() (sport, dport uint16, flags uint8, err error) {
	l4 := p.l4
	switch p.proto {
	case protoTCP:
		if len(l4) < 20 {
			return 0, 0, 0, ErrMalformed
		}
		if off := int(l4[12]>>4) * 4; off < 20 || off > len(l4) {
			return 0, 0, 0, ErrMalformed
		}
		return be16(l4), be16(l4[2:]), l4[13], nil
	case protoUDP:
		if len(l4) < 8 {
			return 0, 0, 0, ErrMalformed
		}
		// The UDP length covers the whole datagram, so it can only be
		// checked when the packet is not a first fragment.
		if ul := int(be16(l4[4:])); !p.more && (ul < 8 || ul > len(l4)) {
			return 0, 0, 0, ErrMalformed
		}
		return be16(l4), be16(l4[2:]), 0, nil
	case protoICMP:
		if len(l4) < 8 {
			return 0, 0, 0, ErrMalformed
		}
		id := be16(l4[icmpIdent:])
		return id, id, 0, nil
	}
	return 0, 0, 0, ErrUnsupported
}

// checkICMP validates the ICMP header length and, unless the message is a
// first fragment (whose checksum covers bytes not here), its checksum.
func (p *ipv4) checkICMP() error {
	if len(p.l4) < 8 {
		return ErrMalformed
	}
	if !p.more && !valid(p.l4) {
		return ErrChecksum
	}
	return nil
}

func isICMPError(typ uint8) bool {
	return typ == icmpDestUnreach || typ == icmpTimeExceeded || typ == icmpParamProblem
}

// delta accumulates 16-bit word changes for an incremental checksum update,
// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), summed over every changed word m.
type delta uint32

// fold applies the accumulated change to checksum c.
func (d delta) fold(c uint16) uint16 {
	s := uint32(^c) + uint32(d)
	s = s&0xffff + s>>16
	s = s&0xffff + s>>16
	return ^uint16(s)
}

// set16 writes v at b[off:] and returns the change as a delta.
func set16(b []byte, off int, v uint16) delta {
	old := be16(b[off:])
	binary.BigEndian.PutUint16(b[off:], v)
	return delta(^old) + delta(v)
}

// set32 writes v at b[off:] (16-bit aligned) and returns the change.
func set32(b []byte, off int, v uint32) delta {
	return set16(b, off, uint16(v>>16)) + set16(b, off+2, uint16(v))
}

// fixTransport applies a change d of the covered words (pseudo-header for
// TCP/UDP) to the checksum at l4[off:] if it is present. A zero UDP checksum
// means "none" and stays zero; a computed zero is sent as 0xffff (RFC 768).
// It returns the change of the checksum field itself, for an enclosing ICMP
// checksum.
func fixTransport(l4 []byte, proto uint8, d delta) delta {
	off := tcpChecksum
	switch proto {
	case protoUDP:
		off = udpChecksum
	case protoICMP:
		off = icmpChecksum
	}
	if off+2 > len(l4) {
		return 0 // truncated embedded header: nothing to fix
	}
	c := be16(l4[off:])
	if proto == protoUDP && c == 0 {
		return 0
	}
	nc := d.fold(c)
	if proto == protoUDP && nc == 0 {
		nc = 0xffff
	}
	return set16(l4, off, nc)
}

// portOffset is where the source (src) or destination port lives; an ICMP
// query has one identifier for both.
func portOffset(proto uint8, src bool) int {
	switch {
	case proto == protoICMP:
		return icmpIdent
	case src:
		return 0
	}
	return 2
}

// rewrite sets the source (src) or destination address and port of a TCP,
// UDP or ICMP echo datagram and updates the IPv4 and transport checksums
// incrementally. The TTL is left alone: routing is the caller's job.
func rewrite(p *ipv4, src bool, addr uint32, port uint16) {
	aoff := ipDst
	if src {
		aoff = ipSrc
	}
	da := set32(p.b, aoff, addr)
	set16(p.b, ipChecksum, da.fold(be16(p.b[ipChecksum:])))
	dt := set16(p.l4, portOffset(p.proto, src), port)
	if p.proto != protoICMP {
		dt += da // TCP and UDP checksums cover the addresses (pseudo-header)
	}
	fixTransport(p.l4, p.proto, dt)
	if src {
		p.src = addr
	} else {
		p.dst = addr
	}
}

// embedded is the IPv4 datagram quoted in an ICMP error (RFC 792): at least
// its IPv4 header and the first 8 octets of its transport header.
type embedded struct {
	b        []byte // from the embedded IPv4 header to the end of the ICMP message
	l4       []byte // the quoted transport bytes, at most up to the embedded total length
	proto    uint8
	src, dst uint32
	sport    uint16
	dport    uint16
	icmpType uint8 // of an embedded ICMP query
}

// parseEmbedded validates the datagram quoted in an ICMP error whose ICMP
// checksum was already checked: RFC 5508 REQ-3a (embedded IPv4 checksum
// valid, else drop) and REQ-3b (skip IP options). Per REQ-3c the embedded
// transport checksum is not validated.
func parseEmbedded(icmp []byte) (embedded, error) {
	if len(icmp) < 8+20 {
		return embedded{}, ErrMalformed
	}
	b := icmp[8:]
	if b[0]>>4 != 4 {
		return embedded{}, ErrMalformed
	}
	ihl := int(b[0]&0x0f) * 4
	tl := int(be16(b[2:]))
	if ihl < 20 || ihl > len(b) || tl < ihl {
		return embedded{}, ErrMalformed
	}
	if !valid(b[:ihl]) {
		return embedded{}, ErrChecksum
	}
	if be16(b[6:])&0x1fff != 0 {
		return embedded{}, ErrFragment
	}
	l4 := b[ihl:min(tl, len(b))]
	if len(l4) < 8 {
		return embedded{}, ErrMalformed
	}
	e := embedded{
		b:     b,
		l4:    l4,
		proto: b[9],
		src:   be32(b[ipSrc:]),
		dst:   be32(b[ipDst:]),
	}
	switch e.proto {
	case protoTCP, protoUDP:
		e.sport, e.dport = be16(l4), be16(l4[2:])
	case protoICMP:
		e.icmpType = l4[0]
		e.sport = be16(l4[icmpIdent:])
		e.dport = e.sport
	default:
		return embedded{}, ErrUnsupported
	}
	return e, nil
}

// rewriteError rewrites, in an ICMP error p, the embedded datagram's source
// (src) or destination address and port to addr:port, reverting it to the
// form its sender knows (RFC 5508 REQ-4a / REQ-5a): embedded IPv4 checksum,
// embedded transport checksum (updated incrementally whenever its field is
// among the quoted bytes, even when the datagram is truncated: the update
// only depends on the changed words, so it restores the sender's value) and
// the ICMP checksum are all fixed. The outer header is not touched here.
func rewriteError(p *ipv4, e *embedded, src bool, addr uint32, port uint16) {
	aoff := ipDst
	if src {
		aoff = ipSrc
	}
	da := set32(e.b, aoff, addr)
	dicmp := da
	dicmp += set16(e.b, ipChecksum, da.fold(be16(e.b[ipChecksum:])))
	dp := set16(e.l4, portOffset(e.proto, src), port)
	dicmp += dp
	if e.proto != protoICMP {
		dp += da
	}
	dicmp += fixTransport(e.l4, e.proto, dp)
	set16(p.l4, icmpChecksum, dicmp.fold(be16(p.l4[icmpChecksum:])))
	if src {
		e.src = addr
	} else {
		e.dst = addr
	}
}

// rewriteOuter sets the outer source (src) or destination address of an
// ICMP error; the ICMP checksum does not cover it.
func rewriteOuter(p *ipv4, src bool, addr uint32) {
	aoff := ipDst
	if src {
		aoff = ipSrc
	}
	da := set32(p.b, aoff, addr)
	set16(p.b, ipChecksum, da.fold(be16(p.b[ipChecksum:])))
	if src {
		p.src = addr
	} else {
		p.dst = addr
	}
}
