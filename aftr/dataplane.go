package aftr

import (
	"encoding/binary"
	"errors"
	"sync"

	"github.com/lw4o6/lw4o6/stack/counter"
	"github.com/lw4o6/lw4o6/stack/frag"
	"github.com/lw4o6/lw4o6/stack/packet"
)

// The AFTR's packet path, in Snabb lwAFTR's three stages so that the core
// never sees a fragment:
//
//	FromInternet: side check → ingress filter → IPv4 reassembly (before
//	              the port lookup, RFC 7597 §8.3.2) → echo to IPv4Addr, or
//	              downstream
//	FromAccess:   side check → ingress filter → IPv6 reassembly (before
//	              decapsulation, RFC 6333 §6.3) → upstream, ICMPv6 or PCP
//	downstream:   look up (destination, port) → TTL → DF/MTU → encapsulate
//	upstream:     check (B4, BR, source, port) → TTL → hairpin or Internet
//	sendAccess, sendInternet: fragmentation to the MTU → egress filter → link
//
// Every branch ends in a send or a counted drop. Nothing holds a lock
// while sending. pkt is only read during the call (and may be rewritten in
// place); the Links must not keep what they are given.

// ---- IPv4 side ------------------------------------------------------------

// FromInternet handles one packet from the Internet side.
func (a *AFTR) FromInternet(pkt []byte) {
	switch {
	case len(pkt) == 0:
		a.count.Count(cDropMalformedIPv4, 0)
		return
	case pkt[0]>>4 != 4:
		// Snabb: drop-misplaced-not-ipv4 (the wrong side).
		a.count.Count(cDropMisplacedNotIPv4, len(pkt))
		return
	}
	a.count.Count(cInIPv4, len(pkt))
	if !a.cfg.Filters.Ingress4.Pass(pkt) {
		a.count.Count(cDropInByFilterIPv4, len(pkt))
		return
	}
	ip4, err := a.parseIPv4(pkt)
	if err != nil {
		a.count.Count(cDropMalformedIPv4, len(pkt))
		return
	}
	if ip4.IsFragment() {
		if ip4 = a.reassemble4(ip4); ip4 == nil {
			return
		}
	}
	if a.martianSrc(ip4.Src()) {
		a.count.Count(cDropMartianSrcIPv4, len(ip4))
		return
	}
	if a.self4 != nil && ip4.Dst() == *a.self4 {
		a.echo4(ip4, nil)
		return
	}
	a.downstream(ip4, nil)
}

// martianDst reports destinations a B4's packet must not be forwarded to
// on the Internet (RFC 1812 §5.3.5.1: a limited broadcast MUST NOT be;
// §5.3.7: nor SHOULD one to network 0, 127 or class E; RFC 6890: the
// softwire's 192.0.0.0/29 and link-local 169.254/16 are not forwardable;
// 224/4: the AFTR routes no multicast). Loopback is let through only for
// the laptop lab, whose host egress serves the host's own loopback as "the
// Internet".
func (a *AFTR) martianDst(d [4]byte) bool {
	switch {
	case d[0] >= 224, d[0] == 0:
		return true
	case d[0] == 127:
		return !a.cfg.ForwardToLoopback
	case d[0] == 169 && d[1] == 254:
		return true
	case d[0] == 192 && d[1] == 0 && d[2] == 0 && d[3] < 8:
		return true
	}
	return false
}

// martianSrc reports Internet sources no packet for a B4 can have (RFC
// 1812 §5.3.7, RFC 6890): this network, loopback, link-local, multicast
// and class E, the softwire's own 192.0.0.0/29 — and the B4s' own
// addresses, which only the AFTR's hairpinning may use as a source.
// Loopback passes with ForwardToLoopback, as in martianDst.
func (a *AFTR) martianSrc(s [4]byte) bool {
	switch {
	case s[0] >= 224, s[0] == 0:
		return true
	case s[0] == 127:
		// The laptop lab's "Internet" is the host's loopback.
		return !a.cfg.ForwardToLoopback
	case s[0] == 169 && s[1] == 254:
		return true
	case s[0] == 192 && s[1] == 0 && s[2] == 0 && s[3] < 8:
		return true
	}
	return a.ownsIPv4(s)
}

