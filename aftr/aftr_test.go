package aftr

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/stack/pcp"
)

// The data-plane tests: RFC 7596 §6.2 (upstream check, downstream lookup,
// hairpinning), §8.1 (ICMP), §9 (rate limit), RFC 6333 §7.1 and RFC 2473
// §6.3 (tunnel fields), PROTOCOL.md §8 items 5 and 8.

// RFC 7596 §6.2 upstream, RFC 2983 §3, RFC 6040 §4.2, PROTOCOL.md §8 item
// 8: a packet of a bound B4 from a port in its set is decapsulated, its TTL
// decremented, its DSCP kept (pipe model) and its ECN field combined with
// the outer one, and sent to the Internet.
func TestUpstreamForward(t *testing.T) {
	r := newRig(t, nil)
	ip, first, size := r.bind(tB4A, 1)
	last := first + size - 1
	withTOS := func(b []byte, tos uint8) []byte { packet.IPv4(b).SetTOS(tos); return b }
	for _, c := range []struct {
		name     string
		ip4      []byte
		tc, want uint8
	}{
		{"udp-first", udp4(ip, tRemote, first, 53, 64, []byte("query")), 0, 0},
		// The access network's DSCP does not leak into the Internet.
		{"udp-last-dscp", udp4(ip, tRemote, last, 53, 17, []byte("query")), 0xb8, 0},
		{"udp-inner-dscp-kept", withTOS(udp4(ip, tRemote, last, 53, 17, []byte("query")), 0x28), 0xb8, 0x28},
		// ECT(1) outside, Not-ECT inside: never marked.
		{"tcp-ecn-not-ect", tcp4(ip, tRemote, first+7, 443, 64), 0x01, 0},
		// CE outside reaches an ECN-capable flow.
		{"tcp-ce", withTOS(tcp4(ip, tRemote, first+8, 443, 64), 0x02), 0x03, 0x03},
		{"echo", echo4(ip, tRemote, packet.ICMPv4EchoRequest, first+1, 1, 64), 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			sent := bytes.Clone(c.ip4)
			r.a.FromAccess(encapTC(tB4A, tAFTR, c.tc, c.ip4))
			sameExceptTTLAndTOS(t, r.oneInternet(), sent, c.want)
		})
	}
	if got := r.counter("out-ipv4"); got != 6 {
		t.Errorf("out-ipv4 %d, want 6", got)
	}
}

// RFC 6040 §4.2: CE on the outer header of a Not-ECT packet is dropped and
// counted; the uniform model (RFC 2983 §3) copies the outer DSCP; Snabb's
// profile leaves the inner header alone.
func TestDecapTOSModes(t *testing.T) {
	r := newRig(t, nil)
	ip, first, _ := r.bind(tB4A, 1)
	r.a.FromAccess(encapTC(tB4A, tAFTR, 0x03, udp4(ip, tRemote, first, 53, 64, []byte("q"))))
	r.quiet()
	if got := r.counter("drop-ecn-ce-on-not-ect-ipv6"); got != 1 {
		t.Errorf("drop-ecn-ce-on-not-ect-ipv6 = %d, want 1", got)
	}
	for _, c := range []struct {
		mode TOSMode
		want uint8
	}{{TOSUniform, 0xb8 | 0x01}, {TOSUntouched, 0x02}} {
		r := newRig(t, func(cfg *Config) { cfg.DecapTOS = c.mode })
		ip, first, _ := r.bind(tB4A, 1)
		p := udp4(ip, tRemote, first, 53, 64, []byte("q"))
		packet.IPv4(p).SetTOS(0x02) // ECT(0)
		sent := bytes.Clone(p)
		r.a.FromAccess(encapTC(tB4A, tAFTR, 0xb9, p)) // EF, ECT(1)
		sameExceptTTLAndTOS(t, r.oneInternet(), sent, c.want)
	}
}

// RFC 7596 §6.2 upstream and §5.1, PROTOCOL.md §8 item 5: a packet that
// matches no binding — a port outside the set, another B4's IPv6 source,
// an unbound IPv4 source — is dropped and counted, and the B4 gets ICMPv6
// 1/5 from the AFTR with the offending packet embedded.
func TestUpstreamBindingFailure(t *testing.T) {
	r := newRig(t, nil)
	ip, first, size := r.bind(tB4A, 1)
	r.bind(tB4B, 2)
	for i, c := range []struct {
		name string
		b4   netip.Addr
		ip4  []byte
	}{
		{"port-below-set", tB4A, udp4(ip, tRemote, first-1, 53, 64, []byte("q"))},
		{"port-above-set", tB4A, udp4(ip, tRemote, first+size, 53, 64, []byte("q"))},
		{"system-port", tB4A, udp4(ip, tRemote, 80, 53, 64, []byte("q"))},
		{"echo-id-outside", tB4A, echo4(ip, tRemote, packet.ICMPv4EchoRequest, first+size, 1, 64)},
		{"other-b4", tB4B, udp4(ip, tRemote, first, 53, 64, []byte("q"))},
		{"unbound-b4", tB4C, udp4(ip, tRemote, first, 53, 64, []byte("q"))},
		{"unbound-ipv4", tB4A, udp4(tOther4, tRemote, first, 53, 64, []byte("q"))},
		{"unbound-pool-ipv4", tB4A, udp4(tPool.Addr().Next().Next().Next(), tRemote, first, 53, 64, []byte("q"))},
		{"ttl1-unbound", tB4C, udp4(ip, tRemote, first, 53, 1, []byte("q"))},
		// The inner TOS differs from the traffic class: the embedded
		// packet is still the one received (RFC 4443 §3.1).
		{"tos-differs", tB4A, setTOS(udp4(ip, tRemote, first-1, 53, 64, []byte("q")), 0x10)},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := encapTC(c.b4, tAFTR, 0xb8, c.ip4)
			sent := bytes.Clone(p)
			r.a.FromAccess(p)
			m := r.icmp6To(r.oneAccess(), c.b4)
			if m.Type != packet.ICMPv6DstUnreachable || m.Code != packet.ICMPv6CodeSourcePolicy || m.Param != 0 {
				t.Errorf("ICMPv6 %d/%d param %d, want 1/5 0", m.Type, m.Code, m.Param)
			}
			if !bytes.Equal(m.Body, sent) {
				t.Errorf("embedded packet\n% x\nwant the offending one\n% x", m.Body, sent)
			}
			if got := r.counter("drop-no-source-softwire-ipv6"); got != uint64(i+1) {
				t.Errorf("drop-no-source-softwire-ipv6 %d, want %d", got, i+1)
			}
		})
	}
	if got := r.counter("out-icmpv6"); got != 10 {
		t.Errorf("out-icmpv6 %d, want 10", got)
	}
}

