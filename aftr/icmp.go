package aftr

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"time"

	"github.com/lw4o6/lw4o6/stack/packet"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// rateLimiter is a token bucket for the ICMP errors the AFTR originates
// (RFC 4443 §2.4(f), RFC 7596 §9). Only the error path takes its lock.
type rateLimiter struct {
	mu     sync.Mutex
	rate   float64
	tokens float64
	last   time.Time
	now    func() time.Time
}

func newRateLimiter(perSecond int, now func() time.Time) *rateLimiter {
	return &rateLimiter{rate: float64(perSecond), tokens: float64(perSecond), now: now}
}

func (r *rateLimiter) allow() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.now()
	if !r.last.IsZero() {
		r.tokens = min(r.rate, r.tokens+t.Sub(r.last).Seconds()*r.rate)
	}
	r.last = t
	if r.tokens < 1 {
		return false
	}
	r.tokens--
	return true
}

// prefixLimiter is a token bucket per source /64 (a B4's subnet, RFC 4291
// §2.5.4), each with rate tokens a second and as many in store. The table
// is bounded: when full, buckets idle long enough to have refilled are
// dropped (a new bucket starts full, so nothing changes for them); if none
// is, the source is let through to the family's bucket, which still caps
// the total.
type prefixLimiter struct {
	mu   sync.Mutex
	rate float64
	now  func() time.Time
	m    map[[8]byte]*prefixBucket
	max  int
}

type prefixBucket struct {
	tokens float64
	last   time.Time
}

const prefixLimiterMax = 4096

func newPrefixLimiter(perSecond int, now func() time.Time) *prefixLimiter {
	return &prefixLimiter{rate: float64(perSecond), now: now, m: map[[8]byte]*prefixBucket{}, max: prefixLimiterMax}
}

