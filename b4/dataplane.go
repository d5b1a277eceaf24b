package b4

import (
	"errors"

	"github.com/lw4o6/lw4o6/stack/frag"
	"github.com/lw4o6/lw4o6/stack/packet"
)

// The B4's packet path. FromLAN: route, NAPT44, encapsulate. FromAccess:
// check, decapsulate, un-NAT (or hand PCP replies to the B4's own stack).
// Every branch ends in a send or a counted drop; no lock is held while
// sending.

// FromLAN handles one IPv4 packet from the LAN. pkt may be rewritten in
// place and is not retained.
func (b *B4) FromLAN(pkt []byte) {
	ip4, err := packet.ParseIPv4(pkt)
	if err != nil {
		b.count.Count(cDropMalformedIPv4, len(pkt))
		return
	}
	b.count.Count(cInIPv4, len(ip4))
	if b.toLANPCP(ip4) {
		return // PCP or NAT-PMP to the gateway, answered even unprovisioned
	}
	// Issue 11 item 1, RFC 6890: nothing from the LAN goes into the
	// softwire to a special-purpose destination. 192.0.0.0/29 above all:
	// a LAN host's PCP to 192.0.0.1 would otherwise reach the AFTR's
	// server as if the B4 had sent it, and could take the B4's binding.
	if s := special4(ip4.Dst()); s != "" && !(s == "loopback" && b.cfg.AllowLoopback) {
		b.count.Count(specialDrop[s], len(ip4))
		return
	}
	if !b.provisioned.Load() {
		b.count.Count(cDropNotProvisioned, len(ip4))
		b.sendICMPv4ToLAN(packet.ICMPv4DstUnreachable, 0, ip4) // net unreachable: no IPv4 service yet
		return
	}
	// RFC 2473 §7.2 (PROTOCOL.md §8 item 8): too big for the tunnel with
	// DF set is refused with "fragmentation needed" and the tunnel MTU,
	// quoting the packet as the host sent it (before TTL and NAT). Without DF,
	// toAFTR fragments the IPv6 packet instead.
	if len(ip4) > int(b.cfg.TunnelMTU) && ip4.DF() {
		b.count.Count(cDropTooBigDF, len(ip4))
		b.sendICMPv4ToLANRest(packet.ICMPv4DstUnreachable, 4, b.cfg.TunnelMTU, ip4)
		return
	}
	if err := ip4.DecTTL(); err != nil {
		b.count.Count(cDropTTLZero, len(ip4))
		b.sendICMPv4ToLAN(packet.ICMPv4TimeExceeded, 0, ip4)
		return
	}
	hairpin, err := b.nat.Outbound(ip4)
	if err != nil {
		b.count.Count(cDropNAT, len(ip4))
		b.natRefused(err, ip4) // natrefuse.go
		return
	}
	if hairpin {
		// RFC 4787 REQ-9: a LAN host reaching another through the public
		// address stays on the LAN.
		b.count.Count(cOutIPv4, len(ip4))
		b.lan.Send(ip4)
		return
	}
	b.toAFTR(ip4)
}

// toAFTR encapsulates an IPv4 packet into the softwire (RFC 7596 §5.1).
// One larger than the tunnel MTU (no DF: FromLAN refused the others) is
// carried in IPv6 fragments, the inner packet untouched (RFC 6333 §5.3:
// fragment after encapsulation; the AFTR reassembles before decapsulating).
func (b *B4) toAFTR(ip4 []byte) {
	out := packet.Encapsulate(ip4, 0, b.addr6, b.aftr6, b.cfg.HopLimit)
	if len(ip4) <= int(b.cfg.TunnelMTU) {
		b.count.Count(cOutIPv6, len(out))
		b.access.Send(out)
		return
	}
	frags, err := frag.FragmentIPv6(out, int(b.cfg.TunnelMTU)+packet.IPv6HeaderLen, b.fragIDs.Next32())
	if err != nil {
		b.count.Count(cDropFragmentIPv6, len(out))
		return
	}
	for _, f := range frags {
		b.count.Count(cOutIPv6Frag, len(f))
		b.access.Send(f)
	}
}