// RFC 4291 §2.7, RFC 4443 §2.4(e): a softwire packet from a multicast or
// the unspecified address comes from no B4 and gets no answer (no ICMPv6
// error, no PCP reply).
func TestAccessFromNonUnicast(t *testing.T) {
	r := newRig(t, nil)
	ip, first, _ := r.bind(tB4A, 1)
	for _, s := range []string{"::", "ff02::1", "ff0e::db8:1"} {
		src := netip.MustParseAddr(s)
		r.a.FromAccess(encap(src, tAFTR, udp4(ip, tRemote, first, 53, 64, []byte("q"))))
		r.a.FromAccess(pcpPacket(src, b4Req(1, 3600).marshal(t)))
		r.quiet()
	}
	if got := r.counter("drop-malformed-ipv6"); got != 6 {
		t.Errorf("drop-malformed-ipv6 %d, want 6", got)
	}
}

// RFC 7596 §9 and RFC 4443 §2.4(f): the ICMPv6 errors are rate-limited to
// ICMPRate a second; the ones over the rate are counted.
func TestUpstreamICMPv6RateLimited(t *testing.T) {
	const rate = 5
	r := newRig(t, func(c *Config) { c.ICMPRate, c.ICMPv6RatePerPrefix = rate, -1 })
	bad := udp4(tOther4, tRemote, 4096, 53, 64, []byte("q"))
	send := func(n int) int {
		for range n {
			r.a.FromAccess(encap(tB4A, tAFTR, bad))
		}
		if p := r.internet.take(); len(p) != 0 {
			t.Fatalf("%d packets to the Internet", len(p))
		}
		return len(r.access.take())
	}
	if got := send(3 * rate); got != rate {
		t.Errorf("%d errors sent in one second, want %d", got, rate)
	}
	if got := r.counter("drop-over-rate-limit-icmpv6"); got != 2*rate {
		t.Errorf("drop-over-rate-limit-icmpv6 %d, want %d", got, 2*rate)
	}
	if got := r.counter("drop-no-source-softwire-ipv6"); got != 3*rate {
		t.Errorf("drop-no-source-softwire-ipv6 %d, want %d", got, 3*rate)
	}
	r.clock.Advance(time.Second)
	if got := send(3 * rate); got != rate {
		t.Errorf("%d errors sent in the next second, want %d", got, rate)
	}
	r.clock.Advance(time.Second / rate)
	if got := send(3); got != 1 {
		t.Errorf("%d errors sent 1/%d s later, want 1", got, rate)
	}
}

// RFC 7596 §6.2: ICMPv6 1/5 is a configurable MAY; off, nothing is sent.
func TestUpstreamNoICMPv6WhenDisabled(t *testing.T) {
	r := newRig(t, func(c *Config) { c.ICMPv6OnBindingFailure = false })
	ip, first, _ := r.bind(tB4A, 1)
	r.a.FromAccess(encap(tB4A, tAFTR, udp4(ip, tRemote, first-1, 53, 64, []byte("q"))))
	r.a.FromAccess(encap(tB4C, tAFTR, udp4(ip, tRemote, first, 53, 64, []byte("q"))))
	r.quiet()
	if got := r.counter("drop-no-source-softwire-ipv6"); got != 2 {
		t.Errorf("drop-no-source-softwire-ipv6 %d, want 2", got)
	}
}

// RFC 7596 §8.1, RFC 5508 REQ-3: an ICMP error a B4 sends about a packet
// it received is checked by the embedded packet's destination port, the
// B4's own port.
func TestUpstreamICMPErrorFromB4(t *testing.T) {
	r := newRig(t, nil)
	ip, first, size := r.bind(tB4A, 1)

	received := udp4(tRemote, ip, 53, first+5, 60, []byte("answer")) // what the B4 got
	e := icmpErr4(ip, tRemote, packet.ICMPv4DstUnreachable, 3, received)
	sent := bytes.Clone(e)
	r.a.FromAccess(encap(tB4A, tAFTR, e))
	sameExceptTTLAndTOS(t, r.oneInternet(), sent, 0)

	// About a packet to a port outside its set: not its own, dropped.
	received = udp4(tRemote, ip, 53, first+size, 60, []byte("answer"))
	r.a.FromAccess(encap(tB4A, tAFTR, icmpErr4(ip, tRemote, packet.ICMPv4DstUnreachable, 3, received)))
	m := r.icmp6To(r.oneAccess(), tB4A)
	if m.Type != packet.ICMPv6DstUnreachable || m.Code != packet.ICMPv6CodeSourcePolicy {
		t.Errorf("ICMPv6 %d/%d, want 1/5", m.Type, m.Code)
	}
	if got := r.counter("drop-no-source-softwire-ipv6"); got != 1 {
		t.Errorf("drop-no-source-softwire-ipv6 %d, want 1", got)
	}
}