func (l *prefixLimiter) allow(src [16]byte) bool {
	key := [8]byte(src[:8])
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.now()
	b, ok := l.m[key]
	if !ok {
		if len(l.m) >= l.max {
			for k, o := range l.m {
				if t.Sub(o.last).Seconds()*l.rate >= l.rate {
					delete(l.m, k)
				}
			}
			if len(l.m) >= l.max {
				return true
			}
		}
		b = &prefixBucket{tokens: l.rate, last: t}
		l.m[key] = b
	}
	b.tokens = min(l.rate, b.tokens+t.Sub(b.last).Seconds()*l.rate)
	b.last = t
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// icmpChecksumOK checks the checksum of an ICMPv4 message.
func icmpChecksumOK(m []byte) bool { return len(m) >= 8 && checksum.Checksum(m, 0) == 0xffff }

// sendICMPv6 sends a B4 an ICMPv6 error about the softwire packet outer,
// from the address outer was sent to (RFC 4443 §2.2), if
// ICMPv6OnBindingFailure allows and the rate limit does.
func (a *AFTR) sendICMPv6(typ, code uint8, outer *packet.IPv6) {
	if !a.cfg.ICMPv6OnBindingFailure {
		a.count.Count(cDropOutByPolicyICMPv6, len(outer.Packet))
		return
	}
	// Per source prefix first: a flooding source spends only its own
	// share and leaves the family's bucket to the other B4s.
	if a.perSrc6 != nil && !a.perSrc6.allow(outer.Src) {
		a.count.Count(cDropOverSourceRateLimitICMPv6, len(outer.Packet))
		return
	}
	if !a.limiter6.allow() {
		a.count.Count(cDropOverRateLimitICMPv6, len(outer.Packet))
		return
	}
	b := packet.ICMPv6Error(typ, code, 0, outer.Dst, outer.Src, a.cfg.HopLimit, outer.Packet, a.cfg.ICMPv6ErrorMaxLen)
	a.count.Count(cOutICMPv6, len(b))
	a.sendAccess(b)
}

// sendICMPv4 sends an ICMPv4 error about ip4 to its source: back through
// the softwire it came in when it came from a B4 (from != nil), to the
// Internet otherwise. Errors about ICMP errors, or about datagrams from no
// single host or to a broadcast or multicast address, are never sent (RFC
// 1812 §4.3.2.7).
func (a *AFTR) sendICMPv4(typ, code uint8, rest uint32, ip4 packet.IPv4, from *packet.IPv6) {
	if f, err := ip4.Ports(); err == nil && f.ICMPError {
		return
	}
	if !a.icmpv4Sendable(ip4) {
		return
	}
	if from == nil && a.ownsIPv4(ip4.Src()) {
		return // a spoofed B4 address: what is sent to it must not leave for the Internet
	}
	src := a.cfg.IPv4Addr
	if !src.IsValid() {
		if from == nil {
			return // nothing to send it from
		}
		src = netip.AddrFrom4(addrAFTR4) // RFC 6333 §6.5: 192.0.0.1 sources the AFTR's ICMP
	}
	b := a.icmpv4Error(typ, code, rest, src.As4(), ip4.Src(), ip4)
	if b == nil {
		return
	}
	if from == nil {
		a.sendInternet(b, nil)
		return
	}
	if a.cfg.HairpinOwnICMPv4 && a.cfg.Hairpinning && a.ownsIPv4(ip4.Src()) {
		a.count.Count(cHairpinIPv4, len(b))
		a.downstream(b, from)
		return
	}
	a.encapsulate(b, from.Src, from.Dst)
}

// icmpv4Sendable applies RFC 1812 §4.3.2.7 to the invoking datagram.
func (a *AFTR) icmpv4Sendable(ip4 packet.IPv4) bool {
	s, d := ip4.SrcAddr(), ip4.DstAddr()
	// 240/4 is class E and holds 255.255.255.255.
	return !(s.IsUnspecified() || s.IsLoopback() || s.IsMulticast() || s.As4()[0] >= 240 ||
		d.IsMulticast() || d.As4() == [4]byte{255, 255, 255, 255})
}

// icmpv4Error builds an ICMPv4 error quoting invoking, or returns nil (and
// counts why) when the policy or the rate limit says no.
func (a *AFTR) icmpv4Error(typ, code uint8, rest uint32, src, dst [4]byte, invoking []byte) packet.IPv4 {
	if !a.cfg.ICMPv4Errors {
		a.count.Count(cDropOutByPolicyICMPv4, len(invoking))
		return nil
	}
	if !a.limiter4.allow() {
		a.count.Count(cDropOverRateLimitICMPv4, len(invoking))
		return nil
	}
	b := packet.ICMPv4Error(typ, code, rest, src, dst, a.cfg.ICMPv4ErrorTTL, invoking, a.cfg.ICMPv4ErrorMaxLen)
	a.count.Count(cOutICMPv4, len(b))
	return b
}

// icmpv6FromAccess handles ICMPv6 to the AFTR: echo requests are answered
// (on any of its addresses), errors about its softwire packets are
// translated for the IPv4 host that sent the packet (RFC 2473 §8.2), the
// rest is dropped.
func (a *AFTR) icmpv6FromAccess(outer *packet.IPv6) {
	var m packet.ICMPv6
	if err := packet.ParseICMPv6(outer, &m); err != nil {
		a.count.Count(cDropBadChecksumICMPv6, len(outer.Packet))
		return
	}
	if m.Type == packet.ICMPv6EchoRequest {
		out := packet.ICMPv6Echo(packet.ICMPv6EchoReply, outer.Dst, outer.Src, 64, m.Param, m.Body)
		a.count.Count(cOutICMPv6Echo, len(out))
		a.sendAccess(out)
		return
	}
	if !a.cfg.AllowIncomingICMPv6 {
		a.count.Count(cDropInByPolicyICMPv6, len(outer.Packet))
		return
	}
	// RFC 2473 §8.2: what the tunnel entry point reports to the original
	// source for each ICMPv6 error about a tunnel packet.
	var code uint8
	var mtu uint32
	switch {
	case m.Type == packet.ICMPv6PacketTooBig && m.Code != 0:
		a.count.Count(cDropTooBigTypeButNotCodeICMPv6, len(outer.Packet))
		return
	case m.Type == packet.ICMPv6PacketTooBig:
		// Fragmentation needed, with the tunnel MTU (RFC 2473 §7.2).
		if m.Param < packet.IPv6HeaderLen+68 || m.Param > 0xffff {
			a.count.Count(cDropTooBigTypeButNotCodeICMPv6, len(outer.Packet))
			return
		}
		code, mtu = 4, m.Param-packet.IPv6HeaderLen
	case m.Type == packet.ICMPv6TimeExceeded && m.Code != 0:
		// Reassembly time exceeded: the B4 reassembles; nothing for the
		// IPv4 source to learn.
		a.count.Count(cDropOverTimeButNotHopLimitICMPv6, len(outer.Packet))
		return
	case m.Type == packet.ICMPv6DstUnreachable || m.Type == packet.ICMPv6TimeExceeded || m.Type == packet.ICMPv6ParamProblem:
		code = 1 // host unreachable
	default:
		a.count.Count(cDropUnknownProtocolICMPv6, len(outer.Packet))
		return
	}
	inner, ok := a.quotedSoftwirePacket(m.Body)
	if !ok {
		a.count.Count(cDropNotFromSoftwireICMPv6, len(outer.Packet))
		return
	}
	if !a.icmpv4Sendable(inner) {
		return
	}
	src := a.cfg.IPv4Addr
	if !src.IsValid() {
		a.count.Count(cDropOutByPolicyICMPv4, len(outer.Packet))
		return
	}
	b := a.icmpv4Error(packet.ICMPv4DstUnreachable, code, mtu, src.As4(), inner.Src(), inner)
	if b == nil {
		return
	}
	if a.ownsIPv4(inner.Src()) {
		// The packet was a B4's, hairpinned: the error goes to that B4.
		if a.cfg.Hairpinning {
			a.count.Count(cHairpinIPv4, len(b))
			a.downstream(b, outer)
		} else {
			a.count.Count(cDropHairpinDisabled, len(b))
		}
		return
	}
	a.sendInternet(b, nil)
}

// quotedSoftwirePacket returns the IPv4 packet quoted in an ICMPv6 error's
// body (possibly truncated) if it is one the AFTR sent: an IPv6 packet from
// one of its addresses carrying IPv4 (next header 4), to the B4 that owns
// its destination and port with that BR address.
func (a *AFTR) quotedSoftwirePacket(body []byte) (packet.IPv4, bool) {
	if len(body) < packet.IPv6HeaderLen+packet.IPv4HeaderLen || body[0]>>4 != 6 || body[6] != packet.ProtoIPIP {
		return nil, false
	}
	br, b4 := [16]byte(body[8:24]), [16]byte(body[24:40])
	if !a.ownsIPv6(br) {
		return nil, false
	}
	in := packet.IPv4(body[packet.IPv6HeaderLen:])
	if in[0]>>4 != 4 || in.HeaderLen() < packet.IPv4HeaderLen || len(in) < in.HeaderLen() {
		return nil, false
	}
	if tl := in.TotalLen(); tl >= in.HeaderLen() && tl < len(in) {
		in = in[:tl]
	}
	port, err := a.downstreamPort(in)
	if err != nil {
		return nil, false
	}
	gotB4, gotBR, ok := a.table.Lookup(in.Dst(), port)
	return in, ok && gotB4.As16() == b4 && gotBR.As16() == br
}

// echo4 answers an echo request to the AFTR's own IPv4 address (RFC 792,
// RFC 1122 §3.2.2.6) by turning it around in place: addresses swapped,
// type 0, TTL 64, the rest (ID, flags, data) as received. The reply goes
// back where the request came from: the Internet, or the softwire from.
// Everything else to that address is dropped.
func (a *AFTR) echo4(ip4 packet.IPv4, from *packet.IPv6) {
	m := ip4.Payload()
	if ip4.Protocol() != packet.ProtoICMP || len(m) < 8 || m[0] != packet.ICMPv4EchoRequest || m[1] != 0 {
		a.count.Count(cDropToSelfIPv4, len(ip4))
		return
	}
	if !icmpChecksumOK(m) {
		a.count.Count(cDropBadChecksumICMPv4, len(ip4))
		return
	}
	// RFC 1122 §3.2.2.6: no reply to a broadcast or multicast; none to a
	// B4's address either, which only comes through a softwire.
	if !a.icmpv4Sendable(ip4) || (from == nil && a.ownsIPv4(ip4.Src())) {
		a.count.Count(cDropToSelfIPv4, len(ip4))
		return
	}
	src, dst := ip4.Src(), ip4.Dst()
	copy(ip4[12:16], dst[:])
	copy(ip4[16:20], src[:])
	ip4[8] = 64
	packet.SetIPv4HeaderChecksum(ip4)
	old := binary.BigEndian.Uint16(m)
	m[0] = packet.ICMPv4EchoReply
	binary.BigEndian.PutUint16(m[2:], packet.UpdateChecksum16(binary.BigEndian.Uint16(m[2:]), old, binary.BigEndian.Uint16(m)))
	a.count.Count(cOutICMPv4Echo, len(ip4))
	if from != nil {
		a.encapsulate(ip4, from.Src, from.Dst)
		return
	}
	a.sendInternet(ip4, nil)
}