// downstream is the core toward the B4s (RFC 7596 §6.2): find the softwire
// that owns (destination, port), decrement the TTL, encapsulate. from is
// the softwire packet a hairpinned ip4 came in (RFC 7596 §6.2), nil for a
// packet from the Internet.
func (a *AFTR) downstream(ip4 packet.IPv4, from *packet.IPv6) {
	icmp := ip4.Protocol() == packet.ProtoICMP
	if icmp {
		if from == nil && !a.cfg.AllowIncomingICMPv4 {
			a.count.Count(cDropInByPolicyICMPv4, len(ip4))
			return
		}
		// RFC 5508 §3.4 (RFC 7596 §8.1): ICMP checksums are checked.
		if ip4.FragOffset() == 0 && !icmpChecksumOK(ip4.Payload()) {
			a.count.Count(cDropBadChecksumICMPv4, len(ip4))
			return
		}
	}
	port, err := a.downstreamPort(ip4)
	if err != nil {
		switch {
		case icmp && errors.Is(err, packet.ErrNoPorts):
			// RFC 7596 §8.1: other ICMP is discarded.
			a.count.Count(cDropInByRFC7596ICMPv4, len(ip4))
		case errors.Is(err, packet.ErrFragment):
			a.count.Count(cDropFragmentIPv4, len(ip4))
		default:
			a.count.Count(cDropUnknownProtocolIPv4, len(ip4))
		}
		return
	}
	b4, br, ok := a.table.Lookup(ip4.Dst(), port)
	if !ok {
		a.count.Count(cDropNoDestSoftwire, len(ip4))
		if icmp {
			// RFC 7596 §8.1: discarded, and never answered with an error.
			a.count.Count(cDropInByRFC7596ICMPv4, len(ip4))
			return
		}
		if a.cfg.ICMPv4OnNoBinding {
			a.sendICMPv4(packet.ICMPv4DstUnreachable, 1, 0, ip4, from)
		}
		return
	}
	// One decrement per traversal (RFC 1812 §5.3.1): here, unless the
	// hairpinned packet had it at decapsulation.
	if from == nil || !a.cfg.DecapDecrementsTTL {
		if ip4.TTL() <= 1 {
			a.ttlExpired(ip4, from)
			return
		}
		ip4.DecTTL()
	}
	// RFC 2473 §7.2: too big for the tunnel with DF set: dropped, and
	// ICMPv4 "fragmentation needed" with the tunnel MTU.
	if tunnelMTU := a.cfg.AccessMTU - packet.IPv6HeaderLen; len(ip4) > tunnelMTU && ip4.DF() {
		a.count.Count(cDropOverMTUDontFragmentIPv4, len(ip4))
		a.sendICMPv4(packet.ICMPv4DstUnreachable, 4, uint32(tunnelMTU), ip4, from)
		return
	}
	a.encapsulate(ip4, b4.As16(), br.As16())
}

// downstreamPort is the port the softwire that should receive ip4 owns:
// the destination port; for an ICMP error, the source port of the packet
// it quotes (the B4's own, RFC 5508 REQ-3); for echo, the identifier
// (RFC 7596 §8.1), or port 0 for a request under EchoByPort0.
func (a *AFTR) downstreamPort(ip4 packet.IPv4) (uint16, error) {
	flow, err := ip4.Ports()
	switch {
	case err != nil:
		return 0, err
	case flow.ICMPError:
		return flow.Inner.SrcPort, nil
	case a.cfg.EchoByPort0 && flow.Proto == packet.ProtoICMP && ip4.Payload()[0] == packet.ICMPv4EchoRequest:
		return 0, nil
	}
	return flow.DstPort, nil
}

// ttlExpired drops ip4, whose TTL would reach 0, with ICMPv4 time exceeded
// (RFC 1812 §5.3.1).
func (a *AFTR) ttlExpired(ip4 packet.IPv4, from *packet.IPv6) {
	a.count.Count(cDropTTLZeroIPv4, len(ip4))
	if a.cfg.TimeExceededQuotesDecrementedTTL && ip4.TTL() == 1 {
		setTTL(ip4, 0)
	}
	a.sendICMPv4(packet.ICMPv4TimeExceeded, 0, 0, ip4, from)
}

// encapBufs are the buffers packets are encapsulated in: the AFTR sends
// them and takes them back, since a Link keeps nothing.
var encapBufs = sync.Pool{New: func() any { b := make([]byte, 2048); return &b }}