// FromAccess handles one IPv6 packet from the access network.
func (b *B4) FromAccess(pkt []byte) {
	var outer packet.IPv6
	err := packet.ParseIPv6(pkt, &outer)
	if errors.Is(err, packet.ErrFragment) && outer.Src == b.aftr6 && outer.Dst == b.addr6 {
		// RFC 6333 §6.3: reassemble before decapsulating; only what our
		// AFTR sends us may occupy the bounded table.
		b.count.Count(cInIPv6Frag, len(pkt))
		whole, ferr := b.reasm.Add(pkt)
		if ferr != nil {
			b.count.Count(cDropFragmentIPv6, len(pkt))
			return
		}
		if whole == nil {
			return // waiting for the other fragments
		}
		pkt = whole
		err = packet.ParseIPv6(pkt, &outer)
	}
	if err != nil {
		b.count.Count(cDropMalformedIPv6, len(pkt))
		return
	}
	b.count.Count(cInIPv6, len(pkt))
	// The AnnounceGroup carries the AFTR's restart ANNOUNCE and nothing
	// else (RFC 6887 §14.1.3).
	group := outer.Dst != b.addr6 && outer.Dst == b.group6 && b.group6[0] == 0xff
	if outer.Dst != b.addr6 && !group {
		b.count.Count(cDropWrongDstIPv6, len(pkt))
		return
	}
	// RFC 7596 §5.1: the outer source MUST be the configured lwAFTR;
	// the same check guards the ICMPv6 1/5 and the ANNOUNCE against forgery.
	if outer.Src != b.aftr6 {
		if peekAnnounce(&outer) {
			b.count.Count(cDropAnnounceSpoofed, len(pkt))
			return
		}
		b.count.Count(cDropWrongSourceIPv6, len(pkt))
		return
	}
	switch outer.NextHeader {
	case packet.ProtoIPIP:
	case packet.ProtoICMPv6:
		if group {
			b.count.Count(cDropWrongDstIPv6, len(pkt))
			return
		}
		b.fromAFTRICMPv6(&outer)
		return
	default:
		b.count.Count(cDropUnknownProtocolIPv6, len(pkt))
		return
	}
	ip4, err := packet.ParseIPv4(outer.Payload)
	if err != nil {
		b.count.Count(cDropMalformedIPv4, len(pkt))
		return
	}
	if ip4.TOS() != outer.TrafficClass { // RFC 6333 §7.1
		ip4.SetTOS(outer.TrafficClass)
	}
	var u packet.UDP
	if isAnnounce4(ip4, &u) {
		b.announce(ip4, &u)
		return
	}
	if group {
		b.count.Count(cDropWrongDstIPv6, len(pkt))
		return
	}
	if ip4.Dst() == addrB4 {
		b.count.Count(cToSelf, len(ip4))
		b.stack.Inject(ip4)
		return
	}
	// RFC 7596 §5.1: a destination address or port outside the B4's
	// configuration MUST be dropped; the NAT knows both.
	if err := b.nat.Inbound(ip4); err != nil {
		b.count.Count(cDropNATInbound, len(ip4))
		return
	}
	if err := ip4.DecTTL(); err != nil {
		b.count.Count(cDropTTLZero, len(ip4))
		return
	}
	b.count.Count(cOutIPv4, len(ip4))
	b.lan.Send(ip4)
}

// sendICMPv4ToLAN answers a LAN packet with an ICMPv4 error from the
// gateway address; never about an ICMP error (RFC 1812 §4.3.2.7).
func (b *B4) sendICMPv4ToLAN(typ, code uint8, ip4 packet.IPv4) {
	b.sendICMPv4ToLANRest(typ, code, 0, ip4)
}

// sendICMPv4ToLANRest is sendICMPv4ToLAN with the 32-bit field after the
// checksum (the next-hop MTU of "fragmentation needed", RFC 1191).
func (b *B4) sendICMPv4ToLANRest(typ, code uint8, rest uint32, ip4 packet.IPv4) {
	if f, err := ip4.Ports(); err == nil && f.ICMPError {
		return
	}
	e := packet.ICMPv4Error(typ, code, rest, b.gw4, ip4.Src(), 64, ip4, packet.MaxICMPv4Error)
	b.count.Count(cOutICMPv4, len(e))
	b.lan.Send(e)
}