// RFC 1812 §5.3.1 (the AFTR forwards IPv4 as a router; PROTOCOL.md §3.6):
// TTL 1 upstream is dropped and answered with ICMPv4 time exceeded back
// through the softwire, from 192.0.0.1 (RFC 6333 §6.5) or IPv4Addr.
func TestUpstreamTTLExpired(t *testing.T) {
	for _, self := range []netip.Addr{{}, tSelf4} {
		t.Run("from-"+self.String(), func(t *testing.T) {
			r := newRig(t, func(c *Config) { c.IPv4Addr = self })
			ip, first, _ := r.bind(tB4A, 1)
			for _, ttl := range []uint8{1, 0} {
				p := udp4(ip, tRemote, first, 53, ttl, []byte("q"))
				sent := bytes.Clone(p)
				r.a.FromAccess(encap(tB4A, tAFTR, p))
				in := r.softwireTo(r.oneAccess(), tB4A)
				mustIPv4(t, in)
				wantSrc := self
				if !self.IsValid() {
					wantSrc = tAFTR4
				}
				if in.SrcAddr() != wantSrc || in.DstAddr() != ip {
					t.Errorf("ICMPv4 %v → %v, want %v → %v", in.SrcAddr(), in.DstAddr(), wantSrc, ip)
				}
				typ, code, body := icmp4(t, in)
				if typ != packet.ICMPv4TimeExceeded || code != 0 {
					t.Errorf("ICMPv4 %d/%d, want 11/0", typ, code)
				}
				if !bytes.Equal(body, sent) {
					t.Errorf("embedded\n% x\nwant\n% x", body, sent)
				}
			}
			if got := r.counter("drop-ttl-zero-ipv4"); got != 2 {
				t.Errorf("drop-ttl-zero-ipv4 %d, want 2", got)
			}
		})
	}
}

// RFC 7596 §6.2 downstream, RFC 2473 §6.3, RFC 6333 §7.1: an Internet
// packet to (bound IPv4, port in the set) goes to the B4 from the BR
// address, hop limit Config.HopLimit, traffic class = TOS, TTL decremented.
func TestDownstreamEncapsulate(t *testing.T) {
	r := newRig(t, func(c *Config) { c.HopLimit = 40 })
	ip, first, size := r.bind(tB4A, 1)
	for _, c := range []struct {
		name string
		ip4  []byte
	}{
		{"udp", setTOS(udp4(tRemote, ip, 53, first, 50, []byte("answer")), 0x28)},
		{"udp-last", udp4(tRemote, ip, 53, first+size-1, 50, []byte("answer"))},
		{"tcp", setTOS(tcp4(tRemote, ip, 443, first+9, 30), 0xb9)},
	} {
		t.Run(c.name, func(t *testing.T) {
			sent := bytes.Clone(c.ip4)
			r.a.FromInternet(c.ip4)
			in := r.softwireTo(r.oneAccess(), tB4A)
			sameExceptTTLAndTOS(t, in, sent, sent[1])
		})
	}
	if got := r.counter("out-ipv6"); got != 3 {
		t.Errorf("out-ipv6 %d, want 3", got)
	}
}

// RFC 7596 §8.1: ICMP echo is looked up by its identifier.
func TestDownstreamEcho(t *testing.T) {
	r := newRig(t, nil)
	ip, first, size := r.bind(tB4A, 1)
	for _, typ := range []uint8{packet.ICMPv4EchoReply, packet.ICMPv4EchoRequest} {
		p := echo4(tRemote, ip, typ, first+3, 9, 64)
		sent := bytes.Clone(p)
		r.a.FromInternet(p)
		sameExceptTTLAndTOS(t, r.softwireTo(r.oneAccess(), tB4A), sent, 0)
	}
	r.a.FromInternet(echo4(tRemote, ip, packet.ICMPv4EchoReply, first+size, 9, 64))
	r.quiet()
	if got := r.counter("drop-no-dest-softwire-ipv4"); got != 1 {
		t.Errorf("drop-no-dest-softwire-ipv4 %d, want 1", got)
	}
}

// RFC 7596 §8.1, RFC 5508 REQ-3: an ICMP error from the Internet is looked
// up by the source port of the embedded packet (the B4's own packet).
func TestDownstreamICMPError(t *testing.T) {
	r := newRig(t, nil)
	ip, first, size := r.bind(tB4A, 1)

	mine := udp4(ip, tRemote, first+100, 53, 60, []byte("query"))
	e := icmpErr4(tRemote, ip, packet.ICMPv4DstUnreachable, 3, mine)
	sent := bytes.Clone(e)
	r.a.FromInternet(e)
	sameExceptTTLAndTOS(t, r.softwireTo(r.oneAccess(), tB4A), sent, 0)

	// Time exceeded about an echo: the embedded identifier.
	e = icmpErr4(tRemote, ip, packet.ICMPv4TimeExceeded, 0, echo4(ip, tRemote, packet.ICMPv4EchoRequest, first+1, 1, 1))
	r.a.FromInternet(e)
	r.softwireTo(r.oneAccess(), tB4A)

	notMine := udp4(ip, tRemote, first+size, 53, 60, []byte("query"))
	r.a.FromInternet(icmpErr4(tRemote, ip, packet.ICMPv4DstUnreachable, 3, notMine))
	r.quiet()
	if got := r.counter("drop-no-dest-softwire-ipv4"); got != 1 {
		t.Errorf("drop-no-dest-softwire-ipv4 %d, want 1", got)
	}
}