// encapsulate tunnels ip4 from br to b4 (RFC 7596 §6.2, RFC 2473 §6:
// traffic class = TOS, RFC 6333 §7.1) and sends it.
func (a *AFTR) encapsulate(ip4 []byte, b4, br [16]byte) {
	n := packet.IPv6HeaderLen + len(ip4)
	var bp *[]byte
	var buf []byte
	if n <= 2048 {
		bp = encapBufs.Get().(*[]byte)
		buf = (*bp)[:n]
	} else {
		buf = make([]byte, n)
	}
	copy(buf[packet.IPv6HeaderLen:], ip4)
	out := packet.Encapsulate(buf, packet.IPv6HeaderLen, br, b4, a.cfg.HopLimit)
	if fl := a.cfg.FlowLabel; fl != 0 {
		binary.BigEndian.PutUint32(out, binary.BigEndian.Uint32(out)|fl)
	}
	a.count.Count(cOutIPv6, len(out))
	a.sendAccess(out)
	if bp != nil {
		encapBufs.Put(bp)
	}
}

// ---- IPv6 side ------------------------------------------------------------

// FromAccess handles one packet from the access network.
func (a *AFTR) FromAccess(pkt []byte) {
	switch {
	case len(pkt) == 0:
		a.count.Count(cDropMalformedIPv6, 0)
		return
	case pkt[0]>>4 != 6:
		a.count.Count(cDropMisplacedNotIPv6, len(pkt))
		return
	}
	a.count.Count(cInIPv6, len(pkt))
	if !a.cfg.Filters.Ingress6.Pass(pkt) {
		a.count.Count(cDropInByFilterIPv6, len(pkt))
		return
	}
	var outer packet.IPv6
	err := packet.ParseIPv6(pkt, &outer)
	if err == packet.ErrFragment {
		// Reassembly, only of what is addressed to the AFTR.
		if !a.ownsIPv6(outer.Dst) {
			a.count.Count(cDropWrongDstIPv6, len(pkt))
			return
		}
		if pkt = a.reassemble6(pkt); pkt == nil {
			return
		}
		err = packet.ParseIPv6(pkt, &outer)
	}
	if err != nil {
		a.count.Count(cDropMalformedIPv6, len(pkt))
		return
	}
	if !a.ownsIPv6(outer.Dst) {
		a.count.Count(cDropWrongDstIPv6, len(pkt))
		return
	}
	// No B4 sends from a multicast (RFC 4291 §2.7) or the unspecified
	// address; answering one (PCP, ICMPv6, RFC 4443 §2.4(e)) would reach
	// no single node. Nor from loopback (RFC 4291 §2.5.3: never sent
	// outside a node) or an IPv4-mapped address (§2.5.5.2: an IPv4 node).
	if src := outer.SrcAddr(); outer.Src[0] == 0xff || src.IsUnspecified() || src.IsLoopback() || src.Is4In6() {
		a.count.Count(cDropMalformedIPv6, len(pkt))
		return
	}
	switch outer.NextHeader {
	case packet.ProtoIPIP:
		a.upstream(&outer)
	case packet.ProtoICMPv6:
		a.icmpv6FromAccess(&outer)
	case packet.ProtoUDP:
		a.pcpOverIPv6(&outer)
	default:
		a.count.Count(cDropUnknownProtocolIPv6, len(pkt))
	}
}

