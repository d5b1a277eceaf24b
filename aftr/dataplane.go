package aftr

import (
	"github.com/lw4o6/lw4o6/stack/packet"
)

// The AFTR's packet path: FromAccess for softwire packets from the B4s,
// FromInternet for IPv4 from the Internet. Every branch ends in a send or a
// counted drop. Neither holds a lock while sending.

// FromAccess handles one IPv6 packet from the access network. pkt is only
// read during the call (and may be rewritten in place).
func (a *AFTR) FromAccess(pkt []byte) {
	var outer packet.IPv6
	if err := packet.ParseIPv6(pkt, &outer); err != nil {
		a.count.Count(cDropMalformedIPv6, len(pkt))
		return
	}
	a.count.Count(cInIPv6, len(pkt))
	if outer.Dst != a.addr6 {
		a.count.Count(cDropWrongDstIPv6, len(pkt))
		return
	}
	// No B4 sends from a multicast (RFC 4291 §2.7) or the unspecified
	// address; answering one (PCP, ICMPv6, RFC 4443 §2.4(e)) would reach
	// no single node.
	if outer.Src[0] == 0xff || outer.Src == [16]byte{} {
		a.count.Count(cDropMalformedIPv6, len(pkt))
		return
	}
	switch outer.NextHeader {
	case packet.ProtoIPIP:
	case packet.ProtoICMPv6:
		a.icmpv6ToSelf(&outer)
		return
	case packet.ProtoUDP:
		a.pcpOverIPv6(&outer)
		return
	default:
		a.count.Count(cDropUnknownProtocolIPv6, len(pkt))
		return
	}
	ip4, err := packet.ParseIPv4(outer.Payload)
	if err != nil {
		a.count.Count(cDropMalformedIPv4, len(pkt))
		return
	}
	if ip4.Dst() == addrAFTR4 {
		a.toSelf4(&outer, ip4)
		return
	}
	flow, err := ip4.Ports()
	if err != nil {
		if err == packet.ErrFragment {
			a.count.Count(cDropFragmentIPv4, len(ip4))
		} else {
			a.count.Count(cDropUnknownProtocolIPv4, len(ip4))
		}
		return
	}
	// The port that must lie in the sender's set: its source port, except
	// for an ICMP error the B4 sends about a packet it received, whose
	// embedded packet's destination is the B4's own address and port.
	port := flow.SrcPort
	if flow.ICMPError {
		port = flow.Inner.DstPort
	}
	// RFC 7596 §6.2: forward only if (B4 IPv6, IPv4 source, port) matches
	// a binding; otherwise MUST discard, MAY send ICMPv6 1/5.
	if !a.table.Check(outer.SrcAddr(), ip4.Src(), port) {
		a.count.Count(cDropNoSourceSoftwire, len(ip4))
		if a.cfg.ICMPv6OnBindingFailure {
			a.sendICMPv6(packet.ICMPv6DstUnreachable, packet.ICMPv6CodeSourcePolicy, outer.Src, outer.Packet)
		}
		return
	}
	// RFC 6333 §7.1 (applied by RFC 7596): the traffic class is copied back.
	// Only now: the ICMPv6 error above embeds the packet as received
	// (RFC 4443 §3.1).
	if ip4.TOS() != outer.TrafficClass {
		ip4.SetTOS(outer.TrafficClass)
	}
	if err := ip4.DecTTL(); err != nil {
		a.count.Count(cDropTTLZeroIPv4, len(ip4))
		a.sendICMPv4(packet.ICMPv4TimeExceeded, 0, 0, ip4, &outer)
		return
	}
	if a.ownsIPv4(ip4.Dst()) {
		a.hairpin(ip4, &outer)
		return
	}
	a.count.Count(cOutIPv4, len(ip4))
	a.internet.Send(ip4)
}

// hairpin re-encapsulates a packet from one B4 to another (RFC 7596 §6.2).
func (a *AFTR) hairpin(ip4 packet.IPv4, outer *packet.IPv6) {
	if !a.cfg.Hairpinning {
		a.count.Count(cDropHairpinDisabled, len(ip4))
		return
	}
	flow, _ := ip4.Ports() // parsed once already: cannot fail here
	port := flow.DstPort
	if flow.ICMPError {
		port = flow.Inner.SrcPort
	}
	b4, br, ok := a.table.Lookup(ip4.Dst(), port)
	if !ok {
		a.count.Count(cDropNoDestSoftwire, len(ip4))
		a.sendICMPv4(packet.ICMPv4DstUnreachable, 1, 0, ip4, outer)
		return
	}
	a.count.Count(cHairpinIPv4, len(ip4))
	a.encapsulate(ip4, b4.As16(), br.As16())
}

// FromInternet handles one IPv4 packet from the Internet side.
func (a *AFTR) FromInternet(pkt []byte) {
	ip4, err := packet.ParseIPv4(pkt)
	if err != nil {
		a.count.Count(cDropMalformedIPv4, len(pkt))
		return
	}
	a.count.Count(cInIPv4, len(ip4))
	flow, err := ip4.Ports()
	if err != nil {
		if err == packet.ErrFragment {
			a.count.Count(cDropFragmentIPv4, len(ip4))
		} else {
			a.count.Count(cDropUnknownProtocolIPv4, len(ip4))
		}
		return
	}
	// RFC 7596 §8.1: echo by its identifier; other ICMP by the source port
	// of the embedded packet (the B4's own packet, RFC 5508 REQ-3).
	port := flow.DstPort
	if flow.ICMPError {
		port = flow.Inner.SrcPort
	}
	b4, br, ok := a.table.Lookup(ip4.Dst(), port)
	if !ok {
		a.count.Count(cDropNoDestSoftwire, len(ip4))
		if a.cfg.ICMPv4OnNoBinding {
			a.sendICMPv4(packet.ICMPv4DstUnreachable, 1, 0, ip4, nil)
		}
		return
	}
	if err := ip4.DecTTL(); err != nil {
		a.count.Count(cDropTTLZeroIPv4, len(ip4))
		a.sendICMPv4(packet.ICMPv4TimeExceeded, 0, 0, ip4, nil)
		return
	}
	a.encapsulate(ip4, b4.As16(), br.As16())
}

// encapsulate tunnels ip4 to a B4 (RFC 7596 §6.2 downstream).
func (a *AFTR) encapsulate(ip4 packet.IPv4, b4, br [16]byte) {
	out := packet.Encapsulate(ip4, 0, br, b4, a.cfg.HopLimit)
	a.count.Count(cOutIPv6, len(out))
	a.access.Send(out)
}
