package aftr

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lw4o6/lw4o6/stack/packet"
	"github.com/lw4o6/lw4o6/stack/pcp"
)

// The per-B4 nonce map must not keep the nonce of every B4 ever served:
// once a binding has expired (and left hold-down), its nonce protects
// nothing (RFC 6887 §11.3 checks the nonce of an existing mapping only).
func TestReviewNonceMapBounded(t *testing.T) {
	// 200 B4s of one /64 at one instant: no per-B4 rate limit.
	r := newRig(t, func(c *Config) { c.PortsPerB4, c.PCPRatePerB4 = 512, 0 })
	const n = 200
	for i := range n {
		b4 := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xee, 14: byte(i >> 8), 15: byte(i)})
		r.bind(b4, byte(i))
	}
	r.clock.Advance(2 * time.Hour) // past the 3600 s lifetime and the hold-down
	r.a.Expire()
	r.a.mu.Lock()
	got := len(r.a.nonces)
	r.a.mu.Unlock()
	if got != 0 {
		t.Fatalf("%d nonces kept for B4s without a binding, want 0", got)
	}
	// A B4 that comes back is served, with a new nonce.
	b4 := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xee, 15: 1})
	r.bind(b4, 99)
	if m := r.pcp(b4, b4Req(98, 3600)); m.Result != pcp.NotAuthorized {
		t.Fatalf("renewal with another nonce: %v, want NOT_AUTHORIZED", m.Result)
	}
}

// RFC 4291 §2.5.3: a packet to the loopback address must never be sent
// outside a node; an IPv4-mapped address (§2.5.5.2) names no IPv6 node
// either. The AFTR must not answer such sources (echo, PCP, ICMPv6 1/5).
func TestReviewNoReplyToLoopbackOrMappedSource(t *testing.T) {
	r := newRig(t, nil)
	for _, src := range []netip.Addr{netip.IPv6Loopback(), netip.MustParseAddr("::ffff:192.0.2.1")} {
		r.a.FromAccess(packet.ICMPv6Echo(packet.ICMPv6EchoRequest, a16(src), a16(tAFTR), 64, 1, []byte("ping")))
		r.quiet()
		r.a.FromAccess(pcpPacket(src, b4Req(1, 3600).marshal(t)))
		r.quiet()
		r.a.FromAccess(encap(src, tAFTR, udp4(netip.MustParseAddr("192.0.2.9"), tRemote, 5000, 53, 64, nil)))
		r.quiet()
	}
}

// PCP answers go to the request's IPv4 source inside the softwire: never to
// a broadcast, multicast or unspecified address (RFC 1122 §3.2.1.3: none
// of them names one host).
func TestReviewPCPNoReplyToBroadcastInnerSource(t *testing.T) {
	r := newRig(t, nil)
	for _, src := range []netip.Addr{
		netip.MustParseAddr("255.255.255.255"),
		netip.MustParseAddr("224.0.0.1"),
		netip.MustParseAddr("0.0.0.0"),
	} {
		m := &pcp.Message{
			Opcode:   pcp.OpMap,
			Lifetime: 3600,
			ClientIP: netip.AddrFrom16(src.As16()),
			Map:      &pcp.MapData{Nonce: nonce(1), ExternalIP: netip.IPv4Unspecified()},
			Options:  []pcp.Option{pcp.PortSetOption(pcp.PortSet{Size: 65535})},
		}
		req, err := pcp.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		r.a.FromAccess(encap(tB4A, tAFTR, udp4(src, tAFTR4, tClientPort, pcp.ServerPort, 64, req)))
		if p := r.access.take(); len(p) != 0 {
			var outer packet.IPv6
			in, _ := packet.Decapsulate(p[0], &outer)
			t.Errorf("PCP from %v answered to %v", src, in.DstAddr())
		}
		r.quiet()
	}
}

// RFC 1812 §5.3.5.1: limited broadcasts MUST NOT be forwarded; §5.3.7:
// nor (SHOULD NOT) packets to network 0, network 127 or class E. A bound
// B4 must not get one onto the Internet link.
func TestReviewNoForwardToMartianDestination(t *testing.T) {
	r := newRig(t, nil)
	ip, first, _ := r.bind(tB4A, 1)
	for _, dst := range []netip.Addr{
		netip.MustParseAddr("255.255.255.255"),
		netip.MustParseAddr("127.0.0.1"),
		netip.MustParseAddr("0.0.0.0"),
		netip.MustParseAddr("240.0.0.1"),
	} {
		r.a.FromAccess(encap(tB4A, tAFTR, udp4(ip, dst, first+1, 53, 64, []byte("x"))))
		if p := r.internet.take(); len(p) != 0 {
			t.Errorf("packet to %v forwarded to the Internet", dst)
		}
		r.access.take()
	}
	// An ordinary destination still goes out.
	r.a.FromAccess(encap(tB4A, tAFTR, udp4(ip, tRemote, first+1, 53, 64, []byte("x"))))
	r.oneInternet()
}

// RemoveBinding racing a PCP MAP of the same B4 must not leave a live
// binding without its nonce (which would let another nonce renew or
// delete it, RFC 6887 §11.3): the release and the nonce go together.
func TestReviewRemoveBindingRacesMap(t *testing.T) {
	clock := newClock()
	var armed atomic.Bool
	var wg sync.WaitGroup
	var r *rig
	r = newRig(t, func(c *Config) {
		c.Now = func() time.Time {
			// Inside Map (a.mu held): an operator removes the binding.
			if armed.Load() && !r.a.mu.TryLock() {
				armed.Store(false)
				wg.Add(1)
				go func() { defer wg.Done(); r.a.RemoveBinding(tB4A) }()
				time.Sleep(50 * time.Millisecond) // let it run as far as it can
			} else if armed.Load() {
				r.a.mu.Unlock()
			}
			return clock.Now()
		}
	})
	armed.Store(true)
	if got := r.pcp(tB4A, b4Req(1, 3600)); got.Result != pcp.Success {
		t.Fatalf("MAP: %v", got.Result)
	}
	wg.Wait()
	r.a.mu.Lock()
	_, hasNonce := r.a.nonces[tB4A]
	r.a.mu.Unlock()
	if live := len(r.a.table.ByB4(tB4A)) > 0; live && !hasNonce {
		t.Fatalf("live binding of %v without its nonce", tB4A)
	}
}