// RFC 7596 §6.2 downstream: no match is dropped and counted; ICMPv4 3/1 to
// the sender is a configurable MAY that needs IPv4Addr; never about an ICMP
// error (RFC 1812 §4.3.2.7).
func TestDownstreamNoBinding(t *testing.T) {
	r := newRig(t, nil)
	ip, first, size := r.bind(tB4A, 1)
	for _, p := range [][]byte{
		udp4(tRemote, ip, 53, first+size, 64, []byte("x")), // port outside the set
		udp4(tRemote, ip, 53, 80, 64, []byte("x")),         // system port
		udp4(tRemote, tOther4, 53, first, 64, []byte("x")), // not a B4's address
		udp4(tRemote, tPool.Addr().Next().Next(), 53, first, 64, []byte("x")),
	} {
		r.a.FromInternet(p)
		r.quiet()
	}
	if got := r.counter("drop-no-dest-softwire-ipv4"); got != 4 {
		t.Errorf("drop-no-dest-softwire-ipv4 %d, want 4", got)
	}

	// ICMPv4OnNoBinding without IPv4Addr: nothing to send it from.
	r = newRig(t, func(c *Config) { c.ICMPv4OnNoBinding = true })
	ip, first, size = r.bind(tB4A, 1)
	r.a.FromInternet(udp4(tRemote, ip, 53, first+size, 64, []byte("x")))
	r.quiet()

	r = newRig(t, func(c *Config) { c.ICMPv4OnNoBinding, c.IPv4Addr = true, tSelf4 })
	ip, first, size = r.bind(tB4A, 1)
	p := udp4(tRemote, ip, 53, first+size, 64, []byte("x"))
	sent := bytes.Clone(p)
	r.a.FromInternet(p)
	e := mustIPv4(t, r.oneInternet())
	if e.SrcAddr() != tSelf4 || e.DstAddr() != tRemote {
		t.Errorf("ICMPv4 %v → %v, want %v → %v", e.SrcAddr(), e.DstAddr(), tSelf4, tRemote)
	}
	typ, code, body := icmp4(t, e)
	if typ != packet.ICMPv4DstUnreachable || code != 1 || !bytes.Equal(body, sent) {
		t.Errorf("ICMPv4 %d/%d about\n% x\nwant 3/1 about\n% x", typ, code, body, sent)
	}
	if got := r.counter("out-icmpv4"); got != 1 {
		t.Errorf("out-icmpv4 %d, want 1", got)
	}
	// Not about an ICMP error.
	r.a.FromInternet(icmpErr4(tRemote, ip, packet.ICMPv4DstUnreachable, 3, udp4(ip, tRemote, first+size, 53, 64, nil)))
	r.quiet()
}

// RFC 1812 §4.3.2.7: no ICMP error about a datagram whose source is not
// one host (0.0.0.0, loopback, broadcast, multicast, class E), or that was
// sent to a broadcast or multicast address.
func TestDownstreamNoICMPv4ToNonUnicast(t *testing.T) {
	r := newRig(t, func(c *Config) { c.ICMPv4OnNoBinding, c.IPv4Addr = true, tSelf4 })
	ip, first, size := r.bind(tB4A, 1)
	for _, src := range []string{"0.0.0.0", "127.0.0.1", "255.255.255.255", "224.0.0.1", "239.1.2.3", "240.0.0.1"} {
		r.a.FromInternet(udp4(netip.MustParseAddr(src), ip, 53, first+size, 64, []byte("x")))
		r.quiet()
	}
	for _, dst := range []string{"224.0.0.1", "255.255.255.255"} {
		r.a.FromInternet(udp4(tRemote, netip.MustParseAddr(dst), 53, first, 64, []byte("x")))
		r.quiet()
	}
	// The non-unicast sources are martians (RFC 1812 §5.3.7) and go no
	// further; the non-unicast destinations match no softwire.
	if got := r.counter("drop-martian-src-ipv4"); got != 6 {
		t.Errorf("drop-martian-src-ipv4 %d, want 6", got)
	}
	if got := r.counter("drop-no-dest-softwire-ipv4"); got != 2 {
		t.Errorf("drop-no-dest-softwire-ipv4 %d, want 2", got)
	}
}

// RFC 1812 §5.3.7, RFC 6890: Internet packets from a pool (B4) address,
// the softwire's 192.0.0.0/29 or link-local are dropped as martians, not
// delivered to the B4 that owns the port; B4 packets to 192.0.0.0/29,
// link-local or multicast never reach the Internet.
func TestMartiansBothWays(t *testing.T) {
	r := newRig(t, nil)
	ip, first, _ := r.bind(tB4A, 1)
	other := netip.AddrFrom4([4]byte{ip.As4()[0], ip.As4()[1], ip.As4()[2], ip.As4()[3] ^ 1})
	for i, src := range []netip.Addr{ip, other, netip.MustParseAddr("192.0.0.2"), netip.MustParseAddr("169.254.1.1")} {
		if i == 1 && !r.a.ownsIPv4(other.As4()) {
			continue // not in the test pool
		}
		r.a.FromInternet(udp4(src, ip, 53, first, 64, []byte("x")))
		r.quiet()
	}
	if got := r.counter("drop-martian-src-ipv4"); got < 3 {
		t.Errorf("drop-martian-src-ipv4 %d, want at least 3", got)
	}
	for _, dst := range []string{"192.0.0.2", "192.0.0.7", "169.254.0.1", "224.0.0.251"} {
		r.a.FromAccess(encap(tB4A, tAFTR, udp4(ip, netip.MustParseAddr(dst), first+1, 53, 64, []byte("x"))))
		if p := r.internet.take(); len(p) != 0 {
			t.Errorf("packet to %v forwarded to the Internet", dst)
		}
		r.access.take()
	}
	if got := r.counter("drop-martian-dst-ipv4"); got != 4 {
		t.Errorf("drop-martian-dst-ipv4 %d, want 4", got)
	}
	// An ordinary source still reaches the B4.
	r.a.FromInternet(udp4(tRemote, ip, 53, first, 64, []byte("x")))
	r.oneAccess()
}

