package aftr

import (
	"net/netip"
	"sync"
	"time"

	"github.com/lw4o6/lw4o6/stack/packet"
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

// sendICMPv6 sends an ICMPv6 error about invoking to dst (a B4).
func (a *AFTR) sendICMPv6(typ, code uint8, dst [16]byte, invoking []byte) {
	if !a.limiter.allow() {
		a.count.Count(cDropICMPRateLimit, len(invoking))
		return
	}
	b := packet.ICMPv6Error(typ, code, 0, a.addr6, dst, a.cfg.HopLimit, invoking, packet.MaxICMPv6Error)
	a.count.Count(cOutICMPv6, len(b))
	a.access.Send(b)
}

// sendICMPv4 sends an ICMPv4 error about ip4 to its source: back through
// the softwire when it came from a B4 (outer != nil), to the Internet
// otherwise. Errors about ICMP errors, or about datagrams from no single
// host or to a broadcast or multicast address, are never sent (RFC 1812
// §4.3.2.7).
func (a *AFTR) sendICMPv4(typ, code uint8, rest uint32, ip4 packet.IPv4, outer *packet.IPv6) {
	if f, err := ip4.Ports(); err == nil && f.ICMPError {
		return
	}
	if s, d := ip4.SrcAddr(), ip4.DstAddr(); s.IsUnspecified() || s.IsLoopback() || s.IsMulticast() ||
		s.As4()[0] >= 240 || d.IsMulticast() || d.As4() == [4]byte{255, 255, 255, 255} {
		return // 240/4 is class E and holds 255.255.255.255
	}
	if outer == nil && a.ownsIPv4(ip4.Src()) {
		return // a spoofed B4 address: what is sent to it must not leave for the Internet
	}
	src := a.cfg.IPv4Addr
	if !src.IsValid() {
		if outer == nil {
			return // nothing to send it from
		}
		src = netip.AddrFrom4(addrAFTR4) // RFC 6333 §6.5: 192.0.0.1 sources the AFTR's ICMP
	}
	if !a.limiter.allow() {
		a.count.Count(cDropICMPRateLimit, len(ip4))
		return
	}
	b := packet.ICMPv4Error(typ, code, rest, src.As4(), ip4.Src(), 64, ip4, packet.MaxICMPv4Error)
	a.count.Count(cOutICMPv4, len(b))
	if outer == nil {
		a.internet.Send(b)
		return
	}
	a.encapsulate(b, outer.Src, a.addr6)
}
