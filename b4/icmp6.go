package b4

import (
	"encoding/binary"
	"net/netip"

	"github.com/lw4o6/lw4o6/stack/packet"
)

// fromAFTRICMPv6 acts on ICMPv6 errors from the AFTR (FromAccess checked the
// outer source). Type 1 code 5 about a packet this B4 sends under its
// current binding means the AFTR holds no binding for it (RFC 7596 §5.1):
// provision again. Anything else is counted and ignored: a late 1/5 about a
// packet of an old set, or one forged from the AFTR's address quoting a
// packet the B4 never sent, must not knock out a fresh binding (issue 11
// item 3).
func (b *B4) fromAFTRICMPv6(outer *packet.IPv6) {
	var m packet.ICMPv6
	if err := packet.ParseICMPv6(outer, &m); err != nil {
		b.count.Count(cDropMalformedIPv6, len(outer.Packet))
		return
	}
	if m.Type != packet.ICMPv6DstUnreachable || m.Code != packet.ICMPv6CodeSourcePolicy {
		b.count.Count(cDropICMPv6Other, len(outer.Packet))
		return
	}
	// The embedded packet must be one of ours: our source, to our AFTR.
	inv := m.Body
	if len(inv) < packet.IPv6HeaderLen || inv[0]>>4 != 6 ||
		[16]byte(inv[8:24]) != b.addr6 || [16]byte(inv[24:40]) != b.aftr6 {
		b.count.Count(cDropICMPv6Spoofed, len(outer.Packet))
		return
	}
	current, first := b.quotesCurrent(inv)
	if !current {
		b.count.Count(cDropICMPv6NotCurrent, len(outer.Packet))
		return
	}
	b.count.Count(cInICMPv6Policy, len(outer.Packet))
	switch {
	case !b.cfg.ReprovisionOnICMP || b.static():
	case first:
		b.lostBinding("ICMPv6 1/5 from AFTR")
	default:
		// A set the pool added (pool.go): the AFTR lost that one; the
		// pool loop renews its sets at once.
		select {
		case b.poolLost <- struct{}{}:
		default:
		}
	}
}

// protoFragment6 is the IPv6 Fragment header's next-header value (RFC 8200 §4.5).
const protoFragment6 = 44

// quotesCurrent reports whether inv, the IPv6 packet an ICMPv6 error quotes
// (its addresses already checked), carries an IPv4 packet the B4 sends
// under its current binding: next header 4 (possibly behind the first
// fragment's header), inner source the current public IPv4, and the inner
// source port (TCP, UDP) or echo identifier (ICMP) inside one of the
// current sets; first says whether that is the first set (PCP's own) rather
// than one the pool added.
func (b *B4) quotesCurrent(inv []byte) (current, first bool) {
	if !b.provisioned.Load() {
		return false, false // already provisioning again: nothing current to lose
	}
	nh, rest := inv[6], inv[packet.IPv6HeaderLen:]
	if nh == protoFragment6 {
		// RFC 6333 §5.3: the B4 fragments after encapsulation; only the
		// first fragment holds the inner header.
		if len(rest) < 8 || binary.BigEndian.Uint16(rest[2:])&^7 != 0 {
			return false, false
		}
		nh, rest = rest[0], rest[8:]
	}
	if nh != packet.ProtoIPIP || len(rest) < packet.IPv4HeaderLen || rest[0]>>4 != 4 {
		return false, false
	}
	ihl := int(rest[0]&0xf) * 4
	if ihl < packet.IPv4HeaderLen || len(rest) < ihl+8 {
		return false, false // the ports or echo id must be quoted
	}
	if binary.BigEndian.Uint16(rest[6:])&0x1fff != 0 {
		return false, false // a later IPv4 fragment names no port
	}
	ext, ports, ok := b.nat.External()
	if !ok || netip.AddrFrom4([4]byte(rest[12:16])) != ext {
		return false, false
	}
	l4 := rest[ihl:]
	var port uint16
	switch rest[9] {
	case packet.ProtoTCP, packet.ProtoUDP:
		port = binary.BigEndian.Uint16(l4[0:])
	case packet.ProtoICMP:
		if l4[0] != packet.ICMPv4EchoRequest && l4[0] != packet.ICMPv4EchoReply {
			return false, false
		}
		port = binary.BigEndian.Uint16(l4[4:])
	default:
		return false, false
	}
	if ports.Contains(port) {
		return true, true
	}
	return b.nat.Holds(port), false
}