// An Internet packet claiming a B4's address as its source is spoofed (B4
// traffic comes through the softwire): no ICMPv4 error goes to it, since
// nothing for a B4 address may leave for the Internet (ownsIPv4).
func TestDownstreamNoICMPv4ToPool(t *testing.T) {
	r := newRig(t, func(c *Config) { c.ICMPv4OnNoBinding, c.IPv4Addr = true, tSelf4 })
	ip, first, _ := r.bind(tB4A, 1)
	r.a.FromInternet(udp4(ip, tRemote, first, 53, 64, []byte("x")))
	r.a.FromInternet(udp4(tPool.Addr().Next().Next(), tOther4, first, 53, 64, []byte("x")))
	r.quiet()
}

// RFC 7596 §6.2 hairpinning: B4 A to B4 B's address and port goes back
// into B's softwire, never to the Internet.
func TestHairpin(t *testing.T) {
	r := newRig(t, nil)
	ipA, firstA, _ := r.bind(tB4A, 1)
	ipB, firstB, _ := r.bind(tB4B, 2)

	p := setTOS(udp4(ipA, ipB, firstA, firstB+1, 64, []byte("hello B")), 0x20)
	sent := bytes.Clone(p)
	r.a.FromAccess(encap(tB4A, tAFTR, p))
	sameExceptTTLAndTOS(t, r.softwireTo(r.oneAccess(), tB4B), sent, 0x20)
	if got := r.counter("hairpin-ipv4"); got != 1 {
		t.Errorf("hairpin-ipv4 %d, want 1", got)
	}

	// TCP, and an ICMP error from B about A's packet (looked up by the
	// embedded source port, A's). Echo cannot hairpin: one identifier is
	// checked against A's set and looked up in B's (RFC 6346 §5.3.2).
	r.a.FromAccess(encap(tB4A, tAFTR, tcp4(ipA, ipB, firstA+1, firstB+2, 64)))
	r.softwireTo(r.oneAccess(), tB4B)
	aToB := udp4(ipA, ipB, firstA, firstB+1, 63, []byte("hello B"))
	r.a.FromAccess(encap(tB4B, tAFTR, icmpErr4(ipB, ipA, packet.ICMPv4DstUnreachable, 3, aToB)))
	r.softwireTo(r.oneAccess(), tB4A)
	if got := r.counter("hairpin-ipv4"); got != 3 {
		t.Errorf("hairpin-ipv4 %d, want 3", got)
	}
}

// RFC 7596 §6.2: the hairpinning policy is configurable; off, B4-to-B4
// packets are dropped and counted, and still never leave for the Internet.
func TestHairpinDisabled(t *testing.T) {
	r := newRig(t, func(c *Config) { c.Hairpinning = false })
	ipA, firstA, _ := r.bind(tB4A, 1)
	ipB, firstB, _ := r.bind(tB4B, 2)
	r.a.FromAccess(encap(tB4A, tAFTR, udp4(ipA, ipB, firstA, firstB, 64, []byte("x"))))
	r.a.FromAccess(encap(tB4A, tAFTR, udp4(ipA, tPool.Addr().Next().Next(), firstA, firstB, 64, []byte("x"))))
	r.quiet()
	if got := r.counter("drop-hairpin-disabled-ipv4"); got != 2 {
		t.Errorf("drop-hairpin-disabled-ipv4 %d, want 2", got)
	}
}

// RFC 7596 §6.2: a packet from a B4 to a pool address with no binding for
// that port is dropped: never sent to the Internet, and not to another B4.
func TestHairpinNoBinding(t *testing.T) {
	r := newRig(t, nil)
	ipA, firstA, size := r.bind(tB4A, 1)
	r.bind(tB4B, 2)
	for _, dst := range []struct {
		ip   netip.Addr
		port uint16
	}{
		{ipA, firstA + 4*size},             // a free block of a used address
		{ipA, 80},                          // the system ports' block
		{tPool.Addr().Next().Next(), 5000}, // an address no B4 uses yet
	} {
		r.a.FromAccess(encap(tB4A, tAFTR, udp4(ipA, dst.ip, firstA, dst.port, 64, []byte("x"))))
		if p := r.internet.take(); len(p) != 0 {
			t.Errorf("to %v:%d: sent to the Internet", dst.ip, dst.port)
		}
		for _, p := range r.access.take() {
			// At most an ICMPv4 unreachable back to A.
			in := r.softwireTo(p, tB4A)
			if typ, _, _ := icmp4(t, in); typ != packet.ICMPv4DstUnreachable {
				t.Errorf("to %v:%d: ICMPv4 type %d back to A", dst.ip, dst.port, typ)
			}
		}
	}
	if got := r.counter("drop-no-dest-softwire-ipv4"); got != 3 {
		t.Errorf("drop-no-dest-softwire-ipv4 %d, want 3", got)
	}
}