// upstream is the core from the B4s (RFC 7596 §6.2): decapsulate, check
// the softwire, then forward to the Internet or hairpin.
func (a *AFTR) upstream(outer *packet.IPv6) {
	ip4, err := a.parseIPv4(outer.Payload)
	if err != nil {
		a.count.Count(cDropMalformedIPv4, len(outer.Packet))
		return
	}
	if ip4.Dst() == addrAFTR4 {
		a.toSelf4(outer, ip4)
		return
	}
	// RFC 6333 §5.3: the inner IPv4 packet is not fragmented. A B4 that
	// relays fragments anyway loses them all, not all but the first: only
	// the first carries the port to check, and reassembling here would mix
	// the datagrams of B4s sharing an address (RFC 7597 §8.3.3).
	if ip4.IsFragment() {
		a.count.Count(cDropFragmentIPv4, len(ip4))
		return
	}
	port, err := a.upstreamPort(ip4)
	if err != nil {
		a.count.Count(cDropUnknownProtocolIPv4, len(ip4))
		return
	}
	// RFC 7596 §6.2: forward only if (B4 IPv6, IPv4 source, port) matches
	// a binding, sent to that softwire's BR address; otherwise MUST
	// discard, MAY send ICMPv6 1/5.
	if !a.table.CheckBR(outer.SrcAddr(), outer.DstAddr(), ip4.Src(), port) {
		a.count.Count(cDropNoSourceSoftwire, len(outer.Packet))
		a.sendICMPv6(packet.ICMPv6DstUnreachable, packet.ICMPv6CodeSourcePolicy, outer)
		a.learnB4(outer)
		return
	}
	// The traffic class (Config.DecapTOS). Only now: the ICMPv6 error
	// above quotes the packet as received (RFC 4443 §3.1).
	if a.cfg.DecapTOS != TOSUntouched {
		tos, drop := packet.DecapTOS(outer.TrafficClass, ip4.TOS(), a.cfg.DecapTOS == TOSUniform)
		if drop {
			// RFC 6040 §4.2: CE outside, Not-ECT inside.
			a.count.Count(cDropECNCEOnNotECT, len(outer.Packet))
			return
		}
		if tos != ip4.TOS() {
			ip4.SetTOS(tos)
		}
	}
	if a.cfg.DecapDecrementsTTL {
		if ip4.TTL() <= 1 {
			a.ttlExpired(ip4, outer)
			return
		}
		ip4.DecTTL()
	}
	if a.ownsIPv4(ip4.Dst()) {
		a.hairpin(ip4, outer)
		return
	}
	if a.self4 != nil && ip4.Dst() == *a.self4 {
		a.echo4(ip4, outer)
		return
	}
	if a.martianDst(ip4.Dst()) {
		a.count.Count(cDropMartianDstIPv4, len(ip4))
		return
	}
	a.count.Count(cOutIPv4, len(ip4))
	a.sendInternet(ip4, outer)
}

// upstreamPort is the port that must lie in the sender's set: its source
// port; for an ICMP error a B4 sends about a packet it received, the
// destination port of the quoted packet, the B4's own (RFC 5508 REQ-3;
// Snabb takes the quoted source port, the remote's); for echo the
// identifier (RFC 7596 §8.1), or port 0 for a reply under EchoByPort0.
func (a *AFTR) upstreamPort(ip4 packet.IPv4) (uint16, error) {
	flow, err := ip4.Ports()
	switch {
	case err != nil:
		return 0, err
	case flow.ICMPError:
		return flow.Inner.DstPort, nil
	case a.cfg.EchoByPort0 && flow.Proto == packet.ProtoICMP && ip4.Payload()[0] == packet.ICMPv4EchoReply:
		return 0, nil
	}
	return flow.SrcPort, nil
}

// hairpin sends a B4's packet to another B4's address back down
// (RFC 7596 §6.2: MUST be supported, the policy configurable).
func (a *AFTR) hairpin(ip4 packet.IPv4, outer *packet.IPv6) {
	if !a.cfg.Hairpinning {
		if a.cfg.UnhairpinnedToInternet {
			a.count.Count(cOutIPv4, len(ip4))
			a.sendInternet(ip4, outer)
			return
		}
		a.count.Count(cDropHairpinDisabled, len(ip4))
		return
	}
	a.count.Count(cHairpinIPv4, len(ip4))
	a.downstream(ip4, outer)
}

// ---- reassembly stage -----------------------------------------------------

// reassemble4 enters an IPv4 fragment; it returns the whole datagram when
// this fragment completed it, else nil (counted).
func (a *AFTR) reassemble4(ip4 packet.IPv4) packet.IPv4 {
	a.count.Count(cInIPv4FragNeedsReassembly, len(ip4))
	whole, err := a.reasm4.Add(ip4)
	if err != nil {
		a.count.Count(fragDrop(err, cDropIPv4FragTooMany, cDropIPv4FragTableFull, cDropIPv4FragInvalid), len(ip4))
		return nil
	}
	if whole == nil {
		return nil
	}
	a.count.Count(cInIPv4FragReassembled, len(whole))
	if a.cfg.ZeroReassembledIDAndFlags {
		clear(whole[4:8])
		packet.SetIPv4HeaderChecksum(whole)
	}
	return packet.IPv4(whole)
}