// RFC 7596 §6.2 and RFC 2473 §3 (only a well-formed softwire packet to the
// AFTR's address, next header 4, carrying valid IPv4, is decapsulated),
// RFC 8200 §4: malformed input from the access side is a counted drop,
// nothing is sent, nothing panics.
func TestMalformedFromAccess(t *testing.T) {
	r := newRig(t, nil)
	ip, first, _ := r.bind(tB4A, 1)
	good := func() []byte { return encap(tB4A, tAFTR, udp4(ip, tRemote, first, 53, 64, []byte("query"))) }
	edit := func(f func(p []byte) []byte) []byte { return f(good()) }
	later := udp4(ip, tRemote, first, 53, 64, []byte("query"))
	later[6], later[7] = 0, 10 // a non-first fragment: offset 80, no ports
	packet.SetIPv4HeaderChecksum(later)
	gre := udp4(ip, tRemote, first, 53, 64, []byte("query"))
	gre[9] = 47
	packet.SetIPv4HeaderChecksum(gre)

	for _, c := range []struct {
		name    string
		pkt     []byte
		counter string
	}{
		{"empty", nil, "drop-malformed-ipv6"},
		{"truncated-header", good()[:39], "drop-malformed-ipv6"},
		{"truncated-payload", good()[:60], "drop-malformed-ipv6"},
		// Snabb's wrong-interface drop.
		{"ipv4-on-access", udp4(ip, tRemote, first, 53, 64, nil), "drop-misplaced-not-ipv6"},
		// Not a valid fragment: the reassembly stage drops it.
		{"ipv6-fragment", edit(func(p []byte) []byte {
			p[6] = 44
			return p
		}), "drop-ipv6-frag-invalid-reassembly"},
		{"bad-ext-header", edit(func(p []byte) []byte {
			p[6] = 0 // hop-by-hop whose length runs past the packet
			p[41] = 200
			return p
		}), "drop-malformed-ipv6"},
		{"wrong-dst", encap(tB4A, tB4B, udp4(ip, tRemote, first, 53, 64, nil)), "drop-wrong-dst-ipv6"},
		{"next-header-tcp", edit(func(p []byte) []byte {
			p[6] = packet.ProtoTCP
			return p
		}), "drop-unknown-protocol-ipv6"},
		{"udp-over-ipv6", edit(func(p []byte) []byte {
			p[6] = packet.ProtoUDP
			return p
		}), "drop-unknown-protocol-ipv6"},
		{"bad-inner-checksum", edit(func(p []byte) []byte {
			p[40+10] ^= 0xff
			return p
		}), "drop-malformed-ipv4"},
		{"inner-not-ipv4", edit(func(p []byte) []byte {
			p[40] = 0x65
			return p
		}), "drop-malformed-ipv4"},
		{"inner-total-length-too-big", edit(func(p []byte) []byte {
			p[40+2], p[40+3] = 0x05, 0xdc
			packet.SetIPv4HeaderChecksum(p[40:])
			return p
		}), "drop-malformed-ipv4"},
		{"inner-cut", encap(tB4A, tAFTR, udp4(ip, tRemote, first, 53, 64, nil)[:22]), "drop-malformed-ipv4"},
		{"inner-udp-too-short", encap(tB4A, tAFTR, func() []byte {
			p := udp4(ip, tRemote, first, 53, 64, nil)[:22]
			p[2], p[3] = 0, 22
			packet.SetIPv4HeaderChecksum(p)
			return p
		}()), "drop-unknown-protocol-ipv4"},
		{"inner-later-fragment", encap(tB4A, tAFTR, later), "drop-ipv4-frag-unsupported"},
		{"inner-gre", encap(tB4A, tAFTR, gre), "drop-unknown-protocol-ipv4"},
		{"icmpv6-not-echo", func() []byte {
			// An error about no softwire packet of the AFTR's.
			b := packet.ICMPv6Error(2, 0, 1280, a16(tB4A), a16(tAFTR), 64, []byte("x"), 1280)
			return b
		}(), "drop-not-about-softwire-icmpv6"},
		{"icmpv6-other", packet.ICMPv6Echo(packet.ICMPv6EchoReply, a16(tB4A), a16(tAFTR), 64, 1, nil), "drop-unknown-protocol-icmpv6"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := r.counter(c.counter)
			r.a.FromAccess(c.pkt)
			r.quiet()
			if got := r.counter(c.counter); got != before+1 {
				t.Errorf("%s %d, want %d (%v)", c.counter, got, before+1, r.a.Counters())
			}
		})
	}
}

// RFC 7596 §6.1 (the binding lifetime follows the allocation lifetime),
// RFC 6887 §15: once its lifetime passes, a binding carries nothing either
// way, and Expire removes it from the table.
func TestBindingExpiry(t *testing.T) {
	r := newRig(t, nil)
	m := r.pcp(tB4A, b4Req(1, 120))
	ip, first, _ := granted(t, m)
	up := func() { r.a.FromAccess(encap(tB4A, tAFTR, udp4(ip, tRemote, first, 53, 64, []byte("q")))) }
	down := func() { r.a.FromInternet(udp4(tRemote, ip, 53, first, 64, []byte("a"))) }

	r.clock.Advance(119 * time.Second)
	up()
	r.oneInternet()
	down()
	r.softwireTo(r.oneAccess(), tB4A)
	if n := r.a.Expire(); n != 0 {
		t.Errorf("Expire before the end: %d", n)
	}

	r.clock.Advance(time.Second)
	down()
	r.quiet()
	if n := r.a.Expire(); n != 1 {
		t.Errorf("Expire = %d, want 1", n)
	}
	if b := r.a.Bindings(); len(b) != 0 {
		t.Errorf("bindings after expiry: %v", b)
	}
	up()
	if m := r.icmp6To(r.oneAccess(), tB4A); m.Type != packet.ICMPv6DstUnreachable || m.Code != packet.ICMPv6CodeSourcePolicy {
		t.Errorf("after expiry: ICMPv6 %d/%d, want 1/5", m.Type, m.Code)
	}
	down()
	r.quiet()
	if r.counter("drop-no-source-softwire-ipv6") != 1 || r.counter("drop-no-dest-softwire-ipv4") != 2 {
		t.Errorf("counters %v", r.a.Counters())
	}

	// The B4 asks again (any nonce: its mapping is gone) and is served.
	ip2, first2, _ := r.bind(tB4A, 9)
	if ip2 != ip || first2 != first {
		t.Errorf("re-provisioned %v %d, want its set %v %d back (hold-down reclaim)", ip2, first2, ip, first)
	}
	up()
	r.oneInternet()
}

// RemoveBinding drops a binding and its nonce (PROTOCOL.md §8 item 5: the
// B4 learns by ICMPv6 1/5 and asks again, with any nonce).
func TestRemoveBinding(t *testing.T) {
	r := newRig(t, nil)
	r.bind(tB4A, 1)
	if !r.a.RemoveBinding(tB4A) || r.a.RemoveBinding(tB4A) {
		t.Errorf("RemoveBinding: want true then false")
	}
	if len(r.a.Bindings()) != 0 {
		t.Errorf("binding left")
	}
	r.bind(tB4A, 2)
}

// RFC 4443 §4.1: echo requests to the AFTR's address are answered.
func TestICMPv6EchoToAFTR(t *testing.T) {
	r := newRig(t, nil)
	r.a.FromAccess(packet.ICMPv6Echo(packet.ICMPv6EchoRequest, a16(tB4A), a16(tAFTR), 64, 0x12340001, []byte("ping")))
	m := r.icmp6To(r.oneAccess(), tB4A)
	if m.Type != packet.ICMPv6EchoReply || m.Param != 0x12340001 || string(m.Body) != "ping" {
		t.Errorf("echo reply %+v", m)
	}
}

// Configuration errors are ErrConfig: a unicast IPv6 BR address (RFC 7596
// §6.2), IPv4 pools, hop limit > 0 (RFC 2473 §6.3), lifetimes (RFC 6887
// §15), power-of-two port sets (PROTOCOL.md §8 item 2).
func TestNewConfigErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*Config)
	}{
		{"no-addr", func(c *Config) { c.Addr = netip.Addr{} }},
		{"ipv4-addr", func(c *Config) { c.Addr = tSelf4 }},
		{"mapped-addr", func(c *Config) { c.Addr = tMapped }},
		{"multicast-addr", func(c *Config) { c.Addr = netip.MustParseAddr("ff02::1") }},
		{"no-pool", func(c *Config) { c.Pools = nil }},
		{"ipv6-pool", func(c *Config) { c.Pools = []netip.Prefix{netip.MustParsePrefix("2001:db8::/64")} }},
		{"ipv6-ipv4addr", func(c *Config) { c.IPv4Addr = tAFTR }},
		{"hop-limit-0", func(c *Config) { c.HopLimit = 0 }},
		{"lifetimes", func(c *Config) { c.LifetimeMax = time.Second }},
		{"ports-not-pow2", func(c *Config) { c.PortsPerB4 = 1000 }},
	} {
		cfg := testConfig()
		c.edit(&cfg)
		if _, err := New(cfg, &fakeLink{}, &fakeLink{}); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: New = %v, want ErrConfig", c.name, err)
		}
	}
	// RFC 6890 special-purpose ranges, a pool given twice, and the AFTR's
	// own address inside a pool are refused with the reason.
	pool := func(s ...string) func(*Config) {
		return func(c *Config) {
			c.Pools = nil
			for _, p := range s {
				c.Pools = append(c.Pools, netip.MustParsePrefix(p))
			}
		}
	}
	for _, c := range []struct {
		name, reason string
		edit         func(*Config)
	}{
		{"multicast", "multicast", pool("224.0.0.0/4")},
		{"broadcast", "broadcast", pool("255.255.255.255/32")},
		{"loopback", "loopback", pool("127.0.0.0/8")},
		{"this-network", "this network", pool("0.0.0.0/8")},
		{"reserved", "reserved", pool("240.0.0.0/4")},
		{"softwire", "softwire", pool("192.0.0.0/29")},
		{"softwire-inside", "softwire", pool("192.0.0.0/24")},
		{"link-local", "link-local", pool("169.254.1.0/24")},
		{"duplicate", "overlaps pool", pool("192.0.2.0/28", "192.0.2.0/28")},
		{"overlap", "overlaps pool", pool("192.0.2.0/24", "192.0.2.128/25")},
		{"own-ipv4", "inside pool", func(c *Config) {
			c.Pools = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}
			c.IPv4Addr = netip.MustParseAddr("203.0.113.1")
		}},
	} {
		cfg := testConfig()
		c.edit(&cfg)
		if _, err := New(cfg, &fakeLink{}, &fakeLink{}); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.reason) {
			t.Errorf("%s: New = %v, want ErrConfig saying %q", c.name, err, c.reason)
		}
	}
	if _, err := New(testConfig(), nil, &fakeLink{}); !errors.Is(err, ErrConfig) {
		t.Errorf("nil link: %v", err)
	}
}