// reassemble6 enters an IPv6 fragment; it returns the whole packet when
// this fragment completed it, else nil (counted).
func (a *AFTR) reassemble6(pkt []byte) []byte {
	a.count.Count(cInIPv6FragNeedsReassembly, len(pkt))
	whole, err := a.reasm6.Add(pkt)
	if err != nil {
		a.count.Count(fragDrop(err, cDropIPv6FragTooMany, cDropIPv6FragTableFull, cDropIPv6FragInvalid), len(pkt))
		return nil
	}
	if whole != nil {
		a.count.Count(cInIPv6FragReassembled, len(whole))
	}
	return whole
}

func fragDrop(err error, tooMany, full, invalid counter.ID) counter.ID {
	switch {
	case errors.Is(err, frag.ErrTooManyFragments):
		return tooMany
	case errors.Is(err, frag.ErrTableFull):
		return full
	}
	return invalid
}

// ---- fragmentation stage --------------------------------------------------

// sendAccess sends an IPv6 packet to the B4s, fragmented to AccessMTU
// (RFC 6333 §6.3: after encapsulation).
func (a *AFTR) sendAccess(pkt []byte) {
	if len(pkt) <= a.cfg.AccessMTU {
		a.toLink6(pkt)
		return
	}
	frags, err := frag.FragmentIPv6(pkt, a.cfg.AccessMTU, a.ids.Next32())
	if err != nil {
		a.count.Count(cDropFragFailedIPv6, len(pkt))
		return
	}
	for _, f := range frags {
		a.count.Count(cOutIPv6Frag, len(f))
		a.toLink6(f)
	}
}

func (a *AFTR) toLink6(pkt []byte) {
	if !a.cfg.Filters.Egress6.Pass(pkt) {
		a.count.Count(cDropOutByFilterIPv6, len(pkt))
		return
	}
	a.access.Send(pkt)
}

// sendInternet sends an IPv4 packet to the Internet, fragmented to
// InternetMTU (RFC 791 §3.2). One with DF set that does not fit is
// dropped with ICMPv4 "fragmentation needed" (RFC 1191) to its source,
// through from, the softwire it came in, when it came from a B4.
func (a *AFTR) sendInternet(ip4 packet.IPv4, from *packet.IPv6) {
	if len(ip4) <= a.cfg.InternetMTU {
		a.toLink4(ip4)
		return
	}
	if ip4.DF() {
		a.count.Count(cDropOverMTUDontFragmentIPv4, len(ip4))
		a.sendICMPv4(packet.ICMPv4DstUnreachable, 4, uint32(a.cfg.InternetMTU), ip4, from)
		return
	}
	var frags [][]byte
	var err error
	if a.cfg.NewIPv4FragmentIDs {
		frags, err = frag.FragmentIPv4ID(ip4, a.cfg.InternetMTU, a.ids.Next16())
	} else {
		frags, err = frag.FragmentIPv4(ip4, a.cfg.InternetMTU)
	}
	if err != nil {
		a.count.Count(cDropFragFailedIPv4, len(ip4))
		return
	}
	for _, f := range frags {
		a.count.Count(cOutIPv4Frag, len(f))
		a.toLink4(f)
	}
}

func (a *AFTR) toLink4(pkt []byte) {
	if !a.cfg.Filters.Egress4.Pass(pkt) {
		a.count.Count(cDropOutByFilterIPv4, len(pkt))
		return
	}
	a.internet.Send(pkt)
}

// parseIPv4 is packet.ParseIPv4, a bad header checksum let through under
// IgnoreIPv4HeaderChecksum.
func (a *AFTR) parseIPv4(b []byte) (packet.IPv4, error) {
	ip4, err := packet.ParseIPv4(b)
	if err == packet.ErrIPv4Csum && a.cfg.IgnoreIPv4HeaderChecksum {
		return packet.IPv4(b[:binary.BigEndian.Uint16(b[2:])]), nil
	}
	return ip4, err
}

// setTTL rewrites the TTL, keeping the header checksum right (RFC 1624).
func setTTL(p packet.IPv4, ttl uint8) {
	old := binary.BigEndian.Uint16(p[8:])
	p[8] = ttl
	binary.BigEndian.PutUint16(p[10:], packet.UpdateChecksum16(binary.BigEndian.Uint16(p[10:]), old, binary.BigEndian.Uint16(p[8:])))
}