// RFC 7596 §6.1 and PROTOCOL.md §8 item 3 (the PCP server installs
// bindings while the data plane runs): the data plane takes no lock and
// runs beside the PCP server from many goroutines (run with -race); traffic
// of bound B4s keeps flowing while other B4s bind, renew and delete.
func TestConcurrentTraffic(t *testing.T) {
	// 4 B4s of one /64 sending 50 requests each at one instant of the
	// fake clock: over the per-B4 rate limit (pcplimit_test.go tests it).
	r := newRig(t, func(c *Config) { c.PCPRatePerB4 = 0 })
	ip, first, _ := r.bind(tB4A, 1)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 300 {
				r.a.FromAccess(encap(tB4A, tAFTR, udp4(ip, tRemote, first+uint16(i%64), 53, 64, []byte("q"))))
				r.a.FromInternet(udp4(tRemote, ip, 53, first+uint16(g), 64, []byte("a")))
			}
		})
	}
	for g := range 4 {
		wg.Go(func() {
			b4 := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0x20, 15: byte(g + 1)})
			n := nonce(byte(10 + g))
			for i := range 50 {
				q := mapReq{nonce: n, lifetime: 3600, portSet: &pcp.PortSet{Size: 65535}}
				if i%3 == 2 {
					q.lifetime = 0
				}
				r.a.FromAccess(pcpPacket(b4, q.marshal(t)))
				r.a.Bindings()
				r.a.Expire()
			}
		})
	}
	wg.Wait()
	if got := r.counter("out-ipv4"); got != 4*300 {
		t.Errorf("out-ipv4 %d, want %d", got, 4*300)
	}
	if got := r.counter("out-ipv6"); got != 4*300 {
		t.Errorf("out-ipv6 %d, want %d", got, 4*300)
	}
	if got := r.counter("out-pcp"); got != 1+4*50 {
		t.Errorf("out-pcp %d, want %d", got, 1+4*50)
	}
}

// Issue 11 item 5: a flood of unbound packets from one /64 spends only
// that prefix's share of the ICMPv6 errors (counted), and the other B4s
// (each its own /64) still get their 1/5 at once while the flood goes on.
// Without the per-prefix limit the same flood starves them.
func TestICMPv6RateLimitPerPrefix(t *testing.T) {
	flood := func(perPrefix int) (answered int, r *rig) {
		r = newRig(t, func(c *Config) { c.ICMPv6RatePerPrefix = perPrefix }) // ICMPRate 100
		bad := func(b4 netip.Addr) []byte { return encap(b4, tAFTR, udp4(tOther4, tRemote, 4096, 53, 64, []byte("q"))) }
		flooder := netip.MustParseAddr("2001:db8:a::99")
		for round := range 50 {
			for range 100 {
				r.a.FromAccess(bad(flooder))
			}
			r.access.take()
			other := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x10, byte(round), 15: 1})
			r.a.FromAccess(bad(other))
			if out := r.access.take(); len(out) == 1 {
				if m := r.icmp6To(out[0], other); m.Type != packet.ICMPv6DstUnreachable || m.Code != 5 {
					t.Fatalf("round %d: ICMPv6 %d/%d", round, m.Type, m.Code)
				}
				answered++
			}
			r.clock.Advance(10 * time.Millisecond)
		}
		return answered, r
	}
	if n, _ := flood(-1); n == 50 {
		t.Fatal("control: the flood starved nobody without the per-prefix limit; the test proves nothing")
	}
	n, r := flood(0)
	if n != 50 {
		t.Errorf("%d of 50 other B4s got their 1/5 during the flood", n)
	}
	if d := r.counter("drop-over-source-rate-limit-icmpv6"); d < 5000-15 {
		t.Errorf("flooder got %d errors in 0.5 s, want at most 10 + 5", 5000-d)
	}
}

// The per-prefix table is bounded; buckets idle long enough to have
// refilled make room, and past the bound the family's bucket still rules.
func TestPrefixLimiterBounded(t *testing.T) {
	c := newClock()
	l := newPrefixLimiter(2, c.Now)
	l.max = 3
	src := func(i byte) [16]byte { return [16]byte{0x20, 0x01, 0x0d, 0xb8, 0, i} }
	for i := range byte(3) {
		l.allow(src(i))
		l.allow(src(i))
		if l.allow(src(i)) {
			t.Fatalf("source %d over its rate allowed", i)
		}
	}
	if !l.allow(src(9)) || len(l.m) != 3 {
		t.Fatalf("full table: not let through (%d buckets)", len(l.m))
	}
	c.Advance(time.Second)
	if !l.allow(src(9)) || len(l.m) != 1 {
		t.Fatalf("idle buckets not dropped: %d buckets", len(l.m))
	}
}

// A B4's packet to another B4 with TTL 1 (the held-out Snabb case beside
// its vector 47, with ICMP on): the AFTR originates ICMPv4 time exceeded
// for the sender. By default it goes straight back into the sender's
// softwire with the TTL it was made with (RFC 1812 §5.3.1: the AFTR
// forwarded nothing); under Snabb's profile it takes the hairpin path and
// its encapsulation decrements the TTL, as Snabb's output has it.
func TestOwnICMPv4ErrorToB4(t *testing.T) {
	for _, c := range []struct {
		name  string
		edit  func(*Config)
		ttl   uint8
		count uint64 // hairpin-ipv4
	}{
		{"rfc", nil, 64, 0}, // TTL checked at decapsulation: nothing hairpinned
		{"snabb", func(c *Config) { SnabbProfile(c) }, 254, 2}, // the packet, then the error
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, c.edit)
			ipA, firstA, _ := r.bind(tB4A, 1)
			ipB, firstB, _ := r.bind(tB4B, 2)
			sent := udp4(ipA, ipB, firstA, firstB, 1, []byte("ttl 1"))
			r.a.FromAccess(encap(tB4A, tAFTR, sent))
			in := r.softwireTo(r.oneAccess(), tB4A)
			if typ, code, _ := icmp4(t, in); typ != packet.ICMPv4TimeExceeded || code != 0 {
				t.Fatalf("ICMPv4 %d/%d to A, want time exceeded", typ, code)
			}
			if in.TTL() != c.ttl || !header.IPv4(in).IsChecksumValid() {
				t.Errorf("error TTL %d (header checksum ok %v), want %d", in.TTL(), header.IPv4(in).IsChecksumValid(), c.ttl)
			}
			if got := r.counter("hairpin-ipv4"); got != c.count {
				t.Errorf("hairpin-ipv4 %d, want %d", got, c.count)
			}
		})
	}
}
